/*
 * b64url: base64url without padding (RFC 4648 section 5), as JWS (RFC 7515) uses it, and
 * standard base64 with padding (section 4), as Basic auth, email logos and MIME use it.
 */
#ifndef OTLOGIN_B64URL_H
#define OTLOGIN_B64URL_H

#include <stddef.h>

/* A new NUL-terminated base64url string (no '=' padding) of len bytes; caller frees. NULL on OOM.
 */
char *b64url_encode(const void *data, size_t len);

/*
 * Strictly decode inlen characters of base64url: no padding, no whitespace, only [A-Za-z0-9_-],
 * length mod 4 != 1, unused trailing bits zero (canonical). On success returns 0 and sets *out
 * to a new buffer (caller frees; one extra NUL byte appended, not counted) and *outlen.
 * Returns -1 on bad input (out untouched).
 */
int b64url_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen);

/*
 * Standard base64 (RFC 4648 section 4, with padding) decode, tolerant of no whitespace.
 * Same contract as b64url_decode. Used for email logos sent as base64.
 */
int b64_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen);

/* Standard base64 with padding, one line: a new NUL-terminated string (caller frees), or NULL. */
char *b64_encode(const void *data, size_t len);

/* Standard base64 with padding, folded into lines of at most 76 chars joined by CRLF (MIME). */
char *b64_encode_mime(const void *data, size_t len);

#endif
