/* The socket half of the transports that run over TCP (transport-tcp, and
 * transport-tls underneath its TLS layer): address parsing and resolution,
 * listening, accepting, connecting, and addresses as text.  Each plugin
 * compiles tcp_sock.c into itself (plugins/common/ is not a plugin); the
 * functions are hidden like the rest of a plugin, so two plugins loaded
 * into one program never see each other's copy.
 *
 * Addresses are "host:port" (IPv4 literal or host name) or "[v6]:port"
 * (IPv6 literal, optionally with a %scope).  Port 0 means "any free port"
 * and is accepted only by listen.  Every failure is logged through the
 * plugin's host with the same words transport-tcp always used; on
 * CHAT_ERR_IO, errno still holds the system error. */
#ifndef CHAT_PLUGINS_TCP_SOCK_H
#define CHAT_PLUGINS_TCP_SOCK_H

#include <chat/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TCP_BACKLOG_DEFAULT 511
#define TCP_HOST_MAX 256 /* a DNS name is at most 253 characters */

enum tcp_kind {
	TCP_LISTENER = 1,
	TCP_CONN = 2,
};

/* A listening or connected socket.  A plugin embeds it (first, so that its
 * fd and address ops can take a listener or a connection alike). */
struct tcp_sock {
	const struct chat_host *host;
	int fd;
	int kind;            /* enum tcp_kind */
	bool nodelay;        /* listener: applied to accepted connections */
	int finish;          /* connection: CHAT_ERR_INPROGRESS until connect_finish knows */
	uint64_t fdlimit_ms; /* listener: when EMFILE was last logged */
	/* The peer as text, kept for logs and address() after a reset.  64 bytes
	 * hold any numeric "[v6%scope]:port"; the longer CHAT_ADDR_MAX would cost
	 * every idle connection of a relay 64 bytes for nothing. */
	char peer[64];
};

/* A host table from an older core may end before the members we use. */
bool tcp_host_ok(const struct chat_host *host);

/* The plugin's own [plugin.NAME] keys, with a fallback to def for text that
 * does not parse (the core validated it already). */
int tcp_config_int(const struct chat_host *host, const char *key, int def, int min, int max);
bool tcp_config_bool(const struct chat_host *host, const char *key, bool def);

/* Split address into host (without brackets) and port digits; *v6 when the
 * host was bracketed.  shown: the address as the log may show it.  Logs and
 * returns CHAT_ERR_ADDRESS when malformed. */
int tcp_parse(const struct chat_host *host, const char *address, const char *shown,
              char hostbuf[TCP_HOST_MAX], char portbuf[6], unsigned *port, bool *v6);

/* "1.2.3.4:port" or "[v6%scope]:port"; CHAT_ERR_NOSPACE if it does not fit. */
int tcp_format(const struct sockaddr *sa, size_t cap, char *dst);

/* Listen on address with the given backlog (SO_REUSEADDR; IPV6_V6ONLY on
 * IPv6).  On success *out is a TCP_LISTENER (nodelay true: set it from the
 * plugin's configuration). */
int tcp_sock_listen(const struct chat_host *host, const char *address, int backlog,
                    struct tcp_sock *out);

/* Accept one pending connection into *out (a TCP_CONN with its peer
 * address, TCP_NODELAY as l->nodelay): CHAT_OK, CHAT_ERR_AGAIN, or
 * CHAT_ERR_IO (resource errors are logged at most every 10 s). */
int tcp_sock_accept(struct tcp_sock *l, struct tcp_sock *out);

/* Start connecting: CHAT_OK (connected at once) or CHAT_ERR_INPROGRESS with
 * *out set, else the error (the next address of a name is tried only when
 * socket() or connect() fails at once). */
int tcp_sock_connect(const struct chat_host *host, const char *address, bool nodelay,
                     struct tcp_sock *out);

/* After the fd became writable: CHAT_OK, CHAT_ERR_INPROGRESS, or the reason
 * the connection failed (remembered: later calls return it again). */
int tcp_sock_connect_finish(struct tcp_sock *t);

/* The local (local=1) or peer (local=0) address; a listener has no peer. */
int tcp_sock_address(const struct tcp_sock *t, int local, size_t cap, char *dst);

#endif
