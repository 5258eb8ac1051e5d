/* What the harnesses of tests/fuzz/ share (tests/fuzz/README.md).  Every
 * harness is one file defining LLVMFuzzerTestOneInput and fuzz_seeds(); it is
 * built twice: with clang and libFuzzer (-DCHAT_FUZZ=ON, tests/fuzz/run),
 * and with replay.c as a plain program that runs the committed corpus (ctest
 * fuzz_replay_NAME, in the normal and the ASan build). */
#ifndef CHAT_FUZZ_H
#define CHAT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Write the harness's seed inputs (made from real messages) into dir, one
 * file each: tests/fuzz/gen-seeds, replay.c's --write-seeds. */
void fuzz_seeds(const char *dir);
/* Used by fuzz_seeds: dir/name := data. */
void fuzz_write_seed(const char *dir, const char *name, size_t len, const void *data);

/* An invariant of the code under test: abort (a crash libFuzzer reports) with
 * the line, in every build. */
#define FUZZ_CHECK(c) \
	do { \
		if (!(c)) \
			fuzz_fail(__FILE__, __LINE__, #c); \
	} while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* Once per process: logging off (set CHAT_FUZZ_LOG=debug to see it). */
void fuzz_init(void);

/* Reading an input: every read is bounded by what is left; past the end reads
 * give zeros and empty strings, so a harness never has to check. */
struct fuzz_in {
	const uint8_t *p;
	size_t left;
};
unsigned fin_u8(struct fuzz_in *in);
unsigned fin_u16(struct fuzz_in *in);
uint32_t fin_u32(struct fuzz_in *in);
uint64_t fin_u64(struct fuzz_in *in);
/* n bytes (fewer if the input ends); *len gets how many. */
const uint8_t *fin_bytes(struct fuzz_in *in, size_t n, size_t *len);
/* A u16 length, then that many bytes. */
const uint8_t *fin_blob(struct fuzz_in *in, size_t *len);
/* A u8 length, then that many bytes as a NUL-terminated string (cap includes the NUL). */
void fin_str(struct fuzz_in *in, size_t cap, char *dst);

/* A growable byte buffer, for building inputs and seeds. */
struct fuzz_buf {
	uint8_t *data;
	size_t len, cap;
};
void fb_put(struct fuzz_buf *b, size_t len, const void *src);
void fb_u8(struct fuzz_buf *b, unsigned v);
void fb_u16(struct fuzz_buf *b, unsigned v);
void fb_u32(struct fuzz_buf *b, uint32_t v);
void fb_u64(struct fuzz_buf *b, uint64_t v);
void fb_blob(struct fuzz_buf *b, size_t len, const void *src); /* u16 length + bytes */
void fb_str(struct fuzz_buf *b, const char *s);                 /* u8 length + bytes */
void fb_free(struct fuzz_buf *b);

/* A file holding data: in a private temporary directory (on tmpfs when
 * /dev/shm exists), the same path every call within a process.  Returns the
 * path (static). */
const char *fuzz_file(const char *name, size_t len, const void *data);
/* The private temporary directory (created once, removed at exit). */
const char *fuzz_tmpdir(void);

/* The cipher suites, linked into the harness (no dlopen: the suites are
 * instrumented like the rest).  A registry holding the three password and demo
 * builtins (noise-xx, an identity suite, only through fuzz_suite); the
 * suites' PBKDF2 iteration counts are the minimum allowed, so a handshake is
 * cheap. */
struct chat_registry *fuzz_registry(void);
const struct chat_plugin *fuzz_suite(const char *name);

/* A deterministic host table for suites driven directly (suite harnesses):
 * random bytes from a counter, a fixed clock that the harness may move. */
struct fuzz_host {
	struct chat_host host;
	uint64_t rng;
	int64_t now_ms;
	const struct chat_plugin *plugin;
};
void fuzz_host_init(struct fuzz_host *h, const struct chat_plugin *plugin, uint64_t seed);

/* ABI 1.3 identity suites (CHAT_FLAG_IDENTITY): the key pair of user, made
 * once per process by the suite's identity_keygen from a host seeded by the
 * name, so it is the same in every run and every build. */
struct fuzz_identity {
	uint8_t priv[4096], pub[4096];
	size_t priv_len, pub_len;
};
const struct fuzz_identity *fuzz_identity(const struct chat_plugin *p, const char *user);
/* For an identity suite, fill params' identity fields: the local user's pair
 * and, if pin, the peer's public key (else NULL: first contact).  Nothing for
 * other suites. */
void fuzz_identity_params(const struct chat_plugin *p, struct chat_cipher_params *params, int pin);

/* Two sessions of a suite, made with the given host tables and params
 * (role, ids and binding filled in here), run through the handshake against
 * each other: CHAT_OK with both established, or the error.  The messages
 * they exchanged are appended to transcript (each as u16 length + bytes,
 * initiator's first) when it is not NULL.  Identity suites get both users'
 * fuzz_identity pairs, each pinning the other's. */
int fuzz_pair(const struct chat_plugin *p, const struct chat_host *hi, const struct chat_host *hr,
              const char *ini, const char *res, const char *secret, size_t bind_len,
              const char *bind, void **si, void **sr, struct fuzz_buf *transcript);
/* The same with whole params for each side (identity keys, pins). */
int fuzz_pair_params(const struct chat_plugin *p, const struct chat_host *hi,
                     const struct chat_host *hr, const struct chat_cipher_params *pi,
                     const struct chat_cipher_params *pr, void **si, void **sr,
                     struct fuzz_buf *transcript);

#endif
