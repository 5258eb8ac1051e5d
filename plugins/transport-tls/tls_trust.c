/* Whether a connecting side trusts the key the server presents, decided
 * inside the handshake (gnutls's verify callback), so that a connection
 * the checks refuse never carries a byte of ours:
 *   ca    the chain ends at a CA of that file, and names the host we meant;
 *   pin   the key is exactly this one (SHA-256 of its SubjectPublicKeyInfo);
 *   known_relays (neither set): the key this address showed the first time,
 *         recorded then (OpenSSH's known_hosts), refused loudly if changed.
 * Certificate dates are checked against the host's clock (host->unix_ms),
 * not gnutls's, with a CA only: a pinned or recorded key is trusted as a
 * key, whatever its self-signed certificate says. */
#define _GNU_SOURCE

#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TLS_KNOWN_FILE "known_relays"
#define TLS_KNOWN_MAX (4u << 20)

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

void tls_verify_free(struct tls_verify *v)
{
	if (!v)
		return;
	if (v->creds)
		gnutls_certificate_free_credentials(v->creds);
	if (v->prio)
		gnutls_priority_deinit(v->prio);
	free(v->address);
	free(v->name);
	free(v->ca);
	free(v->known);
	free(v);
}

/* "sha256:" + 64 hex digits, any case, into the canonical lower-case text. */
static int parse_fp(const char *s, char fp[TLS_FP_SIZE])
{
	if (strncasecmp(s, "sha256:", 7) != 0 || strlen(s) != TLS_FP_SIZE - 1)
		return -1;
	memcpy(fp, "sha256:", 7);
	for (size_t i = 7; i < TLS_FP_SIZE - 1; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		fp[i] = c;
	}
	fp[TLS_FP_SIZE - 1] = '\0';
	return 0;
}

int tls_verify_new(const struct chat_host *host, const char *address, struct tls_verify **out)
{
	const char *ca = chat_pu_config(host, "ca", ""), *pin = chat_pu_config(host, "pin", "");
	const char *known = chat_pu_config(host, "known_relays", "");
	const char *name = chat_pu_config(host, "server_name", ""), *prio_text, *errpos = NULL;
	const char *dir = CHAT_PU_HOST_HAS(host, state_dir) && host->state_dir ?
	                  host->state_dir(host) : NULL;
	char hostbuf[TCP_HOST_MAX], portbuf[6], shown[CHAT_ADDR_MAX], path[PATH_MAX];
	struct tls_verify *v;
	unsigned port;
	bool v6;
	int rc;

	*out = NULL;
	chat_pu_quote_ascii(sizeof(shown), shown, address);
	rc = tcp_parse(host, address, shown, hostbuf, portbuf, &port, &v6);
	if (rc)
		return rc;
	if ((rc = tls_min_version(host, &prio_text)) != CHAT_OK)
		return rc;
	v = calloc(1, sizeof(*v));
	if (!v)
		return CHAT_ERR_NOMEM;
	rc = CHAT_ERR_NOMEM;
	if (!(v->address = strdup(address)) || !(v->name = strdup(*name ? name : hostbuf)))
		goto fail;
	if (*pin) {
		char fp[TLS_FP_SIZE];
		if (parse_fp(pin, fp) != 0) {
			char q[100];
			chat_pu_quote_ascii(sizeof(q), q, pin);
			chat_pu_log(host, CHAT_LOG_ERROR, "[plugin.tls] pin: '%s' is not 'sha256:' followed by "
			             "64 hex digits (the SHA-256 of the relay's SubjectPublicKeyInfo, as "
			             "chat-relay --fingerprint prints it)", q);
			rc = CHAT_ERR_CONFIG;
			goto fail;
		}
		memcpy(v->pin, fp, sizeof(fp));
		v->trust |= TLS_TRUST_PIN;
	}
	if (*ca) {
		if (!(v->ca = strdup(ca)))
			goto fail;
		v->trust |= TLS_TRUST_CA;
	}
	if (!v->trust) {
		if (*known)
			snprintf(path, sizeof(path), "%s", known);
		else if (dir && *dir)
			snprintf(path, sizeof(path), "%s/%s", dir, TLS_KNOWN_FILE);
		else {
			chat_pu_log(host, CHAT_LOG_ERROR, "no way to check the key of %s: set [plugin.tls] "
			             "ca (a CA file) or pin (the relay's key, from chat-relay --fingerprint), "
			             "or give this program a data directory (client.data_dir, peer.data_dir) "
			             "or [plugin.tls] known_relays to trust the key seen first and refuse "
			             "any other later", shown);
			rc = CHAT_ERR_CONFIG;
			goto fail;
		}
		if (!(v->known = dup_or_null(path)))
			goto fail;
		v->trust = TLS_TRUST_TOFU;
	}

	if (gnutls_certificate_allocate_credentials(&v->creds) < 0) {
		v->creds = NULL;
		goto fail;
	}
	if (v->ca) {
		int n = gnutls_certificate_set_x509_trust_file(v->creds, v->ca, GNUTLS_X509_FMT_PEM);
		if (n <= 0) {
			chat_pu_log(host, CHAT_LOG_ERROR, "[plugin.tls] ca: no CA certificate in %s: %s", v->ca,
			             n < 0 ? gnutls_strerror(n) : "the file holds none");
			rc = CHAT_ERR_CONFIG;
			goto fail;
		}
		/* Dates are checked against the host's clock (check_dates). */
		gnutls_certificate_set_verify_flags(v->creds, GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
		                                              GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS);
	}
	if (gnutls_priority_init2(&v->prio, prio_text, &errpos, 0) < 0) {
		v->prio = NULL;
		chat_pu_log(host, CHAT_LOG_ERROR, "gnutls refuses the priority string at '%s'",
		             errpos ? errpos : "?");
		rc = CHAT_ERR_FAILED;
		goto fail;
	}
	*out = v;
	return CHAT_OK;
fail:
	tls_verify_free(v);
	return rc;
}

/* ---- what a certificate says, for messages (from the network: quoted) */

static void crt_dn(gnutls_x509_crt_t crt, bool issuer, size_t cap, char *dst)
{
	gnutls_datum_t d = { NULL, 0 };
	int rc = issuer ? gnutls_x509_crt_get_issuer_dn3(crt, &d, 0) : gnutls_x509_crt_get_dn3(crt, &d, 0);

	if (rc < 0 || !d.data)
		snprintf(dst, cap, "?");
	else
		chat_pu_quote_ascii(cap, dst, (const char *)d.data);
	gnutls_free(d.data);
}

/* The names a certificate is for: its DNS and IP subjectAltNames, else its CN. */
static void crt_names(gnutls_x509_crt_t crt, size_t cap, char *dst)
{
	size_t used = 0;

	dst[0] = '\0';
	for (unsigned i = 0; i < 16; i++) {
		char buf[256], name[300];
		size_t size = sizeof(buf) - 1;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, NULL);

		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_SAN_DNSNAME) {
			buf[size < sizeof(buf) ? size : sizeof(buf) - 1] = '\0';
			chat_pu_quote_ascii(sizeof(name), name, buf);
		} else if (type == GNUTLS_SAN_IPADDRESS && (size == 4 || size == 16)) {
			if (!inet_ntop(size == 4 ? AF_INET : AF_INET6, buf, name, sizeof(name)))
				continue;
		} else {
			continue;
		}
		int n = snprintf(dst + used, cap - used, "%s%s", used ? ", " : "", name);
		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
	if (!used) {
		char buf[256];
		size_t size = sizeof(buf);
		if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) == 0) {
			char q[200];
			chat_pu_quote_ascii(sizeof(q), q, buf);
			snprintf(dst, cap, "CN=%s (no subjectAltName)", q);
		} else {
			snprintf(dst, cap, "no name at all");
		}
	}
}

static void utc(time_t t, size_t cap, char *dst)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(dst, cap, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(dst, cap, "%lld (Unix time)", (long long)t);
}

/* Validity periods of the chain, by the host's clock. */
static int check_dates(struct tls_conn *c, gnutls_x509_crt_t *chain, unsigned n)
{
	const struct chat_host *host = c->s.host;
	time_t now = (time_t)(host->unix_ms(host) / 1000);

	for (unsigned i = 0; i < n; i++) {
		time_t from = gnutls_x509_crt_get_activation_time(chain[i]);
		time_t until = gnutls_x509_crt_get_expiration_time(chain[i]);
		char when[64], which[300], dn[200];

		if (i == 0) {
			snprintf(which, sizeof(which), "the certificate of %s", c->v->address);
		} else {
			crt_dn(chain[i], false, sizeof(dn), dn);
			snprintf(which, sizeof(which), "the CA certificate '%s' in the chain of %s", dn,
			         c->v->address);
		}
		if (until != (time_t)-1 && now > until) {
			utc(until, sizeof(when), when);
			tls_set_error(c, "%s expired on %s: its operator must renew it (or this machine's "
			              "clock is wrong)", which, when);
			return CHAT_ERR_CERT;
		}
		if (from != (time_t)-1 && now < from) {
			utc(from, sizeof(when), when);
			tls_set_error(c, "%s is not valid before %s: this machine's clock or the server's "
			              "is wrong", which, when);
			return CHAT_ERR_CERT;
		}
	}
	return CHAT_OK;
}

static int check_name(struct tls_conn *c, gnutls_x509_crt_t crt)
{
	unsigned char ip[16];
	char names[400], q[300];
	unsigned ok;

	if (inet_pton(AF_INET, c->v->name, ip) == 1) {
		gnutls_datum_t d = { ip, 4 };
		ok = gnutls_x509_crt_check_ip(crt, d.data, d.size, 0);
	} else if (inet_pton(AF_INET6, c->v->name, ip) == 1) {
		ok = gnutls_x509_crt_check_ip(crt, ip, 16, 0);
	} else {
		ok = gnutls_x509_crt_check_hostname2(crt, c->v->name, 0);
	}
	if (ok)
		return CHAT_OK;
	crt_names(crt, sizeof(names), names);
	chat_pu_quote_ascii(sizeof(q), q, c->v->name);
	tls_set_error(c, "the certificate of %s is for %s, not for %s: wrong host name (if the "
	              "relay is known by another name, set [plugin.tls] server_name)",
	              c->v->address, names, q);
	return CHAT_ERR_CERT;
}

static int check_ca(struct tls_conn *c, gnutls_x509_crt_t *chain, unsigned n)
{
	unsigned status = 0;
	char dn[200], issuer[200];
	int rc = gnutls_certificate_verify_peers2(c->session, &status);

	if (rc < 0) {
		tls_set_error(c, "cannot verify the certificate of %s: %s", c->v->address,
		              gnutls_strerror(rc));
		return CHAT_ERR_CERT;
	}
	crt_dn(chain[0], false, sizeof(dn), dn);
	crt_dn(chain[n - 1], true, sizeof(issuer), issuer);
	if (status & GNUTLS_CERT_REVOKED) {
		tls_set_error(c, "the certificate of %s ('%s') is revoked", c->v->address, dn);
		return CHAT_ERR_CERT;
	}
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA |
	              GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE)) {
		if (n == 1 && gnutls_x509_crt_check_issuer(chain[0], chain[0]))
			tls_set_error(c, "the certificate of %s ('%s') is self-signed, not issued by a CA "
			              "of %s ([plugin.tls] ca): unknown CA; to trust this key alone, "
			              "set [plugin.tls] pin = %s after comparing it with chat-relay "
			              "--fingerprint on the relay", c->v->address, dn, c->v->ca,
			              c->v->peer_fp);
		else
			tls_set_error(c, "the certificate of %s ('%s', issued by '%s') is not signed by a "
			              "CA of %s ([plugin.tls] ca): unknown CA", c->v->address, dn, issuer,
			              c->v->ca);
		return CHAT_ERR_CERT;
	}
	if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
		tls_set_error(c, "the certificate of %s ('%s') is signed with an insecure algorithm",
		              c->v->address, dn);
		return CHAT_ERR_CERT;
	}
	if ((rc = check_dates(c, chain, n)) != CHAT_OK || (rc = check_name(c, chain[0])) != CHAT_OK)
		return rc;
	if (status) {
		gnutls_datum_t out = { NULL, 0 };
		char q[400] = "?";
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0)
			chat_pu_quote_ascii(sizeof(q), q, (const char *)out.data);
		gnutls_free(out.data);
		tls_set_error(c, "the certificate of %s ('%s') is not valid: %s", c->v->address, dn, q);
		return CHAT_ERR_CERT;
	}
	return CHAT_OK;
}

/* ---- known_relays */

enum { KNOWN_NONE, KNOWN_MATCH, KNOWN_CHANGED };

/* Look address up in the text of a known_relays file: the line that has
 * this key (KNOWN_MATCH), else the first line with another key
 * (KNOWN_CHANGED, old set), else KNOWN_NONE. */
static int known_find(const struct chat_host *host, const char *file, char *text,
                      const char *address, const char *fp, unsigned *line, char old[TLS_FP_SIZE])
{
	unsigned no = 0, changed = 0;
	char *save = NULL;

	*line = 0;
	for (char *p = text; p && *p;) {
		char *nl = strchr(p, '\n'), *a, *k, *extra;
		if (nl)
			*nl = '\0';
		no++;
		a = strtok_r(p, " \t\r", &save);
		k = a ? strtok_r(NULL, " \t\r", &save) : NULL;
		extra = k ? strtok_r(NULL, " \t\r", &save) : NULL;
		char canon[TLS_FP_SIZE];
		if (!a || a[0] == '#') {
			/* blank or comment */
		} else if (!k || extra || parse_fp(k, canon) != 0) {
			chat_pu_log(host, CHAT_LOG_WARN, "%s:%u: not 'HOST:PORT sha256:HEX'; line ignored",
			             file, no);
		} else if (strcmp(a, address) == 0) {
			if (strcmp(canon, fp) == 0) {
				*line = no;
				return KNOWN_MATCH;
			}
			if (!changed) {
				changed = no;
				memcpy(old, canon, TLS_FP_SIZE);
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	*line = changed;
	return changed ? KNOWN_CHANGED : KNOWN_NONE;
}

/* Read known_relays and look the peer up: KNOWN_* or a negative error
 * (tls_set_error said). */
static int known_check(struct tls_conn *c, unsigned *line, char old[TLS_FP_SIZE])
{
	struct tls_verify *v = c->v;
	uint8_t *text = NULL;
	size_t len = 0;
	int r;

	if (tls_read_file(v->known, TLS_KNOWN_MAX, &text, &len) != 0) {
		if (errno == ENOENT)
			return KNOWN_NONE;
		tls_set_error(c, "cannot read %s (the keys of known relays) to check %s: %s", v->known,
		              v->address, strerror(errno));
		return CHAT_ERR_IO;
	}
	r = known_find(c->s.host, v->known, (char *)text, v->address, v->peer_fp, line, old);
	free(text);
	return r;
}

static int known_changed(struct tls_conn *c, unsigned line, const char *old)
{
	tls_set_error(c, "the key of %s has changed: it now presents %s, but %s line %u has %s. "
	              "Someone may be intercepting the connection, or the relay has a new key. "
	              "Refused. Compare with chat-relay --fingerprint on the relay; only if it "
	              "shows the new key, run: sed -i '%ud' %s and connect again",
	              c->v->address, c->v->peer_fp, c->v->known, line, old, line, c->v->known);
	return CHAT_ERR_CERT;
}

int tls_verify_peer(struct tls_conn *c)
{
	struct tls_verify *v = c->v;
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t chain[16];
	unsigned n = 0, ncerts = 0, line = 0;
	char old[TLS_FP_SIZE];
	int rc = CHAT_ERR_CERT;

	v->peer_fp[0] = '\0';
	certs = gnutls_certificate_get_peers(c->session, &ncerts);
	if (!certs || !ncerts) {
		tls_set_error(c, "%s presented no certificate", v->address);
		return CHAT_ERR_CERT;
	}
	for (n = 0; n < ncerts && n < sizeof(chain) / sizeof(chain[0]); n++) {
		if (gnutls_x509_crt_init(&chain[n]) < 0 ||
		    gnutls_x509_crt_import(chain[n], &certs[n], GNUTLS_X509_FMT_DER) < 0) {
			if (chain[n])
				gnutls_x509_crt_deinit(chain[n]);
			tls_set_error(c, "%s presented a certificate that does not parse", v->address);
			goto out;
		}
	}
	if (tls_crt_fingerprint(chain[0], v->peer_fp) != CHAT_OK) {
		tls_set_error(c, "cannot read the public key in the certificate of %s", v->address);
		goto out;
	}
	if ((v->trust & TLS_TRUST_CA) && (rc = check_ca(c, chain, n)) != CHAT_OK)
		goto out;
	if ((v->trust & TLS_TRUST_PIN) && !c->s.host->memeq(v->pin, v->peer_fp, TLS_FP_SIZE)) {
		tls_set_error(c, "the key of %s is %s, not the one [plugin.tls] pin names (%s): "
		              "refused. Someone may be intercepting the connection, or the relay has a "
		              "new key (compare with chat-relay --fingerprint on the relay)",
		              v->address, v->peer_fp, v->pin);
		rc = CHAT_ERR_CERT;
		goto out;
	}
	if (v->trust & TLS_TRUST_TOFU) {
		rc = known_check(c, &line, old);
		if (rc < 0)
			goto out;
		if (rc == KNOWN_CHANGED) {
			rc = known_changed(c, line, old);
			goto out;
		}
		v->record = rc == KNOWN_NONE;
		v->known_line = line;
	}
	rc = CHAT_OK;
out:
	while (n > 0)
		gnutls_x509_crt_deinit(chain[--n]);
	return rc;
}

int tls_verify_done(struct tls_conn *c)
{
	struct tls_verify *v = c->v;
	const struct chat_host *host = c->s.host;
	uint8_t *text = NULL;
	size_t len = 0;
	char dir[PATH_MAX], old[TLS_FP_SIZE], *slash, *copy = NULL, *out = NULL;
	unsigned line = 0;
	int rc;

	if (!v || !v->record)
		return CHAT_OK;
	v->record = false;
	/* Read again: another client may have recorded it meanwhile. */
	if (tls_read_file(v->known, TLS_KNOWN_MAX, &text, &len) != 0) {
		if (errno != ENOENT) {
			tls_set_error(c, "cannot read %s to record the key of %s: %s", v->known,
			              v->address, strerror(errno));
			return CHAT_ERR_IO;
		}
	}
	if (text && !(copy = strdup((char *)text))) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	rc = copy ? known_find(host, v->known, copy, v->address, v->peer_fp, &line, old) : KNOWN_NONE;
	if (rc == KNOWN_CHANGED) {
		rc = known_changed(c, line, old);
		goto out;
	}
	if (rc == KNOWN_MATCH) {
		v->known_line = line;
		rc = CHAT_OK;
		goto out;
	}
	line = 1;
	for (size_t i = 0; i < len; i++)
		line += text[i] == '\n';
	bool nl = len > 0 && text[len - 1] != '\n';
	if (nl)
		line++;
	size_t cap = len + strlen(v->address) + TLS_FP_SIZE + 4;
	if (!(out = malloc(cap))) {
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	if (len)
		memcpy(out, text, len);
	int n = snprintf(out + len, cap - len, "%s%s %s\n", nl ? "\n" : "", v->address, v->peer_fp);
	snprintf(dir, sizeof(dir), "%s", v->known);
	slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	if ((slash && slash != dir && tls_mkdirs(dir) != 0) ||
	    tls_write_atomic(v->known, out, len + (size_t)n, 0600) != 0) {
		tls_set_error(c, "cannot record the key of %s in %s: %s; not connecting (an unrecorded "
		              "key would be trusted again next time without a word)", v->address,
		              v->known, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
	v->known_line = line;
	chat_pu_log(host, CHAT_LOG_WARN,
	            "first connection to %s: its key %s is now trusted (recorded in %s line %u); "
	            "compare it with chat-relay --fingerprint on the relay",
	            v->address, v->peer_fp, v->known, line);
	rc = CHAT_OK;
out:
	free(text);
	free(copy);
	free(out);
	return rc;
}

const char *tls_verify_how(const struct tls_verify *v)
{
	if ((v->trust & TLS_TRUST_CA) && (v->trust & TLS_TRUST_PIN))
		return "CA-verified and pinned";
	if (v->trust & TLS_TRUST_CA)
		return "CA-verified";
	if (v->trust & TLS_TRUST_PIN)
		return "pinned";
	return "known since first use";
}
