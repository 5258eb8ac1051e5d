/* An in-memory transport for the engine harnesses (relay, client, peer): a
 * struct chat_transport_ops whose connections read what the harness pushed
 * and keep what the engine wrote, so an engine runs on its real event loop
 * without a socket.  Each connection's fd is an eventfd that is always
 * readable and writable (the loop polls it like a socket; a read with
 * nothing pushed is CHAT_ERR_AGAIN).  Everything is freed by fakenet_reset. */
#ifndef CHAT_FAKENET_H
#define CHAT_FAKENET_H

#include <stddef.h>
#include <stdint.h>

#include <chat/plugin.h>

#include "frame.h"
#include "loop.h"

struct fake_conn {
	struct fake_conn *next;
	int fd;
	int closed;          /* the engine closed it */
	int eof;             /* after the pushed bytes: end of stream (or reset) */
	int reset;
	char addr[64];       /* the peer's address the engine sees */
	char local[64];
	uint8_t *in;         /* pushed, not yet read */
	size_t in_len, in_off;
	uint8_t *out;        /* written by the engine, not yet taken */
	size_t out_len, out_cap;
	struct chat_frame_decoder dec; /* over out, for fake_next_frame */
	size_t out_off;
	uint8_t *frame;      /* the last frame fake_next_frame returned (a copy) */
	size_t write_budget; /* 0: take all; else bytes taken per write (short writes) */
};

struct fake_listener {
	int fd;
	struct fake_conn *pending[8];
	size_t npending;
};

extern const struct chat_transport_ops fake_ops;

/* Connections made by connect() (client, peer): the newest first. */
struct fake_conn *fake_connected(void);
/* A listener made by listen(), if any. */
struct fake_listener *fake_the_listener(void);

/* A new connection; with a listener, queue it for accept(). */
struct fake_conn *fake_conn_new(const char *addr);
void fake_listener_queue(struct fake_listener *l, struct fake_conn *c);

void fake_push(struct fake_conn *c, size_t len, const void *data);
void fake_push_frame(struct fake_conn *c, size_t len, const void *frame);
void fake_push_eof(struct fake_conn *c);

/* The next whole frame the engine wrote on c: 1 with *frame and *len (valid until
 * the next call), or 0 when none is complete. */
int fake_next_frame(struct fake_conn *c, const uint8_t **frame, size_t *len);

/* Run loop rounds (timeout 0) until nothing moved, at most max rounds. */
void fake_run(struct chat_loop *loop, int max);

/* Free every connection and the listener (after the engine and its loop). */
void fakenet_reset(void);

#endif
