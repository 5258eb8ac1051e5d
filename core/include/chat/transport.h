/* Transport plugins: non-blocking byte streams with a pollable fd.  The core
 * runs the event loop; a transport never blocks except in name resolution. */
#ifndef CHAT_TRANSPORT_H
#define CHAT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <chat/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest textual address a transport reports ("[v6]:port" fits easily). */
#define CHAT_ADDR_MAX 128

/* For interest(): what the caller wants to do / which readiness to wait for. */
#define CHAT_TP_READ 1u
#define CHAT_TP_WRITE 2u

struct chat_transport_ops {
	uint32_t size; /* sizeof(struct chat_transport_ops) as the plugin was built */

	/* Listen on address (transport-specific syntax, e.g. "127.0.0.1:7400",
	 * "[::1]:0").  *listener is set only on success.  Errors:
	 * CHAT_ERR_ADDRESS, CHAT_ERR_RESOLVE, CHAT_ERR_ADDRINUSE, CHAT_ERR_IO. */
	int (*listen)(const struct chat_host *host, const char *address, void **listener);

	/* Accept one pending connection: CHAT_OK with *conn set, or
	 * CHAT_ERR_AGAIN when none is pending. */
	int (*accept)(void *listener, void **conn);

	/* Start connecting.  CHAT_OK if connected at once, CHAT_ERR_INPROGRESS if
	 * the caller must wait for the fd to become writable and then call
	 * connect_finish; *conn is set in both cases.  Other errors as listen,
	 * plus CHAT_ERR_REFUSED, CHAT_ERR_UNREACHABLE. */
	int (*connect)(const struct chat_host *host, const char *address, void **conn);

	/* After the fd became writable: CHAT_OK, CHAT_ERR_INPROGRESS (not yet) or
	 * the reason the connection failed. */
	int (*connect_finish)(void *conn);

	/* Read up to len bytes: CHAT_OK with *got > 0, CHAT_ERR_AGAIN, CHAT_ERR_CLOSED
	 * (orderly end of stream), CHAT_ERR_RESET or CHAT_ERR_IO. */
	int (*read)(void *conn, size_t len, uint8_t *dst, size_t *got);

	/* Write up to len bytes: CHAT_OK with *sent > 0 (may be short), CHAT_ERR_AGAIN,
	 * CHAT_ERR_CLOSED, CHAT_ERR_RESET or CHAT_ERR_IO.  Never raises SIGPIPE. */
	int (*write)(void *conn, size_t len, const uint8_t *src, size_t *sent);

	/* The fd to wait on (readable for read/accept, writable for write/connect). */
	int (*fd)(void *handle);

	/* Textual address of the local end (local=1) or the peer (local=0) of a
	 * connection or listener; for a listener on port 0 this reports the port
	 * actually bound. */
	int (*address)(void *handle, int local, size_t cap, char *dst);

	/* Close and free a connection / a listener.  NULL is allowed. */
	void (*close)(void *conn);
	void (*listener_close)(void *listener);

	/* ---- ABI 1.2: optional ops (NULL, or beyond size, when absent). ---- */

	/* Which readiness of fd() to wait for, given what the caller wants
	 * (CHAT_TP_READ: it wants input; CHAT_TP_WRITE: it has output).  A
	 * stream that runs its own protocol underneath (a TLS handshake or key
	 * update) may need to read before it can write or the reverse.  Absent:
	 * want itself.  The caller calls read()/write()/connect_finish() when
	 * the fd is ready for what this returned, and asks again after each. */
	unsigned (*interest)(void *conn, unsigned want);

	/* Bytes already taken from the fd and ready for read() (a TLS record
	 * decrypted but not yet returned): the fd will not signal them.
	 * Absent: 0. */
	size_t (*pending)(void *conn);

	/* Channel-binding data of an established connection for the named type
	 * ("tls-exporter", RFC 9266: 32 bytes).  CHAT_OK with *len set;
	 * CHAT_ERR_UNSUPPORTED when this link has no such binding; CHAT_ERR_STATE
	 * before the secure link is up. */
	int (*channel_binding)(void *conn, const char *type, size_t cap, uint8_t *dst, size_t *len);

	/* A sentence on why the last call on conn failed, for people ("the
	 * relay's certificate expired on 2020-02-01 (127.0.0.1:7400)"), or NULL
	 * when the error code says it all.  Valid until the next call on conn. */
	const char *(*last_error)(void *conn);

	/* One line on the link's protection for users, e.g. "TLS1.3
	 * AES-256-GCM, relay key sha256:ab12..."; CHAT_ERR_STATE before it is
	 * up.  Absent: the link is a plain byte stream. */
	int (*describe)(void *conn, size_t cap, char *dst);

	/* The fingerprint ("sha256:" + 64 hex digits) of the key this side
	 * presents when it listens, created if the configuration says to
	 * create it (chat-relay --fingerprint). */
	int (*local_fingerprint)(const struct chat_host *host, size_t cap, char *dst);
};

#ifdef __cplusplus
}
#endif
#endif
