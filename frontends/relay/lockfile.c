#include "lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chat/error.h>

/* The pid the file holds, or 0. */
static pid_t pid_in_file(int fd)
{
	char text[32];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	long v;

	if (n <= 0)
		return 0;
	text[n] = '\0';
	v = strtol(text, NULL, 10);
	return v > 0 ? (pid_t)v : 0;
}

/* The pid holding a lock that conflicts with a write lock on fd's file, 0
 * for none, -1 on error.  The kernel knows it; in another pid namespace it
 * may say 0, and then the file says it. */
static pid_t who_holds(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (fcntl(fd, F_GETLK, &fl) != 0)
		return -1;
	if (fl.l_type == F_UNLCK)
		return 0;
	return fl.l_pid > 0 ? fl.l_pid : pid_in_file(fd);
}

int chat_lockfile_take(const char *path, int *fd, pid_t *holder, size_t errlen, char *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char text[32];
	int f, n;

	*fd = -1;
	*holder = 0;
	f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (f < 0) {
		snprintf(err, errlen, "cannot open the lock file %s: %s", path, strerror(errno));
		return CHAT_ERR_IO;
	}
	/* A holder that exits between the two calls leaves nothing to name:
	 * try again, a few times. */
	for (int tries = 0; fcntl(f, F_SETLK, &fl) != 0; tries++) {
		if ((errno != EAGAIN && errno != EACCES) || tries == 3) {
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
			close(f);
			return CHAT_ERR_IO;
		}
		pid_t pid = who_holds(f);
		if (pid != 0) {
			*holder = pid > 0 ? pid : pid_in_file(f);
			close(f);
			return CHAT_ERR_AGAIN;
		}
	}
	n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (ftruncate(f, 0) != 0 || pwrite(f, text, (size_t)n, 0) != n) {
		snprintf(err, errlen, "cannot write our pid in the lock file %s: %s", path,
		         strerror(errno));
		close(f);
		return CHAT_ERR_IO;
	}
	*fd = f;
	return CHAT_OK;
}

pid_t chat_lockfile_holder(const char *path, size_t errlen, char *err)
{
	int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	pid_t pid;

	if (f < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot open the lock file %s: %s", path, strerror(errno));
		return -1;
	}
	pid = who_holds(f);
	if (pid < 0)
		snprintf(err, errlen, "cannot read the lock of %s: %s", path, strerror(errno));
	close(f);
	return pid;
}

void chat_lockfile_release(int fd)
{
	if (fd >= 0)
		close(fd);
}
