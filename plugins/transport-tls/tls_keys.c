/* The certificate and key this side presents when it listens: the files of
 * [plugin.tls] cert and key, or a self-signed ECDSA P-256 pair that the
 * plugin makes once in host->state_dir (tls-key.pem, tls-cert.pem) and
 * reuses after.  Also the small file helpers the plugin needs (it reads and
 * writes its own files: keys, known_relays). */
#define _GNU_SOURCE

#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLS_FILE_MAX (1u << 20) /* a PEM chain or a known_relays file */

int tls_read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, e;

	*data = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto fail;
	}
	if ((uint64_t)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto fail;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? errno : EIO;
			explicit_bzero(buf, got);
			free(buf);
			errno = e;
			goto fail;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	*data = buf;
	*len = got;
	return 0;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int tls_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[PATH_MAX];
	const uint8_t *p = data;
	size_t done = 0;
	int fd = -1, e;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.new", path, (long)getpid()) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* O_EXCL: never write through a file or link someone put there.  A
	 * leftover of a crashed run of this very pid is removed once. */
	for (int tries = 0; fd < 0; tries++) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
		if (fd < 0 && (errno != EEXIST || tries > 0 || unlink(tmp) != 0))
			return -1;
	}
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		done += (size_t)n;
	}
	if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return fsync_dir_of(path);
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
	return -1;
}

int tls_mkdirs(const char *dir)
{
	char buf[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf)) {
		errno = n ? ENAMETOOLONG : ENOENT;
		return -1;
	}
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		buf[i] = c;
	}
	return 0;
}

int tls_crt_fingerprint(gnutls_x509_crt_t crt, char fp[TLS_FP_SIZE])
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t der = { NULL, 0 };
	uint8_t h[32];
	int rc = CHAT_ERR_MALFORMED;

	fp[0] = '\0';
	if (gnutls_pubkey_init(&pub) < 0)
		return CHAT_ERR_NOMEM;
	if (gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) < 0 ||
	    gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, h) < 0)
		goto out;
	memcpy(fp, "sha256:", 7);
	for (size_t i = 0; i < sizeof(h); i++)
		snprintf(fp + 7 + 2 * i, 3, "%02x", h[i]);
	rc = CHAT_OK;
out:
	gnutls_free(der.data);
	gnutls_pubkey_deinit(pub);
	return rc;
}

/* A private key file others can read is worth a word, not a refusal. */
static void check_key_mode(const struct chat_host *host, const char *path, const char *what)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & 077))
		chat_pu_log(host, CHAT_LOG_WARN, "%s %s can be read by other users (mode %04o): chmod 600 %s",
		    what, path, (unsigned)(st.st_mode & 07777), path);
}

/* Certificates (PEM, one or more) from path, appended to *crts. */
static int load_crts(const struct chat_host *host, const char *path, const char *what,
                     gnutls_x509_crt_t **crts, unsigned *n)
{
	uint8_t *buf;
	size_t len;
	gnutls_datum_t d;
	gnutls_x509_crt_t *more = NULL, *all;
	unsigned m = 0;
	int rc;

	if (tls_read_file(path, TLS_FILE_MAX, &buf, &len) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot read %s %s: %s", what, path,
		    strerror(errno));
		return CHAT_ERR_CONFIG;
	}
	d.data = buf;
	d.size = (unsigned)len;
	rc = gnutls_x509_crt_list_import2(&more, &m, &d, GNUTLS_X509_FMT_PEM, 0);
	free(buf);
	if (rc < 0 || m == 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "%s %s holds no PEM certificate: %s", what, path,
		    rc < 0 ? gnutls_strerror(rc) : "none found");
		return CHAT_ERR_CONFIG;
	}
	all = realloc(*crts, (*n + m) * sizeof(*all));
	if (!all) {
		for (unsigned i = 0; i < m; i++)
			gnutls_x509_crt_deinit(more[i]);
		gnutls_free(more);
		return CHAT_ERR_NOMEM;
	}
	memcpy(all + *n, more, m * sizeof(*more));
	gnutls_free(more);
	*crts = all;
	*n += m;
	return CHAT_OK;
}

static int load_key(const struct chat_host *host, const char *path, const char *what,
                    gnutls_x509_privkey_t *key)
{
	uint8_t *buf;
	size_t len;
	gnutls_datum_t d;
	int rc;

	if (tls_read_file(path, TLS_FILE_MAX, &buf, &len) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot read %s %s: %s", what, path,
		    strerror(errno));
		return CHAT_ERR_CONFIG;
	}
	d.data = buf;
	d.size = (unsigned)len;
	rc = gnutls_x509_privkey_init(key);
	if (rc == 0) {
		rc = gnutls_x509_privkey_import2(*key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
		if (rc < 0) {
			gnutls_x509_privkey_deinit(*key);
			*key = NULL;
		}
	}
	explicit_bzero(buf, len);
	free(buf);
	if (rc < 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "%s %s is not a PEM private key gnutls can use "
		    "(an encrypted key is not supported): %s", what, path, gnutls_strerror(rc));
		return CHAT_ERR_CONFIG;
	}
	check_key_mode(host, path, what);
	return CHAT_OK;
}

/* The self-signed certificate for key: no name (clients trust the key by
 * pin or on first use, not by name), valid from a day ago, no expiry
 * (RFC 5280's 99991231235959Z: the key, not a date, is what is trusted). */
static int make_cert(const struct chat_host *host, gnutls_x509_privkey_t key,
                     gnutls_datum_t *pem)
{
	gnutls_x509_crt_t crt = NULL;
	uint8_t serial[16];
	time_t now = (time_t)(host->unix_ms(host) / 1000);
	int rc;

	if (host->random(host, sizeof(serial), serial) != CHAT_OK)
		return CHAT_ERR_RANDOM;
	serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40); /* positive, 16 bytes */
	if ((rc = gnutls_x509_crt_init(&crt)) < 0 ||
	    (rc = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
	    (rc = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
	    (rc = gnutls_x509_crt_set_activation_time(crt, now - 86400)) < 0 ||
	    (rc = gnutls_x509_crt_set_expiration_time(crt, (time_t)-1)) < 0 ||
	    (rc = gnutls_x509_crt_set_dn(crt, "CN=chat-relay", NULL)) < 0 ||
	    (rc = gnutls_x509_crt_set_key(crt, key)) < 0 ||
	    (rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
	    (rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
	    (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
	    (rc = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, pem)) < 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot make a self-signed certificate: %s",
		    gnutls_strerror(rc));
		gnutls_x509_crt_deinit(crt);
		return CHAT_ERR_FAILED;
	}
	gnutls_x509_crt_deinit(crt);
	return CHAT_OK;
}

/* The pair in the state directory: the key made if missing (0600, written
 * atomically), the certificate made for it if missing.  *created says a new
 * key was made. */
static int self_signed(const struct chat_host *host, const char *dir, char *keypath,
                       char *certpath, size_t cap, bool *created)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_datum_t pem = { NULL, 0 };
	struct stat st;
	int rc;

	*created = false;
	if ((size_t)snprintf(keypath, cap, "%s/%s", dir, TLS_KEY_FILE) >= cap ||
	    (size_t)snprintf(certpath, cap, "%s/%s", dir, TLS_CERT_FILE) >= cap) {
		chat_pu_log(host, CHAT_LOG_ERROR, "state directory path too long: %s", dir);
		return CHAT_ERR_CONFIG;
	}
	if (stat(keypath, &st) == 0)
		goto cert;
	if (errno != ENOENT) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot use %s: %s", keypath, strerror(errno));
		return CHAT_ERR_IO;
	}
	if (tls_mkdirs(dir) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot create the state directory %s for the TLS key: %s",
		    dir, strerror(errno));
		return CHAT_ERR_IO;
	}
	if ((rc = gnutls_x509_privkey_init(&key)) < 0 ||
	    (rc = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
	                                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
	    (rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
	                                            &pem)) < 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot make a TLS key: %s", gnutls_strerror(rc));
		rc = CHAT_ERR_FAILED;
		goto out;
	}
	if (tls_write_atomic(keypath, pem.data, pem.size, 0600) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot write the TLS key %s: %s", keypath, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
	*created = true;
	/* A certificate left from an older key belongs to nothing now. */
	if (unlink(certpath) != 0 && errno != ENOENT) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot remove the old %s: %s", certpath, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
cert:
	if (stat(certpath, &st) == 0) {
		rc = CHAT_OK;
		goto out;
	}
	if (!key && (rc = load_key(host, keypath, "TLS key", &key)) != CHAT_OK)
		goto out;
	if (pem.data) { /* the key's PEM: done with it */
		explicit_bzero(pem.data, pem.size);
		gnutls_free(pem.data);
		pem.data = NULL;
		pem.size = 0;
	}
	if ((rc = make_cert(host, key, &pem)) != CHAT_OK)
		goto out;
	if (tls_write_atomic(certpath, pem.data, pem.size, 0644) != 0) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot write the TLS certificate %s: %s",
		    certpath, strerror(errno));
		rc = CHAT_ERR_IO;
		goto out;
	}
out:
	if (pem.data) {
		explicit_bzero(pem.data, pem.size);
		gnutls_free(pem.data);
	}
	gnutls_x509_privkey_deinit(key);
	return rc;
}

int tls_load_identity(const struct chat_host *host, bool log_it,
                      gnutls_certificate_credentials_t creds, char fp[TLS_FP_SIZE])
{
	const char *cert = chat_pu_config(host, "cert", "");
	const char *keyfile = chat_pu_config(host, "key", ""), *ca = chat_pu_config(host, "ca", "");
	const char *dir = CHAT_PU_HOST_HAS(host, state_dir) && host->state_dir ?
	                  host->state_dir(host) : NULL;
	char keypath[PATH_MAX], certpath[PATH_MAX];
	gnutls_x509_crt_t *crts = NULL;
	gnutls_x509_privkey_t key = NULL;
	unsigned n = 0;
	bool created = false;
	int rc;

	fp[0] = '\0';
	if (!*cert != !*keyfile) {
		chat_pu_log(host, CHAT_LOG_ERROR, "[plugin.tls] %s is set but %s is not: set both "
		    "(a certificate and its key), or neither for a self-signed pair in the state "
		    "directory", *cert ? "cert" : "key", *cert ? "key" : "cert");
		return CHAT_ERR_CONFIG;
	}
	if (*cert) {
		snprintf(certpath, sizeof(certpath), "%s", cert);
		snprintf(keypath, sizeof(keypath), "%s", keyfile);
	} else if (!dir || !*dir) {
		chat_pu_log(host, CHAT_LOG_ERROR, "no TLS certificate: set [plugin.tls] cert and key, or give "
		    "the program a state directory where a self-signed key is made and kept "
		    "(chat-relay: relay.state_dir, or relay.database whose directory is used; "
		    "chat-peer: peer.data_dir)");
		return CHAT_ERR_CONFIG;
	} else if ((rc = self_signed(host, dir, keypath, certpath, sizeof(keypath), &created)) != CHAT_OK) {
		return rc;
	}

	if ((rc = load_crts(host, certpath, *cert ? "[plugin.tls] cert" : "TLS certificate", &crts,
	                    &n)) != CHAT_OK ||
	    (rc = load_key(host, keypath, *cert ? "[plugin.tls] key" : "TLS key", &key)) != CHAT_OK)
		goto out;
	if (*ca && (rc = load_crts(host, ca, "[plugin.tls] ca", &crts, &n)) != CHAT_OK)
		goto out;
	if ((rc = tls_crt_fingerprint(crts[0], fp)) != CHAT_OK) {
		chat_pu_log(host, CHAT_LOG_ERROR, "cannot read the public key of %s", certpath);
		goto out;
	}
	if (creds) {
		int g = gnutls_certificate_set_x509_key(creds, crts, n, key);
		if (g < 0) {
			chat_pu_log(host, CHAT_LOG_ERROR, "cannot use %s with %s: %s%s", certpath, keypath,
			    gnutls_strerror(g), g == GNUTLS_E_CERTIFICATE_KEY_MISMATCH ?
			    " (the certificate is not for this key)" : "");
			rc = CHAT_ERR_CONFIG;
			goto out;
		}
	}
	if (log_it)
		chat_pu_log(host, CHAT_LOG_INFO, "TLS key %s (%s %s, certificate %s)", fp,
		    created ? "created in" : "loaded from", keypath, certpath);
	rc = CHAT_OK;
out:
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	free(crts);
	gnutls_x509_privkey_deinit(key); /* gnutls wipes it */
	return rc;
}
