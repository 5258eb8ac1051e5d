/* One framed connection on the event loop: a transport handle, an incremental
 * frame decoder, a bounded output queue.  Closing is safe from inside any
 * callback (including on_frame for this very connection): the connection
 * stops at once and its memory is released after the loop round.
 *
 * A connection delivers at most 64 frames per loop round: a read holding
 * more keeps the rest and goes on with it in the next rounds (a timer of
 * delay 0, so without waiting for new input), the loop's due timers and the
 * other connections running in between; the fd is not read again until the
 * held bytes are delivered. */
#ifndef CHAT_CONN_H
#define CHAT_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <chat/plugin.h>

#include "frame.h"
#include "loop.h"
#include "outq.h"

struct chat_conn;

struct chat_conn_cbs {
	/* A complete frame; the bytes are valid only during the call. */
	void (*on_frame)(struct chat_conn *c, size_t len, const uint8_t *frame, void *arg);
	/* The connection closed: err is CHAT_OK for a local close, else the
	 * reason; reason is human text ("peer closed the connection", "frame of
	 * 70000 bytes exceeds the limit of 65536").  Called exactly once. */
	void (*on_close)(struct chat_conn *c, int err, const char *reason, void *arg);
	/* Optional: an outgoing connect finished (err CHAT_OK) - failures go to on_close. */
	void (*on_connect)(struct chat_conn *c, void *arg);
};

struct chat_conn_limits {
	size_t max_frame;  /* largest incoming frame */
	size_t out_limit;  /* most bytes queued before the peer is cut off as too slow */
};

/* Wrap an accepted or connected transport handle (ownership passes in, even on
 * failure).  cbs must outlive the connection (a static table). */
int chat_conn_new(struct chat_loop *loop, const struct chat_transport_ops *tp, void *handle,
                  const struct chat_conn_limits *lim, const struct chat_conn_cbs *cbs,
                  void *arg, struct chat_conn **out);
/* Start a non-blocking connect; on_connect or on_close reports the result. */
int chat_conn_connect(struct chat_loop *loop, const struct chat_transport_ops *tp,
                      const struct chat_host *host, const char *address,
                      const struct chat_conn_limits *lim, const struct chat_conn_cbs *cbs,
                      void *arg, struct chat_conn **out);

/* Queue one frame.  CHAT_ERR_NOSPACE: the queue limit was hit and the
 * connection has been closed with reason "output queue full". */
int chat_conn_send(struct chat_conn *c, size_t len, const uint8_t *frame);
/* Close after the queued output is written (or at once if nothing is queued). */
void chat_conn_close_after_flush(struct chat_conn *c, const char *reason);
/* Close at once.  err/reason are passed to on_close. */
void chat_conn_close(struct chat_conn *c, int err, const char *reason);

/* The peer's address as text, for log lines: valid until the next call. */
const char *chat_conn_peer(const struct chat_conn *c);
int chat_conn_is_open(const struct chat_conn *c);
/* The link's channel binding (transport op channel_binding, ABI 1.2):
 * CHAT_ERR_UNSUPPORTED for a link without one (plain TCP). */
int chat_conn_channel_binding(const struct chat_conn *c, const char *type, size_t cap,
                              uint8_t *dst, size_t *len);
/* One line on the link's protection ("TLS1.3 ..."); CHAT_ERR_UNSUPPORTED for
 * a plain stream (dst is then "").  Also callable from on_close. */
int chat_conn_describe(const struct chat_conn *c, size_t cap, char *dst);
size_t chat_conn_queued(const struct chat_conn *c);
void chat_conn_set_arg(struct chat_conn *c, void *arg);
/* Change the limits given at creation (a relay allows less before login).
 * max_frame applies to every frame whose header has not arrived yet, also
 * when called from on_frame for the frame before it; a frame in progress
 * keeps the limit it was accepted under.  Nothing is copied: the input
 * buffer never grows beyond the length a header declared under the limit
 * in force then.  out_limit applies to the next send: bytes already queued
 * stay, and a send that would exceed the new limit closes the connection
 * ("output queue full"). */
void chat_conn_set_limits(struct chat_conn *c, const struct chat_conn_limits *lim);

#endif
