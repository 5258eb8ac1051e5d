/* Event loop: readiness, timers, removal and cancellation from inside
 * callbacks, deferred calls, stop, hang-up.  Every wait is bounded so a
 * broken loop fails the test instead of hanging it. */
#define _GNU_SOURCE /* pipe2 */
#include "testutils.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chat/error.h>

#include "loop.h"

/* Run rounds until *flag becomes nonzero or about two seconds pass. */
static void run_until(struct chat_loop *loop, const int *flag)
{
	uint64_t end = chat_loop_now_ms() + 2000;

	while (!*flag && chat_loop_now_ms() < end)
		CHECK_EQ_INT(chat_loop_run_once(loop, 50), CHAT_OK);
}

static void make_pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(1);
	}
}

static void put_byte(int fd)
{
	CHECK_EQ_INT(write(fd, "x", 1), 1);
}

/* ---- fd readiness */

struct rd {
	int calls;
	int fd;
	unsigned events;
	ssize_t last_read;
};

static void on_ready(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct rd *r = arg;
	char buf[16];

	(void)loop;
	r->calls++;
	r->fd = fd;
	r->events = events;
	if (events & CHAT_EV_READ)
		r->last_read = read(fd, buf, sizeof(buf));
}

static void test_readiness(void)
{
	struct chat_loop *loop;
	struct chat_watch *w, *w2;
	struct rd r = { 0 }, r2 = { 0 };
	int p[2], sv[2];

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	CHECK_EQ_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	CHECK_EQ_INT(chat_loop_add(loop, p[0], CHAT_EV_READ, on_ready, &r, &w), CHAT_OK);
	CHECK(w != NULL);

	/* nothing to read yet */
	CHECK_EQ_INT(chat_loop_run_once(loop, 0), CHAT_OK);
	CHECK_EQ_INT(r.calls, 0);

	put_byte(p[1]);
	run_until(loop, &r.calls);
	CHECK_EQ_INT(r.calls, 1);
	CHECK_EQ_INT(r.fd, p[0]);
	CHECK_EQ_INT(r.events, CHAT_EV_READ);
	CHECK_EQ_INT(r.last_read, 1);

	/* paused: data waiting but no callback; resumed: it comes */
	CHECK_EQ_INT(chat_loop_modify(loop, w, 0), CHAT_OK);
	put_byte(p[1]);
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(r.calls, 1);
	CHECK_EQ_INT(chat_loop_modify(loop, w, CHAT_EV_READ), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
	CHECK_EQ_INT(r.calls, 2);

	/* bad arguments; an fd can have only one watch */
	CHECK_EQ_INT(chat_loop_add(loop, -1, CHAT_EV_READ, on_ready, &r, &w2), CHAT_ERR_INVALID);
	CHECK(w2 == NULL);
	CHECK_EQ_INT(chat_loop_add(loop, p[0], CHAT_EV_READ, NULL, &r, &w2), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_loop_add(loop, p[0], 8, on_ready, &r, &w2), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_loop_add(loop, p[0], CHAT_EV_READ, on_ready, &r, &w2), CHAT_ERR_INVALID);
	CHECK_EQ_INT(chat_loop_modify(loop, w, 8), CHAT_ERR_INVALID);

	chat_loop_remove(loop, w);
	put_byte(p[1]);
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(r.calls, 2);

	/* write readiness, and switching between read and write */
	make_pair(sv);
	CHECK_EQ_INT(chat_loop_add(loop, sv[0], CHAT_EV_WRITE, on_ready, &r2, &w2), CHAT_OK);
	run_until(loop, &r2.calls);
	CHECK_EQ_INT(r2.events, CHAT_EV_WRITE);
	CHECK_EQ_INT(chat_loop_modify(loop, w2, CHAT_EV_READ), CHAT_OK);
	r2.calls = 0;
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(r2.calls, 0);
	put_byte(sv[1]);
	run_until(loop, &r2.calls);
	CHECK_EQ_INT(r2.events, CHAT_EV_READ);
	/* left registered on purpose: chat_loop_free releases it */

	chat_loop_free(loop);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* ---- timers */

struct tlog {
	int order[16];
	int n;
	uint64_t at[16];
};

struct tctx {
	struct tlog *log;
	int id;
	int repeats;       /* return delay this many times, then -1 */
	long long delay;
	struct chat_timer *self, *victim;
	int cancel_self;
};

static long long on_timer(struct chat_loop *loop, void *arg)
{
	struct tctx *t = arg;

	if (t->log->n < 16) {
		t->log->order[t->log->n] = t->id;
		t->log->at[t->log->n] = chat_loop_now_ms();
	}
	t->log->n++;
	if (t->victim) {
		chat_loop_timer_cancel(loop, t->victim);
		t->victim = NULL;
	}
	if (t->cancel_self) {
		chat_loop_timer_cancel(loop, t->self);
		return 3000; /* must not bring it back */
	}
	if (t->repeats-- > 0)
		return t->delay;
	return -1;
}

static void run_for(struct chat_loop *loop, uint64_t ms)
{
	uint64_t end = chat_loop_now_ms() + ms;

	while (chat_loop_now_ms() < end)
		CHECK_EQ_INT(chat_loop_run_once(loop, 10), CHAT_OK);
}

static void test_timers(void)
{
	struct chat_loop *loop;
	struct tlog log = { 0 };
	struct tctx a = { .log = &log, .id = 30 }, b = { .log = &log, .id = 10 },
	            c = { .log = &log, .id = 20 }, d = { .log = &log, .id = 5 };
	struct chat_timer *t;
	uint64_t start;

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	start = chat_loop_now_ms();
	CHECK_EQ_INT(chat_loop_timer_add(loop, 30, on_timer, &a, &t), CHAT_OK);
	CHECK(t != NULL);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 10, on_timer, &b, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 20, on_timer, &c, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 5, on_timer, &d, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 5, NULL, &d, &t), CHAT_ERR_INVALID);
	CHECK(t == NULL);
	for (int i = 0; i < 200 && log.n < 4; i++)
		CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 4);
	CHECK_EQ_INT(log.order[0], 5);
	CHECK_EQ_INT(log.order[1], 10);
	CHECK_EQ_INT(log.order[2], 20);
	CHECK_EQ_INT(log.order[3], 30);
	CHECK(log.at[0] >= start + 5);
	CHECK(log.at[3] >= start + 30);

	/* equal deadlines fire in the order they were added */
	memset(&log, 0, sizeof(log));
	a.repeats = b.repeats = c.repeats = 0;
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &a, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &b, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &c, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 3);
	CHECK_EQ_INT(log.order[0], 30);
	CHECK_EQ_INT(log.order[1], 10);
	CHECK_EQ_INT(log.order[2], 20);

	/* repeating by the returned delay: 1 + 3 calls, at least 5 ms apart */
	memset(&log, 0, sizeof(log));
	a.repeats = 3;
	a.delay = 5;
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &a, NULL), CHAT_OK);
	for (int i = 0; i < 200 && log.n < 4; i++)
		CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 4);
	for (int i = 1; i < 4; i++)
		CHECK(log.at[i] >= log.at[i - 1] + 5);
	run_for(loop, 30);
	CHECK_EQ_INT(log.n, 4); /* returned -1: gone */

	/* a timer returning 0 runs once per round, not in a tight loop */
	memset(&log, 0, sizeof(log));
	a.repeats = 1000;
	a.delay = 0;
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &a, &t), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 1);
	CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 2);
	chat_loop_timer_cancel(loop, t); /* outside any callback */
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(log.n, 2);

	/* a pending timer left for chat_loop_free */
	CHECK_EQ_INT(chat_loop_timer_add(loop, 100000, on_timer, &a, NULL), CHAT_OK);
	chat_loop_free(loop);
}

static void test_timer_cancel(void)
{
	struct chat_loop *loop;
	struct tlog log = { 0 };
	struct tctx self = { .log = &log, .id = 1, .cancel_self = 1 };
	struct tctx killer = { .log = &log, .id = 2 }, victim = { .log = &log, .id = 3 };
	struct tctx later = { .log = &log, .id = 4 };
	struct tctx killer2 = { .log = &log, .id = 5 };
	uint64_t t0;

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);

	/* cancelling itself and returning a delay: fires once, never again */
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &self, &self.self), CHAT_OK);
	/* killer and victim are due in the same round; killer runs first and
	 * cancels victim, which must then not run */
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &killer, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &victim, &killer.victim), CHAT_OK);
	/* killer2 cancels a timer still waiting in the heap */
	CHECK_EQ_INT(chat_loop_timer_add(loop, 0, on_timer, &killer2, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 20, on_timer, &later, &killer2.victim), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run_once(loop, 100), CHAT_OK);
	CHECK_EQ_INT(log.n, 3);
	CHECK_EQ_INT(log.order[0], 1);
	CHECK_EQ_INT(log.order[1], 2);
	CHECK_EQ_INT(log.order[2], 5);
	run_for(loop, 50);
	CHECK_EQ_INT(log.n, 3);
	/* no timer is left, not even a dead one: run has nothing to wait for */
	t0 = chat_loop_now_ms();
	CHECK_EQ_INT(chat_loop_run(loop), CHAT_OK);
	CHECK(chat_loop_now_ms() - t0 < 1000);
	chat_loop_free(loop);
}

/* ---- removing watches from inside callbacks */

struct pairwatch {
	struct chat_watch *self, *other;
	int *calls;
	int remove_self, close_other;
	int other_fd;
};

static void on_pair(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct pairwatch *p = arg;
	char c;

	(void)events;
	(*p->calls)++;
	if (read(fd, &c, 1) != 1)
		test_failures++;
	if (p->other) {
		chat_loop_remove(loop, p->other);
		p->other = NULL;
		if (p->close_other)
			close(p->other_fd);
	}
	if (p->remove_self)
		chat_loop_remove(loop, p->self);
}

struct pauser {
	struct chat_watch *other;
	int calls;
};

static void on_pause_other(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct pauser *p = arg;
	char c;

	(void)events;
	p->calls++;
	if (read(fd, &c, 1) != 1)
		test_failures++;
	if (p->other) {
		CHECK_EQ_INT(chat_loop_modify(loop, p->other, 0), CHAT_OK);
		p->other = NULL;
	}
}

static void test_remove_in_round(void)
{
	struct chat_loop *loop;
	struct pairwatch pa, pb;
	int s1[2], s2[2], calls = 0, other_calls = 0;

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	make_pair(s1);
	make_pair(s2);
	/* both ends readable before the round starts, so both events land in
	 * the same epoll_wait batch */
	put_byte(s1[1]);
	put_byte(s2[1]);
	memset(&pa, 0, sizeof(pa));
	memset(&pb, 0, sizeof(pb));
	pa.calls = pb.calls = &calls;
	pa.remove_self = pb.remove_self = 1;
	pa.close_other = pb.close_other = 1;
	pa.other_fd = s2[0];
	pb.other_fd = s1[0];
	CHECK_EQ_INT(chat_loop_add(loop, s1[0], CHAT_EV_READ, on_pair, &pa, &pa.self), CHAT_OK);
	CHECK_EQ_INT(chat_loop_add(loop, s2[0], CHAT_EV_READ, on_pair, &pb, &pb.self), CHAT_OK);
	pa.other = pb.self;
	pb.other = pa.self;
	CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
	/* whichever ran first removed (and closed) the other: exactly one call */
	CHECK_EQ_INT(calls, 1);
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(calls, 1);
	/* one of s1[0], s2[0] was closed by a callback; close the survivor */
	if (fcntl(s1[0], F_GETFD) >= 0)
		close(s1[0]);
	if (fcntl(s2[0], F_GETFD) >= 0)
		close(s2[0]);
	close(s1[1]);
	close(s2[1]);

	/* removing only the other watch: this one stays and keeps working */
	make_pair(s1);
	make_pair(s2);
	put_byte(s1[1]);
	put_byte(s2[1]);
	calls = 0;
	memset(&pa, 0, sizeof(pa));
	memset(&pb, 0, sizeof(pb));
	pa.calls = pb.calls = &calls;
	CHECK_EQ_INT(chat_loop_add(loop, s1[0], CHAT_EV_READ, on_pair, &pa, &pa.self), CHAT_OK);
	CHECK_EQ_INT(chat_loop_add(loop, s2[0], CHAT_EV_READ, on_pair, &pb, &pb.self), CHAT_OK);
	pa.other = pb.self;
	pb.other = pa.self;
	CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
	CHECK_EQ_INT(calls, 1);
	{
		/* the one that ran cleared its ->other and survives */
		struct pairwatch *surv = pa.other ? &pb : &pa;

		pa.other = pb.other = NULL; /* no more removals */
		put_byte(surv == &pa ? s1[1] : s2[1]);
		put_byte(surv == &pa ? s2[1] : s1[1]); /* the removed one stays silent */
		other_calls = calls;
		CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
		CHECK_EQ_INT(calls, other_calls + 1);
		CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
		CHECK_EQ_INT(calls, other_calls + 1);
	}
	chat_loop_free(loop); /* frees the surviving watch */
	close(s1[0]);
	close(s1[1]);
	close(s2[0]);
	close(s2[1]);

	/* pausing another watch mid-round also holds back its pending event */
	{
		struct pauser qa = { 0 }, qb = { 0 };
		struct chat_watch *wa, *wb;

		CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
		make_pair(s1);
		make_pair(s2);
		put_byte(s1[1]);
		put_byte(s2[1]);
		CHECK_EQ_INT(chat_loop_add(loop, s1[0], CHAT_EV_READ, on_pause_other, &qa, &wa), CHAT_OK);
		CHECK_EQ_INT(chat_loop_add(loop, s2[0], CHAT_EV_READ, on_pause_other, &qb, &wb), CHAT_OK);
		qa.other = wb;
		qb.other = wa;
		CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
		CHECK_EQ_INT(qa.calls + qb.calls, 1);
		CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
		CHECK_EQ_INT(qa.calls + qb.calls, 1);
		chat_loop_free(loop);
		close(s1[0]);
		close(s1[1]);
		close(s2[0]);
		close(s2[1]);
	}
}

/* ---- deferred calls */

struct dconn {
	struct chat_loop *loop;
	struct chat_watch *w;
	int fd;
	char *log;
	size_t *loglen;
	char tag;
};

static void logc(struct dconn *c, char ch)
{
	if (*c->loglen < 63)
		c->log[(*c->loglen)++] = ch;
}

static void close_conn(void *arg)
{
	struct dconn *c = arg;

	logc(c, (char)(c->tag - 'a' + 'A'));
	chat_loop_remove(c->loop, c->w);
	close(c->fd);
	c->fd = -1;
}

static void on_conn(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct dconn *c = arg;

	(void)fd;
	(void)events;
	logc(c, c->tag);
	/* closing inside the handler is deferred until the round is over */
	CHECK_EQ_INT(chat_loop_defer(loop, close_conn, c), CHAT_OK);
}

struct chain {
	struct chat_loop *loop;
	char *log;
	size_t *loglen;
	char tag, then;
};

static void on_chain(void *arg)
{
	struct chain *c = arg;

	if (*c->loglen < 63)
		c->log[(*c->loglen)++] = c->tag;
	if (c->then) {
		c->tag = c->then;
		c->then = 0;
		CHECK_EQ_INT(chat_loop_defer(c->loop, on_chain, c), CHAT_OK);
	}
}

static void test_defer(void)
{
	struct chat_loop *loop;
	char log[64] = { 0 };
	size_t loglen = 0;
	struct dconn ca, cb;
	struct chain x, y;
	int s1[2], s2[2];
	uint64_t t0;

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	make_pair(s1);
	make_pair(s2);
	put_byte(s1[1]);
	put_byte(s2[1]);
	ca = (struct dconn){ loop, NULL, s1[0], log, &loglen, 'a' };
	cb = (struct dconn){ loop, NULL, s2[0], log, &loglen, 'b' };
	CHECK_EQ_INT(chat_loop_add(loop, s1[0], CHAT_EV_READ, on_conn, &ca, &ca.w), CHAT_OK);
	CHECK_EQ_INT(chat_loop_add(loop, s2[0], CHAT_EV_READ, on_conn, &cb, &cb.w), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
	/* both handlers ran before either deferred close, closes in FIFO order */
	CHECK_EQ_INT(loglen, 4);
	CHECK(strcmp(log, "abAB") == 0 || strcmp(log, "baBA") == 0);
	CHECK_EQ_INT(ca.fd, -1);
	CHECK_EQ_INT(cb.fd, -1);
	CHECK_EQ_INT(chat_loop_run_once(loop, 20), CHAT_OK);
	CHECK_EQ_INT(loglen, 4);
	close(s1[1]);
	close(s2[1]);

	/* FIFO, and calls deferred while draining run in the same drain */
	memset(log, 0, sizeof(log));
	loglen = 0;
	x = (struct chain){ loop, log, &loglen, 'x', 'z' };
	y = (struct chain){ loop, log, &loglen, 'y', 0 };
	CHECK_EQ_INT(chat_loop_defer(loop, on_chain, &x), CHAT_OK);
	CHECK_EQ_INT(chat_loop_defer(loop, on_chain, &y), CHAT_OK);
	CHECK_EQ_INT(chat_loop_defer(loop, NULL, &y), CHAT_ERR_INVALID);
	/* pending deferred work must not let the loop sleep */
	t0 = chat_loop_now_ms();
	CHECK_EQ_INT(chat_loop_run_once(loop, 5000), CHAT_OK);
	CHECK(chat_loop_now_ms() - t0 < 1000);
	CHECK_EQ_INT(strcmp(log, "xyz"), 0);

	/* chat_loop_free runs what is still pending */
	memset(log, 0, sizeof(log));
	loglen = 0;
	x = (struct chain){ loop, log, &loglen, 'p', 'q' };
	CHECK_EQ_INT(chat_loop_defer(loop, on_chain, &x), CHAT_OK);
	chat_loop_free(loop);
	CHECK_EQ_INT(strcmp(log, "pq"), 0);
}

/* ---- stop, run, hang-up, misuse */

struct stopper {
	int fired, ticks;
};

static long long on_stop(struct chat_loop *loop, void *arg)
{
	struct stopper *s = arg;

	s->fired++;
	chat_loop_stop(loop);
	return -1;
}

static long long on_tick(struct chat_loop *loop, void *arg)
{
	struct stopper *s = arg;

	/* safety net: a broken stop must fail the test, not hang it */
	if (++s->ticks > 5000) {
		chat_loop_stop(loop);
		return -1;
	}
	return 1;
}

static void on_nested(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	int *res = arg;
	char c;

	(void)events;
	if (read(fd, &c, 1) != 1)
		test_failures++;
	*res = chat_loop_run_once(loop, 0);
}

static void test_stop(void)
{
	struct chat_loop *loop;
	struct stopper s = { 0 };
	struct chat_timer *tick;
	struct chat_watch *w;
	int sv[2], nested = 1;

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	/* nothing to wait for: run returns instead of sleeping forever */
	CHECK_EQ_INT(chat_loop_run(loop), CHAT_OK);

	CHECK_EQ_INT(chat_loop_timer_add(loop, 1, on_tick, &s, &tick), CHAT_OK);
	CHECK_EQ_INT(chat_loop_timer_add(loop, 20, on_stop, &s, NULL), CHAT_OK);
	CHECK_EQ_INT(chat_loop_run(loop), CHAT_OK);
	CHECK_EQ_INT(s.fired, 1);
	CHECK(s.ticks > 0 && s.ticks <= 5000);
	if (s.ticks <= 5000)
		chat_loop_timer_cancel(loop, tick); /* it rescheduled itself */

	/* a round cannot be run from inside a callback */
	make_pair(sv);
	CHECK_EQ_INT(chat_loop_add(loop, sv[0], CHAT_EV_READ, on_nested, &nested, &w), CHAT_OK);
	put_byte(sv[1]);
	CHECK_EQ_INT(chat_loop_run_once(loop, 1000), CHAT_OK);
	CHECK_EQ_INT(nested, CHAT_ERR_INVALID);
	chat_loop_remove(loop, w);
	close(sv[0]);
	close(sv[1]);
	chat_loop_free(loop);
}

static void test_hup(void)
{
	struct chat_loop *loop;
	struct chat_watch *w;
	struct rd r = { 0 };
	int sv[2], p[2];

	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);

	/* peer closes: the reader sees HUP together with READ, and EOF */
	make_pair(sv);
	CHECK_EQ_INT(chat_loop_add(loop, sv[0], CHAT_EV_READ, on_ready, &r, &w), CHAT_OK);
	close(sv[1]);
	run_until(loop, &r.calls);
	CHECK_EQ_INT(r.calls, 1);
	CHECK(r.events & CHAT_EV_HUP);
	CHECK(r.events & CHAT_EV_READ);
	CHECK_EQ_INT(r.last_read, 0);
	chat_loop_remove(loop, w);
	close(sv[0]);

	/* a writer whose reader went away gets HUP too */
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	close(p[0]);
	CHECK_EQ_INT(chat_loop_add(loop, p[1], CHAT_EV_WRITE, on_ready, &r, &w), CHAT_OK);
	run_until(loop, &r.calls);
	CHECK(r.events & CHAT_EV_HUP);
	chat_loop_remove(loop, w);
	close(p[1]);
	chat_loop_free(loop);
}

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

/* A signal interrupting epoll_wait is not an error.  (SIGALRM is taken by
 * the watchdog in main, so a child process sends SIGUSR1.) */
static void test_eintr(void)
{
	struct chat_loop *loop;
	struct sigaction sa;
	int p[2], status;
	struct rd r = { 0 };
	uint64_t t0;
	pid_t pid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	CHECK_EQ_INT(sigaction(SIGUSR1, &sa, NULL), 0);
	CHECK_EQ_INT(chat_loop_new(&loop), CHAT_OK);
	CHECK_EQ_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	CHECK_EQ_INT(chat_loop_add(loop, p[0], CHAT_EV_READ, on_ready, &r, NULL), CHAT_OK);
	pid = fork();
	if (pid == 0) {
		usleep(200000);
		kill(getppid(), SIGUSR1);
		_exit(0);
	}
	CHECK(pid > 0);
	t0 = chat_loop_now_ms();
	for (int i = 0; i < 10 && !got_usr1; i++)
		CHECK_EQ_INT(chat_loop_run_once(loop, 3000), CHAT_OK);
	CHECK(got_usr1);
	CHECK(chat_loop_now_ms() - t0 < 2500); /* woken by the signal, not the timeout */
	CHECK_EQ_INT(r.calls, 0);
	if (pid > 0)
		waitpid(pid, &status, 0);
	chat_loop_free(loop);
	close(p[0]);
	close(p[1]);
	signal(SIGUSR1, SIG_DFL);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(60); /* watchdog: a loop that sleeps forever fails, not hangs */
	test_readiness();
	test_timers();
	test_timer_cancel();
	test_remove_in_round();
	test_defer();
	test_stop();
	test_hup();
	test_eintr();
	return test_done("test_loop");
}
