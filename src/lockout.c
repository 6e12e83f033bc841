#include "lockout.h"

#include <string.h>
#include <time.h>

#include "audit.h"
#include "err.h"
#include "metrics.h"
#include "ratelimit.h"

unsigned lockout_delay(const struct conf *conf, unsigned n)
{
	unsigned long cap = (unsigned long)conf->otp_lockout_minutes * 60, d = conf->otp_backoff;
	unsigned over;

	if (conf->account_failures.limit == 0 || n < conf->account_failures.limit)
		return 0;
	/* Doubling per failure past the limit; 32 doublings pass any cap. */
	for (over = n - conf->account_failures.limit; over > 0 && d < cap; over--)
		d *= 2;
	return (unsigned)(d < cap ? d : cap);
}

int lockout_begin_txn(struct store_txn *t, struct ctx *c, const char *user_id, const char *idtype,
		      const char *identifier, struct lockout *l, unsigned *wait)
{
	json_int_t until;
	time_t now = time(NULL);
	int rc;

	l->rec = NULL;
	l->user = NULL;
	rc = user_id != NULL ? keyring_tag(c->keys, l->key, "lockout", "user", user_id, NULL)
			     : keyring_tag(c->keys, l->key, "lockout", idtype, identifier, NULL);
	if (rc < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_COUNTERS, l->key, strlen(l->key), &l->rec, 1);
	if (rc < 0)
		return rc;
	until = json_integer_value(json_object_get(l->rec, "until"));
	if (until <= (json_int_t)now)
		return ERR_NONE;
	/* No delay is longer than lockout_minutes (a damaged record's "until" may claim so). */
	if (until - (json_int_t)now > (json_int_t)c->conf->otp_lockout_minutes * 60)
		until = (json_int_t)now + (json_int_t)c->conf->otp_lockout_minutes * 60;
	if ((unsigned)(until - now) > *wait)
		*wait = (unsigned)(until - now);
	metrics_throttled("lockout");
	audit_throttled("lockout", (unsigned)(until - now), user_id);
	return ERR_LOCKED;
}

int lockout_fail_txn(struct store_txn *t, struct ctx *c, struct lockout *l)
{
	time_t now = time(NULL);
	unsigned delay;
	json_t *next;
	int rc;

	if (c->conf->account_failures.limit == 0)
		return 0;
	next = rl_window_add(l->rec, &c->conf->account_failures, now);
	if (next == NULL)
		return STORE_ERR;
	delay = lockout_delay(c->conf, rl_window_count(next, now));
	if (delay > 0) {
		json_int_t until = (json_int_t)now + delay;
		json_object_set_new(next, "until", json_integer(until));
		audit_lockout(delay);
		/* The record must outlive its delay as well as its window. */
		if (until > json_integer_value(json_object_get(next, "exp")))
			json_object_set_new(next, "exp", json_integer(until));
	}
	rc = store_put(t, TBL_COUNTERS, l->key, strlen(l->key), next);
	json_decref(l->rec);
	l->rec = next;
	return rc < 0 ? rc : 0;
}

void lockout_done(struct lockout *l)
{
	json_decref(l->rec);
	json_decref(l->user);
	l->rec = NULL;
	l->user = NULL;
}

/*
 * The per-identifier failure counters of older versions, {"failures", "locked_until"} without
 * "exp", which this module replaced and nothing reads any more: dead once their lockout is.
 */
static int old_counter_dead(struct store_txn *t, const void *key, size_t klen, json_t *val,
			    time_t cutoff)
{
	json_t *until = json_object_get(val, "locked_until");
	return json_is_integer(until) && json_integer_value(until) <= (json_int_t)cutoff;
}

int lockout_purge_rules(struct store *s)
{
	return store_purge_rule(s, TBL_COUNTERS, old_counter_dead);
}
