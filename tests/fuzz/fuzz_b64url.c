/*
 * base64url (JWS segments, tokens) and standard base64 (Basic credentials, mail logos).
 *
 * Decoding is strict so that every byte string has exactly one accepted encoding (tokens
 * cannot be varied without changing what they decode to): whatever the decoder accepts must
 * re-encode to the very same text. The input is also used as data: its encodings must decode
 * back to it, and the MIME encoding must keep lines of at most 76 characters.
 */
#include <string.h>

#include "b64url.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

/* The MIME form is the one-line form (std) broken into lines of 76 characters. */
static void check_mime_lines(const char *mime, const char *std, size_t size)
{
	size_t col = 0, chars = 0;

	for (const char *p = mime; *p; p++) {
		if (*p == '\r') {
			/* CRLF between lines only: never a bare CR, never a trailing break. */
			FUZZ_ASSERT(p[1] == '\n' && p[2] != '\0' && col == 76);
			col = 0;
			p++;
			continue;
		}
		FUZZ_ASSERT(*p != '\n' && *p == std[chars]);
		col++;
		chars++;
		FUZZ_ASSERT(col <= 76);
	}
	FUZZ_ASSERT(chars == (size + 2) / 3 * 4 && chars == strlen(std));
}

static void encode_decode(const uint8_t *data, size_t size)
{
	unsigned char *out = NULL;
	size_t outlen = 0;
	char *enc, *mime;

	enc = b64url_encode(data, size);
	FUZZ_ASSERT(enc != NULL);
	FUZZ_ASSERT(
	    strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
	    strlen(enc));
	FUZZ_ASSERT(b64url_decode(enc, strlen(enc), &out, &outlen) == 0);
	FUZZ_ASSERT(outlen == size && memcmp(out, data, size) == 0 && out[outlen] == '\0');
	free(out);
	free(enc);

	enc = b64_encode(data, size);
	FUZZ_ASSERT(enc != NULL);
	mime = b64_encode_mime(data, size);
	FUZZ_ASSERT(mime != NULL);
	check_mime_lines(mime, enc, size);
	free(mime);
	FUZZ_ASSERT(b64_decode(enc, strlen(enc), &out, &outlen) == 0);
	FUZZ_ASSERT(outlen == size && memcmp(out, data, size) == 0 && out[outlen] == '\0');
	free(out);
	free(enc);
}

static void decode_encode(const uint8_t *data, size_t size)
{
	/* An exact-size copy without terminator: the decoders take a length, not a string. */
	char *in = malloc(size ? size : 1);
	unsigned char *out = NULL;
	size_t outlen = 0;

	FUZZ_ASSERT(in != NULL);
	memcpy(in, data, size);
	if (b64url_decode(in, size, &out, &outlen) == 0) {
		char *again = b64url_encode(out, outlen);
		FUZZ_ASSERT(again != NULL && strlen(again) == size && memcmp(again, in, size) == 0);
		FUZZ_ASSERT(out[outlen] == '\0');
		free(again);
		free(out);
	}
	out = NULL;
	if (b64_decode(in, size, &out, &outlen) == 0) {
		char *again = b64_encode(out, outlen);
		FUZZ_ASSERT(again != NULL && strlen(again) == size && memcmp(again, in, size) == 0);
		FUZZ_ASSERT(out[outlen] == '\0');
		free(again);
		free(out);
	}
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_encode(data, size);
	encode_decode(data, size);
	return 0;
}
