/* Shared test helpers (Nettle's testutils in spirit). */
#ifndef CHAT_TESTUTILS_H
#define CHAT_TESTUTILS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SKIP 77 /* CTest SKIP_RETURN_CODE */

extern int test_failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		test_failures++; \
	} } while (0)

#define CHECK_EQ_INT(a, b) do { \
	long long a_ = (long long)(a), b_ = (long long)(b); \
	if (a_ != b_) { \
		fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", \
		        __FILE__, __LINE__, #a, a_, #b, b_); \
		test_failures++; \
	} } while (0)

#define CHECK_STR_CONTAINS(hay, needle) do { \
	const char *h_ = (hay), *n_ = (needle); \
	if (!h_ || !strstr(h_, n_)) { \
		fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", \
		        __FILE__, __LINE__, h_ ? h_ : "(null)", n_); \
		test_failures++; \
	} } while (0)

#define CHECK_MEM(a, b, n) do { \
	if (memcmp((a), (b), (n)) != 0) { \
		fprintf(stderr, "%s:%d: memory differs: %s vs %s\n", __FILE__, __LINE__, #a, #b); \
		test_failures++; \
	} } while (0)

/* Decode hex (whitespace ignored) into a malloc'd buffer; aborts on bad input. */
uint8_t *test_hex(const char *hex, size_t *len);
/* Deterministic PRNG for random splits and lengths (xorshift64*). */
uint64_t test_rand(void);
void test_srand(uint64_t seed);
/* Whole files (abort on any error: tests only).  test_load_file returns a
 * malloc'd buffer with a NUL after the len bytes. */
uint8_t *test_load_file(const char *path, size_t *len);
void test_save_file(const char *path, size_t len, const uint8_t *data);
/* Print the summary line and return the exit status for main(). */
int test_done(const char *name);

#endif
