/*
 * mail: the login mails and their gate. What may be sent (addresses, colours, content) is
 * checked here, the one-time passcode and magic link messages are written from their
 * templates (text/plain and HTML, an optional inline logo) and handed to mime.c to be encoded,
 * and mail_send picks the delivery backend.
 *
 * libesmtp writes addresses verbatim into RCPT TO, so they are held to a strict addr-spec
 * subset; every header value with a control character is refused rather than cleaned.
 */
#include "mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64url.h"
#include "html.h"
#include "log.h"
#include "mime.h"
#include "sbuf.h"

#define LOCAL_MAX 64
#define DOMAIN_MAX 253
#define ADDR_MAX 254
#define LABEL_MAX 63
#define LOGO_MAX 20000
#define DEFAULT_COLOR "#6981FF"
#define DEFAULT_FOOTER "If you didn't request this email, you can safely ignore it."

/* ---- addresses ---- */

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
		} else if (!mime_is_atext((unsigned char)*p)) {
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

/* ---- templates ---- */

/* Append user text to a plain-text body, turning CRLF and lone CR into "\n". */
static void text_add(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\r') {
			if (s[1] == '\n')
				s++;
			sbuf_add(b, "\n", 1);
		} else {
			sbuf_add(b, s, 1);
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
	} else if (r->kind == MAIL_OTP || r->kind == MAIL_OTP_LINK) {
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
		if (r->kind == MAIL_OTP_LINK) {
			/* The code for this tab, the button for any device (the hosted page). */
			snprintf(
			    t->info_buf, sizeof(t->info_buf),
			    "Or use the button below, on this or another device. The code and the "
			    "button expire in %u %s.",
			    r->minutes, unit);
			t->link = "Sign in";
			t->link_hint =
			    "If the button does not work, copy this link into your browser:";
		}
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
		sbuf_puts(b, "\n\n");
	}
	if (t->body[0]) {
		text_add(b, t->body);
		sbuf_puts(b, "\n\n");
	}
	if (r->kind != MAIL_LINK) {
		sbuf_puts(b, "    ");
		sbuf_puts(b, r->code);
		sbuf_puts(b, "\n\n");
	}
	if (r->kind == MAIL_OTP_LINK && t->info[0]) {
		/* The info text introduces the link here, so it comes before it. */
		text_add(b, t->info);
		sbuf_puts(b, "\n\n");
	}
	if (r->kind != MAIL_OTP) {
		if (t->link[0]) {
			text_add(b, t->link);
			sbuf_puts(b, ":\n");
		} else if (t->link_hint[0]) {
			sbuf_puts(b, t->link_hint);
			sbuf_puts(b, "\n");
		}
		sbuf_puts(b, r->url);
		sbuf_puts(b, "\n\n");
	}
	if (t->info[0] && r->kind != MAIL_OTP_LINK) {
		text_add(b, t->info);
		sbuf_puts(b, "\n\n");
	}
	if (t->footer[0]) {
		sbuf_puts(b, "-- \n");
		text_add(b, t->footer);
		sbuf_puts(b, "\n");
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

static void html_info(struct sbuf *b, const struct texts *t)
{
	if (t->info[0]) {
		sbuf_puts(b, "<tr><td style=\"padding:24px 32px 0 32px;" FONT "font-size:14px;"
			     "line-height:22px;color:#3c4150;\">");
		html_add(b, t->info, HTML_BREAK_BR);
		sbuf_puts(b, "</td></tr>\n");
	}
}

/*
 * Table layout with inline styles only: what Outlook, Gmail and Apple Mail all render. Nothing
 * is loaded from outside (the logo travels as a cid: part). Every interpolated value goes
 * through html_add; the colour was validated as #RRGGBB before it reaches a style attribute.
 */
static void build_html(struct sbuf *b, const struct mail_request *r, const struct texts *t,
		       const char *logo_cid)
{
	sbuf_puts(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
		     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		     "<title>");
	html_add(b, t->subject, HTML_BREAK_SPACE);
	sbuf_puts(b,
		  "</title>\n</head>\n"
		  "<body style=\"margin:0;padding:0;background-color:#f4f5f7;\">\n"
		  "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" "
		  "border=\"0\" style=\"background-color:#f4f5f7;\">\n"
		  "<tr><td align=\"center\" style=\"padding:32px 16px;\">\n"
		  "<table role=\"presentation\" width=\"560\" cellpadding=\"0\" cellspacing=\"0\" "
		  "border=\"0\" style=\"width:100%;max-width:560px;background-color:#ffffff;"
		  "border-radius:8px;\">\n");
	sbuf_printf(b,
		    "<tr><td style=\"height:6px;background-color:%s;"
		    "border-radius:8px 8px 0 0;font-size:0;line-height:0;\">&nbsp;</td></tr>\n",
		    t->color);
	if (logo_cid != NULL) {
		sbuf_printf(b,
			    "<tr><td align=\"center\" style=\"padding:32px 32px 0 32px;\">"
			    "<img src=\"cid:%s\" alt=\"",
			    logo_cid);
		html_add(b, r->app_name ? r->app_name : "", HTML_BREAK_SPACE);
		sbuf_puts(b, "\" height=\"48\" style=\"display:block;border:0;height:48px;"
			     "max-width:240px;margin:0 auto;\"></td></tr>\n");
	}
	if (t->header[0]) {
		sbuf_puts(b, "<tr><td style=\"padding:32px 32px 0 32px;" FONT "font-size:22px;"
			     "line-height:30px;font-weight:bold;color:#1f2330;\">");
		html_add(b, t->header, HTML_BREAK_BR);
		sbuf_puts(b, "</td></tr>\n");
	}
	if (t->body[0]) {
		sbuf_puts(b, "<tr><td style=\"padding:16px 32px 0 32px;" FONT "font-size:16px;"
			     "line-height:24px;color:#3c4150;\">");
		html_add(b, t->body, HTML_BREAK_BR);
		sbuf_puts(b, "</td></tr>\n");
	}
	if (r->kind != MAIL_LINK) {
		sbuf_printf(
		    b,
		    "<tr><td align=\"center\" style=\"padding:24px 32px 0 32px;\">\n"
		    "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" "
		    "border=\"0\"><tr><td style=\"padding:16px 28px;background-color:"
		    "#f4f5f7;border:2px solid %s;border-radius:8px;font-family:"
		    "'SFMono-Regular',Consolas,'Courier New',monospace;font-size:32px;"
		    "line-height:40px;letter-spacing:8px;font-weight:bold;color:#1f2330;\">",
		    t->color);
		html_add(b, r->code, HTML_BREAK_SPACE);
		sbuf_puts(b, "</td></tr></table>\n</td></tr>\n");
	}
	if (r->kind == MAIL_OTP_LINK)
		html_info(b, t);
	if (r->kind != MAIL_OTP) {
		if (t->link[0]) {
			sbuf_printf(
			    b,
			    "<tr><td align=\"center\" style=\"padding:24px 32px 0 32px;\">\n"
			    "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" "
			    "border=\"0\"><tr><td bgcolor=\"%s\" style=\"border-radius:6px;"
			    "background-color:%s;\">",
			    t->color, t->color);
			sbuf_puts(b, "<a href=\"");
			html_add(b, r->url, HTML_BREAK_SPACE);
			sbuf_printf(b,
				    "\" target=\"_blank\" style=\"display:inline-block;"
				    "padding:14px 32px;" FONT "font-size:16px;font-weight:bold;"
				    "color:%s;text-decoration:none;border-radius:6px;\">",
				    is_light(t->color) ? "#111111" : "#ffffff");
			html_add(b, t->link, HTML_BREAK_SPACE);
			sbuf_puts(b, "</a></td></tr></table>\n</td></tr>\n");
		}
		sbuf_puts(b, "<tr><td style=\"padding:24px 32px 0 32px;" FONT "font-size:13px;"
			     "line-height:20px;color:#6b7080;\">");
		if (t->link_hint[0]) {
			html_add(b, t->link_hint, HTML_BREAK_SPACE);
			sbuf_puts(b, "<br>\n");
		}
		sbuf_puts(b, "<a href=\"");
		html_add(b, r->url, HTML_BREAK_SPACE);
		/* A light brand colour would make the link unreadable on white. */
		sbuf_printf(b, "\" target=\"_blank\" style=\"color:%s;word-break:break-all;\">",
			    is_light(t->color) ? "#3c4150" : t->color);
		html_add(b, r->url, HTML_BREAK_SPACE);
		sbuf_puts(b, "</a></td></tr>\n");
	}
	if (r->kind != MAIL_OTP_LINK)
		html_info(b, t);
	sbuf_puts(b, "<tr><td style=\"padding:32px 32px 32px 32px;" FONT "font-size:12px;"
		     "line-height:18px;color:#8a8f9c;\">");
	html_add(b, t->footer, HTML_BREAK_BR);
	sbuf_puts(b, "</td></tr>\n</table>\n</td></tr>\n</table>\n</body>\n</html>\n");
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
		if (headers[i] != NULL && !mime_header_text_ok(headers[i]))
			return 0;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		if (bodies[i] != NULL && !mime_body_text_ok(bodies[i]))
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
		return r->code != NULL && r->code[0] && mime_printable_ascii(r->code);
	if (r->kind == MAIL_LINK)
		return r->url != NULL && r->url[0] && mime_printable_ascii(r->url) &&
		       strchr(r->url, ' ') == NULL;
	if (r->kind == MAIL_OTP_LINK)
		return r->code != NULL && r->code[0] && mime_printable_ascii(r->code) &&
		       r->url != NULL && r->url[0] && mime_printable_ascii(r->url) &&
		       strchr(r->url, ' ') == NULL;
	return 0;
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
	struct mime_image image = {0};
	char cid[80], filename[16], id[MIME_UNIQUE_SIZE];
	const char *display;
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
	if (lg.data != NULL) {
		mime_unique(id);
		snprintf(cid, sizeof(cid), "logo.%s@otlogin", id);
		snprintf(filename, sizeof(filename), "logo.%s", lg.ext);
		image = (struct mime_image){lg.data, lg.len, lg.type, filename, cid};
	}

	build_text(&text, r, t);
	build_html(&html, r, t, lg.data != NULL ? cid : NULL);
	if (text.oom || html.oom)
		goto out;

	display = r->content.sender_name != NULL ? r->content.sender_name : r->from_name;
	mime_put_mailbox(&msg, "From", display, r->from_addr);
	sbuf_printf(&msg, "To: %s\r\n", r->to_addr);
	mime_put_unstructured(&msg, "Subject", t->subject);
	mime_put_date(&msg, time(NULL));
	mime_put_message_id(&msg, strchr(r->from_addr, '@') + 1);
	sbuf_puts(&msg, "MIME-Version: 1.0\r\n"
			"Auto-Submitted: auto-generated\r\n"
			"X-Auto-Response-Suppress: All\r\n");
	mime_put_alternative(&msg, text.p, html.p, lg.data != NULL ? &image : NULL);
	if (msg.oom)
		goto out;

	*outlen = msg.len;
	if ((*out = sbuf_take(&msg)) == NULL)
		goto out;
	rc = MAIL_OK;
out:
	if (rc == MAIL_ENOMEM)
		log_err("mail: out of memory composing a message");
	/* The buffers carry the code or link: sbuf_free wipes them before they go back. */
	sbuf_free(&msg);
	sbuf_free(&text);
	sbuf_free(&html);
	free(t);
	free(lg.data);
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
