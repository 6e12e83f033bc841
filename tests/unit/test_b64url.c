/* Unit tests for b64url: base64url round trips, strict rejection, standard base64 and MIME. */
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "check.h"
#include "crypto.h"

/* 1 when in decodes (with the given decoder) to exactly the len bytes at want. */
static int decodes_to(int (*dec)(const char *, size_t, unsigned char **, size_t *), const char *in,
		      const void *want, size_t len)
{
	unsigned char *out = NULL;
	size_t outlen = 0;
	int ok;

	if (dec(in, strlen(in), &out, &outlen) != 0)
		return 0;
	ok = outlen == len && memcmp(out, want, len) == 0 && out[outlen] == '\0';
	free(out);
	return ok;
}

/* 1 when dec rejects in and leaves the out-pointer untouched. */
static int rejects(int (*dec)(const char *, size_t, unsigned char **, size_t *), const char *in)
{
	unsigned char *out = (unsigned char *)"untouched";
	unsigned char *orig = out;
	size_t outlen = 12345;

	return dec(in, strlen(in), &out, &outlen) == -1 && out == orig && outlen == 12345;
}

/* RFC 4648 section 10 vectors: encoding of the prefixes of "foobar". */
static void test_rfc4648(void)
{
	static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	static const char *const std[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

	for (size_t n = 0; n <= 6; n++) {
		char *e = b64url_encode("foobar", n);
		check_msg(e != NULL && strcmp(e, url[n]) == 0, "n=%zu got %s", n, e ? e : "NULL");
		free(e);
		e = b64_encode("foobar", n);
		check_msg(e != NULL && strcmp(e, std[n]) == 0, "n=%zu got %s", n, e ? e : "NULL");
		free(e);
		check(decodes_to(b64url_decode, url[n], "foobar", n));
		check(decodes_to(b64_decode, std[n], "foobar", n));
	}
}

/* The two characters that differ from standard base64, and random round trips of all lengths. */
static void test_roundtrip(void)
{
	static const unsigned char hi[] = {0xfb, 0xff, 0xbf};
	unsigned char buf[300];
	int all_ok = 1;
	char *e;

	e = b64url_encode(hi, sizeof(hi));
	check(e != NULL && strcmp(e, "-_-_") == 0);
	free(e);
	check(decodes_to(b64url_decode, "-_-_", hi, sizeof(hi)));
	check(decodes_to(b64_decode, "+/+/", hi, sizeof(hi)));
	e = b64_encode(hi, sizeof(hi));
	check(e != NULL && strcmp(e, "+/+/") == 0);
	free(e);

	for (size_t len = 0; len < sizeof(buf); len++) {
		crypto_random(buf, len);
		e = b64url_encode(buf, len);
		if (e == NULL || strchr(e, '=') || strchr(e, '+') || strchr(e, '/') ||
		    !decodes_to(b64url_decode, e, buf, len))
			all_ok = 0;
		free(e);
		/* Standard base64: padded, on one line however long, and MIME's lines joined. */
		e = b64_encode(buf, len);
		if (e == NULL || strlen(e) != (len + 2) / 3 * 4 || strchr(e, '\r') ||
		    !decodes_to(b64_decode, e, buf, len))
			all_ok = 0;
		free(e);
	}
	check_msg(all_ok, "random round trips of 0..299 bytes");
}

static void test_strict(void)
{
	/* Padding is not part of base64url as JWS uses it. */
	check(rejects(b64url_decode, "Zg=="));
	check(rejects(b64url_decode, "Zm8="));
	check(rejects(b64url_decode, "Zg="));
	/* Characters outside the url alphabet, whitespace, standard alphabet. */
	check(rejects(b64url_decode, "Zm9v+g"));
	check(rejects(b64url_decode, "Zm9v/g"));
	check(rejects(b64url_decode, "Zm9v Yg"));
	check(rejects(b64url_decode, "Zm9v\nYg"));
	check(rejects(b64url_decode, "Zm9v.Yg"));
	check(rejects(b64url_decode, "Zm9v\x80g"));
	/* An embedded NUL counts as a bad character when the length includes it. */
	{
		unsigned char *out = NULL;
		size_t outlen;
		check(b64url_decode("Zm\0v", 4, &out, &outlen) == -1 && out == NULL);
	}
	/* Length 1 mod 4 carries no whole byte. */
	check(rejects(b64url_decode, "Z"));
	check(rejects(b64url_decode, "Zm9vY"));
	/* Non-canonical: the unused low bits of the last character must be zero. */
	check(rejects(b64url_decode, "Zh"));  /* "Zg" with bit set */
	check(rejects(b64url_decode, "Zm9")); /* "Zm8" with bit set */
	check(rejects(b64url_decode, "Zm-"));
	check(rejects(b64url_decode, "AB"));
	check(decodes_to(b64url_decode, "AA", "\0", 1));
	check(decodes_to(b64url_decode, "AAA", "\0\0", 2));
	/* NULL input. */
	{
		unsigned char *out = NULL;
		size_t outlen;
		check(b64url_decode(NULL, 0, &out, &outlen) == -1);
	}
	/* The length argument bounds the input, the string need not end there. */
	check(decodes_to(b64url_decode, "Zm9v", "foo", 3));
	{
		unsigned char *out = NULL;
		size_t outlen = 0;
		check(b64url_decode("Zm9v.rest", 4, &out, &outlen) == 0 && outlen == 3 &&
		      memcmp(out, "foo", 3) == 0);
		free(out);
	}

	/* Standard base64: padding required and only at the end, no whitespace, canonical. */
	check(rejects(b64_decode, "Zg"));
	check(rejects(b64_decode, "Zg="));
	check(rejects(b64_decode, "Zg==="));
	check(rejects(b64_decode, "Z==="));
	check(rejects(b64_decode, "===="));
	check(rejects(b64_decode, "Zg==Zg=="));
	check(rejects(b64_decode, "Zh=="));
	check(rejects(b64_decode, "Zm9=")); /* non-canonical */
	check(rejects(b64_decode, "Zm9v\r\nYmFy"));
	check(rejects(b64_decode, "Zm9v YmFy"));
	check(rejects(b64_decode, "Zm9v-_-_"));
	check(rejects(b64_decode, "Zm=v"));
	check(decodes_to(b64_decode, "", "", 0));
}

/* MIME folding: lines of at most 76 characters, joined (not terminated) by CRLF. */
static void test_mime(void)
{
	unsigned char buf[1000];
	int all_ok = 1;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		char *m = b64_encode_mime(buf, len), *joined, *line, *save;
		size_t nlines = 0, j = 0;
		int ok = m != NULL;

		if (!ok) {
			all_ok = 0;
			continue;
		}
		joined = calloc(1, strlen(m) + 1);
		/* Every CR is followed by LF and every LF preceded by CR. */
		for (size_t k = 0; m[k]; k++) {
			if (m[k] == '\r' && m[k + 1] != '\n')
				ok = 0;
			if (m[k] == '\n' && (k == 0 || m[k - 1] != '\r'))
				ok = 0;
		}
		if (len > 0 && (m[strlen(m) - 1] == '\n'))
			ok = 0;
		for (line = strtok_r(m, "\r\n", &save); line;
		     line = strtok_r(NULL, "\r\n", &save)) {
			size_t ll = strlen(line);
			nlines++;
			if (ll > 76 || ll % 4 != 0)
				ok = 0;
			memcpy(joined + j, line, ll);
			j += ll;
		}
		if (nlines != (len + 56) / 57)
			ok = 0;
		if (!decodes_to(b64_decode, joined, buf, len))
			ok = 0;
		if (!ok) {
			all_ok = 0;
			printf("# MIME failure at len %zu\n", len);
		}
		free(joined);
		free(m);
	}
	check_msg(all_ok, "MIME encoding of 0..1000 bytes");

	{
		char *m = b64_encode_mime("foobar", 6);
		check(m != NULL && strcmp(m, "Zm9vYmFy") == 0);
		free(m);
		/* 57 bytes fill exactly one line: no CRLF. 58 bytes spill into a second line. */
		m = b64_encode_mime(buf, 57);
		check(m != NULL && strlen(m) == 76 && strchr(m, '\r') == NULL);
		free(m);
		m = b64_encode_mime(buf, 58);
		check(m != NULL && strlen(m) == 76 + 2 + 4 && memcmp(m + 76, "\r\n", 2) == 0);
		free(m);
	}
}

int main(void)
{
	if (crypto_init() != 0) {
		printf("Bail out! crypto_init\n");
		return 1;
	}
	test_rfc4648();
	test_roundtrip();
	test_strict();
	test_mime();
	return check_done();
}
