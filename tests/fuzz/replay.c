/*
 * main() for a fuzz target built without libFuzzer: replay inputs and print TAP.
 *
 *   fuzz_TARGET                  every file of $FUZZ_CORPUS, or else of
 *                                <srcdir>/tests/fuzz/corpus/TARGET (TARGET from argv[0])
 *   fuzz_TARGET FILE|DIR...      the given files and directories
 *
 * One TAP line per input, the empty input first (libFuzzer always tries it). A broken
 * invariant or a sanitizer report aborts the program, so the last "# input" line names the
 * culprit; make check then counts the program as failed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#ifndef FUZZ_CORPUS_ROOT
#define FUZZ_CORPUS_ROOT "tests/fuzz/corpus"
#endif

static int ntests, nfailed;

static void tap(int ok, const char *name, const char *why)
{
	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %d - %s%s%s\n", ok ? "" : "not ", ntests, name, why ? ": " : "",
	       why ? why : "");
	fflush(stdout);
}

static void run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;

	printf("# input %s\n", path);
	fflush(stdout);
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		tap(0, path, strerror(errno));
		goto out;
	}
	/* Exactly len bytes (malloc(0) may be NULL): a read past the input is then caught. */
	buf = malloc(len ? (size_t)len : 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		tap(0, path, "cannot read");
		goto out;
	}
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	tap(1, path, NULL);
out:
	free(buf);
	if (f != NULL)
		fclose(f);
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every regular file of dir, in name order so that test numbers are stable. */
static void run_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort), files = 0;

	if (n < 0) {
		tap(0, dir, strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		if (names[i]->d_name[0] != '.' &&
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) <
			sizeof(path) &&
		    !is_dir(path)) {
			run_file(path);
			files++;
		}
		free(names[i]);
	}
	free(names);
	/* A corpus that went missing would otherwise pass silently. */
	if (files == 0)
		tap(0, dir, "no corpus files");
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *corpus = getenv("FUZZ_CORPUS");
	char dir[4096];
	uint8_t empty = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	LLVMFuzzerTestOneInput(&empty, 0);
	tap(1, "empty input", NULL);
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			if (is_dir(argv[i]))
				run_dir(argv[i]);
			else
				run_file(argv[i]);
		}
	} else {
		if (corpus == NULL) {
			snprintf(dir, sizeof(dir), "%s/%s", FUZZ_CORPUS_ROOT, base);
			corpus = dir;
		}
		run_dir(corpus);
	}
	printf("1..%d\n", ntests);
	return nfailed ? 1 : 0;
}
