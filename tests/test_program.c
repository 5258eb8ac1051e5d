/* Program options that are not configuration keys: chat_prog_take_opts and
 * how --help lists them (core/src/program.c). */
#include "testutils.h"

#include <unistd.h>

#include "program.h"

static const char *read_log, *password_file;
static int guest;

static const struct chat_prog_flag flags[] = {
	{ "connect", 'C', "client", "connect", "ADDR", "relay address" },
	{ "user", 'u', "client", "user", "NAME", "your username" },
	{ NULL, 0, NULL, NULL, NULL, NULL },
};

static const struct chat_prog_opt opts[] = {
	{ "read-log", "FILE", CHAT_PROG_OPT_FILE, &read_log, NULL, "verify FILE\nthen print it" },
	{ "password-file", "FILE", CHAT_PROG_OPT_FILE, &password_file, NULL, "password on FILE" },
	{ "guest", NULL, 0, NULL, &guest, "log in as a guest" },
	{ NULL, NULL, 0, NULL, NULL, NULL },
};

static const struct chat_prog prog = {
	.name = "test-program",
	.section = "client",
	.summary = "A test.",
	.flags = flags,
	.opts = opts,
};

/* What a call wrote to fd (stdout or stderr), NUL-terminated. */
static char captured[4096];
static FILE *capture_file;
static int capture_fd = -1, saved_fd = -1;

static void capture_start(int fd)
{
	fflush(stdout);
	fflush(stderr);
	capture_file = tmpfile();
	if (!capture_file)
		abort();
	capture_fd = fd;
	saved_fd = dup(fd);
	dup2(fileno(capture_file), fd);
}

static void capture_end(void)
{
	size_t n;

	fflush(stdout);
	fflush(stderr);
	dup2(saved_fd, capture_fd);
	close(saved_fd);
	rewind(capture_file);
	n = fread(captured, 1, sizeof(captured) - 1, capture_file);
	captured[n] = '\0';
	fclose(capture_file);
}

/* Split the words of line (space-separated, "" for an empty word) with
 * chat_prog_take_opts; rest gets what is left, joined by spaces. */
static int take(const char *line, char *rest, size_t cap)
{
	char buf[512], *argv[32];
	int argc = 0, rc;

	read_log = password_file = NULL;
	guest = 0;
	snprintf(buf, sizeof(buf), "prog %s", line);
	for (char *w = strtok(buf, " "); w && argc < 31; w = strtok(NULL, " "))
		argv[argc++] = strcmp(w, "\"\"") ? w : w + 2;
	argv[argc] = NULL;
	capture_start(2);
	rc = chat_prog_take_opts(&prog, &argc, argv);
	capture_end();
	rest[0] = '\0';
	if (rc)
		return rc;
	CHECK(argv[argc] == NULL);
	CHECK(!strcmp(argv[0], "prog"));
	for (int i = 1; i < argc; i++)
		snprintf(rest + strlen(rest), cap - strlen(rest), "%s%s", i > 1 ? " " : "", argv[i]);
	return 0;
}

static void test_values(void)
{
	char rest[512];

	CHECK_EQ_INT(take("--read-log a.log --password-file pw", rest, sizeof(rest)), 0);
	CHECK(read_log && !strcmp(read_log, "a.log"));
	CHECK(password_file && !strcmp(password_file, "pw"));
	CHECK_EQ_INT(guest, 0);
	CHECK(!strcmp(rest, ""));

	CHECK_EQ_INT(take("--read-log=b.log --guest", rest, sizeof(rest)), 0);
	CHECK(read_log && !strcmp(read_log, "b.log"));
	CHECK_EQ_INT(guest, 1);
	CHECK(!password_file);

	/* A value that looks like an option is still the value. */
	CHECK_EQ_INT(take("--read-log --guest", rest, sizeof(rest)), 0);
	CHECK(read_log && !strcmp(read_log, "--guest"));
	CHECK_EQ_INT(guest, 0);

	/* The rest keeps its order around ours. */
	CHECK_EQ_INT(take("-u alice --guest --config x.ini --password-file=pw -C h:1", rest,
	                  sizeof(rest)), 0);
	CHECK(!strcmp(rest, "-u alice --config x.ini -C h:1"));
	CHECK_EQ_INT(guest, 1);
	CHECK(password_file && !strcmp(password_file, "pw"));
}

static void test_errors(void)
{
	char rest[512];

	CHECK_EQ_INT(take("--guest --read-log", rest, sizeof(rest)), 2);
	CHECK_STR_CONTAINS(captured, "test-program: option --read-log needs a value");
	CHECK_STR_CONTAINS(captured, "Try 'test-program --help'.");

	CHECK_EQ_INT(take("--read-log=", rest, sizeof(rest)), 2);
	CHECK_STR_CONTAINS(captured, "option --read-log needs a file name");
	CHECK_EQ_INT(take("--password-file \"\"", rest, sizeof(rest)), 2);
	CHECK_STR_CONTAINS(captured, "option --password-file needs a file name");

	CHECK_EQ_INT(take("--guest=yes", rest, sizeof(rest)), 2);
	CHECK_STR_CONTAINS(captured, "option --guest takes no value");
}

static void test_double_dash(void)
{
	char rest[512];

	CHECK_EQ_INT(take("--guest -- --read-log x", rest, sizeof(rest)), 0);
	CHECK_EQ_INT(guest, 1);
	CHECK(!read_log);
	CHECK(!strcmp(rest, "-- --read-log x"));
}

/* The value of a common or per-program option is never one of ours, in every
 * form getopt_long reads. */
static void test_other_values(void)
{
	static const char *const lines[] = {
		"--config --guest", "-c --guest", "--set --guest", "-s --guest", "--plugin --guest",
		"--connect --guest", "-C --guest", "--user --read-log", "-u --read-log",
		"--conf --guest", /* an unambiguous prefix of --config */
		"-Vc --guest",    /* a cluster whose last option takes a value */
	};
	char rest[512];

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		CHECK_EQ_INT(take(lines[i], rest, sizeof(rest)), 0);
		if (strcmp(rest, lines[i]) || guest || read_log)
			fprintf(stderr, "'%s' gave '%s'\n", lines[i], rest);
		CHECK(!strcmp(rest, lines[i]));
		CHECK_EQ_INT(guest, 0);
		CHECK(!read_log);
	}
	/* These carry their value: what follows is ours. */
	CHECK_EQ_INT(take("--config=x.ini --guest", rest, sizeof(rest)), 0);
	CHECK(!strcmp(rest, "--config=x.ini"));
	CHECK_EQ_INT(guest, 1);
	CHECK_EQ_INT(take("-cx.ini --guest", rest, sizeof(rest)), 0);
	CHECK(!strcmp(rest, "-cx.ini"));
	CHECK_EQ_INT(guest, 1);
	/* Options without a value: what follows is ours. */
	CHECK_EQ_INT(take("--check-config --guest -h --read-log f", rest, sizeof(rest)), 0);
	CHECK(!strcmp(rest, "--check-config -h"));
	CHECK_EQ_INT(guest, 1);
	CHECK(read_log && !strcmp(read_log, "f"));
}

static void test_unknown(void)
{
	char rest[512];

	/* Left for the common parser to report; ours around them are taken. */
	CHECK_EQ_INT(take("--bogus --guest -x stray --read-log f --read-logs --gues", rest,
	                  sizeof(rest)), 0);
	CHECK(!strcmp(rest, "--bogus -x stray --read-logs --gues"));
	CHECK_EQ_INT(guest, 1);
	CHECK(read_log && !strcmp(read_log, "f"));
	CHECK_EQ_INT(take("--bogus=1", rest, sizeof(rest)), 0);
	CHECK(!strcmp(rest, "--bogus=1"));
}

/* chat_prog_start on words (split at spaces) with stderr captured. */
static int start(const char *line)
{
	struct chat_prog p = prog;
	char buf[512], *argv[32];
	int argc = 0, rc;

	read_log = password_file = NULL;
	guest = 0;
	snprintf(buf, sizeof(buf), "prog %s", line);
	for (char *w = strtok(buf, " "); w && argc < 31; w = strtok(NULL, " "))
		argv[argc++] = w;
	argv[argc] = NULL;
	capture_start(2);
	rc = chat_prog_start(&p, argc, argv);
	capture_end();
	chat_prog_finish(&p);
	return rc;
}

/* Every option that takes a value, given last without one, is named with
 * "needs a value" (exit status 2), in its long and its short form; the
 * table of common options is read from --help so that none is missed. */
static void test_missing_value(void)
{
	char line[128], want[128];
	size_t n = 0;

	for (const struct chat_prog_flag *f = flags; f->name; f++, n++) {
		snprintf(line, sizeof(line), "--guest --%s", f->name);
		CHECK_EQ_INT(start(line), 2);
		snprintf(want, sizeof(want), "test-program: option --%s needs a value\n", f->name);
		CHECK_STR_CONTAINS(captured, want);
		snprintf(line, sizeof(line), "-%c", f->letter);
		CHECK_EQ_INT(start(line), 2);
		snprintf(want, sizeof(want), "test-program: option -%c needs a value\n", f->letter);
		CHECK_STR_CONTAINS(captured, want);
		/* An unambiguous prefix is named in full. */
		snprintf(line, sizeof(line), "--%.4s", f->name);
		CHECK_EQ_INT(start(line), 2);
		snprintf(want, sizeof(want), "option --%s needs a value", f->name);
		CHECK_STR_CONTAINS(captured, want);
	}
	for (const struct chat_prog_opt *o = opts; o->name; o++) {
		if (!o->arg_name)
			continue;
		snprintf(line, sizeof(line), "--%s", o->name);
		CHECK_EQ_INT(start(line), 2);
		snprintf(want, sizeof(want), "test-program: option --%s needs a value\n", o->name);
		CHECK_STR_CONTAINS(captured, want);
		n++;
	}
	static const char *const common[][2] = {
		{ "--config", "option --config needs a value" }, { "-c", "option -c needs a value" },
		{ "--set", "option --set needs a value" }, { "-s", "option -s needs a value" },
		{ "--plugin", "option --plugin needs a value" }, { "--check-config -c", "option -c needs a value" },
	};
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++, n++) {
		CHECK_EQ_INT(start(common[i][0]), 2);
		CHECK_STR_CONTAINS(captured, common[i][1]);
		CHECK_STR_CONTAINS(captured, "Try 'test-program --help'.");
	}
	CHECK(n >= 10);

	/* The other usage errors, each in its words. */
	CHECK_EQ_INT(start("--bogus"), 2);
	CHECK_STR_CONTAINS(captured, "test-program: unknown option --bogus\n");
	CHECK_EQ_INT(start("--bogus=1"), 2);
	CHECK_STR_CONTAINS(captured, "test-program: unknown option --bogus\n");
	CHECK_EQ_INT(start("-x"), 2);
	CHECK_STR_CONTAINS(captured, "test-program: unknown option -x\n");
	CHECK_EQ_INT(start("--list-plugins -xV"), 2);
	CHECK_STR_CONTAINS(captured, "unknown option -x\n");
	CHECK_EQ_INT(start("--c x"), 2);
	CHECK_STR_CONTAINS(captured, "option --c is ambiguous (--config, --check-config, --connect)");
	CHECK_EQ_INT(start("--help=1"), 2);
	CHECK_STR_CONTAINS(captured, "option --help takes no value");
	CHECK_EQ_INT(start("--check-config=yes"), 2);
	CHECK_STR_CONTAINS(captured, "option --check-config takes no value");
}

/* chat_prog_start takes them itself, and again is the same as once. */
static void test_twice(void)
{
	char *argv[] = { "prog", "--config", "--guest", "--read-log", "f", "-u", "--read-log",
	                 "--", "--guest", NULL };
	int argc = 9;

	read_log = NULL;
	guest = 0;
	CHECK_EQ_INT(chat_prog_take_opts(&prog, &argc, argv), 0);
	CHECK_EQ_INT(argc, 7);
	CHECK(read_log && !strcmp(read_log, "f"));
	read_log = NULL;
	CHECK_EQ_INT(chat_prog_take_opts(&prog, &argc, argv), 0);
	CHECK_EQ_INT(argc, 7);
	CHECK(!read_log);
	CHECK_EQ_INT(guest, 0);
	CHECK(!strcmp(argv[2], "--guest") && !strcmp(argv[4], "--read-log") &&
	      !strcmp(argv[6], "--guest") && argv[7] == NULL);

	struct chat_prog p = prog;
	char *argv2[] = { "prog", "--guest", "--version", NULL };
	capture_start(1);
	CHECK_EQ_INT(chat_prog_start(&p, 3, argv2), 0);
	capture_end();
	CHECK_EQ_INT(guest, 1);
	CHECK_STR_CONTAINS(captured, "test-program ");
	chat_prog_finish(&p);

	char *argv3[] = { "prog", "--password-file=", NULL };
	capture_start(2);
	CHECK_EQ_INT(chat_prog_start(&p, 2, argv3), 2);
	capture_end();
	CHECK_STR_CONTAINS(captured, "option --password-file needs a file name");
	chat_prog_finish(&p);
}

static void test_help(void)
{
	struct chat_prog p = prog;
	char *argv[] = { "prog", "--help", NULL };
	int rc;

	capture_start(1);
	rc = chat_prog_start(&p, 2, argv);
	capture_end();
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_CONTAINS(captured, "\n      --read-log FILE     verify FILE\n"
	                             "                          then print it\n");
	/* Too wide for the column: the help goes on the next line. */
	CHECK_STR_CONTAINS(captured, "\n      --password-file FILE\n"
	                             "                          password on FILE\n");
	CHECK_STR_CONTAINS(captured, "\n      --guest             log in as a guest\n");
	chat_prog_finish(&p);
}

int main(void)
{
	test_values();
	test_errors();
	test_double_dash();
	test_other_values();
	test_unknown();
	test_twice();
	test_missing_value();
	test_help();
	return test_done("test_program");
}
