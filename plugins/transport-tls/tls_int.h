/* transport-tls's shared header: the handles, and what tls.c (the ops),
 * tls_keys.c (this side's certificate and key) and tls_trust.c (checking
 * the peer's: CA, pin, known_relays) give each other. */
#ifndef CHAT_TLS_INT_H
#define CHAT_TLS_INT_H

#include <chat/plugin.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin_util.h"
#include "tcp_sock.h"
#include "tls_wire.h"

#define TLS_NONTLS_LOG_MS 10000 /* at most one line a 10 s about non-TLS clients */

/* What a listener and every connection it accepted share (refcounted: a
 * connection may outlive its listener). */
struct tls_server {
	unsigned refs;
	const struct chat_host *host;
	gnutls_certificate_credentials_t creds;
	gnutls_priority_t prio;
	char fp[TLS_FP_SIZE]; /* the key this side presents */
	uint64_t nontls_ms;   /* when a non-TLS client was last logged */
	unsigned long nontls_suppressed;
};

struct tls_listener {
	struct tcp_sock s; /* first: fd() and address() take either handle */
	struct tls_server *srv;
};

enum tls_state {
	TLS_TCP_CONNECTING = 1, /* connect() in progress */
	TLS_HANDSHAKE,          /* the TLS handshake runs (in read/write/connect_finish) */
	TLS_OPEN,               /* established and, for a client, verified */
	TLS_FAILED,             /* fail says why, for good */
};

/* How a client decides whether to trust the key it is shown. */
enum tls_trust {
	TLS_TRUST_CA = 1u << 0,   /* [plugin.tls] ca: chain and host name */
	TLS_TRUST_PIN = 1u << 1,  /* [plugin.tls] pin: this key exactly */
	TLS_TRUST_TOFU = 1u << 2, /* known_relays: the key seen first */
};

/* A connecting side's verification state (servers do not have one). */
struct tls_verify {
	unsigned trust;            /* enum tls_trust bits */
	char *address;             /* the connect address as given: known_relays' key */
	char *name;                /* host name or IP literal checked with a CA (server_name) */
	char *ca;                  /* file of trusted CAs */
	char *known;               /* known_relays file */
	char pin[TLS_FP_SIZE];     /* [plugin.tls] pin, canonical "sha256:hex" */
	char peer_fp[TLS_FP_SIZE]; /* the key the peer presented */
	unsigned known_line;       /* TOFU: its line in known_relays (0: new) */
	bool record;               /* TOFU: a first connection, to record once up */
	int failed;                /* the verify callback refused: CHAT_ERR_CERT or other */
	gnutls_certificate_credentials_t creds;
	gnutls_priority_t prio;
};

struct tls_conn {
	struct tcp_sock s; /* first, as in tls_listener */
	gnutls_session_t session;
	struct tls_server *srv; /* accepted connections */
	struct tls_verify *v;   /* connecting side */
	int state;              /* enum tls_state */
	int fail;               /* TLS_FAILED: the error every later call returns */
	bool send_pending;      /* a record_send left AGAIN: finish it first */
	bool recv_wants_write;  /* record_recv left AGAIN while writing (a key update) */
	bool bye_sent;
	uint8_t first[5];       /* the first bytes the peer sent: is it TLS at all? */
	uint8_t nfirst;
	int sys_errno;          /* errno of the last failed recv/send */
	/* Bytes one recv() took beyond what gnutls asked for (tls_pull): gnutls
	 * reads a record as header, then body; one recv of up to 64 KiB into a
	 * shared buffer serves many records, and only a remainder is kept here
	 * (malloc'd, freed once used: an idle connection holds none). */
	uint8_t *rbuf;
	uint32_t rlen, roff;
	char *err;              /* last_error(), malloc'd */
};

/* ---- tls.c */
void tls_set_error(struct tls_conn *c, const char *fmt, ...) CHAT_PRINTF(2, 3);
int tls_min_version(const struct chat_host *host, const char **prio_text);

/* ---- tls_keys.c */

/* "sha256:<hex>" of the DER SubjectPublicKeyInfo of crt. */
int tls_crt_fingerprint(gnutls_x509_crt_t crt, char fp[TLS_FP_SIZE]);
/* This side's certificate chain and key: [plugin.tls] cert and key, or the
 * self-signed pair in host->state_dir (created when missing); ca's
 * certificates appended to the chain.  Filled creds get them; fp is the
 * key's fingerprint.  Logged at INFO (created / loaded) when log_it. */
int tls_load_identity(const struct chat_host *host, bool log_it,
                      gnutls_certificate_credentials_t creds, char fp[TLS_FP_SIZE]);
/* Whole file into a malloc'd buffer (NUL after len bytes); at most max bytes.
 * 0, or -1 with errno. */
int tls_read_file(const char *path, size_t max, uint8_t **data, size_t *len);
/* Write a file atomically: a new file (O_EXCL, mode) next to it, fsync,
 * rename over path, fsync the directory.  0, or -1 with errno. */
int tls_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* mkdir -p with mode 0700 for what is created.  0, or -1 with errno. */
int tls_mkdirs(const char *dir);

/* ---- tls_trust.c */

/* Set up v from [plugin.tls] for a connection to address (CHAT_ERR_CONFIG,
 * logged, when the keys do not allow checking the peer at all). */
int tls_verify_new(const struct chat_host *host, const char *address, struct tls_verify **out);
void tls_verify_free(struct tls_verify *v);
/* The verify callback's work, inside the handshake: CHAT_OK, or
 * CHAT_ERR_CERT with tls_set_error said. */
int tls_verify_peer(struct tls_conn *c);
/* Once the handshake is done: record a first-seen key in known_relays
 * (and say so at WARN).  CHAT_OK or an error with tls_set_error said. */
int tls_verify_done(struct tls_conn *c);
/* How the peer's key was trusted, for describe(): "pinned" ... */
const char *tls_verify_how(const struct tls_verify *v);

#endif
