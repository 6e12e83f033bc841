/*
 * ratelimit: how often something may happen (sends to a recipient, a client's sends,
 * failed authenticates per identifier, end-user address and client, wrong client secrets), counted
 * in TBL_COUNTERS so that every worker, and the next process after a restart, sees the same counts.
 * Each limit is a sliding window: at most limit events in any period seconds.
 *
 * A window record holds event counts per time slot of width w = ceil(period / RL_SLOTS)
 * seconds. An event is remembered until its slot has wholly left the window, that is for at
 * least period and at most period + w seconds: the limit holds in every window of period
 * seconds, and errs towards refusing by at most 1/RL_SLOTS of the period. The record stays
 * small (at most RL_SLOTS + 1 slots, and never more slots than events) and the time until
 * the next event is allowed (Retry-After) is exact.
 *
 * Records are keyed by keyed-hash tags (keyring_tag), never by the address or identifier
 * itself, and carry "exp", after which they hold nothing and may be purged.
 */
#ifndef OTLOGIN_RATELIMIT_H
#define OTLOGIN_RATELIMIT_H

#include <jansson.h>
#include <time.h>

#include "conf.h"
#include "ctx.h"
#include "keyring.h"
#include "store.h"

#define RL_SLOTS 60

/* The slot width of a rule in seconds (>= 1). */
unsigned rl_slot_width(const struct conf_rate *rule);

/*
 * The seconds from now until one more event fits the window rec (borrowed; NULL is empty):
 * 0 when it fits now. A rule with limit 0 always answers 0.
 */
unsigned rl_window_wait(json_t *rec, const struct conf_rate *rule, time_t now);

/* The events that count in the window rec (borrowed; NULL is empty) at now. */
unsigned rl_window_count(json_t *rec, time_t now);

/*
 * The window rec (borrowed, NULL is empty) with one event added at now and the slots that
 * left the window dropped, as a new reference; NULL when out of memory.
 */
json_t *rl_window_add(json_t *rec, const struct conf_rate *rule, time_t now);

/*
 * Growing delays, a throttle rather than a wall: the first `free` failures of a subject cost
 * nothing; each further one makes the subject wait before its next failure is counted (one
 * during the wait is refused), `first` seconds after the first of them, twice as long after
 * each next, at most `max`. The count is forgotten `forget` seconds after the last wait ended.
 * free 0 turns it off.
 */
struct rl_backoff {
	unsigned free, forget, first, max;
};

/* The seconds until the subject of backoff record rec (borrowed; NULL: none) may try again. */
unsigned rl_backoff_wait(json_t *rec, time_t now);

/* rec (borrowed; NULL: none) after one more failure at now, as a new reference (NULL: ENOMEM). */
json_t *rl_backoff_fail(json_t *rec, const struct rl_backoff *b, time_t now);

/*
 * Inside t, one failure of the subject a (and sub when not NULL) of kind: 1 with *wait (the
 * seconds left) while an earlier failure's delay runs, and nothing counted; else the failure
 * is counted and 0 returned (*wait 0). A negative store_rc on errors. Only failures may be
 * passed here: whatever succeeds must be answered before, so that a delay never refuses it.
 */
int ratelimit_backoff_txn(struct store_txn *t, struct keyring *kr, const struct rl_backoff *b,
			  unsigned *wait, const char *kind, const char *a, const char *sub);

/*
 * Inside t: check one more event of kind (a short constant such as "recipient") for the
 * subject a (and b when not NULL) against rule, and when count != 0 and it fits, record it.
 * Returns 0 when it fits (counted if asked), 1 when it does not (*wait raised to the seconds
 * until it would, when larger), or a negative store_rc. A rule with limit 0 touches nothing
 * and returns 0. The record is read for update, so parallel requests are serialised on it
 * and none can slip past the limit; a caller that refuses must abort (STORE_REFUSE) so that
 * the limits it already counted in t are rolled back.
 */
int ratelimit_txn(struct store_txn *t, struct keyring *kr, const struct conf_rate *rule, int count,
		  unsigned *wait, const char *kind, const char *a, const char *b);

/*
 * Inside t, the limits of one message (channel "email" or "sms") of client_id to a recipient
 * (subject a, b as for ratelimit_txn): the cool-down and the hourly count per recipient, and
 * the client's spend cap for the channel. Each that fits is counted. Returns 0, or
 * STORE_REFUSE(ERR_RATE_LIMITED) with *wait the seconds until every one of them fits, or a
 * negative store_rc. The limit keys of the recipient go into keys (when not NULL) so that a
 * successful login can release them (ratelimit_release_txn).
 */
int ratelimit_send_txn(struct store_txn *t, struct ctx *c, const char *client_id,
		       const char *channel, const char *a, const char *b, unsigned *wait,
		       json_t *keys);

/*
 * ratelimit_send_txn for a client that hides existence, whose answers must be the same
 * function of the request whether or not the identifier exists or can receive. The limits
 * that may refuse (and so set *wait, Retry-After) are keyed only by what the request says:
 * the channel, and the custom destination when not NULL, else idtype and identifier; plus the
 * client's spend cap. The real recipient to (the address or number the message would go to;
 * NULL when nothing would be delivered) is then held to its own cool-down and recipient_sends
 * silently: over them, *over is set to 1, nothing is counted for it, and the caller must
 * deliver nothing and answer as for a send. Keys as for ratelimit_send_txn.
 */
int ratelimit_hidden_send_txn(struct store_txn *t, struct ctx *c, const char *client_id,
			      const char *channel, const char *idtype, const char *identifier,
			      const char *custom, const char *to, int *over, unsigned *wait,
			      json_t *keys);

/*
 * Release a recipient's send limits (keys as ratelimit_send_txn listed them; borrowed, NULL
 * is none): a login that succeeded proves the recipient asked for the message, so the next
 * one need not wait. Returns 0 or a negative store_rc.
 */
int ratelimit_release_txn(struct store_txn *t, json_t *keys);

/*
 * Inside t, count one failed authenticate: per end-user address (addr as the backend reported
 * it; NULL skips it: a backend's own address is shared by all its users), per identifier
 * (idtype and identifier; NULL skips it) and per client. Each limit that still fits counts
 * it. Returns 0, 1 when one of them was already reached (the failure is answered 429 with
 * *wait), or a negative store_rc. Only failures count, and these limits never stop a right
 * code: what bounds guessing is a code's own failure count and the account throttle (lockout.h).
 */
int ratelimit_auth_fail_txn(struct store_txn *t, struct ctx *c, const char *client_id,
			    const char *addr, const char *idtype, const char *identifier,
			    unsigned *wait);

/* Inside t, a login of (idtype, identifier) succeeded: its failures stop counting. */
int ratelimit_auth_success_txn(struct store_txn *t, struct ctx *c, const char *idtype,
			       const char *identifier);

/*
 * The key under which an end-user address is limited, into out (size outlen): an IPv4
 * address as such, an IPv6 address by its /64 prefix (one host usually holds a whole /64),
 * an IPv4-mapped IPv6 address as IPv4, anything else as given. addr may be NULL: out is "".
 */
void ratelimit_ip_subject(const char *addr, char *out, size_t outlen);

/*
 * Enumeration hiding: a send that delivers nothing (the client hides whether an identifier
 * exists) should take as long as one that delivers. ratelimit_delivery_took records how long
 * a real send of a channel ("email" or "sms") took from start (CLOCK_MONOTONIC, taken before
 * the send's transaction) to the end of its delivery; ratelimit_delivery_pace sleeps until
 * about that long (an average kept by this process) has passed since start, so that a send
 * that delivers nothing, or whose delivery failed early, takes as long as one that went out.
 *
 * The average is shared through c's store (c may be NULL: this process only): a process
 * starts from the shared estimate, so that its first hidden send is padded too, and writes
 * its own at its first delivery and then at most once a minute. The record carries "exp"
 * (a week on): an estimate no delivery refreshed is purged.
 */
void ratelimit_delivery_took(struct ctx *c, const char *channel, const struct timespec *start);
void ratelimit_delivery_pace(struct ctx *c, const char *channel, const struct timespec *start);

#endif
