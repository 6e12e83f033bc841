/*
 * ctx: what a flow needs from the process: configuration, store, keys and mail settings.
 * Built once at startup by main or otloginctl; flows borrow it.
 */
#ifndef OTLOGIN_CTX_H
#define OTLOGIN_CTX_H

#include "conf.h"
#include "keyring.h"
#include "mail.h"
#include "store.h"

struct ctx {
	struct conf *conf;
	struct store *store;
	struct keyring *keys;
	struct mail_conf mail;
};

/* The mail settings of conf, for the mail module. */
static inline struct mail_conf ctx_mail_conf(const struct conf *c)
{
	struct mail_conf m = {
	    .smtp_host = c->smtp_host,
	    .smtp_port = c->smtp_port,
	    .smtp_starttls = c->smtp_starttls,
	    .smtp_user = c->smtp_user[0] ? c->smtp_user : NULL,
	    .smtp_password = c->smtp_password,
	    .smtp_timeout = c->smtp_timeout,
	    .maildir = c->maildir,
	};
	return m;
}

#endif
