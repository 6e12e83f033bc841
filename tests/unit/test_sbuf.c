/* Unit tests for sbuf: appends, growth, formatting, the sticky failure and taking the text. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sbuf.h"

static void test_append(void)
{
	struct sbuf b = {0};
	char *s;

	s = sbuf_take(&b);
	check(s != NULL && strcmp(s, "") == 0);
	free(s);
	check(b.p == NULL && b.len == 0 && b.cap == 0);

	sbuf_puts(&b, "one");
	sbuf_add(&b, " two three", 4);
	sbuf_printf(&b, " %d %s", 3, "four");
	check(b.p != NULL && strcmp(b.p, "one two 3 four") == 0 && b.len == 14 && !b.oom);
	sbuf_add(&b, "\0x", 2); /* bytes, not a string: a NUL inside counts */
	check(b.len == 16 && b.p[14] == '\0' && b.p[15] == 'x' && b.p[16] == '\0');
	s = sbuf_take(&b);
	check(s != NULL && strcmp(s, "one two 3 four") == 0);
	check(b.p == NULL && b.len == 0 && b.cap == 0);
	free(s);
}

/* Growing past the first block and far beyond keeps every byte, NUL-terminated. */
static void test_growth(void)
{
	struct sbuf b = {0};
	int ok = 1;

	for (size_t i = 0; i < 10000; i++) {
		char c = (char)('a' + i % 26);
		sbuf_add(&b, &c, 1);
		if (b.len != i + 1 || b.p[i] != c || b.p[i + 1] != '\0' || b.cap < b.len + 1)
			ok = 0;
	}
	for (size_t i = 0; i < 10000 && ok; i++)
		if (b.p[i] != (char)('a' + i % 26))
			ok = 0;
	check_msg(ok, "10000 single-byte appends");
	{
		static char big[5000];
		memset(big, 'z', sizeof(big) - 1);
		sbuf_puts(&b, big);
		check(b.len == 10000 + sizeof(big) - 1 && b.p[b.len - 1] == 'z' && !b.oom);
	}
	sbuf_free(&b);
	check(b.p == NULL && b.len == 0 && b.cap == 0 && !b.oom);
}

/* A line too long for sbuf_printf fails the buffer: later appends are dropped, take is NULL. */
static void test_failure(void)
{
	struct sbuf b = {0};
	char line[2000];

	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	sbuf_puts(&b, "start");
	sbuf_printf(&b, "%s", line);
	check(b.oom && b.len == 5);
	sbuf_puts(&b, "more");
	check(b.len == 5 && strcmp(b.p, "start") == 0);
	check(sbuf_take(&b) == NULL);
	check(b.p == NULL && b.len == 0 && !b.oom);

	/* 1023 characters still fit. */
	line[1023] = '\0';
	sbuf_printf(&b, "%s", line);
	check(!b.oom && b.len == 1023);
	sbuf_free(&b);
}

int main(void)
{
	test_append();
	test_growth();
	test_failure();
	return check_done();
}
