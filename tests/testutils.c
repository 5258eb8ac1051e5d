#include "testutils.h"

#include <ctype.h>

int test_failures;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

uint8_t *test_hex(const char *hex, size_t *len)
{
	size_t n = strlen(hex), o = 0;
	uint8_t *out = malloc(n / 2 + 1);
	int hi = -1;

	if (!out)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (isspace((unsigned char)hex[i]))
			continue;
		int v = hexval((unsigned char)hex[i]);
		if (v < 0) {
			fprintf(stderr, "test_hex: bad digit '%c'\n", hex[i]);
			abort();
		}
		if (hi < 0) {
			hi = v;
		} else {
			out[o++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0) {
		fprintf(stderr, "test_hex: odd number of digits\n");
		abort();
	}
	*len = o;
	return out;
}

void test_srand(uint64_t seed)
{
	rng_state = seed ? seed : 1;
}

uint64_t test_rand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

int test_done(const char *name)
{
	if (test_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
		return 1;
	}
	printf("%s: all checks passed\n", name);
	return 0;
}

uint8_t *test_load_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t n = 0, cap = 4096, got;
	uint8_t *buf = malloc(cap + 1);

	if (!f || !buf)
		abort();
	/* read until EOF or error: a directory reads as empty */
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			cap *= 2;
			if (!(buf = realloc(buf, cap + 1)))
				abort();
		}
	}
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

void test_save_file(const char *path, size_t len, const uint8_t *data)
{
	FILE *f = fopen(path, "wb");

	if (!f || (len && fwrite(data, 1, len, f) != len))
		abort();
	fclose(f);
}
