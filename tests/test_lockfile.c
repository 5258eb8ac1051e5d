/* The database lock (frontends/relay/lockfile.c): a second process is
 * refused and told the holder's pid; the lock goes with the process that
 * held it, even killed, and a file left behind (with a pid in it, even a
 * live process's) never blocks; the holder can be asked without taking
 * it or creating the file. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chat/error.h>

#include "lockfile.h"
#include "testutils.h"

static char dir[] = "/tmp/test_lockfile.XXXXXX";
static char path[256];

/* A child that takes the lock, says so through the pipe and waits. */
static pid_t holder_child(void)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe(p) != 0)
		abort();
	pid = fork();
	if (pid == 0) {
		int fd;
		pid_t other;
		char err[256];
		close(p[0]);
		if (chat_lockfile_take(path, &fd, &other, sizeof(err), err) != CHAT_OK)
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		abort();
	close(p[0]);
	return pid;
}

static void test_lock(void)
{
	char err[512], text[32];
	pid_t holder = -5;
	int fd = -5, status;
	pid_t child = holder_child();

	CHECK_EQ_INT(chat_lockfile_take(path, &fd, &holder, sizeof(err), err), CHAT_ERR_AGAIN);
	CHECK_EQ_INT(fd, -1);
	CHECK_EQ_INT(holder, child);
	CHECK_EQ_INT(chat_lockfile_holder(path, sizeof(err), err), child);
	/* The file says it too, for people. */
	FILE *f = fopen(path, "r");
	CHECK(f && fgets(text, sizeof(text), f));
	if (f)
		fclose(f);
	CHECK_EQ_INT(atol(text), child);

	/* kill -9: the kernel lets go; the file stays, and blocks nothing. */
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	CHECK(access(path, F_OK) == 0);
	CHECK_EQ_INT(chat_lockfile_holder(path, sizeof(err), err), 0);
	CHECK_EQ_INT(chat_lockfile_take(path, &fd, &holder, sizeof(err), err), CHAT_OK);
	CHECK(fd >= 0);
	/* A child sees us, in the kernel and in the file.  (Not read here:
	 * closing any descriptor of the file would drop our POSIX lock.) */
	child = fork();
	if (child == 0) {
		FILE *g = fopen(path, "r");
		int ok = chat_lockfile_holder(path, sizeof(err), err) == getppid() && g &&
		         fgets(text, sizeof(text), g) && atol(text) == (long)getppid();
		_exit(ok ? 0 : 1);
	}
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	chat_lockfile_release(fd);
	CHECK_EQ_INT(chat_lockfile_holder(path, sizeof(err), err), 0);

	/* A file naming a live process (our parent, say) holds no lock. */
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "%ld\n", (long)getppid());
		fclose(f);
	}
	CHECK_EQ_INT(chat_lockfile_take(path, &fd, &holder, sizeof(err), err), CHAT_OK);
	chat_lockfile_release(fd);
}

static void test_errors(void)
{
	char err[512], missing[300];
	pid_t holder;
	int fd;

	snprintf(missing, sizeof(missing), "%s/none/x.lock", dir);
	CHECK_EQ_INT(chat_lockfile_take(missing, &fd, &holder, sizeof(err), err), CHAT_ERR_IO);
	CHECK_STR_CONTAINS(err, missing);
	/* Asking creates nothing. */
	snprintf(missing, sizeof(missing), "%s/nothing.lock", dir);
	CHECK_EQ_INT(chat_lockfile_holder(missing, sizeof(err), err), 0);
	CHECK(access(missing, F_OK) != 0);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/relay.db.lock", dir);
	test_lock();
	test_errors();
	unlink(path);
	rmdir(dir);
	return test_done("test_lockfile");
}
