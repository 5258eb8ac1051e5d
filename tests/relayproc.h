/* Helpers for end-to-end tests that drive chat-relay as a separate process
 * through raw sockets: start/stop the relay (under valgrind with
 * CHAT_VALGRIND=1), connect, frames, and relay protocol messages. */
#ifndef CHAT_TEST_RELAYPROC_H
#define CHAT_TEST_RELAYPROC_H

#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

struct relay {
	pid_t pid;
	int err_fd;      /* relay's stderr */
	char log[65536]; /* everything it printed so far */
	size_t log_len;
	char addr[128];
	char host[64];
	int port;
	int family;
	int eof; /* the relay closed its stderr: it has exited or is exiting */
	size_t lines;   /* lines it printed so far, also those past the end of log */
	size_t spilled; /* bytes read past the end of log, not kept */
};

/* When not 0, relay_start runs the relay with RLIMIT_NOFILE (soft and hard)
 * set to this. */
extern unsigned long relay_child_nofile;

/* The message being built (begin(), chat_put_*(&wb, ...), send_msg()). */
extern struct chat_wbuf wb;

/* relay_start(r, listen, extra args..., NULL): chat.ini from the source tree,
 * no database unless the extra args set relay.database.  0 once it listens,
 * else its exit status (or -1). */
int use_valgrind(void);
void relay_read_log(struct relay *r, int timeout_ms);
int relay_wait_log(struct relay *r, const char *text, int seconds);
int relay_start(struct relay *r, const char *listen, ...) __attribute__((sentinel));
int relay_stop(struct relay *r);
int dial_rcvbuf(const struct relay *r, int rcvbuf);
int dial(const struct relay *r);
/* From another loopback source address (e.g. "127.0.0.2"; the relay must
 * listen on IPv4 loopback): throttling per address sees another client. */
int dial_from(const struct relay *r, const char *local);
int send_all(int fd, const void *buf, size_t len);
int recv_all(int fd, void *buf, size_t len);
size_t put_frame(uint8_t *dst, size_t len, const uint8_t *src);
long read_frame(int fd, uint8_t *dst, size_t cap);
void begin(int type);
int send_msg(int fd);
int read_msg(int fd, struct chat_msg *m);
int expect_type(int fd, int type, struct chat_msg *m);
void put_hello(const char *suites);
int login(int fd, const char *name, const char *suites);
const char *error_for(int fd, unsigned *code);
int who_ok(int fd);
int converse(int a, const char *an, int b, const char *bn, const char *suite);
int sees_close(int fd);

/* Accounts: SCRAM-SHA-256 with the standard strings.  After a failure,
 * last_code/last_text hold the relay's ERROR; last_challenge the last
 * server-first message seen. */
extern unsigned last_code;
extern char last_text[CHAT_TEXT_MAX + 1];
extern char last_challenge[CHAT_TEXT_MAX + 1];
void put_verifier_for(const char *pw);
int hello(int fd);
int do_register(int fd, const char *name, const char *pw, unsigned *code);
int scram(int fd, int op, const char *name, const char *pw, struct chat_msg *out);
int connect_as(const struct relay *r, const char *name, const char *pw);
int connect_as_from(const struct relay *r, const char *local, const char *name, const char *pw);
int request_done(int fd);
void put_admin(int op, const char *name, const char *pw);
/* ANSWER an offer from `to` (accept 1 with suite, or 0 with a reason). */
void put_answer(const char *to, int accept, const char *suite, const char *reason);
int next_mail(int fd, struct chat_msg *inner, uint64_t *id, int ack);
int send_payload(int fd, const char *to, uint64_t id, const char *text);

#endif
