/*
 * lockout: the contract of lockout.h: the delay sequence (free failures, then backoff doubling
 * up to lockout_minutes, never past it), accounts keyed by user (every identifier of the user
 * together) or by the identifier alone, the wait only raised, a damaged "until" far ahead
 * capped at lockout_minutes, records that carry "exp" and outlive their delay, the throttle
 * turned off, and the purge rule of the old per-identifier counters.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "fixture.h"
#include "lockout.h"

/* ---- records ---- */

/* ---- the throttle ---- */

struct attempt {
	const char *user_id, *idtype, *identifier;
	int fail;      /* count one failure when not locked */
	unsigned wait; /* in: the wait so far; out: raised */
	char key[KEYRING_TAG_HEX];
};

static int attempt_txn(struct store_txn *t, void *argp)
{
	struct attempt *a = argp;
	struct lockout l;
	int rc = lockout_begin_txn(t, &c, a->user_id, a->idtype, a->identifier, &l, &a->wait);

	memcpy(a->key, l.key, sizeof(a->key));
	if (rc == ERR_NONE && a->fail)
		rc = lockout_fail_txn(t, &c, &l);
	lockout_done(&l);
	check(l.rec == NULL);
	return rc;
}

/* One attempt on an account: ERR_NONE or ERR_LOCKED (*wait as the module left it). */
static int attempt(const char *user_id, const char *idtype, const char *identifier, int fail,
		   unsigned *wait, char *key)
{
	struct attempt a = {user_id, idtype, identifier, fail, wait ? *wait : 0, ""};
	int rc = store_run(c.store, attempt_txn, &a);

	if (wait != NULL)
		*wait = a.wait;
	if (key != NULL)
		memcpy(key, a.key, KEYRING_TAG_HEX);
	return rc;
}

static void delays(void)
{
	struct conf d;

	/* The defaults: 10 per hour free, then 30 s doubling, at most 15 minutes. */
	check(conf.account_failures.limit == 10 && conf.otp_backoff == 30 &&
	      conf.otp_lockout_minutes == 15);
	for (unsigned n = 0; n < 10; n++)
		check_msg(lockout_delay(&conf, n) == 0, "n = %u", n);
	check(lockout_delay(&conf, 10) == 30);
	check(lockout_delay(&conf, 11) == 60);
	check(lockout_delay(&conf, 12) == 120);
	check(lockout_delay(&conf, 13) == 240);
	check(lockout_delay(&conf, 14) == 480);
	check(lockout_delay(&conf, 15) == 900);
	check(lockout_delay(&conf, 16) == 900);
	check(lockout_delay(&conf, 100) == 900);
	check(lockout_delay(&conf, UINT_MAX) == 900);
	{
		unsigned prev = 0, monotonic = 1;
		for (unsigned n = 0; n < 200; n++) {
			monotonic &= lockout_delay(&conf, n) >= prev;
			prev = lockout_delay(&conf, n);
		}
		check(monotonic);
	}

	/* Off: never a delay. */
	d = conf;
	d.account_failures.limit = 0;
	check(lockout_delay(&d, 0) == 0 && lockout_delay(&d, 10) == 0 &&
	      lockout_delay(&d, UINT_MAX) == 0);
	/* A first delay longer than the cap is the cap. */
	d = conf;
	d.otp_backoff = 3600;
	d.otp_lockout_minutes = 1;
	check(lockout_delay(&d, 9) == 0 && lockout_delay(&d, 10) == 60 &&
	      lockout_delay(&d, 11) == 60);
	/* The widest settings: a week at most, reached by doubling from 1 s. */
	d = conf;
	d.account_failures.limit = 1;
	d.otp_backoff = 1;
	d.otp_lockout_minutes = 10080;
	check(lockout_delay(&d, 0) == 0 && lockout_delay(&d, 1) == 1 && lockout_delay(&d, 2) == 2 &&
	      lockout_delay(&d, 20) == 524288 && lockout_delay(&d, 21) == 604800 &&
	      lockout_delay(&d, UINT_MAX) == 604800);
}

static void accounts(void)
{
	char key[KEYRING_TAG_HEX], key2[KEYRING_TAG_HEX];
	unsigned wait;
	json_t *rec;
	time_t now = time(NULL);

	/* Below the limit: nothing refused; the record carries "exp". */
	for (int i = 0; i < 9; i++)
		check(attempt("user-1", "email", "one@example.com", 1, NULL, key) == ERR_NONE);
	rec = fixture_get(TBL_COUNTERS, key);
	check(rec != NULL && json_integer_value(json_object_get(rec, "exp")) > now &&
	      json_object_get(rec, "until") == NULL);
	json_decref(rec);
	/* The 10th failure (by another identifier of the same user) starts a delay of 30 s. */
	wait = 0;
	check(attempt("user-1", "phone_number", "+15550000001", 1, &wait, key2) == ERR_NONE);
	check(strcmp(key, key2) == 0);
	rec = fixture_get(TBL_COUNTERS, key);
	check(rec != NULL);
	check(json_integer_value(json_object_get(rec, "until")) >= now + 30 &&
	      json_integer_value(json_object_get(rec, "until")) <= now + 35);
	check(json_integer_value(json_object_get(rec, "exp")) >=
	      json_integer_value(json_object_get(rec, "until")));
	json_decref(rec);
	/* Every identifier of the user waits, whatever it is. */
	wait = 0;
	check(attempt("user-1", "username", "someone", 0, &wait, NULL) == ERR_LOCKED);
	check(wait > 0 && wait <= 30);
	wait = 0;
	check(attempt("user-1", "email", "one@example.com", 1, &wait, NULL) == ERR_LOCKED);
	check(wait > 0 && wait <= 30);
	/* The wait is only raised, never lowered. */
	wait = 5000;
	check(attempt("user-1", "email", "one@example.com", 0, &wait, NULL) == ERR_LOCKED);
	check(wait == 5000);
	/* A refused attempt counted nothing: the delay is still the first one. */
	rec = fixture_get(TBL_COUNTERS, key);
	check(json_integer_value(json_object_get(rec, "until")) <= now + 35);
	json_decref(rec);
	/* Another user, and the same identifier without a user, are other accounts. */
	check(attempt("user-2", "email", "one@example.com", 0, NULL, NULL) == ERR_NONE);
	check(attempt(NULL, "email", "one@example.com", 0, NULL, key2) == ERR_NONE);
	check(strcmp(key, key2) != 0);

	/* An identifier without a user counts alone (by its type and value). */
	for (int i = 0; i < 10; i++)
		check(attempt(NULL, "email", "nobody@example.com", 1, NULL, NULL) == ERR_NONE);
	wait = 0;
	check(attempt(NULL, "email", "nobody@example.com", 0, &wait, NULL) == ERR_LOCKED);
	check(wait > 0 && wait <= 30);
	check(attempt(NULL, "email", "nobody2@example.com", 0, NULL, NULL) == ERR_NONE);
	check(attempt(NULL, "username", "nobody@example.com", 0, NULL, NULL) == ERR_NONE);
	check(attempt("user-3", "email", "nobody@example.com", 0, NULL, NULL) == ERR_NONE);

	/* Once the delay is over, the next failure doubles it. */
	rec = fixture_get(TBL_COUNTERS, key);
	json_object_set_new(rec, "until", json_integer((json_int_t)now - 1));
	check(fixture_put(TBL_COUNTERS, key, rec) == 0);
	json_decref(rec);
	check(attempt("user-1", "email", "one@example.com", 1, NULL, NULL) == ERR_NONE);
	rec = fixture_get(TBL_COUNTERS, key);
	check(json_integer_value(json_object_get(rec, "until")) >= now + 60 &&
	      json_integer_value(json_object_get(rec, "until")) <= now + 65);
	json_decref(rec);
}

static void damaged(void)
{
	char key[KEYRING_TAG_HEX];
	unsigned wait = 0;
	json_t *rec;
	time_t now = time(NULL);

	/* A damaged "until" far in the future: the wait is lockout_minutes at most. */
	check(attempt("user-damaged", "email", "d@example.com", 0, NULL, key) == ERR_NONE);
	rec = json_pack("{s:I, s:I}", "until", (json_int_t)now + 1000000000, "exp",
			(json_int_t)now + 1000000000);
	check(fixture_put(TBL_COUNTERS, key, rec) == 0);
	json_decref(rec);
	check(attempt("user-damaged", "email", "d@example.com", 0, &wait, NULL) == ERR_LOCKED);
	check_msg(wait >= conf.otp_lockout_minutes * 60 - 1 &&
		      wait <= conf.otp_lockout_minutes * 60,
		  "wait = %u", wait);
	/* One that is no integer locks nothing, nor one in the past. */
	rec = json_pack("{s:s}", "until", "soon");
	check(fixture_put(TBL_COUNTERS, key, rec) == 0);
	json_decref(rec);
	check(attempt("user-damaged", "email", "d@example.com", 0, NULL, NULL) == ERR_NONE);
	rec = json_pack("{s:I}", "until", (json_int_t)now - 5);
	check(fixture_put(TBL_COUNTERS, key, rec) == 0);
	json_decref(rec);
	check(attempt("user-damaged", "email", "d@example.com", 0, NULL, NULL) == ERR_NONE);
	/* Not an object at all: no lock, and a failure writes a sound record over it. */
	rec = json_pack("[i, i]", 1, 2);
	check(fixture_put(TBL_COUNTERS, key, rec) == 0);
	json_decref(rec);
	check(attempt("user-damaged", "email", "d@example.com", 1, NULL, NULL) == ERR_NONE);
	rec = fixture_get(TBL_COUNTERS, key);
	check(json_is_object(rec) && json_integer_value(json_object_get(rec, "exp")) > now);
	json_decref(rec);
	check(attempt("user-damaged", "email", "d@example.com", 0, NULL, NULL) == ERR_NONE);
}

static void lifetimes(void)
{
	char key[KEYRING_TAG_HEX];
	struct conf saved = conf;
	json_t *rec;
	time_t now = time(NULL);

	/* A short window and a long delay: the record lives until the delay is over. */
	conf.account_failures.limit = 3;
	conf.account_failures.period = 10;
	conf.otp_backoff = 600;
	conf.otp_lockout_minutes = 60;
	for (int i = 0; i < 3; i++)
		check(attempt("user-life", "email", "l@example.com", 1, NULL, key) == ERR_NONE);
	rec = fixture_get(TBL_COUNTERS, key);
	check(rec != NULL);
	check(json_integer_value(json_object_get(rec, "until")) >= now + 600);
	check(json_integer_value(json_object_get(rec, "exp")) >=
	      json_integer_value(json_object_get(rec, "until")));
	json_decref(rec);

	/* The throttle off: failures write nothing and refuse nothing. */
	conf.account_failures.limit = 0;
	for (int i = 0; i < 20; i++)
		check(attempt("user-off", "email", "off@example.com", 1, NULL, key) == ERR_NONE);
	rec = fixture_get(TBL_COUNTERS, key);
	check(rec == NULL);
	json_decref(rec);
	conf = saved;
}

static void purge(void)
{
	time_t now = time(NULL);
	json_t *old = json_pack("{s:i, s:I}", "failures", 5, "locked_until", (json_int_t)1);
	json_t *recent =
	    json_pack("{s:i, s:I}", "failures", 5, "locked_until", (json_int_t)now - 3600);
	json_t *locked =
	    json_pack("{s:i, s:I}", "failures", 5, "locked_until", (json_int_t)now + 3600);
	json_t *never = json_pack("{s:i, s:i}", "failures", 2, "locked_until", 0);
	json_t *other = json_pack("{s:i}", "something", 1), *rec;
	char live[KEYRING_TAG_HEX];

	check(fixture_put(TBL_COUNTERS, "old-counter", old) == 0);
	check(fixture_put(TBL_COUNTERS, "never-locked-counter", never) == 0);
	check(fixture_put(TBL_COUNTERS, "recent-counter", recent) == 0);
	check(fixture_put(TBL_COUNTERS, "locked-counter", locked) == 0);
	check(fixture_put(TBL_COUNTERS, "other-record", other) == 0);
	check(attempt("user-purge", "email", "p@example.com", 1, NULL, live) == ERR_NONE);

	/* Without the rule nothing of them goes (the store knows "exp" only). */
	check(store_purge(c.store, now) >= 0);
	rec = fixture_get(TBL_COUNTERS, "old-counter");
	check(rec != NULL);
	json_decref(rec);

	/* With it: an old counter whose lockout ended a grace period ago; nothing else. */
	check(lockout_purge_rules(c.store) == 0);
	check(store_purge(c.store, now) >= 1);
	rec = fixture_get(TBL_COUNTERS, "old-counter");
	check(rec == NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS,
			  "never-locked-counter"); /* old counters said 0 when not locked */
	check(rec == NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS, "recent-counter");
	check(rec != NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS, "locked-counter");
	check(rec != NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS, "other-record");
	check(rec != NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS, live);
	check(rec != NULL);
	json_decref(rec);
	/* A day later the recent one goes too; the current record has its "exp". */
	check(store_purge(c.store, now + STORE_PURGE_GRACE_S) >= 1);
	rec = fixture_get(TBL_COUNTERS, "recent-counter");
	check(rec == NULL);
	json_decref(rec);
	rec = fixture_get(TBL_COUNTERS, "locked-counter");
	check(rec != NULL);
	json_decref(rec);

	json_decref(old);
	json_decref(never);
	json_decref(recent);
	json_decref(locked);
	json_decref(other);
}

int main(void)
{
	if (fixture_open("/dev/shm", "lockout", 8) < 0)
		return check_done();
	delays();
	accounts();
	damaged();
	lifetimes();
	purge();
	fixture_close();
	return check_done();
}
