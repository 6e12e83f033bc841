/*
 * conf: the INI-style configuration file (see etc/otlogin.conf and otlogin.conf(5)).
 * Unknown sections or keys, bad numbers and out-of-range values are errors: a typo in an
 * auth server's configuration must not silently fall back to a default.
 */
#ifndef OTLOGIN_CONF_H
#define OTLOGIN_CONF_H

#include <stddef.h>

/* A rate limit: at most limit events in any period seconds. limit 0 means no limit. */
struct conf_rate {
	unsigned limit;
	unsigned period;
};

struct conf {
	/* [server] */
	char *public_base_url; /* no trailing slash */
	char *issuer;
	char *db_dir;
	unsigned long max_body;
	int log_level;
	char *log;	  /* "syslog", "stderr" or a file's path (log_open) */
	int log_facility; /* the syslog facility's <syslog.h> code */
	unsigned db_cache_mb;
	int test_mode; /* as configured; see conf_test_mode for the effective value */
	/* [tokens] */
	unsigned long access_ttl, id_ttl, refresh_ttl, session_ttl, session_max_ttl;
	char *default_audience; /* "" means the client_id */
	unsigned refresh_grace; /* seconds a rotated refresh token still yields its successor */
	/* [otp] */
	unsigned otp_length;
	unsigned otp_ttl_minutes, otp_max_ttl_minutes;
	unsigned otp_max_failures;	   /* wrong passcodes that kill one code */
	struct conf_rate account_failures; /* wrong passcodes per account before delays */
	unsigned otp_backoff;		   /* the first delay (s); it doubles per failure */
	unsigned otp_lockout_minutes;	   /* the longest delay */
	/* [keys] */
	char *key_algorithm;	    /* RS256, ES256 or EdDSA: for init and rotate */
	unsigned key_publish_ahead; /* seconds a rotated-in key is published before it signs */
	unsigned key_overlap;	    /* seconds a replaced key stays published */
	/* [link] */
	unsigned link_ttl_minutes, link_max_ttl_minutes;
	unsigned link_code_ttl; /* seconds the code of a redirect lives */
	/* [mail] */
	char *mail_from, *mail_from_name;
	char *smtp_host;
	unsigned smtp_port;
	int smtp_starttls; /* 1 required, 0 off; after conf_load, "auto" is 1 unless smtp_host is
			      a loopback address (conf_host_is_loopback) */
	char *smtp_user, *smtp_password;
	unsigned smtp_timeout;
	char *maildir;
	/* [sms] */
	char *sms_backend; /* "none", "smstools", "command", "email" */
	char *sms_spool_dir, *sms_test_spool_dir;
	char *sms_command;
	unsigned sms_command_timeout;
	char *sms_email_gateway;
	char *sms_default_message;
	char *sms_sender_id; /* "" for none */
	unsigned sms_max_segments;
	/* [limits] (see ratelimit.h; 0 turns a limit off) */
	unsigned send_cooldown;			 /* seconds between two messages to one recipient */
	struct conf_rate recipient_sends;	 /* messages to one address or number */
	struct conf_rate client_emails;		 /* a client's mails (a spend cap) */
	struct conf_rate client_sms;		 /* a client's SMS (a spend cap) */
	struct conf_rate identifier_attempts;	 /* failed authenticates per identifier */
	struct conf_rate ip_attempts;		 /* failed authenticates per end-user address */
	struct conf_rate client_attempts;	 /* failed authenticates per client */
	struct conf_rate client_secret_failures; /* free wrong secrets per client and address */
	unsigned client_secret_delay;		 /* then the first delay (s), doubling */
	unsigned client_secret_max_delay;	 /* up to this (s) */
	struct conf_rate authorization_flows;	 /* hosted login flows per end-user address */
	/* [hosted] */
	char *templates_dir; /* the hosted login page's text sets, one directory per locale */
	/* [metrics] GET /metrics: off unless one of them is set */
	char *metrics_allow; /* client address CIDRs, comma- or space-separated ("" none) */
	char *metrics_token; /* a bearer token ("" none): a secret, wiped by conf_free */
	/* [replication] a site of a Berkeley DB replication group (store_replication) */
	int rep_enabled;
	char *rep_local, *rep_peers; /* host:port; host:port, ... */
	int rep_creator;
	unsigned rep_priority, rep_ack_timeout_ms, rep_heartbeat_send_ms, rep_heartbeat_monitor_ms,
	    rep_retry_ms;
	/* [audit] the audit trail (audit.h) */
	char *audit_log;    /* "syslog", "off" or a file's path (audit_open) */
	int audit_facility; /* its syslog facility's <syslog.h> code */
};

/* Fill c with the built-in defaults (allocated strings; release with conf_free). */
void conf_defaults(struct conf *c);

/*
 * Load path over the defaults. Relative paths in the file are resolved against the file's
 * directory. Returns 0, or -1 with a message naming the line in err (size errlen); on -1 the
 * struct still holds valid (partly loaded) values and must be freed with conf_free.
 */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen);

/* The path to load: explicit (from -c) if not NULL, else $OTLOGIN_CONF, else the default. */
const char *conf_path(const char *explicit_path);

void conf_free(struct conf *c);

/*
 * 1 when the server runs in test mode: [server] test_mode = yes, or no [mail] smtp_host (mail
 * then goes to the development Maildir). In test mode nothing leaves the host: mail goes to
 * [mail] maildir and SMS to [sms] test_spool_dir. conf_load warns about it loudly and GET
 * /health reports it, so that it cannot stay on unnoticed in production.
 */
int conf_test_mode(const struct conf *c);

/*
 * 1 when the len bytes at host name this machine's loopback: "localhost" (any case), an IPv4
 * address in 127.0.0.0/8 (dotted quad), ::1 or ::ffff:127.x.y.z, bare or in brackets.
 * Anything else, other names that resolve to 127.0.0.1 included, is 0.
 */
int conf_host_is_loopback(const char *host, size_t len);

#endif
