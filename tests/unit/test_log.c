/*
 * log: the [server] log and log_facility keys, the line format (time, program, pid, level,
 * request id, client_id), the lines kept until log_open, a file's mode and its reopening after
 * a rotation, stderr, and fatal reaching stderr whatever the log.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "crypto.h"
#include "log.h"
#include "req.h"

static char dir[64];

static const char *path_in(const char *name)
{
	static char paths[8][128];
	static int next;
	char *p = paths[next++ % 8];
	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

/* The whole file as a string (caller frees); "" when it does not exist. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	if (f != NULL) {
		size_t n = fread(buf, 1, 65535, f);
		buf[n] = '\0';
		fclose(f);
	}
	return buf;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/*
 * 1 when every line of text has the documented shape and a time between t0 and t1: "TIME
 * PROG[PID] LEVEL req=ID[ client=ID]: message", TIME in RFC 3339 UTC with milliseconds.
 */
static int lines_well_formed(const char *text, const char *prog, pid_t pid, time_t t0, time_t t1)
{
	char pattern[256], *copy = strdup(text), *save = NULL;
	regex_t re;
	int ok = 1, lines = 0;

	snprintf(pattern, sizeof(pattern),
		 "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\\.[0-9]{3}Z %s\\[%ld\\] "
		 "(error|warn|info|debug) req=[-A-Za-z0-9._:@+/=_]+( client=[-A-Za-z0-9._:@+/=_]+)?"
		 ": [^[:cntrl:]]*$",
		 prog, (long)pid);
	if (regcomp(&re, pattern, REG_EXTENDED) != 0)
		return 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t m[2];
		struct tm tm = {0};
		time_t t;

		lines++;
		if (regexec(&re, line, 2, m, 0) != 0) {
			printf("# malformed: %s\n", line);
			ok = 0;
			continue;
		}
		strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
		t = timegm(&tm);
		if (t < t0 || t > t1) {
			printf("# not UTC now: %s\n", line);
			ok = 0;
		}
	}
	regfree(&re);
	free(copy);
	return ok && lines > 0;
}

/* Run fn in a child with its stderr in the file err_path; its exit status (pid in *pidp). */
static int in_child(void (*fn)(void), const char *err_path, pid_t *pidp)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		FILE *f = freopen(err_path, "w", stderr);
		if (f == NULL)
			_exit(99);
		umask(077); /* as otlogin.fcgi runs: the file log is 0640 all the same */
		fn();
		_exit(0);
	}
	if (pidp != NULL)
		*pidp = pid;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void early_then_file(void)
{
	char err[256];

	log_init("test_log", LOG_LEVEL_INFO);
	log_warn("early warning %d", 1);
	log_debug("hidden debug");
	if (log_open(path_in("a.log"), LOG_DAEMON, err, sizeof(err)) < 0)
		_exit(2);
	log_info("after open");
	log_set_request("req-1.x");
	log_set_client("bad client\nid=1");
	log_info("line one\nline two\r\x1b[31mred");
	log_set_request(NULL);
	log_set_client(NULL);
	log_info("between requests");
}

static void on_stderr(void)
{
	char err[256];

	log_init("test_log", LOG_LEVEL_DEBUG);
	log_info("early on stderr");
	if (log_open("stderr", LOG_DAEMON, err, sizeof(err)) < 0)
		_exit(2);
	log_debug("debug on stderr");
}

static void fatal_to_file(void)
{
	char err[256];

	log_init("test_log", LOG_LEVEL_INFO);
	if (log_open(path_in("c.log"), LOG_DAEMON, err, sizeof(err)) < 0)
		_exit(2);
	log_info("before the end");
	fatal("the end: %s", "configuration");
}

static void to_syslog(void)
{
	char err[256];

	log_init("test_log", LOG_LEVEL_INFO);
	if (log_open("syslog", LOG_LOCAL3, err, sizeof(err)) < 0)
		_exit(2);
	log_info("to syslog");
}

static void conf_keys(void)
{
	struct conf c;
	char err[512], text[256];
	const char *conf_file = path_in("otlogin.conf");
	FILE *f;
	struct {
		const char *text;
		int ok;
	} cases[] = {
	    {"log = stderr\n", 1},
	    {"log = syslog\nlog_facility = local3\n", 1},
	    {"log = otlogin.log\nlog_facility = authpriv\n", 1},
	    {"log = /var/log/otlogin.log\n", 1},
	    {"log =\n", 0},
	    {"log_facility = kernel\n", 0},
	    {"log_facility = DAEMON\n", 0},
	    {"log_facility =\n", 0},
	};

	conf_defaults(&c);
	check(strcmp(c.log, "syslog") == 0);
	check(c.log_facility == LOG_DAEMON);
	conf_free(&c);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conf_defaults(&c);
		f = fopen(conf_file, "w");
		fprintf(f, "[server]\n%s", cases[i].text);
		fclose(f);
		err[0] = '\0';
		check_msg((conf_load(&c, conf_file, err, sizeof(err)) == 0) == cases[i].ok,
			  "%s: %s", cases[i].text, err);
		if (i == 0)
			check(strcmp(c.log, "stderr") == 0);
		if (i == 1)
			check(strcmp(c.log, "syslog") == 0 && c.log_facility == LOG_LOCAL3);
		if (i == 2) {
			/* relative: next to the configuration, like db_dir */
			snprintf(text, sizeof(text), "%s/otlogin.log", dir);
			check(strcmp(c.log, text) == 0 && c.log_facility == LOG_AUTHPRIV);
		}
		if (i == 3)
			check(strcmp(c.log, "/var/log/otlogin.log") == 0);
		if (!cases[i].ok)
			check(strstr(err, cases[i].text[3] == '_' ? "log_facility" : "log:") !=
			      NULL);
		conf_free(&c);
	}
}

static const char *const *req_env;

static const char *env_get(const char *name, void *ctx)
{
	for (const char *const *e = req_env; *e; e += 2)
		if (strcmp(*e, name) == 0)
			return e[1];
	return NULL;
}

static size_t no_body(void *buf, size_t len, void *ctx)
{
	return 0;
}

/* The request id req_read gives the request, with these variables set (name, value, ...). */
static void request_id(const char *const *env, char *out)
{
	struct req r;

	req_env = env;
	req_read(&r, env_get, no_body, NULL, 1024);
	strcpy(out, r.request_id);
	req_free(&r);
}

/* 1 when id is one req_read made: 16 lower-case hex digits. */
static int generated(const char *id)
{
	return strlen(id) == 16 && strspn(id, "0123456789abcdef") == 16;
}

static void request_ids(void)
{
	char a[REQ_ID_MAX + 1], b[REQ_ID_MAX + 1];
	char long_id[REQ_ID_MAX + 2];
	const char *none[] = {"REQUEST_METHOD", "GET", NULL};
	const char *header[] = {"REQUEST_METHOD", "GET", "HTTP_X_REQUEST_ID", "lb-7f3a.9:x", NULL};
	const char *both[] = {"UNIQUE_ID", "ZOnm@Kb3-xYAAAB1", "HTTP_X_REQUEST_ID",
			      "from-the-client", NULL};
	/* a header that would forge a field or a line: replaced, not cleaned up */
	const char *forged[] = {"HTTP_X_REQUEST_ID", "x client=admin", NULL};
	const char *newline[] = {"HTTP_X_REQUEST_ID", "x\nfake line", NULL};
	const char *empty[] = {"HTTP_X_REQUEST_ID", "", NULL};
	const char *bad_unique[] = {"UNIQUE_ID", "a b", "HTTP_X_REQUEST_ID", "ok-1", NULL};
	const char *too_long[] = {"HTTP_X_REQUEST_ID", long_id, NULL};

	crypto_init();
	request_id(none, a);
	request_id(none, b);
	check(generated(a) && generated(b) && strcmp(a, b) != 0);
	request_id(header, a);
	check(strcmp(a, "lb-7f3a.9:x") == 0);
	request_id(both, a);
	check(strcmp(a, "ZOnm@Kb3-xYAAAB1") == 0);
	request_id(forged, a);
	check(generated(a));
	request_id(newline, a);
	check(generated(a));
	request_id(empty, a);
	check(generated(a));
	request_id(bad_unique, a);
	check(strcmp(a, "ok-1") == 0);
	memset(long_id, 'a', REQ_ID_MAX + 1);
	long_id[REQ_ID_MAX + 1] = '\0';
	request_id(too_long, a);
	check(generated(a));
	long_id[REQ_ID_MAX] = '\0';
	request_id(too_long, a);
	check(strcmp(a, long_id) == 0);
}

int main(void)
{
	char err[256], *text, *errtext;
	struct stat st;
	time_t t0 = time(NULL), t1;
	int rc;

	snprintf(dir, sizeof(dir), "/tmp/otlogin-test-log-%d", (int)getpid());
	check(mkdir(dir, 0700) == 0);

	check(log_level_parse("err") == LOG_LEVEL_ERR && log_level_parse("error") == LOG_LEVEL_ERR);
	check(log_level_parse("debug") == LOG_LEVEL_DEBUG && log_level_parse("loud") == -1);
	check(log_facility_parse("daemon") == LOG_DAEMON);
	check(log_facility_parse("authpriv") == LOG_AUTHPRIV);
	check(log_facility_parse("local0") == LOG_LOCAL0 &&
	      log_facility_parse("local7") == LOG_LOCAL7);
	check(log_facility_parse("local8") == -1 && log_facility_parse("") == -1);
	check(log_facility_parse("kern") == -1); /* only the kernel logs as the kernel */

	/* A file: what came before log_open first, then each line once, in the format. */
	{
		pid_t pid;

		rc = in_child(early_then_file, path_in("a.err"), &pid);
		check(rc == 0);
		t1 = time(NULL);
		text = slurp(path_in("a.log"));
		errtext = slurp(path_in("a.err"));
		check_msg(lines_well_formed(text, "test_log", pid, t0, t1), "%s", text);
		check(count(text, "warn req=-: early warning 1\n") == 1);
		check(count(text, "info req=-: after open\n") == 1);
		check(strstr(text, "hidden debug") == NULL);
		/* the ids cannot forge a field, the message cannot start a line */
		check_msg(strstr(text,
				 " info req=req-1.x client=bad_client_id=1: line one line two  "
				 "[31mred\n") != NULL,
			  "%s", text);
		check(count(text, "info req=-: between requests\n") == 1);
		/* stderr had the early line, and nothing once the file was open */
		check(count(errtext, "early warning 1") == 1);
		check(strstr(errtext, "after open") == NULL);
		check(stat(path_in("a.log"), &st) == 0 && (st.st_mode & 0777) == 0640);
		free(text);
		free(errtext);
	}

	/* stderr: the early line is not written twice */
	rc = in_child(on_stderr, path_in("b.err"), NULL);
	check(rc == 0);
	errtext = slurp(path_in("b.err"));
	check(count(errtext, "early on stderr") == 1);
	check(count(errtext, " debug req=-: debug on stderr\n") == 1);
	free(errtext);

	/* fatal: in the log and on stderr, exit status 1 */
	rc = in_child(fatal_to_file, path_in("c.err"), NULL);
	check(rc == 1);
	text = slurp(path_in("c.log"));
	errtext = slurp(path_in("c.err"));
	check(count(text, "error req=-: the end: configuration\n") == 1);
	check(count(errtext, "error req=-: the end: configuration\n") == 1);
	check(strstr(errtext, "before the end") == NULL);
	free(text);
	free(errtext);

	request_ids();

	/* syslog: whether a daemon listens is said on stderr, where the lines do not go */
	rc = in_child(to_syslog, path_in("e.err"), NULL);
	check(rc == 0);
	errtext = slurp(path_in("e.err"));
	check(strstr(errtext, "to syslog") == NULL);
	if (access("/dev/log", F_OK) == 0)
		check(errtext[0] == '\0');
	else
		check_msg(strstr(errtext,
				 " warn req=-: syslog: /dev/log: No such file or directory: no "
				 "syslog daemon listens") != NULL,
			  "%s", errtext);
	free(errtext);

	/* After the children: what conf_load logs would be among their early lines. */
	conf_keys();

	/* A file that cannot be opened: -1, naming it */
	check(log_open(path_in("no/such/dir.log"), LOG_DAEMON, err, sizeof(err)) < 0);
	check(strstr(err, "no/such/dir.log") != NULL);

	/*
	 * Rotation, in this process: renamed (logrotate's default), the next line a second later
	 * goes to a new file at the path; removed, the same.
	 */
	log_init("test_log", LOG_LEVEL_INFO);
	check(log_open(path_in("d.log"), LOG_DAEMON, err, sizeof(err)) == 0);
	log_info("first");
	check(rename(path_in("d.log"), path_in("d.log.1")) == 0);
	usleep(1100 * 1000); /* past the once-a-second check: what the design promises */
	log_info("second");
	text = slurp(path_in("d.log"));
	errtext = slurp(path_in("d.log.1"));
	check(count(text, "second") == 1 && strstr(text, "first") == NULL);
	check(count(errtext, "first") == 1 && strstr(errtext, "second") == NULL);
	check(stat(path_in("d.log"), &st) == 0 && (st.st_mode & 0777) == 0640);
	free(text);
	free(errtext);
	check(unlink(path_in("d.log")) == 0);
	usleep(1100 * 1000);
	log_info("third");
	text = slurp(path_in("d.log"));
	check(count(text, "third") == 1);
	free(text);
	/* not rotated: the same file goes on (no reopen truncates or loses a line) */
	usleep(1100 * 1000);
	log_info("fourth");
	text = slurp(path_in("d.log"));
	check(count(text, "third") == 1 && count(text, "fourth") == 1);
	free(text);

	/* the mask, as before */
	{
		char out[64];
		check(strcmp(log_mask_addr("john.doe@example.com", out, sizeof(out)),
			     "jo***@ex***") == 0);
		check(strcmp(log_mask_addr("+14155550123", out, sizeof(out)), "+1***") == 0);
	}

	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		check(system(cmd) == 0);
	}
	return check_done();
}
