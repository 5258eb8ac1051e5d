/* TCP transport: non-blocking stream sockets over IPv4 and IPv6.
 *
 * Addresses are "host:port" (IPv4 literal or host name) or "[v6]:port"
 * (IPv6 literal, optionally with a %scope).  Port 0 means "any free port"
 * and is accepted only by listen.  Listeners and connections share one
 * handle type so the fd and address ops take either.
 *
 * Choices a caller can rely on:
 * - write() with len 0 returns CHAT_OK with *sent == 0 and makes no system
 *   call; read() with len 0 is CHAT_ERR_INVALID (CHAT_OK promises *got > 0).
 * - address(listener, 0, ...) is CHAT_ERR_INVALID: a listener has no peer.
 *   A connection's peer address is remembered at connect/accept time, so it
 *   stays available while connecting and after the peer reset.
 * - connect_finish() remembers its outcome: once a connection failed, every
 *   later call returns the same error (SO_ERROR is cleared when read).
 * - On CHAT_ERR_IO, errno still holds the system error.
 * - fd() returns a negative error code for a NULL handle.
 * - A host name resolving to several addresses: listen binds the first one
 *   that works; connect tries the next only when socket() or connect()
 *   fails at once (an asynchronous failure is reported, not retried).
 *
 * The socket code itself (parsing, resolving, listen, accept, connect) is
 * plugins/common/tcp_sock.c, shared with transport-tls. */
#define _GNU_SOURCE

#include <chat/plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugin_util.h"
#include "tcp_sock.h"

/* Listeners and connections share one handle type. */
struct tcp_handle {
	struct tcp_sock s;
};

static int tcp_listen(const struct chat_host *host, const char *address, void **listener)
{
	struct tcp_handle *t;
	struct tcp_sock s;
	int rc, backlog;

	if (listener)
		*listener = NULL;
	if (!tcp_host_ok(host) || !address || !listener)
		return CHAT_ERR_INVALID;

	backlog = tcp_config_int(host, "backlog", TCP_BACKLOG_DEFAULT, 1, 65535);
	rc = tcp_sock_listen(host, address, backlog, &s);
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(s.fd);
		return CHAT_ERR_NOMEM;
	}
	t->s = s;
	t->s.nodelay = tcp_config_bool(host, "nodelay", true);
	*listener = t;
	return CHAT_OK;
}

static int tcp_accept(void *listener, void **conn)
{
	struct tcp_handle *l = listener, *t;
	struct tcp_sock s;
	int rc;

	if (conn)
		*conn = NULL;
	if (!l || l->s.kind != TCP_LISTENER || !conn)
		return CHAT_ERR_INVALID;

	rc = tcp_sock_accept(&l->s, &s);
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(s.fd);
		return CHAT_ERR_NOMEM;
	}
	t->s = s;
	*conn = t;
	return CHAT_OK;
}

static int tcp_connect(const struct chat_host *host, const char *address, void **conn)
{
	struct tcp_handle *t;
	struct tcp_sock s;
	int rc;

	if (conn)
		*conn = NULL;
	if (!tcp_host_ok(host) || !address || !conn)
		return CHAT_ERR_INVALID;

	rc = tcp_sock_connect(host, address, tcp_config_bool(host, "nodelay", true), &s);
	if (rc != CHAT_OK && rc != CHAT_ERR_INPROGRESS)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(s.fd);
		return CHAT_ERR_NOMEM;
	}
	t->s = s;
	*conn = t;
	return rc;
}

static int tcp_connect_finish(void *conn)
{
	struct tcp_handle *t = conn;

	if (!t || t->s.kind != TCP_CONN)
		return CHAT_ERR_INVALID;
	return tcp_sock_connect_finish(&t->s);
}

static int tcp_read(void *conn, size_t len, uint8_t *dst, size_t *got)
{
	struct tcp_handle *t = conn;
	ssize_t n;

	if (got)
		*got = 0;
	if (!t || t->s.kind != TCP_CONN || !dst || !got || len == 0)
		return CHAT_ERR_INVALID;

	do
		n = recv(t->s.fd, dst, len, 0);
	while (n < 0 && errno == EINTR);

	if (n > 0) {
		*got = (size_t)n;
		return CHAT_OK;
	}
	if (n == 0) {
		chat_pu_log(t->s.host, CHAT_LOG_DEBUG, "%s closed the connection", t->s.peer);
		return CHAT_ERR_CLOSED;
	}
	switch (errno) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
		return CHAT_ERR_AGAIN;
	case ECONNRESET:
		chat_pu_log(t->s.host, CHAT_LOG_DEBUG, "%s reset the connection", t->s.peer);
		return CHAT_ERR_RESET;
	default:
		chat_pu_log(t->s.host, CHAT_LOG_ERROR, "read from %s: %s", t->s.peer,
		            strerror(errno));
		return CHAT_ERR_IO;
	}
}

static int tcp_write(void *conn, size_t len, const uint8_t *src, size_t *sent)
{
	struct tcp_handle *t = conn;
	ssize_t n;

	if (sent)
		*sent = 0;
	if (!t || t->s.kind != TCP_CONN || !sent || (!src && len))
		return CHAT_ERR_INVALID;
	/* Nothing to send is not an error for a caller flushing an empty queue. */
	if (len == 0)
		return CHAT_OK;

	do
		n = send(t->s.fd, src, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);

	if (n > 0) {
		*sent = (size_t)n;
		return CHAT_OK;
	}
	if (n == 0)
		return CHAT_ERR_AGAIN; /* send() never does this for len > 0 */
	switch (errno) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
		return CHAT_ERR_AGAIN;
	case EPIPE:
		chat_pu_log(t->s.host, CHAT_LOG_DEBUG, "write to %s: connection closed", t->s.peer);
		return CHAT_ERR_CLOSED;
	case ECONNRESET:
		chat_pu_log(t->s.host, CHAT_LOG_DEBUG, "%s reset the connection", t->s.peer);
		return CHAT_ERR_RESET;
	default:
		chat_pu_log(t->s.host, CHAT_LOG_ERROR, "write to %s: %s", t->s.peer,
		            strerror(errno));
		return CHAT_ERR_IO;
	}
}

static int tcp_fd(void *handle)
{
	struct tcp_handle *t = handle;

	if (!t)
		return CHAT_ERR_INVALID;
	return t->s.fd;
}

static int tcp_address(void *handle, int local, size_t cap, char *dst)
{
	struct tcp_handle *t = handle;

	if (dst && cap)
		dst[0] = '\0';
	if (!t || !dst)
		return CHAT_ERR_INVALID;
	return tcp_sock_address(&t->s, local, cap, dst);
}

/* One handle type, so either close works on either kind. */
static void tcp_close(void *handle)
{
	struct tcp_handle *t = handle;

	if (!t)
		return;
	close(t->s.fd);
	free(t);
}

static const struct chat_transport_ops tcp_ops = {
	.size = sizeof(struct chat_transport_ops),
	.listen = tcp_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.connect_finish = tcp_connect_finish,
	.read = tcp_read,
	.write = tcp_write,
	.fd = tcp_fd,
	.address = tcp_address,
	.close = tcp_close,
	.listener_close = tcp_close,
};

static const struct chat_config_key tcp_config_keys[] = {
	{ .name = "backlog", .type = CHAT_CONFIG_INT, .def = "511", .min = 1, .max = 65535,
	  .help = "length of the queue of connections not yet accepted" },
	{ .name = "nodelay", .type = CHAT_CONFIG_BOOL, .def = "true",
	  .help = "send small messages at once (TCP_NODELAY)" },
	{ .name = NULL },
};

static const struct chat_plugin tcp_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_TRANSPORT,
	.flags = 0,
	.name = "tcp",
	.version = "1.0.0",
	.summary = "TCP over IPv4 and IPv6 (host:port, [v6]:port)",
	.config_keys = tcp_config_keys,
	.ops.transport = &tcp_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &tcp_plugin;
}
