/*
 * sms_email: an email-to-SMS gateway. The configured address template (email_gateway, e.g.
 * "{number}@sms.gateway.example") gets the number's digits without the "+", and the message
 * goes out as a plain-text mail through the mail module, over the same SMTP path (and the same
 * time bound) as every other mail. Gateways turn the body into the SMS; the sender id cannot
 * be passed this way and is left out.
 */
#include "sms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64url.h"
#include "crypto.h"
#include "log.h"

/* The gateway address for number ("+" and digits), or -1 when the template cannot make one. */
static int gateway_address(const char *tmpl, const char *number, char *out, size_t outlen)
{
	const char *at = tmpl != NULL ? strstr(tmpl, "{number}") : NULL;

	if (at == NULL)
		return -1;
	if ((size_t)snprintf(out, outlen, "%.*s%s%s", (int)(at - tmpl), tmpl, number + 1, at + 8) >=
	    outlen)
		return -1;
	return mail_address_valid(out) ? 0 : -1;
}

/* The complete message (CRLF line ends): a text/plain body, 7bit when ASCII, else base64. */
static char *compose(const char *from, const char *to, const char *text, size_t *len)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	const char *domain = strrchr(from, '@') + 1, *p;
	char head[1024], id[33], *body, *msg, *o;
	unsigned char rnd[16];
	int ascii = 1;
	time_t now = time(NULL);
	struct tm tm;
	size_t head_len, body_len;

	for (p = text; *p; p++)
		if ((unsigned char)*p >= 0x80)
			ascii = 0;
	if (ascii) {
		/* LF becomes CRLF: at most twice the size. */
		body = malloc(strlen(text) * 2 + 3);
		if (body == NULL)
			return NULL;
		for (o = body, p = text; *p; p++) {
			if (*p == '\n')
				*o++ = '\r';
			*o++ = *p;
		}
		*o++ = '\r', *o++ = '\n', *o = '\0';
	} else if ((body = b64_encode_mime(text, strlen(text))) == NULL) {
		return NULL;
	}
	body_len = strlen(body);

	gmtime_r(&now, &tm);
	crypto_random(rnd, sizeof(rnd));
	crypto_hex(rnd, sizeof(rnd), id);
	/* Our own day and month names: strftime's would follow the locale. */
	head_len = (size_t)snprintf(
	    head, sizeof(head),
	    "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\nFrom: %s\r\nTo: %s\r\n"
	    "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: %s\r\n\r\n",
	    wday[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, from, to, id, domain, ascii ? "7bit" : "base64");
	msg = head_len < sizeof(head) ? malloc(head_len + body_len + 3) : NULL;
	if (msg != NULL) {
		memcpy(msg, head, head_len);
		memcpy(msg + head_len, body, body_len);
		*len = head_len + body_len;
		if (!ascii) {
			memcpy(msg + *len, "\r\n", 2);
			*len += 2;
		}
		msg[*len] = '\0';
	}
	crypto_wipe(body, body_len);
	free(body);
	return msg;
}

static int email_send(const struct sms_conf *conf, const struct sms_message *msg)
{
	char to[400], masked[64];
	char *mail;
	size_t len = 0;
	int rc;

	if (gateway_address(conf->email_gateway, msg->to, to, sizeof(to)) < 0) {
		log_err("sms_email: email_gateway does not make a valid address "
			"(it needs {number}, e.g. {number}@sms.example)");
		return SMS_ECONFIG;
	}
	if (conf->mail_from == NULL || !mail_address_valid(conf->mail_from)) {
		log_err("sms_email: the [mail] from address is not valid");
		return SMS_ECONFIG;
	}
	mail = compose(conf->mail_from, to, msg->text, &len);
	if (mail == NULL)
		return SMS_ENOMEM;
	rc = mail_send(conf->mail, conf->mail_from, to, mail, len);
	crypto_wipe(mail, len);
	free(mail);
	if (rc == MAIL_OK)
		return SMS_OK;
	log_err("sms_email: the gateway mail to %s was not accepted (mail error %d)",
		log_mask_addr(to, masked, sizeof(masked)), rc);
	return rc == MAIL_EADDR ? SMS_ECONFIG : SMS_EDELIVER;
}

const struct sms_backend sms_email_backend = {"email", email_send};
