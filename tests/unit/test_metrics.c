/*
 * Unit tests for metrics: the shared region (created 0600, one set of counters for every
 * process that maps it, kept across opens, reset for another route table), the counting
 * rules (labels bounded, counts noted in a transaction only when it commits, throttles also
 * when it is refused), the text format, and the CIDR matching of [metrics] allow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "crypto.h"
#include "err.h"
#include "metrics.h"
#include "sbuf.h"
#include "store.h"

static const char *const routes[] = {"/health", "/oidc/me", "/oidc/me", "/v1/users/{}", "/metrics"};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))
static const char *const other_routes[] = {"/health", "/v2/something"};

static char dir[] = "/tmp/otlogin-test-metrics-XXXXXX";

/* The exposition as a new string. */
static char *render(const struct metrics_bdb *bdb)
{
	struct sbuf b = {0};

	metrics_render(&b, bdb);
	return sbuf_take(&b);
}

/* The value of the sample line that starts with series (name and labels, then a space). */
static long long sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return atoll(p + n + 1);
	return -1;
}

static long long sample_now(const char *series)
{
	char *text = render(NULL);
	long long v = sample(text, series);

	free(text);
	return v;
}

static void test_closed_does_nothing(void)
{
	char *text;

	/* Before any open: every call is a no-op and the output has no region section. */
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_http(1, "GET", 200, 10);
	check(metrics_login(METRICS_LOGIN_OTP, ERR_LOCKED) == ERR_LOCKED);
	metrics_throttled("ip");
	metrics_delivery("email", 1, metrics_clock_us());
	check(!metrics_enabled());
	text = render(NULL);
	check(text != NULL && strcmp(text, "") == 0);
	free(text);
}

static void test_region_file(void)
{
	char path[256];
	struct stat st;

	check(metrics_open(dir, routes, NROUTES) == 0);
	check(metrics_enabled());
	snprintf(path, sizeof(path), "%s/otlogin.metrics", dir);
	check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	metrics_close();
	/* A region that others could read is made private again at the next open. */
	check(chmod(path, 0644) == 0);
	check(metrics_open(dir, routes, NROUTES) == 0);
	check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	metrics_close();
	/* A directory that does not exist: no region, no counting, no crash. */
	check(metrics_open("/nonexistent/otlogin-metrics", routes, NROUTES) < 0);
	check(!metrics_enabled());
}

/* Children that map the region while the parent has it mapped all add to one set of counters. */
static void test_shared_between_processes(void)
{
	const int children = 4, each = 250;
	long long before;
	int ok = 1;

	check(metrics_open(dir, routes, NROUTES) == 0);
	before = sample_now("otlogin_http_requests_total{route=\"/health\",method=\"GET\","
			    "status=\"200\"}");
	if (before < 0)
		before = 0;
	for (int i = 0; i < children; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* A fresh process: its own mapping, as a worker would open it. */
			metrics_close();
			if (metrics_open(dir, routes, NROUTES) < 0)
				_exit(1);
			for (int j = 0; j < each; j++)
				metrics_http(1, "GET", 200, 1000);
			_exit(0);
		}
		ok &= pid > 0;
	}
	for (int i = 0; i < children; i++) {
		int status;
		ok &= wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	check(ok);
	check(sample_now("otlogin_http_requests_total{route=\"/health\",method=\"GET\","
			 "status=\"200\"}") == before + children * each);
	metrics_close();
	/* Kept across opens (a worker's restart): the counters are the environment's. */
	check(metrics_open(dir, routes, NROUTES) == 0);
	check(sample_now("otlogin_http_requests_total{route=\"/health\",method=\"GET\","
			 "status=\"200\"}") == before + children * each);
	metrics_close();
	/*
	 * Another route table numbers routes otherwise (a new binary): its counters start again,
	 * in a new file, while a process of the old one still maps the old file and counts there
	 * unharmed and unseen.
	 */
	check(metrics_open(dir, routes, NROUTES) == 0);
	{
		pid_t pid = fork();
		int status = -1;

		if (pid == 0) {
			metrics_close();
			if (metrics_open(dir, other_routes, 2) < 0)
				_exit(1);
			for (int j = 0; j < 5; j++)
				metrics_http(1, "GET", 200, 1000);
			_exit(0);
		}
		check(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);
	}
	for (int j = 0; j < 3; j++)
		metrics_http(1, "GET", 200, 1000); /* the old binary's worker goes on */
	metrics_close();
	check(metrics_open(dir, other_routes, 2) == 0);
	check(sample_now("otlogin_http_requests_total{route=\"/health\",method=\"GET\","
			 "status=\"200\"}") == 5);
	metrics_close();
}

/* A file of another size (an older version's, or cut short): replaced by a fresh region. */
static void test_other_size(void)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/otlogin.metrics", dir);
	f = fopen(path, "w");
	check(f != NULL && fputs("not a region", f) >= 0 && fclose(f) == 0);
	check(metrics_open(dir, routes, NROUTES) == 0);
	check(sample_now("otlogin_sessions_created_total") == 0);
	metrics_count(METRIC_SESSIONS_CREATED);
	check(sample_now("otlogin_sessions_created_total") == 1);
	metrics_close();
}

static void test_labels(void)
{
	char *text;

	check(metrics_open(dir, routes, NROUTES) == 0);
	metrics_http(2, "GET", 200, 100);  /* GET /oidc/me */
	metrics_http(3, "POST", 200, 100); /* POST /oidc/me: its own route, the same pattern */
	metrics_http(3, "POST", 200, 100);
	metrics_http(0, "GET", 404, 100);      /* no route */
	metrics_http(999, "GET", 404, 100);    /* out of range: as no route */
	metrics_http(1, "BREW", 405, 100);     /* a method of the client's choosing */
	metrics_http(1, NULL, 400, 100);       /* none at all */
	metrics_http(4, "DELETE", 12345, 100); /* a status that is not one */
	text = render(NULL);
	check(text != NULL);
	check(sample(text, "otlogin_http_requests_total{route=\"/oidc/me\",method=\"GET\","
			   "status=\"200\"}") == 1);
	check(sample(text, "otlogin_http_requests_total{route=\"/oidc/me\",method=\"POST\","
			   "status=\"200\"}") == 2);
	check(sample(text, "otlogin_http_requests_total{route=\"unmatched\",method=\"GET\","
			   "status=\"404\"}") == 2);
	check(sample(text, "otlogin_http_requests_total{route=\"/health\",method=\"other\","
			   "status=\"405\"}") == 1);
	check(sample(text, "otlogin_http_requests_total{route=\"/health\",method=\"other\","
			   "status=\"400\"}") == 1);
	check(sample(text, "otlogin_http_requests_total{route=\"/v1/users/{}\",method=\"DELETE\","
			   "status=\"0\"}") == 1);
	check(strstr(text, "BREW") == NULL);
	/* One histogram per pattern: the two /oidc/me routes share theirs. */
	check(sample(text, "otlogin_http_request_duration_seconds_count{route=\"/oidc/me\"}") == 3);
	{
		const char *first = strstr(text, "_count{route=\"/oidc/me\"}");
		check(first != NULL && strstr(first + 1, "_count{route=\"/oidc/me\"}") == NULL);
	}
	free(text);
	metrics_close();
}

static void test_histogram(void)
{
	char *text;
	static const char *const one[] = {"/timed"};

	/* A fresh table: a fresh region. */
	check(metrics_open(dir, one, 1) == 0);
	metrics_http(1, "GET", 200, 3000);     /* 0.003 s: le 0.005 */
	metrics_http(1, "GET", 200, 5000);     /* exactly 0.005: le 0.005 */
	metrics_http(1, "GET", 200, 70000);    /* 0.07: le 0.1 */
	metrics_http(1, "GET", 200, 30000000); /* 30 s: only +Inf */
	text = render(NULL);
	check(text != NULL);
	check(sample(text, "otlogin_http_request_duration_seconds_bucket{route=\"/timed\","
			   "le=\"0.005\"}") == 2);
	check(sample(text, "otlogin_http_request_duration_seconds_bucket{route=\"/timed\","
			   "le=\"0.05\"}") == 2);
	check(sample(text, "otlogin_http_request_duration_seconds_bucket{route=\"/timed\","
			   "le=\"0.1\"}") == 3);
	check(sample(text, "otlogin_http_request_duration_seconds_bucket{route=\"/timed\","
			   "le=\"10\"}") == 3);
	check(sample(text, "otlogin_http_request_duration_seconds_bucket{route=\"/timed\","
			   "le=\"+Inf\"}") == 4);
	check(sample(text, "otlogin_http_request_duration_seconds_count{route=\"/timed\"}") == 4);
	check(strstr(text, "otlogin_http_request_duration_seconds_sum{route=\"/timed\"} "
			   "30.078000\n") != NULL);
	free(text);
	metrics_close();
}

static void test_flows(void)
{
	char *text;
	uint64_t t0;

	check(metrics_open(dir, routes, NROUTES) == 0);
	check(metrics_login(METRICS_LOGIN_OTP, ERR_NONE) == ERR_NONE);
	metrics_login(METRICS_LOGIN_OTP, ERR_BAD_CREDENTIALS);
	metrics_login(METRICS_LOGIN_OTP, ERR_BAD_CREDENTIALS);
	metrics_login(METRICS_LOGIN_MAGIC_LINK, ERR_CODE_EXPIRED);
	metrics_login(METRICS_LOGIN_SESSION, ERR_SESSION_NOT_FOUND);
	metrics_login(METRICS_LOGIN_OTP, -3); /* a store failure */
	metrics_throttled("cooldown");
	metrics_throttled("client-secret-delay");
	metrics_throttled("lockout");
	metrics_throttled("something-new");
	t0 = metrics_clock_us();
	metrics_delivery("email", 1, t0);
	metrics_delivery("sms", 0, t0);
	metrics_delivery("pigeon", 1, t0); /* not a channel: not counted */
	metrics_count(METRIC_SESSIONS_CREATED);
	text = render(NULL);
	check(text != NULL);
	check(sample(text, "otlogin_logins_total{method=\"otp\",outcome=\"success\"}") == 1);
	check(sample(text, "otlogin_logins_total{method=\"otp\",outcome=\"bad_credentials\"}") ==
	      2);
	check(sample(text, "otlogin_logins_total{method=\"magic_link\",outcome=\"expired\"}") == 1);
	check(sample(text, "otlogin_logins_total{method=\"session\",outcome=\"refused\"}") == 1);
	check(sample(text, "otlogin_logins_total{method=\"otp\",outcome=\"error\"}") == 1);
	check(sample(text, "otlogin_throttled_total{rule=\"cooldown\"}") == 1);
	check(sample(text, "otlogin_throttled_total{rule=\"client_secret\"}") == 1);
	check(sample(text, "otlogin_throttled_total{rule=\"lockout\"}") == 1);
	check(sample(text, "otlogin_throttled_total{rule=\"other\"}") == 1);
	check(sample(text, "otlogin_messages_sent_total{channel=\"email\",outcome=\"sent\"}") == 1);
	check(sample(text, "otlogin_messages_sent_total{channel=\"sms\",outcome=\"failed\"}") == 1);
	check(sample(text, "otlogin_message_delivery_duration_seconds_count{channel=\"email\"}") ==
	      1);
	check(strstr(text, "pigeon") == NULL);
	check(sample(text, "otlogin_sessions_created_total") >= 1);
	free(text);
	metrics_close();
}

/* Inside a transaction: counted at commit, once however often it ran; throttles if refused. */
static void test_transactions(void)
{
	long long created, rule;

	check(metrics_open(dir, routes, NROUTES) == 0);
	created = sample_now("otlogin_sessions_created_total");
	rule = sample_now("otlogin_throttled_total{rule=\"ip_attempts\"}");
	/* Retried after a conflict, then committed: counted once. */
	metrics_txn_begin();
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_throttled("ip");
	metrics_txn_end(0, 0);
	metrics_txn_begin();
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_throttled("ip");
	metrics_throttled("ip"); /* the same rule twice in one attempt: once */
	check(sample_now("otlogin_sessions_created_total") == created); /* not yet */
	metrics_txn_end(1, 0);
	check(sample_now("otlogin_sessions_created_total") == created + 1);
	check(sample_now("otlogin_throttled_total{rule=\"ip_attempts\"}") == rule + 1);
	/* Refused (aborted by design): the throttle counts, the session it made does not. */
	metrics_txn_begin();
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_throttled("ip");
	metrics_txn_end(0, 1);
	check(sample_now("otlogin_sessions_created_total") == created + 1);
	check(sample_now("otlogin_throttled_total{rule=\"ip_attempts\"}") == rule + 2);
	/* Failed: nothing. Outside a transaction: at once. */
	metrics_txn_begin();
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_txn_end(0, 0);
	metrics_count(METRIC_SESSIONS_CREATED);
	check(sample_now("otlogin_sessions_created_total") == created + 2);
	metrics_close();
}

/* Every sample belongs to a family announced by HELP and TYPE lines before it. */
static void test_format(void)
{
	struct metrics_bdb bdb = {.valid = 1, .commits = 7, .cache_hits = 5, .log_bytes = 1 << 20};
	char *text, *line, *save = NULL, family[128] = "";
	int ok = 1, helps = 0;

	check(metrics_open(dir, routes, NROUTES) == 0);
	text = render(&bdb);
	check(text != NULL && text[strlen(text) - 1] == '\n');
	check(sample(text, "otlogin_bdb_commits_total") == 7);
	check(sample(text, "otlogin_bdb_log_written_bytes_total") == 1 << 20);
	check(strstr(text, "# TYPE otlogin_bdb_last_checkpoint_timestamp_seconds gauge\n") != NULL);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128];
		if (sscanf(line, "# HELP %127s", name) == 1) {
			helps++;
			snprintf(family, sizeof(family), "%s", name);
			continue;
		}
		if (sscanf(line, "# TYPE %127s", name) == 1) {
			ok &= strcmp(name, family) == 0;
			continue;
		}
		/* name[{labels}] value: the name is the family's, or its _bucket/_sum/_count. */
		ok &= family[0] != '\0' && strncmp(line, family, strlen(family)) == 0 &&
		      strchr(" {_", line[strlen(family)]) != NULL;
		ok &= strrchr(line, ' ') != NULL && strrchr(line, ' ')[1] != '\0';
	}
	check(ok);
	check(helps == 26); /* every family, once */
	free(text);
	/* Without Berkeley DB's numbers (the environment failed): only otlogin's own. */
	bdb.valid = 0;
	text = render(&bdb);
	check(text != NULL && strstr(text, "otlogin_bdb_commits_total") == NULL &&
	      strstr(text, "otlogin_bdb_recoveries_total") != NULL);
	free(text);
	metrics_close();
}

static void test_cidr(void)
{
	static const struct {
		const char *list, *addr;
		int want;
	} cases[] = {
	    {"127.0.0.1/32", "127.0.0.1", 1},
	    {"127.0.0.1/32", "127.0.0.2", 0},
	    {"127.0.0.1", "127.0.0.1", 1}, /* a bare address is /32 */
	    {"127.0.0.0/8", "127.255.1.2", 1},
	    {"10.0.0.0/8, 192.168.1.0/24", "192.168.1.77", 1},
	    {"10.0.0.0/8 192.168.1.0/24", "192.168.2.1", 0},
	    {"192.168.1.128/25", "192.168.1.127", 0},
	    {"192.168.1.128/25", "192.168.1.128", 1},
	    {"0.0.0.0/0", "203.0.113.9", 1},
	    {"0.0.0.0/0", "2001:db8::1", 0}, /* IPv4's everything is not IPv6's */
	    {"::1/128", "::1", 1},
	    {"::1", "::2", 0},
	    {"2001:db8::/32", "2001:db8:ffff::1", 1},
	    {"2001:db8::/33", "2001:db8:8000::1", 0},
	    {"::/0", "2001:db8::1", 1},
	    {"127.0.0.1/32", "::ffff:127.0.0.1", 1}, /* IPv4-mapped: as IPv4 */
	    {"::ffff:127.0.0.0/104", "127.0.0.9", 1},
	    {"127.0.0.1/32", "", 0},
	    {"127.0.0.1/32", "localhost", 0}, /* names are never resolved */
	    {"127.0.0.1/32", NULL, 0},
	    {"", "127.0.0.1", 0},
	    {"127.0.0.1/33", "127.0.0.1", -1},
	    {"::1/129", "::1", -1},
	    {"127.0.0.1/", "127.0.0.1", -1},
	    {"127.0.0.1/-1", "127.0.0.1", -1},
	    {"127.0.0.1/+8", "127.0.0.1", -1},
	    {"127.0.0.1/8x", "127.0.0.1", -1},
	    {"localhost", "127.0.0.1", -1},
	    {"127.1", "127.0.0.1", -1},
	    {"127.0.0.1;rm", "127.0.0.1", -1},
	    {"10.0.0.0/8, bogus", "10.1.1.1", -1}, /* a bad entry anywhere spoils the list */
	};
	int ok = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = metrics_cidr_match(cases[i].list, cases[i].addr);
		if (got != cases[i].want) {
			printf("# metrics_cidr_match(\"%s\", \"%s\") = %d, want %d\n",
			       cases[i].list, cases[i].addr ? cases[i].addr : "(null)", got,
			       cases[i].want);
			ok = 0;
		}
	}
	check(ok);
	check(metrics_cidr_list_valid(""));
	check(metrics_cidr_list_valid("127.0.0.1/32, ::1/128"));
	check(!metrics_cidr_list_valid("127.0.0.1/32,, nonsense"));
}

/* A transaction that writes a record of about 2 KiB, notes a session and a throttle. */
static int write_txn(struct store_txn *t, void *arg)
{
	int *n = arg;
	char key[32], pad[2048];
	json_t *rec;
	int rc;

	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	snprintf(key, sizeof(key), "metrics-test-%d", (*n)++);
	rec = json_pack("{s:I, s:s}", "exp", (json_int_t)time(NULL) + 3600, "pad", pad);
	rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	json_decref(rec);
	metrics_count(METRIC_SESSIONS_CREATED);
	metrics_throttled("recipient");
	return rc;
}

/* The same, refused after writing (as a rate limit does): STORE_REFUSE, aborted. */
static int refused_txn(struct store_txn *t, void *arg)
{
	int rc = write_txn(t, arg);

	return rc < 0 ? rc : STORE_REFUSE(ERR_RATE_LIMITED);
}

/* store_run's transactions, Berkeley DB's statistics and a checkpoint, on a real store. */
static void test_store(void)
{
	char sdir[300];
	struct store *st;
	struct metrics_bdb bdb;
	long long created, rule, ckps;
	int n = 0, ok = 1;
	time_t opened;

	snprintf(sdir, sizeof(sdir), "%s/db", dir);
	crypto_init();
	st = store_open(sdir, 4, 1);
	opened = time(NULL); /* not before: the open notes its own time */
	check(st != NULL);
	if (st == NULL)
		return;
	check(metrics_open(sdir, routes, NROUTES) == 0);
	created = sample_now("otlogin_sessions_created_total");
	rule = sample_now("otlogin_throttled_total{rule=\"recipient\"}");
	check(store_run(st, write_txn, &n) == 0);
	check(sample_now("otlogin_sessions_created_total") == created + 1);
	check(sample_now("otlogin_throttled_total{rule=\"recipient\"}") == rule + 1);
	check(store_refused(store_run(st, refused_txn, &n)) == ERR_RATE_LIMITED);
	check(sample_now("otlogin_sessions_created_total") == created + 1);
	check(sample_now("otlogin_throttled_total{rule=\"recipient\"}") == rule + 2);
	/* Over a MiB of log: the next maintenance step writes a checkpoint, and says so. */
	ckps = sample_now("otlogin_bdb_checkpoints_total");
	for (int i = 0; i < 700; i++)
		ok &= store_run(st, write_txn, &n) == 0;
	check(ok);
	/* Maintenance runs at most once a second, and opening counted as one. */
	while (time(NULL) == opened)
		usleep(50000);
	store_maintain(st);
	check(sample_now("otlogin_bdb_checkpoints_total") == ckps + 1);
	check(store_stats(st, &bdb) == 0 && bdb.valid);
	check(bdb.commits >= 701 && bdb.aborts >= 1);
	check(bdb.log_bytes > 1024 * 1024);
	check(bdb.cache_hits > 0 && bdb.last_checkpoint > 0);
	store_close(st);
	metrics_close();
}

/* [metrics] in the configuration: a bad allow list or a weak token stops the start. */
static void test_conf(void)
{
	static const struct {
		const char *body;
		int ok;
	} cases[] = {
	    {"[metrics]\nallow = 127.0.0.1/32, ::1/128\n", 1},
	    {"[metrics]\nallow =\ntoken =\n", 1},
	    {"[metrics]\ntoken = abcdefghijklmnop\n", 1},
	    {"[metrics]\nallow = 127.0.0.1/33\n", 0},
	    {"[metrics]\nallow = localhost\n", 0},
	    {"[metrics]\ntoken = short\n", 0},
	    {"[metrics]\ntoken = abcdefghijklmnop qrs\n", 0},
	    {"[metrics]\ntoken = abcdefghijklmnop\"\n", 0},
	    {"[metrics]\nport = 9100\n", 0},
	};
	char path[300], err[512];
	int ok = 1;

	snprintf(path, sizeof(path), "%s/otlogin.conf", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf cf;
		FILE *f = fopen(path, "w");
		int rc;

		if (f == NULL || fputs(cases[i].body, f) < 0 || fclose(f) != 0) {
			ok = 0;
			continue;
		}
		conf_defaults(&cf);
		rc = conf_load(&cf, path, err, sizeof(err));
		if ((rc == 0) != cases[i].ok) {
			printf("# conf_load of %s: %d (%s)\n", cases[i].body, rc, err);
			ok = 0;
		}
		conf_free(&cf);
	}
	check(ok);
}

/* A replicated site's families; its lag in seconds, left out while it is not known. */
static void test_replication(void)
{
	struct metrics_bdb bdb = {.valid = 1, .replicated = 1, .rep_sites = 3, .rep_lag_ms = 1234};
	char *text;

	check(metrics_open(dir, routes, NROUTES) == 0);
	text = render(&bdb);
	check(text != NULL && sample(text, "otlogin_replication_sites") == 3);
	check(text != NULL && strstr(text, "# TYPE otlogin_replication_lag_seconds gauge\n"
					   "otlogin_replication_lag_seconds 1.234\n") != NULL);
	free(text);
	bdb.rep_lag_ms = 5;
	text = render(&bdb);
	check(text != NULL && strstr(text, "\notlogin_replication_lag_seconds 0.005\n") != NULL);
	free(text);
	bdb.rep_lag_ms = -1;
	text = render(&bdb);
	check(text != NULL && strstr(text, "otlogin_replication_lag_seconds") == NULL);
	free(text);
	metrics_close();
}

int main(void)
{
	char cmd[128];

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_closed_does_nothing();
	test_region_file();
	test_shared_between_processes();
	test_other_size();
	test_labels();
	test_histogram();
	test_flows();
	test_transactions();
	test_format();
	test_replication();
	test_cidr();
	test_store();
	test_conf();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_done();
}
