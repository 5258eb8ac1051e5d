/* TLS transport: TLS 1.3 (1.2 on request) with GnuTLS over the TCP sockets
 * of plugins/common/tcp_sock.c.  Everything is non-blocking and runs inside
 * the core's loop: a connecting side's handshake runs in connect_finish()
 * (CHAT_ERR_INPROGRESS until it is done and the server's key is trusted,
 * see tls_trust.c), an accepting side's lazily in read()/write()
 * (CHAT_ERR_AGAIN until done).  interest() tells the core which readiness
 * the handshake waits for; pending() the bytes of a record already
 * decrypted.  ALPN "chat/1" is required by both sides.
 *
 * Choices a caller can rely on:
 * - connect() never returns CHAT_OK: the handshake always follows.
 * - write() after CHAT_ERR_AGAIN: gnutls holds the encrypted record; the
 *   next write() must offer the same bytes first (the core's output queue
 *   does), and reports them sent once the record is out.
 * - Failures are final (every later call returns the same code); last_error()
 *   says why in a sentence naming the peer.
 * - Randomness for TLS and the self-signed key comes from gnutls's own
 *   generator, not host->random: gnutls cannot take another one.  The
 *   host's clock is used for certificate dates (tls_trust.c). */
#define _GNU_SOURCE

#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>


#define TLS_ERR_MAX 1024
#define TLS_RETRIES 8 /* non-fatal gnutls returns (warning alerts) in a row */

/* ---- errors and configuration */

void tls_set_error(struct tls_conn *c, const char *fmt, ...)
{
	char text[TLS_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	free(c->err);
	c->err = strdup(text); /* NULL on no memory: then the code speaks alone */
	chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s", text);
}

int tls_min_version(const struct chat_host *host, const char **prio_text)
{
	const char *v = chat_pu_config(host, "min_version", "");

	if (!*v || !strcmp(v, "1.3")) {
		*prio_text = TLS_PRIO_13;
		return CHAT_OK;
	}
	if (!strcmp(v, "1.2")) {
		*prio_text = TLS_PRIO_12;
		return CHAT_OK;
	}
	char q[64];
	chat_pu_quote_ascii(sizeof(q), q, v);
	chat_pu_log(host, CHAT_LOG_ERROR, "[plugin.tls] min_version: '%s' is neither 1.3 nor 1.2",
	            q);
	return CHAT_ERR_CONFIG;
}

/* The ABI 1.2 host (state_dir) is what this plugin is built for. */
static bool tls_host_ok(const struct chat_host *host)
{
	return tcp_host_ok(host) && host->log && host->unix_ms && host->random && host->memeq &&
	       host->monotonic_ms;
}

/* The peer as people know it: the address the connecting side was given,
 * the numeric one on the accepting side. */
static const char *peer_name(const struct tls_conn *c)
{
	return c->v ? c->v->address : c->s.peer;
}

/* ---- the socket under gnutls: never SIGPIPE, remember the first bytes */

/* One buffer for every connection's socket reads: the programs are
 * single-threaded, and what gnutls does not take at once is copied out. */
static uint8_t pull_buf[64 * 1024];

static size_t rbuf_left(const struct tls_conn *c)
{
	return c->rbuf ? c->rlen - c->roff : 0;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tls_conn *c = p;
	ssize_t n;

	if (rbuf_left(c)) { /* the rest of an earlier recv first */
		size_t k = rbuf_left(c) < len ? rbuf_left(c) : len;
		memcpy(buf, c->rbuf + c->roff, k);
		c->roff += (uint32_t)k;
		if (c->roff == c->rlen) {
			free(c->rbuf);
			c->rbuf = NULL;
			c->rlen = c->roff = 0;
		}
		return (ssize_t)k;
	}
	/* Before the handshake is done, exactly what gnutls asks for (the
	 * first bytes tell a TLS peer from one that is not). */
	uint8_t *into = c->state == TLS_OPEN && len < sizeof(pull_buf) ? pull_buf : buf;
	size_t want = into == pull_buf ? sizeof(pull_buf) : len;
	do
		n = recv(c->s.fd, into, want, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		c->sys_errno = errno;
		gnutls_transport_set_errno(c->session, errno);
		return n;
	}
	if (n > 0 && c->nfirst < sizeof(c->first)) {
		size_t k = sizeof(c->first) - c->nfirst;
		memcpy(c->first + c->nfirst, into, (size_t)n < k ? (size_t)n : k);
		c->nfirst = (uint8_t)(c->nfirst + ((size_t)n < k ? (size_t)n : k));
	}
	if (into == pull_buf && (size_t)n > len) {
		c->rbuf = malloc((size_t)n - len);
		if (!c->rbuf) {
			c->sys_errno = ENOMEM;
			gnutls_transport_set_errno(c->session, ENOMEM);
			return -1;
		}
		memcpy(c->rbuf, pull_buf + len, (size_t)n - len);
		c->rlen = (uint32_t)((size_t)n - len);
		c->roff = 0;
		n = (ssize_t)len;
	}
	if (into == pull_buf)
		memcpy(buf, pull_buf, (size_t)n);
	return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
	struct tls_conn *c = p;
	struct msghdr m;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)(void *)iov; /* giovec_t is struct iovec's twin */
	m.msg_iovlen = (size_t)iovcnt;
	do
		n = sendmsg(c->s.fd, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		c->sys_errno = errno;
		gnutls_transport_set_errno(c->session, errno);
	}
	return n;
}

/* gnutls asks only in blocking use; this one never waits. */
static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct tls_conn *c = p;
	struct pollfd pfd = { .fd = c->s.fd, .events = POLLIN };

	(void)ms;
	if (rbuf_left(c))
		return 1;
	return poll(&pfd, 1, 0);
}

/* ---- the shared server state */

static void server_unref(struct tls_server *srv)
{
	if (!srv || --srv->refs)
		return;
	if (srv->creds)
		gnutls_certificate_free_credentials(srv->creds);
	if (srv->prio)
		gnutls_priority_deinit(srv->prio);
	free(srv);
}

static int server_new(const struct chat_host *host, struct tls_server **out)
{
	struct tls_server *srv = calloc(1, sizeof(*srv));
	const char *prio_text, *errpos = NULL;
	int rc;

	*out = NULL;
	if (!srv)
		return CHAT_ERR_NOMEM;
	srv->refs = 1;
	srv->host = host;
	if ((rc = tls_min_version(host, &prio_text)) != CHAT_OK)
		goto fail;
	if (gnutls_certificate_allocate_credentials(&srv->creds) < 0) {
		srv->creds = NULL;
		rc = CHAT_ERR_NOMEM;
		goto fail;
	}
	if ((rc = tls_load_identity(host, true, srv->creds, srv->fp)) != CHAT_OK)
		goto fail;
	if (gnutls_priority_init2(&srv->prio, prio_text, &errpos, 0) < 0) {
		srv->prio = NULL;
		chat_pu_log(host, CHAT_LOG_ERROR, "gnutls refuses the priority string at '%s'",
		            errpos ? errpos : "?");
		rc = CHAT_ERR_FAILED;
		goto fail;
	}
	*out = srv;
	return CHAT_OK;
fail:
	server_unref(srv);
	return rc;
}

/* ---- sessions */

static int tls_verify_cb(gnutls_session_t session)
{
	struct tls_conn *c = gnutls_session_get_ptr(session);
	int rc = tls_verify_peer(c);

	if (rc == CHAT_OK)
		return 0;
	c->v->failed = rc;
	return GNUTLS_E_CERTIFICATE_ERROR;
}

/* A server requires ALPN chat/1: GNUTLS_ALPN_MANDATORY refuses a client
 * that offers other protocols, but not one that offers none. */
static int tls_client_hello(gnutls_session_t session)
{
	gnutls_datum_t p = { NULL, 0 };

	if (gnutls_alpn_get_selected_protocol(session, &p) < 0 || p.size != sizeof(TLS_ALPN) - 1 ||
	    memcmp(p.data, TLS_ALPN, p.size) != 0)
		return GNUTLS_E_NO_APPLICATION_PROTOCOL;
	return 0;
}

static int session_new(struct tls_conn *c, unsigned flags, gnutls_priority_t prio,
                       gnutls_certificate_credentials_t creds)
{
	gnutls_datum_t alpn = { (unsigned char *)TLS_ALPN, sizeof(TLS_ALPN) - 1 };

	if (gnutls_init(&c->session, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS) < 0) {
		c->session = NULL;
		return CHAT_ERR_NOMEM;
	}
	if (gnutls_priority_set(c->session, prio) < 0 ||
	    gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, creds) < 0 ||
	    gnutls_alpn_set_protocols(c->session, &alpn, 1, GNUTLS_ALPN_MANDATORY) < 0)
		return CHAT_ERR_NOMEM;
	gnutls_session_set_ptr(c->session, c);
	gnutls_transport_set_ptr(c->session, c);
	gnutls_transport_set_pull_function(c->session, tls_pull);
	gnutls_transport_set_vec_push_function(c->session, tls_push);
	gnutls_transport_set_pull_timeout_function(c->session, tls_pull_timeout);
	/* The core bounds every wait (relay.login_timeout, client.connect_timeout). */
	gnutls_handshake_set_timeout(c->session, 0);
	if (flags & GNUTLS_SERVER)
		gnutls_handshake_set_post_client_hello_function(c->session, tls_client_hello);
	return CHAT_OK;
}

static void conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->session)
		gnutls_deinit(c->session); /* wipes the session's keys */
	tls_verify_free(c->v);
	server_unref(c->srv);
	if (c->s.fd >= 0)
		close(c->s.fd);
	if (c->rbuf) /* the peer's ciphertext: nothing secret, but wiped like the rest */
		explicit_bzero(c->rbuf, c->rlen);
	free(c->rbuf);
	free(c->err);
	free(c);
}

/* Did the peer send something that is not a TLS record at all?  A record
 * begins with a content type 20..23 and the major version 3. */
static bool peer_not_tls(const struct tls_conn *c)
{
	if (!c->nfirst)
		return false;
	if (c->first[0] < 20 || c->first[0] > 23)
		return true;
	return c->nfirst >= 2 && c->first[1] != 3;
}

/* A non-TLS client at a listener: one line per 10 s at most, with the
 * count of the others since the last line. */
static void log_not_tls(struct tls_conn *c)
{
	struct tls_server *srv = c->srv;
	uint64_t now = srv->host->monotonic_ms(srv->host);

	if (srv->nontls_ms && now - srv->nontls_ms < TLS_NONTLS_LOG_MS) {
		srv->nontls_suppressed++;
		return;
	}
	if (srv->nontls_suppressed)
		chat_pu_log(srv->host, CHAT_LOG_WARN,
		            "%s sent bytes that are not TLS (a client whose transport is tcp?); "
		            "closed it (and %lu more such connections since the last line, "
		            "not logged one by one)", c->s.peer, srv->nontls_suppressed);
	else
		chat_pu_log(srv->host, CHAT_LOG_WARN,
		            "%s sent bytes that are not TLS (a client whose transport is tcp?); "
		            "closed it", c->s.peer);
	srv->nontls_ms = now ? now : 1;
	srv->nontls_suppressed = 0;
}

static const char *my_min_version(const struct tls_conn *c)
{
	return !strcmp(chat_pu_config(c->s.host, "min_version", ""), "1.2") ? "1.2" : "1.3";
}

/* Why a handshake failed, as a code and a sentence. */
static int handshake_error(struct tls_conn *c, int g)
{
	const char *peer = peer_name(c);
	bool client = c->v != NULL;

	if (peer_not_tls(c)) {
		if (client)
			tls_set_error(c, "%s does not speak TLS (it answered with bytes that are not a TLS "
			              "record): is its transport tcp? (this side's is tls)", peer);
		else
			tls_set_error(c, "%s does not speak TLS (it sent bytes that are not a TLS record): "
			              "a client whose transport is tcp?", peer);
		return CHAT_ERR_TLS;
	}
	switch (g) {
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR: {
		bool reset = c->sys_errno == ECONNRESET || c->sys_errno == EPIPE;
		if (g != GNUTLS_E_PREMATURE_TERMINATION && !reset) {
			tls_set_error(c, "TLS handshake with %s: %s", peer, strerror(c->sys_errno));
			errno = c->sys_errno;
			return CHAT_ERR_IO;
		}
		if (client && !c->nfirst) {
			tls_set_error(c, "%s closed the connection without answering the TLS handshake: it "
			              "does not speak TLS (is its transport tcp?), or it refused this "
			              "connection", peer);
			return CHAT_ERR_TLS;
		}
		tls_set_error(c, "%s %s the connection during the TLS handshake", peer,
		              reset ? "reset" : "closed");
		return reset ? CHAT_ERR_RESET : CHAT_ERR_CLOSED;
	}
	case GNUTLS_E_FATAL_ALERT_RECEIVED: {
		gnutls_alert_description_t a = gnutls_alert_get(c->session);
		const char *name = gnutls_alert_get_name(a);
		switch (a) {
		case GNUTLS_A_PROTOCOL_VERSION:
		case GNUTLS_A_HANDSHAKE_FAILURE:
		case GNUTLS_A_INSUFFICIENT_SECURITY:
			tls_set_error(c, "%s refused the TLS version or ciphers this side offers (its "
			              "alert: %s); this side allows TLS %s and later with AES-GCM or "
			              "ChaCha20-Poly1305 and ECDHE ([plugin.tls] min_version)", peer,
			              name ? name : "?", my_min_version(c));
			return CHAT_ERR_TLS;
		case GNUTLS_A_NO_APPLICATION_PROTOCOL:
			tls_set_error(c, "%s refused the application protocol %s (ALPN): it serves "
			              "something else than chat", peer, TLS_ALPN);
			return CHAT_ERR_TLS;
		case GNUTLS_A_BAD_CERTIFICATE:
		case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
		case GNUTLS_A_CERTIFICATE_REVOKED:
		case GNUTLS_A_CERTIFICATE_EXPIRED:
		case GNUTLS_A_CERTIFICATE_UNKNOWN:
		case GNUTLS_A_UNKNOWN_CA:
		case GNUTLS_A_ACCESS_DENIED:
			tls_set_error(c, "%s refused %s certificate (its alert: %s): it does not trust "
			              "this side's key", peer, client ? "this side's" : "our",
			              name ? name : "?");
			return CHAT_ERR_CERT;
		default:
			tls_set_error(c, "%s ended the TLS handshake with the alert '%s'", peer,
			              name ? name : "?");
			return CHAT_ERR_TLS;
		}
	}
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
		tls_set_error(c, "%s wants a TLS version this side refuses: this side allows TLS %s "
		              "and later ([plugin.tls] min_version)", peer, my_min_version(c));
		return CHAT_ERR_TLS;
	case GNUTLS_E_NO_CIPHER_SUITES:
	case GNUTLS_E_UNKNOWN_CIPHER_SUITE:
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
	case GNUTLS_E_NO_COMMON_KEY_SHARE:
	case GNUTLS_E_UNWANTED_ALGORITHM:
		tls_set_error(c, "no TLS version and cipher in common with %s (%s): this side allows "
		              "TLS %s and later with AES-GCM or ChaCha20-Poly1305 and ECDHE "
		              "([plugin.tls] min_version)", peer, gnutls_strerror(g), my_min_version(c));
		return CHAT_ERR_TLS;
	case GNUTLS_E_NO_APPLICATION_PROTOCOL:
		if (client)
			tls_set_error(c, "%s did not agree to the application protocol %s (ALPN): it is "
			              "not a chat relay", peer, TLS_ALPN);
		else
			tls_set_error(c, "%s did not offer the application protocol %s (ALPN): not a "
			              "chat client", peer, TLS_ALPN);
		return CHAT_ERR_TLS;
	default:
		tls_set_error(c, "TLS handshake with %s failed: %s", peer, gnutls_strerror(g));
		return CHAT_ERR_TLS;
	}
}

static int fail(struct tls_conn *c, int rc)
{
	c->state = TLS_FAILED;
	c->fail = rc;
	return rc;
}

static int handshake_failed(struct tls_conn *c, int g)
{
	int rc;

	if (c->v && c->v->failed)
		rc = c->v->failed; /* the verify callback said why */
	else
		rc = handshake_error(c, g);
	/* Tell the peer (best effort, never waits): a plain client then reads
	 * a TLS record, which the core recognizes and names. */
	if (rc != CHAT_ERR_CLOSED && rc != CHAT_ERR_RESET && rc != CHAT_ERR_IO)
		gnutls_alert_send_appropriate(c->session, g);
	if (!c->v && rc == CHAT_ERR_TLS && peer_not_tls(c))
		log_not_tls(c);
	return fail(c, rc);
}

static int handshake_done(struct tls_conn *c)
{
	int rc;

	if (c->v) {
		gnutls_datum_t p = { NULL, 0 };
		if (gnutls_alpn_get_selected_protocol(c->session, &p) < 0 ||
		    p.size != sizeof(TLS_ALPN) - 1 || memcmp(p.data, TLS_ALPN, p.size) != 0) {
			tls_set_error(c, "%s did not agree to the application protocol %s (ALPN): it is "
			              "not a chat relay", peer_name(c), TLS_ALPN);
			gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_NO_APPLICATION_PROTOCOL);
			return fail(c, CHAT_ERR_TLS);
		}
		if ((rc = tls_verify_done(c)) != CHAT_OK)
			return fail(c, rc);
	}
	c->state = TLS_OPEN;
	chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s with %s (%s)",
	            gnutls_protocol_get_name(gnutls_protocol_get_version(c->session)), peer_name(c),
	            gnutls_cipher_get_name(gnutls_cipher_get(c->session)));
	return CHAT_OK;
}

/* CHAT_OK once the link is up; CHAT_ERR_AGAIN while the handshake waits. */
static int ready(struct tls_conn *c)
{
	switch (c->state) {
	case TLS_OPEN:
		return CHAT_OK;
	case TLS_FAILED:
		return c->fail;
	case TLS_TCP_CONNECTING:
		return CHAT_ERR_AGAIN;
	default:
		break;
	}
	for (int i = 0; i < TLS_RETRIES; i++) {
		int g = gnutls_handshake(c->session);
		if (g == 0)
			return handshake_done(c);
		if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
			return CHAT_ERR_AGAIN;
		if (gnutls_error_is_fatal(g))
			return handshake_failed(c, g);
	}
	return CHAT_ERR_AGAIN;
}

/* ---- ops */

static int tls_listen(const struct chat_host *host, const char *address, void **listener)
{
	struct tls_listener *l;
	struct tls_server *srv;
	struct tcp_sock s;
	int rc;

	if (listener)
		*listener = NULL;
	if (!tls_host_ok(host) || !address || !listener)
		return CHAT_ERR_INVALID;
	/* The key first: a configuration error is said before the port is taken. */
	if ((rc = server_new(host, &srv)) != CHAT_OK)
		return rc;
	rc = tcp_sock_listen(host, address,
	                     tcp_config_int(host, "backlog", TCP_BACKLOG_DEFAULT, 1, 65535), &s);
	if (rc) {
		server_unref(srv);
		return rc;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(s.fd);
		server_unref(srv);
		return CHAT_ERR_NOMEM;
	}
	l->s = s;
	l->s.nodelay = tcp_config_bool(host, "nodelay", true);
	l->srv = srv;
	*listener = l;
	return CHAT_OK;
}

static int tls_accept(void *listener, void **conn)
{
	struct tls_listener *l = listener;
	struct tls_conn *c;
	struct tcp_sock s;
	int rc;

	if (conn)
		*conn = NULL;
	if (!l || l->s.kind != TCP_LISTENER || !conn)
		return CHAT_ERR_INVALID;
	rc = tcp_sock_accept(&l->s, &s);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(s.fd);
		return CHAT_ERR_NOMEM;
	}
	c->s = s;
	c->srv = l->srv;
	l->srv->refs++;
	c->state = TLS_HANDSHAKE;
	rc = session_new(c, GNUTLS_SERVER, l->srv->prio, l->srv->creds);
	if (rc) {
		conn_free(c);
		return rc;
	}
	*conn = c;
	return CHAT_OK;
}

static int tls_connect(const struct chat_host *host, const char *address, void **conn)
{
	struct tls_verify *v = NULL;
	struct tls_conn *c;
	struct tcp_sock s;
	unsigned char ip[16];
	int rc;

	if (conn)
		*conn = NULL;
	if (!tls_host_ok(host) || !address || !conn)
		return CHAT_ERR_INVALID;
	/* How the relay's key will be checked, before any packet leaves. */
	if ((rc = tls_verify_new(host, address, &v)) != CHAT_OK)
		return rc;
	rc = tcp_sock_connect(host, address, tcp_config_bool(host, "nodelay", true), &s);
	if (rc != CHAT_OK && rc != CHAT_ERR_INPROGRESS) {
		tls_verify_free(v);
		return rc;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(s.fd);
		tls_verify_free(v);
		return CHAT_ERR_NOMEM;
	}
	c->s = s;
	c->v = v;
	c->state = TLS_TCP_CONNECTING;
	rc = session_new(c, GNUTLS_CLIENT, v->prio, v->creds);
	/* SNI carries host names only (RFC 6066), never an address. */
	if (rc == CHAT_OK && inet_pton(AF_INET, v->name, ip) != 1 &&
	    inet_pton(AF_INET6, v->name, ip) != 1 &&
	    gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, v->name, strlen(v->name)) < 0)
		rc = CHAT_ERR_NOMEM;
	if (rc) {
		conn_free(c);
		return rc;
	}
	gnutls_session_set_verify_function(c->session, tls_verify_cb);
	*conn = c;
	return CHAT_ERR_INPROGRESS;
}

static int tls_connect_finish(void *conn)
{
	struct tls_conn *c = conn;
	int rc;

	if (!c || c->s.kind != TCP_CONN || !c->v)
		return CHAT_ERR_INVALID;
	if (c->state == TLS_TCP_CONNECTING) {
		rc = tcp_sock_connect_finish(&c->s);
		if (rc != CHAT_OK)
			return rc; /* INPROGRESS, or the socket's error: the code says it */
		c->state = TLS_HANDSHAKE;
	}
	rc = ready(c);
	return rc == CHAT_ERR_AGAIN ? CHAT_ERR_INPROGRESS : rc;
}

static int record_error(struct tls_conn *c, ssize_t g, const char *what)
{
	const char *peer = peer_name(c);

	switch (g) {
	case GNUTLS_E_PREMATURE_TERMINATION:
		chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s closed the connection without a TLS close_notify",
		            peer);
		return fail(c, CHAT_ERR_CLOSED);
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		if (c->sys_errno == ECONNRESET) {
			chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s reset the connection", peer);
			return fail(c, CHAT_ERR_RESET);
		}
		if (c->sys_errno == EPIPE) {
			chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s to %s: connection closed", what, peer);
			return fail(c, CHAT_ERR_CLOSED);
		}
		tls_set_error(c, "%s %s %s: %s", what, g == GNUTLS_E_PULL_ERROR ? "from" : "to", peer,
		              strerror(c->sys_errno));
		fail(c, CHAT_ERR_IO);
		errno = c->sys_errno;
		return CHAT_ERR_IO;
	case GNUTLS_E_DECRYPTION_FAILED:
		tls_set_error(c, "a TLS record from %s failed its integrity check: the stream was "
		              "modified on the way", peer);
		return fail(c, CHAT_ERR_TLS);
	case GNUTLS_E_FATAL_ALERT_RECEIVED: {
		const char *name = gnutls_alert_get_name(gnutls_alert_get(c->session));
		tls_set_error(c, "%s ended the TLS connection with the alert '%s'", peer, name ? name : "?");
		return fail(c, CHAT_ERR_TLS);
	}
	default:
		tls_set_error(c, "TLS %s %s %s failed: %s", what, g == GNUTLS_E_PUSH_ERROR ? "to" : "with",
		              peer, gnutls_strerror((int)g));
		return fail(c, CHAT_ERR_TLS);
	}
}

static int tls_read(void *conn, size_t len, uint8_t *dst, size_t *got)
{
	struct tls_conn *c = conn;
	int rc;

	if (got)
		*got = 0;
	if (!c || c->s.kind != TCP_CONN || !dst || !got || len == 0)
		return CHAT_ERR_INVALID;
	if ((rc = ready(c)) != CHAT_OK)
		return rc;
	for (int i = 0; i < TLS_RETRIES; i++) {
		ssize_t n;

		c->recv_wants_write = false;
		n = gnutls_record_recv(c->session, dst + *got, len - *got);
		if (n > 0) {
			*got += (size_t)n;
			/* More records already read from the socket (one recv takes
			 * many): decrypt them now, without another recv. */
			if (*got < len && (rbuf_left(c) || gnutls_record_check_pending(c->session) > 0)) {
				i = -1;
				continue;
			}
			return CHAT_OK;
		}
		if (*got) /* what came before this call's AGAIN, error or close */
			return CHAT_OK;
		if (n == 0) {
			chat_pu_log(c->s.host, CHAT_LOG_DEBUG, "%s closed the connection", peer_name(c));
			return fail(c, CHAT_ERR_CLOSED);
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			c->recv_wants_write = gnutls_record_get_direction(c->session) == 1;
			return CHAT_ERR_AGAIN;
		}
		if (n == GNUTLS_E_REHANDSHAKE) {
			/* TLS 1.2 renegotiation: not wanted; say so and carry on. */
			gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
			continue;
		}
		if (!gnutls_error_is_fatal((int)n))
			continue;
		return record_error(c, n, "read");
	}
	return CHAT_ERR_AGAIN;
}

static int tls_write(void *conn, size_t len, const uint8_t *src, size_t *sent)
{
	struct tls_conn *c = conn;
	ssize_t n;
	int rc;

	if (sent)
		*sent = 0;
	if (!c || c->s.kind != TCP_CONN || !sent || (!src && len))
		return CHAT_ERR_INVALID;
	if (len == 0)
		return CHAT_OK;
	if ((rc = ready(c)) != CHAT_OK)
		return rc;
	/* An unfinished record is flushed with NULL, 0 (gnutls keeps it). */
	n = c->send_pending ? gnutls_record_send(c->session, NULL, 0)
	                    : gnutls_record_send(c->session, src, len);
	if (n > 0) {
		c->send_pending = false;
		*sent = (size_t)n;
		return CHAT_OK;
	}
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
		c->send_pending = true;
		return CHAT_ERR_AGAIN;
	}
	if (n == 0)
		return CHAT_ERR_AGAIN;
	return record_error(c, n, "write");
}

static int tls_fd(void *handle)
{
	struct tcp_sock *s = handle; /* first member of either handle */

	if (!s)
		return CHAT_ERR_INVALID;
	return s->fd;
}

static int tls_address(void *handle, int local, size_t cap, char *dst)
{
	struct tcp_sock *s = handle;

	if (dst && cap)
		dst[0] = '\0';
	if (!s || !dst)
		return CHAT_ERR_INVALID;
	return tcp_sock_address(s, local, cap, dst);
}

static void tls_close(void *conn)
{
	struct tls_conn *c = conn;

	if (!c)
		return;
	/* close_notify, if the socket takes it now: never waits. */
	if (c->session && c->state == TLS_OPEN && !c->bye_sent) {
		c->bye_sent = true;
		gnutls_bye(c->session, GNUTLS_SHUT_WR);
	}
	conn_free(c);
}

static void tls_listener_close(void *listener)
{
	struct tls_listener *l = listener;

	if (!l)
		return;
	close(l->s.fd);
	server_unref(l->srv);
	free(l);
}

static unsigned tls_interest(void *conn, unsigned want)
{
	struct tls_conn *c = conn;
	unsigned r = want;

	if (!c)
		return want;
	switch (c->state) {
	case TLS_TCP_CONNECTING:
		return CHAT_TP_WRITE;
	case TLS_HANDSHAKE:
		return gnutls_record_get_direction(c->session) ? CHAT_TP_WRITE : CHAT_TP_READ;
	case TLS_OPEN:
		if (c->send_pending || c->recv_wants_write)
			r |= CHAT_TP_WRITE;
		/* Decrypted bytes do not make the fd readable: a writable socket
		 * wakes the caller to read them. */
		if ((want & CHAT_TP_READ) && (gnutls_record_check_pending(c->session) > 0 || rbuf_left(c)))
			r |= CHAT_TP_WRITE;
		return r;
	default:
		return want;
	}
}

static size_t tls_pending(void *conn)
{
	struct tls_conn *c = conn;

	if (!c || c->state != TLS_OPEN)
		return 0;
	return gnutls_record_check_pending(c->session) + rbuf_left(c);
}

static int tls_channel_binding(void *conn, const char *type, size_t cap, uint8_t *dst, size_t *len)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	struct tls_conn *c = conn;

	if (len)
		*len = 0;
	if (!c || !type || !len || (!dst && cap))
		return CHAT_ERR_INVALID;
	if (strcmp(type, "tls-exporter") != 0)
		return CHAT_ERR_UNSUPPORTED;
	if (c->state != TLS_OPEN)
		return CHAT_ERR_STATE;
	/* RFC 9266 section 2: TLS 1.2 exporters are safe only with the
	 * extended master secret (RFC 7627). */
	if (gnutls_protocol_get_version(c->session) != GNUTLS_TLS1_3 &&
	    !gnutls_session_ext_master_secret_status(c->session))
		return CHAT_ERR_UNSUPPORTED;
	if (cap < 32)
		return CHAT_ERR_NOSPACE;
	/* RFC 9266: the label, an empty context, 32 bytes. */
	if (gnutls_prf_rfc5705(c->session, sizeof(label) - 1, label, 0, "", 32, (char *)dst) < 0)
		return CHAT_ERR_FAILED;
	*len = 32;
	return CHAT_OK;
}

static const char *tls_last_error(void *conn)
{
	struct tls_conn *c = conn;

	return c ? c->err : NULL;
}

static int tls_describe(void *conn, size_t cap, char *dst)
{
	struct tls_conn *c = conn;
	const char *ver, *cipher;
	int n;

	if (dst && cap)
		dst[0] = '\0';
	if (!c || !dst || !cap)
		return CHAT_ERR_INVALID;
	if (c->state != TLS_OPEN)
		return CHAT_ERR_STATE;
	ver = gnutls_protocol_get_name(gnutls_protocol_get_version(c->session));
	cipher = gnutls_cipher_get_name(gnutls_cipher_get(c->session));
	if (c->v)
		n = snprintf(dst, cap, "%s %s, relay key %s (%s)", ver ? ver : "TLS",
		             cipher ? cipher : "?", c->v->peer_fp, tls_verify_how(c->v));
	else
		n = snprintf(dst, cap, "%s %s, own key %s", ver ? ver : "TLS", cipher ? cipher : "?",
		             c->srv->fp);
	return n < 0 || (size_t)n >= cap ? CHAT_ERR_NOSPACE : CHAT_OK;
}

static int tls_local_fingerprint(const struct chat_host *host, size_t cap, char *dst)
{
	gnutls_certificate_credentials_t creds;
	char fp[TLS_FP_SIZE];
	int rc;

	if (dst && cap)
		dst[0] = '\0';
	if (!tls_host_ok(host) || !dst)
		return CHAT_ERR_INVALID;
	if (gnutls_certificate_allocate_credentials(&creds) < 0)
		return CHAT_ERR_NOMEM;
	/* Loaded as listen() would (key and certificate must match). */
	rc = tls_load_identity(host, true, creds, fp);
	gnutls_certificate_free_credentials(creds);
	if (rc)
		return rc;
	if (cap < sizeof(fp))
		return CHAT_ERR_NOSPACE;
	memcpy(dst, fp, sizeof(fp));
	return CHAT_OK;
}

static const struct chat_transport_ops tls_ops = {
	.size = sizeof(struct chat_transport_ops),
	.listen = tls_listen,
	.accept = tls_accept,
	.connect = tls_connect,
	.connect_finish = tls_connect_finish,
	.read = tls_read,
	.write = tls_write,
	.fd = tls_fd,
	.address = tls_address,
	.close = tls_close,
	.listener_close = tls_listener_close,
	.interest = tls_interest,
	.pending = tls_pending,
	.channel_binding = tls_channel_binding,
	.last_error = tls_last_error,
	.describe = tls_describe,
	.local_fingerprint = tls_local_fingerprint,
};

static const struct chat_config_key tls_config_keys[] = {
	{ .name = "cert", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "PEM certificate (chain) the relay presents (empty: a self-signed one made in the "
	          "state directory, tls-cert.pem); used as given, relative to the working directory" },
	{ .name = "key", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "PEM private key of cert (empty: tls-key.pem in the state directory, made on first start)" },
	{ .name = "ca", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "connecting: PEM file of the CAs that must have signed the relay's certificate, "
	          "whose name is checked too; listening: certificates appended to the chain presented" },
	{ .name = "pin", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "connecting: sha256:HEX, the relay's key exactly (chat-relay --fingerprint prints it)" },
	{ .name = "known_relays", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "connecting without ca or pin: file of relay keys trusted on first use "
	          "(empty: known_relays in the state directory)" },
	{ .name = "server_name", .type = CHAT_CONFIG_STRING, .def = "",
	  .help = "connecting: the name the relay's certificate must have, sent as SNI "
	          "(empty: the host part of the address)" },
	{ .name = "min_version", .type = CHAT_CONFIG_STRING, .def = "1.3",
	  .help = "oldest TLS version allowed: 1.3, or 1.2 (ECDHE and AEAD ciphers only)" },
	{ .name = "backlog", .type = CHAT_CONFIG_INT, .def = "511", .min = 1, .max = 65535,
	  .help = "length of the queue of connections not yet accepted" },
	{ .name = "nodelay", .type = CHAT_CONFIG_BOOL, .def = "true",
	  .help = "send small messages at once (TCP_NODELAY)" },
	{ .name = NULL },
};

static const struct chat_plugin tls_plugin = {
	CHAT_PLUGIN_HEADER,
	.kind = CHAT_PLUGIN_TRANSPORT,
	.flags = CHAT_FLAG_ENCRYPTED | CHAT_FLAG_AUTHENTICATED,
	.name = "tls",
	.version = "1.0.0",
	.summary = "TLS 1.3 over TCP (GnuTLS); the relay's key by CA, pin or first use; ALPN chat/1",
	.config_keys = tls_config_keys,
	.ops.transport = &tls_ops,
};

CHAT_PLUGIN_EXPORT const struct chat_plugin *chat_plugin_entry(void)
{
	return &tls_plugin;
}
