/* Event loop on epoll (level-triggered), in the spirit of Redis's ae.c.
 *
 * Handlers may remove watches and cancel timers at any point, so nothing is
 * freed while the dispatcher may still hold a pointer to it: a removed watch
 * is unregistered at once but only marked dead and parked on a garbage list
 * until the round ends; a timer that is due or running is only marked. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <chat/error.h>

#define LOOP_BATCH 256
#define NOT_IN_HEAP SIZE_MAX

struct chat_watch {
	struct chat_watch *prev, *next; /* live list, or garbage list once dead */
	int fd;
	unsigned events;
	int registered; /* in the epoll set (not while events == 0) */
	int dead;
	chat_fd_cb cb;
	void *arg;
};

struct chat_timer {
	uint64_t when, seq; /* seq breaks ties: equal deadlines fire in order added */
	size_t idx;         /* slot in the heap, or NOT_IN_HEAP while due/running */
	int dead;
	chat_timer_cb cb;
	void *arg;
	struct chat_timer *next_due;
};

struct chat_defer {
	chat_defer_cb fn;
	void *arg;
	struct chat_defer *next;
};

struct chat_loop {
	int epfd;
	int stop;
	int in_round;
	struct chat_watch *watches, *garbage;
	struct chat_timer **heap;
	size_t heap_len, heap_cap;
	size_t ntimers; /* live timers, in the heap or not; heap_cap >= ntimers */
	uint64_t seq;
	struct chat_defer *defer_head, **defer_tail;
	struct epoll_event events[LOOP_BATCH];
};

uint64_t chat_loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int chat_loop_new(struct chat_loop **loop)
{
	struct chat_loop *l;
	int ret = CHAT_OK;

	*loop = NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = CHAT_ERR_NOMEM;
		goto out;
	}
	l->defer_tail = &l->defer_head;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		ret = (errno == ENOMEM || errno == EMFILE || errno == ENFILE)
		      ? CHAT_ERR_NOMEM : CHAT_ERR_IO;
		free(l);
		goto out;
	}
	*loop = l;
out:
	return ret;
}

/* ---- deferred calls */

int chat_loop_defer(struct chat_loop *loop, chat_defer_cb fn, void *arg)
{
	struct chat_defer *d;

	if (!fn)
		return CHAT_ERR_INVALID;
	d = malloc(sizeof(*d));
	if (!d)
		return CHAT_ERR_NOMEM;
	d->fn = fn;
	d->arg = arg;
	d->next = NULL;
	*loop->defer_tail = d;
	loop->defer_tail = &d->next;
	return CHAT_OK;
}

/* Calls queued while draining are appended and run in this same drain. */
static void run_deferred(struct chat_loop *loop)
{
	struct chat_defer *d;

	while ((d = loop->defer_head)) {
		loop->defer_head = d->next;
		if (!loop->defer_head)
			loop->defer_tail = &loop->defer_head;
		d->fn(d->arg);
		free(d);
	}
}

/* ---- fd watches */

static uint32_t to_epoll(unsigned events)
{
	uint32_t e = 0;

	if (events & CHAT_EV_READ)
		e |= EPOLLIN;
	if (events & CHAT_EV_WRITE)
		e |= EPOLLOUT;
	return e;
}

static int ctl_error(int err)
{
	switch (err) {
	case ENOMEM:
	case ENOSPC:
		return CHAT_ERR_NOMEM;
	case EBADF:
	case EEXIST:
	case ENOENT:
	case EINVAL:
	case EPERM: /* regular files and directories cannot be polled */
		return CHAT_ERR_INVALID;
	default:
		return CHAT_ERR_IO;
	}
}

/* A watch with no events is kept out of the epoll set: otherwise a hung-up
 * fd would report EPOLLHUP over and over while its owner is not listening. */
static int watch_ctl(struct chat_loop *loop, struct chat_watch *w, unsigned events)
{
	struct epoll_event ev;
	int op;

	memset(&ev, 0, sizeof(ev));
	ev.events = to_epoll(events);
	ev.data.ptr = w;
	if (!events && !w->registered)
		return CHAT_OK;
	if (!events)
		op = EPOLL_CTL_DEL;
	else
		op = w->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(loop->epfd, op, w->fd, &ev) < 0)
		return ctl_error(errno);
	w->registered = events != 0;
	return CHAT_OK;
}

int chat_loop_add(struct chat_loop *loop, int fd, unsigned events, chat_fd_cb cb,
                  void *arg, struct chat_watch **watch)
{
	struct chat_watch *w = NULL;
	int ret;

	if (watch)
		*watch = NULL;
	events &= ~CHAT_EV_HUP;
	if (fd < 0 || !cb || (events & ~(CHAT_EV_READ | CHAT_EV_WRITE))) {
		ret = CHAT_ERR_INVALID;
		goto out;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		ret = CHAT_ERR_NOMEM;
		goto out;
	}
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	ret = watch_ctl(loop, w, events);
	if (ret < 0)
		goto out;
	w->events = events;
	w->next = loop->watches;
	if (loop->watches)
		loop->watches->prev = w;
	loop->watches = w;
	if (watch)
		*watch = w;
	w = NULL;
out:
	free(w);
	return ret;
}

int chat_loop_modify(struct chat_loop *loop, struct chat_watch *watch, unsigned events)
{
	int ret;

	events &= ~CHAT_EV_HUP;
	if (!watch || watch->dead || (events & ~(CHAT_EV_READ | CHAT_EV_WRITE)))
		return CHAT_ERR_INVALID;
	if (events == watch->events)
		return CHAT_OK;
	ret = watch_ctl(loop, watch, events);
	if (ret < 0)
		return ret;
	watch->events = events;
	return CHAT_OK;
}

void chat_loop_remove(struct chat_loop *loop, struct chat_watch *watch)
{
	if (!watch || watch->dead)
		return;
	/* Errors are ignored: the fd may already be closed, which removed it. */
	if (watch->registered)
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, watch->fd, NULL);
	watch->registered = 0;
	watch->dead = 1;
	if (watch->prev)
		watch->prev->next = watch->next;
	else
		loop->watches = watch->next;
	if (watch->next)
		watch->next->prev = watch->prev;
	if (!loop->in_round) {
		free(watch);
		return;
	}
	/* Events for it may still sit in this round's batch. */
	watch->prev = NULL;
	watch->next = loop->garbage;
	loop->garbage = watch;
}

static void free_garbage(struct chat_loop *loop)
{
	struct chat_watch *w;

	while ((w = loop->garbage)) {
		loop->garbage = w->next;
		free(w);
	}
}

static void dispatch(struct chat_loop *loop, int nev)
{
	for (int i = 0; i < nev; i++) {
		struct chat_watch *w = loop->events[i].data.ptr;
		uint32_t e = loop->events[i].events;
		unsigned ev = 0;

		/* An earlier handler in this round may have removed or paused it. */
		if (w->dead || !w->events)
			continue;
		if (e & EPOLLIN)
			ev |= CHAT_EV_READ;
		if (e & EPOLLOUT)
			ev |= CHAT_EV_WRITE;
		/* ... or changed what it wants since epoll_wait() returned. */
		ev &= w->events;
		if (e & (EPOLLHUP | EPOLLERR))
			ev |= CHAT_EV_HUP | CHAT_EV_READ; /* a reader then sees EOF */
		if (ev)
			w->cb(loop, w->fd, ev, w->arg);
	}
}

/* ---- timers: a binary min-heap on (when, seq) */

static int timer_before(const struct chat_timer *a, const struct chat_timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(struct chat_loop *loop, size_t i, struct chat_timer *t)
{
	loop->heap[i] = t;
	t->idx = i;
}

static void heap_up(struct chat_loop *loop, size_t i)
{
	struct chat_timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!timer_before(t, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct chat_loop *loop, size_t i)
{
	struct chat_timer *t = loop->heap[i];
	size_t n = loop->heap_len;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && timer_before(loop->heap[c + 1], loop->heap[c]))
			c++;
		if (!timer_before(loop->heap[c], t))
			break;
		heap_set(loop, i, loop->heap[c]);
		i = c;
	}
	heap_set(loop, i, t);
}

/* Never allocates: heap_cap covers every live timer (see timer_add). */
static void heap_push(struct chat_loop *loop, struct chat_timer *t)
{
	loop->heap[loop->heap_len] = t;
	loop->heap_len++;
	heap_up(loop, loop->heap_len - 1);
}

static void heap_remove(struct chat_loop *loop, struct chat_timer *t)
{
	size_t i = t->idx;
	struct chat_timer *last = loop->heap[--loop->heap_len];

	t->idx = NOT_IN_HEAP;
	if (i == loop->heap_len)
		return;
	heap_set(loop, i, last);
	if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

static uint64_t deadline(uint64_t now, uint64_t delay)
{
	return delay > UINT64_MAX - now ? UINT64_MAX : now + delay;
}

static void timer_free(struct chat_loop *loop, struct chat_timer *t)
{
	loop->ntimers--;
	free(t);
}

int chat_loop_timer_add(struct chat_loop *loop, uint64_t delay_ms, chat_timer_cb cb,
                        void *arg, struct chat_timer **timer)
{
	struct chat_timer *t = NULL;
	int ret = CHAT_OK;

	if (timer)
		*timer = NULL;
	if (!cb) {
		ret = CHAT_ERR_INVALID;
		goto out;
	}
	/* Room for every live timer, so rescheduling a due timer (which is out
	 * of the heap while it runs) can never fail for lack of memory. */
	if (loop->ntimers + 1 > loop->heap_cap) {
		size_t ncap = loop->heap_cap ? loop->heap_cap * 2 : 16;
		struct chat_timer **h = realloc(loop->heap, ncap * sizeof(*h));

		if (!h) {
			ret = CHAT_ERR_NOMEM;
			goto out;
		}
		loop->heap = h;
		loop->heap_cap = ncap;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		ret = CHAT_ERR_NOMEM;
		goto out;
	}
	t->when = deadline(chat_loop_now_ms(), delay_ms);
	t->seq = loop->seq++;
	t->cb = cb;
	t->arg = arg;
	loop->ntimers++;
	heap_push(loop, t);
	if (timer)
		*timer = t;
out:
	return ret;
}

void chat_loop_timer_cancel(struct chat_loop *loop, struct chat_timer *timer)
{
	if (!timer || timer->dead)
		return;
	timer->dead = 1;
	/* A due or running timer is off the heap; run_timers() frees it. */
	if (timer->idx != NOT_IN_HEAP) {
		heap_remove(loop, timer);
		timer_free(loop, timer);
	}
}

/* Take every due timer off the heap first, then run them in deadline order.
 * Timers rescheduled (or added) by the callbacks wait for the next round, so
 * a timer returning 0 cannot starve the fds. */
static void run_timers(struct chat_loop *loop)
{
	struct chat_timer *due = NULL, **tail = &due, *t;
	uint64_t now = chat_loop_now_ms();

	while (loop->heap_len && loop->heap[0]->when <= now) {
		t = loop->heap[0];
		heap_remove(loop, t);
		t->next_due = NULL;
		*tail = t;
		tail = &t->next_due;
	}
	while ((t = due)) {
		long long next;

		due = t->next_due;
		if (t->dead) {
			timer_free(loop, t);
			continue;
		}
		next = t->cb(loop, t->arg);
		/* Cancelled from inside its own callback: the returned delay must
		 * not bring it back. */
		if (t->dead || next < 0) {
			timer_free(loop, t);
			continue;
		}
		t->when = deadline(chat_loop_now_ms(), (uint64_t)next);
		t->seq = loop->seq++;
		heap_push(loop, t);
	}
}

/* How long epoll_wait() may sleep: the caller's bound, cut short by the
 * nearest timer and by deferred calls already waiting. */
static int wait_timeout(struct chat_loop *loop, int timeout_ms)
{
	if (loop->defer_head)
		return 0;
	if (loop->heap_len) {
		uint64_t now = chat_loop_now_ms(), when = loop->heap[0]->when;
		uint64_t d = when > now ? when - now : 0;

		if (d > INT_MAX)
			d = INT_MAX;
		if (timeout_ms < 0 || (uint64_t)timeout_ms > d)
			timeout_ms = (int)d;
	}
	return timeout_ms < 0 ? -1 : timeout_ms;
}

int chat_loop_run_once(struct chat_loop *loop, int timeout_ms)
{
	int nev;

	/* A nested round would free garbage the outer dispatcher still uses. */
	if (loop->in_round)
		return CHAT_ERR_INVALID;
	nev = epoll_wait(loop->epfd, loop->events, LOOP_BATCH, wait_timeout(loop, timeout_ms));
	if (nev < 0) {
		if (errno != EINTR)
			return CHAT_ERR_IO;
		nev = 0; /* a signal: still run what is due */
	}
	loop->in_round = 1;
	dispatch(loop, nev);
	run_timers(loop);
	run_deferred(loop);
	loop->in_round = 0;
	free_garbage(loop);
	return CHAT_OK;
}

int chat_loop_run(struct chat_loop *loop)
{
	int ret = CHAT_OK;

	loop->stop = 0;
	while (!loop->stop) {
		/* Nothing left that could ever wake us: waiting would hang. */
		if (!loop->watches && !loop->heap_len && !loop->defer_head)
			break;
		ret = chat_loop_run_once(loop, -1);
		if (ret < 0)
			break;
	}
	loop->stop = 0;
	return ret;
}

void chat_loop_stop(struct chat_loop *loop)
{
	loop->stop = 1;
}

void chat_loop_free(struct chat_loop *loop)
{
	struct chat_watch *w;

	if (!loop)
		return;
	/* Deferred calls usually release connections; they may still use the
	 * loop (remove watches, cancel timers), so run them while it is whole. */
	run_deferred(loop);
	free_garbage(loop);
	while ((w = loop->watches)) {
		loop->watches = w->next;
		free(w);
	}
	for (size_t i = 0; i < loop->heap_len; i++)
		free(loop->heap[i]);
	free(loop->heap);
	close(loop->epfd);
	free(loop);
}
