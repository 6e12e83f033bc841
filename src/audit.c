#include "audit.h"

#include <errno.h>
#include <jansson.h>
#include <paths.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "store.h"

/*
 * Events a transaction may hold back (session_end_all's batch of 100 sessions is the most a
 * flow makes); past it, when memory runs out, an event is written at once rather than lost.
 */
#define PENDING_MAX 4096
/* Longest value kept of a common field (ids, addresses); longer ones are cut. */
#define FIELD_MAX 128

enum audit_target { AUDIT_OFF, AUDIT_SYSLOG, AUDIT_FILE };

static enum audit_target audit_to = AUDIT_OFF;
static struct logfile audit_file = {.fd = -1};
static int syslog_fd = -1, syslog_stream, syslog_facility = LOG_AUTHPRIV;
static const char *syslog_path = _PATH_LOG;
static char cur_req[FIELD_MAX + 1], cur_ip[FIELD_MAX + 1], cur_client[FIELD_MAX + 1];

/* What the running transaction attempt recorded (store_run: audit_txn_begin/end). */
static int in_txn;
static struct pending {
	char *line; /* without its newline */
	int keep;   /* written after a refusal too (a throttle) */
} * pending;
static size_t npending, pending_room;

static void copy_field(char *out, const char *value)
{
	size_t n = value == NULL ? 0 : strnlen(value, FIELD_MAX);
	memcpy(out, value == NULL ? "" : value, n);
	out[n] = '\0';
}

void audit_set_request(const char *request_id, const char *ip)
{
	copy_field(cur_req, request_id);
	copy_field(cur_ip, ip);
}

void audit_set_client(const char *client_id)
{
	copy_field(cur_client, client_id);
}

/*
 * Connect (again) to the syslog daemon's socket: a datagram socket as journald and rsyslog
 * listen on, else a stream one (as glibc's syslog() falls back to). Returns 0 or -1.
 */
static int syslog_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (syslog_fd >= 0)
		close(syslog_fd);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", syslog_path);
	for (syslog_stream = 0; syslog_stream < 2; syslog_stream++) {
		int type = syslog_stream ? SOCK_STREAM : SOCK_DGRAM;

		syslog_fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		if (syslog_fd < 0)
			return -1;
		if (connect(syslog_fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return 0;
		close(syslog_fd);
		syslog_fd = -1;
		if (errno != EPROTOTYPE)
			return -1;
	}
	return -1;
}

/*
 * One line to syslog under AUDIT_IDENT: a socket of its own, since openlog's ident is the
 * process's and belongs to the log (the admin tells the streams apart by ident and facility).
 */
static void syslog_send(const char *line)
{
	char msg[8192], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	n = snprintf(msg, sizeof(msg), "<%d>%s %s[%ld]: %s", syslog_facility | LOG_INFO, stamp,
		     AUDIT_IDENT, (long)getpid(), line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	/* On a stream the NUL ends the message (as glibc's syslog() frames it). */
	/* The daemon may have restarted since: connect once more before giving up. */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (syslog_fd < 0 && syslog_connect() < 0)
			continue;
		if (send(syslog_fd, msg, (size_t)n + (syslog_stream ? 1 : 0), MSG_NOSIGNAL) ==
		    n + (syslog_stream ? 1 : 0))
			return;
		close(syslog_fd);
		syslog_fd = -1;
	}
}

static void write_line(const char *line)
{
	if (audit_to == AUDIT_FILE) {
		size_t len = strlen(line);
		char *buf = malloc(len + 1);
		if (buf == NULL)
			return;
		memcpy(buf, line, len);
		buf[len] = '\n';
		logfile_write(&audit_file, buf, len + 1);
		free(buf);
	} else if (audit_to == AUDIT_SYSLOG) {
		syslog_send(line);
	}
}

void audit_syslog_socket(const char *path)
{
	syslog_path = path != NULL ? path : _PATH_LOG;
}

int audit_open(const char *target, int facility, char *err, size_t errlen)
{
	audit_close();
	if (strcmp(target, "off") == 0)
		return 0;
	if (strcmp(target, "syslog") == 0) {
		syslog_facility = facility;
		syslog_connect(); /* again at the first event when no daemon listens yet */
		audit_to = AUDIT_SYSLOG;
		return 0;
	}
	if (strcmp(target, "stderr") == 0) {
		snprintf(err, errlen, "audit log: expected syslog, off or a file");
		return -1;
	}
	if (logfile_open(&audit_file, target) < 0) {
		snprintf(err, errlen, "cannot open the audit file %s: %s", target, strerror(errno));
		return -1;
	}
	audit_to = AUDIT_FILE;
	return 0;
}

void audit_close(void)
{
	for (size_t i = 0; i < npending; i++)
		free(pending[i].line);
	free(pending);
	pending = NULL;
	npending = pending_room = 0;
	in_txn = 0;
	logfile_close(&audit_file);
	if (syslog_fd >= 0)
		close(syslog_fd);
	syslog_fd = -1;
	audit_to = AUDIT_OFF;
}

/* A JSON string of value, or null; bytes that are not UTF-8 become '?' (never lost silently). */
static json_t *str_or_null(const char *value)
{
	json_t *s;
	char *copy;

	if (value == NULL || value[0] == '\0')
		return json_null();
	s = json_string(value);
	if (s != NULL)
		return s;
	copy = strdup(value);
	if (copy == NULL)
		return json_null();
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	s = json_string(copy);
	free(copy);
	return s != NULL ? s : json_null();
}

static int is_common(const char *name)
{
	return strcmp(name, "request_id") == 0 || strcmp(name, "client_id") == 0 ||
	       strcmp(name, "user_id") == 0 || strcmp(name, "ip") == 0;
}

/* Write the line now, or hold it until the transaction's end. */
static void record(char *line, int keep)
{
	if (in_txn && npending == pending_room && pending_room < PENDING_MAX) {
		size_t room = pending_room ? 2 * pending_room : 16;
		struct pending *p = realloc(pending, room * sizeof(*p));
		if (p != NULL) {
			pending = p;
			pending_room = room;
		}
	}
	if (in_txn && npending < pending_room) {
		pending[npending].line = line;
		pending[npending].keep = keep;
		npending++;
		return;
	}
	write_line(line);
	free(line);
}

/* The line of one event (new), or NULL. */
static char *format_event(const char *event, int success, const char *reason, va_list ap)
{
	json_t *o = json_object();
	struct timespec now;
	struct tm tm;
	char stamp[48], masked[128];
	const char *name;
	char *line = NULL;

	if (o == NULL)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%03ldZ",
		 now.tv_nsec / 1000000L);
	/* The common fields first, in a fixed order: a reader can rely on their presence. */
	json_object_set_new(o, "ts", json_string(stamp));
	json_object_set_new(o, "event", str_or_null(event));
	json_object_set_new(o, "outcome", json_string(success ? "success" : "failure"));
	json_object_set_new(o, "reason", str_or_null(success ? NULL : reason));
	json_object_set_new(o, "request_id", str_or_null(cur_req));
	json_object_set_new(o, "client_id", str_or_null(cur_client));
	json_object_set_new(o, "user_id", json_null());
	json_object_set_new(o, "ip", str_or_null(cur_ip));
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *value = va_arg(ap, const char *);
		if (value == NULL && !is_common(name))
			continue;
		if (value != NULL &&
		    (strcmp(name, "destination") == 0 || strcmp(name, "identifier") == 0))
			value = log_mask_addr(value, masked, sizeof(masked));
		/* A common field given explicitly replaces the request's; NULL keeps it. */
		if (value != NULL || !is_common(name))
			json_object_set_new(o, name, str_or_null(value));
	}
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(o);
	return line;
}

void audit_event(const char *event, int success, const char *reason, ...)
{
	va_list ap;
	char *line;

	if (audit_to == AUDIT_OFF)
		return;
	va_start(ap, reason);
	line = format_event(event, success, reason, ap);
	va_end(ap);
	if (line != NULL)
		record(line, 0);
}

void audit_throttled(const char *kind, unsigned retry_after, const char *user_id)
{
	char wait[16];

	if (audit_to == AUDIT_OFF)
		return;
	snprintf(wait, sizeof(wait), "%u", retry_after);
	audit_event("throttled", 0, kind, "user_id", user_id, "rule", kind, "retry_after", wait,
		    (char *)NULL);
	/* The line just recorded is the last pending one: it survives a refusal. */
	if (in_txn && npending > 0)
		pending[npending - 1].keep = 1;
}

void audit_lockout(unsigned seconds)
{
	char wait[16];

	snprintf(wait, sizeof(wait), "%u", seconds);
	audit_event("lockout", 0, "too_many_failures", "retry_after", wait, (char *)NULL);
}

const char *audit_reason(int rc)
{
	static const char *const names[ERR_COUNT] = {
	    [ERR_NONE] = NULL,
	    [ERR_INVALID_INPUT] = "invalid_input",
	    [ERR_INVALID_TOKEN] = "invalid_token",
	    [ERR_FORBIDDEN] = "forbidden",
	    [ERR_NOT_FOUND] = "not_found",
	    [ERR_METHOD] = "method",
	    [ERR_TOO_LARGE] = "too_large",
	    [ERR_MEDIA_TYPE] = "media_type",
	    [ERR_CONFLICT] = "conflict",
	    [ERR_RATE_LIMITED] = "rate_limited",
	    [ERR_INTERNAL] = "internal",
	    [ERR_DELIVERY] = "delivery_failed",
	    [ERR_UNAVAILABLE] = "unavailable",
	    [ERR_BAD_CREDENTIALS] = "bad_credentials",
	    [ERR_CODE_EXPIRED] = "code_expired",
	    [ERR_LOCKED] = "locked",
	    [ERR_USER_NOT_FOUND] = "user_not_found",
	    [ERR_USER_NOT_ACTIVE] = "user_not_active",
	    [ERR_EMAIL_MISSING] = "email_missing",
	    [ERR_PHONE_MISSING] = "phone_missing",
	    [ERR_SESSION_NOT_FOUND] = "session_not_found",
	    [ERR_ORG_NOT_MEMBER] = "org_not_member",
	};

	if (rc < 0)
		return "unavailable";
	if (rc >= ERR_COUNT)
		return "internal";
	return names[rc];
}

void audit_login(const char *method, int rc, const char *client_id, const char *user_id,
		 const char *identifier, const char *ip)
{
	audit_event("login", rc == ERR_NONE, audit_reason(rc), "client_id", client_id, "user_id",
		    user_id, "ip", ip, "method", method, "identifier", identifier, (char *)NULL);
}

void audit_logout_browser(const char *user_id, int ended)
{
	char n[16];

	snprintf(n, sizeof(n), "%d", ended);
	audit_event("logout", 1, NULL, "user_id", user_id, "method", "rp_initiated",
		    "sessions_ended", n, (char *)NULL);
}

void audit_admin(int argc, char **argv, int rc)
{
	const char *action = argc > 1 ? argv[1] : NULL, *target = NULL;
	char uid[24], status[16];

	if (argc < 1 || (action != NULL && strcmp(action, "list") == 0))
		return;
	/* "org member add": the action is two words. */
	if (action != NULL && strcmp(action, "member") == 0 && argc > 2)
		action = strcmp(argv[2], "add") == 0 ? "member_add" : "member";
	if (action != NULL && strcmp(action, "update") == 0 && argc > 2 && argv[2][0] != '-')
		target = argv[2];
	if (action != NULL && action[0] == '-')
		action = NULL;
	snprintf(uid, sizeof(uid), "%ld", (long)getuid());
	snprintf(status, sizeof(status), "%d", rc);
	audit_event("admin", rc == 0, "failed", "object", argv[0], "action", action, "target",
		    target, "by", "otloginctl", "uid", uid, "exit_status", status, (char *)NULL);
}

void audit_txn_begin(void)
{
	for (size_t i = 0; i < npending; i++)
		free(pending[i].line);
	npending = 0;
	in_txn = 1;
}

void audit_txn_end(int committed, int refused)
{
	in_txn = 0;
	for (size_t i = 0; i < npending; i++) {
		if (committed || (refused && pending[i].keep))
			write_line(pending[i].line);
		free(pending[i].line);
	}
	npending = 0;
}
