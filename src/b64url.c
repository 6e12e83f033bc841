#include "b64url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char alpha_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char alpha_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Encode len bytes with the given alphabet into out, which has room for the result; pad with
 * '=' to a multiple of four when pad is set. Returns the number of characters written (no NUL).
 */
static size_t encode_into(const unsigned char *in, size_t len, const char *alpha, int pad,
			  char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		if (pad)
			out[o++] = '=';
	}
	return o;
}

/* A new NUL-terminated string of len bytes in the alphabet, padded when pad is set. */
static char *encode(const void *data, size_t len, const char *alpha, int pad)
{
	size_t outlen;
	char *out;

	/* Guard the size computation against overflow before allocating. */
	if (len > (SIZE_MAX - 4) / 4 * 3)
		return NULL;
	if (pad)
		outlen = (len + 2) / 3 * 4;
	else
		outlen = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
	if ((out = malloc(outlen + 1)) == NULL)
		return NULL;
	encode_into(data, len, alpha, pad, out);
	out[outlen] = '\0';
	return out;
}

char *b64url_encode(const void *data, size_t len)
{
	return encode(data, len, alpha_url, 0);
}

char *b64_encode(const void *data, size_t len)
{
	return encode(data, len, alpha_std, 1);
}

/* The 6-bit value of c in the alphabet (url selects base64url), or -1 when c is not in it. */
static int sextet(unsigned char c, int url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

/*
 * Strictly decode inlen characters that carry no padding. Rejects characters outside the
 * alphabet, a length of 1 mod 4 (no whole byte) and non-zero unused bits in the last character,
 * so each byte string has exactly one accepted encoding: tokens cannot be varied without
 * changing what they decode to.
 */
static int decode_unpadded(const char *in, size_t inlen, int url, unsigned char **out,
			   size_t *outlen)
{
	size_t i, o = 0, n;
	unsigned char *buf;
	uint32_t acc = 0;
	int bits = 0;

	if (in == NULL || inlen % 4 == 1)
		return -1;
	n = inlen / 4 * 3 + (inlen % 4 ? inlen % 4 - 1 : 0);
	if ((buf = malloc(n + 1)) == NULL)
		return -1;
	for (i = 0; i < inlen; i++) {
		int v = sextet((unsigned char)in[i], url);
		if (v < 0)
			goto bad;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits (2 or 4) must be zero in a canonical encoding. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		goto bad;
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
bad:
	/* The buffer may hold part of a secret. */
	memset(buf, 0, n + 1);
	free(buf);
	return -1;
}

int b64url_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
	return decode_unpadded(in, inlen, 1, out, outlen);
}

int b64_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
	size_t npad = 0;

	/* Padding is mandatory: a whole number of quads, with at most two '=' at the very end. */
	if (in == NULL || inlen % 4 != 0)
		return -1;
	while (npad < 2 && npad < inlen && in[inlen - 1 - npad] == '=')
		npad++;
	return decode_unpadded(in, inlen - npad, 0, out, outlen);
}

char *b64_encode_mime(const void *data, size_t len)
{
	/* 57 input bytes make one full line of 76 characters. */
	const unsigned char *in = data;
	size_t nlines, enclen, total, i, o = 0;
	char *out;

	if (len > (SIZE_MAX - 4) / 4 * 3 / 2)
		return NULL;
	enclen = (len + 2) / 3 * 4;
	nlines = (len + 56) / 57;
	total = enclen + (nlines ? (nlines - 1) * 2 : 0);
	if ((out = malloc(total + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i += 57) {
		size_t chunk = len - i < 57 ? len - i : 57;
		if (i > 0) {
			out[o++] = '\r';
			out[o++] = '\n';
		}
		o += encode_into(in + i, chunk, alpha_std, 1, out + o);
	}
	out[o] = '\0';
	return out;
}
