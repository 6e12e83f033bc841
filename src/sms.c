/*
 * sms: message building and the backend switch. See sms.h.
 *
 * Segment rules (3GPP TS 23.038 / 23.040): a text that fits the GSM 7-bit default alphabet
 * (plus its extension table, whose characters cost an escape septet too) travels as GSM-7:
 * 160 septets in one SMS, 153 per part once it must be concatenated (the user data header
 * takes the rest). Anything else travels as UCS-2: 70 UTF-16 code units, 67 per part.
 * Senders never split an escape sequence or a surrogate pair between parts, so the count packs
 * characters greedily instead of dividing the total.
 */
#include "sms.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"

long sms_utf8_next(const char **p)
{
	const unsigned char *s = (const unsigned char *)*p;
	long cp, min;
	int n;

	if (s[0] < 0x80) {
		*p += 1;
		return s[0];
	}
	if ((s[0] & 0xe0) == 0xc0) {
		cp = s[0] & 0x1f, n = 1, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		cp = s[0] & 0x0f, n = 2, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		cp = s[0] & 0x07, n = 3, min = 0x10000;
	} else {
		return -1;
	}
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and values past Unicode are not characters. */
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*p += n + 1;
	return cp;
}

int sms_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Non-ASCII code points of the GSM 03.38 default alphabet (one septet each). */
static const unsigned short gsm_basic_high[] = {
    0x00a3, 0x00a5, 0x00e8, 0x00e9, 0x00f9, 0x00ec, 0x00f2, 0x00c7, 0x00d8, 0x00f8,
    0x00c5, 0x00e5, 0x0394, 0x03a6, 0x0393, 0x039b, 0x03a9, 0x03a0, 0x03a8, 0x03a3,
    0x0398, 0x039e, 0x00c6, 0x00e6, 0x00df, 0x00c9, 0x00a4, 0x00a1, 0x00c4, 0x00d6,
    0x00d1, 0x00dc, 0x00a7, 0x00bf, 0x00e4, 0x00f6, 0x00f1, 0x00fc, 0x00e0,
};

/* Septets cp costs in GSM-7: 1, 2 (extension table, after an escape), or 0 (not there). */
static int gsm_septets(long cp)
{
	if (cp == '\n' || cp == '\r')
		return 1;
	if (cp == '\f' || cp == 0x20ac)
		return 2;
	if (cp >= 0x20 && cp < 0x7f) {
		if (cp == '`')
			return 0;
		return strchr("^{}\\[~]|", (int)cp) != NULL ? 2 : 1;
	}
	for (size_t i = 0; i < sizeof(gsm_basic_high) / sizeof(gsm_basic_high[0]); i++)
		if (gsm_basic_high[i] == cp)
			return 1;
	return 0;
}

/* Parts needed for characters of the given widths, packed greedily. */
static unsigned count_segments(const char *text, int ucs2, size_t total)
{
	size_t single = ucs2 ? 70 : 160, part = ucs2 ? 67 : 153, used = 0;
	unsigned segments = 1;
	const char *p = text;
	long cp;

	if (total <= single)
		return 1;
	while (*p && (cp = sms_utf8_next(&p)) >= 0) {
		size_t w = ucs2 ? (cp > 0xffff ? 2 : 1) : (size_t)gsm_septets(cp);
		if (used + w > part) {
			segments++;
			used = 0;
		}
		used += w;
	}
	return segments;
}

int sms_measure(const char *text, struct sms_size *out)
{
	size_t septets = 0, units = 0;
	int ucs2 = 0;
	const char *p = text;
	long cp;

	while (*p) {
		if ((cp = sms_utf8_next(&p)) < 0)
			return -1;
		int w = gsm_septets(cp);
		if (w == 0)
			ucs2 = 1;
		septets += (size_t)w;
		units += cp > 0xffff ? 2 : 1;
	}
	out->ucs2 = ucs2;
	out->units = ucs2 ? units : septets;
	out->segments = count_segments(text, ucs2, out->units);
	return 0;
}

int sms_number_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return 0;
	for (s++; *s; s++, n++)
		if (*s < '0' || *s > '9')
			return 0;
	return n >= 7 && n <= 15;
}

int sms_sender_valid(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n == 0 || n > SMS_MAX_SENDER || s[0] == ' ' || s[n - 1] == ' ')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == ' '))
			return 0;
	return 1;
}

int sms_template_valid(const char *tmpl, char *err, size_t errlen)
{
	const char *p = tmpl;
	size_t chars = 0;
	long cp;

	if (tmpl == NULL || tmpl[0] == '\0') {
		snprintf(err, errlen, "the message is empty");
		return 0;
	}
	while (*p) {
		if ((cp = sms_utf8_next(&p)) < 0) {
			snprintf(err, errlen, "the message is not valid UTF-8");
			return 0;
		}
		if ((cp < 0x20 && cp != '\n' && cp != '\r' && cp != '\t') ||
		    (cp >= 0x7f && cp < 0xa0)) {
			snprintf(err, errlen, "the message contains control characters");
			return 0;
		}
		chars++;
	}
	if (chars > SMS_MAX_TEMPLATE_CHARS) {
		snprintf(err, errlen, "the message is longer than %d characters",
			 SMS_MAX_TEMPLATE_CHARS);
		return 0;
	}
	if (strstr(tmpl, "{otp}") == NULL) {
		snprintf(err, errlen, "the message must contain {otp}");
		return 0;
	}
	return 1;
}

/* Add a value from outside the template: control characters (line breaks too) become spaces. */
static void buf_add_value(struct sbuf *b, const char *s)
{
	for (; s != NULL && *s; s++) {
		char c = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
		sbuf_add(b, &c, 1);
	}
}

int sms_compose(const struct sms_compose_req *r, char **text, char *err, size_t errlen)
{
	struct sbuf b = {0};
	struct sms_size size;
	const char *p = r->tmpl, *key;
	json_t *value;

	*text = NULL;
	if (!sms_template_valid(r->tmpl, err, errlen))
		return -1;
	sbuf_add(&b, "", 0);
	while (*p) {
		if (strncmp(p, "{otp}", 5) == 0) {
			sbuf_add(&b, r->code, strlen(r->code));
			p += 5;
		} else if (strncmp(p, "{app}", 5) == 0) {
			buf_add_value(&b, r->app);
			p += 5;
		} else if (*p == '\r') {
			/* CR LF or a lone CR: one line break, as phones (and smsd) expect LF. */
			sbuf_add(&b, "\n", 1);
			p += p[1] == '\n' ? 2 : 1;
		} else {
			sbuf_add(&b, p, 1);
			p++;
		}
	}
	/* What the code approves is part of the message: the user must see it before typing it. */
	if (r->approval_data != NULL && json_object_size(r->approval_data) > 0) {
		json_object_foreach(r->approval_data, key, value)
		{
			sbuf_add(&b, "\n", 1);
			buf_add_value(&b, key);
			sbuf_add(&b, ": ", 2);
			buf_add_value(&b, json_string_value(value));
		}
	}
	if (b.oom) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (sms_measure(b.p, &size) < 0) {
		snprintf(err, errlen, "the message is not valid UTF-8");
		goto fail;
	}
	if (r->max_segments > 0 && size.segments > r->max_segments) {
		snprintf(err, errlen,
			 "the message needs %u SMS segments (%zu %s), more than the %u allowed",
			 size.segments, size.units, size.ucs2 ? "UCS-2 units" : "GSM-7 septets",
			 r->max_segments);
		goto fail;
	}
	*text = sbuf_take(&b);
	return 0;
fail:
	sbuf_free(&b);
	return -1;
}

int sms_backend_name_valid(const char *name)
{
	static const char *const names[] = {"none", "smstools", "command", "email", NULL};

	for (const char *const *n = names; name != NULL && *n; n++)
		if (strcmp(*n, name) == 0)
			return 1;
	return 0;
}

const struct sms_backend *sms_backend_for(const struct sms_conf *conf)
{
	if (conf == NULL)
		return NULL;
	if (conf->test_mode)
		return &sms_smstools_backend;
	if (conf->backend == NULL)
		return NULL;
	if (strcmp(conf->backend, "smstools") == 0)
		return &sms_smstools_backend;
	if (strcmp(conf->backend, "command") == 0)
		return &sms_command_backend;
	if (strcmp(conf->backend, "email") == 0)
		return &sms_email_backend;
	return NULL;
}

int sms_send(const struct sms_conf *conf, const struct sms_message *msg)
{
	const struct sms_backend *be = sms_backend_for(conf);
	struct sms_size size;
	char masked[64];
	int rc;

	/* Checked here again: a backend must never see a number or sender nobody vetted. */
	if (!sms_number_valid(msg->to) || (msg->sender != NULL && !sms_sender_valid(msg->sender)) ||
	    msg->text == NULL || msg->text[0] == '\0' || sms_measure(msg->text, &size) < 0)
		return SMS_EINPUT;
	if (be == NULL) {
		log_err("sms: no SMS backend is configured ([sms] backend = none)");
		return SMS_ECONFIG;
	}
	rc = be->send(conf, msg);
	if (rc != SMS_OK)
		log_err("sms: %s could not deliver to %s (error %d)", be->name,
			log_mask_addr(msg->to, masked, sizeof(masked)), rc);
	else
		log_debug("sms: %s accepted a %u-segment %s message for %s", be->name,
			  size.segments, size.ucs2 ? "UCS-2" : "GSM-7",
			  log_mask_addr(msg->to, masked, sizeof(masked)));
	return rc;
}
