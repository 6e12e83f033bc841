/*
 * mail: validates addresses, composes the one-time login messages (text/plain beside HTML,
 * optional inline logo; encoded by mime.c) and hands them to a delivery backend: mail_smtp
 * (libesmtp, to the configured relay) or mail_maildir (a local Maildir, the development and
 * demo default).
 */
#ifndef OTLOGIN_MAIL_H
#define OTLOGIN_MAIL_H

#include <stddef.h>

/* Delivery settings, filled by the caller from the configuration. */
struct mail_conf {
	const char *smtp_host; /* relay host; NULL or "" selects the Maildir backend */
	unsigned smtp_port;    /* default 25 */
	int smtp_starttls;     /* 1: STARTTLS required and the certificate verified */
	const char *smtp_user; /* SMTP AUTH user, NULL for none */
	const char *smtp_password;
	unsigned smtp_timeout; /* seconds, bounds connect and every SMTP stage */
	const char *maildir;   /* Maildir root (new/, cur/, tmp/ created as needed) */
};

/* email_content of API.md. NULL members are absent. */
struct mail_content {
	const char *subject;
	const char *primary_color; /* "#RRGGBB" */
	const char *base64logo;	   /* standard base64 of a PNG, JPEG or GIF, <= 20000 chars */
	const char *header_text;
	const char *body_text;
	const char *link_text;
	const char *info_text;
	const char *footer_text;
	const char *sender_name;
};

/* MAIL_OTP_LINK: one mail with both the passcode and the link (the hosted login page). */
enum mail_kind { MAIL_OTP, MAIL_LINK, MAIL_OTP_LINK };

struct mail_request {
	enum mail_kind kind;
	const char *from_addr; /* envelope and From: address (validated by mail_compose) */
	const char *from_name; /* default display name when content.sender_name is absent */
	const char *to_addr;
	const char *app_name; /* the client's display name, used by the default template */
	const char *code;     /* MAIL_OTP, MAIL_OTP_LINK: the passcode */
	const char *url;      /* MAIL_LINK, MAIL_OTP_LINK: the link */
	unsigned minutes;     /* lifetime shown to the user */
	int custom;	      /* 1 when email_content was given: absent text fields are empty */
	struct mail_content content;
};

enum mail_error {
	MAIL_OK = 0,
	MAIL_EADDR = -1,  /* a bad address */
	MAIL_EINPUT = -2, /* bad content: header with controls, bad colour, bad or too large logo */
	MAIL_ENOMEM = -3,
	MAIL_EDELIVER = -4 /* the backend could not deliver (details logged) */
};

/* 1 when addr is a plain addr-spec safe to hand to libesmtp (see mail.c for the rules), else 0. */
int mail_address_valid(const char *addr);

/* 1 when s is "#RRGGBB" (hex digits, either case), else 0. */
int mail_color_valid(const char *s);

/*
 * Compose the complete RFC 5322 message (CRLF line ends, Date, Message-ID, MIME-Version,
 * multipart/alternative text + HTML, multipart/related when a logo is embedded as cid:).
 * On MAIL_OK *out is a new NUL-terminated buffer (caller frees) and *outlen its length.
 * Returns a mail_error.
 */
int mail_compose(const struct mail_request *r, char **out, size_t *outlen);

/* A delivery backend (OpenSMTPD style): a name and a send function returning a mail_error. */
struct mail_backend {
	const char *name;
	int (*send)(const struct mail_conf *conf, const char *from, const char *to, const char *msg,
		    size_t len);
};

extern const struct mail_backend mail_smtp_backend;
extern const struct mail_backend mail_maildir_backend;

/* The backend the configuration selects. */
const struct mail_backend *mail_backend_for(const struct mail_conf *conf);

/* Deliver msg from -> to through the configured backend. Returns a mail_error. */
int mail_send(const struct mail_conf *conf, const char *from, const char *to, const char *msg,
	      size_t len);

#endif
