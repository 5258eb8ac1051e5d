/* Untrusted text is made safe for a terminal: escapes, controls, bad UTF-8. */
#include <string.h>

#include "testutils.h"
#include "text.h"

static void check(const char *in, size_t len, const char *want)
{
	char out[256];
	size_t n = chat_text_escape(len, in, sizeof(out), out);

	CHECK_EQ_INT(n, strlen(want));
	if (strcmp(out, want))
		fprintf(stderr, "escape: got \"%s\", want \"%s\"\n", out, want);
	CHECK(strcmp(out, want) == 0);
}

int main(void)
{
	check("hello", 5, "hello");
	check("a\nb", 3, "a\\nb");
	check("a\\b", 3, "a\\\\b");
	check("tab\there", 8, "tab\there");
	check("\x1b[31mred", 8, "\\x1b[31mred"); /* an ANSI escape is defused */
	check("\x7f", 1, "\\x7f");
	check("nul\0x", 5, "nul\\x00x");
	check("caf\xc3\xa9", 5, "caf\xc3\xa9");      /* valid UTF-8 passes */
	check("\xe2\x82\xac", 3, "\xe2\x82\xac");    /* euro sign */
	check("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80");
	check("\xc3", 1, "\\xc3");                   /* truncated sequence */
	check("\xc0\xaf", 2, "\\xc0\\xaf");          /* overlong */
	check("\xed\xa0\x80", 3, "\\xed\\xa0\\x80"); /* surrogate */
	check("\xc2\x9b", 2, "\\xc2\\x9b");          /* C1 CSI */
	check("\xff", 1, "\\xff");

	/* Truncation keeps dst terminated and reports the full length. */
	char small[4];
	CHECK_EQ_INT(chat_text_escape(6, "abcdef", sizeof(small), small), 6);
	CHECK(strcmp(small, "abc") == 0);

	CHECK(chat_text_is_utf8(5, "hello"));
	CHECK(chat_text_is_utf8(2, "\xc3\xa9"));
	CHECK(!chat_text_is_utf8(1, "\xc3"));
	CHECK(!chat_text_is_utf8(3, "a\0b"));
	return test_done("test_text");
}
