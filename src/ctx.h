/*
 * ctx: what a flow needs from the process: configuration, store, keys and mail settings.
 * Built once at startup by main or otloginctl; flows borrow it.
 */
#ifndef OTLOGIN_CTX_H
#define OTLOGIN_CTX_H

#include <stdio.h>
#include <unistd.h>

#include "conf.h"
#include "keyring.h"
#include "log.h"
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
 * A directory that holds the group's server key and no table yet, or is in the middle of
 * copying them (Berkeley DB's internal init marker, __db.rep.init: the open that follows an
 * interrupted copy deletes what it had received): a site being built anew (a replaced disk,
 * a removed site brought back, a copy discarded) whose replication process will copy the
 * database from the group. Founding a group there, as "creator" says, would make a second
 * master beside the group's.
 */
static inline int ctx_site_to_copy(const char *db_dir)
{
	char path[4096];

	if (!keyring_server_key_exists(db_dir))
		return 0;
	if (snprintf(path, sizeof(path), "%s/__db.rep.init", db_dir) < (int)sizeof(path) &&
	    access(path, F_OK) == 0)
		return 1;
	for (int t = 0; t < TBL_COUNT; t++)
		if (snprintf(path, sizeof(path), "%s/%s", db_dir, store_table_file(t)) <
			(int)sizeof(path) &&
		    access(path, F_OK) == 0)
			return 0;
	return 1;
}

/*
 * [replication] of conf, for store_replication (call it before store_open), when enabled.
 * "creator" counts only where there is no group to join (ctx_site_to_copy). Returns 0, or
 * -1 (logged) for a bad address.
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
	if (!c->rep_enabled)
		return 0;
	if (rc.creator && ctx_site_to_copy(c->db_dir)) {
		rc.creator = 0;
		if (role == STORE_REP_PROCESS)
			log_info("replication: creator = yes does not apply: %s holds the server "
				 "key and no table yet, so this site joins the group",
				 c->db_dir);
	}
	return store_replication(&rc, role);
}

#endif
