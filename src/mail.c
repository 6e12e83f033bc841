/*
 * mail: address validation, message composition (RFC 5322 + MIME) and backend selection.
 *
 * Everything that reaches libesmtp or a mail client passes through here first: libesmtp writes
 * addresses verbatim into RCPT TO and checks no header for CR/LF, so addresses are held to a
 * strict addr-spec subset and every header value with a control character is refused rather
 * than cleaned. Non-ASCII header text is sent as RFC 2047 encoded-words, bodies as
 * quoted-printable, so the message is 7-bit clean and needs no 8BITMIME.
 */
#include "mail.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64url.h"
#include "crypto.h"
#include "log.h"

#define LOCAL_MAX 64
#define DOMAIN_MAX 253
#define ADDR_MAX 254
#define LABEL_MAX 63
#define LOGO_MAX 20000
#define HDR_SOFT 78 /* RFC 5322 2.1.1: lines SHOULD be at most 78 characters */
#define DEFAULT_COLOR "#6981FF"
#define DEFAULT_FOOTER "If you didn't request this email, you can safely ignore it."

/* ---- a growable buffer; an allocation failure sticks and is checked once at the end ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;
		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Only short, fixed-shape lines are formatted; anything longer is a bug, not input. */
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	sb_add(b, tmp, (size_t)n);
}

static void sb_free(struct sbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- addresses ---- */

static int is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/*
 * The accepted subset of RFC 5321/5322: local-part is a dot-atom of 1..64 octets (no quoted
 * strings), domain is 1..253 octets of LDH labels of 1..63 octets not starting or ending with
 * '-' (no address literals, no trailing dot, a single label such as "localhost" is fine), the
 * whole at most 254 octets. Everything else -- display names, angle brackets, spaces, controls,
 * CR/LF, non-ASCII (we do not offer SMTPUTF8) -- is refused.
 */
int mail_address_valid(const char *addr)
{
	const char *at, *p, *label;
	size_t total, local, domain;

	if (addr == NULL)
		return 0;
	total = strnlen(addr, ADDR_MAX + 1);
	if (total == 0 || total > ADDR_MAX)
		return 0;
	at = strchr(addr, '@');
	if (at == NULL || strchr(at + 1, '@') != NULL)
		return 0;
	local = (size_t)(at - addr);
	domain = total - local - 1;
	if (local < 1 || local > LOCAL_MAX || domain < 1 || domain > DOMAIN_MAX)
		return 0;

	/* dot-atom: atext runs separated by single dots */
	if (addr[0] == '.' || at[-1] == '.')
		return 0;
	for (p = addr; p < at; p++) {
		if (*p == '.') {
			if (p[1] == '.')
				return 0;
		} else if (!is_atext((unsigned char)*p)) {
			return 0;
		}
	}

	label = at + 1;
	for (p = at + 1;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t n = (size_t)(p - label);
			if (n < 1 || n > LABEL_MAX || label[0] == '-' || p[-1] == '-')
				return 0;
			if (*p == '\0')
				break;
			label = p + 1;
		} else if (!is_ldh((unsigned char)*p)) {
			return 0;
		}
	}
	return 1;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 1 when s is "#RRGGBB" with hex digits in either case, else 0 (NULL included). */
int mail_color_valid(const char *s)
{
	if (s == NULL || s[0] != '#' || strlen(s) != 7)
		return 0;
	for (int i = 1; i < 7; i++)
		if (hexval((unsigned char)s[i]) < 0)
			return 0;
	return 1;
}

/* ---- text checks ---- */

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

/*
 * 1 when s is well-formed UTF-8 without control characters (C0, DEL, C1). Line breaks and tabs
 * are allowed only in body text (multiline), never in a header value: a header is refused,
 * not cleaned, so an injection attempt fails loudly.
 */
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

static int is_ascii_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E)
			return 0;
	return 1;
}

/* ---- headers ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_small(struct sbuf *b, const unsigned char *in, size_t n)
{
	char out[4];
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[0] = b64chars[(v >> 18) & 63];
		out[1] = b64chars[(v >> 12) & 63];
		out[2] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		out[3] = i + 2 < n ? b64chars[v & 63] : '=';
		sb_add(b, out, 4);
	}
}

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

		room = *col + 1 + overhead < HDR_SOFT ? HDR_SOFT - *col - 1 - overhead : 0;
		maxbytes = room / 4 * 3;
		if (maxbytes > 45) /* 60 base64 characters keep the word within 75 */
			maxbytes = 45;
		if (maxbytes < 4) { /* not even one character fits: fold first */
			sb_add(b, "\r\n", 2);
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
			sb_add(b, "\r\n", 2);
			*col = 0;
			continue;
		}
		sb_puts(b, " =?UTF-8?B?");
		b64_small(b, p, take);
		sb_puts(b, "?=");
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
	return is_ascii_printable(s) && strstr(s, "=?") == NULL && longest_unfoldable(s) <= 900;
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

	sb_add(b, " ", 1);
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
			sb_add(b, "\r\n", 2);
			*col = 0;
		}
		sb_add(b, p, n);
		*col += n;
		first = 0;
		p = q;
	}
}

/* An unstructured header (Subject): plain when possible, encoded-words otherwise. */
static void put_unstructured(struct sbuf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 1;

	sb_puts(b, name);
	sb_add(b, ":", 1);
	if (value[0] == '\0')
		;
	else if (plain_header_ok(value))
		put_folded_ascii(b, &col, value);
	else
		put_encoded_words(b, &col, value);
	sb_add(b, "\r\n", 2);
}

static int is_phrase_safe(const char *s)
{
	/* atoms separated by single spaces need no quoting */
	if (s[0] == ' ' || s[strlen(s) - 1] == ' ' || strstr(s, "  ") != NULL)
		return 0;
	for (; *s; s++)
		if (*s != ' ' && !is_atext((unsigned char)*s))
			return 0;
	return 1;
}

/* "From: display-name <addr>" with the name as atoms, a quoted-string or encoded-words. */
static void put_mailbox(struct sbuf *b, const char *name, const char *display, const char *addr)
{
	size_t col = strlen(name) + 1;

	sb_puts(b, name);
	sb_add(b, ":", 1);
	if (display != NULL && display[0] != '\0') {
		if (is_ascii_printable(display) && strstr(display, "=?") == NULL &&
		    strlen(display) <= 200) {
			sb_add(b, " ", 1);
			col++;
			if (is_phrase_safe(display)) {
				sb_puts(b, display);
				col += strlen(display);
			} else {
				sb_add(b, "\"", 1);
				col++;
				for (const char *p = display; *p; p++) {
					if (*p == '"' || *p == '\\') {
						sb_add(b, "\\", 1);
						col++;
					}
					sb_add(b, p, 1);
					col++;
				}
				sb_add(b, "\"", 1);
				col++;
			}
		} else {
			put_encoded_words(b, &col, display);
		}
		if (col + 3 + strlen(addr) > HDR_SOFT) {
			sb_add(b, "\r\n", 2);
			col = 0;
		}
		sb_printf(b, " <%s>\r\n", addr);
	} else {
		sb_printf(b, " %s\r\n", addr);
	}
}

static void put_date(struct sbuf *b)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	/* Our own names: strftime's %a/%b would follow the locale. */
	gmtime_r(&now, &tm);
	sb_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", wday[tm.tm_wday],
		  tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void random_hex(char *out, size_t nbytes)
{
	unsigned char r[32];
	if (nbytes > sizeof(r))
		nbytes = sizeof(r);
	crypto_random(r, nbytes);
	crypto_hex(r, nbytes, out);
}

/* ---- bodies ---- */

/*
 * Quoted-printable (RFC 2045 6.7) of UTF-8 text whose line breaks are "\n": CRLF line ends,
 * lines at most 76 characters with soft breaks, '=' and non-ASCII encoded, whitespace before a
 * line break encoded so transports cannot strip it, and a '.' starting a line encoded so no
 * line of the body can end an SMTP DATA or be eaten by a transport without dot-stuffing.
 */
static void qp_encode(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char tok[3];
		size_t n;

		if (*p == '\n') {
			sb_add(b, "\r\n", 2);
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
			sb_add(b, "=\r\n", 3);
			col = 0;
			if (n == 1 && tok[0] == '.') { /* now at the start of a line */
				tok[0] = '=';
				tok[1] = '2';
				tok[2] = 'E';
				n = 3;
			}
		}
		sb_add(b, tok, n);
		col += n;
	}
	if (col > 0)
		sb_add(b, "\r\n", 2);
}

/* Append user text to a plain-text body, turning CRLF and lone CR into "\n". */
static void text_add(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\r') {
			if (s[1] == '\n')
				s++;
			sb_add(b, "\n", 1);
		} else {
			sb_add(b, s, 1);
		}
	}
}

/* Append s HTML-escaped (& < > " '); with br, line breaks become <br>. */
static void html_add(struct sbuf *b, const char *s, int br)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			sb_puts(b, "&amp;");
			break;
		case '<':
			sb_puts(b, "&lt;");
			break;
		case '>':
			sb_puts(b, "&gt;");
			break;
		case '"':
			sb_puts(b, "&quot;");
			break;
		case '\'':
			sb_puts(b, "&#39;");
			break;
		case '\r':
			if (s[1] == '\n')
				s++;
			/* fall through */
		case '\n':
			sb_puts(b, br ? "<br>\n" : " ");
			break;
		default:
			sb_add(b, s, 1);
		}
	}
}

/* The texts of one message after defaults and custom content are merged. */
struct texts {
	const char *subject, *header, *body, *link, *link_hint, *info, *footer, *color;
	char subject_buf[512], header_buf[512], body_buf[512], info_buf[128];
};

static void fill_texts(const struct mail_request *r, struct texts *t)
{
	const struct mail_content *c = &r->content;
	const char *app = r->app_name != NULL && r->app_name[0] ? r->app_name : NULL;
	const char *unit = r->minutes == 1 ? "minute" : "minutes";

	memset(t, 0, sizeof(*t));
	if (r->custom) {
		/* email_content given: what is absent is empty (API.md), except the two defaults.
		 */
		t->subject = c->subject;
		t->header = c->header_text ? c->header_text : "";
		t->body = c->body_text ? c->body_text : "";
		t->link = c->link_text ? c->link_text : "";
		t->link_hint = "";
		t->info = c->info_text ? c->info_text : "";
	} else if (r->kind == MAIL_OTP) {
		if (app)
			snprintf(t->subject_buf, sizeof(t->subject_buf), "Your %s sign-in code",
				 app);
		else
			snprintf(t->subject_buf, sizeof(t->subject_buf), "Your sign-in code");
		snprintf(t->header_buf, sizeof(t->header_buf), "Your sign-in code");
		snprintf(t->body_buf, sizeof(t->body_buf),
			 "Enter this code to sign in%s%s:", app ? " to " : "", app ? app : "");
		snprintf(t->info_buf, sizeof(t->info_buf), "This code expires in %u %s.",
			 r->minutes, unit);
		t->subject = t->subject_buf;
		t->header = t->header_buf;
		t->body = t->body_buf;
		t->link = "";
		t->link_hint = "";
		t->info = t->info_buf;
	} else {
		if (app)
			snprintf(t->subject_buf, sizeof(t->subject_buf), "Sign in to %s", app);
		else
			snprintf(t->subject_buf, sizeof(t->subject_buf), "Your sign-in link");
		snprintf(t->header_buf, sizeof(t->header_buf), "%s", t->subject_buf);
		snprintf(t->body_buf, sizeof(t->body_buf), "Click the button below to sign in%s%s.",
			 app ? " to " : "", app ? app : "");
		snprintf(t->info_buf, sizeof(t->info_buf),
			 "This link expires in %u %s and can be used once.", r->minutes, unit);
		t->subject = t->subject_buf;
		t->header = t->header_buf;
		t->body = t->body_buf;
		t->link = "Sign in";
		t->link_hint = "If the button does not work, copy this link into your browser:";
		t->info = t->info_buf;
	}
	t->footer = c->footer_text ? c->footer_text : DEFAULT_FOOTER;
	t->color = c->primary_color ? c->primary_color : DEFAULT_COLOR;
}

static void build_text(struct sbuf *b, const struct mail_request *r, const struct texts *t)
{
	if (t->header[0]) {
		text_add(b, t->header);
		sb_puts(b, "\n\n");
	}
	if (t->body[0]) {
		text_add(b, t->body);
		sb_puts(b, "\n\n");
	}
	if (r->kind == MAIL_OTP) {
		sb_puts(b, "    ");
		sb_puts(b, r->code);
		sb_puts(b, "\n\n");
	} else {
		if (t->link[0]) {
			text_add(b, t->link);
			sb_puts(b, ":\n");
		} else if (t->link_hint[0]) {
			sb_puts(b, t->link_hint);
			sb_puts(b, "\n");
		}
		sb_puts(b, r->url);
		sb_puts(b, "\n\n");
	}
	if (t->info[0]) {
		text_add(b, t->info);
		sb_puts(b, "\n\n");
	}
	if (t->footer[0]) {
		sb_puts(b, "-- \n");
		text_add(b, t->footer);
		sb_puts(b, "\n");
	}
}

/* 1 when the #RRGGBB colour is light (perceived brightness above about 63%). */
static int is_light(const char *color)
{
	int r = hexval((unsigned char)color[1]) * 16 + hexval((unsigned char)color[2]);
	int g = hexval((unsigned char)color[3]) * 16 + hexval((unsigned char)color[4]);
	int bl = hexval((unsigned char)color[5]) * 16 + hexval((unsigned char)color[6]);
	return 299 * r + 587 * g + 114 * bl > 160000;
}

#define FONT "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"

/*
 * Table layout with inline styles only: what Outlook, Gmail and Apple Mail all render. Nothing
 * is loaded from outside (the logo travels as a cid: part). Every interpolated value goes
 * through html_add; the colour was validated as #RRGGBB before it reaches a style attribute.
 */
static void build_html(struct sbuf *b, const struct mail_request *r, const struct texts *t,
		       const char *logo_cid)
{
	sb_puts(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
		   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		   "<title>");
	html_add(b, t->subject, 0);
	sb_puts(b,
		"</title>\n</head>\n"
		"<body style=\"margin:0;padding:0;background-color:#f4f5f7;\">\n"
		"<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" "
		"border=\"0\" style=\"background-color:#f4f5f7;\">\n"
		"<tr><td align=\"center\" style=\"padding:32px 16px;\">\n"
		"<table role=\"presentation\" width=\"560\" cellpadding=\"0\" cellspacing=\"0\" "
		"border=\"0\" style=\"width:100%;max-width:560px;background-color:#ffffff;"
		"border-radius:8px;\">\n");
	sb_printf(b,
		  "<tr><td style=\"height:6px;background-color:%s;"
		  "border-radius:8px 8px 0 0;font-size:0;line-height:0;\">&nbsp;</td></tr>\n",
		  t->color);
	if (logo_cid != NULL) {
		sb_printf(b,
			  "<tr><td align=\"center\" style=\"padding:32px 32px 0 32px;\">"
			  "<img src=\"cid:%s\" alt=\"",
			  logo_cid);
		html_add(b, r->app_name ? r->app_name : "", 0);
		sb_puts(b, "\" height=\"48\" style=\"display:block;border:0;height:48px;"
			   "max-width:240px;margin:0 auto;\"></td></tr>\n");
	}
	if (t->header[0]) {
		sb_puts(b, "<tr><td style=\"padding:32px 32px 0 32px;" FONT "font-size:22px;"
			   "line-height:30px;font-weight:bold;color:#1f2330;\">");
		html_add(b, t->header, 1);
		sb_puts(b, "</td></tr>\n");
	}
	if (t->body[0]) {
		sb_puts(b, "<tr><td style=\"padding:16px 32px 0 32px;" FONT "font-size:16px;"
			   "line-height:24px;color:#3c4150;\">");
		html_add(b, t->body, 1);
		sb_puts(b, "</td></tr>\n");
	}
	if (r->kind == MAIL_OTP) {
		sb_printf(b,
			  "<tr><td align=\"center\" style=\"padding:24px 32px 0 32px;\">\n"
			  "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" "
			  "border=\"0\"><tr><td style=\"padding:16px 28px;background-color:"
			  "#f4f5f7;border:2px solid %s;border-radius:8px;font-family:"
			  "'SFMono-Regular',Consolas,'Courier New',monospace;font-size:32px;"
			  "line-height:40px;letter-spacing:8px;font-weight:bold;color:#1f2330;\">",
			  t->color);
		html_add(b, r->code, 0);
		sb_puts(b, "</td></tr></table>\n</td></tr>\n");
	} else {
		if (t->link[0]) {
			sb_printf(
			    b,
			    "<tr><td align=\"center\" style=\"padding:24px 32px 0 32px;\">\n"
			    "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" "
			    "border=\"0\"><tr><td bgcolor=\"%s\" style=\"border-radius:6px;"
			    "background-color:%s;\">",
			    t->color, t->color);
			sb_puts(b, "<a href=\"");
			html_add(b, r->url, 0);
			sb_printf(b,
				  "\" target=\"_blank\" style=\"display:inline-block;"
				  "padding:14px 32px;" FONT "font-size:16px;font-weight:bold;"
				  "color:%s;text-decoration:none;border-radius:6px;\">",
				  is_light(t->color) ? "#111111" : "#ffffff");
			html_add(b, t->link, 0);
			sb_puts(b, "</a></td></tr></table>\n</td></tr>\n");
		}
		sb_puts(b, "<tr><td style=\"padding:24px 32px 0 32px;" FONT "font-size:13px;"
			   "line-height:20px;color:#6b7080;\">");
		if (t->link_hint[0]) {
			html_add(b, t->link_hint, 0);
			sb_puts(b, "<br>\n");
		}
		sb_puts(b, "<a href=\"");
		html_add(b, r->url, 0);
		/* A light brand colour would make the link unreadable on white. */
		sb_printf(b, "\" target=\"_blank\" style=\"color:%s;word-break:break-all;\">",
			  is_light(t->color) ? "#3c4150" : t->color);
		html_add(b, r->url, 0);
		sb_puts(b, "</a></td></tr>\n");
	}
	if (t->info[0]) {
		sb_puts(b, "<tr><td style=\"padding:24px 32px 0 32px;" FONT "font-size:14px;"
			   "line-height:22px;color:#3c4150;\">");
		html_add(b, t->info, 1);
		sb_puts(b, "</td></tr>\n");
	}
	sb_puts(b, "<tr><td style=\"padding:32px 32px 32px 32px;" FONT "font-size:12px;"
		   "line-height:18px;color:#8a8f9c;\">");
	html_add(b, t->footer, 1);
	sb_puts(b, "</td></tr>\n</table>\n</td></tr>\n</table>\n</body>\n</html>\n");
}

/* ---- logo ---- */

struct logo {
	unsigned char *data;
	size_t len;
	const char *type, *ext;
};

static int logo_decode(const char *b64, struct logo *lg)
{
	static const unsigned char png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
	size_t n = strnlen(b64, LOGO_MAX + 1);

	if (n > LOGO_MAX)
		return MAIL_EINPUT;
	if (b64_decode(b64, n, &lg->data, &lg->len) != 0)
		return MAIL_EINPUT;
	if (lg->len >= 8 && memcmp(lg->data, png, 8) == 0) {
		lg->type = "image/png";
		lg->ext = "png";
	} else if (lg->len >= 3 && lg->data[0] == 0xFF && lg->data[1] == 0xD8 &&
		   lg->data[2] == 0xFF) {
		lg->type = "image/jpeg";
		lg->ext = "jpg";
	} else if (lg->len >= 6 &&
		   (memcmp(lg->data, "GIF87a", 6) == 0 || memcmp(lg->data, "GIF89a", 6) == 0)) {
		lg->type = "image/gif";
		lg->ext = "gif";
	} else {
		free(lg->data);
		lg->data = NULL;
		return MAIL_EINPUT;
	}
	return MAIL_OK;
}

/* ---- the message ---- */

static int request_ok(const struct mail_request *r)
{
	const struct mail_content *c = &r->content;
	const char *headers[] = {c->subject, c->sender_name, r->from_name, r->app_name};
	const char *bodies[] = {c->header_text, c->body_text, c->link_text, c->info_text,
				c->footer_text};

	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
		if (headers[i] != NULL && !text_ok(headers[i], 0))
			return 0;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		if (bodies[i] != NULL && !text_ok(bodies[i], 1))
			return 0;
	if (r->custom && c->subject == NULL)
		return 0;
	/* The default template quotes the name in fixed-size sentences. */
	if (r->app_name != NULL && strlen(r->app_name) > 256)
		return 0;
	if (c->primary_color != NULL && !mail_color_valid(c->primary_color))
		return 0;
	/* The code and the URL are ours, not the caller's, but they land in the body verbatim. */
	if (r->kind == MAIL_OTP)
		return r->code != NULL && r->code[0] && is_ascii_printable(r->code);
	if (r->kind == MAIL_LINK)
		return r->url != NULL && r->url[0] && is_ascii_printable(r->url) &&
		       strchr(r->url, ' ') == NULL;
	return 0;
}

static void put_part_headers(struct sbuf *b, const char *boundary, const char *type)
{
	sb_printf(b,
		  "--%s\r\nContent-Type: %s; charset=utf-8\r\n"
		  "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
		  boundary, type);
}

/*
 * Compose the message; see mail.h. Layout without a logo:
 *   multipart/alternative { text/plain, text/html }
 * with a logo:
 *   multipart/related { multipart/alternative { text/plain, text/html }, image (cid) }
 */
int mail_compose(const struct mail_request *r, char **out, size_t *outlen)
{
	struct sbuf msg = {0}, text = {0}, html = {0};
	struct texts *t = NULL;
	struct logo lg = {0};
	char alt[48], rel[48], msgid[40], cid[80], *logo_b64 = NULL;
	const char *domain, *display;
	int rc;

	if (r == NULL || out == NULL || outlen == NULL)
		return MAIL_EINPUT;
	if (!mail_address_valid(r->from_addr) || !mail_address_valid(r->to_addr))
		return MAIL_EADDR;
	if (!request_ok(r))
		return MAIL_EINPUT;
	if (r->content.base64logo != NULL && r->content.base64logo[0] != '\0') {
		rc = logo_decode(r->content.base64logo, &lg);
		if (rc != MAIL_OK)
			return rc;
	}
	rc = MAIL_ENOMEM;
	t = malloc(sizeof(*t));
	if (t == NULL)
		goto out;
	fill_texts(r, t);

	domain = strchr(r->from_addr, '@') + 1;
	/* "=_" cannot occur in quoted-printable or base64 output, so no body line can match. */
	memcpy(alt, "=_alt_", 6);
	random_hex(alt + 6, 16);
	memcpy(rel, "=_rel_", 6);
	random_hex(rel + 6, 16);
	random_hex(msgid, 16);
	if (lg.data != NULL) {
		char h[33];
		random_hex(h, 16);
		snprintf(cid, sizeof(cid), "logo.%s@otlogin", h);
		logo_b64 = b64_encode_mime(lg.data, lg.len);
		if (logo_b64 == NULL)
			goto out;
	}

	build_text(&text, r, t);
	build_html(&html, r, t, lg.data != NULL ? cid : NULL);
	if (text.oom || html.oom)
		goto out;

	display = r->content.sender_name != NULL ? r->content.sender_name : r->from_name;
	put_mailbox(&msg, "From", display, r->from_addr);
	sb_printf(&msg, "To: %s\r\n", r->to_addr);
	put_unstructured(&msg, "Subject", t->subject);
	put_date(&msg);
	sb_printf(&msg, "Message-ID: <%s@%s>\r\n", msgid, domain);
	sb_puts(&msg, "MIME-Version: 1.0\r\n"
		      "Auto-Submitted: auto-generated\r\n"
		      "X-Auto-Response-Suppress: All\r\n");
	if (lg.data != NULL) {
		sb_printf(&msg,
			  "Content-Type: multipart/related;\r\n"
			  " type=\"multipart/alternative\";\r\n boundary=\"%s\"\r\n\r\n"
			  "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n"
			  "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n",
			  rel, rel, alt);
	} else {
		sb_printf(&msg,
			  "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n"
			  "This is a multi-part message in MIME format.\r\n\r\n",
			  alt);
	}
	put_part_headers(&msg, alt, "text/plain");
	qp_encode(&msg, text.p);
	put_part_headers(&msg, alt, "text/html");
	qp_encode(&msg, html.p);
	sb_printf(&msg, "--%s--\r\n", alt);
	if (lg.data != NULL) {
		sb_printf(&msg,
			  "\r\n--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n"
			  "Content-ID: <%s>\r\nContent-Disposition: inline; "
			  "filename=\"logo.%s\"\r\n\r\n",
			  rel, lg.type, cid, lg.ext);
		sb_puts(&msg, logo_b64);
		sb_printf(&msg, "\r\n--%s--\r\n", rel);
	}
	if (msg.oom)
		goto out;

	*out = msg.p;
	*outlen = msg.len;
	msg.p = NULL;
	rc = MAIL_OK;
out:
	if (rc == MAIL_ENOMEM)
		log_err("mail: out of memory composing a message");
	sb_free(&msg);
	/* The bodies carry the code or link: wipe them before they go back to the heap. */
	if (text.p != NULL)
		crypto_wipe(text.p, text.len);
	if (html.p != NULL)
		crypto_wipe(html.p, html.len);
	sb_free(&text);
	sb_free(&html);
	free(t);
	free(lg.data);
	free(logo_b64);
	return rc;
}

/* ---- backends ---- */

/* The Maildir backend when no relay is configured, else SMTP. Never NULL. */
const struct mail_backend *mail_backend_for(const struct mail_conf *conf)
{
	if (conf == NULL || conf->smtp_host == NULL || conf->smtp_host[0] == '\0')
		return &mail_maildir_backend;
	return &mail_smtp_backend;
}

/*
 * Deliver msg (len bytes, CRLF lines, as mail_compose made it) from -> to. Returns MAIL_EADDR
 * for an address mail_address_valid refuses, MAIL_EINPUT for no message, else the backend's
 * mail_error.
 */
int mail_send(const struct mail_conf *conf, const char *from, const char *to, const char *msg,
	      size_t len)
{
	const struct mail_backend *be;

	/* Checked again here: a backend must never see an address mail_compose did not vet. */
	if (!mail_address_valid(from) || !mail_address_valid(to))
		return MAIL_EADDR;
	if (conf == NULL || msg == NULL || len == 0)
		return MAIL_EINPUT;
	be = mail_backend_for(conf);
	return be->send(conf, from, to, msg, len);
}
