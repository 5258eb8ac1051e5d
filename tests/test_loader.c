/* The plugin loader: every failure gives its own error naming the path; good
 * plugins load, are found by name and lent a working host table. */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "loader.h"
#include "paths.h"
#include "testutils.h"

#define BROKEN CHAT_TEST_BROKEN_PLUGIN_DIR "/"

static void expect_fail(const char *file, int kind, int want_rc, const char *phrase)
{
	struct chat_registry *reg;
	const struct chat_loaded *l = (const void *)1;
	char err[1024], path[512];

	snprintf(path, sizeof(path), "%s%s", BROKEN, file);
	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	int rc = chat_registry_load_path(reg, path, kind, &l, sizeof(err), err);
	CHECK_EQ_INT(rc, want_rc);
	CHECK(l == NULL);
	CHECK_STR_CONTAINS(err, path); /* every message names the file */
	CHECK_STR_CONTAINS(err, phrase);
	CHECK_EQ_INT(chat_registry_count(reg), 0);
	chat_registry_free(reg);
}

static void test_failures_each_distinct(void)
{
	char want[128];

	expect_fail("does-not-exist.so", 0, CHAT_ERR_NOTFOUND, "file not found");
	expect_fail("not-elf.so", 0, CHAT_ERR_PLUGIN, "not a loadable shared object");
	expect_fail("undefined.so", 0, CHAT_ERR_PLUGIN, "chat_no_such_function_anywhere");
	expect_fail("no-symbol.so", 0, CHAT_ERR_PLUGIN, "does not export the entry symbol 'chat_plugin_entry'");
	expect_fail("null-desc.so", 0, CHAT_ERR_PLUGIN, "returned no descriptor");
	snprintf(want, sizeof(want), "ABI mismatch: plugin built for ABI %d.0, this program supports %d.%d",
	         CHAT_ABI_MAJOR + 1, CHAT_ABI_MAJOR, CHAT_ABI_MINOR);
	expect_fail("abi-major.so", 0, CHAT_ERR_ABI, want);
	/* A newer minor (1.2 for this 1.1 program) may rely on ops we never call. */
	snprintf(want, sizeof(want), "ABI mismatch: plugin built for ABI %d.%d, this program supports %d.%d",
	         CHAT_ABI_MAJOR, CHAT_ABI_MINOR + 1, CHAT_ABI_MAJOR, CHAT_ABI_MINOR);
	expect_fail("abi-minor.so", 0, CHAT_ERR_ABI, want);
	expect_fail("small-size.so", 0, CHAT_ERR_ABI, "descriptor is 8 bytes");
	expect_fail("bad-kind.so", 0, CHAT_ERR_PLUGIN, "unknown plugin kind 7");
	expect_fail("good-cipher.so", CHAT_PLUGIN_TRANSPORT, CHAT_ERR_PLUGIN,
	            "wrong kind: it is a cipher plugin, a transport plugin is needed here");
	expect_fail("good-transport.so", CHAT_PLUGIN_CIPHER, CHAT_ERR_PLUGIN,
	            "wrong kind: it is a transport plugin, a cipher plugin is needed here");
	expect_fail("no-ops.so", 0, CHAT_ERR_PLUGIN, "missing required field 'ops'");
	expect_fail("ops-size.so", 0, CHAT_ERR_ABI, "operations table is 4 bytes");
	expect_fail("missing-op.so", 0, CHAT_ERR_PLUGIN, "missing required op 'read'");
	expect_fail("no-name.so", 0, CHAT_ERR_PLUGIN, "missing required field 'name'");
	expect_fail("bad-name.so", 0, CHAT_ERR_PLUGIN, "invalid name 'Bad Name'");
	expect_fail("no-summary.so", 0, CHAT_ERR_PLUGIN, "missing required field 'summary'");
	expect_fail("bad-keys.so", 0, CHAT_ERR_PLUGIN, "config key 'weird' has unknown type 99");
	expect_fail("half-session.so", 0, CHAT_ERR_PLUGIN,
	            "has session_save but not session_load (ABI 1.1: both or neither)");
}

/* ABI 1.1 appended session_save, session_load and open_at to the cipher
 * table.  A plugin built for 1.0 (a shorter table, abi_minor 0) still loads,
 * and the appended ops read as absent even though non-NULL words follow its
 * table in memory; a 1.1 plugin that leaves them NULL has none either. */
static void test_abi_1_0_cipher(void)
{
	struct chat_registry *reg;
	const struct chat_loaded *old = NULL, *cur = NULL;
	char err[1024];

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "old-cipher.so", CHAT_PLUGIN_CIPHER, &old,
	                                     sizeof(err), err), CHAT_OK);
	if (old) {
		const struct chat_cipher_ops *ops = old->desc->ops.cipher;

		CHECK_EQ_INT(old->desc->abi_major, 1);
		CHECK_EQ_INT(old->desc->abi_minor, 0);
		CHECK_EQ_INT(ops->size, offsetof(struct chat_cipher_ops, session_save));
		CHECK(ops->size < sizeof(struct chat_cipher_ops));
		CHECK(CHAT_CIPHER_HAS(ops, session_new));
		CHECK(CHAT_CIPHER_HAS(ops, session_free));
		CHECK(!CHAT_CIPHER_HAS(ops, fingerprint)); /* optional since 1.0, NULL here */
		CHECK(!CHAT_CIPHER_HAS(ops, session_save));
		CHECK(!CHAT_CIPHER_HAS(ops, session_load));
		CHECK(!CHAT_CIPHER_HAS(ops, open_at));
	} else {
		fprintf(stderr, "old-cipher.so: %s\n", err);
	}
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "good-cipher.so", CHAT_PLUGIN_CIPHER, &cur,
	                                     sizeof(err), err), CHAT_OK);
	if (cur) {
		const struct chat_cipher_ops *ops = cur->desc->ops.cipher;

		CHECK_EQ_INT(cur->desc->abi_minor, CHAT_ABI_MINOR);
		CHECK_EQ_INT(ops->size, sizeof(struct chat_cipher_ops));
		CHECK(!CHAT_CIPHER_HAS(ops, session_save));
		CHECK(!CHAT_CIPHER_HAS(ops, session_load));
		CHECK(!CHAT_CIPHER_HAS(ops, open_at));
	}
	CHECK_EQ_INT(chat_registry_count(reg), 2);
	chat_registry_free(reg);
}

static void test_good_and_duplicate(void)
{
	struct chat_registry *reg;
	const struct chat_loaded *tcp = NULL, *again = NULL, *dup = NULL;
	char err[1024];

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_TRANSPORT, "tcp",
	                                &tcp, sizeof(err), err), CHAT_OK);
	CHECK(tcp && strcmp(tcp->desc->name, "tcp") == 0);
	CHECK(tcp && tcp->desc->ops.transport->listen != NULL);
	/* Loading it again (by name or path) gives the same record, not a duplicate. */
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_TRANSPORT, "tcp",
	                                &again, sizeof(err), err), CHAT_OK);
	CHECK(again == tcp);
	CHECK_EQ_INT(chat_registry_load_path(reg, CHAT_TEST_PLUGIN_DIR "/transport-tcp.so", 0,
	                                     &again, sizeof(err), err), CHAT_OK);
	CHECK(again == tcp);
	/* Another file claiming the same name is refused, naming both paths. */
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "dup-tcp.so", 0, &dup, sizeof(err), err),
	             CHAT_ERR_PLUGIN);
	CHECK(dup == NULL);
	CHECK_STR_CONTAINS(err, "duplicate transport plugin name 'tcp'");
	CHECK_STR_CONTAINS(err, "dup-tcp.so");
	CHECK_STR_CONTAINS(err, "transport-tcp.so");
	CHECK_EQ_INT(chat_registry_count(reg), 1);
	CHECK(chat_registry_find(reg, CHAT_PLUGIN_TRANSPORT, "tcp") == tcp);
	CHECK(chat_registry_find(reg, CHAT_PLUGIN_CIPHER, "tcp") == NULL);

	/* Name resolution: missing plugin, bad name, missing directory. */
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_TRANSPORT, "nope",
	                                NULL, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK_STR_CONTAINS(err, "transport plugin 'nope': file not found");
	CHECK_STR_CONTAINS(err, "transport-nope.so");
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_PLUGIN_DIR, CHAT_PLUGIN_TRANSPORT, "No!",
	                                NULL, sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, "invalid plugin name 'No!'");
	CHECK_EQ_INT(chat_registry_load(reg, "/nonexistent/dir", CHAT_PLUGIN_TRANSPORT, "tcp2",
	                                NULL, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK_STR_CONTAINS(err, "plugin directory /nonexistent/dir does not exist");
	/* A file named for one plugin that holds another. */
	CHECK_EQ_INT(chat_registry_load(reg, CHAT_TEST_BROKEN_PLUGIN_DIR, CHAT_PLUGIN_TRANSPORT,
	                                "good-keys", NULL, sizeof(err), err), CHAT_OK);
	chat_registry_free(reg);
}

static void test_host_services(void)
{
	struct chat_registry *reg;
	const struct chat_loaded *l = NULL;
	char err[1024];
	uint8_t a[32] = { 0 }, b[32] = { 0 };

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "transport-good-keys.so", 0, &l,
	                                     sizeof(err), err), CHAT_OK);
	if (!l) {
		chat_registry_free(reg);
		return;
	}
	const struct chat_host *h = &l->host;
	CHECK_EQ_INT(h->size, sizeof(struct chat_host));
	CHECK_EQ_INT(h->abi_major, CHAT_ABI_MAJOR);
	CHECK_EQ_INT(h->random(h, sizeof(a), a), CHAT_OK);
	CHECK_EQ_INT(h->random(h, sizeof(b), b), CHAT_OK);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK(h->memeq(a, a, sizeof(a)) == 1);
	b[31] = a[31] ^ 1;
	memcpy(b, a, 31);
	CHECK(h->memeq(a, b, sizeof(a)) == 0);
	h->wipe(a, sizeof(a));
	CHECK(a[0] == 0 && a[31] == 0);
	CHECK(h->unix_ms(h) > 1700000000000LL);
	uint64_t t0 = h->monotonic_ms(h);
	CHECK(h->monotonic_ms(h) >= t0);
	/* No configuration: the plugin sees its declared defaults. */
	CHECK(h->config_get(h, "level") && strcmp(h->config_get(h, "level"), "3") == 0);
	CHECK(h->config_get(h, "undeclared") == NULL);
	h->log(h, CHAT_LOG_DEBUG, "host log from test %d", 1);
	chat_registry_free(reg);
}

static void test_plugin_config_validation(void)
{
	char path[] = "/tmp/chat-loader-XXXXXX";
	int fd = mkstemp(path);
	struct chat_config *cfg = NULL;
	struct chat_registry *reg;
	const struct chat_loaded *l = NULL;
	char err[1024];

	CHECK(fd >= 0);
	const char *text = "[core]\nlog_level = info\n\n[plugin.good-keys]\nlevel = 12\n";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	CHECK_EQ_INT(chat_config_load(path, &cfg, sizeof(err), err), CHAT_OK);
	if (!cfg) {
		unlink(path);
		return;
	}
	CHECK_EQ_INT(chat_registry_new(cfg, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "transport-good-keys.so", 0, &l,
	                                     sizeof(err), err), CHAT_ERR_CONFIG);
	CHECK_STR_CONTAINS(err, ":5:");
	CHECK_STR_CONTAINS(err, "out of range");
	/* A valid override fixes it, and the plugin then sees the value. */
	CHECK_EQ_INT(chat_config_set(cfg, "plugin.good-keys.level=7", sizeof(err), err), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, BROKEN "transport-good-keys.so", 0, &l,
	                                     sizeof(err), err), CHAT_OK);
	if (l)
		CHECK(strcmp(l->host.config_get(&l->host, "level"), "7") == 0);
	chat_registry_free(reg);
	chat_config_free(cfg);
	unlink(path);
}

/* ---- which plugin files are trusted (docs/PLUGIN-ABI.md) */

static char tdir[64], marker[128];

static void copy_plugin(const char *to, mode_t mode)
{
	size_t len;
	uint8_t *data = test_load_file(BROKEN "transport-marker.so", &len);

	test_save_file(to, len, data);
	free(data);
	CHECK_EQ_INT(chmod(to, mode), 0);
}

static void make_dir(const char *path, mode_t mode)
{
	CHECK_EQ_INT(mkdir(path, 0700), 0);
	CHECK_EQ_INT(chmod(path, mode), 0); /* exactly, whatever the umask */
}

/* Did the marker plugin's constructor run since the last call? */
static int marker_ran(void)
{
	int ran = access(marker, F_OK) == 0;

	unlink(marker);
	return ran;
}

/* path is refused before anything of it runs; the message names path, the
 * component at fault (culprit) and says what is wrong and how to fix it. */
static void expect_refused(const char *path, const char *culprit, const char *what,
                           const char *fix)
{
	struct chat_registry *reg;
	const struct chat_loaded *l = (const void *)1;
	char err[2048], err2[2048];

	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, path, 0, &l, sizeof(err), err), CHAT_ERR_PLUGIN);
	CHECK(l == NULL);
	CHECK_EQ_INT(chat_registry_count(reg), 0);
	CHECK_STR_CONTAINS(err, path);
	CHECK_STR_CONTAINS(err, "refused before loading");
	CHECK_STR_CONTAINS(err, culprit);
	CHECK_STR_CONTAINS(err, what);
	CHECK_STR_CONTAINS(err, fix);
	if (marker_ran()) {
		fprintf(stderr, "%s: the plugin's constructor ran although it was refused\n", path);
		test_failures++;
	}
	/* The same check on its own, as --check-config runs it before loading. */
	CHECK_EQ_INT(chat_plugin_trusted(path, sizeof(err2), err2), CHAT_ERR_PLUGIN);
	CHECK(strcmp(err, err2) == 0);
	CHECK(!marker_ran());
	chat_registry_free(reg);
}

static void expect_accepted(const char *path)
{
	struct chat_registry *reg;
	const struct chat_loaded *l = NULL;
	char err[2048];

	CHECK_EQ_INT(chat_plugin_trusted(path, sizeof(err), err), CHAT_OK);
	CHECK(!marker_ran());
	CHECK_EQ_INT(chat_registry_new(NULL, &reg), CHAT_OK);
	CHECK_EQ_INT(chat_registry_load_path(reg, path, 0, &l, sizeof(err), err), CHAT_OK);
	if (!l)
		fprintf(stderr, "%s: %s\n", path, err);
	CHECK(l && strcmp(l->desc->name, "marker") == 0);
	CHECK(marker_ran()); /* the control: the marker does show a load */
	chat_registry_free(reg);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void test_trust(void)
{
	char good[96], file[256], path[160], fix[300], link[256], gw[96], ww[96], sticky[96];
	uid_t me = geteuid();

	snprintf(tdir, sizeof(tdir), "/tmp/chat-trust-XXXXXX");
	CHECK(mkdtemp(tdir) != NULL);
	snprintf(marker, sizeof(marker), "%s/marker", tdir);
	setenv("CHAT_TEST_MARKER", marker, 1);

	/* The good layout: directories 0755, files 0755 or 0644, all ours. */
	snprintf(good, sizeof(good), "%s/good", tdir);
	make_dir(good, 0755);
	snprintf(file, sizeof(file), "%s/a.so", good);
	copy_plugin(file, 0755);
	expect_accepted(file);
	snprintf(file, sizeof(file), "%s/b.so", good);
	copy_plugin(file, 0644);
	expect_accepted(file);
	/* A symlink to a good file is judged by the file. */
	snprintf(file, sizeof(file), "%s/c.so", good);
	copy_plugin(file, 0755);
	snprintf(link, sizeof(link), "%s/link-to-c.so", tdir);
	CHECK_EQ_INT(symlink(file, link), 0);
	expect_accepted(link);

	/* The file writable by group and others. */
	snprintf(file, sizeof(file), "%s/open.so", good);
	copy_plugin(file, 0666);
	expect_refused(file, file, "is writable by its group and others (mode 0666", "chmod go-w");
	snprintf(fix, sizeof(fix), "chmod go-w %s", file);
	expect_refused(file, file, "mode 0666", fix);
	/* A symlink to it, from a good directory: the real file is checked and named. */
	snprintf(link, sizeof(link), "%s/link-to-open.so", good);
	CHECK_EQ_INT(symlink(file, link), 0);
	expect_refused(link, file, "(which is ", "chmod go-w");

	/* A group-writable directory (a build with umask 002). */
	snprintf(gw, sizeof(gw), "%s/groupw", tdir);
	make_dir(gw, 0775);
	snprintf(file, sizeof(file), "%s/p.so", gw);
	copy_plugin(file, 0755);
	snprintf(fix, sizeof(fix), "chmod go-w %s)", gw);
	expect_refused(file, gw, "is writable by its group (mode 0775", fix);
	/* ... two problems at once: both reported. */
	snprintf(file, sizeof(file), "%s/q.so", gw);
	copy_plugin(file, 0664);
	expect_refused(file, gw, "mode 0775", "the plugin file");
	expect_refused(file, file, "writable by its group (mode 0664", "mode 0775");

	/* A world-writable directory further up, with a good directory below it. */
	snprintf(ww, sizeof(ww), "%s/worldw", tdir);
	make_dir(ww, 0777);
	snprintf(path, sizeof(path), "%s/plugins", ww);
	make_dir(path, 0755);
	snprintf(file, sizeof(file), "%s/plugins/r.so", ww);
	copy_plugin(file, 0755);
	expect_refused(file, ww, "is writable by its group and others (mode 0777", "chmod go-w");

	/* A sticky world-writable directory: acceptable above a plugin only when
	 * root owns it (like /tmp); the plugin then must be root's or ours. */
	snprintf(sticky, sizeof(sticky), "%s/sticky", tdir);
	make_dir(sticky, 01777);
	snprintf(file, sizeof(file), "%s/s.so", sticky);
	copy_plugin(file, 0755);
	if (me == 0) {
		expect_accepted(file);
	} else {
		expect_refused(file, sticky, "sticky but not owned by root", "chmod go-w");
	}

	/* Owned by someone else: needs root to set up (chown). */
	struct passwd *nobody = getpwnam("nobody");
	if (me != 0 || !nobody) {
		fprintf(stderr, "test_loader: SKIP the 'owned by another user' cases: %s\n",
		        me != 0 ? "not running as root (chown needs it)" : "no user 'nobody'");
	} else {
		uid_t other = nobody->pw_uid;
		gid_t other_gid = nobody->pw_gid;

		/* The finding: a plugin owned by nobody in root's sticky directory. */
		snprintf(file, sizeof(file), "%s/theirs.so", sticky);
		copy_plugin(file, 0755);
		CHECK_EQ_INT(chown(file, other, other_gid), 0);
		expect_refused(file, file, "is owned by nobody (uid", "chown root");
		/* ... and reached through our own symlink. */
		snprintf(link, sizeof(link), "%s/link-to-theirs.so", good);
		CHECK_EQ_INT(symlink(file, link), 0);
		expect_refused(link, file, "is owned by nobody", "chown root");
		/* A directory of theirs (mode 0755) holding a file of ours. */
		snprintf(path, sizeof(path), "%s/theirs", tdir);
		make_dir(path, 0755);
		CHECK_EQ_INT(chown(path, other, other_gid), 0);
		snprintf(file, sizeof(file), "%s/t.so", path);
		copy_plugin(file, 0755);
		expect_refused(file, path, "directory", "is owned by nobody");
		/* The sticky exception is root's only. */
		snprintf(path, sizeof(path), "%s/theirs-sticky", tdir);
		make_dir(path, 01777);
		CHECK_EQ_INT(chown(path, other, other_gid), 0);
		snprintf(file, sizeof(file), "%s/u.so", path);
		copy_plugin(file, 0755);
		expect_refused(file, path, "sticky but not owned by root", "chmod go-w");
	}

	/* A missing file is "not found", as before. */
	snprintf(file, sizeof(file), "%s/missing.so", good);
	char err[512];
	CHECK_EQ_INT(chat_plugin_trusted(file, sizeof(err), err), CHAT_ERR_NOTFOUND);
	CHECK_STR_CONTAINS(err, "file not found");

	unsetenv("CHAT_TEST_MARKER");
	CHECK_EQ_INT(nftw(tdir, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* The build tree itself passes: what the whole test suite loads from. */
static void test_build_tree_trusted(void)
{
	char err[2048];

	CHECK_EQ_INT(chat_plugin_trusted(CHAT_TEST_PLUGIN_DIR "/transport-tcp.so", sizeof(err), err),
	             CHAT_OK);
	if (err[0])
		fprintf(stderr, "%s\n", err);
	CHECK_EQ_INT(chat_plugin_trusted(BROKEN "good-transport.so", sizeof(err), err), CHAT_OK);
	if (err[0])
		fprintf(stderr, "%s\n", err);
}

static void test_flags_text(void)
{
	char buf[128];

	chat_plugin_flags_text(0, sizeof(buf), buf);
	CHECK(strcmp(buf, "-") == 0);
	chat_plugin_flags_text(CHAT_FLAG_INSECURE | CHAT_FLAG_NEEDS_SECRET, sizeof(buf), buf);
	CHECK(strcmp(buf, "insecure,needs-secret") == 0);
	CHECK(chat_plugin_name_valid("aescbc-hmac"));
	CHECK(!chat_plugin_name_valid(""));
	CHECK(!chat_plugin_name_valid("UPPER"));
	CHECK(!chat_plugin_name_valid("a/b"));
	CHECK(!chat_plugin_name_valid("123456789012345678901234567890123"));
	CHECK(strcmp(chat_strerror(CHAT_ERR_ABI), "plugin ABI version mismatch") == 0);
	CHECK(strcmp(chat_strerror(-9999), "unknown error") == 0);
	CHECK(strcmp(chat_strerror(1), "unknown error") == 0);
	for (int e = CHAT_OK; e >= CHAT_ERR_LAST; e--)
		CHECK(strcmp(chat_strerror(e), "unknown error") != 0);
}

int main(void)
{
	test_failures_each_distinct();
	test_abi_1_0_cipher();
	test_good_and_duplicate();
	test_host_services();
	test_plugin_config_validation();
	test_flags_text();
	test_build_tree_trusted();
	test_trust();
	return test_done("test_loader");
}
