/*
 * audit: the line format (common fields in a fixed order, then the event's own), masking of
 * destinations, no forged field or line from a value, "off", the [audit] keys, and the
 * transaction rule (an aborted or retried attempt audits nothing or once; a refusal keeps its
 * throttles only), and otloginctl's events keeping none of a command's arguments.
 */
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "conf.h"
#include "err.h"

static char dir[64], file[128];

/* The lines of the audit file as JSON objects (a new array); each line must parse. */
static json_t *read_events(void)
{
	json_t *out = json_array();
	FILE *f = fopen(file, "r");
	char line[8192];

	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);
		check_msg(o != NULL, "unparsable line: %s", line);
		check(line[strlen(line) - 1] == '\n');
		if (o != NULL)
			json_array_append_new(out, o);
	}
	if (f != NULL)
		fclose(f);
	return out;
}

static char *read_text(void)
{
	FILE *f = fopen(file, "r");
	char *buf = calloc(1, 65536);
	if (f != NULL) {
		buf[fread(buf, 1, 65535, f)] = '\0';
		fclose(f);
	}
	return buf;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void reset(void)
{
	char err[256];
	unlink(file);
	check(audit_open(file, LOG_AUTHPRIV, err, sizeof(err)) == 0);
}

static void test_format(void)
{
	static const char *const order[] = {"ts",      "event",	     "outcome",
					    "reason",  "request_id", "client_id",
					    "user_id", "ip",	     "method"};
	regex_t ts;
	json_t *ev, *o;
	const char *key;
	json_t *val;
	size_t i = 0;

	reset();
	audit_set_request("5f0c3a9e1b2d7c44", "192.0.2.7");
	audit_set_client("cli-1");
	audit_event("login", 1, "ignored on success", "user_id", "u-1", "method", "email_otp",
		    "absent", (char *)NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 1);
	o = json_array_get(ev, 0);
	json_object_foreach(o, key, val)
	{
		check_msg(i < 9 && strcmp(key, order[i]) == 0, "field %zu is %s", i, key);
		i++;
	}
	check(i == 9);
	check(regcomp(&ts, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
		      REG_EXTENDED | REG_NOSUB) == 0);
	check(regexec(&ts, str(o, "ts"), 0, NULL, 0) == 0);
	regfree(&ts);
	check(strcmp(str(o, "event"), "login") == 0);
	check(strcmp(str(o, "outcome"), "success") == 0);
	check(json_is_null(json_object_get(o, "reason")));
	check(strcmp(str(o, "request_id"), "5f0c3a9e1b2d7c44") == 0);
	check(strcmp(str(o, "client_id"), "cli-1") == 0);
	check(strcmp(str(o, "user_id"), "u-1") == 0);
	check(strcmp(str(o, "ip"), "192.0.2.7") == 0);
	check(json_object_get(o, "absent") == NULL);
	json_decref(ev);

	/* Failure: the reason; an explicit ip and client_id replace the request's. */
	reset();
	audit_login("magic_link", ERR_BAD_CREDENTIALS, "cli-2", NULL, "carol@example.net",
		    "198.51.100.9");
	ev = read_events();
	o = json_array_get(ev, 0);
	check(strcmp(str(o, "outcome"), "failure") == 0);
	check(strcmp(str(o, "reason"), "bad_credentials") == 0);
	check(strcmp(str(o, "client_id"), "cli-2") == 0);
	check(strcmp(str(o, "ip"), "198.51.100.9") == 0);
	check(json_is_null(json_object_get(o, "user_id")));
	check(strcmp(str(o, "method"), "magic_link") == 0);
	check(strcmp(str(o, "identifier"), "ca***@ex***") == 0);
	json_decref(ev);

	/* Outside a request every common field is there, null. */
	reset();
	audit_set_request(NULL, NULL);
	audit_set_client(NULL);
	audit_event("admin", 0, "failed", (char *)NULL);
	ev = read_events();
	o = json_array_get(ev, 0);
	check(json_is_null(json_object_get(o, "request_id")));
	check(json_is_null(json_object_get(o, "client_id")));
	check(json_is_null(json_object_get(o, "ip")));
	check(strcmp(str(o, "reason"), "failed") == 0);
	json_decref(ev);
}

static void test_no_secrets(void)
{
	json_t *ev;
	char *text;

	reset();
	audit_event("message_sent", 1, NULL, "channel", "email", "destination",
		    "alice.smith@example.com", (char *)NULL);
	audit_event("message_sent", 1, NULL, "channel", "sms", "destination", "+4915112345678",
		    (char *)NULL);
	text = read_text();
	check(strstr(text, "alice") == NULL && strstr(text, "example.com") == NULL);
	check(strstr(text, "12345678") == NULL);
	free(text);
	ev = read_events();
	check(strcmp(str(json_array_get(ev, 0), "destination"), "al***@ex***") == 0);
	check(strcmp(str(json_array_get(ev, 1), "destination"), "+4***") == 0);
	json_decref(ev);

	/* A value can neither end the line nor forge a field. */
	reset();
	audit_event("login", 0, "x", "user_id", "u\n{\"event\":\"forged\"}\",\"outcome\":\"success",
		    "bad_utf8", "\xff\xfe", (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 1);
	check(strcmp(str(json_array_get(ev, 0), "event"), "login") == 0);
	check(strcmp(str(json_array_get(ev, 0), "outcome"), "failure") == 0);
	check(strcmp(str(json_array_get(ev, 0), "bad_utf8"), "??") == 0);
	json_decref(ev);
}

static void test_txn(void)
{
	json_t *ev;

	/* Aborted: nothing. */
	reset();
	audit_txn_begin();
	audit_event("session_created", 1, NULL, (char *)NULL);
	audit_txn_end(0, 0);
	ev = read_events();
	check(json_array_size(ev) == 0);
	json_decref(ev);

	/* Nothing before the commit; a retried attempt audits once. */
	audit_txn_begin();
	audit_event("session_created", 1, NULL, (char *)NULL);
	audit_txn_begin(); /* store_run's next attempt after a lock conflict */
	audit_event("session_created", 1, NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 0);
	json_decref(ev);
	audit_txn_end(1, 0);
	ev = read_events();
	check(json_array_size(ev) == 1);
	json_decref(ev);

	/* Refused: the throttle stays, the rest goes. */
	reset();
	audit_txn_begin();
	audit_event("session_created", 1, NULL, (char *)NULL);
	audit_throttled("recipient", 30, NULL);
	audit_txn_end(0, 1);
	ev = read_events();
	check(json_array_size(ev) == 1);
	check(strcmp(str(json_array_get(ev, 0), "event"), "throttled") == 0);
	check(strcmp(str(json_array_get(ev, 0), "rule"), "recipient") == 0);
	check(strcmp(str(json_array_get(ev, 0), "retry_after"), "30") == 0);
	check(strcmp(str(json_array_get(ev, 0), "reason"), "recipient") == 0);
	json_decref(ev);

	/* A throttle of an attempt retried afterwards is not kept. */
	reset();
	audit_txn_begin();
	audit_throttled("ip", 5, NULL);
	audit_txn_end(0, 0);
	ev = read_events();
	check(json_array_size(ev) == 0);
	json_decref(ev);

	/* A big transaction (session_end_all's batch of 100) holds every event until its end. */
	reset();
	audit_txn_begin();
	for (int i = 0; i < 150; i++)
		audit_event("session_ended", 1, NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 0);
	json_decref(ev);
	audit_txn_end(1, 0);
	ev = read_events();
	check(json_array_size(ev) == 150);
	json_decref(ev);

	/* Outside a transaction: at once. */
	reset();
	audit_event("logout", 1, NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 1);
	json_decref(ev);
}

static void test_admin(void)
{
	char *a_list[] = {"client", "list"};
	char *a_add[] = {"user",    "add",	   "--email", "bob.jones@example.org",
			 "--phone", "+33612345678"};
	char *a_update[] = {"client", "update", "cli-9", "--client-secret", "s3cr3t-value"};
	char *a_member[] = {"org", "member", "add", "org-1", "u-1"};
	json_t *ev, *o;
	char *text;

	reset();
	audit_admin(2, a_list, 0);
	audit_admin(6, a_add, 0);
	audit_admin(5, a_update, 1);
	audit_admin(5, a_member, 0);
	text = read_text();
	check(strstr(text, "bob") == NULL && strstr(text, "12345678") == NULL);
	check(strstr(text, "s3cr3t") == NULL);
	free(text);
	ev = read_events();
	check(json_array_size(ev) == 3);
	o = json_array_get(ev, 0);
	check(strcmp(str(o, "event"), "admin") == 0);
	check(strcmp(str(o, "object"), "user") == 0 && strcmp(str(o, "action"), "add") == 0);
	check(strcmp(str(o, "outcome"), "success") == 0);
	check(strcmp(str(o, "by"), "otloginctl") == 0);
	check(atol(str(o, "uid")) == (long)getuid());
	o = json_array_get(ev, 1);
	check(strcmp(str(o, "target"), "cli-9") == 0);
	check(strcmp(str(o, "outcome"), "failure") == 0);
	check(strcmp(str(o, "exit_status"), "1") == 0);
	o = json_array_get(ev, 2);
	check(strcmp(str(o, "action"), "member_add") == 0);
	json_decref(ev);
}

static void test_off_and_conf(void)
{
	struct conf c;
	char err[256], path[160];
	FILE *f;
	json_t *ev;

	unlink(file);
	check(audit_open("off", LOG_AUTHPRIV, err, sizeof(err)) == 0);
	audit_event("login", 1, NULL, (char *)NULL);
	check(access(file, F_OK) != 0);
	check(audit_open("stderr", LOG_AUTHPRIV, err, sizeof(err)) < 0);
	check(audit_open("/nonexistent-dir/audit.log", LOG_AUTHPRIV, err, sizeof(err)) < 0);
	check(strstr(err, "/nonexistent-dir/audit.log") != NULL);

	conf_defaults(&c);
	check(strcmp(c.audit_log, "syslog") == 0);
	check(c.audit_facility == LOG_AUTHPRIV);
	conf_free(&c);

	/* A relative file is the configuration's neighbour; "off" is a keyword. */
	snprintf(path, sizeof(path), "%s/otlogin.conf", dir);
	f = fopen(path, "w");
	fputs("[audit]\nlog = audit.log\nlog_facility = local3\n", f);
	fclose(f);
	conf_defaults(&c);
	check(conf_load(&c, path, err, sizeof(err)) == 0);
	check(strcmp(c.audit_log, file) == 0);
	check(c.audit_facility == LOG_LOCAL3);
	conf_free(&c);
	f = fopen(path, "w");
	fputs("[audit]\nlog = off\n", f);
	fclose(f);
	conf_defaults(&c);
	check(conf_load(&c, path, err, sizeof(err)) == 0);
	check(strcmp(c.audit_log, "off") == 0);
	conf_free(&c);
	f = fopen(path, "w");
	fputs("[audit]\nlog_facility = nonsense\n", f);
	fclose(f);
	conf_defaults(&c);
	check(conf_load(&c, path, err, sizeof(err)) < 0);
	conf_free(&c);
	unlink(path);

	/* The file is created 0640 and appended to by a second opener. */
	reset();
	audit_event("a", 1, NULL, (char *)NULL);
	reset();
	audit_event("b", 1, NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 1); /* reset() removed the first */
	json_decref(ev);
	{
		char err2[256];
		check(audit_open(file, LOG_AUTHPRIV, err2, sizeof(err2)) == 0);
	}
	audit_event("c", 1, NULL, (char *)NULL);
	ev = read_events();
	check(json_array_size(ev) == 2);
	json_decref(ev);
}

/* A datagram listener at path, as a syslog daemon's /dev/log. */
static int listen_dgram(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct timeval tv = {.tv_sec = 5};

	unlink(path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* One datagram's JSON after "<PRI>Mmm dd hh:mm:ss otlogin-audit[PID]: ", checked. */
static json_t *recv_event(int fd, int facility)
{
	char buf[8192], head[64];
	ssize_t n = fd < 0 ? -1 : recv(fd, buf, sizeof(buf) - 1, 0);
	const char *json;

	if (!check(n > 0))
		return NULL;
	buf[n] = '\0';
	snprintf(head, sizeof(head), "<%d>", facility | LOG_INFO);
	check_msg(strncmp(buf, head, strlen(head)) == 0, "datagram: %s", buf);
	snprintf(head, sizeof(head), " otlogin-audit[%ld]: {", (long)getpid());
	json = strstr(buf, head);
	check_msg(json != NULL, "datagram: %s", buf);
	return json != NULL ? json_loads(json + strlen(head) - 1, 0, NULL) : NULL;
}

static void test_syslog(void)
{
	char sock[160], err[256];
	json_t *o;
	int fd;

	snprintf(sock, sizeof(sock), "%s/log.sock", dir);
	fd = listen_dgram(sock);
	check(fd >= 0);
	audit_syslog_socket(sock);
	check(audit_open("syslog", LOG_LOCAL3, err, sizeof(err)) == 0);
	audit_event("login", 1, NULL, "method", "session", (char *)NULL);
	o = recv_event(fd, LOG_LOCAL3);
	check(o != NULL && strcmp(str(o, "event"), "login") == 0);
	check(o != NULL && strcmp(str(o, "method"), "session") == 0);
	json_decref(o);
	/* The daemon restarted (a new socket at the path): the next event reaches it. */
	close(fd);
	fd = listen_dgram(sock);
	audit_event("logout", 1, NULL, (char *)NULL);
	o = recv_event(fd, LOG_LOCAL3);
	check(o != NULL && strcmp(str(o, "event"), "logout") == 0);
	json_decref(o);
	/* A stream socket (an older syslog daemon): NUL-terminated messages. */
	close(fd);
	unlink(sock);
	{
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		char buf[8192];
		int lfd = socket(AF_UNIX, SOCK_STREAM, 0), cfd;
		ssize_t n;

		/* sock is the short path listen_dgram bound above: no truncation. */
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%.*s", (int)sizeof(sun.sun_path) - 1,
			 sock);
		check(lfd >= 0 && bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) == 0 &&
		      listen(lfd, 1) == 0);
		audit_event("stream", 1, NULL, (char *)NULL);
		cfd = accept(lfd, NULL, NULL);
		n = cfd < 0 ? -1 : recv(cfd, buf, sizeof(buf) - 1, 0);
		check(n > 0 && buf[n - 1] == '\0' && strstr(buf, "\"event\":\"stream\"") != NULL);
		if (cfd >= 0)
			close(cfd);
		close(lfd);
	}
	fd = -1;
	/* No daemon: events are dropped, nothing fails. */
	unlink(sock);
	audit_event("logout", 1, NULL, (char *)NULL);
	audit_close();
	audit_syslog_socket(NULL);
}

static void test_reasons(void)
{
	check(audit_reason(ERR_NONE) == NULL);
	check(strcmp(audit_reason(ERR_LOCKED), "locked") == 0);
	check(strcmp(audit_reason(ERR_DELIVERY), "delivery_failed") == 0);
	check(strcmp(audit_reason(-2), "unavailable") == 0);
	check(strcmp(audit_reason(ERR_COUNT + 5), "internal") == 0);
	for (int e = 1; e < ERR_COUNT; e++)
		check_msg(audit_reason(e) != NULL, "err %d has no reason", e);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/otlogin-audit-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(file, sizeof(file), "%s/audit.log", dir);
	test_format();
	test_no_secrets();
	test_txn();
	test_admin();
	test_off_and_conf();
	test_reasons();
	test_syslog();
	audit_close();
	unlink(file);
	rmdir(dir);
	return check_done();
}
