/* Where an installed program looks for its chat.ini and its plugins
 * (core/src/installdirs.c).  tests/install.sh checks the same with a real
 * installation. */
#include "testutils.h"

#include <limits.h>
#include <unistd.h>

#include "installdirs.h"

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && !strcmp(s + n - t, tail);
}

static void test_chat_config(void)
{
	struct chat_config_places pl;
	int explicit_file = -1;

	setenv("CHAT_CONFIG", "/etc/x.ini", 1);
	chat_paths_config_places(1, &pl, &explicit_file);
	CHECK_EQ_INT(explicit_file, 1);
	CHECK_EQ_INT(pl.n, 1);
	CHECK(!strcmp(pl.path[0], "/etc/x.ini"));
	CHECK(!strcmp(pl.why[0], "$CHAT_CONFIG"));
	/* Empty: as if unset. */
	setenv("CHAT_CONFIG", "", 1);
	chat_paths_config_places(0, &pl, &explicit_file);
	CHECK_EQ_INT(explicit_file, 0);
	unsetenv("CHAT_CONFIG");
}

static void test_search_path(void)
{
	struct chat_config_places pl;
	int explicit_file = -1;

	unsetenv("CHAT_CONFIG");
	setenv("HOME", "/home/alice", 1);
	unsetenv("XDG_CONFIG_HOME");
	/* The relay and the peer: ./chat.ini, then SYSCONFDIR. */
	chat_paths_config_places(0, &pl, &explicit_file);
	CHECK_EQ_INT(explicit_file, 0);
	CHECK_EQ_INT(pl.n, 2);
	CHECK(!strcmp(pl.path[0], "chat.ini"));
	CHECK(pl.path[1][0] == '/' && ends_with(pl.path[1], "/chat/chat.ini"));
	/* The client: ~/.config/chat/chat.ini in between. */
	chat_paths_config_places(1, &pl, &explicit_file);
	CHECK_EQ_INT(pl.n, 3);
	CHECK(!strcmp(pl.path[0], "chat.ini"));
	CHECK(!strcmp(pl.path[1], "/home/alice/.config/chat/chat.ini"));
	CHECK(ends_with(pl.path[2], "/chat/chat.ini"));
	setenv("XDG_CONFIG_HOME", "/xdg", 1);
	chat_paths_config_places(1, &pl, &explicit_file);
	CHECK(!strcmp(pl.path[1], "/xdg/chat/chat.ini"));
	/* A relative $XDG_CONFIG_HOME is ignored (XDG Base Directory spec). */
	setenv("XDG_CONFIG_HOME", "rel", 1);
	chat_paths_config_places(1, &pl, &explicit_file);
	CHECK(!strcmp(pl.path[1], "/home/alice/.config/chat/chat.ini"));
	/* No HOME either: only the other two. */
	unsetenv("HOME");
	chat_paths_config_places(1, &pl, &explicit_file);
	CHECK_EQ_INT(pl.n, 2);
}

/* This test runs from build/tests: neither an installation nor the build's
 * bin/, so the directory configured at build time. */
static void test_plugin_dir(void)
{
	char dir[PATH_MAX];

	chat_paths_default_plugin_dir(sizeof(dir), dir);
	CHECK(dir[0] == '/');
	CHECK(ends_with(dir, "/chat/plugins"));
}

int main(void)
{
	test_chat_config();
	test_search_path();
	test_plugin_dir();
	return test_done("test_installdirs");
}
