/*
 * lockout: the account throttle against guessing (NIST SP 800-63B 5.2.2: rate limiting, not a
 * wall). Wrong passcodes aimed at a live code are counted per account: every identifier of one
 * user (email, phone, username, user id) counts together, and an identifier without a user
 * counts alone. Up to [otp] account_failures of them in its period cost nothing; each one from
 * the limit on starts a delay, [otp] backoff_seconds doubling with every further failure in the
 * window up to [otp] lockout_minutes, during which every attempt for the account is refused
 * (ERR_LOCKED with the seconds left). No delay is ever longer than lockout_minutes, so the
 * account's owner is never refused longer than that; guesses where no code is outstanding,
 * or from another client, are not counted here at all (the callers decide what is aimed at a
 * live code), so nobody can throttle an account without a code to guess at.
 *
 * The record lives in TBL_COUNTERS under a keyed-hash tag of the account and carries "exp".
 */
#ifndef OTLOGIN_LOCKOUT_H
#define OTLOGIN_LOCKOUT_H

#include <jansson.h>

#include "ctx.h"
#include "keyring.h"
#include "store.h"

struct lockout {
	char key[KEYRING_TAG_HEX];
	json_t *rec;  /* the account's record as read for update, or NULL */
	json_t *user; /* the account's user as login_throttle_txn found it, or NULL */
};

/*
 * Inside t, read the record of an account for update, so that attempts on one account are
 * serialised: the user user_id when the identifier has a user, else (user_id NULL) the
 * identifier (idtype, identifier) alone. Returns ERR_NONE, ERR_LOCKED with *wait raised to
 * the seconds until the delay ends, or a negative store_rc. l->user is left NULL (for
 * login_throttle_txn to fill). Release l with lockout_done.
 */
int lockout_begin_txn(struct store_txn *t, struct ctx *c, const char *user_id, const char *idtype,
		      const char *identifier, struct lockout *l, unsigned *wait);

/* Inside t, count one wrong guess at a live code against the account of l. 0 or store_rc. */
int lockout_fail_txn(struct store_txn *t, struct ctx *c, struct lockout *l);

void lockout_done(struct lockout *l);

/*
 * The delay that the failure making n failures in the window starts, in seconds (0: none), for
 * the configuration conf.
 */
unsigned lockout_delay(const struct conf *conf, unsigned n);

/* Register the purge rule of this module's records without "exp" (store_purge_rule). 0 or -1. */
int lockout_purge_rules(struct store *s);

#endif
