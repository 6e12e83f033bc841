#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "sms.h"

#ifndef DATADIR
#define DATADIR "/usr/share"
#endif
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* T_LOG: "syslog", "stderr" or a path; T_FACILITY: a syslog facility name. */
enum conf_type {
	T_STR,
	T_PATH,
	T_ULONG,
	T_UINT,
	T_BOOL,
	T_LOGLEVEL,
	T_RATE,
	T_STARTTLS,
	T_LOG,
	T_FACILITY
};

/* [mail] smtp_starttls = auto until conf_check decides it from smtp_host. */
#define STARTTLS_AUTO (-1)

/* The longest period a rate limit may have: a week. */
#define RATE_MAX_PERIOD 604800ul

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	size_t offset;
	unsigned long min, max; /* for numbers */
	const char *def;
};

#define O(f) offsetof(struct conf, f)
static const struct conf_key conf_keys[] = {
    {"server", "public_base_url", T_STR, O(public_base_url), 0, 0, "http://127.0.0.1:8080/cis"},
    {"server", "issuer", T_STR, O(issuer), 0, 0, ""},
    {"server", "db_dir", T_PATH, O(db_dir), 0, 0, "/var/lib/otlogin/db"},
    {"server", "max_body", T_ULONG, O(max_body), 1024, 16ul << 20, "65536"},
    {"server", "log_level", T_LOGLEVEL, O(log_level), 0, 0, "info"},
    {"server", "log", T_LOG, O(log), 0, 0, "syslog"},
    {"server", "log_facility", T_FACILITY, O(log_facility), 0, 0, "daemon"},
    {"server", "db_cache_mb", T_UINT, O(db_cache_mb), 1, 65536, "16"},
    {"server", "test_mode", T_BOOL, O(test_mode), 0, 0, "no"},
    {"tokens", "access_ttl", T_ULONG, O(access_ttl), 60, 86400, "3600"},
    {"tokens", "id_ttl", T_ULONG, O(id_ttl), 60, 86400, "3600"},
    {"tokens", "refresh_ttl", T_ULONG, O(refresh_ttl), 60, 31536000, "1209600"},
    {"tokens", "session_ttl", T_ULONG, O(session_ttl), 60, 31536000, "1209600"},
    {"tokens", "session_max_ttl", T_ULONG, O(session_max_ttl), 60, 315360000, "7776000"},
    {"tokens", "refresh_grace", T_UINT, O(refresh_grace), 0, 10, "10"},
    {"tokens", "default_audience", T_STR, O(default_audience), 0, 0, ""},
    {"otp", "length", T_UINT, O(otp_length), 4, 8, "6"},
    {"otp", "ttl_minutes", T_UINT, O(otp_ttl_minutes), 1, 1440, "10"},
    {"otp", "max_ttl_minutes", T_UINT, O(otp_max_ttl_minutes), 1, 1440, "60"},
    {"otp", "max_failures", T_UINT, O(otp_max_failures), 1, 100, "3"},
    {"otp", "lockout_minutes", T_UINT, O(otp_lockout_minutes), 1, 10080, "15"},
    {"otp", "account_failures", T_RATE, O(account_failures), 1, 1000000, "10/1h"},
    {"otp", "backoff_seconds", T_UINT, O(otp_backoff), 1, 3600, "30"},
    {"keys", "algorithm", T_STR, O(key_algorithm), 0, 0, "RS256"},
    {"keys", "publish_ahead", T_UINT, O(key_publish_ahead), 0, 604800, "600"},
    {"keys", "overlap", T_UINT, O(key_overlap), 0, 2592000, "7800"},
    {"link", "ttl_minutes", T_UINT, O(link_ttl_minutes), 1, 10080, "15"},
    {"link", "max_ttl_minutes", T_UINT, O(link_max_ttl_minutes), 1, 10080, "1440"},
    {"link", "code_ttl", T_UINT, O(link_code_ttl), 10, 600, "300"},
    {"mail", "from", T_STR, O(mail_from), 0, 0, "otlogin@localhost"},
    {"mail", "from_name", T_STR, O(mail_from_name), 0, 0, "otlogin"},
    {"mail", "smtp_host", T_STR, O(smtp_host), 0, 0, ""},
    {"mail", "smtp_port", T_UINT, O(smtp_port), 1, 65535, "25"},
    {"mail", "smtp_starttls", T_STARTTLS, O(smtp_starttls), 0, 0, "auto"},
    {"mail", "smtp_user", T_STR, O(smtp_user), 0, 0, ""},
    {"mail", "smtp_password", T_STR, O(smtp_password), 0, 0, ""},
    {"mail", "smtp_timeout", T_UINT, O(smtp_timeout), 1, 300, "10"},
    {"mail", "maildir", T_PATH, O(maildir), 0, 0, "/var/lib/otlogin/mail"},
    {"sms", "backend", T_STR, O(sms_backend), 0, 0, "none"},
    {"sms", "spool_dir", T_PATH, O(sms_spool_dir), 0, 0, "/var/spool/sms/outgoing"},
    {"sms", "test_spool_dir", T_PATH, O(sms_test_spool_dir), 0, 0, "/var/lib/otlogin/sms"},
    {"sms", "command", T_PATH, O(sms_command), 0, 0, ""},
    {"sms", "command_timeout", T_UINT, O(sms_command_timeout), 1, 300, "10"},
    {"sms", "email_gateway", T_STR, O(sms_email_gateway), 0, 0, ""},
    {"sms", "default_message", T_STR, O(sms_default_message), 0, 0, "{otp} is your {app} code"},
    {"sms", "sender_id", T_STR, O(sms_sender_id), 0, 0, ""},
    {"sms", "max_segments", T_UINT, O(sms_max_segments), 1, 10, "3"},
    {"limits", "send_cooldown", T_UINT, O(send_cooldown), 0, 3600, "30"},
    {"limits", "recipient_sends", T_RATE, O(recipient_sends), 1, 1000000, "10/1h"},
    {"limits", "client_emails", T_RATE, O(client_emails), 1, 1000000, "1000/1h"},
    {"limits", "client_sms", T_RATE, O(client_sms), 1, 1000000, "200/1h"},
    {"limits", "identifier_attempts", T_RATE, O(identifier_attempts), 1, 1000000, "20/1h"},
    {"limits", "ip_attempts", T_RATE, O(ip_attempts), 1, 1000000, "600/1h"},
    {"limits", "client_attempts", T_RATE, O(client_attempts), 1, 1000000, "off"},
    {"limits", "client_secret_failures", T_RATE, O(client_secret_failures), 1, 1000000, "10/15m"},
    {"limits", "client_secret_delay", T_UINT, O(client_secret_delay), 1, 3600, "1"},
    {"limits", "client_secret_max_delay", T_UINT, O(client_secret_max_delay), 1, 86400, "900"},
    {"limits", "authorization_flows", T_RATE, O(authorization_flows), 1, 1000000, "60/10m"},
    {"hosted", "templates_dir", T_PATH, O(templates_dir), 0, 0, DATADIR "/otlogin/templates"},
    {"metrics", "allow", T_STR, O(metrics_allow), 0, 0, ""},
    {"metrics", "token", T_STR, O(metrics_token), 0, 0, ""},
    {"replication", "enabled", T_BOOL, O(rep_enabled), 0, 0, "no"},
    {"replication", "local", T_STR, O(rep_local), 0, 0, ""},
    {"replication", "peers", T_STR, O(rep_peers), 0, 0, ""},
    {"replication", "creator", T_BOOL, O(rep_creator), 0, 0, "no"},
    {"replication", "priority", T_UINT, O(rep_priority), 0, 1000000, "100"},
    {"replication", "ack_timeout_ms", T_UINT, O(rep_ack_timeout_ms), 10, 60000, "1000"},
    {"replication", "heartbeat_send_ms", T_UINT, O(rep_heartbeat_send_ms), 10, 60000, "500"},
    {"replication", "heartbeat_monitor_ms", T_UINT, O(rep_heartbeat_monitor_ms), 100, 600000,
     "2000"},
    {"replication", "retry_ms", T_UINT, O(rep_retry_ms), 100, 600000, "1000"},
    {"audit", "log", T_LOG, O(audit_log), 0, 0, "syslog"},
    {"audit", "log_facility", T_FACILITY, O(audit_facility), 0, 0, "authpriv"},
};
#undef O

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static char *resolve_path(const char *value, const char *base_dir)
{
	char *out;
	if (value[0] == '/' || base_dir == NULL || value[0] == '\0')
		return strdup(value);
	if (asprintf(&out, "%s/%s", base_dir, value) < 0)
		return NULL;
	return out;
}

/*
 * Parse a rate "COUNT/PERIOD" (PERIOD: seconds, or a number with s, m, h or d; "10/h" is
 * "10/1h") or "0" / "off" for no limit. Returns 0 or -1 with err set.
 */
static int rate_parse(const struct conf_key *k, const char *value, struct conf_rate *out, char *err,
		      size_t errlen)
{
	unsigned long n, len = 1, unit = 1;
	const char *p = value;
	char *end;

	if (strcmp(value, "0") == 0 || strcmp(value, "off") == 0) {
		out->limit = out->period = 0;
		return 0;
	}
	errno = 0;
	n = isdigit((unsigned char)*p) ? strtoul(p, &end, 10) : 0;
	if (!isdigit((unsigned char)*p) || errno != 0 || *end != '/')
		goto bad;
	p = end + 1;
	if (*p == '\0')
		goto bad;
	if (isdigit((unsigned char)*p)) {
		len = strtoul(p, &end, 10);
		if (errno != 0)
			goto bad;
		p = end;
	}
	if (*p != '\0') {
		const char *units = "smhd";
		static const unsigned long mult[] = {1, 60, 3600, 86400};
		const char *u = strchr(units, *p);
		if (u == NULL || p[1] != '\0')
			goto bad;
		unit = mult[u - units];
	}
	if (n < k->min || n > k->max) {
		snprintf(err, errlen, "%s: count %lu is outside %lu..%lu", k->name, n, k->min,
			 k->max);
		return -1;
	}
	if (len == 0 || len > RATE_MAX_PERIOD / unit) {
		snprintf(err, errlen, "%s: the period must be 1 second to 7 days", k->name);
		return -1;
	}
	out->limit = (unsigned)n;
	out->period = (unsigned)(len * unit);
	return 0;
bad:
	snprintf(err, errlen, "%s: expected COUNT/PERIOD (like 10/1h or 5/30s) or off: \"%s\"",
		 k->name, value);
	return -1;
}

/* Store value into the member described by k. Returns 0 or -1 with err set. */
static int conf_set(struct conf *c, const struct conf_key *k, const char *value,
		    const char *base_dir, char *err, size_t errlen)
{
	void *field = (char *)c + k->offset;
	unsigned long n;
	char *end;

	switch (k->type) {
	case T_LOG:
		if (value[0] == '\0') {
			snprintf(err, errlen, "%s: expected syslog, stderr or a file", k->name);
			return -1;
		}
		/* A relative file is the configuration's neighbour; the keywords are no files. */
		if (strcmp(value, "syslog") == 0 || strcmp(value, "stderr") == 0 ||
		    strcmp(value, "off") == 0)
			base_dir = NULL;
		__attribute__((fallthrough));
	case T_STR:
	case T_PATH: {
		char *s = k->type != T_STR ? resolve_path(value, base_dir) : strdup(value);
		if (s == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = s;
		return 0;
	}
	case T_STARTTLS:
		if (strcmp(value, "auto") == 0) {
			*(int *)field = STARTTLS_AUTO;
			return 0;
		}
		/* yes or no, as for T_BOOL */
		__attribute__((fallthrough));
	case T_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
			 strcmp(value, "0") == 0)
			*(int *)field = 0;
		else {
			snprintf(err, errlen, "%s: expected yes or no%s", k->name,
				 k->type == T_STARTTLS ? " or auto" : "");
			return -1;
		}
		return 0;
	case T_RATE:
		return rate_parse(k, value, field, err, errlen);
	case T_FACILITY: {
		int facility = log_facility_parse(value);
		if (facility < 0) {
			snprintf(
			    err, errlen,
			    "%s: expected daemon, user, auth, authpriv, mail or local0..local7",
			    k->name);
			return -1;
		}
		*(int *)field = facility;
		return 0;
	}
	case T_LOGLEVEL: {
		int level = log_level_parse(value);
		if (level < 0) {
			snprintf(err, errlen, "%s: expected err, warn, info or debug", k->name);
			return -1;
		}
		*(int *)field = level;
		return 0;
	}
	case T_ULONG:
	case T_UINT:
		errno = 0;
		if (!isdigit((unsigned char)value[0]))
			goto bad_number;
		n = strtoul(value, &end, 10);
		if (errno != 0 || *end != '\0')
			goto bad_number;
		if (n < k->min || n > k->max) {
			snprintf(err, errlen, "%s: %lu is outside %lu..%lu", k->name, n, k->min,
				 k->max);
			return -1;
		}
		if (k->type == T_UINT)
			*(unsigned *)field = (unsigned)n;
		else
			*(unsigned long *)field = n;
		return 0;
	}
bad_number:
	snprintf(err, errlen, "%s: not a number: \"%s\"", k->name, value);
	return -1;
}

void conf_defaults(struct conf *c)
{
	char err[128];
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_set(c, &conf_keys[i], conf_keys[i].def, NULL, err, sizeof(err)) < 0)
			fatal("built-in default: %s", err);
}

static char *trim(char *s)
{
	char *end;
	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static const struct conf_key *conf_find(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

/* The [sms] keys: the backend named must have what it needs. */
static int sms_check(struct conf *c, char *err, size_t errlen)
{
	char why[128];

	if (!sms_backend_name_valid(c->sms_backend)) {
		snprintf(err, errlen, "sms backend: expected none, smstools, command or email");
		return -1;
	}
	if (!sms_template_valid(c->sms_default_message, why, sizeof(why))) {
		snprintf(err, errlen, "sms default_message: %s", why);
		return -1;
	}
	if (c->sms_sender_id[0] != '\0' && !sms_sender_valid(c->sms_sender_id)) {
		snprintf(err, errlen, "sms sender_id: 1 to 11 letters, digits or inner spaces");
		return -1;
	}
	if (strcmp(c->sms_backend, "command") == 0 && c->sms_command[0] == '\0') {
		snprintf(err, errlen, "sms backend command needs command = /path/to/program");
		return -1;
	}
	if (strcmp(c->sms_backend, "email") == 0 &&
	    strstr(c->sms_email_gateway, "{number}") == NULL) {
		snprintf(err, errlen, "sms backend email needs email_gateway = {number}@gateway");
		return -1;
	}
	if (strcmp(c->sms_backend, "smstools") == 0 && c->sms_spool_dir[0] == '\0') {
		snprintf(err, errlen, "sms backend smstools needs spool_dir");
		return -1;
	}
	return 0;
}

int conf_host_is_loopback(const char *host, size_t len)
{
	char buf[INET6_ADDRSTRLEN + 2];
	struct in_addr a4;
	struct in6_addr a6;

	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (strcasecmp(buf, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (len > 2 && buf[0] == '[' && buf[len - 1] == ']') {
		memmove(buf, buf + 1, len - 2);
		buf[len - 2] = '\0';
	}
	if (inet_pton(AF_INET6, buf, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return 0;
}

int conf_test_mode(const struct conf *c)
{
	return c->test_mode || c->smtp_host == NULL || c->smtp_host[0] == '\0';
}

/*
 * [metrics]: the allow list must parse (a typo must not open or close the endpoint silently),
 * and a token must be one a client can send (token68) and hard to guess.
 */
static int metrics_check(struct conf *c, char *err, size_t errlen)
{
	size_t len = strlen(c->metrics_token);

	if (!metrics_cidr_list_valid(c->metrics_allow)) {
		snprintf(err, errlen,
			 "metrics allow: expected addresses or CIDRs (10.0.0.0/8, ::1)");
		return -1;
	}
	if (len > 0 && (len < 16 || strspn(c->metrics_token, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
							     "abcdefghijklmnopqrstuvwxyz"
							     "0123456789-._~+/") != len)) {
		snprintf(err, errlen, "metrics token: at least 16 of A-Z a-z 0-9 - . _ ~ + /");
		return -1;
	}
	return 0;
}

/* Checks that span keys: run after loading. */
static int conf_check(struct conf *c, char *err, size_t errlen)
{
	size_t len = strlen(c->public_base_url), scheme;

	while (len > 0 && c->public_base_url[len - 1] == '/')
		c->public_base_url[--len] = '\0';
	/* A host must follow the scheme: "http://" alone would become "http:" above. */
	scheme = strncmp(c->public_base_url, "http://", 7) == 0	   ? 7
		 : strncmp(c->public_base_url, "https://", 8) == 0 ? 8
								   : 0;
	if (scheme == 0 || len == scheme || c->public_base_url[scheme] == '/') {
		snprintf(err, errlen, "public_base_url must be http://HOST... or https://HOST...");
		return -1;
	}
	if (c->issuer[0] == '\0') {
		free(c->issuer);
		c->issuer = strdup(c->public_base_url);
	}
	if (c->otp_ttl_minutes > c->otp_max_ttl_minutes) {
		snprintf(err, errlen, "otp ttl_minutes exceeds max_ttl_minutes");
		return -1;
	}
	if (strcmp(c->key_algorithm, "RS256") != 0 && strcmp(c->key_algorithm, "ES256") != 0 &&
	    strcmp(c->key_algorithm, "EdDSA") != 0) {
		snprintf(err, errlen, "keys algorithm must be RS256, ES256 or EdDSA");
		return -1;
	}
	if (c->link_ttl_minutes > c->link_max_ttl_minutes) {
		snprintf(err, errlen, "link ttl_minutes exceeds max_ttl_minutes");
		return -1;
	}
	/*
	 * auto: STARTTLS is required (and the certificate verified) unless the relay is on this
	 * host, where nothing crosses a network: mail and SMTP AUTH passwords never go to a remote
	 * relay in clear unless smtp_starttls = no says so.
	 */
	if (c->smtp_starttls == STARTTLS_AUTO)
		c->smtp_starttls = !conf_host_is_loopback(c->smtp_host, strlen(c->smtp_host));
	if (c->session_ttl > c->session_max_ttl) {
		snprintf(err, errlen, "session_ttl exceeds session_max_ttl");
		return -1;
	}
	if (metrics_check(c, err, errlen) < 0)
		return -1;
	if (c->rep_enabled && (c->rep_local[0] == '\0' || c->rep_peers[0] == '\0')) {
		snprintf(err, errlen, "replication: enabled needs local and peers (host:port)");
		return -1;
	}
	if (c->rep_enabled && c->rep_heartbeat_monitor_ms <= c->rep_heartbeat_send_ms) {
		snprintf(err, errlen,
			 "replication: heartbeat_monitor_ms must exceed heartbeat_send_ms");
		return -1;
	}
	return sms_check(c, err, errlen);
}

int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
	FILE *f;
	char line[4096], section[64] = "", *base_dir = NULL, *slash;
	unsigned lineno = 0;
	int rc = -1;

	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	base_dir = strdup(path);
	if (base_dir == NULL)
		goto out;
	slash = strrchr(base_dir, '/');
	if (slash == NULL)
		strcpy(base_dir, ".");
	else if (slash == base_dir)
		slash[1] = '\0';
	else
		*slash = '\0';

	while (fgets(line, sizeof(line), f) != NULL) {
		char *s, *eq, *key, *value, msg[256];
		const struct conf_key *k;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			goto out;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (close == NULL || close[1] != '\0' ||
			    (size_t)(close - s - 1) >= sizeof(section)) {
				snprintf(err, errlen, "%s:%u: bad section header", path, lineno);
				goto out;
			}
			*close = '\0';
			snprintf(section, sizeof(section), "%s", trim(s + 1));
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%u: expected key = value", path, lineno);
			goto out;
		}
		*eq = '\0';
		key = trim(s);
		value = trim(eq + 1);
		k = conf_find(section, key);
		if (k == NULL) {
			snprintf(err, errlen, "%s:%u: unknown key \"%s\" in [%s]", path, lineno,
				 key, section);
			goto out;
		}
		if (conf_set(c, k, value, base_dir, msg, sizeof(msg)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, msg);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	if (conf_check(c, err, errlen) < 0)
		goto out;
	/* Every process that loads this configuration says so, every time it starts. */
	if (conf_test_mode(c))
		log_warn(
		    "TEST MODE (%s): no mail or SMS leaves this host; mail goes to the Maildir "
		    "%s, SMS to %s. Never run a production server like this: set [mail] "
		    "smtp_host and [server] test_mode = no",
		    c->test_mode ? "[server] test_mode = yes" : "[mail] smtp_host is empty",
		    c->maildir, c->sms_test_spool_dir);
	rc = 0;
out:
	free(base_dir);
	fclose(f);
	return rc;
}

const char *conf_path(const char *explicit_path)
{
	const char *env;
	if (explicit_path != NULL)
		return explicit_path;
	env = getenv("OTLOGIN_CONF");
	if (env != NULL && env[0] != '\0')
		return env;
	return SYSCONFDIR "/otlogin.conf";
}

void conf_free(struct conf *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_keys[i].type == T_STR || conf_keys[i].type == T_PATH ||
		    conf_keys[i].type == T_LOG) {
			char **field = (char **)((char *)c + conf_keys[i].offset);
			if (*field != NULL && (strcmp(conf_keys[i].name, "smtp_password") == 0 ||
					       field == &c->metrics_token))
				memset(*field, 0, strlen(*field));
			free(*field);
			*field = NULL;
		}
}
