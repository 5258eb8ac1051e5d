/* chat.ini parsing, validation, overrides and plugin sections (core/src/config.c). */
#include "testutils.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "config.h"
#include "paths.h"

/* Kept short so every name built from it fits the PATH_MAX buffers below. */
static char tmpdir[1024];

static void init_tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	size_t n;

	if (!t || !*t || strlen(t) >= sizeof(tmpdir))
		t = "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s", t);
	n = strlen(tmpdir);
	while (n > 1 && tmpdir[n - 1] == '/')
		tmpdir[--n] = '\0';
}

/* Write len bytes to a new temporary file; the caller unlinks and frees the name. */
static char *write_tmp(const void *data, size_t len)
{
	size_t n = strlen(tmpdir) + 32;
	char *path = malloc(n);
	const char *p = data;
	int fd;

	if (!path)
		abort();
	snprintf(path, n, "%s/test_config.XXXXXX", tmpdir);
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		abort();
	}
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			perror("write");
			abort();
		}
		p += w;
		len -= (size_t)w;
	}
	close(fd);
	return path;
}

static void remove_tmp(char *path)
{
	unlink(path);
	free(path);
}

/* Load text from a temporary file; NULL (and err set) on failure. *pathp gets
 * the file name if pathp is given, else the file is removed at once. */
static struct chat_config *load_text(const void *text, size_t len, char **pathp,
                                     char *err, size_t errlen)
{
	struct chat_config *cfg = NULL;
	char *path = write_tmp(text, len);

	if (chat_config_load(path, &cfg, errlen, err) != 0)
		cfg = NULL;
	if (pathp)
		*pathp = path;
	else
		remove_tmp(path);
	return cfg;
}

#define LOAD_OK(text, pathp) load_ok(__LINE__, (text), (pathp))
static struct chat_config *load_ok(int tl, const char *text, char **pathp)
{
	char err[512] = "";
	struct chat_config *cfg = load_text(text, strlen(text), pathp, err, sizeof(err));

	if (!cfg) {
		fprintf(stderr, "%s:%d: load failed: %s\n", __FILE__, tl, err);
		test_failures++;
	}
	return cfg;
}

/* The error must start with "FILE:LINE: " (or "FILE: " for line 0) and
 * contain phrase; *cfg must stay untouched. */
#define EXPECT_LOAD_ERROR(text, line, phrase) \
	expect_load_error(__LINE__, (text), strlen(text), (line), (phrase))
static void expect_load_error(int tl, const void *text, size_t len, int line, const char *phrase)
{
	static char sentinel;
	struct chat_config *cfg = (struct chat_config *)(void *)&sentinel;
	char err[1024] = "", prefix[PATH_MAX + 32];
	char *path = write_tmp(text, len);
	int rc = chat_config_load(path, &cfg, sizeof(err), err);

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	if (rc != CHAT_ERR_CONFIG || cfg != (struct chat_config *)(void *)&sentinel ||
	    strncmp(err, prefix, strlen(prefix)) || !strstr(err, phrase)) {
		fprintf(stderr, "%s:%d: expected rc %d and \"%s...%s...\", got rc %d and \"%s\"\n",
		        __FILE__, tl, CHAT_ERR_CONFIG, prefix, phrase, rc, err);
		test_failures++;
	}
	if (rc == 0 && cfg != (struct chat_config *)(void *)&sentinel)
		chat_config_free(cfg);
	remove_tmp(path);
}

/* err must equal where + ": " + rest exactly. */
#define CHECK_ERR_IS(err, where, rest) check_err_is(__LINE__, (err), (where), (rest))
static void check_err_is(int tl, const char *err, const char *where, const char *rest)
{
	char want[2048];

	snprintf(want, sizeof(want), "%s: %s", where, rest);
	if (strcmp(err, want)) {
		fprintf(stderr, "%s:%d: error \"%s\", expected \"%s\"\n", __FILE__, tl, err, want);
		test_failures++;
	}
}

#define CHECK_STR_EQ(a, b) do { \
	const char *a_ = (a), *b_ = (b); \
	if (!a_ || !b_ || strcmp(a_, b_)) { \
		fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
		        #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
		test_failures++; \
	} } while (0)

static char *at(const char *path, int line)
{
	static char buf[PATH_MAX + 32];

	snprintf(buf, sizeof(buf), "%s:%d", path, line);
	return buf;
}

static const char full_ini[] =
	"; chat.ini for the test, CRLF line endings\r\n"      /* 1 */
	"# hash comments work at the start of a line\r\n"   /* 2 */
	"\r\n"                                               /* 3 */
	"[core]\r\n"                                         /* 4 */
	"plugin_dir = plugins ; next to this file\r\n"      /* 5 */
	"log_level = debug\r\n"                              /* 6 */
	"max_frame = 4096\r\n"                               /* 7 */
	"\r\n"                                               /* 8 */
	"[relay] ; the server\r\n"                           /* 9 */
	"transport = tcp\r\n"                                /* 10 */
	"listen = [::1]:7401   ; inline comment\r\n"        /* 11 */
	"max_clients = 12\r\n"                               /* 12 */
	"out_queue_limit=8192\r\n"                           /* 13 */
	"idle_timeout = 30\r\n"                              /* 14 */
	"[client]\r\n"                                       /* 15 */
	"transport = tcp-2\r\n"                              /* 16 */
	"connect = relay.example:7402\r\n"                  /* 17 */
	"user = alice smith;not a comment\r\n"              /* 18 */
	"connect_timeout = 250\r\n"                          /* 19 */
	"\t[peer]\r\n"                                       /* 20 */
	"\ttransport = tcp\r\n"                              /* 21 */
	"    listen = 0.0.0.0:0\r\n"                         /* 22 */
	"[plugin.rc4dh]\r\n"                                 /* 23 */
	"drop = 4096\r\n";                                   /* 24 */

static void test_full_file(void)
{
	struct chat_config *cfg;
	char *path, want[PATH_MAX + 32];

	cfg = LOAD_OK(full_ini, &path);
	if (!cfg) {
		remove_tmp(path);
		return;
	}
	CHECK_STR_EQ(chat_config_file(cfg), path);
	snprintf(want, sizeof(want), "%s/plugins", tmpdir);
	CHECK_STR_EQ(chat_config_get(cfg, "core", "plugin_dir"), "plugins");
	CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), want);
	CHECK_STR_EQ(chat_config_get(cfg, "core", "log_level"), "debug");
	CHECK_EQ_INT(chat_config_int(cfg, "core", "max_frame"), 4096);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "transport"), "tcp");
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "[::1]:7401");
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_clients"), 12);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "out_queue_limit"), 8192);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "idle_timeout"), 30);
	CHECK_STR_EQ(chat_config_get(cfg, "client", "transport"), "tcp-2");
	CHECK_STR_EQ(chat_config_get(cfg, "client", "connect"), "relay.example:7402");
	/* inih needs whitespace before an inline ';' comment. */
	CHECK_STR_EQ(chat_config_get(cfg, "client", "user"), "alice smith;not a comment");
	CHECK_EQ_INT(chat_config_int(cfg, "client", "connect_timeout"), 250);
	CHECK_STR_EQ(chat_config_get(cfg, "peer", "transport"), "tcp");
	CHECK_STR_EQ(chat_config_get(cfg, "peer", "listen"), "0.0.0.0:0");
	CHECK_STR_EQ(chat_config_get(cfg, "plugin.rc4dh", "drop"), "4096");

	CHECK_STR_EQ(chat_config_where(cfg, "core", "plugin_dir"), at(path, 5));
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), at(path, 11));
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "out_queue_limit"), at(path, 13));
	CHECK_STR_EQ(chat_config_where(cfg, "client", "connect_timeout"), at(path, 19));
	CHECK_STR_EQ(chat_config_where(cfg, "peer", "transport"), at(path, 21));
	CHECK_STR_EQ(chat_config_where(cfg, "peer", "listen"), at(path, 22));
	CHECK_STR_EQ(chat_config_where(cfg, "plugin.rc4dh", "drop"), at(path, 24));

	CHECK_EQ_INT(chat_config_plugin_sections(cfg), 1);
	CHECK_STR_EQ(chat_config_plugin_section(cfg, 0), "rc4dh");
	CHECK_STR_EQ(chat_config_plugin_section_where(cfg, 0), at(path, 23));
	CHECK(chat_config_plugin_section(cfg, 1) == NULL);
	CHECK(chat_config_plugin_section_where(cfg, 1) == NULL);

	/* Unknown keys have neither value nor default. */
	CHECK(chat_config_get(cfg, "relay", "nosuch") == NULL);
	CHECK(chat_config_get(cfg, "nosuch", "listen") == NULL);
	CHECK(chat_config_path(cfg, "relay", "nosuch") == NULL);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "nosuch"), 0);
	CHECK_EQ_INT(chat_config_bool(cfg, "relay", "nosuch"), 0);
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "nosuch"), "default");
	chat_config_free(cfg);
	remove_tmp(path);
}

static void check_defaults(const struct chat_config *cfg, int except_relay_listen)
{
	CHECK_STR_EQ(chat_config_get(cfg, "core", "log_level"), "info");
	CHECK_EQ_INT(chat_config_int(cfg, "core", "max_frame"), 65536);
	CHECK(chat_config_get(cfg, "core", "plugin_dir") != NULL);
	CHECK(chat_config_path(cfg, "core", "plugin_dir")[0] == '/');
	CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"),
	             chat_config_get(cfg, "core", "plugin_dir"));
	CHECK_STR_EQ(chat_config_where(cfg, "core", "plugin_dir"), "default");
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "transport"), "tcp");
	if (!except_relay_listen) {
		CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "127.0.0.1:7400");
		CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), "default");
	}
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_clients"), 10000);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "reserved_slots"), -1);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_unauth_per_address"), 16);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "login_timeout"), 10);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "prelogin_max_frame"), 4096);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "log_interval"), 10);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "out_queue_limit"), 1048576);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "idle_timeout"), 0);
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "idle_timeout"), "default");
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "keepalive"), 5);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "dead_after"), 15);
	CHECK_EQ_INT(chat_config_int(cfg, "client", "keepalive"), 5);
	CHECK_EQ_INT(chat_config_int(cfg, "client", "dead_after"), 15);
	CHECK_STR_EQ(chat_config_get(cfg, "client", "transport"), "tcp");
	CHECK_STR_EQ(chat_config_get(cfg, "client", "connect"), "127.0.0.1:7400");
	CHECK_STR_EQ(chat_config_get(cfg, "client", "user"), "");
	CHECK_EQ_INT(chat_config_int(cfg, "client", "connect_timeout"), 5000);
	CHECK_STR_EQ(chat_config_get(cfg, "client", "min_security"), "auto");
	CHECK_STR_EQ(chat_config_get(cfg, "peer", "transport"), "tcp");
	CHECK_STR_EQ(chat_config_get(cfg, "peer", "listen"), "127.0.0.1:7500");
}

static void test_defaults(void)
{
	struct chat_config *cfg;

	cfg = LOAD_OK("[relay]\nlisten = 10.0.0.1:1\n", NULL);
	if (cfg) {
		check_defaults(cfg, 1);
		CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "10.0.0.1:1");
		chat_config_free(cfg);
	}
	/* An empty file is valid: everything default. */
	cfg = LOAD_OK("", NULL);
	if (cfg) {
		check_defaults(cfg, 0);
		CHECK_EQ_INT(chat_config_plugin_sections(cfg), 0);
		chat_config_free(cfg);
	}
	/* Comments and blank lines only; a UTF-8 BOM; a file without a final newline. */
	cfg = LOAD_OK("\xEF\xBB\xBF; only a comment\n\n   \n[core]\nlog_level = warn", NULL);
	if (cfg) {
		CHECK_STR_EQ(chat_config_get(cfg, "core", "log_level"), "warn");
		chat_config_free(cfg);
	}
	/* No file at all: the defaults alone. */
	cfg = NULL;
	CHECK_EQ_INT(chat_config_load(NULL, &cfg, 0, NULL), 0);
	if (cfg) {
		check_defaults(cfg, 0);
		CHECK(chat_config_file(cfg) == NULL);
		chat_config_free(cfg);
	}
	chat_config_free(NULL);
}

/* Every schema default must pass its own validation, and the table must be
 * exactly what the configuration documents. */
static void test_schema(void)
{
	struct chat_config *cfg = NULL;
	char err[512];
	size_t n = 0;

	CHECK_EQ_INT(chat_config_load(NULL, &cfg, sizeof(err), err), 0);
	if (!cfg)
		return;
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++, n++) {
		int rc = chat_config_override(cfg, k->section, k->key, k->def, "schema",
		                              sizeof(err), err);

		if (rc)
			fprintf(stderr, "schema default of %s.%s: %s\n", k->section, k->key, err);
		CHECK_EQ_INT(rc, 0);
		CHECK(k->help && *k->help);
	}
	CHECK_EQ_INT(n, 66); /* update with config_schema.c and docs/CONFIG.md */
	chat_config_free(cfg);
}

/* The paragraph of text that starts with start, up to the next blank line. */
static char *paragraph(const char *text, const char *start)
{
	const char *p = strstr(text, start), *end;

	if (!p)
		return NULL;
	end = strstr(p, "\n\n");
	return strndup(p, end ? (size_t)(end - p) : strlen(p));
}

/* docs/CONFIG.md has a row for every key, and docs/SERVICE.md lists every
 * key of [core] and [relay] as applied at SIGHUP or needing a restart, as
 * the schema's CHAT_CFG_LIVE says. */
static void test_docs(void)
{
	size_t len;
	char *config = (char *)test_load_file(CHAT_TEST_SOURCE_DIR "/docs/CONFIG.md", &len);
	char *service = (char *)test_load_file(CHAT_TEST_SOURCE_DIR "/docs/SERVICE.md", &len);
	char *live = paragraph(service, "**Applied at SIGHUP:**");
	char *restart = paragraph(service, "**Need a restart:**");
	char want[128];

	CHECK(live && restart);
	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section && live && restart; k++) {
		snprintf(want, sizeof(want), "\n| %s | %s | ", k->section, k->key);
		if (!strstr(config, want))
			fprintf(stderr, "docs/CONFIG.md has no row for %s.%s\n", k->section, k->key);
		CHECK(strstr(config, want));
		if (strcmp(k->section, "core") && strcmp(k->section, "relay"))
			continue;
		snprintf(want, sizeof(want), "`%s.%s`", k->section, k->key);
		int is_live = (k->flags & CHAT_CFG_LIVE) != 0;
		if (!strstr(is_live ? live : restart, want) || strstr(is_live ? restart : live, want))
			fprintf(stderr, "docs/SERVICE.md: %s should be under \"%s\" only\n", want,
			        is_live ? "Applied at SIGHUP" : "Need a restart");
		CHECK(strstr(is_live ? live : restart, want));
		CHECK(!strstr(is_live ? restart : live, want));
	}
	free(live);
	free(restart);
	free(config);
	free(service);
}

static void test_lists(void)
{
	struct chat_config *cfg = NULL;
	char err[512], names[16][33];

	CHECK_EQ_INT(chat_config_load(NULL, &cfg, sizeof(err), err), CHAT_OK);
	if (!cfg)
		return;
	CHECK_EQ_INT(chat_config_list(cfg, "client", "suites", 16, names), 2);
	/* The default holds no insecure suite (issue 13). */
	CHECK(!strcmp(names[0], "noise-xx") && !strcmp(names[1], "aescbc-hmac"));
	CHECK_EQ_INT(chat_config_set(cfg, "client.suites= xor-demo ,rc4dh,aescbc-hmac ", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_config_list(cfg, "client", "suites", 16, names), 3);
	CHECK(!strcmp(names[0], "xor-demo") && !strcmp(names[2], "aescbc-hmac"));
	CHECK_EQ_INT(chat_config_list(cfg, "client", "suites", 1, names), 1);
	CHECK_EQ_INT(chat_config_list(cfg, "relay", "suites", 16, names), 0); /* empty: any */
	chat_config_free(cfg);
}

static void test_value_errors(void)
{
	EXPECT_LOAD_ERROR("[relay]\nlisen = 1\n", 2,
	                  "unknown key 'lisen' in section [relay] (known keys: transport, listen, "
	                  "max_clients, reserved_slots, max_unauth_per_address, login_timeout, "
	                  "prelogin_max_frame, out_queue_limit, idle_timeout, keepalive, dead_after, suites, max_rooms, max_room_members, "
	                  "database, store, state_dir, guests, open_registration, friends_only, queue_max_messages, "
	                  "queue_max_bytes, queue_expiry, archive, archive_days, login_throttle_after, "
	                  "login_throttle_ms, login_throttle_max_ms, login_guard_after, register_throttle_after, "
	                  "register_throttle_ms, register_throttle_max_ms, reveal_accounts, scram_iterations, log, log_interval, cluster, cluster_ttl, node_id)");
	EXPECT_LOAD_ERROR("[core]\n\n[rely]\n", 3, "unknown section [rely]");
	EXPECT_LOAD_ERROR("[client]\nsuites = rc4dh, RC4\n", 2,
	                  "client.suites: 'rc4dh, RC4' is not a comma-separated list of suite names");
	EXPECT_LOAD_ERROR("[client]\nsuites = rc4dh,,xor-demo\n", 2, "is not a comma-separated list");
	EXPECT_LOAD_ERROR("[relay]\nsuites = rc4dh, rc4dh\n", 2, "relay.suites: 'rc4dh' is listed twice");
	EXPECT_LOAD_ERROR("[relay]\nsuites = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n", 2, "more than 16 names listed");
	EXPECT_LOAD_ERROR("[rely]\nlisten = 1\n", 1, "unknown section [rely]");
	EXPECT_LOAD_ERROR("[]\n", 1, "unknown section []");
	EXPECT_LOAD_ERROR("[ relay ]\n", 1, "unknown section [ relay ]");

	EXPECT_LOAD_ERROR("[relay]\n\n\n\n\n\nmax_clients = 12x\n", 7,
	                  "relay.max_clients: '12x' is not a number");
	EXPECT_LOAD_ERROR("[relay]\n\n\n\n\n\nmax_clients = 0\n", 7,
	                  "relay.max_clients: 0 is out of range 1..1000000");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = 1000001\n", 2, "1000001 is out of range 1..1000000");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = -5\n", 2, "-5 is out of range 1..1000000");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = 99999999999999999999999\n", 2,
	                  "99999999999999999999999 is out of range 1..1000000");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = -99999999999999999999999\n", 2, "is out of range");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = -\n", 2, "'-' is not a number");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = +5\n", 2, "'+5' is not a number");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = 1 2\n", 2, "'1 2' is not a number");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients = 0x10\n", 2, "'0x10' is not a number");
	EXPECT_LOAD_ERROR("[relay]\nmax_clients =\n", 2, "relay.max_clients: empty value");
	EXPECT_LOAD_ERROR("[core]\nmax_frame = 63\n", 2, "core.max_frame: 63 is out of range 64..16777216");

	EXPECT_LOAD_ERROR("[relay]\n\n\n\n\n\n\n\nlisten = 127.0.0.1\n", 9,
	                  "relay.listen: '127.0.0.1' is not an address of the form host:port or [v6]:port");
	EXPECT_LOAD_ERROR("[relay]\n\n\n\n\n\n\n\nlisten = 127.0.0.1:70000\n", 9,
	                  "relay.listen: port 70000 is out of range 0..65535");
	EXPECT_LOAD_ERROR("[relay]\nlisten = h:99999999999999999999\n", 2,
	                  "port 99999999999999999999 is out of range 0..65535");
	static const char *const bad_addresses[] = {
		":80", "host:", "[]:80", "[::1]80", "[::1]", "[::1", "[::1]:", "a b:80", "h:8x",
		"h:-1", "::1:80", "a:b:80", "[a b]:1", "h: 80", "h:+80", "a\x1b[1m:1", "a]:1",
	};
	for (size_t i = 0; i < sizeof(bad_addresses) / sizeof(bad_addresses[0]); i++) {
		char text[128];

		snprintf(text, sizeof(text), "[client]\nconnect = %s\n", bad_addresses[i]);
		EXPECT_LOAD_ERROR(text, 2, "is not an address of the form host:port or [v6]:port");
	}
	static const char *const good_addresses[] = {
		"h:0", "[::1]:65535", "localhost:7400", "[fe80::1%eth0]:1", "1.2.3.4:00080",
	};
	for (size_t i = 0; i < sizeof(good_addresses) / sizeof(good_addresses[0]); i++) {
		char text[128];
		struct chat_config *cfg;

		snprintf(text, sizeof(text), "[client]\nconnect = %s\n", good_addresses[i]);
		cfg = LOAD_OK(text, NULL);
		if (cfg)
			CHECK_STR_EQ(chat_config_get(cfg, "client", "connect"), good_addresses[i]);
		chat_config_free(cfg);
	}

	EXPECT_LOAD_ERROR("[core]\nlog_level = loud\n", 2,
	                  "core.log_level: 'loud' is not one of error, warn, info, debug");
	EXPECT_LOAD_ERROR("[client]\nmin_security = lax\n", 2,
	                  "client.min_security: 'lax' is not one of secure,auto,insecure");
	EXPECT_LOAD_ERROR("[client]\nmin_security = secur\n", 2,
	                  "client.min_security: 'secur' is not one of secure,auto,insecure");
	EXPECT_LOAD_ERROR("[core]\nlog_level = INFO\n", 2, "'INFO' is not one of");
	EXPECT_LOAD_ERROR("[relay]\ntransport = TCP\n", 2, "relay.transport: 'TCP' is not a valid plugin name");
	EXPECT_LOAD_ERROR("[relay]\ntransport = tcp_x\n", 2, "'tcp_x' is not a valid plugin name");
	EXPECT_LOAD_ERROR("[relay]\ntransport = abcdefghijabcdefghijabcdefghijabc\n", 2,
	                  "is not a valid plugin name");
	EXPECT_LOAD_ERROR("[relay]\ntransport =\n", 2, "relay.transport: empty value");

	/* Empty strings and paths are allowed and mean "empty". */
	struct chat_config *cfg = LOAD_OK("[client]\nuser =\n[core]\nplugin_dir = ; none\n", NULL);
	if (cfg) {
		CHECK_STR_EQ(chat_config_get(cfg, "client", "user"), "");
		CHECK_STR_EQ(chat_config_get(cfg, "core", "plugin_dir"), "");
		CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), "");
		chat_config_free(cfg);
	}
	/* The longest name is fine. */
	cfg = LOAD_OK("[relay]\ntransport = abcdefghijabcdefghijabcdefghij-9\n", NULL);
	chat_config_free(cfg);
}

static void test_structure_errors(void)
{
	EXPECT_LOAD_ERROR("[relay]\nlisten = a:1\n[core]\n[relay]\nlisten = b:2\n", 5,
	                  "duplicate key 'listen' in section [relay] (first set at line 2)");
	EXPECT_LOAD_ERROR("[plugin.x]\na = 1\n[plugin.x]\n\na = 2\n", 5,
	                  "duplicate key 'a' in section [plugin.x] (first set at line 2)");
	EXPECT_LOAD_ERROR("; top\n\n\n\nlisten = 1\n", 5, "key outside any section");

	EXPECT_LOAD_ERROR("[relay]\nlisten\n", 2,
	                  "syntax error: expected 'key = value' or '[section]'");
	EXPECT_LOAD_ERROR("[core]\n[relay\nlisten = a:1\n", 2, "syntax error");
	EXPECT_LOAD_ERROR("[relay] junk\n", 1, "syntax error");
	EXPECT_LOAD_ERROR("[relay ; comment]\n", 1, "syntax error");
	EXPECT_LOAD_ERROR("[relay]\n= a:1\n", 2, "syntax error");
	/* The first error wins, whichever side found it. */
	EXPECT_LOAD_ERROR("[relay]\noops\nlisen = 1\n", 2, "syntax error");
	EXPECT_LOAD_ERROR("[relay]\nlisen = 1\noops\n", 2, "unknown key 'lisen'");
	EXPECT_LOAD_ERROR("[relay]\noops\n[rely]\n", 2, "syntax error");

	EXPECT_LOAD_ERROR("[plugin.RC4]\n", 1,
	                  "invalid plugin name 'RC4' in section [plugin.RC4]");
	EXPECT_LOAD_ERROR("[core]\n[plugin.]\n", 2, "invalid plugin name '' in section [plugin.]");
	EXPECT_LOAD_ERROR("[plugin.a b]\n", 1, "invalid plugin name 'a b'");
	EXPECT_LOAD_ERROR("[plugin.abcdefghijabcdefghijabcdefghijabc]\n", 1, "invalid plugin name");
	EXPECT_LOAD_ERROR("[plugin.rc4dh.x]\n", 1, "invalid plugin name 'rc4dh.x'");

	/* An indented line is an ordinary line, not a continuation of a value. */
	EXPECT_LOAD_ERROR("[client]\nuser = a\n  continued\n", 3, "syntax error");

	/* NUL bytes end no line early. */
	static const char nul[] = "[relay]\nlisten = a:1\0junk\nmax_clients = 1\n";
	expect_load_error(__LINE__, nul, sizeof(nul) - 1, 2, "line contains a NUL byte");
}

static void test_long_lines(void)
{
	char line[6000], text[7000];
	struct chat_config *cfg;

	/* 198 characters fit, with LF or CRLF. */
	memset(line, 'x', 198);
	line[0] = ';';
	line[198] = '\0';
	snprintf(text, sizeof(text), "[core]\n%s\nlog_level = warn\n", line);
	cfg = LOAD_OK(text, NULL);
	chat_config_free(cfg);
	snprintf(text, sizeof(text), "[core]\r\n%s\r\nlog_level = warn\r\n", line);
	cfg = LOAD_OK(text, NULL);
	if (cfg)
		CHECK_STR_EQ(chat_config_get(cfg, "core", "log_level"), "warn");
	chat_config_free(cfg);
	/* A value filling the whole line. */
	memcpy(line, "user = ", 7);
	snprintf(text, sizeof(text), "[client]\n%s\n", line);
	cfg = LOAD_OK(text, NULL);
	if (cfg)
		CHECK_EQ_INT(strlen(chat_config_get(cfg, "client", "user")), 198 - 7);
	chat_config_free(cfg);

	/* 199 do not, whether the line ends with LF, CRLF or the file. */
	memset(line, 'x', 199);
	line[0] = ';';
	line[199] = '\0';
	snprintf(text, sizeof(text), "[core]\n%s\nlog_level = warn\n", line);
	EXPECT_LOAD_ERROR(text, 2, "line too long (at most 198 characters)");
	snprintf(text, sizeof(text), "[core]\r\n%s\r\n", line);
	EXPECT_LOAD_ERROR(text, 2, "line too long (at most 198 characters)");
	snprintf(text, sizeof(text), "[core]\n%s", line);
	EXPECT_LOAD_ERROR(text, 2, "line too long (at most 198 characters)");

	memset(line, 'y', 5000);
	memcpy(line, "user = ", 7);
	line[5000] = '\0';
	snprintf(text, sizeof(text), "[client]\n\n%s\nuser = z\n", line);
	EXPECT_LOAD_ERROR(text, 3, "line too long");
}

static void test_odd_files(void)
{
	struct chat_config *cfg = NULL;
	char err[PATH_MAX + 128], want[PATH_MAX + 128], missing[PATH_MAX];
	int rc;

	/* Missing file. */
	snprintf(missing, sizeof(missing), "%s/test_config.does-not-exist.ini", tmpdir);
	rc = chat_config_load(missing, &cfg, sizeof(err), err);
	CHECK_EQ_INT(rc, CHAT_ERR_NOTFOUND);
	CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "cannot read config file '%s': No such file or directory", missing);
	CHECK_STR_EQ(err, want);

	/* A directory. */
	rc = chat_config_load(tmpdir, &cfg, sizeof(err), err);
	CHECK(rc < 0);
	CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "cannot read config file '%s': Is a directory", tmpdir);
	CHECK_STR_EQ(err, want);

	/* Binary junk: an error, never a crash. */
	{
		unsigned char junk[4096];

		test_srand(1);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (unsigned char)test_rand();
		cfg = load_text(junk, sizeof(junk), NULL, err, sizeof(err));
		CHECK(cfg == NULL);
		CHECK(err[0] != '\0');
		/* Quoted control bytes are not passed through. */
		for (const char *p = err; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		/* The same without NUL bytes or newlines. */
		for (size_t i = 0; i < sizeof(junk); i++)
			if (junk[i] == 0 || junk[i] == '\n')
				junk[i] = 0x80;
		cfg = load_text(junk, sizeof(junk), NULL, err, sizeof(err));
		CHECK(cfg == NULL);
		CHECK(err[0] != '\0');
	}

	/* No err buffer at all is fine. */
	EXPECT_LOAD_ERROR("[x]\n", 1, "unknown section [x]");
	{
		char *path = write_tmp("[x]\n", 4);

		cfg = NULL;
		CHECK_EQ_INT(chat_config_load(path, &cfg, 0, NULL), CHAT_ERR_CONFIG);
		CHECK(cfg == NULL);
		remove_tmp(path);
	}
	/* A tiny err buffer is truncated, not overrun. */
	{
		char small[8];
		char *path = write_tmp("[x]\n", 4);

		memset(small, 'Z', sizeof(small));
		CHECK_EQ_INT(chat_config_load(path, &cfg, 5, small), CHAT_ERR_CONFIG);
		CHECK_EQ_INT(strlen(small), 4);
		CHECK(small[5] == 'Z');
		remove_tmp(path);
	}
	CHECK_EQ_INT(chat_config_load("x", NULL, sizeof(err), err), CHAT_ERR_INVALID);
}

/* Many sections: merged when repeated, capped when distinct. */
static void test_many_sections(void)
{
	size_t cap = 10000 * 40 + 64, n = 0;
	char *text = malloc(cap), err[256];
	struct chat_config *cfg;

	if (!text)
		abort();
	for (int i = 0; i < 10000; i++)
		n += (size_t)snprintf(text + n, cap - n, i % 2 ? "[relay]\n" : "[plugin.same]\n");
	cfg = LOAD_OK(text, NULL);
	if (cfg)
		CHECK_EQ_INT(chat_config_plugin_sections(cfg), 1);
	chat_config_free(cfg);

	n = 0;
	for (int i = 0; i < 10000; i++)
		n += (size_t)snprintf(text + n, cap - n, "[plugin.p%d]\nk = %d\n", i, i);
	cfg = load_text(text, n, NULL, err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK_STR_CONTAINS(err, ":8193: too many sections (at most 4096)");
	/* 4096 distinct sections are still fine. */
	n = 0;
	for (int i = 0; i < 4096; i++)
		n += (size_t)snprintf(text + n, cap - n, "[plugin.p%d]\nk = %d\n", i, i);
	cfg = LOAD_OK(text, NULL);
	if (cfg) {
		CHECK_EQ_INT(chat_config_plugin_sections(cfg), 4096);
		CHECK_STR_EQ(chat_config_plugin_section(cfg, 4095), "p4095");
		CHECK_STR_EQ(chat_config_get(cfg, "plugin.p4095", "k"), "4095");
	}
	chat_config_free(cfg);
	free(text);
}

/* Random files drawn from INI-ish characters: no crash, and a result that
 * is either a configuration or an error message. */
static void test_fuzz(void)
{
	static const char alphabet[] = "[]=;#.:\n\n\n\r \t-_0123456789abcdefglnprstuxy\xc3\x01";
	static const char *const words[] = {
		"[core]\n", "[relay]\n", "[client]\n", "[peer]\n", "[plugin.x]\n", "listen = a:1\n",
		"max_clients = 5\n", "log_level = info\n", "user = u\n", "plugin_dir = p\n", "k = v\n",
	};
	char text[700], err[256];

	test_srand(42);
	for (int iter = 0; iter < 2000; iter++) {
		size_t len = (size_t)(test_rand() % 600), n = 0;
		struct chat_config *cfg;

		while (n < len) {
			if (test_rand() % 4 == 0) {
				const char *w = words[test_rand() % (sizeof(words) / sizeof(words[0]))];
				size_t wl = strlen(w);

				if (n + wl > len)
					break;
				memcpy(text + n, w, wl);
				n += wl;
			} else {
				text[n++] = alphabet[test_rand() % (sizeof(alphabet) - 1)];
			}
		}
		err[0] = '\0';
		cfg = load_text(text, n, NULL, err, sizeof(err));
		if (cfg) {
			/* Whatever was accepted reads back. */
			chat_config_get(cfg, "relay", "listen");
			chat_config_path(cfg, "core", "plugin_dir");
			chat_config_int(cfg, "relay", "max_clients");
			for (size_t i = 0; i < chat_config_plugin_sections(cfg); i++)
				chat_config_check_plugin(cfg, chat_config_plugin_section(cfg, i), NULL,
				                         sizeof(err), err);
			chat_config_free(cfg);
		} else {
			CHECK(err[0] != '\0');
		}
	}
}

static void test_set(void)
{
	struct chat_config *cfg;
	char err[512], *path;

	cfg = LOAD_OK("[relay]\nlisten = 10.0.0.1:1\nmax_clients = 5\n", &path);
	if (!cfg) {
		remove_tmp(path);
		return;
	}
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), at(path, 2));

	CHECK_EQ_INT(chat_config_set(cfg, "relay.listen=[::1]:9000", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "[::1]:9000");
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), "--set");
	/* Only the first '=' splits; blanks around the parts go. */
	CHECK_EQ_INT(chat_config_set(cfg, "client.user=a=b", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "client", "user"), "a=b");
	CHECK_EQ_INT(chat_config_set(cfg, " core . log_level = debug ", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "core", "log_level"), "debug");
	CHECK_EQ_INT(chat_config_set(cfg, "client.user=", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "client", "user"), "");

	/* Invalid values leave the old value in place. */
	CHECK_EQ_INT(chat_config_set(cfg, "relay.max_clients=0", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_ERR_IS(err, "--set relay.max_clients=0", "relay.max_clients: 0 is out of range 1..1000000");
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_clients"), 5);
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "max_clients"), at(path, 3));
	CHECK_EQ_INT(chat_config_set(cfg, "relay.listen=127.0.0.1", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_ERR_IS(err, "--set relay.listen=127.0.0.1",
	             "relay.listen: '127.0.0.1' is not an address of the form host:port or [v6]:port");
	CHECK_EQ_INT(chat_config_set(cfg, "relay.max_clients=", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--set relay.max_clients=: relay.max_clients: empty value");
	CHECK_EQ_INT(chat_config_set(cfg, "rely.listen=a:1", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--set rely.listen=a:1: unknown section [rely]");
	CHECK_EQ_INT(chat_config_set(cfg, "relay.lisen=a:1", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--set relay.lisen=a:1: unknown key 'lisen' in section [relay] (known keys: ");
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.RC4.drop=1", sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--set plugin.RC4.drop=1: invalid plugin name 'RC4'");

	/* Bad syntax. */
	static const char *const bad[] = { "relay.listen", "listen=a:1", ".listen=a:1", "relay.=a:1",
	                                   "", "=", "relay listen=1", " . =1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[128];

		snprintf(want, sizeof(want), "--set '%s': expected section.key=value", bad[i]);
		CHECK_EQ_INT(chat_config_set(cfg, bad[i], sizeof(err), err), CHAT_ERR_CONFIG);
		CHECK_STR_EQ(err, want);
	}

	/* Flag overrides name their flag. */
	CHECK_EQ_INT(chat_config_override(cfg, "relay", "listen", "[::1]:0", "--listen",
	                                  sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "[::1]:0");
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), "--listen");
	CHECK_EQ_INT(chat_config_override(cfg, "relay", "listen", "h:70000", "--listen",
	                                  sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_ERR_IS(err, "--listen", "relay.listen: port 70000 is out of range 0..65535");
	CHECK_EQ_INT(chat_config_override(cfg, "relay", "lisen", "h:1", "--listen",
	                                  sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--listen: unknown key 'lisen' in section [relay]");
	CHECK_EQ_INT(chat_config_override(cfg, "relay", "listen", NULL, "--listen",
	                                  sizeof(err), err), CHAT_ERR_INVALID);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "[::1]:0");

	/* Precedence: file < overrides, and the last override wins. */
	CHECK_EQ_INT(chat_config_set(cfg, "relay.listen=h:1", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "h:1");
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), "--set");
	CHECK_EQ_INT(chat_config_override(cfg, "relay", "listen", "h:2", "--listen", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "relay", "listen"), "h:2");
	CHECK_STR_EQ(chat_config_where(cfg, "relay", "listen"), "--listen");
	CHECK_EQ_INT(chat_config_set(cfg, "relay.max_clients=77", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_clients"), 77);
	CHECK_EQ_INT(chat_config_set(cfg, "relay.max_clients=78", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_int(cfg, "relay", "max_clients"), 78);
	/* A key the file left unset. */
	CHECK_EQ_INT(chat_config_set(cfg, "peer.listen=p:3", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "peer", "listen"), "p:3");
	CHECK_STR_EQ(chat_config_where(cfg, "peer", "listen"), "--set");

	/* Plugin keys: stored now, checked against the plugin's keys later. */
	CHECK_EQ_INT(chat_config_plugin_sections(cfg), 0);
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.rc4dh.drop=4096", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_get(cfg, "plugin.rc4dh", "drop"), "4096");
	CHECK_STR_EQ(chat_config_where(cfg, "plugin.rc4dh", "drop"), "--set");
	CHECK_EQ_INT(chat_config_plugin_sections(cfg), 1);
	CHECK_STR_EQ(chat_config_plugin_section(cfg, 0), "rc4dh");
	CHECK_STR_EQ(chat_config_plugin_section_where(cfg, 0), "--set");
	chat_config_free(cfg);
	remove_tmp(path);
}

static void test_paths(void)
{
	struct chat_config *cfg;
	char err[512], want[PATH_MAX + 64], *path, *twice;
	const char *p;

	cfg = LOAD_OK("[core]\nplugin_dir = lib/plugins\n[plugin.x]\nkeyfile = keys/x.key\n", &path);
	if (!cfg) {
		remove_tmp(path);
		return;
	}
	snprintf(want, sizeof(want), "%s/lib/plugins", tmpdir);
	p = chat_config_path(cfg, "core", "plugin_dir");
	CHECK_STR_EQ(p, want);
	CHECK(chat_config_path(cfg, "core", "plugin_dir") == p); /* cached, owned by cfg */
	snprintf(want, sizeof(want), "%s/keys/x.key", tmpdir);
	CHECK_STR_EQ(chat_config_path(cfg, "plugin.x", "keyfile"), want);
	/* From --set: relative to the working directory, i.e. as given. */
	CHECK_EQ_INT(chat_config_set(cfg, "core.plugin_dir=rel/dir", sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), "rel/dir");
	CHECK_EQ_INT(chat_config_override(cfg, "core", "plugin_dir", "/abs/dir", "--plugin-dir",
	                                  sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), "/abs/dir");
	chat_config_free(cfg);
	remove_tmp(path);

	/* Absolute values stay as they are. */
	cfg = LOAD_OK("[core]\nplugin_dir = /opt/chat/plugins\n", NULL);
	if (cfg)
		CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), "/opt/chat/plugins");
	chat_config_free(cfg);

	/* The directory part of the name as given, doubled slashes and all. */
	path = write_tmp("[core]\nplugin_dir = p\n", 22);
	twice = malloc(strlen(path) + 2);
	if (!twice)
		abort();
	snprintf(twice, strlen(path) + 2, "%s/%s", tmpdir, path + strlen(tmpdir));
	cfg = NULL;
	CHECK_EQ_INT(chat_config_load(twice, &cfg, sizeof(err), err), 0);
	snprintf(want, sizeof(want), "%s/p", tmpdir);
	if (cfg) {
		CHECK_STR_EQ(chat_config_path(cfg, "core", "plugin_dir"), want);
		CHECK_STR_EQ(chat_config_file(cfg), twice);
	}
	chat_config_free(cfg);
	free(twice);
	remove_tmp(path);
}

static const struct chat_config_key rc4_keys[] = {
	{ "drop", CHAT_CONFIG_INT, "3072", 0, 65536, "keystream bytes dropped" },
	{ "strict", CHAT_CONFIG_BOOL, "no", 0, 0, "refuse old peers" },
	{ "label", CHAT_CONFIG_STRING, "", 0, 0, "free text" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

static const struct chat_config_key needs_keys[] = {
	{ "secret", CHAT_CONFIG_STRING, NULL, 0, 0, "required" },
	{ "rounds", CHAT_CONFIG_INT, "1", 1, 10, "optional" },
	{ NULL, 0, NULL, 0, 0, NULL },
};

#define CHECK_PLUGIN_ERROR(text, name, keys, where_line, phrase) \
	check_plugin_error(__LINE__, (text), (name), (keys), (where_line), (phrase))
/* Load text (must succeed), then the plugin check must fail with
 * "FILE:LINE: " (or "FILE: " for line 0) and phrase. */
static void check_plugin_error(int tl, const char *text, const char *name,
                               const struct chat_config_key *keys, int line, const char *phrase)
{
	char err[512] = "", prefix[PATH_MAX + 32], *path;
	struct chat_config *cfg = load_ok(tl, text, &path);
	int rc;

	if (!cfg) {
		remove_tmp(path);
		return;
	}
	rc = chat_config_check_plugin(cfg, name, keys, sizeof(err), err);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	if (rc != CHAT_ERR_CONFIG || strncmp(err, prefix, strlen(prefix)) || !strstr(err, phrase)) {
		fprintf(stderr, "%s:%d: expected \"%s...%s...\", got rc %d and \"%s\"\n",
		        __FILE__, tl, prefix, phrase, rc, err);
		test_failures++;
	}
	chat_config_free(cfg);
	remove_tmp(path);
}

static void test_plugin_sections(void)
{
	struct chat_config *cfg;
	char err[512], *path;

	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\ndrp = 1\n", "rc4dh", rc4_keys, 2,
	                   "unknown key 'drp' in section [plugin.rc4dh] (known keys: drop, strict, label)");
	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\ndrop = 12x\n", "rc4dh", rc4_keys, 2,
	                   "plugin.rc4dh.drop: '12x' is not a number");
	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\n\ndrop = 70000\n", "rc4dh", rc4_keys, 3,
	                   "plugin.rc4dh.drop: 70000 is out of range 0..65536");
	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\ndrop = -1\n", "rc4dh", rc4_keys, 2, "-1 is out of range");
	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\ndrop =\n", "rc4dh", rc4_keys, 2, "plugin.rc4dh.drop: empty value");
	CHECK_PLUGIN_ERROR("[plugin.rc4dh]\nstrict = maybe\n", "rc4dh", rc4_keys, 2,
	                   "plugin.rc4dh.strict: 'maybe' is not a boolean");
	CHECK_PLUGIN_ERROR("[core]\n[plugin.needs]\nrounds = 2\n", "needs", needs_keys, 2,
	                   "section [plugin.needs]: missing required key 'secret'");
	CHECK_PLUGIN_ERROR("[core]\n", "needs", needs_keys, 0,
	                   "missing required key [plugin.needs] secret");
	CHECK_PLUGIN_ERROR("[plugin.bare]\nx = 1\n", "bare", NULL, 2,
	                   "unknown key 'x' in section [plugin.bare] (known keys: none)");

	cfg = LOAD_OK("[plugin.rc4dh] ; the plugin's own section\n"
	              "drop = 0\n"
	              "[core]\n"
	              "[plugin.rc4dh]\n"
	              "strict = YES\n"
	              "[plugin.needs]\n"
	              "secret = s3cret\n", &path);
	if (!cfg) {
		remove_tmp(path);
		return;
	}
	CHECK_EQ_INT(chat_config_plugin_sections(cfg), 2);
	CHECK_STR_EQ(chat_config_plugin_section(cfg, 0), "rc4dh");
	CHECK_STR_EQ(chat_config_plugin_section_where(cfg, 0), at(path, 1));
	CHECK_STR_EQ(chat_config_plugin_section(cfg, 1), "needs");
	CHECK_STR_EQ(chat_config_plugin_section_where(cfg, 1), at(path, 6));
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "rc4dh", rc4_keys, sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "needs", needs_keys, sizeof(err), err), 0);
	/* A plugin without keys and without a section is fine. */
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "other", NULL, sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "Bad Name", rc4_keys, sizeof(err), err),
	             CHAT_ERR_INVALID);

	CHECK_STR_EQ(chat_config_plugin_get(cfg, "rc4dh", rc4_keys, "drop"), "0");
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "rc4dh", rc4_keys, "strict"), "YES");
	CHECK_EQ_INT(chat_config_bool(cfg, "plugin.rc4dh", "strict"), 1);
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "rc4dh", rc4_keys, "label"), "");
	CHECK(chat_config_plugin_get(cfg, "rc4dh", rc4_keys, "nosuch") == NULL);
	CHECK(chat_config_plugin_get(cfg, "rc4dh", NULL, "drop") == NULL);
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "needs", needs_keys, "secret"), "s3cret");
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "needs", needs_keys, "rounds"), "1");
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "absent", rc4_keys, "drop"), "3072");
	CHECK(chat_config_plugin_get(cfg, "absent", needs_keys, "secret") == NULL);
	CHECK_STR_EQ(chat_config_where(cfg, "plugin.rc4dh", "strict"), at(path, 5));

	/* --set on plugin keys: checked like file keys, located at the --set. */
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.rc4dh.drop=4096", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "rc4dh", rc4_keys, sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_plugin_get(cfg, "rc4dh", rc4_keys, "drop"), "4096");
	CHECK_STR_EQ(chat_config_where(cfg, "plugin.rc4dh", "drop"), "--set");
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.rc4dh.drop=12x", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "rc4dh", rc4_keys, sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_ERR_IS(err, "--set plugin.rc4dh.drop=12x", "plugin.rc4dh.drop: '12x' is not a number");
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.rc4dh.drop=1", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.rc4dh.drp=1", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "rc4dh", rc4_keys, sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "--set plugin.rc4dh.drp=1: unknown key 'drp' in section [plugin.rc4dh]");
	/* A section that only --set created. */
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.late.rounds=3", sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "late", needs_keys, sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_ERR_IS(err, "--set", "section [plugin.late]: missing required key 'secret'");
	CHECK_EQ_INT(chat_config_override(cfg, "plugin.late", "secret", "x", "--secret",
	                                  sizeof(err), err), 0);
	CHECK_EQ_INT(chat_config_check_plugin(cfg, "late", needs_keys, sizeof(err), err), 0);
	CHECK_STR_EQ(chat_config_where(cfg, "plugin.late", "secret"), "--secret");
	chat_config_free(cfg);
	remove_tmp(path);

	/* A plugin whose own default is broken is reported as the plugin's fault. */
	{
		static const struct chat_config_key broken[] = {
			{ "n", CHAT_CONFIG_INT, "lots", 0, 10, "bad default" },
			{ NULL, 0, NULL, 0, 0, NULL },
		};
		static const struct chat_config_key badtype[] = {
			{ "n", 99, "1", 0, 10, "bad type" },
			{ NULL, 0, NULL, 0, 0, NULL },
		};

		cfg = NULL;
		CHECK_EQ_INT(chat_config_load(NULL, &cfg, sizeof(err), err), 0);
		CHECK_EQ_INT(chat_config_check_plugin(cfg, "broken", broken, sizeof(err), err),
		             CHAT_ERR_PLUGIN);
		CHECK_STR_CONTAINS(err, "plugin broken");
		CHECK_STR_CONTAINS(err, "'lots' is not a number");
		CHECK_EQ_INT(chat_config_check_plugin(cfg, "badtype", badtype, sizeof(err), err),
		             CHAT_ERR_PLUGIN);
		CHECK_STR_CONTAINS(err, "unknown type 99");
		/* Without a file the missing-key message still has a location. */
		CHECK_EQ_INT(chat_config_check_plugin(cfg, "needs", needs_keys, sizeof(err), err),
		             CHAT_ERR_CONFIG);
		CHECK_STR_EQ(err, "(no config file): missing required key [plugin.needs] secret");
		chat_config_free(cfg);
	}
}

int main(void)
{
	init_tmpdir();
	test_full_file();
	test_defaults();
	test_schema();
	test_docs();
	test_value_errors();
	test_lists();
	test_structure_errors();
	test_long_lines();
	test_odd_files();
	test_many_sections();
	test_fuzz();
	test_set();
	test_paths();
	test_plugin_sections();
	return test_done("test_config");
}
