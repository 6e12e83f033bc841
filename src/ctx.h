/*
 * ctx: what a flow needs from the process: configuration, store, keys and mail settings.
 * Built once at startup by main or otloginctl; flows borrow it.
 */
#ifndef OTLOGIN_CTX_H
#define OTLOGIN_CTX_H

#include "conf.h"
#include "keyring.h"
#include "mail.h"
#include "sms.h"
#include "store.h"

struct ctx {
	struct conf *conf;
	struct store *store;
	struct keyring *keys;
	struct mail_conf mail;
};

/* The mail settings of conf, for the mail module. Test mode always selects the Maildir. */
static inline struct mail_conf ctx_mail_conf(const struct conf *c)
{
	struct mail_conf m = {
	    .smtp_host = conf_test_mode(c) ? NULL : c->smtp_host,
	    .smtp_port = c->smtp_port,
	    .smtp_starttls = c->smtp_starttls,
	    .smtp_user = c->smtp_user[0] ? c->smtp_user : NULL,
	    .smtp_password = c->smtp_password,
	    .smtp_timeout = c->smtp_timeout,
	    .maildir = c->maildir,
	};
	return m;
}

/*
 * The SMS settings of conf, for the sms module; mail (borrowed, the caller's ctx.mail) carries
 * the email gateway backend's messages. Cheap: flows build it when they need it.
 */
static inline struct sms_conf ctx_sms_conf(const struct conf *c, const struct mail_conf *mail)
{
	struct sms_conf s = {
	    .backend = c->sms_backend,
	    .spool_dir = conf_test_mode(c) ? c->sms_test_spool_dir : c->sms_spool_dir,
	    .command = c->sms_command,
	    .command_timeout = c->sms_command_timeout,
	    .email_gateway = c->sms_email_gateway,
	    .mail_from = c->mail_from,
	    .mail = mail,
	    .test_mode = conf_test_mode(c),
	};
	return s;
}

/*
 * [replication] of conf, for store_replication (call it before store_open), when enabled.
 * Returns 0, or -1 (logged) for a bad address.
 */
static inline int ctx_replication(const struct conf *c, enum store_rep_role role)
{
	struct store_rep_conf rc = {
	    .local = c->rep_local,
	    .peers = c->rep_peers,
	    .creator = c->rep_creator,
	    .priority = c->rep_priority,
	    .ack_timeout_ms = c->rep_ack_timeout_ms,
	    .heartbeat_send_ms = c->rep_heartbeat_send_ms,
	    .heartbeat_monitor_ms = c->rep_heartbeat_monitor_ms,
	    .retry_ms = c->rep_retry_ms,
	};
	return c->rep_enabled ? store_replication(&rc, role) : 0;
}

#endif
