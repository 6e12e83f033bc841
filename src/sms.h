/*
 * sms: builds the one-time passcode text messages (template substitution, approval data,
 * GSM-7 / UCS-2 segment counting, E.164 and sender id checks) and hands them to a delivery
 * backend: sms_smstools (an smstools3 outgoing spool), sms_command (a program run without a
 * shell) or sms_email (an email-to-SMS gateway through the mail module).
 */
#ifndef OTLOGIN_SMS_H
#define OTLOGIN_SMS_H

#include <jansson.h>
#include <stddef.h>

#include "mail.h"

/* Longest custom_message in characters (API.md), and longest sender id. */
#define SMS_MAX_TEMPLATE_CHARS 140
#define SMS_MAX_SENDER 11

/* Delivery settings, filled by the caller from the configuration (see ctx_sms_conf). */
struct sms_conf {
	const char *backend;	      /* "none", "smstools", "command" or "email" */
	const char *spool_dir;	      /* smstools: the outgoing directory */
	const char *command;	      /* command: absolute path of the program */
	unsigned command_timeout;     /* command: seconds before the program is killed */
	const char *email_gateway;    /* email: address template holding "{number}" */
	const char *mail_from;	      /* email: envelope sender and From: */
	const struct mail_conf *mail; /* email: the mail delivery settings */
	int test_mode; /* 1: every message goes to spool_dir, whatever backend says */
};

/* One message to deliver. */
struct sms_message {
	const char *to;	    /* E.164, "+" and digits (checked again by sms_send) */
	const char *sender; /* sender id (sms_sender_valid) or NULL */
	const char *text;   /* UTF-8, what the phone shows */
};

enum sms_error {
	SMS_OK = 0,
	SMS_EINPUT = -1, /* a bad number, sender or text: nothing was attempted */
	SMS_ENOMEM = -2,
	SMS_EDELIVER = -3, /* the backend failed or timed out (details logged) */
	SMS_ECONFIG = -4   /* no backend configured, or its settings are unusable */
};

/* How a text travels: its encoding and the number of SMS segments it needs. */
struct sms_size {
	int ucs2;	   /* 0: GSM 03.38 7-bit default alphabet, 1: UCS-2 */
	size_t units;	   /* septets (GSM-7, escapes count 2) or UTF-16 code units (UCS-2) */
	unsigned segments; /* 1 up to 160 septets / 70 units; else 153 / 67 per concatenated part */
};

/*
 * Measure a UTF-8 text. Returns 0 with *out filled, or -1 when text is not valid UTF-8.
 * An escaped GSM character or a surrogate pair is never split across two segments.
 */
int sms_measure(const char *text, struct sms_size *out);

/* 1 when s is an E.164 number: '+', then 7 to 15 digits, the first not 0; else 0. */
int sms_number_valid(const char *s);

/* 1 when s is a usable sender id: 1 to 11 ASCII letters, digits or spaces, not starting or
 * ending with a space; else 0. */
int sms_sender_valid(const char *s);

/*
 * 1 when tmpl is a usable message template: valid UTF-8 without control characters other than
 * line breaks and tabs, at most SMS_MAX_TEMPLATE_CHARS characters, containing "{otp}".
 * Otherwise 0, with the reason in err (size errlen).
 */
int sms_template_valid(const char *tmpl, char *err, size_t errlen);

/* What sms_compose puts together. */
struct sms_compose_req {
	const char *tmpl;      /* a template sms_template_valid accepts */
	const char *app;       /* replaces "{app}"; NULL or "" for none */
	const char *code;      /* replaces every "{otp}" */
	json_t *approval_data; /* borrowed, flat object of strings, or NULL */
	unsigned max_segments; /* 0: no limit */
};

/*
 * The message text: tmpl with "{otp}" and "{app}" replaced, then one "key: value" line per
 * approval_data member so that the user sees what the code approves. Controls in the
 * substituted values become spaces. Returns 0 with *text (new, caller frees, wipes: it holds
 * the code), or -1 with the reason in err: a bad template, or more segments than max_segments.
 */
int sms_compose(const struct sms_compose_req *r, char **text, char *err, size_t errlen);

/* A delivery backend (OpenSMTPD style): a name and a send function returning an sms_error. */
struct sms_backend {
	const char *name;
	int (*send)(const struct sms_conf *conf, const struct sms_message *msg);
};

extern const struct sms_backend sms_smstools_backend;
extern const struct sms_backend sms_command_backend;
extern const struct sms_backend sms_email_backend;

/* 1 when name is a backend the configuration may select ("none" included), else 0. */
int sms_backend_name_valid(const char *name);

/*
 * The backend conf selects: smstools whenever test_mode is on, NULL for "none" (SMS cannot be
 * sent: callers answer that before creating a code).
 */
const struct sms_backend *sms_backend_for(const struct sms_conf *conf);

/*
 * Deliver msg through the configured backend. Returns SMS_EINPUT for a number that is not E.164
 * or a bad sender id, SMS_ECONFIG without a backend, else the backend's sms_error. Logs the
 * outcome with the number masked; never logs the text (it holds the code).
 */
int sms_send(const struct sms_conf *conf, const struct sms_message *msg);

/*
 * Helpers shared by the backends. sms_utf8_next decodes one code point at *p, advances *p and
 * returns it, or returns -1 on invalid UTF-8. sms_write_all writes everything or returns -1.
 */
long sms_utf8_next(const char **p);
int sms_write_all(int fd, const char *buf, size_t len);

#endif
