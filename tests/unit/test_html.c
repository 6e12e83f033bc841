/* Unit tests for html: the five escaped characters, line breaks, and html_escape's copy. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "html.h"

/* 1 when html_add(s, breaks) appends exactly want. */
static int adds(const char *s, enum html_breaks breaks, const char *want)
{
	struct sbuf b = {0};
	char *got;
	int ok;

	sbuf_puts(&b, "[");
	html_add(&b, s, breaks);
	got = sbuf_take(&b);
	ok = got != NULL && strcmp(got + 1, want) == 0;
	if (!ok)
		printf("# html_add(\"%s\") gave \"%s\", want \"%s\"\n", s, got ? got + 1 : "NULL",
		       want);
	free(got);
	return ok;
}

static void test_escaping(void)
{
	check(adds("", HTML_BREAK_SPACE, ""));
	check(adds("plain text 123", HTML_BREAK_SPACE, "plain text 123"));
	check(adds("&", HTML_BREAK_SPACE, "&amp;"));
	check(adds("<", HTML_BREAK_SPACE, "&lt;"));
	check(adds(">", HTML_BREAK_SPACE, "&gt;"));
	check(adds("\"", HTML_BREAK_SPACE, "&quot;"));
	check(adds("'", HTML_BREAK_SPACE, "&#39;"));
	check(adds("<a href=\"x\" onclick='y'>&amp;</a>", HTML_BREAK_BR,
		   "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"));
	/* Non-ASCII and other punctuation pass through as they are. */
	check(adds("Z\xc3\xbcrich \xe2\x82\xac 5 = 5; #x", HTML_BREAK_SPACE,
		   "Z\xc3\xbcrich \xe2\x82\xac 5 = 5; #x"));
}

static void test_breaks(void)
{
	/* CRLF, lone CR and LF are one break each. */
	check(adds("a\nb\r\nc\rd", HTML_BREAK_BR, "a<br>\nb<br>\nc<br>\nd"));
	check(adds("a\nb\r\nc\rd", HTML_BREAK_SPACE, "a b c d"));
	check(adds("\r\r\n\n", HTML_BREAK_BR, "<br>\n<br>\n<br>\n"));
	check(adds("\n\r", HTML_BREAK_SPACE, "  "));
	/* A tab is not a line break. */
	check(adds("a\tb", HTML_BREAK_BR, "a\tb"));
}

static void test_escape_copy(void)
{
	char *s = html_escape("Tom & \"Jerry\"\n<3");

	check(s != NULL && strcmp(s, "Tom &amp; &quot;Jerry&quot; &lt;3") == 0);
	free(s);
	s = html_escape("");
	check(s != NULL && strcmp(s, "") == 0);
	free(s);
}

int main(void)
{
	test_escaping();
	test_breaks();
	test_escape_copy();
	return check_done();
}
