/*
 * Minimal TAP test helpers shared by the unit test programs.
 * check(cond) records one TAP result per call, naming the source line; a test program
 * ends with `return check_done();`, which prints the plan and returns non-zero on failure.
 */
#ifndef OTLOGIN_CHECK_H
#define OTLOGIN_CHECK_H

#include <stdio.h>

static int check_count;
static int check_failed;

#define check(cond) check_at((cond) != 0, #cond, __FILE__, __LINE__)
#define check_msg(cond, ...)                                                                       \
	do {                                                                                       \
		if (!check_at((cond) != 0, #cond, __FILE__, __LINE__))                             \
			fprintf(stdout, "# " __VA_ARGS__), fputc('\n', stdout);                    \
	} while (0)

static inline int check_at(int ok, const char *what, const char *file, int line)
{
	check_count++;
	if (!ok)
		check_failed++;
	printf("%sok %d - %s:%d: %s\n", ok ? "" : "not ", check_count, file, line, what);
	fflush(stdout);
	return ok;
}

static inline int check_done(void)
{
	printf("1..%d\n", check_count);
	return check_failed ? 1 : 0;
}

#endif
