/*
 * Unit tests of mail: address and colour validation (data-driven), message composition
 * (structure, header injection, HTML escaping, RFC 2047, logos) and the Maildir backend.
 * The message is taken apart here with a small MIME reader so the checks look at what a mail
 * client would see (decoded parts), not at the encoded bytes.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64url.h"
#include "crypto.h"
#include "fixture.h"
#include "log.h"
#include "mail.h"

/* ---- data-driven validation ---- */

static const char *const valid_addrs[] = {
    "user@localhost",
    "user@example.com",
    "a@b",
    "first.last@sub.example.co.uk",
    "o'brien+tag@example.com",
    "x!#$%&'*+-/=?^_`{|}~@example.com",
    "user@xn--bcher-kva.example",
    "1234@123.example",
    "u@a-b.c-d.e",
};

static const char *const invalid_addrs[] = {
    "",
    "@",
    "user",
    "user@",
    "@example.com",
    "a@b@example.com",
    "a@b.c\r\nRCPT TO:<x@y>",
    "a@b.c\nRCPT TO:<x@y>",
    "a@b.c\r",
    "a\r\n@b.c",
    "a\t@b.c",
    "a\x01@b.c",
    "a\x7f@b.c",
    "a b@example.com",
    "user@exa mple.com",
    " user@example.com",
    "user@example.com ",
    "\"quoted\"@example.com",
    "a\"b@example.com",
    "<user@example.com>",
    "User <user@example.com>",
    "user@[127.0.0.1]",
    "user(comment)@example.com",
    "a,b@example.com",
    "a;b@example.com",
    "a:b@example.com",
    "a\\b@example.com",
    "user@exa,mple.com",
    ".user@example.com",
    "user.@example.com",
    "us..er@example.com",
    "user@.example.com",
    "user@example.com.",
    "user@example..com",
    "user@-example.com",
    "user@example-.com",
    "user@exa_mple.com",
    "j\xc3\xb6rg@example.com",
    /* Two literals: "\xbcc" would be one escape. The parentheses say the joining is meant. */
    ("user@b\xc3\xbc"
     "cher.example"),
    "user@\xe2\x9c\x93.example",
};

static const char *const valid_colors[] = {"#6981FF", "#000000", "#ffffff", "#a1B2c3"};
static const char *const invalid_colors[] = {
    "",	   "#",	       "6981FF",    "#6981F",	 "#6981FFF",   "#6981FG", "#69 1FF",
    "red", "#6981FF;", "#6981FF\"", "#6981FF\n", "rgb(1,2,3)", "##6981F",
};

/* "<local>@<domain>" with a local part of nl 'a's and a domain of labels of up to 63 'b's. */
static void make_addr(char *out, size_t nl, size_t nd)
{
	size_t o = 0, label = 0;
	for (size_t i = 0; i < nl; i++)
		out[o++] = 'a';
	out[o++] = '@';
	for (size_t i = 0; i < nd; i++) {
		/* a dot after every 63 letters, never first or last */
		if (label == 63 && i + 1 < nd) {
			out[o++] = '.';
			label = 0;
			continue;
		}
		out[o++] = 'b';
		label++;
	}
	out[o] = '\0';
}

static void test_validation(void)
{
	char a[600];

	for (size_t i = 0; i < sizeof(valid_addrs) / sizeof(valid_addrs[0]); i++)
		check_msg(mail_address_valid(valid_addrs[i]) == 1, "valid addr %zu", i);
	for (size_t i = 0; i < sizeof(invalid_addrs) / sizeof(invalid_addrs[0]); i++)
		check_msg(mail_address_valid(invalid_addrs[i]) == 0, "invalid addr %zu", i);
	check(mail_address_valid(NULL) == 0);

	/* Length limits: local part 64, domain 253, label 63, total 254. */
	make_addr(a, 64, 189);
	check(strlen(a) == 254 && mail_address_valid(a) == 1);
	make_addr(a, 64, 190);
	check(strlen(a) == 255 && mail_address_valid(a) == 0);
	make_addr(a, 65, 20);
	check(mail_address_valid(a) == 0);
	make_addr(a, 1, 253);
	check(strlen(a) == 255 && mail_address_valid(a) == 0); /* domain fine, total not */
	make_addr(a, 1, 252);
	check(strlen(a) == 254 && mail_address_valid(a) == 1);
	make_addr(a, 1, 254);
	check(mail_address_valid(a) == 0);
	make_addr(a, 1, 500);
	check(mail_address_valid(a) == 0);
	snprintf(a, sizeof(a), "u@%063d.com", 0);
	check(mail_address_valid(a) == 1);
	snprintf(a, sizeof(a), "u@%064d.com", 0);
	check(mail_address_valid(a) == 0);

	for (size_t i = 0; i < sizeof(valid_colors) / sizeof(valid_colors[0]); i++)
		check_msg(mail_color_valid(valid_colors[i]) == 1, "valid colour %zu", i);
	for (size_t i = 0; i < sizeof(invalid_colors) / sizeof(invalid_colors[0]); i++)
		check_msg(mail_color_valid(invalid_colors[i]) == 0, "invalid colour %zu", i);
	check(mail_color_valid(NULL) == 0);
}

/* ---- a small MIME reader ---- */

struct part {
	char *headers; /* unfolded? no: raw header block, NUL-terminated */
	char *body;    /* decoded body */
	size_t body_len;
};

static char *dupn(const char *p, size_t n)
{
	char *s = malloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Every line ends in CRLF, no bare CR or LF, no line longer than max (without CRLF). */
static int lines_ok(const char *m, size_t len, size_t max)
{
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\r') {
			if (i + 1 >= len || m[i + 1] != '\n')
				return 0;
			i++;
			col = 0;
		} else if (m[i] == '\n') {
			return 0;
		} else if (++col > max) {
			return 0;
		}
	}
	return col == 0;
}

static int is_7bit(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)m[i] >= 0x80 || m[i] == '\0')
			return 0;
	return 1;
}

/* Number of header fields called name in the header block hdrs. */
static int header_count(const char *hdrs, const char *name)
{
	size_t n = strlen(name);
	int count = 0;
	for (const char *p = hdrs; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':')
			count++;
		if (p[0] == '\r' && p[1] == '\n')
			break;
	}
	return count;
}

/* The unfolded value of header name (new string), NULL when absent. */
static char *header_value(const char *hdrs, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = hdrs; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e = v;
			char *out, *o;
			for (;;) {
				e = strstr(e, "\r\n");
				if (e == NULL || (e[2] != ' ' && e[2] != '\t'))
					break;
				e += 2;
			}
			if (e == NULL)
				e = v + strlen(v);
			out = o = malloc((size_t)(e - v) + 1);
			for (const char *q = v; q < e; q++) {
				if (q[0] == '\r' && q[1] == '\n') {
					q++;
					continue;
				}
				*o++ = *q;
			}
			*o = '\0';
			while (*out == ' ') /* strip the space after the colon */
				memmove(out, out + 1, strlen(out));
			return out;
		}
	}
	return NULL;
}

static int hexv(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Strict quoted-printable decoder: fails on lowercase hex, bad escapes, lines > 76. */
static char *qp_decode(const char *in, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1), *o = out;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '=') {
			if (i + 2 < len + 0 && in[i + 1] == '\r' && in[i + 2] == '\n') {
				i += 2;
				continue;
			}
			if (i + 2 >= len || hexv(in[i + 1]) < 0 || hexv(in[i + 2]) < 0) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hexv(in[i + 1]) * 16 + hexv(in[i + 2]));
			i += 2;
		} else if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n') {
			*o++ = '\n';
			i++;
		} else {
			*o++ = in[i];
		}
	}
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;
}

static char *b64_decode_lines(const char *in, size_t len, size_t *outlen)
{
	char *flat = malloc(len + 1), *f = flat;
	unsigned char *dec = NULL;
	for (size_t i = 0; i < len; i++)
		if (in[i] != '\r' && in[i] != '\n')
			*f++ = in[i];
	if (b64_decode(flat, (size_t)(f - flat), &dec, outlen) != 0)
		dec = NULL;
	free(flat);
	return (char *)dec;
}

/* The parameter value boundary="..." of a Content-Type value (new string). */
static char *boundary_of(const char *ctype)
{
	const char *p = strstr(ctype, "boundary=\"");
	const char *e;
	if (p == NULL)
		return NULL;
	p += 10;
	e = strchr(p, '"');
	return e ? dupn(p, (size_t)(e - p)) : NULL;
}

/*
 * Split a multipart body on its boundary into parts (up to max), decoding each leaf body
 * according to its Content-Transfer-Encoding. Returns the number of parts, -1 on a syntax error.
 */
static int split_parts(const char *body, const char *boundary, struct part *parts, int max)
{
	char delim[128];
	const char *p;
	int n = 0;

	snprintf(delim, sizeof(delim), "--%s\r\n", boundary);
	p = strstr(body, delim);
	if (p == NULL)
		return -1;
	while (p != NULL && n < max) {
		const char *start = p + strlen(delim), *end, *hend;
		char close[128], next[128];
		snprintf(next, sizeof(next), "\r\n--%s\r\n", boundary);
		snprintf(close, sizeof(close), "\r\n--%s--", boundary);
		end = strstr(start, next);
		if (end == NULL) {
			end = strstr(start, close);
			if (end == NULL)
				return -1;
			p = NULL;
		} else {
			p = end + 2;
		}
		hend = strstr(start, "\r\n\r\n");
		if (hend == NULL || hend > end)
			return -1;
		parts[n].headers = dupn(start, (size_t)(hend - start) + 4);
		{
			const char *b = hend + 4;
			size_t blen = (size_t)(end - b) + 2; /* keep the last CRLF */
			char *cte = header_value(parts[n].headers, "Content-Transfer-Encoding");
			if (cte != NULL && strcmp(cte, "quoted-printable") == 0)
				parts[n].body = qp_decode(b, blen, &parts[n].body_len);
			else if (cte != NULL && strcmp(cte, "base64") == 0)
				parts[n].body = b64_decode_lines(b, blen, &parts[n].body_len);
			else {
				parts[n].body = dupn(b, blen);
				parts[n].body_len = blen;
			}
			free(cte);
		}
		n++;
	}
	return n;
}

static void free_parts(struct part *parts, int n)
{
	for (int i = 0; i < n; i++) {
		free(parts[i].headers);
		free(parts[i].body);
	}
}

/* A composed message taken apart. */
struct parsed {
	char *msg;
	size_t len;
	char *headers;
	struct part alt[2];
	int nalt;
	struct part rel[2];
	int nrel;
	const char *text, *html;
};

static void parsed_free(struct parsed *p)
{
	free(p->msg);
	free(p->headers);
	free_parts(p->alt, p->nalt);
	free_parts(p->rel, p->nrel);
	memset(p, 0, sizeof(*p));
}

/* Compose r and parse the result into p; returns mail_compose's result. */
static int compose_parse(const struct mail_request *r, struct parsed *p)
{
	const char *hend;
	char *ctype, *b;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = mail_compose(r, &p->msg, &p->len);
	if (rc != MAIL_OK)
		return rc;
	check(p->msg[p->len] == '\0' && strlen(p->msg) == p->len);
	check(lines_ok(p->msg, p->len, 998));
	check(is_7bit(p->msg, p->len));
	hend = strstr(p->msg, "\r\n\r\n");
	check(hend != NULL);
	if (hend == NULL)
		return -100;
	p->headers = dupn(p->msg, (size_t)(hend - p->msg) + 4);
	/* Header lines stay within the 78 characters RFC 5322 recommends. */
	check(lines_ok(p->headers, strlen(p->headers), 78));
	ctype = header_value(p->headers, "Content-Type");
	check(ctype != NULL);
	if (ctype == NULL)
		return -100;
	b = boundary_of(ctype);
	check(b != NULL);
	if (strncmp(ctype, "multipart/related;", 18) == 0) {
		char *ct2, *b2;
		check(strstr(ctype, "type=\"multipart/alternative\"") != NULL);
		p->nrel = split_parts(hend + 4, b, p->rel, 2);
		check(p->nrel == 2);
		if (p->nrel != 2) {
			free(ctype);
			free(b);
			return -100;
		}
		ct2 = header_value(p->rel[0].headers, "Content-Type");
		b2 = boundary_of(ct2);
		check(strncmp(ct2, "multipart/alternative;", 22) == 0);
		check(b2 != NULL && strcmp(b2, b) != 0);
		p->nalt = split_parts(p->rel[0].body, b2, p->alt, 2);
		free(ct2);
		free(b2);
	} else {
		check(strncmp(ctype, "multipart/alternative;", 22) == 0);
		p->nalt = split_parts(hend + 4, b, p->alt, 2);
	}
	free(ctype);
	free(b);
	check(p->nalt == 2);
	if (p->nalt != 2)
		return -100;
	check(strstr(p->alt[0].headers, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
	check(strstr(p->alt[1].headers, "Content-Type: text/html; charset=utf-8\r\n") != NULL);
	check(p->alt[0].body != NULL && p->alt[1].body != NULL);
	p->text = p->alt[0].body ? p->alt[0].body : "";
	p->html = p->alt[1].body ? p->alt[1].body : "";
	return MAIL_OK;
}

/* Decode an unstructured header value made of RFC 2047 B words and plain text (new string). */
static char *decode_2047(const char *v)
{
	char *out = calloc(1, strlen(v) + 1);
	size_t n = 0, spaces = 0;
	int prev_word = 0;

	while (*v) {
		if (*v == ' ') { /* held back until we know what follows */
			spaces++;
			v++;
			continue;
		}
		if (strncmp(v, "=?UTF-8?B?", 10) == 0) {
			const char *e = strstr(v + 10, "?=");
			unsigned char *dec;
			size_t dlen;
			if (e == NULL || e - v > 75 ||
			    b64_decode(v + 10, (size_t)(e - v - 10), &dec, &dlen) != 0) {
				free(out);
				return NULL;
			}
			/* whitespace between two encoded-words is dropped (RFC 2047 6.2) */
			if (!prev_word)
				for (; spaces > 0; spaces--)
					out[n++] = ' ';
			spaces = 0;
			memcpy(out + n, dec, dlen);
			n += dlen;
			free(dec);
			v = e + 2;
			prev_word = 1;
		} else {
			for (; spaces > 0; spaces--)
				out[n++] = ' ';
			prev_word = 0;
			out[n++] = *v++;
		}
	}
	for (; spaces > 0; spaces--)
		out[n++] = ' ';
	out[n] = '\0';
	return out;
}

static size_t count_str(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* ---- composition ---- */

static struct mail_request base_otp(void)
{
	struct mail_request r;
	memset(&r, 0, sizeof(r));
	r.kind = MAIL_OTP;
	r.from_addr = "noreply@example.com";
	r.from_name = "Example Login";
	r.to_addr = "user@localhost";
	r.app_name = "Acme";
	r.code = "012345";
	r.minutes = 5;
	return r;
}

static struct mail_request base_link(void)
{
	struct mail_request r = base_otp();
	r.kind = MAIL_LINK;
	r.code = NULL;
	r.url = "https://login.example.com/v1/auth/link/email/open?t=abc_DEF-123";
	r.minutes = 15;
	return r;
}

static void test_structure(void)
{
	struct mail_request r = base_otp();
	struct parsed p, q;
	char *v;

	check(compose_parse(&r, &p) == MAIL_OK);
	check(header_count(p.headers, "From") == 1);
	check(header_count(p.headers, "To") == 1);
	check(header_count(p.headers, "Subject") == 1);
	check(header_count(p.headers, "Date") == 1);
	check(header_count(p.headers, "Message-ID") == 1);
	check(header_count(p.headers, "MIME-Version") == 1);
	check(header_count(p.headers, "Content-Type") == 1);
	check(header_count(p.headers, "Auto-Submitted") == 1);
	check(header_count(p.headers, "Bcc") == 0);

	v = header_value(p.headers, "From");
	check(v && strcmp(v, "Example Login <noreply@example.com>") == 0);
	free(v);
	v = header_value(p.headers, "To");
	check(v && strcmp(v, "user@localhost") == 0);
	free(v);
	v = header_value(p.headers, "Subject");
	check(v && strcmp(v, "Your Acme sign-in code") == 0);
	free(v);
	v = header_value(p.headers, "Auto-Submitted");
	check(v && strcmp(v, "auto-generated") == 0);
	free(v);
	v = header_value(p.headers, "MIME-Version");
	check(v && strcmp(v, "1.0") == 0);
	free(v);
	v = header_value(p.headers, "Date");
	{
		char wd[4], mon[4], tz[6];
		int d, y, hh, mm, ss;
		check(v && sscanf(v, "%3s, %d %3s %d %d:%d:%d %5s", wd, &d, mon, &y, &hh, &mm, &ss,
				  tz) == 8);
		check(v && v[3] == ',' && strcmp(tz, "+0000") == 0 && y >= 2024);
	}
	free(v);
	v = header_value(p.headers, "Message-ID");
	check(v && v[0] == '<' && strlen(v) == 1 + 32 + 1 + 11 + 1 &&
	      strcmp(v + 33, "@example.com>") == 0);
	free(v);

	/* Both parts carry the code; the default texts and footer are there. */
	check(strstr(p.text, "012345") != NULL);
	check(strstr(p.html, ">012345<") != NULL);
	check(strstr(p.text, "expires in 5 minutes") != NULL);
	check(strstr(p.html, "expires in 5 minutes") != NULL);
	check(strstr(p.text, "If you didn't request this email, you can safely ignore it.") !=
	      NULL);
	check(strstr(p.html, "If you didn&#39;t request this email, you can safely ignore it.") !=
	      NULL);
	check(strstr(p.html, "#6981FF") != NULL);
	check(strstr(p.html, "<table") != NULL);
	check(strstr(p.html, "http") == NULL); /* no external resources */
	/* Encoded body lines respect MIME's 76. */
	{
		const char *body = strstr(p.msg, "\r\n\r\n") + 4;
		check(lines_ok(body, strlen(body), 76));
	}

	/* Boundaries and Message-ID are random per message. */
	check(compose_parse(&r, &q) == MAIL_OK);
	{
		char *c1 = header_value(p.headers, "Content-Type");
		char *c2 = header_value(q.headers, "Content-Type");
		char *m1 = header_value(p.headers, "Message-ID");
		char *m2 = header_value(q.headers, "Message-ID");
		check(strcmp(c1, c2) != 0);
		check(strcmp(m1, m2) != 0);
		free(c1);
		free(c2);
		free(m1);
		free(m2);
	}
	parsed_free(&q);
	parsed_free(&p);

	/* The link message: button and raw fallback, both with the URL. */
	r = base_link();
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "Subject");
	check(v && strcmp(v, "Sign in to Acme") == 0);
	free(v);
	check(strstr(p.text, r.url) != NULL);
	check(count_str(p.html, "href=\"https://login.example.com/v1/auth/link/email/open?t=abc_"
				"DEF-123\"") == 2);
	check(strstr(p.html, ">Sign in</a>") != NULL);
	check(strstr(p.html, "expires in 15 minutes") != NULL);
	parsed_free(&p);

	/* One minute is singular; no app name still reads well. */
	r = base_otp();
	r.minutes = 1;
	r.app_name = NULL;
	check(compose_parse(&r, &p) == MAIL_OK);
	check(strstr(p.text, "expires in 1 minute.") != NULL);
	v = header_value(p.headers, "Subject");
	check(v && strcmp(v, "Your sign-in code") == 0);
	free(v);
	parsed_free(&p);

	/* Display names that need quoting, and none at all. */
	r = base_otp();
	r.from_name = "Acme, Inc. \"Login\"";
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "From");
	check(v && strcmp(v, "\"Acme, Inc. \\\"Login\\\"\" <noreply@example.com>") == 0);
	free(v);
	parsed_free(&p);
	r.from_name = NULL;
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "From");
	check(v && strcmp(v, "noreply@example.com") == 0);
	free(v);
	parsed_free(&p);
}

static void test_rejections(void)
{
	struct mail_request r;
	char *m = NULL;
	size_t n = 0;
	static const char *const bad_header_values[] = {
	    "Hi\r\nBcc: victim@example.com",
	    "Hi\nBcc: victim@example.com",
	    "Hi\rthere",
	    "tab\there",
	    "bell\x07",
	    "esc\x1b[1m",
	    "del\x7f",
	    "nel\xc2\x85line", /* U+0085, a C1 control */
	    "bad utf-8 \xff",
	    "overlong \xc0\xaf",
	    "surrogate \xed\xa0\x80",
	};

	for (size_t i = 0; i < sizeof(bad_header_values) / sizeof(bad_header_values[0]); i++) {
		r = base_otp();
		r.custom = 1;
		r.content.subject = bad_header_values[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EINPUT, "subject %zu", i);
		r = base_otp();
		r.custom = 1;
		r.content.subject = "ok";
		r.content.sender_name = bad_header_values[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EINPUT, "sender_name %zu", i);
		r = base_otp();
		r.from_name = bad_header_values[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EINPUT, "from_name %zu", i);
		r = base_otp();
		r.app_name = bad_header_values[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EINPUT, "app_name %zu", i);
	}
	check(m == NULL);

	/* Line breaks are fine in body text, other controls are not. */
	r = base_otp();
	r.custom = 1;
	r.content.subject = "s";
	r.content.body_text = "line one\r\nline two\nline three";
	check(mail_compose(&r, &m, &n) == MAIL_OK);
	free(m);
	m = NULL;
	r.content.body_text = "bell\x07";
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);

	/* Addresses. */
	for (size_t i = 0; i < sizeof(invalid_addrs) / sizeof(invalid_addrs[0]); i++) {
		r = base_otp();
		r.to_addr = invalid_addrs[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EADDR, "to %zu", i);
		r = base_otp();
		r.from_addr = invalid_addrs[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EADDR, "from %zu", i);
	}
	r = base_otp();
	r.to_addr = NULL;
	check(mail_compose(&r, &m, &n) == MAIL_EADDR);

	/* Custom content needs a subject; colours are checked; the secret must be present. */
	r = base_otp();
	r.custom = 1;
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	for (size_t i = 0; i < sizeof(invalid_colors) / sizeof(invalid_colors[0]); i++) {
		r = base_otp();
		r.content.primary_color = invalid_colors[i];
		check_msg(mail_compose(&r, &m, &n) == MAIL_EINPUT, "colour %zu", i);
	}
	r = base_otp();
	r.code = NULL;
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	r = base_link();
	r.url = NULL;
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	r = base_link();
	r.url = "https://x.example/\r\nBcc: a@b";
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	check(m == NULL);
}

/* Every text field carries markup; the HTML part must show it escaped, the text part raw. */
static void test_escaping(void)
{
	static const char *const tags[] = {"SUBJ", "HEAD", "BODY", "LINK", "INFO", "FOOT"};
	char vals[6][64], want[80];
	struct mail_request r = base_link();
	struct parsed p;
	char *from;

	for (int i = 0; i < 6; i++)
		snprintf(vals[i], sizeof(vals[i]), "%s<script>\"&'x", tags[i]);
	r.custom = 1;
	r.content.subject = vals[0];
	r.content.header_text = vals[1];
	r.content.body_text = vals[2];
	r.content.link_text = vals[3];
	r.content.info_text = vals[4];
	r.content.footer_text = vals[5];
	r.content.sender_name = "Name<script>\"&'x";
	r.content.primary_color = "#12ab34";
	r.url = "https://login.example.com/open?t=a&u=\"><script>";
	r.content.base64logo = "R0lGODlhAQABAAAAACw="; /* "GIF89a" + a few bytes */
	r.app_name = "App<script>\"&'x";

	check(compose_parse(&r, &p) == MAIL_OK);
	check(strstr(p.html, "<script") == NULL);
	for (int i = 0; i < 6; i++) {
		snprintf(want, sizeof(want), "%s&lt;script&gt;&quot;&amp;&#39;x", tags[i]);
		check_msg(strstr(p.html, want) != NULL, "escaped %s", tags[i]);
		if (i > 0) /* the subject is a header, not part of the text body */
			check_msg(strstr(p.text, vals[i]) != NULL, "raw in text %s", tags[i]);
	}
	check(strstr(p.html, "alt=\"App&lt;script&gt;&quot;&amp;&#39;x\"") != NULL);
	check(count_str(p.html, "href=\"https://login.example.com/open?t=a&amp;u=&quot;&gt;"
				"&lt;script&gt;\"") == 2);
	check(strstr(p.text, r.url) != NULL);
	check(strstr(p.html, "#12ab34") != NULL);
	check(strstr(p.html, "#6981FF") == NULL);
	from = header_value(p.headers, "From");
	check(from && strcmp(from, "\"Name<script>\\\"&'x\" <noreply@example.com>") == 0);
	free(from);
	{
		char *s = header_value(p.headers, "Subject");
		check(s && strcmp(s, vals[0]) == 0);
		free(s);
	}
	parsed_free(&p);

	/* Custom mode: absent texts are empty, the code still shows, the default footer applies. */
	r = base_otp();
	r.custom = 1;
	r.content.subject = "Only a subject";
	check(compose_parse(&r, &p) == MAIL_OK);
	check(strstr(p.html, ">012345<") != NULL);
	check(strstr(p.text, "012345") != NULL);
	check(strstr(p.text, "expires") == NULL);
	check(strstr(p.text, "If you didn't request this email") != NULL);
	check(strstr(p.html, "#6981FF") != NULL);
	parsed_free(&p);
	/* ... and in custom mode the code box follows the body text. */
	r.content.body_text = "BODYTEXT";
	check(compose_parse(&r, &p) == MAIL_OK);
	check(strstr(p.html, "BODYTEXT") && strstr(p.html, "BODYTEXT") < strstr(p.html, "012345"));
	parsed_free(&p);
}

static void test_rfc2047(void)
{
	struct mail_request r = base_otp();
	struct parsed p;
	char *v, *d, longs[2048], word[1000];

	r.custom = 1;
	r.content.subject = "Gr\xc3\xbc\xc3\x9f"
			    "e \xe2\x9c\x93";
	r.content.sender_name = "J\xc3\xb6rg's Team \xe2\x9c\x93";
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "Subject");
	check(v && strncmp(v, "=?UTF-8?B?", 10) == 0);
	d = v ? decode_2047(v) : NULL;
	check(d && strcmp(d, r.content.subject) == 0);
	free(v);
	free(d);
	v = header_value(p.headers, "From");
	check(v && strncmp(v, "=?UTF-8?B?", 10) == 0);
	check(v && strstr(v, " <noreply@example.com>") != NULL);
	if (v)
		*strstr(v, " <noreply@example.com>") = '\0';
	d = v ? decode_2047(v) : NULL;
	check(d && strcmp(d, r.content.sender_name) == 0);
	free(v);
	free(d);
	/* The HTML title shows the UTF-8 subject as is. */
	check(strstr(p.html, "<title>Gr\xc3\xbc\xc3\x9f"
			     "e \xe2\x9c\x93</title>") != NULL);
	parsed_free(&p);

	/* A long non-ASCII subject: folded into several words, none splitting a character. */
	longs[0] = '\0';
	for (int i = 0; i < 60; i++)
		strcat(longs, i % 3 ? "\xc3\xbc" : "\xe2\x9c\x93 ");
	r.content.subject = longs;
	check(compose_parse(&r, &p) == MAIL_OK);
	check(count_str(p.headers, "=?UTF-8?B?") > 2);
	v = header_value(p.headers, "Subject");
	d = v ? decode_2047(v) : NULL;
	check(d && strcmp(d, longs) == 0);
	free(v);
	free(d);
	parsed_free(&p);

	/* A long ASCII subject is folded at spaces and unfolds to the original. */
	longs[0] = '\0';
	for (int i = 0; i < 40; i++)
		strcat(longs, "word ");
	strcat(longs, "end");
	r.content.subject = longs;
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "Subject");
	check(v && strcmp(v, longs) == 0);
	{
		/* it was folded: the line after "Subject:" is a continuation line */
		const char *sl = strstr(p.headers, "\r\nSubject:");
		const char *el = sl ? strstr(sl + 2, "\r\n") : NULL;
		check(el != NULL && el[2] == ' ');
	}
	free(v);
	parsed_free(&p);

	/* One 950-character word cannot be folded: it goes out as encoded-words. */
	memset(word, 'x', 950);
	word[950] = '\0';
	r.content.subject = word;
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "Subject");
	d = v ? decode_2047(v) : NULL;
	check(d && strcmp(d, word) == 0);
	free(v);
	free(d);
	parsed_free(&p);

	/* Text that looks like an encoded-word is encoded so readers do not decode it. */
	r.content.subject = "=?UTF-8?B?SGk=?=";
	check(compose_parse(&r, &p) == MAIL_OK);
	v = header_value(p.headers, "Subject");
	d = v ? decode_2047(v) : NULL;
	check(d && strcmp(d, "=?UTF-8?B?SGk=?=") == 0);
	free(v);
	free(d);
	parsed_free(&p);
}

static void test_logo(void)
{
	static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
	unsigned char img[15001];
	struct mail_request r = base_otp();
	struct parsed p;
	char *b64, *ct, *cid, *m = NULL, want[160];
	size_t n;

	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (unsigned char)(i * 7 + 3);
	memcpy(img, png_magic, 8);

	b64 = b64_encode(img, 300);
	r.content.base64logo = b64;
	check(compose_parse(&r, &p) == MAIL_OK);
	check(p.nrel == 2);
	if (p.nrel == 2) {
		ct = header_value(p.rel[1].headers, "Content-Type");
		check(ct && strcmp(ct, "image/png") == 0);
		free(ct);
		ct = header_value(p.rel[1].headers, "Content-Disposition");
		check(ct && strncmp(ct, "inline", 6) == 0);
		free(ct);
		cid = header_value(p.rel[1].headers, "Content-ID");
		check(cid && cid[0] == '<' && cid[strlen(cid) - 1] == '>');
		if (cid) {
			cid[strlen(cid) - 1] = '\0';
			snprintf(want, sizeof(want), "src=\"cid:%s\"", cid + 1);
			check(strstr(p.html, want) != NULL);
		}
		free(cid);
		check(p.rel[1].body_len == 300 && memcmp(p.rel[1].body, img, 300) == 0);
	}
	parsed_free(&p);
	free(b64);

	/* JPEG and GIF magic give their types. */
	{
		static const unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5};
		static const unsigned char gif[] = "GIF87a\x01\x00\x01\x00";
		b64 = b64_encode(jpg, sizeof(jpg));
		r.content.base64logo = b64;
		check(compose_parse(&r, &p) == MAIL_OK);
		ct = p.nrel == 2 ? header_value(p.rel[1].headers, "Content-Type") : NULL;
		check(ct && strcmp(ct, "image/jpeg") == 0);
		free(ct);
		parsed_free(&p);
		free(b64);
		b64 = b64_encode(gif, sizeof(gif) - 1);
		r.content.base64logo = b64;
		check(compose_parse(&r, &p) == MAIL_OK);
		ct = p.nrel == 2 ? header_value(p.rel[1].headers, "Content-Type") : NULL;
		check(ct && strcmp(ct, "image/gif") == 0);
		free(ct);
		parsed_free(&p);
		free(b64);
	}

	/* Wrong magic, broken base64, too long. */
	b64 = b64_encode("<svg onload=alert(1)>", 21);
	r.content.base64logo = b64;
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	free(b64);
	r.content.base64logo = "iVBORw0KGgo*";
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	r.content.base64logo = "iVBORw0K\r\nGgo=";
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	b64 = b64_encode(img, 15000); /* exactly 20000 characters: accepted */
	check(strlen(b64) == 20000);
	r.content.base64logo = b64;
	check(mail_compose(&r, &m, &n) == MAIL_OK);
	free(m);
	m = NULL;
	free(b64);
	b64 = b64_encode(img, 15001); /* 20004 characters */
	r.content.base64logo = b64;
	check(mail_compose(&r, &m, &n) == MAIL_EINPUT);
	free(b64);
	check(m == NULL);
}

/* ---- Maildir ---- */

static int count_files(const char *dir, char *name, size_t namelen)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (name)
			snprintf(name, namelen, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static void test_maildir(void)
{
	char root[] = "/tmp/otlogin-test-mail-XXXXXX", md[128], path[512], name[256];
	struct mail_conf mc;
	struct mail_request r = base_otp();
	struct stat st;
	char *msg = NULL, *buf;
	size_t len = 0;
	FILE *f;

	memset(&mc, 0, sizeof(mc));
	check(mail_backend_for(&mc) == &mail_maildir_backend);
	mc.smtp_host = "";
	check(mail_backend_for(&mc) == &mail_maildir_backend);
	mc.smtp_host = "relay.example.com";
	check(mail_backend_for(&mc) == &mail_smtp_backend);
	check(strcmp(mail_smtp_backend.name, "smtp") == 0);
	check(strcmp(mail_maildir_backend.name, "maildir") == 0);
	mc.smtp_host = NULL;

	check(mkdtemp(root) != NULL);
	snprintf(md, sizeof(md), "%s/a/b/Maildir", root); /* parents created too */
	mc.maildir = md;
	check(mail_compose(&r, &msg, &len) == MAIL_OK);

	/* The addresses are checked again before any backend runs. */
	check(mail_send(&mc, r.from_addr, "a@b.c\r\nRCPT TO:<x@y>", msg, len) == MAIL_EADDR);
	check(mail_send(&mc, "bad", r.to_addr, msg, len) == MAIL_EADDR);
	check(stat(md, &st) < 0);

	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_OK);
	snprintf(path, sizeof(path), "%s/new", md);
	check(count_files(path, name, sizeof(name)) == 1);
	snprintf(path, sizeof(path), "%s/tmp", md);
	check(count_files(path, NULL, 0) == 0);
	snprintf(path, sizeof(path), "%s/cur", md);
	check(count_files(path, NULL, 0) == 0);
	check(stat(md, &st) == 0 && (st.st_mode & 0777) == 0700);
	check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);

	snprintf(path, sizeof(path), "%s/new/%s", md, name);
	check(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600);
	check((size_t)st.st_size == len);
	check(strchr(name, '/') == NULL && strchr(name, ':') == NULL);
	buf = malloc(len + 1);
	f = fopen(path, "rb");
	check(f != NULL);
	if (f) {
		check(fread(buf, 1, len + 1, f) == len);
		check(memcmp(buf, msg, len) == 0);
		fclose(f);
	}
	free(buf);
	unlink(path);

	/* Two deliveries, two distinct files. */
	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_OK);
	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_OK);
	snprintf(path, sizeof(path), "%s/new", md);
	check(count_files(path, NULL, 0) == 2);

	/* A maildir that cannot be created (below a regular file) fails cleanly. */
	snprintf(path, sizeof(path), "%s/file", root);
	f = fopen(path, "w");
	if (f)
		fclose(f);
	snprintf(md, sizeof(md), "%s/file/Maildir", root);
	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_EDELIVER);
	mc.maildir = NULL;
	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_EDELIVER);

	/* The SMTP backend refuses a host libesmtp would misparse, without connecting. */
	mc.smtp_host = "::1";
	check(mail_send(&mc, r.from_addr, r.to_addr, msg, len) == MAIL_EDELIVER);

	free(msg);
	fixture_remove(root);
}

int main(void)
{
	log_init("test_mail", LOG_LEVEL_ERR);
	check(crypto_init() == 0);
	test_validation();
	test_structure();
	test_rejections();
	test_escaping();
	test_rfc2047();
	test_logo();
	test_maildir();
	return check_done();
}
