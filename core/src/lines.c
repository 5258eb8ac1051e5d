#include "lines.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/error.h>

#include "host.h"

struct chat_lines {
	struct chat_loop *loop;
	struct chat_watch *watch;
	const struct chat_lines_cbs *cbs;
	void *arg;
	int fd;
	int nonblock_set; /* we set O_NONBLOCK and must take it back */
	int ended;
	char *line;
	size_t len, cap, max;
};

static void put(struct chat_lines *l, size_t n, const char *buf)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			size_t len = l->len;
			if (len && l->line[len - 1] == '\r')
				len--;
			l->cbs->line(l->arg, len, l->line ? l->line : "");
			if (l->line)
				chat_wipe(l->line, l->len);
			l->len = 0;
			continue;
		}
		if (l->len == l->max) {
			if (l->cbs->too_long)
				l->cbs->too_long(l->arg, l->max);
			l->cbs->line(l->arg, l->len, l->line);
			chat_wipe(l->line, l->len);
			l->len = 0;
		}
		if (l->len == l->cap) {
			/* Fresh buffer, old one wiped: realloc could leave a copy behind. */
			size_t cap = l->cap ? l->cap * 2 : 256;
			char *grown = malloc(cap);
			if (!grown)
				return;
			if (l->line) {
				memcpy(grown, l->line, l->len);
				chat_wipe(l->line, l->cap);
				free(l->line);
			}
			l->line = grown;
			l->cap = cap;
		}
		l->line[l->len++] = buf[i];
	}
}

static void end(struct chat_lines *l)
{
	if (l->ended)
		return;
	l->ended = 1;
	if (l->len)
		l->cbs->line(l->arg, l->len, l->line);
	if (l->line)
		chat_wipe(l->line, l->len);
	l->len = 0;
	if (l->watch)
		chat_loop_remove(l->loop, l->watch);
	l->watch = NULL;
	l->cbs->eof(l->arg);
}

static void on_ready(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_lines *l = arg;
	char buf[65536];
	ssize_t n;

	(void)loop;
	(void)events;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		end(l);
		return;
	}
	put(l, (size_t)n, buf);
	chat_wipe(buf, (size_t)n);
}

static void read_whole(struct chat_lines *l)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(l->fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			put(l, (size_t)n, buf);
	chat_wipe(buf, sizeof(buf));
	end(l);
}

int chat_lines_start(struct chat_loop *loop, int fd, size_t max, const struct chat_lines_cbs *cbs,
                     void *arg, struct chat_lines **out)
{
	struct chat_lines *l = calloc(1, sizeof(*l));
	struct stat st;

	*out = NULL;
	if (!l)
		return CHAT_ERR_NOMEM;
	l->loop = loop;
	l->cbs = cbs;
	l->arg = arg;
	l->fd = fd;
	l->max = max ? max : 65536;
	*out = l;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		read_whole(l);
		return CHAT_OK;
	}
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0 && !(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0)
		l->nonblock_set = 1;
	if (chat_loop_add(loop, fd, CHAT_EV_READ, on_ready, l, &l->watch) != CHAT_OK) {
		/* Not pollable (/dev/null): blocking reads of it never block long. */
		if (l->nonblock_set)
			fcntl(fd, F_SETFL, flags);
		l->nonblock_set = 0;
		read_whole(l);
	}
	return CHAT_OK;
}

void chat_lines_stop(struct chat_lines *l)
{
	if (!l)
		return;
	if (l->watch)
		chat_loop_remove(l->loop, l->watch);
	if (l->nonblock_set) {
		int flags = fcntl(l->fd, F_GETFL);
		if (flags >= 0)
			fcntl(l->fd, F_SETFL, flags & ~O_NONBLOCK);
	}
	if (l->line) {
		chat_wipe(l->line, l->cap);
		free(l->line);
	}
	free(l);
}
