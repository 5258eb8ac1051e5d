/* The socket half of the TCP-based transports (tcp_sock.h), moved here
 * from transport-tcp's tcp.c so that transport-tls runs on the very same
 * code; the log lines are transport-tcp's own. */
#define _GNU_SOURCE /* accept4 */

#include "tcp_sock.h"
#include "plugin_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TCP_ACCEPT_RETRIES 16
#define TCP_FDLIMIT_LOG_MS 10000

/* A host table from an older core may end before the members we use. */
bool tcp_host_ok(const struct chat_host *host)
{
	return CHAT_PU_HOST_HAS(host, config_get);
}

/* The core already validated the values; fall back to the default anyway
 * rather than trust text blindly. */
int tcp_config_int(const struct chat_host *host, const char *key, int def,
                          int min, int max)
{
	const char *s = chat_pu_config(host, key, NULL);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return def;
	return (int)v;
}

bool tcp_config_bool(const struct chat_host *host, const char *key, bool def)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	const char *s = chat_pu_config(host, key, NULL);

	if (!s)
		return def;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i]))
			return true;
		if (!strcasecmp(s, no[i]))
			return false;
	}
	return def;
}

/* Split address into host and port.  On success host holds the name or
 * literal without brackets, port the decimal digits, *v6 whether the host
 * was bracketed. */
int tcp_parse(const struct chat_host *host, const char *address, const char *shown,
                     char hostbuf[TCP_HOST_MAX], char portbuf[6], unsigned *port,
                     bool *v6)
{
	const char *h, *hend, *p, *why;
	size_t hlen, plen;
	unsigned long v = 0;

	hostbuf[0] = '\0';
	portbuf[0] = '\0';
	*port = 0;
	*v6 = false;

	if (address[0] == '[') {
		h = address + 1;
		hend = strchr(h, ']');
		if (!hend) {
			why = "unbalanced '['";
			goto bad;
		}
		if (hend[1] != ':') {
			why = "missing ':port' after ']'";
			goto bad;
		}
		p = hend + 2;
		*v6 = true;
	} else {
		h = address;
		hend = strchr(h, ':');
		if (!hend) {
			why = "missing ':port'";
			goto bad;
		}
		if (strchr(hend + 1, ':')) {
			why = "too many ':' (write IPv6 addresses as [addr]:port)";
			goto bad;
		}
		p = hend + 1;
	}

	hlen = (size_t)(hend - h);
	if (hlen == 0) {
		why = "empty host";
		goto bad;
	}
	if (hlen >= TCP_HOST_MAX) {
		why = "host too long";
		goto bad;
	}
	for (size_t i = 0; i < hlen; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c <= ' ' || c == 0x7f || c == '[' || c == ']') {
			why = "invalid character in host";
			goto bad;
		}
	}

	plen = strlen(p);
	if (plen == 0) {
		why = "empty port";
		goto bad;
	}
	if (plen > 5) {
		why = "port out of range";
		goto bad;
	}
	for (size_t i = 0; i < plen; i++) {
		if (p[i] < '0' || p[i] > '9') {
			why = "port is not a decimal number";
			goto bad;
		}
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v > 65535) {
		why = "port out of range";
		goto bad;
	}

	memcpy(hostbuf, h, hlen);
	hostbuf[hlen] = '\0';

	/* Brackets hold an IPv6 literal, never a name or an IPv4 address; the
	 * %scope suffix is left for getaddrinfo to interpret. */
	if (*v6) {
		struct in6_addr a6;
		char lit[TCP_HOST_MAX];
		size_t n = strcspn(hostbuf, "%");

		memcpy(lit, hostbuf, n);
		lit[n] = '\0';
		if (inet_pton(AF_INET6, lit, &a6) != 1) {
			hostbuf[0] = '\0';
			why = "not an IPv6 literal inside [ ]";
			goto bad;
		}
	}

	memcpy(portbuf, p, plen + 1);
	*port = (unsigned)v;
	return CHAT_OK;
bad:
	*v6 = false;
	chat_pu_log(host, CHAT_LOG_ERROR, "bad address '%s': %s (expected host:port or [v6]:port)",
	            shown, why);
	return CHAT_ERR_ADDRESS;
}

/* shown: address made safe for the log. */
static int tcp_resolve(const struct chat_host *host, const char *address, const char *shown,
                       bool passive, struct addrinfo **res)
{
	char hostbuf[TCP_HOST_MAX], portbuf[6];
	struct addrinfo hints;
	unsigned port;
	bool v6;
	int rc, gai;

	*res = NULL;
	rc = tcp_parse(host, address, shown, hostbuf, portbuf, &port, &v6);
	if (rc)
		return rc;
	if (port == 0 && !passive) {
		chat_pu_log(host, CHAT_LOG_ERROR, "bad address '%s': cannot connect to port 0",
		            shown);
		return CHAT_ERR_ADDRESS;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* No AI_ADDRCONFIG: glibc ignores loopback for it, so "localhost" would
	 * stop resolving on a host whose only interface is lo. */
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | (v6 ? AI_NUMERICHOST : 0);

	gai = getaddrinfo(hostbuf, portbuf, &hints, res);
	if (gai == 0 && !*res)
		gai = EAI_NONAME;
	switch (gai) {
	case 0:
		return CHAT_OK;
	case EAI_MEMORY:
		rc = CHAT_ERR_NOMEM;
		break;
	case EAI_SYSTEM:
		rc = CHAT_ERR_IO;
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot resolve '%s': %s", shown,
		            strerror(errno));
		goto out;
	default:
		/* EAI_NONAME, EAI_AGAIN, EAI_FAIL, EAI_NODATA, EAI_ADDRFAMILY... */
		rc = CHAT_ERR_RESOLVE;
		break;
	}
	chat_pu_log(host, CHAT_LOG_ERROR, "cannot resolve '%s': %s", shown, gai_strerror(gai));
out:
	if (*res) {
		freeaddrinfo(*res);
		*res = NULL;
	}
	return rc;
}

/* "1.2.3.4:port" or "[v6%scope]:port"; CHAT_ERR_NOSPACE if it does not fit. */
int tcp_format(const struct sockaddr *sa, size_t cap, char *dst)
{
	char ip[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 1] = "";
	unsigned port;
	int n;

	if (cap)
		dst[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		if (!inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip)))
			return CHAT_ERR_IO;
		port = ntohs(s4->sin_port);
		n = snprintf(NULL, 0, "%s:%u", ip, port);
		if (n < 0 || (size_t)n >= cap)
			return CHAT_ERR_NOSPACE;
		snprintf(dst, cap, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		char ifname[IF_NAMESIZE];

		if (!inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip)))
			return CHAT_ERR_IO;
		if (s6->sin6_scope_id) {
			if (if_indextoname(s6->sin6_scope_id, ifname))
				snprintf(scope, sizeof(scope), "%%%s", ifname);
			else
				snprintf(scope, sizeof(scope), "%%%u", (unsigned)s6->sin6_scope_id);
		}
		port = ntohs(s6->sin6_port);
		n = snprintf(NULL, 0, "[%s%s]:%u", ip, scope, port);
		if (n < 0 || (size_t)n >= cap)
			return CHAT_ERR_NOSPACE;
		snprintf(dst, cap, "[%s%s]:%u", ip, scope, port);
	} else {
		errno = EAFNOSUPPORT;
		return CHAT_ERR_IO;
	}
	return CHAT_OK;
}

/* Later stages of an attempt say more about why it failed than earlier ones
 * (a refused connect beats "no IPv6 here"), so keep the error of the attempt
 * that got furthest, the first one among equals. */
static void tcp_keep_error(int *saved, int *saved_stage, int err, int stage)
{
	if (!*saved || stage > *saved_stage) {
		*saved = err;
		*saved_stage = stage;
	}
}

static void tcp_set_nodelay(const struct chat_host *host, int fd, bool on)
{
	int v = on;

	/* Only latency suffers if this fails, so the connection goes ahead. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) < 0)
		chat_pu_log(host, CHAT_LOG_DEBUG, "TCP_NODELAY: %s", strerror(errno));
}

static void tcp_sock_init(struct tcp_sock *t, const struct chat_host *host, int fd, int kind)
{
	memset(t, 0, sizeof(*t));
	t->host = host;
	t->fd = fd;
	t->kind = kind;
	t->nodelay = true;
	t->finish = CHAT_ERR_INPROGRESS;
}

int tcp_sock_listen(const struct chat_host *host, const char *address, int backlog,
                    struct tcp_sock *out)
{
	struct addrinfo *res = NULL, *ai;
	int fd = -1, saved = 0, stage = 0, rc, one = 1, err;
	char where[CHAT_ADDR_MAX], shown[CHAT_ADDR_MAX];

	chat_pu_quote_ascii(sizeof(shown), shown, address);
	rc = tcp_resolve(host, address, shown, true, &res);
	if (rc)
		goto out;

	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0) {
			tcp_keep_error(&saved, &stage, errno, 1);
			continue;
		}
		/* Restart without waiting out TIME_WAIT; two listeners on one port
		 * are still refused by the kernel. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
			goto next;
		/* One address, one family: "[::]:p" must not also take IPv4's port. */
		if (ai->ai_family == AF_INET6 &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
			goto next;
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			tcp_keep_error(&saved, &stage, errno, 2);
			goto close_next;
		}
		if (listen(fd, backlog) < 0) {
			tcp_keep_error(&saved, &stage, errno, 3);
			goto close_next;
		}
		break;
next:
		tcp_keep_error(&saved, &stage, errno, 1);
close_next:
		err = errno;
		if (ai->ai_next) {
			if (tcp_format(ai->ai_addr, sizeof(where), where))
				snprintf(where, sizeof(where), "?");
			chat_pu_log(host, CHAT_LOG_DEBUG,
			            "listen on %s: %s, trying the next address", where,
			            strerror(err));
		}
		close(fd);
		fd = -1;
	}

	if (fd < 0) {
		errno = saved;
		switch (saved) {
		case EADDRINUSE:
			rc = CHAT_ERR_ADDRINUSE;
			break;
		case EADDRNOTAVAIL:
		case EAFNOSUPPORT:
			rc = CHAT_ERR_ADDRESS;
			break;
		default:
			rc = CHAT_ERR_IO;
			break;
		}
		/* ADDRINUSE says it all; for the others the errno is the detail. */
		chat_pu_log(host, rc == CHAT_ERR_ADDRINUSE ? CHAT_LOG_DEBUG : CHAT_LOG_ERROR,
		            "cannot listen on '%s': %s", shown, strerror(saved));
		goto out;
	}
	tcp_sock_init(out, host, fd, TCP_LISTENER);
	rc = CHAT_OK;
out:
	if (res)
		freeaddrinfo(res);
	return rc;
}

/* The resource errors of accept, named: what to raise is in the name. */
static const char *tcp_accept_error(int e)
{
	switch (e) {
	case EMFILE: return "too many open files (EMFILE)";
	case ENFILE: return "too many open files in the system (ENFILE)";
	case ENOBUFS: return "out of kernel memory (ENOBUFS)";
	case ENOMEM: return "out of kernel memory (ENOMEM)";
	default: return strerror(e);
	}
}

int tcp_sock_accept(struct tcp_sock *l, struct tcp_sock *out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = -1;

	/* Errors that belong to one aborted connection in the queue must not
	 * stop us from taking the next; the bound keeps a storm finite. */
	for (int tries = 0;; tries++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return CHAT_ERR_AGAIN;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case EOPNOTSUPP:
		case ENETUNREACH:
			chat_pu_log(l->host, CHAT_LOG_DEBUG, "accept: %s", strerror(errno));
			if (tries >= TCP_ACCEPT_RETRIES)
				return CHAT_ERR_AGAIN;
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM: {
			/* The connection stays queued and the listener stays readable,
			 * so this repeats on every loop turn: log it now and then. */
			uint64_t now = l->host->monotonic_ms ? l->host->monotonic_ms(l->host) : 0;

			if (!l->fdlimit_ms || now - l->fdlimit_ms >= TCP_FDLIMIT_LOG_MS) {
				chat_pu_log(l->host, CHAT_LOG_ERROR, "accept: %s; the connection waits in the "
				            "backlog", tcp_accept_error(errno));
				l->fdlimit_ms = now ? now : 1;
			}
			return CHAT_ERR_IO;
		}
		default:
			chat_pu_log(l->host, CHAT_LOG_ERROR, "accept: %s", strerror(errno));
			return CHAT_ERR_IO;
		}
	}

	tcp_sock_init(out, l->host, fd, TCP_CONN);
	out->finish = CHAT_OK;
	tcp_set_nodelay(l->host, fd, l->nodelay);
	if (tcp_format((struct sockaddr *)&ss, sizeof(out->peer), out->peer))
		snprintf(out->peer, sizeof(out->peer), "?");
	chat_pu_log(l->host, CHAT_LOG_DEBUG, "accepted connection from %s", out->peer);
	return CHAT_OK;
}

static int tcp_map_connect_errno(int e)
{
	switch (e) {
	case 0:
		return CHAT_OK;
	case EINPROGRESS:
	case EALREADY:
	case EINTR: /* a non-blocking connect carries on in the background */
		return CHAT_ERR_INPROGRESS;
	case ECONNREFUSED:
		return CHAT_ERR_REFUSED;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return CHAT_ERR_UNREACHABLE;
	case ETIMEDOUT:
		return CHAT_ERR_TIMEOUT;
	case EAFNOSUPPORT:
		return CHAT_ERR_ADDRESS;
	case ENOMEM:
		return CHAT_ERR_NOMEM;
	default:
		return CHAT_ERR_IO;
	}
}

int tcp_sock_connect(const struct chat_host *host, const char *address, bool nodelay,
                     struct tcp_sock *out)
{
	struct addrinfo *res = NULL, *ai;
	int fd = -1, saved = 0, stage = 0, rc;
	char where[CHAT_ADDR_MAX], shown[CHAT_ADDR_MAX];

	chat_pu_quote_ascii(sizeof(shown), shown, address);
	rc = tcp_resolve(host, address, shown, false, &res);
	if (rc)
		goto out;

	for (ai = res; ai; ai = ai->ai_next) {
		if (tcp_format(ai->ai_addr, sizeof(where), where))
			snprintf(where, sizeof(where), "?");
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0) {
			tcp_keep_error(&saved, &stage, errno, 1);
			if (ai->ai_next)
				chat_pu_log(host, CHAT_LOG_DEBUG,
				            "connect to %s: socket: %s, trying the next address",
				            where, strerror(errno));
			continue;
		}
		tcp_set_nodelay(host, fd, nodelay);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			rc = CHAT_OK;
			break;
		}
		rc = tcp_map_connect_errno(errno);
		if (rc == CHAT_ERR_INPROGRESS)
			break;
		tcp_keep_error(&saved, &stage, errno, 2);
		if (ai->ai_next)
			chat_pu_log(host, CHAT_LOG_DEBUG,
			            "connect to %s: %s, trying the next address", where,
			            strerror(errno));
		close(fd);
		fd = -1;
	}

	if (fd < 0) {
		errno = saved;
		rc = tcp_map_connect_errno(saved);
		if (rc == CHAT_OK || rc == CHAT_ERR_INPROGRESS)
			rc = CHAT_ERR_IO; /* cannot happen: only failures are saved */
		chat_pu_log(host, rc == CHAT_ERR_IO ? CHAT_LOG_ERROR : CHAT_LOG_DEBUG,
		            "cannot connect to '%s': %s", shown, strerror(saved));
		goto out;
	}

	tcp_sock_init(out, host, fd, TCP_CONN);
	out->finish = rc;
	size_t wlen = strnlen(where, sizeof(out->peer) - 1); /* numeric: always fits */
	memcpy(out->peer, where, wlen);
	out->peer[wlen] = '\0';
out:
	if (res)
		freeaddrinfo(res);
	return rc;
}

int tcp_sock_connect_finish(struct tcp_sock *t)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int err = 0, rc;
	socklen_t el = sizeof(err);

	if (t->finish != CHAT_ERR_INPROGRESS)
		return t->finish;

	if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
		chat_pu_log(t->host, CHAT_LOG_ERROR, "connect to %s: SO_ERROR: %s", t->peer,
		            strerror(errno));
		return CHAT_ERR_IO;
	}
	if (err == 0) {
		/* SO_ERROR is also 0 while the handshake is still running. */
		if (getpeername(t->fd, (struct sockaddr *)&ss, &sl) == 0) {
			t->finish = CHAT_OK;
			chat_pu_log(t->host, CHAT_LOG_DEBUG, "connected to %s", t->peer);
			return CHAT_OK;
		}
		if (errno == ENOTCONN)
			return CHAT_ERR_INPROGRESS;
		err = errno;
	}
	rc = tcp_map_connect_errno(err);
	if (rc == CHAT_ERR_INPROGRESS)
		return rc;
	if (rc == CHAT_OK || rc == CHAT_ERR_ADDRESS || rc == CHAT_ERR_NOMEM)
		rc = CHAT_ERR_IO;
	t->finish = rc;
	chat_pu_log(t->host, rc == CHAT_ERR_IO ? CHAT_LOG_ERROR : CHAT_LOG_DEBUG,
	            "connect to %s: %s", t->peer, strerror(err));
	errno = err;
	return rc;
}

int tcp_sock_address(const struct tcp_sock *t, int local, size_t cap, char *dst)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t n;

	if (!local) {
		if (t->kind != TCP_CONN)
			return CHAT_ERR_INVALID;
		n = strlen(t->peer);
		if (n >= cap)
			return CHAT_ERR_NOSPACE;
		memcpy(dst, t->peer, n + 1);
		return CHAT_OK;
	}

	if (getsockname(t->fd, (struct sockaddr *)&ss, &sl) < 0) {
		chat_pu_log(t->host, CHAT_LOG_ERROR, "getsockname: %s", strerror(errno));
		return CHAT_ERR_IO;
	}
	return tcp_format((struct sockaddr *)&ss, cap, dst);
}
