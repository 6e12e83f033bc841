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
#include "mime.h"
#include "sbuf.h"

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
	struct sbuf b = {0};
	char *body;
	int ascii = 1;

	for (const char *p = text; *p; p++)
		if ((unsigned char)*p >= 0x80)
			ascii = 0;
	mime_put_date(&b, time(NULL));
	sbuf_printf(&b, "From: %s\r\nTo: %s\r\n", from, to);
	mime_put_message_id(&b, strrchr(from, '@') + 1);
	sbuf_printf(&b,
		    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: %s\r\n\r\n",
		    ascii ? "7bit" : "base64");
	if (ascii) {
		/* LF becomes CRLF. */
		for (const char *p = text; *p; p++) {
			if (*p == '\n')
				sbuf_add(&b, "\r", 1);
			sbuf_add(&b, p, 1);
		}
	} else if ((body = b64_encode_mime(text, strlen(text))) != NULL) {
		sbuf_puts(&b, body);
		crypto_wipe(body, strlen(body));
		free(body);
	} else {
		b.oom = 1;
	}
	sbuf_add(&b, "\r\n", 2);
	*len = b.len;
	return sbuf_take(&b);
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
