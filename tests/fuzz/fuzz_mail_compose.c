/*
 * MIME composition (mail_compose) from caller-controlled content: the email_content fields of
 * the send APIs, the recipient address, the client's name. The first byte holds flags (link or
 * passcode mail, custom content, which optional fields are absent), the second the lifetime in
 * minutes; the rest are fields split at NUL bytes: subject, primaryColor, base64logo,
 * headerText, bodyText, linkText, infoText, footerText, senderName, the configured sender
 * name, the client's name, the recipient.
 *
 * A composed message must parse: every line ends in CRLF (no bare CR or LF anywhere), 7-bit,
 * no line over 998 octets, a header section of exactly the headers mail_compose writes, each
 * once (an injected CR/LF would add one or break a line), continuation lines that are not
 * blank, no body line that SMTP could take for the end of DATA, and a text part that still
 * carries the passcode or the link.
 */
#include <string.h>

#include "crypto.h"
#include "fuzz.h"
#include "mail.h"

#define NFIELDS 12
#define CODE "042917"
#define URL "https://login.example.com/cis/v1/auth/link/email/open?t=Zm9vYmFy_-x"

/* The header fields mail_compose writes, each exactly once. */
static const char *const headers[] = {"From",		"To",
				      "Subject",	"Date",
				      "Message-ID",	"MIME-Version",
				      "Auto-Submitted", "X-Auto-Response-Suppress",
				      "Content-Type",	NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FUZZ_ASSERT(crypto_init() == 0);
	return 0;
}

/* Length of the line at p (without CRLF); the message is known to be CRLF-clean here. */
static size_t line_len(const char *p)
{
	return (size_t)(strstr(p, "\r\n") - p);
}

static void check_header_section(const char *msg, const char *to, const char **body)
{
	int seen[sizeof(headers) / sizeof(headers[0])] = {0};
	const char *p = msg;
	char want_to[300];

	snprintf(want_to, sizeof(want_to), "To: %s", to);
	while (*p && strncmp(p, "\r\n", 2) != 0) {
		size_t len = line_len(p), i;
		if (*p == ' ' || *p == '\t') {
			/* A folded line: RFC 5322 3.2.2 forbids continuation lines of blanks only.
			 */
			FUZZ_ASSERT(p != msg && strspn(p, " \t") < len);
		} else {
			const char *colon = memchr(p, ':', len);
			FUZZ_ASSERT(colon != NULL);
			for (i = 0; headers[i] != NULL; i++)
				if ((size_t)(colon - p) == strlen(headers[i]) &&
				    strncmp(p, headers[i], strlen(headers[i])) == 0)
					break;
			FUZZ_ASSERT(headers[i] != NULL && !seen[i]);
			seen[i] = 1;
			if (i == 1)
				FUZZ_ASSERT(len == strlen(want_to) &&
					    strncmp(p, want_to, len) == 0);
		}
		p += len + 2;
	}
	for (size_t i = 0; headers[i] != NULL; i++)
		FUZZ_ASSERT(seen[i]);
	FUZZ_ASSERT(*p != '\0');
	*body = p + 2;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode the quoted-printable text/plain part (new string). */
static char *text_part(const char *body)
{
	static const char start[] = "Content-Type: text/plain; charset=utf-8\r\n"
				    "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
	const char *p = strstr(body, start), *end;
	char *out, *o;

	FUZZ_ASSERT(p != NULL);
	p += strlen(start);
	end = strstr(p, "\r\n--=_alt_");
	FUZZ_ASSERT(end != NULL);
	out = o = malloc((size_t)(end - p) + 1);
	FUZZ_ASSERT(out != NULL);
	while (p < end) {
		if (*p == '=' && p[1] == '\r' && p[2] == '\n') {
			p += 3;
		} else if (*p == '=') {
			/* Upper-case hex only (RFC 2045 6.7 (1)). */
			FUZZ_ASSERT(hexval(p[1]) >= 0 && hexval(p[2]) >= 0);
			*o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			p += 3;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static void check_message(const struct mail_request *r, const char *msg, size_t len)
{
	const char *body, *p;
	char *text;

	FUZZ_ASSERT(strlen(msg) == len && len >= 2 && strcmp(msg + len - 2, "\r\n") == 0);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];
		FUZZ_ASSERT(c >= 1 && c <= 0x7e);
		if (c == '\r')
			FUZZ_ASSERT(msg[i + 1] == '\n');
		if (c == '\n')
			FUZZ_ASSERT(i > 0 && msg[i - 1] == '\r');
	}
	for (p = msg; *p; p += line_len(p) + 2)
		FUZZ_ASSERT(line_len(p) <= 998);
	check_header_section(msg, r->to_addr, &body);
	/* Quoted-printable and base64 keep body lines short; none starts with a dot. */
	for (p = body; *p; p += line_len(p) + 2)
		FUZZ_ASSERT(line_len(p) <= 78 && *p != '.');
	text = text_part(body);
	if (r->kind == MAIL_OTP)
		FUZZ_ASSERT(strstr(text, "    " CODE "\r\n") != NULL);
	else /* on a line of its own, the first one when the custom texts are all empty */
		FUZZ_ASSERT(strncmp(text, URL "\r\n", strlen(URL) + 2) == 0 ||
			    strstr(text, "\r\n" URL "\r\n") != NULL);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mail_request r = {.from_addr = "otlogin@mail.example.com"};
	struct mail_content *c = &r.content;
	char *f[NFIELDS], *msg = NULL;
	size_t n, len = 0;
	unsigned flags;
	int rc;

	if (size < 2)
		return 0;
	flags = data[0];
	r.minutes = data[1];
	n = fuzz_fields(data + 2, size - 2, f, NFIELDS);
	r.kind = flags & 1 ? MAIL_LINK : MAIL_OTP;
	r.custom = (flags & 2) != 0;
	r.code = CODE;
	r.url = URL;
	c->subject = f[0];
	c->primary_color = flags & 4 ? NULL : f[1];
	c->base64logo = flags & 8 ? NULL : f[2];
	c->header_text = f[3];
	c->body_text = f[4];
	c->link_text = f[5];
	c->info_text = f[6];
	c->footer_text = f[7];
	c->sender_name = flags & 16 ? NULL : f[8];
	r.from_name = flags & 32 ? NULL : f[9];
	r.app_name = flags & 64 ? NULL : f[10];
	r.to_addr = f[11] != NULL && f[11][0] != '\0' ? f[11] : "someone@example.org";

	rc = mail_compose(&r, &msg, &len);
	FUZZ_ASSERT(rc == MAIL_OK || rc == MAIL_EADDR || rc == MAIL_EINPUT);
	FUZZ_ASSERT((rc == MAIL_EADDR) == !mail_address_valid(r.to_addr));
	if (rc == MAIL_OK) {
		check_message(&r, msg, len);
		free(msg);
	} else {
		FUZZ_ASSERT(msg == NULL);
	}
	fuzz_fields_free(f, n);
	return 0;
}
