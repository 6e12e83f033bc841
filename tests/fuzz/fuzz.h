/*
 * Shared by the fuzz targets. Each target defines LLVMFuzzerTestOneInput (and, when it needs
 * keys or libgcrypt, LLVMFuzzerInitialize). Built with --enable-fuzzers the target links
 * libFuzzer; otherwise it links replay.c, whose main() feeds it every file of its corpus and
 * prints TAP, so that make check runs each corpus (crashers found earlier included).
 */
#ifndef OTLOGIN_FUZZ_H
#define OTLOGIN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * An invariant the code under test must keep. A broken one aborts, as a sanitizer report
 * would: libFuzzer then saves the input, and the replay program fails its test.
 */
#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(#cond, __FILE__, __LINE__);                                      \
	} while (0)

static inline void fuzz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
	fflush(stderr);
	abort();
}

/*
 * The input as a NUL-terminated string of its bytes up to the first NUL (C strings cannot
 * hold more). A new buffer of exactly that size, so that reading past it is caught.
 */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	size_t n = 0;
	char *s;

	while (n < size && data[n] != 0)
		n++;
	s = malloc(n + 1);
	if (s == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		s[i] = (char)data[i];
	s[n] = '\0';
	return s;
}

/*
 * Split the input into at most max fields at NUL bytes (fields hold no NUL, as the C strings
 * they become cannot). Each field is a new string; absent trailing fields are NULL. Returns
 * the number of fields present. Free with fuzz_fields_free.
 */
static inline size_t fuzz_fields(const uint8_t *data, size_t size, char **out, size_t max)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i < max; i++)
		out[i] = NULL;
	while (n < max && start <= size) {
		size_t end = start;
		while (end < size && data[end] != 0)
			end++;
		out[n++] = fuzz_strndup(data + start, end - start);
		if (end == size)
			break;
		start = end + 1;
	}
	return n;
}

static inline void fuzz_fields_free(char **f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i]);
}

#endif
