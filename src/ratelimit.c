#include "ratelimit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "err.h"
#include "log.h"
#include "metrics.h"

/* The largest count a slot can hold (a window's limit is at most 1 000 000). */
#define RL_COUNT_MAX (1 << 30)
/* Longer than any wait a window can ask for: a period is at most a week, plus one slot. */
#define RL_WAIT_MAX (8 * 24 * 3600)

unsigned rl_slot_width(const struct conf_rate *rule)
{
	unsigned w = (rule->period + RL_SLOTS - 1) / RL_SLOTS;
	return w ? w : 1;
}

/*
 * The record's slots are [leaves, count] pairs in ascending order of leaves: the time at
 * which the slot's events stop counting (slot start + width + period). Keeping the end
 * rather than the start means a changed configuration never shortens what was counted.
 */
static json_t *slots_of(json_t *rec)
{
	json_t *slots = json_object_get(rec, "slots");
	return json_is_array(slots) ? slots : NULL;
}

static json_int_t slot_leaves(json_t *slot)
{
	return json_integer_value(json_array_get(slot, 0));
}

/* A slot's count; a damaged record's is kept within bounds, so that sums cannot overflow. */
static json_int_t slot_count(json_t *slot)
{
	json_int_t n = json_integer_value(json_array_get(slot, 1));
	return n > 0 ? (n < RL_COUNT_MAX ? n : RL_COUNT_MAX) : 0;
}

static json_int_t window_total(json_t *slots, time_t now)
{
	json_t *slot;
	json_int_t total = 0;
	size_t i;

	json_array_foreach(slots, i, slot)
	{
		if (slot_leaves(slot) > (json_int_t)now)
			total += slot_count(slot);
	}
	return total;
}

unsigned rl_window_count(json_t *rec, time_t now)
{
	json_int_t n = window_total(slots_of(rec), now);
	return n > 0xffffff ? 0xffffff : (unsigned)n;
}

/*
 * The seconds from now until leaves, at most RL_WAIT_MAX: a damaged record's slot may claim to
 * leave in 2^32 s, which must not wrap around to "fits now".
 */
static unsigned wait_until(json_int_t leaves, time_t now)
{
	json_int_t d = leaves - (json_int_t)now;
	return (unsigned)(d < RL_WAIT_MAX ? d : RL_WAIT_MAX);
}

unsigned rl_window_wait(json_t *rec, const struct conf_rate *rule, time_t now)
{
	json_t *slots = slots_of(rec), *slot;
	json_int_t over;
	size_t i;

	if (rule->limit == 0)
		return 0;
	over = window_total(slots, now) + 1 - (json_int_t)rule->limit;
	if (over <= 0)
		return 0;
	/* The oldest slots leave first: wait until enough of them have left. */
	json_array_foreach(slots, i, slot)
	{
		if (slot_leaves(slot) <= (json_int_t)now)
			continue;
		over -= slot_count(slot);
		if (over <= 0)
			return wait_until(slot_leaves(slot), now);
	}
	/* Not reached when the slots are well formed; a broken record waits a whole period. */
	return rule->period ? rule->period : 1;
}

/* Append [leaves, n] to slots. 0, or -1 when out of memory. */
static int slot_append(json_t *slots, json_int_t leaves, json_int_t n)
{
	return json_array_append_new(slots, json_pack("[I, I]", leaves, n));
}

json_t *rl_window_add(json_t *rec, const struct conf_rate *rule, time_t now)
{
	json_t *old = slots_of(rec), *slots = json_array(), *slot;
	json_int_t w = rl_slot_width(rule);
	json_int_t leaves = ((json_int_t)now / w) * w + w + (json_int_t)rule->period, last = 0;
	size_t i;
	int added = 0, rc = 0;

	if (slots == NULL)
		return NULL;
	/* Copy what still counts, inserting the new event at its place (the clock may step). */
	json_array_foreach(old, i, slot)
	{
		json_int_t at = slot_leaves(slot), n = slot_count(slot);
		if (at <= (json_int_t)now || n == 0)
			continue;
		if (!added && at >= leaves) {
			if (at == leaves)
				n++;
			else
				rc |= slot_append(slots, leaves, 1);
			added = 1;
		}
		rc |= slot_append(slots, at, n);
		last = at > last ? at : last;
	}
	if (!added)
		rc |= slot_append(slots, leaves, 1);
	last = leaves > last ? leaves : last;
	if (rc != 0) {
		/* Losing a count would let an event through unlimited: fail instead. */
		json_decref(slots);
		return NULL;
	}
	return json_pack("{s:o, s:I}", "slots", slots, "exp", last);
}

/*
 * A backoff record is {"failures": n, "next": t, "exp": e}: n failures of its subject, the
 * next attempt is checked from t on, and at e (a quiet period after t) it is forgotten.
 */
static json_int_t backoff_int(json_t *rec, const char *name)
{
	json_int_t v = json_integer_value(json_object_get(rec, name));
	return v > 0 ? v : 0;
}

unsigned rl_backoff_wait(json_t *rec, time_t now)
{
	json_int_t next = backoff_int(rec, "next");

	if (backoff_int(rec, "exp") <= (json_int_t)now || next <= (json_int_t)now)
		return 0;
	return (unsigned)(next - (json_int_t)now);
}

json_t *rl_backoff_fail(json_t *rec, const struct rl_backoff *b, time_t now)
{
	json_int_t n = backoff_int(rec, "exp") > (json_int_t)now ? backoff_int(rec, "failures") : 0;
	json_int_t delay = 0, next;

	n++;
	if (n >= (json_int_t)b->free) {
		/* Each failure past the free ones waits twice as long as the one before. */
		delay = b->first < b->max ? b->first : b->max;
		for (json_int_t i = (json_int_t)b->free; i < n && delay < (json_int_t)b->max; i++)
			delay *= 2;
		if (delay > (json_int_t)b->max)
			delay = b->max;
	}
	next = (json_int_t)now + delay;
	return json_pack("{s:I, s:I, s:I}", "failures", n, "next", next, "exp",
			 next + (json_int_t)b->forget);
}

/* The key of the window of kind for subject a (and b when not NULL). 0 or -1. */
static int limit_key(struct keyring *kr, char key[KEYRING_TAG_HEX], const char *kind, const char *a,
		     const char *b)
{
	return keyring_tag(kr, key, "limit", kind, a ? a : "", b, NULL);
}

/* Store next (consumed; NULL: it could not be made) under key. 0 or a negative store_rc. */
static int put_record(struct store_txn *t, const char *key, json_t *next)
{
	int rc;

	if (next == NULL)
		return STORE_ERR;
	rc = store_put(t, TBL_COUNTERS, key, strlen(key), next);
	json_decref(next);
	return rc < 0 ? rc : 0;
}

int ratelimit_backoff_txn(struct store_txn *t, struct keyring *kr, const struct rl_backoff *b,
			  unsigned *wait, const char *kind, const char *a, const char *sub)
{
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec = NULL, *next;
	int rc;

	*wait = 0;
	if (b->free == 0)
		return 0;
	if (limit_key(kr, key, kind, a, sub) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_COUNTERS, key, strlen(key), &rec, 1);
	if (rc < 0)
		return rc;
	*wait = rl_backoff_wait(rec, now);
	if (*wait > 0) {
		metrics_throttled(kind);
		audit_throttled(kind, *wait, NULL);
		/* Not counted: waiting out the delay is all that is asked of the subject. */
		json_decref(rec);
		return 1;
	}
	next = rl_backoff_fail(rec, b, now);
	json_decref(rec);
	return put_record(t, key, next);
}

static int ratelimit_key_txn(struct store_txn *t, struct keyring *kr, const struct conf_rate *rule,
			     int count, unsigned *wait, const char *kind, const char *a,
			     const char *b, json_t *keys);

int ratelimit_txn(struct store_txn *t, struct keyring *kr, const struct conf_rate *rule, int count,
		  unsigned *wait, const char *kind, const char *a, const char *b)
{
	return ratelimit_key_txn(t, kr, rule, count, wait, kind, a, b, NULL);
}

/* ratelimit_txn, also appending the record's key to keys when not NULL. */
static int ratelimit_key_txn(struct store_txn *t, struct keyring *kr, const struct conf_rate *rule,
			     int count, unsigned *wait, const char *kind, const char *a,
			     const char *b, json_t *keys)
{
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec = NULL, *next;
	unsigned w;
	int rc;

	if (rule->limit == 0)
		return 0;
	if (limit_key(kr, key, kind, a, b) < 0)
		return STORE_ERR;
	if (keys != NULL && json_array_append_new(keys, json_string(key)) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_COUNTERS, key, strlen(key), &rec, 1);
	if (rc < 0)
		return rc;
	w = rl_window_wait(rec, rule, now);
	if (w > 0) {
		metrics_throttled(kind);
		audit_throttled(kind, w, NULL);
		if (w > *wait)
			*wait = w;
		json_decref(rec);
		return 1;
	}
	if (!count) {
		json_decref(rec);
		return 0;
	}
	next = rl_window_add(rec, rule, now);
	json_decref(rec);
	return put_record(t, key, next);
}

/* The recipient's limits: its cool-down and recipient_sends. */
static struct conf_rate cooldown_rule(struct ctx *c)
{
	struct conf_rate r = {c->conf->send_cooldown ? 1 : 0, c->conf->send_cooldown};
	return r;
}

/*
 * The cool-down and recipient_sends of subject a (and b), each counted when it fits, its key
 * listed in keys: 0, 1 when one was reached (*wait raised), or a negative store_rc.
 */
static int recipient_limits_txn(struct store_txn *t, struct ctx *c, const char *a, const char *b,
				unsigned *wait, json_t *keys)
{
	struct conf_rate cooldown = cooldown_rule(c);
	int rc, refused;

	rc = ratelimit_key_txn(t, c->keys, &cooldown, 1, wait, "cooldown", a, b, keys);
	if (rc < 0)
		return rc;
	refused = rc;
	rc = ratelimit_key_txn(t, c->keys, &c->conf->recipient_sends, 1, wait, "recipient", a, b,
			       keys);
	return rc < 0 ? rc : refused | rc;
}

int ratelimit_send_txn(struct store_txn *t, struct ctx *c, const char *client_id,
		       const char *channel, const char *a, const char *b, unsigned *wait,
		       json_t *keys)
{
	const struct conf_rate *spend =
	    strcmp(channel, "sms") == 0 ? &c->conf->client_sms : &c->conf->client_emails;
	int rc, refused = 0;

	*wait = 0;
	/*
	 * Every limit is checked even after one refused, so that Retry-After names the time when
	 * all of them fit. The recipient's come first and the client's (hot) record last, so it
	 * is locked for the shortest time; every send takes them in this order.
	 */
	rc = recipient_limits_txn(t, c, a, b, wait, keys);
	if (rc < 0)
		return rc;
	refused |= rc;
	rc = ratelimit_txn(t, c->keys, spend, 1, wait, "client-sends", client_id, channel);
	if (rc < 0)
		return rc;
	refused |= rc;
	return refused ? STORE_REFUSE(ERR_RATE_LIMITED) : 0;
}

/*
 * The recipient to's own limits, checked before any is counted: 0 when all fit (then each is
 * counted and its key listed in keys), 1 when one does not (nothing is counted), or a
 * negative store_rc.
 */
static int recipient_silent_txn(struct store_txn *t, struct ctx *c, const char *to, json_t *keys)
{
	struct conf_rate cooldown = cooldown_rule(c);
	unsigned ignored = 0;
	int rc;

	rc = ratelimit_key_txn(t, c->keys, &cooldown, 0, &ignored, "cooldown", to, NULL, NULL);
	if (rc != 0)
		return rc;
	rc = ratelimit_key_txn(t, c->keys, &c->conf->recipient_sends, 0, &ignored, "recipient", to,
			       NULL, NULL);
	if (rc != 0)
		return rc;
	rc = ratelimit_key_txn(t, c->keys, &cooldown, 1, &ignored, "cooldown", to, NULL, keys);
	if (rc != 0)
		return rc;
	return ratelimit_key_txn(t, c->keys, &c->conf->recipient_sends, 1, &ignored, "recipient",
				 to, NULL, keys);
}

int ratelimit_hidden_send_txn(struct store_txn *t, struct ctx *c, const char *client_id,
			      const char *channel, const char *idtype, const char *identifier,
			      const char *custom, const char *to, int *over, unsigned *wait,
			      json_t *keys)
{
	const struct conf_rate *spend =
	    strcmp(channel, "sms") == 0 ? &c->conf->client_sms : &c->conf->client_emails;
	char what[64];
	const char *a = custom ? custom : identifier;
	int rc, refused = 0;

	*wait = 0;
	*over = 0;
	/*
	 * The request's subject has a namespace of its own ("request", the channel, and the
	 * identifier type or "custom"), so it is never the recipient's record: an email address
	 * asked for by itself is counted once under each.
	 */
	snprintf(what, sizeof(what), "request/%s/%s", channel, custom ? "custom" : idtype);
	rc = recipient_limits_txn(t, c, a, what, wait, keys);
	if (rc < 0)
		return rc;
	refused |= rc;
	/*
	 * The real recipient is looked at only when the request may go on: a refusal does the
	 * same work whether or not there is one. Same order as ratelimit_send_txn: the client's
	 * record last.
	 */
	if (!refused && to != NULL) {
		rc = recipient_silent_txn(t, c, to, keys);
		if (rc < 0)
			return rc;
		*over = rc;
	}
	rc = ratelimit_txn(t, c->keys, spend, 1, wait, "client-sends", client_id, channel);
	if (rc < 0)
		return rc;
	refused |= rc;
	return refused ? STORE_REFUSE(ERR_RATE_LIMITED) : 0;
}

int ratelimit_release_txn(struct store_txn *t, json_t *keys)
{
	size_t i;
	json_t *k;

	json_array_foreach(keys, i, k)
	{
		const char *key = json_string_value(k);
		int rc = key ? store_del(t, TBL_COUNTERS, key, strlen(key)) : 0;
		if (rc < 0)
			return rc;
	}
	return 0;
}

int ratelimit_auth_fail_txn(struct store_txn *t, struct ctx *c, const char *client_id,
			    const char *addr, const char *idtype, const char *identifier,
			    unsigned *wait)
{
	char subject[96];
	int rc, refused = 0;

	*wait = 0;
	if (addr != NULL) {
		ratelimit_ip_subject(addr, subject, sizeof(subject));
		rc = ratelimit_txn(t, c->keys, &c->conf->ip_attempts, 1, wait, "ip", subject, NULL);
		if (rc < 0)
			return rc;
		refused |= rc;
	}
	if (identifier != NULL) {
		rc = ratelimit_txn(t, c->keys, &c->conf->identifier_attempts, 1, wait, "identifier",
				   idtype, identifier);
		if (rc < 0)
			return rc;
		refused |= rc;
	}
	/* The client's record is the hot one: last, so it is locked for the shortest time. */
	rc = ratelimit_txn(t, c->keys, &c->conf->client_attempts, 1, wait, "client-attempts",
			   client_id, NULL);
	if (rc < 0)
		return rc;
	return refused | rc;
}

int ratelimit_auth_success_txn(struct store_txn *t, struct ctx *c, const char *idtype,
			       const char *identifier)
{
	char key[KEYRING_TAG_HEX];
	int rc;

	if (limit_key(c->keys, key, "identifier", idtype, identifier) < 0)
		return STORE_ERR;
	rc = store_del(t, TBL_COUNTERS, key, strlen(key));
	return rc < 0 ? rc : 0;
}

void ratelimit_ip_subject(const char *addr, char *out, size_t outlen)
{
	unsigned char raw[16];
	char text[INET6_ADDRSTRLEN];
	size_t i;

	if (addr == NULL) {
		snprintf(out, outlen, "%s", "");
		return;
	}
	if (inet_pton(AF_INET, addr, raw) == 1 && inet_ntop(AF_INET, raw, text, sizeof(text))) {
		snprintf(out, outlen, "%s", text);
		return;
	}
	if (inet_pton(AF_INET6, addr, raw) == 1) {
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(raw, mapped, sizeof(mapped)) == 0 &&
		    inet_ntop(AF_INET, raw + 12, text, sizeof(text))) {
			snprintf(out, outlen, "%s", text);
			return;
		}
		memset(raw + 8, 0, 8);
		if (inet_ntop(AF_INET6, raw, text, sizeof(text))) {
			snprintf(out, outlen, "%s/64", text);
			return;
		}
	}
	/* Not an address: the backend's own spelling, case-folded, is the key. */
	for (i = 0; addr[i] != '\0' && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)addr[i]);
	if (outlen > 0)
		out[i] = '\0';
}

/*
 * Per process and channel: a moving average of how long deliveries take, in nanoseconds. It
 * starts from, and now and then updates, an estimate shared through TBL_COUNTERS, so that a
 * process that has delivered nothing yet (a worker just started) pads like the others.
 */
#define PACE_SHARE_EVERY 60	       /* seconds between two writes of one process */
#define PACE_SHARE_TTL (7 * 24 * 3600) /* an estimate nobody refreshed is purged */

static double pace_ns[2];
static time_t pace_shared_at[2];

static int pace_index(const char *channel)
{
	return strcmp(channel, "sms") == 0;
}

struct pace_arg {
	struct ctx *c;
	const char *channel;
	double ns; /* in: what to write (write != 0); out: what was read, 0 for none */
	int write;
};

static int pace_txn(struct store_txn *t, void *argp)
{
	struct pace_arg *p = argp;
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec;
	int rc;

	if (keyring_tag(p->c->keys, key, "delivery-pace", p->channel, NULL) < 0)
		return STORE_ERR;
	if (p->write) {
		rec = json_pack("{s:I, s:I}", "ns", (json_int_t)p->ns, "exp",
				(json_int_t)(now + PACE_SHARE_TTL));
		if (rec == NULL)
			return STORE_ERR;
		rc = store_put(t, TBL_COUNTERS, key, strlen(key), rec);
		json_decref(rec);
		return rc < 0 ? rc : 0;
	}
	p->ns = 0;
	rc = store_get(t, TBL_COUNTERS, key, strlen(key), &rec, 0);
	if (rc != STORE_FOUND)
		return rc < 0 ? rc : 0;
	if (json_integer_value(json_object_get(rec, "exp")) > (json_int_t)now &&
	    json_integer_value(json_object_get(rec, "ns")) > 0)
		p->ns = (double)json_integer_value(json_object_get(rec, "ns"));
	json_decref(rec);
	return 0;
}

/* The process's estimate for channel, taken from the shared one while it has none. */
static double *pace_of(struct ctx *c, const char *channel)
{
	double *avg = &pace_ns[pace_index(channel)];

	if (*avg <= 0 && c != NULL && c->store != NULL) {
		struct pace_arg p = {c, channel, 0, 0};
		if (store_run(c->store, pace_txn, &p) >= 0 && p.ns > 0)
			*avg = p.ns > 5e9 ? 5e9 : p.ns;
	}
	return avg;
}

void ratelimit_delivery_took(struct ctx *c, const char *channel, const struct timespec *start)
{
	struct timespec end;
	double ns, *avg;
	time_t now = time(NULL), *shared = &pace_shared_at[pace_index(channel)];

	if (clock_gettime(CLOCK_MONOTONIC, &end) < 0)
		return;
	ns = (double)(end.tv_sec - start->tv_sec) * 1e9 + (double)(end.tv_nsec - start->tv_nsec);
	if (ns < 0)
		return;
	/* Read only now, so that reading the shared estimate is not counted as delivery time. */
	avg = pace_of(c, channel);
	/* A slow outlier (a relay that timed out and was retried) must not stall the others. */
	if (ns > 5e9)
		ns = 5e9;
	*avg = *avg > 0 ? 0.8 * *avg + 0.2 * ns : ns;
	/* Shared at a process's first delivery, then at most once a minute. */
	if (c != NULL && c->store != NULL &&
	    (*shared == 0 || now < *shared || now - *shared >= PACE_SHARE_EVERY)) {
		struct pace_arg p = {c, channel, *avg, 1};
		*shared = now;
		if (store_run(c->store, pace_txn, &p) < 0)
			log_warn("the delivery time estimate could not be shared");
	}
}

void ratelimit_delivery_pace(struct ctx *c, const char *channel, const struct timespec *start)
{
	long long ns = (long long)*pace_of(c, channel);
	struct timespec until = *start;

	if (ns <= 0)
		return;
	until.tv_sec += (time_t)(ns / 1000000000LL);
	until.tv_nsec += (long)(ns % 1000000000LL);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
}
