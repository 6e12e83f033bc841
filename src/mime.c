/*
 * mime: see mime.h. Everything that reaches libesmtp or a mail client is written here:
 * libesmtp checks no header for CR/LF, so callers refuse header values with control
 * characters (mime_header_text_ok) and this module never writes a bare CR or LF.
 */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "crypto.h"

#define HDR_SOFT 78 /* RFC 5322 2.1.1: lines SHOULD be at most 78 characters */

/* ---- characters and text ---- */

int mime_is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

int mime_printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E)
			return 0;
	return 1;
}

/* Length of the well-formed UTF-8 sequence at s (no overlongs, surrogates or > U+10FFFF), 0 if bad.
 */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* Well-formed UTF-8 without controls; with multiline, CR, LF and TAB are allowed. */
static int text_ok(const char *s, int multiline)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = utf8_len(p);
		if (n == 0)
			return 0;
		if (n == 1 && (*p < 0x20 || *p == 0x7F)) {
			if (!multiline || (*p != '\n' && *p != '\r' && *p != '\t'))
				return 0;
		}
		if (n == 2 && p[0] == 0xC2 && p[1] < 0xA0) /* U+0080..U+009F */
			return 0;
		p += n;
	}
	return 1;
}

int mime_header_text_ok(const char *s)
{
	return text_ok(s, 0);
}

int mime_body_text_ok(const char *s)
{
	return text_ok(s, 1);
}

void mime_unique(char out[MIME_UNIQUE_SIZE])
{
	unsigned char r[(MIME_UNIQUE_SIZE - 1) / 2];

	crypto_random(r, sizeof(r));
	crypto_hex(r, sizeof(r), out);
}

/* ---- header fields ---- */

/*
 * Append s as RFC 2047 "B" encoded-words, each preceded by a space (which doubles as the
 * folding point), never splitting a UTF-8 sequence, each word at most 75 characters and each
 * line at most 78. *col is the current column and is updated.
 */
static void put_encoded_words(struct sbuf *b, size_t *col, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);
	static const size_t overhead = 12; /* "=?UTF-8?B?" + "?=" */

	while (left > 0) {
		size_t room, maxbytes, take = 0;
		char *word;

		room = *col + 1 + overhead < HDR_SOFT ? HDR_SOFT - *col - 1 - overhead : 0;
		maxbytes = room / 4 * 3;
		if (maxbytes > 45) /* 60 base64 characters keep the word within 75 */
			maxbytes = 45;
		if (maxbytes < 4) { /* not even one character fits: fold first */
			sbuf_add(b, "\r\n", 2);
			*col = 0;
			continue;
		}
		while (take < left) {
			size_t n = utf8_len(p + take);
			if (n == 0)
				n = 1; /* callers validated UTF-8; be safe anyway */
			if (take + n > maxbytes)
				break;
			take += n;
		}
		if (take == 0) { /* a 4-byte sequence that does not fit on this line */
			sbuf_add(b, "\r\n", 2);
			*col = 0;
			continue;
		}
		if ((word = b64_encode(p, take)) == NULL) {
			b->oom = 1;
			return;
		}
		sbuf_puts(b, " =?UTF-8?B?");
		sbuf_puts(b, word);
		sbuf_puts(b, "?=");
		free(word);
		*col += 1 + overhead + (take + 2) / 3 * 4;
		p += take;
		left -= take;
	}
}

/*
 * Longest piece of s that put_folded_ascii cannot fold: it folds only before a run of spaces
 * that a word follows, so a piece is such a run with its word, and trailing spaces belong to
 * the last word (folding before them would leave a blank continuation line).
 */
static size_t longest_unfoldable(const char *s)
{
	size_t best = 0, cur = 0;
	for (const char *p = s; *p; p++) {
		if (*p == ' ' && p > s && p[-1] != ' ' && p[strspn(p, " ")] != '\0')
			cur = 0;
		cur++;
		if (cur > best)
			best = cur;
	}
	return best;
}

/*
 * Whether an unstructured ASCII value can be written as is: printable ASCII, nothing a reader
 * could take for an encoded-word, and no piece so long that folding could not keep lines well
 * under the 998-octet hard limit (990 spaces made a 992-octet Subject line).
 */
static int plain_header_ok(const char *s)
{
	return mime_printable_ascii(s) && strstr(s, "=?") == NULL && longest_unfoldable(s) <= 900;
}

/*
 * Append " " + s (printable ASCII) folding before a run of spaces when the line would pass 78
 * characters. Folding only before spaces followed by a word keeps every continuation line
 * non-blank, as RFC 5322 3.2.2 requires.
 */
static void put_folded_ascii(struct sbuf *b, size_t *col, const char *s)
{
	const char *p = s;
	int first = 1;

	sbuf_add(b, " ", 1);
	(*col)++;
	while (*p) {
		const char *q = p;
		size_t n;
		while (*q == ' ')
			q++;
		while (*q && *q != ' ')
			q++;
		n = (size_t)(q - p);
		if (!first && *col + n > HDR_SOFT && *p == ' ' && n > 0 && p[n - 1] != ' ') {
			sbuf_add(b, "\r\n", 2);
			*col = 0;
		}
		sbuf_add(b, p, n);
		*col += n;
		first = 0;
		p = q;
	}
}

void mime_put_unstructured(struct sbuf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 1;

	sbuf_puts(b, name);
	sbuf_add(b, ":", 1);
	if (value[0] == '\0')
		;
	else if (plain_header_ok(value))
		put_folded_ascii(b, &col, value);
	else
		put_encoded_words(b, &col, value);
	sbuf_add(b, "\r\n", 2);
}

static int is_phrase_safe(const char *s)
{
	/* atoms separated by single spaces need no quoting */
	if (s[0] == ' ' || s[strlen(s) - 1] == ' ' || strstr(s, "  ") != NULL)
		return 0;
	for (; *s; s++)
		if (*s != ' ' && !mime_is_atext((unsigned char)*s))
			return 0;
	return 1;
}

void mime_put_mailbox(struct sbuf *b, const char *name, const char *display, const char *addr)
{
	size_t col = strlen(name) + 1;

	sbuf_puts(b, name);
	sbuf_add(b, ":", 1);
	if (display != NULL && display[0] != '\0') {
		if (mime_printable_ascii(display) && strstr(display, "=?") == NULL &&
		    strlen(display) <= 200) {
			sbuf_add(b, " ", 1);
			col++;
			if (is_phrase_safe(display)) {
				sbuf_puts(b, display);
				col += strlen(display);
			} else {
				sbuf_add(b, "\"", 1);
				col++;
				for (const char *p = display; *p; p++) {
					if (*p == '"' || *p == '\\') {
						sbuf_add(b, "\\", 1);
						col++;
					}
					sbuf_add(b, p, 1);
					col++;
				}
				sbuf_add(b, "\"", 1);
				col++;
			}
		} else {
			put_encoded_words(b, &col, display);
		}
		if (col + 3 + strlen(addr) > HDR_SOFT) {
			sbuf_add(b, "\r\n", 2);
			col = 0;
		}
		sbuf_printf(b, " <%s>\r\n", addr);
	} else {
		sbuf_printf(b, " %s\r\n", addr);
	}
}

void mime_put_date(struct sbuf *b, time_t now)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;

	/* Our own names: strftime's %a/%b would follow the locale. */
	gmtime_r(&now, &tm);
	sbuf_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", wday[tm.tm_wday],
		    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		    tm.tm_sec);
}

void mime_put_message_id(struct sbuf *b, const char *domain)
{
	char id[MIME_UNIQUE_SIZE];

	mime_unique(id);
	sbuf_printf(b, "Message-ID: <%s@%s>\r\n", id, domain);
}

/* ---- bodies ---- */

/*
 * Whitespace before a line break is encoded so that transports cannot strip it, and a '.'
 * starting a line so that no line of the body can end an SMTP DATA or be eaten by a transport
 * without dot-stuffing.
 */
void mime_put_qp(struct sbuf *b, const char *text)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		char tok[3];
		size_t n;

		if (*p == '\n') {
			sbuf_add(b, "\r\n", 2);
			col = 0;
			continue;
		}
		if ((*p >= 33 && *p <= 126 && *p != '=' && !(*p == '.' && col == 0)) ||
		    ((*p == ' ' || *p == '\t') && p[1] != '\n' && p[1] != '\0')) {
			tok[0] = (char)*p;
			n = 1;
		} else {
			tok[0] = '=';
			tok[1] = hex[*p >> 4];
			tok[2] = hex[*p & 15];
			n = 3;
		}
		if (col + n > 75) {
			sbuf_add(b, "=\r\n", 3);
			col = 0;
			if (n == 1 && tok[0] == '.') { /* now at the start of a line */
				tok[0] = '=';
				tok[1] = '2';
				tok[2] = 'E';
				n = 3;
			}
		}
		sbuf_add(b, tok, n);
		col += n;
	}
	if (col > 0)
		sbuf_add(b, "\r\n", 2);
}

#define BOUNDARY_SIZE 48

/* A boundary: "=_" cannot occur in quoted-printable or base64 output, so no body line matches. */
static void new_boundary(char out[BOUNDARY_SIZE], const char *kind)
{
	char id[MIME_UNIQUE_SIZE];

	mime_unique(id);
	snprintf(out, BOUNDARY_SIZE, "=_%s_%s", kind, id);
}

static void put_text_part(struct sbuf *b, const char *boundary, const char *type, const char *text)
{
	sbuf_printf(b,
		    "--%s\r\nContent-Type: %s; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
		    boundary, type);
	mime_put_qp(b, text);
}

void mime_put_alternative(struct sbuf *b, const char *text, const char *html,
			  const struct mime_image *image)
{
	char alt[BOUNDARY_SIZE], rel[BOUNDARY_SIZE], *data;

	new_boundary(alt, "alt");
	if (image != NULL) {
		new_boundary(rel, "rel");
		sbuf_printf(b,
			    "Content-Type: multipart/related;\r\n"
			    " type=\"multipart/alternative\";\r\n boundary=\"%s\"\r\n\r\n"
			    "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n"
			    "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n",
			    rel, rel, alt);
	} else {
		sbuf_printf(b,
			    "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n"
			    "This is a multi-part message in MIME format.\r\n\r\n",
			    alt);
	}
	put_text_part(b, alt, "text/plain", text);
	put_text_part(b, alt, "text/html", html);
	sbuf_printf(b, "--%s--\r\n", alt);
	if (image == NULL)
		return;
	if ((data = b64_encode_mime(image->data, image->len)) == NULL) {
		b->oom = 1;
		return;
	}
	sbuf_printf(b,
		    "\r\n--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n"
		    "Content-ID: <%s>\r\nContent-Disposition: inline; filename=\"%s\"\r\n\r\n",
		    rel, image->type, image->cid, image->filename);
	sbuf_puts(b, data);
	sbuf_printf(b, "\r\n--%s--\r\n", rel);
	free(data);
}
