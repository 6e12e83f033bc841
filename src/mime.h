/*
 * mime: the Internet message format (RFC 5322) and MIME (RFC 2045-2047) as the login mails
 * use them: header fields folded to 78 columns, non-ASCII header text as RFC 2047
 * encoded-words, quoted-printable text bodies and a multipart/alternative body (inside
 * multipart/related with an inline image). The output is 7-bit clean with CRLF line ends, so
 * it needs no 8BITMIME. What the message says is the caller's (mail.c); how it is written is
 * this module's.
 */
#ifndef OTLOGIN_MIME_H
#define OTLOGIN_MIME_H

#include <stddef.h>
#include <time.h>

#include "sbuf.h"

/* 1 when c is an RFC 5322 atext character (letters, digits, !#$%&'*+-/=?^_`{|}~), else 0. */
int mime_is_atext(unsigned char c);

/* 1 when every character of s is printable ASCII (0x20..0x7E), else 0. */
int mime_printable_ascii(const char *s);

/*
 * 1 when s is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF)
 * without control characters (C0, DEL, C1), else 0. A header value takes no line break or tab:
 * it is refused, not cleaned, so an injection attempt fails loudly. Body text may hold CR, LF
 * and TAB.
 */
int mime_header_text_ok(const char *s);
int mime_body_text_ok(const char *s);

/* Size of a unique id: 32 random hex digits (128 bits) and a NUL. */
#define MIME_UNIQUE_SIZE 33

/* out = a new unique id: the random part of boundaries, Message-ID and Content-ID. */
void mime_unique(char out[MIME_UNIQUE_SIZE]);

/*
 * Append the header field "name: value" for an unstructured value (Subject): printable ASCII
 * as it is, folded before spaces, anything else as encoded-words. value passed
 * mime_header_text_ok.
 */
void mime_put_unstructured(struct sbuf *b, const char *name, const char *value);

/*
 * Append "name: display <addr>", or "name: addr" when display is NULL or empty. The display
 * name goes as atoms, a quoted-string or encoded-words, whichever fits; it passed
 * mime_header_text_ok, addr is a plain addr-spec.
 */
void mime_put_mailbox(struct sbuf *b, const char *name, const char *display, const char *addr);

/* Append the Date field for now, in UTC, with English names whatever the locale. */
void mime_put_date(struct sbuf *b, time_t now);

/* Append "Message-ID: <unique@domain>". */
void mime_put_message_id(struct sbuf *b, const char *domain);

/*
 * Append text (UTF-8, lines ending in "\n") as quoted-printable (RFC 2045 6.7) with CRLF line
 * ends: lines of at most 76 characters, '=' and non-ASCII encoded, whitespace before a line
 * break encoded, and no line that starts with a '.'.
 */
void mime_put_qp(struct sbuf *b, const char *text);

/* An image shown inline by the HTML part, which refers to it as "cid:" + cid. */
struct mime_image {
	const unsigned char *data;
	size_t len;
	const char *type;     /* "image/png" */
	const char *filename; /* offered to a reader that saves it */
	const char *cid;      /* Content-ID without the angle brackets */
};

/*
 * Append the Content-Type field and the body of a message of two alternatives, text/plain and
 * text/html (UTF-8, "\n" line ends, sent quoted-printable): multipart/alternative, or, with
 * image, multipart/related { multipart/alternative, image }. The fields before it (From, To,
 * MIME-Version, ...) are the caller's.
 */
void mime_put_alternative(struct sbuf *b, const char *text, const char *html,
			  const struct mime_image *image);

#endif
