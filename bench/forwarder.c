/* chat-bench-forwarder: the ceiling for the relay benchmark.  A trivial
 * single-threaded epoll forwarder on 127.0.0.1: connections are paired in
 * accept order (2k with 2k+1) and the bytes read from one are written to the
 * other.  No parsing, no framing: whatever the relay does beyond this is the
 * cost of being a relay.
 *
 * Like the relay it reads into one shared buffer and keeps per connection only
 * the bytes its pair did not take (allocated on demand, freed when written);
 * while such a remainder is pending, reading from its source pauses. */
#define _GNU_SOURCE /* accept4, pipe2, sched_setaffinity */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define FWD_BATCH 256
#define FWD_READ_BUF (64 * 1024)

struct fwd_conn {
	int fd;
	int pair;        /* index of the pair, -1 until it is accepted */
	uint8_t *pend;   /* bytes read from this connection that the pair has not taken */
	size_t pend_off, pend_len;
	unsigned events; /* what epoll watches now */
	int closed;
};

static struct fwd_conn *conns;
static size_t nconns, capconns;
static int epfd = -1;
static uint8_t read_buf[FWD_READ_BUF];

/* epoll data: index + 1; 0 is the listener, UINT64_MAX the signalfd. */
#define TAG_LISTEN 0
#define TAG_SIGNAL UINT64_MAX

static void set_events(size_t i, unsigned events)
{
	struct fwd_conn *c = &conns[i];
	struct epoll_event ev = { .events = events, .data.u64 = i + 1 };

	if (c->closed || c->events == events)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

static void close_conn(size_t i)
{
	struct fwd_conn *c = &conns[i];

	if (c->closed)
		return;
	c->closed = 1;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pend);
	c->pend = NULL;
	c->pend_len = c->pend_off = 0;
}

static void close_both(size_t i)
{
	int pair = conns[i].pair;

	close_conn(i);
	if (pair >= 0)
		close_conn((size_t)pair);
}

/* Who watches what: a connection reads while its own remainder is empty,
 * and waits for writability while its pair's remainder (bytes for it) is not. */
static void update(size_t i)
{
	struct fwd_conn *c = &conns[i], *p;
	unsigned ev = 0;

	if (c->closed || c->pair < 0)
		return;
	p = &conns[c->pair];
	if (!c->pend_len)
		ev |= EPOLLIN;
	if (p->pend_len)
		ev |= EPOLLOUT;
	set_events(i, ev);
}

/* Write src's remainder to its pair.  Returns -1 when the pair failed. */
static int drain(size_t src)
{
	struct fwd_conn *c = &conns[src], *p = &conns[c->pair];

	while (c->pend_len) {
		ssize_t n = send(p->fd, c->pend + c->pend_off, c->pend_len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return -1;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	if (!c->pend_len) {
		free(c->pend);
		c->pend = NULL;
		c->pend_off = 0;
	}
	update(src);
	update((size_t)c->pair);
	return 0;
}

static void on_readable(size_t i)
{
	struct fwd_conn *c = &conns[i], *p;
	ssize_t n, w;

	if (c->pend_len || c->pair < 0)
		return;
	p = &conns[c->pair];
	do
		n = recv(c->fd, read_buf, sizeof(read_buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		close_both(i);
		return;
	}
	do
		w = send(p->fd, read_buf, (size_t)n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		w = 0;
	if (w < 0) {
		close_both(i);
		return;
	}
	if (w < n) {
		c->pend = malloc((size_t)(n - w));
		if (!c->pend) {
			close_both(i);
			return;
		}
		memcpy(c->pend, read_buf + w, (size_t)(n - w));
		c->pend_off = 0;
		c->pend_len = (size_t)(n - w);
		update(i);
		update((size_t)c->pair);
	}
}

static int on_accept(int lfd)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return 0;
			fprintf(stderr, "chat-bench-forwarder: accept: %s\n", strerror(errno));
			return errno == EMFILE || errno == ENFILE ? 0 : -1;
		}
		if (nconns == capconns) {
			size_t cap = capconns ? capconns * 2 : 1024;
			struct fwd_conn *grown = realloc(conns, cap * sizeof(*grown));
			if (!grown) {
				close(fd);
				return -1;
			}
			conns = grown;
			capconns = cap;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		size_t i = nconns++;
		conns[i] = (struct fwd_conn){ .fd = fd, .pair = -1 };
		/* Registered paused; both ends start reading once the pair exists. */
		struct epoll_event ev = { .events = 0, .data.u64 = i + 1 };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			fprintf(stderr, "chat-bench-forwarder: epoll_ctl: %s\n", strerror(errno));
			return -1;
		}
		if (i % 2 == 1) {
			conns[i].pair = (int)(i - 1);
			conns[i - 1].pair = (int)i;
			if (conns[i - 1].closed) {
				close_conn(i);
				continue;
			}
			update(i - 1);
			update(i);
		}
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: chat-bench-forwarder [--port PORT]\n"
	           "Pairs connections on 127.0.0.1 in accept order (2k with 2k+1) and copies the\n"
	           "bytes of each to its pair.  Prints \"listening on 127.0.0.1:PORT\" on stderr;\n"
	           "stops on SIGTERM or SIGINT.  PORT 0 (the default) picks a free port.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct epoll_event evs[FWD_BATCH];
	sigset_t mask;
	int lfd, sfd, one = 1, opt, port = 0, status = 0;

	while ((opt = getopt_long(argc, argv, "p:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (port < 0 || port > 65535) {
		fprintf(stderr, "chat-bench-forwarder: bad port %d\n", port);
		return 2;
	}
	a.sin_port = htons((uint16_t)port);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || lfd < 0 || epfd < 0) {
		fprintf(stderr, "chat-bench-forwarder: setup: %s\n", strerror(errno));
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
		fprintf(stderr, "chat-bench-forwarder: cannot listen on 127.0.0.1:%d: %s\n", port,
		        strerror(errno));
		return 1;
	}
	struct epoll_event lev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	struct epoll_event sev = { .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev) < 0) {
		fprintf(stderr, "chat-bench-forwarder: epoll_ctl: %s\n", strerror(errno));
		return 1;
	}
	fprintf(stderr, "chat-bench-forwarder: listening on 127.0.0.1:%u\n", ntohs(a.sin_port));

	for (;;) {
		int n = epoll_wait(epfd, evs, FWD_BATCH, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "chat-bench-forwarder: epoll_wait: %s\n", strerror(errno));
			status = 1;
			break;
		}
		for (int k = 0; k < n; k++) {
			uint64_t tag = evs[k].data.u64;
			if (tag == TAG_SIGNAL)
				goto out;
			if (tag == TAG_LISTEN) {
				if (on_accept(lfd) < 0) {
					status = 1;
					goto out;
				}
				continue;
			}
			size_t i = (size_t)(tag - 1);
			if (conns[i].closed)
				continue;
			if (evs[k].events & EPOLLOUT) {
				/* Bytes waiting for i come from its pair. */
				if (drain((size_t)conns[i].pair) < 0) {
					close_both(i);
					continue;
				}
			}
			/* Reported even while paused: a level-triggered loop would spin. */
			if (evs[k].events & (EPOLLHUP | EPOLLERR)) {
				close_both(i);
				continue;
			}
			if (evs[k].events & EPOLLIN)
				on_readable(i);
		}
	}
out:
	for (size_t i = 0; i < nconns; i++)
		close_conn(i);
	free(conns);
	close(lfd);
	close(sfd);
	close(epfd);
	return status;
}
