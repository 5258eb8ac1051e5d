/* main() for a harness built without libFuzzer (any compiler): run every
 * file named, or every file in each directory named, through
 * LLVMFuzzerTestOneInput once.  This is how ctest replays the committed
 * corpora (tests/fuzz/corpus/NAME/) in the normal and the ASan build, so
 * every input that once crashed stays a regression test.
 *   replay_NAME PATH...           exit 0 if every input ran
 *   replay_NAME --write-seeds DIR write the harness's seed inputs into DIR */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;

	if (!f) {
		perror(path);
		return 1;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			uint8_t *n = realloc(data, cap);
			if (!n) {
				fclose(f);
				free(data);
				return 1;
			}
			data = n;
		}
		size_t got = fread(data + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	/* A private copy of exactly len bytes, so ASan sees reads past the end. */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) {
		free(data);
		return 1;
	}
	if (len)
		memcpy(exact, data, len);
	free(data);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path, size_t *count)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	DIR *d = opendir(path);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	int bad = 0;

	if (!d) {
		perror(path);
		return 1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char **g = realloc(names, (n + 1) * sizeof(*names));
		if (!g)
			abort();
		names = g;
		size_t l = strlen(path) + strlen(e->d_name) + 2;
		names[n] = malloc(l);
		if (!names[n])
			abort();
		snprintf(names[n], l, "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp);
	for (size_t i = 0; i < n; i++) {
		bad |= run_path(names[i], count);
		free(names[i]);
	}
	free(names);
	return bad;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	int bad = 0;

	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
		fuzz_seeds(argv[2]);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH... | --write-seeds DIR\n", argv[0]);
		return 2;
	}
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		bad |= run_path(argv[i], &count);
	printf("%s: %zu input(s) replayed\n", argv[0], count);
	if (!count) {
		fprintf(stderr, "%s: no inputs found\n", argv[0]);
		return 1;
	}
	return bad;
}
