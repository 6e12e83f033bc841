/*
 * ratelimit: the sliding-window arithmetic (never more than the limit in any window of the
 * period, an exact Retry-After, bounded records, a stepping clock), the [limits] syntax, the
 * address keys, and the counters on a real store shared by racing processes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "ratelimit.h"
#include "resp.h"

/* Try one event at now: 1 when it fitted (and was added to *rec), 0 when refused. */
static int try_event(json_t **rec, const struct conf_rate *rule, time_t now, unsigned *wait)
{
	json_t *next;

	*wait = rl_window_wait(*rec, rule, now);
	if (*wait > 0)
		return 0;
	next = rl_window_add(*rec, rule, now);
	json_decref(*rec);
	*rec = next;
	return 1;
}

/*
 * Random attempts against rule over a long stretch: whatever got through, no window of
 * period seconds holds more than limit of them; every refusal's wait is exact (one second
 * earlier it would still be refused, at the wait it fits); the record stays small.
 */
static void simulate(const struct conf_rate *rule, unsigned seed)
{
	json_t *rec = NULL;
	time_t now = 1700000000, *ok = calloc(20000, sizeof(time_t));
	size_t n = 0, worst_slots = 0;
	int violations = 0, bad_waits = 0;
	unsigned wait;

	srand(seed);
	for (int i = 0; i < 20000 && ok != NULL; i++) {
		now += rand() % 4 == 0 ? rand() % (int)(rule->period + 2) : rand() % 3;
		if (try_event(&rec, rule, now, &wait)) {
			ok[n++] = now;
		} else {
			if (rl_window_wait(rec, rule, now + wait - 1) == 0 ||
			    rl_window_wait(rec, rule, now + wait) != 0)
				bad_waits++;
		}
		if (json_array_size(json_object_get(rec, "slots")) > worst_slots)
			worst_slots = json_array_size(json_object_get(rec, "slots"));
	}
	/* Any window [ok[i], ok[i] + period) holds at most limit events. */
	for (size_t i = 0, j = 0; i < n; i++) {
		while (j < n && ok[j] < ok[i] + (time_t)rule->period)
			j++;
		if (j - i > rule->limit)
			violations++;
	}
	check_msg(n > rule->limit, "%zu events got through", n);
	check_msg(violations == 0, "%d windows over %u/%u s", violations, rule->limit,
		  rule->period);
	check_msg(bad_waits == 0, "%d inexact waits for %u/%u s", bad_waits, rule->limit,
		  rule->period);
	check_msg(worst_slots <= RL_SLOTS + 1, "%zu slots", worst_slots);
	json_decref(rec);
	free(ok);
}

static void window_arithmetic(void)
{
	struct conf_rate three = {3, 60}, hourly = {10, 3600}, cooldown = {1, 30}, off = {0, 0};
	json_t *rec = NULL;
	unsigned wait;

	check(rl_slot_width(&three) == 1);
	check(rl_slot_width(&hourly) == 60);
	check(rl_slot_width(&(struct conf_rate){5, 61}) == 2);
	check(rl_slot_width(&(struct conf_rate){1, 1}) == 1);

	/* Empty and off. */
	check(rl_window_wait(NULL, &three, 1000) == 0);
	check(rl_window_wait(NULL, &off, 1000) == 0);

	/* 3 per 60 s: the fourth in the same second waits for the slot to leave (61 s). */
	check(try_event(&rec, &three, 1000, &wait) && try_event(&rec, &three, 1000, &wait));
	check(try_event(&rec, &three, 1000, &wait));
	check(!try_event(&rec, &three, 1000, &wait) && wait == 61);
	check(rl_window_wait(rec, &three, 1060) == 1);
	check(rl_window_wait(rec, &three, 1061) == 0);
	check(json_array_size(json_object_get(rec, "slots")) == 1);
	check(json_integer_value(json_object_get(rec, "exp")) == 1061);
	json_decref(rec);
	rec = NULL;

	/* Spread out: the oldest leaves first, and only as many as needed must leave. */
	check(try_event(&rec, &three, 1000, &wait) && try_event(&rec, &three, 1010, &wait));
	check(try_event(&rec, &three, 1020, &wait));
	check(!try_event(&rec, &three, 1030, &wait) && wait == 31);
	check(try_event(&rec, &three, 1061, &wait));
	check(!try_event(&rec, &three, 1062, &wait) && wait == 9);
	check(json_array_size(json_object_get(rec, "slots")) == 3);
	json_decref(rec);
	rec = NULL;

	/* A cool-down of 30 s: at least 30 s between two events, whatever the fractions. */
	check(try_event(&rec, &cooldown, 5000, &wait));
	check(!try_event(&rec, &cooldown, 5000, &wait) && wait == 31);
	check(!try_event(&rec, &cooldown, 5030, &wait) && wait == 1);
	check(try_event(&rec, &cooldown, 5031, &wait));
	json_decref(rec);
	rec = NULL;

	/* 10 per hour in one-minute slots: the eleventh waits for the first minute to leave. */
	for (int i = 0; i < 10; i++)
		check(try_event(&rec, &hourly, 7200 + 30 * i, &wait));
	check(!try_event(&rec, &hourly, 7200 + 300, &wait) && wait == 3600 + 60 - 300);
	json_decref(rec);
	rec = NULL;

	/* The clock steps back: nothing counted is lost, and the slots stay in order. */
	check(try_event(&rec, &three, 2000, &wait) && try_event(&rec, &three, 1990, &wait));
	check(json_integer_value(json_array_get(json_array_get(json_object_get(rec, "slots"), 0),
						0)) == 1990 + 61);
	check(try_event(&rec, &three, 2000, &wait));
	check(!try_event(&rec, &three, 2000, &wait) && wait == 2051 - 2000);
	json_decref(rec);
	rec = NULL;

	/* A changed configuration keeps what was counted for as long as it was promised. */
	check(try_event(&rec, &hourly, 10000, &wait));
	check(rl_window_wait(rec, &(struct conf_rate){1, 60}, 10100) == 9960 + 60 + 3600 - 10100);

	/* A broken record counts as empty rather than crashing the worker. */
	json_decref(rec);
	rec = json_pack("{s:[[s, I]]}", "slots", "x", (json_int_t)5);
	check(rl_window_wait(rec, &three, 1000) == 0);
	json_decref(rec);
	rec = json_pack("{s:s}", "slots", "nonsense");
	check(rl_window_wait(rec, &three, 1000) == 0);
	json_decref(rec);
	/* A damaged one neither overflows its sums nor wraps a far wait around to "fits now". */
	rec = json_pack("{s:[[I, I], [I, I]]}", "slots", (json_int_t)1900000000,
			(json_int_t)INT64_MAX, (json_int_t)1900000000, (json_int_t)INT64_MAX);
	check(rl_window_wait(rec, &three, 1000) > 0 && rl_window_count(rec, 1000) > 3);
	json_decref(rec);
	rec = json_pack("{s:[[I, I]]}", "slots", (json_int_t)1000 + ((json_int_t)1 << 32),
			(json_int_t)5);
	check(rl_window_wait(rec, &three, 1000) == 8 * 24 * 3600);
	json_decref(rec);

	simulate(&three, 1);
	simulate(&cooldown, 2);
	simulate(&hourly, 3);
	simulate(&(struct conf_rate){5, 7}, 4);
	simulate(&(struct conf_rate){100, 900}, 5);
}

static int rate_of(const char *value, struct conf_rate *out)
{
	char path[96], err[256];
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "/tmp/otlogin-test-ratelimit-%d.conf", (int)getpid());
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	/* A relay keeps the load quiet (no test-mode warning); nothing is sent here. */
	fprintf(f, "[mail]\nsmtp_host = relay.invalid\n[limits]\nrecipient_sends = %s\n", value);
	fclose(f);
	conf_free(&conf);
	conf_defaults(&conf);
	rc = conf_load(&conf, path, err, sizeof(err));
	unlink(path);
	*out = conf.recipient_sends;
	return rc;
}

static void syntax(void)
{
	struct conf_rate r;
	static const char *const bad[] = {"10",	   "10/",   "/1h",    "10/0",  "10/1w", "10/8d",
					  "0/1h",  "-1/1h", "10/1hh", "ten/h", "10/-1", "10/ 1h",
					  "10/h1", "10//h", "",	      "on",    "1e3/h", NULL};

	conf_defaults(&conf);
	check(conf.send_cooldown == 30);
	check(conf.recipient_sends.limit == 10 && conf.recipient_sends.period == 3600);
	check(conf.client_emails.limit == 1000 && conf.client_sms.limit == 200);
	check(conf.identifier_attempts.limit == 20 && conf.identifier_attempts.period == 3600);
	check(conf.ip_attempts.limit == 600 && conf.ip_attempts.period == 3600);
	check(conf.client_secret_failures.limit == 10 && conf.client_secret_failures.period == 900);
	check(conf.client_secret_delay == 1 && conf.client_secret_max_delay == 900);

	check(rate_of("10/1h", &r) == 0 && r.limit == 10 && r.period == 3600);
	check(rate_of("5/30s", &r) == 0 && r.limit == 5 && r.period == 30);
	check(rate_of("5/30", &r) == 0 && r.limit == 5 && r.period == 30);
	check(rate_of("2/m", &r) == 0 && r.limit == 2 && r.period == 60);
	check(rate_of("1/7d", &r) == 0 && r.limit == 1 && r.period == 604800);
	check(rate_of("off", &r) == 0 && r.limit == 0);
	check(rate_of("0", &r) == 0 && r.limit == 0);
	for (int i = 0; bad[i] != NULL; i++)
		check_msg(rate_of(bad[i], &r) < 0, "\"%s\" accepted", bad[i]);
}

/* The delays after each failure of a subject failing once a second: 0 while free, doubling. */
static void backoff_arithmetic(void)
{
	const struct rl_backoff b = {3, 900, 2, 60};
	static const unsigned expect[] = {0, 0, 2, 4, 8, 16, 32, 60, 60};
	json_t *rec = NULL, *next;
	time_t now = 1000000;

	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		check_msg(rl_backoff_wait(rec, now) == 0, "failure %zu had to wait", i + 1);
		next = rl_backoff_fail(rec, &b, now);
		json_decref(rec);
		rec = next;
		check_msg(rl_backoff_wait(rec, now) == expect[i], "failure %zu: wait %u, not %u",
			  i + 1, rl_backoff_wait(rec, now), expect[i]);
		if (expect[i] > 1)
			check(rl_backoff_wait(rec, now + 1) == expect[i] - 1);
		/* The next attempt comes once the delay is over. */
		now += expect[i] ? expect[i] : 1;
	}
	/* Forgotten a quiet period after the last delay ended: the free failures are back. */
	check(rl_backoff_wait(rec, now + 900) == 0);
	next = rl_backoff_fail(rec, &b, now + 900);
	check(json_integer_value(json_object_get(next, "failures")) == 1);
	check(rl_backoff_wait(next, now + 900) == 0);
	json_decref(next);
	/* Just before that, the count goes on at the cap. */
	next = rl_backoff_fail(rec, &b, now + 899);
	check(rl_backoff_wait(next, now + 899) == 60);
	check(json_integer_value(json_object_get(next, "exp")) == now + 899 + 60 + 900);
	json_decref(next);
	json_decref(rec);
	/* A first delay above the cap is the cap; no overflow after many failures. */
	rec = NULL;
	for (int i = 0; i < 100; i++) {
		next = rl_backoff_fail(rec, &(struct rl_backoff){1, 60, 100, 30}, now);
		json_decref(rec);
		rec = next;
	}
	check(rl_backoff_wait(rec, now) == 30);
	json_decref(rec);
}

static void addresses(void)
{
	char out[96];

	ratelimit_ip_subject("192.0.2.1", out, sizeof(out));
	check(strcmp(out, "192.0.2.1") == 0);
	ratelimit_ip_subject("2001:db8:1:2:3:4:5:6", out, sizeof(out));
	check(strcmp(out, "2001:db8:1:2::/64") == 0);
	ratelimit_ip_subject("2001:DB8:1:2::ffff", out, sizeof(out));
	check(strcmp(out, "2001:db8:1:2::/64") == 0);
	ratelimit_ip_subject("::ffff:192.0.2.1", out, sizeof(out));
	check(strcmp(out, "192.0.2.1") == 0);
	ratelimit_ip_subject("Some-Proxy", out, sizeof(out));
	check(strcmp(out, "some-proxy") == 0);
	ratelimit_ip_subject(NULL, out, sizeof(out));
	check(strcmp(out, "") == 0);
}

struct hit_arg {
	const struct conf_rate *rule;
	const char *subject;
	int count;
	unsigned wait;
};

static int hit_txn(struct store_txn *t, void *argp)
{
	struct hit_arg *a = argp;
	a->wait = 0;
	return ratelimit_txn(t, &keys, a->rule, a->count, &a->wait, "test", a->subject, NULL);
}

static int hit(const struct conf_rate *rule, const char *subject, int count, unsigned *wait)
{
	struct hit_arg a = {rule, subject, count, 0};
	int rc = store_run(c.store, hit_txn, &a);
	*wait = a.wait;
	return rc;
}

static int send_txn(struct store_txn *t, void *argp)
{
	struct hit_arg *a = argp;
	return ratelimit_send_txn(t, &c, "client-1", "email", a->subject, NULL, &a->wait, NULL);
}

struct backoff_arg {
	const char *subject;
	unsigned wait;
};

static int backoff_txn(struct store_txn *t, void *argp)
{
	struct backoff_arg *a = argp;
	const struct rl_backoff b = {2, 600, 300, 3600};
	return ratelimit_backoff_txn(t, &keys, &b, &a->wait, "test-delay", "client", a->subject);
}

/* On the store: free failures, then a delay during which nothing is counted; per subject. */
static void backoff_on_a_store(void)
{
	struct backoff_arg a = {"addr-1", 0}, other = {"addr-2", 0};

	check(store_run(c.store, backoff_txn, &a) == 0 && a.wait == 0);
	check(store_run(c.store, backoff_txn, &a) == 0 && a.wait == 0);
	for (int i = 0; i < 5; i++)
		check(store_run(c.store, backoff_txn, &a) == 1 && a.wait >= 1 && a.wait <= 300);
	check(store_run(c.store, backoff_txn, &other) == 0 && other.wait == 0);
}

static void on_a_store(void)
{
	struct conf_rate five = {5, 3600}, off = {0, 0};
	unsigned wait;
	int wins = 0, status;
	pid_t pids[8];

	/* Just under the limit fits, the one over it does not; a check alone counts nothing. */
	for (int i = 0; i < 4; i++)
		check(hit(&five, "a", 1, &wait) == 0);
	check(hit(&five, "a", 0, &wait) == 0);
	check(hit(&five, "a", 1, &wait) == 0);
	check(hit(&five, "a", 1, &wait) == 1 && wait > 3500 && wait <= 3660);
	check(hit(&five, "b", 1, &wait) == 0); /* another subject, another window */
	check(hit(&off, "a", 1, &wait) == 0);

	/* 8 processes with their own environment handles race for 20 events: exactly 20 fit. */
	for (int i = 0; i < 8; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct conf_rate twenty = {20, 3600};
			int mine = 0;
			c.store = store_open(fixture_dir, 8, 0);
			for (int j = 0; j < 10 && c.store != NULL; j++)
				mine += hit(&twenty, "race", 1, &wait) == 0;
			store_close(c.store);
			_exit(mine);
		}
	}
	for (int i = 0; i < 8; i++)
		if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status))
			wins += WEXITSTATUS(status);
	check_msg(wins == 20, "%d of 80 racing events fitted a limit of 20", wins);

	/*
	 * A send's limits: a refusal is STORE_REFUSE(ERR_RATE_LIMITED), rolls back what it
	 * counted, and its wait is the longest of the limits that refused.
	 */
	conf.send_cooldown = 30;
	conf.recipient_sends = (struct conf_rate){2, 3600};
	conf.client_emails = (struct conf_rate){100, 3600};
	{
		struct hit_arg a = {NULL, "rcpt", 0, 0};
		time_t before = time(NULL), elapsed;
		check(store_run(c.store, send_txn, &a) == 0);
		check(store_refused(store_run(c.store, send_txn, &a)) == ERR_RATE_LIMITED);
		/* 31 when both fell in one second; each second between them (valgrind) is one less.
		 */
		elapsed = time(NULL) - before;
		check_msg(a.wait <= 31 && a.wait >= 31 - elapsed, "wait %u after %ld s", a.wait,
			  (long)elapsed);
		conf.send_cooldown = 0;
		check(store_run(c.store, send_txn, &a) == 0);
		check(store_refused(store_run(c.store, send_txn, &a)) == ERR_RATE_LIMITED);
		check(a.wait > 3600 && a.wait <= 3660);
		/* Another recipient: the client's cap was not charged by the refusals. */
		conf.client_emails = (struct conf_rate){3, 3600};
		a.subject = "other";
		check(store_run(c.store, send_txn, &a) == 0);
		check(store_refused(store_run(c.store, send_txn, &a)) == ERR_RATE_LIMITED);
	}
}

struct hidden_arg {
	const char *idtype, *identifier, *to;
	int over;
	unsigned wait;
};

static int hidden_txn(struct store_txn *t, void *argp)
{
	struct hidden_arg *a = argp;
	return ratelimit_hidden_send_txn(t, &c, "client-h", "email", a->idtype, a->identifier, NULL,
					 a->to, &a->over, &a->wait, NULL);
}

struct count_arg {
	struct conf_rate rule;
	const char *kind, *subject;
};

static int count_txn(struct store_txn *t, void *argp)
{
	struct count_arg *a = argp;
	unsigned wait = 0;
	return ratelimit_txn(t, &keys, &a->rule, 0, &wait, a->kind, a->subject, NULL);
}

/* How many events of kind ("cooldown", "recipient") are counted for a recipient (<= 9). */
static int counted(const char *kind, const char *subject)
{
	for (unsigned n = 1; n <= 10; n++) {
		struct count_arg a = {{n, 3600}, kind, subject};
		if (store_run(c.store, count_txn, &a) == 0)
			return (int)n - 1;
	}
	return -1;
}

/*
 * A hiding client's send: what may refuse is keyed by the request, and the real recipient's
 * limits are kept silently: over them, *over is set, nothing is counted for it, and the
 * answer is no refusal.
 */
static void hidden_sends(void)
{
	struct hidden_arg a = {"email", "h@example.com", "h@example.com", 0, 0};

	conf.send_cooldown = 30;
	conf.recipient_sends = (struct conf_rate){5, 3600};
	conf.client_emails = (struct conf_rate){100, 3600};
	check(store_run(c.store, hidden_txn, &a) == 0 && a.over == 0);
	check(counted("cooldown", "h@example.com") == 1 &&
	      counted("recipient", "h@example.com") == 1);
	/* Asked for by another identifier: the request fits, the recipient is over, silently. */
	a = (struct hidden_arg){"username", "h", "h@example.com", 0, 0};
	check(store_run(c.store, hidden_txn, &a) == 0 && a.over == 1 && a.wait == 0);
	check(counted("cooldown", "h@example.com") == 1 &&
	      counted("recipient", "h@example.com") == 1);
	/* The same request again is refused, with nothing to deliver or not. */
	check(store_refused(store_run(c.store, hidden_txn, &a)) == ERR_RATE_LIMITED);
	check(a.wait > 0 && a.wait <= 31);
	a = (struct hidden_arg){"username", "h", NULL, 0, 0};
	check(store_refused(store_run(c.store, hidden_txn, &a)) == ERR_RATE_LIMITED);
	check(a.wait > 0 && a.wait <= 31);
	/* Nothing to deliver: only the request is counted. */
	a = (struct hidden_arg){"email", "nobody@example.com", NULL, 0, 0};
	check(store_run(c.store, hidden_txn, &a) == 0 && a.over == 0);
	check(counted("cooldown", "nobody@example.com") == 0);
	check(store_refused(store_run(c.store, hidden_txn, &a)) == ERR_RATE_LIMITED);
	/* Over one of the recipient's limits, the other is not counted either. */
	conf.send_cooldown = 1;
	conf.recipient_sends = (struct conf_rate){1, 3600};
	a = (struct hidden_arg){"email", "r@example.com", "r@example.com", 0, 0};
	check(store_run(c.store, hidden_txn, &a) == 0 && a.over == 0);
	nanosleep(&(struct timespec){2, 500000000}, NULL); /* the 1 s cool-down is over */
	check(counted("cooldown", "r@example.com") == 0);
	a = (struct hidden_arg){"username", "r", "r@example.com", 0, 0};
	check(store_run(c.store, hidden_txn, &a) == 0 && a.over == 1);
	check(counted("cooldown", "r@example.com") == 0 &&
	      counted("recipient", "r@example.com") == 1);
	conf.send_cooldown = 0;
}

/* The shared delivery time estimate of channel: put rec (borrowed) there, or get it (*out). */
struct pace_rec {
	const char *channel;
	json_t *put, *got;
};

static int pace_rec_txn(struct store_txn *t, void *argp)
{
	struct pace_rec *p = argp;
	char key[KEYRING_TAG_HEX];
	int rc;

	if (keyring_tag(&keys, key, "delivery-pace", p->channel, NULL) < 0)
		return STORE_ERR;
	if (p->put != NULL)
		return store_put(t, TBL_COUNTERS, key, strlen(key), p->put);
	json_decref(p->got);
	p->got = NULL;
	rc = store_get(t, TBL_COUNTERS, key, strlen(key), &p->got, 0);
	return rc < 0 ? rc : 0;
}

static double since_ms(const struct timespec *start)
{
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	return (double)(end.tv_sec - start->tv_sec) * 1e3 +
	       (double)(end.tv_nsec - start->tv_nsec) / 1e6;
}

/*
 * The pause of a send that delivers nothing, in a process that has delivered nothing yet: it
 * starts from the estimate shared in the store (when it has not expired), and a delivery
 * shares this process's estimate with an expiry.
 */
static void delivery_pace(void)
{
	struct pace_rec p = {"sms", NULL, NULL};
	struct timespec start;
	time_t now = time(NULL);
	json_int_t exp;

	/* A shared estimate of 80 ms: this process, which has none, pauses that long. */
	p.put = json_pack("{s:I, s:I}", "ns", (json_int_t)80000000, "exp", (json_int_t)now + 60);
	check(store_run(c.store, pace_rec_txn, &p) == 0);
	json_decref(p.put);
	clock_gettime(CLOCK_MONOTONIC, &start);
	ratelimit_delivery_pace(&c, "sms", &start);
	check_msg(since_ms(&start) >= 80, "paused %.1f ms", since_ms(&start));

	/* An expired one (of 3 s) is not used. */
	p = (struct pace_rec){"email", NULL, NULL};
	p.put = json_pack("{s:I, s:I}", "ns", (json_int_t)3000000000, "exp", (json_int_t)now - 1);
	check(store_run(c.store, pace_rec_txn, &p) == 0);
	json_decref(p.put);
	p.put = NULL;
	clock_gettime(CLOCK_MONOTONIC, &start);
	ratelimit_delivery_pace(&c, "email", &start);
	check_msg(since_ms(&start) < 1500, "paused %.1f ms", since_ms(&start));

	/* A delivery (of 20 ms or more) shares its time, with an expiry. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	nanosleep(&(struct timespec){0, 20000000}, NULL);
	ratelimit_delivery_took(&c, "email", &start);
	check(store_run(c.store, pace_rec_txn, &p) == 0);
	check(json_integer_value(json_object_get(p.got, "ns")) >= 20000000);
	exp = json_integer_value(json_object_get(p.got, "exp"));
	check_msg(exp > (json_int_t)time(NULL) && exp <= (json_int_t)time(NULL) + 7 * 86400 + 1,
		  "exp %lld", (long long)exp);
	json_decref(p.got);
}

int main(void)
{
	crypto_init();
	umask(077);
	window_arithmetic();
	backoff_arithmetic();
	syntax();
	addresses();

	if (fixture_open("/tmp", "ratelimit", 8) == 0) {
		on_a_store();
		hidden_sends();
		delivery_pace();
		backoff_on_a_store();
	}
	fixture_close();
	return check_done();
}
