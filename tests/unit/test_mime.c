/*
 * Unit tests for mime: character and text checks, header fields (folding, encoded-words,
 * mailboxes, Date, Message-ID), quoted-printable and the multipart/alternative and
 * multipart/related layouts. test_mail checks whole login mails; these check each encoder on
 * inputs chosen for its edges.
 */
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "check.h"
#include "crypto.h"
#include "mime.h"

/* ---- helpers ---- */

/* 1 when every line of m ends in CRLF, no line is longer than max, and there is no bare CR/LF. */
static int lines_ok(const char *m, size_t max)
{
	size_t col = 0;

	for (const char *p = m; *p; p++) {
		if (*p == '\r') {
			if (p[1] != '\n')
				return 0;
			p++;
			col = 0;
		} else if (*p == '\n') {
			return 0;
		} else if (++col > max) {
			return 0;
		}
	}
	return col == 0;
}

/* The header field's value after "name:" with the folding CRLFs removed (new string). */
static char *unfold(const char *field, const char *name)
{
	size_t n = strlen(name);
	char *out, *o;

	if (strncmp(field, name, n) != 0 || field[n] != ':')
		return NULL;
	out = o = malloc(strlen(field) + 1);
	for (const char *p = field + n + 1; *p; p++)
		if (*p != '\r' && *p != '\n')
			*o++ = *p;
	*o = '\0';
	return out;
}

/*
 * Decode a value made of " =?UTF-8?B?...?=" words only (new string), or NULL when it is not
 * one, a word is longer than 75 characters or decodes to a broken UTF-8 sequence.
 */
static char *decode_words(const char *v)
{
	char *out = calloc(1, strlen(v) + 1);
	size_t o = 0;

	while (*v) {
		const char *end;
		unsigned char *raw;
		size_t rawlen;

		if (strncmp(v, " =?UTF-8?B?", 11) != 0 || (end = strstr(v + 11, "?=")) == NULL ||
		    end + 2 - (v + 1) > 75 ||
		    b64_decode(v + 11, (size_t)(end - v - 11), &raw, &rawlen) != 0) {
			free(out);
			return NULL;
		}
		raw[rawlen] = '\0';
		if (!mime_header_text_ok((char *)raw)) {
			free(raw);
			free(out);
			return NULL;
		}
		memcpy(out + o, raw, rawlen);
		o += rawlen;
		free(raw);
		v = end + 2;
	}
	return out;
}

static char *put_unstructured(const char *value)
{
	struct sbuf b = {0};

	mime_put_unstructured(&b, "Subject", value);
	return sbuf_take(&b);
}

static char *put_mailbox(const char *display, const char *addr)
{
	struct sbuf b = {0};

	mime_put_mailbox(&b, "From", display, addr);
	return sbuf_take(&b);
}

static char *put_qp(const char *text)
{
	struct sbuf b = {0};

	mime_put_qp(&b, text);
	return sbuf_take(&b);
}

/* ---- characters and text ---- */

static void test_text_checks(void)
{
	static const char *const both_ok[] = {"",
					      "plain",
					      "Z\xc3\xbcrich",
					      "\xe2\x82\xac 5",
					      "\xf0\x9f\x98\x80",
					      "\xc2\xa0nbsp",
					      "\xf4\x8f\xbf\xbf" /* U+10FFFF */};
	static const char *const both_bad[] = {"\x01",
					       "a\x7f",
					       "\xc2\x85" /* C1 */,
					       "\xc0\x80" /* overlong */,
					       "\xe0\x80\x80",
					       "\xed\xa0\x80" /* surrogate */,
					       "\xf4\x90\x80\x80" /* > U+10FFFF */,
					       "\xc3",
					       "\xe2\x82",
					       "\x80",
					       "\xff",
					       "a\x1b[0m"};
	static const char *const body_only[] = {"a\nb", "a\r\nb", "a\rb", "a\tb"};
	int ok = 1;

	for (size_t i = 0; i < sizeof(both_ok) / sizeof(both_ok[0]); i++)
		if (!mime_header_text_ok(both_ok[i]) || !mime_body_text_ok(both_ok[i]))
			ok = 0, printf("# refused %zu\n", i);
	for (size_t i = 0; i < sizeof(both_bad) / sizeof(both_bad[0]); i++)
		if (mime_header_text_ok(both_bad[i]) || mime_body_text_ok(both_bad[i]))
			ok = 0, printf("# accepted bad %zu\n", i);
	for (size_t i = 0; i < sizeof(body_only) / sizeof(body_only[0]); i++)
		if (mime_header_text_ok(body_only[i]) || !mime_body_text_ok(body_only[i]))
			ok = 0, printf("# body-only %zu\n", i);
	check(ok);

	check(mime_printable_ascii("") && mime_printable_ascii(" ~AZaz09!"));
	check(!mime_printable_ascii("\t") && !mime_printable_ascii("\x7f") &&
	      !mime_printable_ascii("\xc3\xa9"));

	ok = 1;
	for (int c = 0; c < 256; c++) {
		int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c));
		if (mime_is_atext((unsigned char)c) != want)
			ok = 0, printf("# atext %d\n", c);
	}
	check_msg(ok, "atext is exactly RFC 5322's set");
}

static void test_unique(void)
{
	char a[MIME_UNIQUE_SIZE], b[MIME_UNIQUE_SIZE];

	mime_unique(a);
	mime_unique(b);
	check(strlen(a) == 32 && strspn(a, "0123456789abcdef") == 32);
	check(strcmp(a, b) != 0);
}

/* ---- header fields ---- */

static void test_unstructured(void)
{
	char *f, *v, *d, lng[700], utf[600];

	f = put_unstructured("Your sign-in code");
	check(f != NULL && strcmp(f, "Subject: Your sign-in code\r\n") == 0);
	free(f);
	f = put_unstructured("");
	check(f != NULL && strcmp(f, "Subject:\r\n") == 0);
	free(f);

	/* Long ASCII: folded before spaces, lines within 78, continuation lines not blank. */
	lng[0] = '\0';
	for (int i = 0; i < 60; i++)
		strcat(lng, i % 7 ? "word " : "longerword  ");
	strcat(lng, "end");
	f = put_unstructured(lng);
	v = unfold(f, "Subject");
	check(f != NULL && lines_ok(f, 78) && strstr(f, "\r\n \r\n") == NULL);
	check(v != NULL && v[0] == ' ' && strcmp(v + 1, lng) == 0);
	check(strstr(f, "=?") == NULL);
	free(v);
	free(f);

	/* What could be read as an encoded-word, and non-ASCII, go as encoded-words. */
	f = put_unstructured("a =?x?= b");
	v = unfold(f, "Subject");
	d = v ? decode_words(v) : NULL;
	check(d != NULL && strcmp(d, "a =?x?= b") == 0);
	free(d);
	free(v);
	free(f);

	/* Multi-byte sequences are never split between words; lines stay within 78. */
	utf[0] = '\0';
	for (int i = 0; i < 40; i++)
		strcat(utf, i % 3 ? "\xe2\x82\xac" : i % 2 ? "\xf0\x9f\x98\x80 " : "Z\xc3\xbc");
	f = put_unstructured(utf);
	v = unfold(f, "Subject");
	d = v ? decode_words(v) : NULL;
	check(f != NULL && lines_ok(f, 78));
	check(d != NULL && strcmp(d, utf) == 0);
	free(d);
	free(v);
	free(f);
}

static void test_mailbox(void)
{
	/* Specials, double spaces and edge spaces need a quoted-string; " and \ are escaped. */
	static const struct {
		const char *display, *want;
	} cases[] = {
	    {NULL, "From: a@b\r\n"},
	    {"", "From: a@b\r\n"},
	    {"Example Login", "From: Example Login <a@b>\r\n"},
	    {"O'Brien+Co", "From: O'Brien+Co <a@b>\r\n"},
	    {"Smith, \"J\\\"", "From: \"Smith, \\\"J\\\\\\\"\" <a@b>\r\n"},
	    {"a  b", "From: \"a  b\" <a@b>\r\n"},
	    {" a", "From: \" a\" <a@b>\r\n"},
	};
	char *f, *v, *d, name[120];
	int ok = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f = put_mailbox(cases[i].display, "a@b");
		if (f == NULL || strcmp(f, cases[i].want) != 0)
			ok = 0, printf("# mailbox case %zu gave \"%s\"\n", i, f ? f : "NULL");
		free(f);
	}
	check(ok);
	/* Non-ASCII goes as encoded-words. */
	f = put_mailbox("Z\xc3\xbcrich Login", "a@b");
	check(f != NULL && strncmp(f, "From: =?UTF-8?B?", 16) == 0 &&
	      strcmp(f + strlen(f) - 8, " <a@b>\r\n") == 0);
	if (f != NULL) {
		f[strlen(f) - 8] = '\0';
		v = unfold(f, "From");
		d = v ? decode_words(v) : NULL;
		check(d != NULL && strcmp(d, "Z\xc3\xbcrich Login") == 0);
		free(d);
		free(v);
	}
	free(f);
	/* A long name puts the address on a line of its own rather than pass 78 columns. */
	memset(name, 'n', 70);
	name[70] = '\0';
	f = put_mailbox(name, "someone@example.com");
	check(f != NULL && lines_ok(f, 78) && strstr(f, "\r\n <someone@example.com>\r\n") != NULL);
	free(f);
}

static void test_date_and_id(void)
{
	struct sbuf b = {0};
	char *f;

	mime_put_date(&b, 0);
	mime_put_date(&b, 1700000000);
	mime_put_date(&b, 951782400); /* 2000-02-29 */
	f = sbuf_take(&b);
	check(f != NULL && strcmp(f, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
				     "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
				     "Date: Tue, 29 Feb 2000 00:00:00 +0000\r\n") == 0);
	free(f);

	mime_put_message_id(&b, "mail.example.com");
	f = sbuf_take(&b);
	check(f != NULL && strncmp(f, "Message-ID: <", 13) == 0 &&
	      strspn(f + 13, "0123456789abcdef") == 32 &&
	      strcmp(f + 45, "@mail.example.com>\r\n") == 0);
	free(f);
}

/* ---- bodies ---- */

static void test_qp(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"", ""},
	    {"abc", "abc\r\n"},
	    {"a=b", "a=3Db\r\n"},
	    {"Z\xc3\xbc", "Z=C3=BC\r\n"},
	    {"a \nb\t\n", "a=20\r\nb=09\r\n"},
	    {"a b", "a b\r\n"},
	    {"end ", "end=20\r\n"},
	    {".\n.x\nx.", "=2E\r\n=2Ex\r\nx.\r\n"},
	    {"\n\n", "\r\n\r\n"},
	    {"a\rb", "a=0Db\r\n"},
	    {"~\x7f", "~=7F\r\n"},
	};
	char *q, lng[400], *line;
	int ok = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		q = put_qp(cases[i].in);
		if (q == NULL || strcmp(q, cases[i].want) != 0)
			ok = 0, printf("# qp case %zu gave \"%s\"\n", i, q ? q : "NULL");
		free(q);
	}
	check(ok);

	/* Soft breaks keep lines within 76 and never leave a '.' at the start of a line. */
	memset(lng, 'x', 75);
	memset(lng + 75, '.', 100);
	memset(lng + 175, '=', 100);
	lng[275] = '\0';
	q = put_qp(lng);
	check(q != NULL && lines_ok(q, 76));
	ok = q != NULL;
	for (line = q; ok && *line; line = strstr(line, "\r\n") + 2)
		if (*line == '.')
			ok = 0;
	check_msg(ok, "no line starts with a dot");
	check(q != NULL && strncmp(q, "xxx", 3) == 0 && strstr(q, "=\r\n=2E") != NULL);
	free(q);
}

/* 1 when m has a part with exactly these header lines after its delimiter line "--boundary". */
static int has_part(const char *m, const char *boundary, const char *headers)
{
	char want[300];

	snprintf(want, sizeof(want), "\r\n--%s\r\n%s\r\n\r\n", boundary, headers);
	return strstr(m, want) != NULL;
}

static void test_alternative(void)
{
	static const unsigned char gif[] = "GIF89a\x01\x00\x01\x00";
	struct mime_image image = {gif, sizeof(gif) - 1, "image/gif", "logo.gif", "logo.1@otlogin"};
	struct sbuf b = {0};
	char *m, alt[64], rel[64], *data;

	sbuf_puts(&b, "To: a@b\r\n");
	mime_put_alternative(&b, "text\n", "<p>html</p>\n", NULL);
	m = sbuf_take(&b);
	check(m != NULL && lines_ok(m, 78));
	check(m != NULL && sscanf(m,
				  "To: a@b\r\nContent-Type: multipart/alternative;\r\n "
				  "boundary=\"%63[^\"]\"",
				  alt) == 1);
	check(strncmp(alt, "=_alt_", 6) == 0 && strlen(alt) == 38);
	check(m != NULL && strstr(m, "\r\n\r\nThis is a multi-part message in MIME format.\r\n"));
	check(has_part(m, alt,
		       "Content-Type: text/plain; charset=utf-8\r\n"
		       "Content-Transfer-Encoding: quoted-printable") &&
	      strstr(m, "quoted-printable\r\n\r\ntext\r\n--") != NULL);
	check(has_part(m, alt,
		       "Content-Type: text/html; charset=utf-8\r\n"
		       "Content-Transfer-Encoding: quoted-printable") &&
	      strstr(m, "quoted-printable\r\n\r\n<p>html</p>\r\n--") != NULL);
	{
		char tail[100];
		snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", alt);
		check(m != NULL && strlen(m) > strlen(tail) &&
		      strcmp(m + strlen(m) - strlen(tail), tail) == 0);
	}
	free(m);

	mime_put_alternative(&b, "text\n", "<img src=\"cid:logo.1@otlogin\">\n", &image);
	m = sbuf_take(&b);
	check(m != NULL && lines_ok(m, 78));
	check(m != NULL && sscanf(m,
				  "Content-Type: multipart/related;\r\n "
				  "type=\"multipart/alternative\";\r\n boundary=\"%63[^\"]\"",
				  rel) == 1);
	check(strncmp(rel, "=_rel_", 6) == 0 && strlen(rel) == 38);
	check(m != NULL && sscanf(strstr(m, "\r\n--=_rel_"),
				  "\r\n--%*s\r\nContent-Type: "
				  "multipart/alternative;\r\n "
				  "boundary=\"%63[^\"]\"",
				  alt) == 1);
	check(strncmp(alt, "=_alt_", 6) == 0 && strcmp(alt + 6, rel + 6) != 0);
	data = b64_encode_mime(gif, sizeof(gif) - 1);
	check(has_part(m, rel,
		       "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n"
		       "Content-ID: <logo.1@otlogin>\r\n"
		       "Content-Disposition: inline; filename=\"logo.gif\""));
	{
		char tail[200];
		snprintf(tail, sizeof(tail), "--%s--\r\n\r\n--%s\r\n", alt, rel);
		check(m != NULL && strstr(m, tail) != NULL);
		snprintf(tail, sizeof(tail), "\r\n\r\n%s\r\n--%s--\r\n", data, rel);
		check(m != NULL && strlen(m) > strlen(tail) &&
		      strcmp(m + strlen(m) - strlen(tail), tail) == 0);
	}
	free(data);
	free(m);
}

int main(void)
{
	if (crypto_init() != 0) {
		printf("Bail out! crypto_init\n");
		return 1;
	}
	test_text_checks();
	test_unique();
	test_unstructured();
	test_mailbox();
	test_date_and_id();
	test_qp();
	test_alternative();
	return check_done();
}
