#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* An ABI 1.2 optional transport op: present only if the plugin's table is
 * large enough to hold it and it is set. */
#define TP_HAS(tp, op) \
	((tp)->size >= offsetof(struct chat_transport_ops, op) + sizeof((tp)->op) && (tp)->op)

_Static_assert(CHAT_TP_READ == CHAT_EV_READ && CHAT_TP_WRITE == CHAT_EV_WRITE,
               "transport interest bits are the loop's event bits");

struct chat_conn {
	struct chat_loop *loop;
	const struct chat_transport_ops *tp;
	void *handle;
	struct chat_watch *watch;
	struct chat_frame_decoder dec;
	struct chat_outq outq;
	const struct chat_conn_cbs *cbs;
	void *arg;
	struct chat_conn *next_dirty; /* on the dirty list: queued output to flush */
	/* Bytes read but not yet framed: the frame budget ran out in the middle
	 * of a read.  While any are held the fd is not read (order), and the
	 * resume timer (delay 0) delivers them on the following loop rounds. */
	uint8_t *held;
	size_t held_len, held_off;
	struct chat_timer *resume;
	unsigned events;
	unsigned connecting : 1;
	unsigned closed : 1;
	unsigned flush_then_close : 1;
	unsigned dirty : 1;
	unsigned layered : 1; /* the transport has interest(): drive reads and writes on any event */
	unsigned framed : 1;  /* a frame has been decoded: the peer speaks our framing */
	char *close_reason;
	/* No copy of the peer address: at thousands of idle connections every
	 * byte counts; chat_conn_peer() asks the transport. */
};

/* One read buffer for every connection: the loop is single-threaded and a
 * frame that does not end inside it is copied into that connection's decoder. */
static uint8_t read_buf[64 * 1024];

/* Reads per readiness event, so one busy peer cannot starve the others. */
#define READS_PER_EVENT 16

/* Frames one connection may deliver per loop round.  A 64 KiB read can hold
 * 16,000 empty frames; handling all of them before the loop's timers run
 * would let one peer stall the program (each frame may cost a decryption).
 * The rest of the read is held and delivered on the next rounds, timers and
 * other connections running in between. */
#define FRAMES_PER_TURN 64

/* Frames delivered from one read often produce output for many connections
 * (a relay routing 16 messages).  While a read is being delivered, sends only
 * queue and put the connection on this list; it is flushed once at the end
 * of the read, one write() per connection instead of one per message.  The
 * loop is single-threaded, so one list serves it. */
static struct chat_conn *dirty_head;
static int delivering;

static void conn_free(void *arg)
{
	struct chat_conn *c = arg;

	chat_frame_decoder_free(&c->dec);
	chat_outq_free(&c->outq);
	free(c->held);
	free(c->close_reason);
	free(c);
}

void chat_conn_close(struct chat_conn *c, int err, const char *reason)
{
	if (!c || c->closed)
		return;
	c->closed = 1;
	chat_loop_remove(c->loop, c->watch);
	c->watch = NULL;
	chat_loop_timer_cancel(c->loop, c->resume);
	c->resume = NULL;
	/* on_close still sees the peer's address (for its log line). */
	if (c->cbs->on_close)
		c->cbs->on_close(c, err, reason ? reason : chat_strerror(err), c->arg);
	c->tp->close(c->handle);
	c->handle = NULL;
	if (chat_loop_defer(c->loop, conn_free, c) != CHAT_OK)
		chat_err("cannot defer freeing a connection; leaking it");
}

/* The readiness to wait for so that what the connection wants can happen. */
static unsigned interest(const struct chat_conn *c, unsigned want)
{
	if (!c->layered || !c->handle)
		return want;
	return c->tp->interest(c->handle, want) & (CHAT_EV_READ | CHAT_EV_WRITE);
}

static void set_events(struct chat_conn *c, unsigned want)
{
	unsigned events = interest(c, want);

	if (c->closed || events == c->events)
		return;
	if (chat_loop_modify(c->loop, c->watch, events) == CHAT_OK)
		c->events = events;
}

/* What the fd is watched for: output to write; input unless bytes read
 * earlier are still held (they come first); only output while draining
 * before a close (level-triggered READ would spin). */
static void update_events(struct chat_conn *c)
{
	if (c->flush_then_close)
		set_events(c, CHAT_EV_WRITE);
	else
		set_events(c, (c->held ? 0 : CHAT_EV_READ) |
		              (chat_outq_len(&c->outq) ? CHAT_EV_WRITE : 0));
}

/* The transport's own sentence on its last failure, if it has one. */
static const char *tp_error(const struct chat_conn *c)
{
	return c->handle && TP_HAS(c->tp, last_error) ? c->tp->last_error(c->handle) : NULL;
}

/* Room for a transport's sentence (a changed TLS key names a file, a line
 * and two fingerprints) after "connect failed: ". */
#define REASON_MAX 1024

static void close_io(struct chat_conn *c, int rc, const char *what)
{
	char reason[REASON_MAX];
	const char *why;

	if (rc == CHAT_ERR_CLOSED) {
		size_t have, need;
		if (chat_frame_decoder_eof(&c->dec, &have, &need) != CHAT_OK) {
			snprintf(reason, sizeof(reason),
			         "peer closed the connection in the middle of a frame (%zu of %zu bytes)",
			         have, need);
			chat_conn_close(c, CHAT_ERR_MALFORMED, reason);
			return;
		}
		chat_conn_close(c, rc, "peer closed the connection");
		return;
	}
	why = tp_error(c);
	snprintf(reason, sizeof(reason), "%s failed: %s", what, why ? why : chat_strerror(rc));
	chat_conn_close(c, rc, reason);
}

static void flush(struct chat_conn *c)
{
	while (!c->closed && chat_outq_len(&c->outq) > 0) {
		size_t sent = 0;
		int rc = c->tp->write(c->handle, chat_outq_len(&c->outq), chat_outq_data(&c->outq), &sent);
		if (rc == CHAT_ERR_AGAIN)
			break;
		if (rc != CHAT_OK) {
			close_io(c, rc, "write");
			return;
		}
		chat_outq_consume(&c->outq, sent);
	}
	if (c->closed)
		return;
	if (chat_outq_len(&c->outq) == 0 && c->flush_then_close) {
		chat_conn_close(c, CHAT_OK, c->close_reason);
		return;
	}
	update_events(c);
}

/* A frame length that is really the start of a TLS record (RFC 8446
 * section 5.1: a content type 20..23, then version 3.x): a peer speaking
 * TLS to a plain stream, such as a TLS relay's alert to a tcp client. */
static int looks_like_tls(size_t declared)
{
	unsigned type = (unsigned)(declared >> 24) & 0xff, major = (unsigned)(declared >> 16) & 0xff,
	         minor = (unsigned)(declared >> 8) & 0xff;

	return type >= 20 && type <= 23 && major == 3 && minor <= 4;
}

/* Frame and deliver src while *budget lasts; returns the bytes used (all of
 * them unless the budget ran out first, or the connection closed). */
static size_t deliver(struct chat_conn *c, size_t len, const uint8_t *src, unsigned *budget)
{
	size_t total = len;

	while (len > 0 && !c->closed && !c->flush_then_close) {
		if (!*budget)
			return total - len;
		size_t used = 0, flen = 0;
		const uint8_t *frame = NULL;
		int rc = chat_frame_decode(&c->dec, len, src, &used, &frame, &flen);
		if (rc < 0) {
			char reason[200];
			size_t declared = chat_frame_decoder_declared(&c->dec);
			if (!c->framed && !c->layered && looks_like_tls(declared)) {
				snprintf(reason, sizeof(reason), "the peer sent a TLS record instead of a "
				         "frame: it speaks TLS (transport tls) and this side does not");
				rc = CHAT_ERR_TLS;
			} else {
				snprintf(reason, sizeof(reason),
				         "frame of %zu bytes exceeds the limit of %zu bytes", declared,
				         (size_t)c->dec.max);
			}
			chat_conn_close(c, rc, reason);
			return total;
		}
		src += used;
		len -= used;
		if (rc == 1) {
			c->framed = 1;
			--*budget;
			if (c->cbs->on_frame)
				c->cbs->on_frame(c, flen, frame, c->arg);
		}
	}
	/* One empty call lets the decoder release a large frame buffer now, so
	 * an idle connection holds no payload memory. */
	if (!c->closed) {
		size_t used = 0, flen = 0;
		const uint8_t *frame = NULL;
		chat_frame_decode(&c->dec, 0, src, &used, &frame, &flen);
	}
	return total;
}

static void flush_dirty(void)
{
	while (dirty_head) {
		struct chat_conn *d = dirty_head;
		dirty_head = d->next_dirty;
		d->next_dirty = NULL;
		d->dirty = 0;
		if (!d->closed && !d->connecting)
			flush(d); /* may close d or others; closed ones are skipped */
	}
}

static long long on_resume(struct chat_loop *loop, void *arg);

/* The frame budget ran out with n bytes of the shared read buffer left:
 * keep a copy, stop reading, and come back on the next loop round. */
static void hold(struct chat_conn *c, size_t n, const uint8_t *rest)
{
	c->held = malloc(n);
	if (!c->held) {
		chat_conn_close(c, CHAT_ERR_NOMEM, "out of memory holding input");
		return;
	}
	memcpy(c->held, rest, n);
	c->held_len = n;
	c->held_off = 0;
	if (chat_loop_timer_add(c->loop, 0, on_resume, c, &c->resume) != CHAT_OK) {
		chat_conn_close(c, CHAT_ERR_NOMEM, "out of memory holding input");
		return;
	}
	update_events(c);
}

static void drop_held(struct chat_conn *c)
{
	free(c->held);
	c->held = NULL;
	c->held_len = c->held_off = 0;
}

/* The resume timer: one more budget of the held bytes; again on the next
 * round while some remain, then the fd is read again. */
static long long on_resume(struct chat_loop *loop, void *arg)
{
	struct chat_conn *c = arg;
	unsigned budget = FRAMES_PER_TURN;
	long long again = -1;

	(void)loop;
	delivering++;
	c->held_off += deliver(c, c->held_len - c->held_off, c->held + c->held_off, &budget);
	if (c->closed) {
		/* chat_conn_close cancelled this timer already. */
	} else if (c->flush_then_close || c->held_off == c->held_len) {
		drop_held(c);
		c->resume = NULL;
		update_events(c);
	} else {
		again = 0;
	}
	if (--delivering == 0)
		flush_dirty();
	return again;
}

static void on_readable(struct chat_conn *c);

/* Input the transport holds already (a decrypted record) does not make the
 * fd readable: read it on the next loop round. */
static long long on_pending(struct chat_loop *loop, void *arg)
{
	struct chat_conn *c = arg;

	(void)loop;
	c->resume = NULL;
	on_readable(c);
	return -1;
}

static void on_readable(struct chat_conn *c)
{
	unsigned budget = FRAMES_PER_TURN;

	if (c->held)
		return; /* a HUP while input is held: on_resume gets to it first */
	delivering++;
	for (int i = 0; i < READS_PER_EVENT && !c->closed && !c->flush_then_close; i++) {
		size_t got = 0, used;
		int rc = c->tp->read(c->handle, sizeof(read_buf), read_buf, &got);
		if (rc == CHAT_ERR_AGAIN)
			break;
		if (rc != CHAT_OK) {
			close_io(c, rc, "read");
			break;
		}
		used = deliver(c, got, read_buf, &budget);
		if (used < got && !c->closed && !c->flush_then_close) {
			hold(c, got - used, read_buf + used);
			break;
		}
		/* A full budget spent exactly: the fd stays readable, the loop
		 * comes back to it on the next round. */
		if (got < sizeof(read_buf) || !budget)
			break;
	}
	if (!c->closed && !c->held && !c->flush_then_close && !c->resume && c->handle &&
	    TP_HAS(c->tp, pending) && c->tp->pending(c->handle) > 0 &&
	    chat_loop_timer_add(c->loop, 0, on_pending, c, &c->resume) != CHAT_OK)
		chat_conn_close(c, CHAT_ERR_NOMEM, "out of memory");
	if (--delivering == 0)
		flush_dirty();
}

static void on_event(struct chat_loop *loop, int fd, unsigned events, void *arg)
{
	struct chat_conn *c = arg;

	(void)loop;
	(void)fd;
	if (c->connecting) {
		int rc = c->tp->connect_finish(c->handle);
		if (rc == CHAT_ERR_INPROGRESS) {
			set_events(c, CHAT_EV_WRITE); /* a layered transport may need to read */
			return;
		}
		if (rc != CHAT_OK) {
			char reason[REASON_MAX];
			const char *why = tp_error(c);
			snprintf(reason, sizeof(reason), "connect failed: %s", why ? why : chat_strerror(rc));
			chat_conn_close(c, rc, reason);
			return;
		}
		c->connecting = 0;
		if (c->cbs->on_connect)
			c->cbs->on_connect(c, c->arg);
		if (!c->closed)
			flush(c);
		return;
	}
	/* A layered transport may have been waiting on the other direction for
	 * its own protocol: let it move both ways on any event. */
	if (c->layered || (events & (CHAT_EV_READ | CHAT_EV_HUP)))
		on_readable(c);
	if (!c->closed && (c->layered || (events & CHAT_EV_WRITE)))
		flush(c);
}

static int conn_alloc(struct chat_loop *loop, const struct chat_transport_ops *tp, void *handle,
                      const struct chat_conn_limits *lim, const struct chat_conn_cbs *cbs,
                      void *arg, unsigned events, struct chat_conn **out)
{
	struct chat_conn *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		tp->close(handle);
		return CHAT_ERR_NOMEM;
	}
	c->loop = loop;
	c->tp = tp;
	c->handle = handle;
	c->cbs = cbs; /* callers pass static tables */
	c->arg = arg;
	c->layered = TP_HAS(tp, interest);
	events = interest(c, events);
	c->events = events;
	chat_frame_decoder_init(&c->dec, lim->max_frame);
	chat_outq_init(&c->outq, lim->out_limit);
	rc = chat_loop_add(loop, tp->fd(handle), events, on_event, c, &c->watch);
	if (rc) {
		tp->close(handle);
		conn_free(c);
		return rc;
	}
	*out = c;
	return CHAT_OK;
}

int chat_conn_new(struct chat_loop *loop, const struct chat_transport_ops *tp, void *handle,
                  const struct chat_conn_limits *lim, const struct chat_conn_cbs *cbs,
                  void *arg, struct chat_conn **out)
{
	*out = NULL;
	return conn_alloc(loop, tp, handle, lim, cbs, arg, CHAT_EV_READ, out);
}

int chat_conn_connect(struct chat_loop *loop, const struct chat_transport_ops *tp,
                      const struct chat_host *host, const char *address,
                      const struct chat_conn_limits *lim, const struct chat_conn_cbs *cbs,
                      void *arg, struct chat_conn **out)
{
	void *handle = NULL;
	int rc;

	*out = NULL;
	rc = tp->connect(host, address, &handle);
	if (rc != CHAT_OK && rc != CHAT_ERR_INPROGRESS) {
		tp->close(handle);
		return rc;
	}
	/* Report completion from the loop either way, so callers have one path. */
	rc = conn_alloc(loop, tp, handle, lim, cbs, arg, CHAT_EV_WRITE, out);
	if (rc)
		return rc;
	(*out)->connecting = 1;
	return CHAT_OK;
}

int chat_conn_send(struct chat_conn *c, size_t len, const uint8_t *frame)
{
	int rc;

	if (c->closed || c->flush_then_close)
		return CHAT_ERR_CLOSED;
	rc = chat_outq_push_frame(&c->outq, len, frame);
	if (rc == CHAT_ERR_NOSPACE) {
		char reason[160];
		snprintf(reason, sizeof(reason),
		         "output queue full (%zu bytes waiting): peer is not reading", chat_outq_len(&c->outq));
		chat_conn_close(c, rc, reason);
		return rc;
	}
	if (rc)
		return rc;
	if (c->connecting || (c->events & CHAT_EV_WRITE))
		return CHAT_OK; /* the loop flushes when the fd is ready */
	if (delivering) {
		if (!c->dirty) {
			c->dirty = 1;
			c->next_dirty = dirty_head;
			dirty_head = c;
		}
		return CHAT_OK;
	}
	flush(c); /* try at once: usually the socket takes it all */
	return CHAT_OK;
}

void chat_conn_close_after_flush(struct chat_conn *c, const char *reason)
{
	if (c->closed || c->flush_then_close)
		return;
	c->flush_then_close = 1;
	c->close_reason = reason ? strdup(reason) : NULL;
	if (!c->connecting)
		flush(c);
}

/* For log lines: valid until the next call. */
const char *chat_conn_peer(const struct chat_conn *c)
{
	static char peer[CHAT_ADDR_MAX];

	if (!c->handle || c->tp->address(c->handle, 0, sizeof(peer), peer) != CHAT_OK)
		snprintf(peer, sizeof(peer), "?");
	return peer;
}

int chat_conn_channel_binding(const struct chat_conn *c, const char *type, size_t cap,
                              uint8_t *dst, size_t *len)
{
	*len = 0;
	if (c->closed || !c->handle || !TP_HAS(c->tp, channel_binding))
		return CHAT_ERR_UNSUPPORTED;
	return c->tp->channel_binding(c->handle, type, cap, dst, len);
}

int chat_conn_describe(const struct chat_conn *c, size_t cap, char *dst)
{
	if (cap)
		dst[0] = '\0';
	if (!c->handle || !TP_HAS(c->tp, describe)) /* also inside on_close */
		return CHAT_ERR_UNSUPPORTED;
	return c->tp->describe(c->handle, cap, dst);
}

int chat_conn_is_open(const struct chat_conn *c)
{
	return !c->closed;
}

size_t chat_conn_queued(const struct chat_conn *c)
{
	return chat_outq_len(&c->outq);
}

void chat_conn_set_arg(struct chat_conn *c, void *arg)
{
	c->arg = arg;
}

void chat_conn_set_limits(struct chat_conn *c, const struct chat_conn_limits *lim)
{
	chat_frame_decoder_set_max(&c->dec, lim->max_frame);
	chat_outq_set_limit(&c->outq, lim->out_limit);
}
