/* cluster-redis.so: the relay's link to Redis for relay.cluster (module.h,
 * cluster_link.h).  Transport only: two connections driven by hiredis's
 * asynchronous API on the relay's own event loop (one subscribed to this
 * relay's channels, one that publishes: a subscribed connection can do
 * nothing else), a bounded count of published bytes awaiting the server's
 * answer, and reconnection with backoff.  What travels is the relay's
 * business (relay_cluster.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cluster_link.h"

#define EXPORT __attribute__((visibility("default")))
#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 10000u
#define CONNECT_DEADLINE_MS 5000u

enum { PH_WAIT, PH_CONNECTING, PH_UP, PH_TEARDOWN, PH_CLOSED };

struct rconn {
	struct chat_cluster_link *l;
	redisAsyncContext *ac;
	struct chat_watch *w;
	unsigned ev;
};

struct chat_cluster_link {
	struct chat_cluster_host host;
	struct chat_cluster_cbs cbs;
	void *arg;
	char addr[256];
	char name[80];
	int port;
	char **channels;
	size_t nchannels, nsubscribed;
	size_t out_max, pending;
	struct rconn pub, sub;
	int pub_ok, up, said_down, in_timer;
	int phase;
	unsigned backoff_ms;
	struct chat_timer *timer;
	char why[320];
};

/* ---- hiredis on the relay's loop */

static void on_fd(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct rconn *rc = arg;

	(void)loop;
	(void)fd;
	if ((events & (CHAT_EV_READ | CHAT_EV_HUP)) && rc->ac)
		redisAsyncHandleRead(rc->ac);
	if ((events & CHAT_EV_WRITE) && rc->ac)
		redisAsyncHandleWrite(rc->ac);
}

static void set_events(struct rconn *rc, unsigned ev)
{
	const struct chat_cluster_host *h = &rc->l->host;

	if (!rc->ac || ev == rc->ev)
		return;
	rc->ev = ev;
	if (!rc->w) {
		if (h->loop_add(h->loop, rc->ac->c.fd, ev, on_fd, rc, &rc->w) != 0)
			rc->w = NULL; /* the connection then never progresses: the deadline ends it */
		return;
	}
	h->loop_modify(h->loop, rc->w, ev);
}

static void ev_add_read(void *p) { struct rconn *rc = p; set_events(rc, rc->ev | CHAT_EV_READ); }
static void ev_del_read(void *p) { struct rconn *rc = p; set_events(rc, rc->ev & ~CHAT_EV_READ); }
static void ev_add_write(void *p) { struct rconn *rc = p; set_events(rc, rc->ev | CHAT_EV_WRITE); }
static void ev_del_write(void *p) { struct rconn *rc = p; set_events(rc, rc->ev & ~CHAT_EV_WRITE); }

/* hiredis frees the context: forget it. */
static void ev_cleanup(void *p)
{
	struct rconn *rc = p;

	if (rc->w)
		rc->l->host.loop_remove(rc->l->host.loop, rc->w);
	rc->w = NULL;
	rc->ev = 0;
	rc->ac = NULL;
}

/* ---- the link's states */

static long long on_timer(struct chat_loop *loop, void *arg);

static void schedule(struct chat_cluster_link *l, uint64_t ms)
{
	if (l->in_timer)
		return; /* on_timer returns the next delay itself */
	if (l->timer)
		l->host.timer_cancel(l->host.loop, l->timer);
	l->timer = NULL;
	if (l->host.timer_add(l->host.loop, ms, on_timer, l, &l->timer) != 0)
		l->timer = NULL;
}

/* The link failed: torn down and said (once per loss) from the timer,
 * outside hiredis's callbacks and outside the relay's publish calls. */
static void fail(struct chat_cluster_link *l, const char *why)
{
	if (l->phase == PH_TEARDOWN || l->phase == PH_WAIT || l->phase == PH_CLOSED)
		return;
	l->phase = PH_TEARDOWN;
	l->pub_ok = 0;
	l->nsubscribed = 0;
	l->up = 0;
	/* (the return value used: -O3 warns of a reason cut short, which is fine) */
	if (!l->said_down &&
	    snprintf(l->why, sizeof(l->why), "redis://%s:%d: %s", l->addr, l->port, why) < 0)
		l->why[0] = '\0';
	schedule(l, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->ev.data;
	struct chat_cluster_link *l = rc->l;

	if (status != REDIS_OK) {
		char why[200];
		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr[0] ? ac->errstr : "error");
		fail(l, why);
		return;
	}
	if (rc == &l->pub)
		l->pub_ok = 1;
	if (l->pub_ok && l->nsubscribed == l->nchannels && !l->up && l->phase == PH_CONNECTING) {
		l->up = 1;
		l->said_down = 0;
		l->backoff_ms = BACKOFF_MIN_MS;
		l->phase = PH_UP;
		if (l->timer) /* the connect deadline */
			l->host.timer_cancel(l->host.loop, l->timer);
		l->timer = NULL;
		l->cbs.on_up(l->arg);
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->ev.data;
	char why[200];

	snprintf(why, sizeof(why), "connection lost: %s",
	         status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "error");
	fail(rc->l, why);
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat_cluster_link *l = priv;
	redisReply *r = reply;

	(void)ac;
	if (!r || l->phase == PH_TEARDOWN)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		char why[200];
		snprintf(why, sizeof(why), "SUBSCRIBE refused: %.150s", r->str);
		fail(l, why);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "message") == 0) {
		if (r->element[2]->type == REDIS_REPLY_STRING && l->up)
			l->cbs.on_message(l->arg, r->element[1]->str, r->element[2]->len,
			                  (const uint8_t *)r->element[2]->str);
	} else if (strcmp(r->element[0]->str, "subscribe") == 0) {
		l->nsubscribed++;
		on_connect(l->sub.ac, REDIS_OK);
	}
}

static void on_published(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rconn *rc = ac->ev.data;
	struct chat_cluster_link *l = rc->l;
	redisReply *r = reply;
	size_t len = (size_t)(uintptr_t)priv;

	l->pending -= len <= l->pending ? len : l->pending;
	if (r && r->type == REDIS_REPLY_ERROR) {
		char why[200];
		snprintf(why, sizeof(why), "PUBLISH refused: %.150s", r->str);
		fail(l, why);
	}
}

static int attach(struct chat_cluster_link *l, struct rconn *rc, char *why, size_t cap)
{
	rc->l = l;
	rc->w = NULL;
	rc->ev = 0;
	rc->ac = redisAsyncConnect(l->addr, l->port);
	if (!rc->ac) {
		snprintf(why, cap, "cannot connect: out of memory");
		return -1;
	}
	if (rc->ac->err) {
		snprintf(why, cap, "cannot connect: %s", rc->ac->errstr);
		redisAsyncFree(rc->ac);
		rc->ac = NULL;
		return -1;
	}
	rc->ac->ev.data = rc;
	rc->ac->ev.addRead = ev_add_read;
	rc->ac->ev.delRead = ev_del_read;
	rc->ac->ev.addWrite = ev_add_write;
	rc->ac->ev.delWrite = ev_del_write;
	rc->ac->ev.cleanup = ev_cleanup;
	redisAsyncSetConnectCallback(rc->ac, on_connect);
	redisAsyncSetDisconnectCallback(rc->ac, on_disconnect);
	/* hiredis waits for writability to learn the connect's outcome */
	ev_add_write(rc);
	return 0;
}

static int attempt(struct chat_cluster_link *l, char *why, size_t cap)
{
	const char **argv;
	size_t *lens;
	int rc;

	l->pub_ok = 0;
	l->nsubscribed = 0;
	l->pending = 0;
	if (attach(l, &l->pub, why, cap) || attach(l, &l->sub, why, cap))
		return -1;
	/* Before SUBSCRIBE: a subscribed connection takes no other command. */
	if (redisAsyncCommand(l->pub.ac, NULL, NULL, "CLIENT SETNAME %s", l->name) != REDIS_OK ||
	    redisAsyncCommand(l->sub.ac, NULL, NULL, "CLIENT SETNAME %s", l->name) != REDIS_OK) {
		snprintf(why, cap, "cannot send CLIENT SETNAME");
		return -1;
	}
	argv = calloc(l->nchannels + 1, sizeof(*argv));
	lens = calloc(l->nchannels + 1, sizeof(*lens));
	if (!argv || !lens) {
		free(argv);
		free(lens);
		snprintf(why, cap, "out of memory");
		return -1;
	}
	argv[0] = "SUBSCRIBE";
	lens[0] = 9;
	for (size_t i = 0; i < l->nchannels; i++) {
		argv[i + 1] = l->channels[i];
		lens[i + 1] = strlen(l->channels[i]);
	}
	rc = redisAsyncCommandArgv(l->sub.ac, on_sub, l, (int)l->nchannels + 1, argv, lens);
	free(argv);
	free(lens);
	if (rc != REDIS_OK) {
		snprintf(why, cap, "cannot send SUBSCRIBE");
		return -1;
	}
	return 0;
}

static void teardown(struct chat_cluster_link *l)
{
	/* Frees run the disconnect callbacks (fail: already failing) and the
	 * pending reply callbacks with no reply. */
	if (l->pub.ac)
		redisAsyncFree(l->pub.ac);
	if (l->sub.ac)
		redisAsyncFree(l->sub.ac);
	l->pending = 0;
}

static long long on_timer(struct chat_loop *loop, void *arg)
{
	struct chat_cluster_link *l = arg;
	char why[200];
	long long next = -1;

	(void)loop;
	l->in_timer = 1;
	if (l->phase == PH_CONNECTING) {
		fail(l, "no answer within 5 s");
	} else if (l->phase == PH_WAIT) {
		l->phase = PH_CONNECTING;
		if (attempt(l, why, sizeof(why)) != 0)
			fail(l, why);
	}
	if (l->phase == PH_TEARDOWN) {
		teardown(l);
		l->phase = PH_WAIT;
		next = l->backoff_ms;
		l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
		if (!l->said_down) {
			l->said_down = 1;
			l->cbs.on_down(l->arg, l->why);
		}
	} else if (l->phase == PH_CONNECTING) {
		next = CONNECT_DEADLINE_MS;
	}
	l->in_timer = 0;
	if (next < 0)
		l->timer = NULL;
	return next;
}

/* ---- the module's table */

static void link_free(struct chat_cluster_link *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nchannels; i++)
		free(l->channels[i]);
	free(l->channels);
	free(l);
}

static int link_open(const struct chat_cluster_host *host, const char *addr, int port,
                     const char *name, size_t nchannels, const char *const *channels, size_t out_max,
                     const struct chat_cluster_cbs *cbs, void *arg, struct chat_cluster_link **out,
                     size_t errlen, char *err)
{
	struct chat_cluster_link *l;

	*out = NULL;
	if (!host || host->size < sizeof(*host) || !nchannels) {
		snprintf(err, errlen, "cluster-redis: the relay's host table is too old");
		return -1;
	}
	if (!(l = calloc(1, sizeof(*l))) || !(l->channels = calloc(nchannels, sizeof(char *)))) {
		free(l);
		snprintf(err, errlen, "cluster-redis: out of memory");
		return -1;
	}
	l->host = *host;
	l->cbs = *cbs;
	l->arg = arg;
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->port = port;
	l->out_max = out_max;
	l->backoff_ms = BACKOFF_MIN_MS;
	for (size_t i = 0; i < nchannels; i++, l->nchannels++) {
		if (!(l->channels[i] = strdup(channels[i]))) {
			link_free(l);
			snprintf(err, errlen, "cluster-redis: out of memory");
			return -1;
		}
	}
	l->phase = PH_WAIT;
	schedule(l, 0);
	if (!l->timer) {
		link_free(l);
		snprintf(err, errlen, "cluster-redis: cannot add a timer");
		return -1;
	}
	*out = l;
	return 0;
}

static int link_publish(struct chat_cluster_link *l, const char *channel, size_t len,
                        const uint8_t *data)
{
	if (!l->up || !l->pub.ac)
		return -1;
	if (l->pending + len > l->out_max) {
		char why[160];
		snprintf(why, sizeof(why), "more than %zu bytes published and not yet acknowledged "
		         "(the server is too slow): dropping the link", l->out_max);
		fail(l, why);
		return -1;
	}
	if (redisAsyncCommand(l->pub.ac, on_published, (void *)(uintptr_t)len, "PUBLISH %s %b",
	                      channel, data, len) != REDIS_OK) {
		fail(l, "cannot queue PUBLISH");
		return -1;
	}
	l->pending += len;
	return 0;
}

static void link_close(struct chat_cluster_link *l)
{
	if (!l)
		return;
	if (l->timer)
		l->host.timer_cancel(l->host.loop, l->timer);
	l->timer = NULL;
	l->phase = PH_CLOSED; /* fail() says nothing from here on */
	l->said_down = 1;
	l->in_timer = 1;
	teardown(l);
	link_free(l);
}

EXPORT const struct chat_cluster_module chat_cluster_link_module = {
	.version = CHAT_CLUSTER_LINK_VERSION,
	.open = link_open,
	.publish = link_publish,
	.close = link_close,
};
