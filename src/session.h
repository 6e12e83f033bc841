/*
 * session: login sessions and the step every successful authentication ends with. Session ids
 * are bearer secrets (a backend can mint tokens with one), so the store keys sessions by their
 * keyed hash; tokens and the sessions list carry "sid", a non-secret handle derived from that
 * hash. Each user's sessions are indexed ("u:<user_id>:<key>") so that they can be listed and
 * ended together.
 */
#ifndef OTLOGIN_SESSION_H
#define OTLOGIN_SESSION_H

#include <jansson.h>

#include "ctx.h"
#include "err.h"
#include "store.h"

#define SESSION_HANDLE_LEN 32

/* What a login produces, to be turned into the token response after the commit. */
struct login_grant {
	json_t *user;	  /* new reference */
	json_t *session;  /* new reference: the stored session record */
	char *session_id; /* the raw session id (secret), new; NULL after a refresh */
	char sid[SESSION_HANDLE_LEN + 1]; /* public handle */
	char session_key[KEYRING_TAG_HEX];
	char *refresh_token;   /* raw (secret), new */
	char *aud;	       /* the access token's audience, new */
	const char *client_id; /* borrowed from the client */
	json_t *extra_claims;  /* new reference or NULL: approval_data, org_id */
	json_t *claims;	       /* new reference or NULL: the login's OIDC claims request */
	char *org_id;	       /* new or NULL: the organization the tokens are for */
	json_t *org_roles;     /* new reference or NULL: the user roles in it */
	/* An authorization code's exchange (authcode.h) only; borrowed, NULL otherwise. */
	const char *scope; /* the granted scopes: the ID token then gets at_hash */
	const char *nonce; /* echoed in the ID token */
	const char *acr;   /* "mfa" when asked for and met */
};

/* The optional fields every authenticate accepts (borrowed). */
struct login_opts {
	const char *session_id; /* add this factor to an existing session */
	const char *resource;
	json_t *claims;
	const char *org_id;
	const char *device_id;
};

/*
 * The channel an amr value proves possession of ("email" for "eml" and "eotp", "phone" for
 * "sms", else the value itself), for sessions and code records written before logins named
 * their channel: "mfa" is earned by two channels, not by two methods over the same one (a
 * magic link and an email passcode both prove the mailbox).
 */
const char *session_amr_channel(const char *amr);

/*
 * Finish a login inside the caller's transaction: open a session, or add amr to
 * opts->session_id's (which must be alive, the same user's and the same client's) with the
 * channel it proved ("email", "phone", "otp" for a code the backend delivered; NULL for none:
 * "mfa" takes two different channels), and record the login on the user (marking verifies,
 * "email" or "phone_number", verified; NULL or "" for none). Returns ERR_NONE with g filled
 * (the refresh token is the caller's: login.h), ERR_SESSION_NOT_FOUND, ERR_ORG_NOT_MEMBER, or
 * a negative store_rc. The caller releases g with login_grant_free.
 */
int session_login_txn(struct store_txn *t, struct ctx *c, json_t *user, json_t *client,
		      const char *amr, const char *channel, const char *verifies,
		      const struct login_opts *opts, struct login_grant *g);

/*
 * Silent sign-in inside t: g for the session named by the raw opts->session_id, which must be
 * alive and the client's, its user active, scoped to opts->org_id, with opts->claims. Returns
 * ERR_NONE with g filled, ERR_SESSION_NOT_FOUND, ERR_USER_NOT_ACTIVE, ERR_ORG_NOT_MEMBER or a
 * negative store_rc.
 */
int session_reauth_txn(struct store_txn *t, struct ctx *c, json_t *client,
		       const struct login_opts *opts, struct login_grant *g);

/*
 * Scope g to organization org_id (NULL: none): the user must be a member; g gets org_id and
 * the user's roles there. ERR_NONE or ERR_ORG_NOT_MEMBER.
 */
int session_scope_org(struct login_grant *g, const char *org_id);

/*
 * End a session named by its raw id or its public handle; it must be the client's.
 * ERR_NONE, ERR_SESSION_NOT_FOUND, or ERR_UNAVAILABLE.
 */
int session_logout(struct ctx *c, json_t *client, const char *id_or_handle);

/*
 * RP-initiated logout, in one transaction: end the browser's session (raw_id, the raw id its
 * cookie holds; NULL: none) when user_id owns it (NULL: whoever does), and, when sid and
 * user_id are both given, the live session with public handle sid when user_id owns it (an ID
 * token names its session by sid, whichever client it was opened for). Their refresh tokens
 * die with them. *ended is how many sessions ended; *other_user is 1 when raw_id names a live
 * session of another user than user_id, which is left alive (the caller asks the browser
 * first). ERR_NONE or ERR_UNAVAILABLE.
 */
int session_end_browser(struct ctx *c, const char *raw_id, const char *user_id, const char *sid,
			int *ended, int *other_user);

/*
 * A page of the user's live sessions (only those of client_id unless it is NULL), in handle
 * order, starting after the session handle `after` (NULL: from the first): at most page_size
 * (>= 1) of {session_id (handle), start_time, expiration_time} (RFC 3339), as a new array.
 * *more is 1 when further sessions follow (the next page starts after the last handle of
 * this one), else 0. NULL on a store error.
 */
json_t *session_list(struct ctx *c, const char *user_id, const char *client_id, const char *after,
		     size_t page_size, int *more);

/*
 * Inside t, end the first of the user's sessions (of client_id only, unless NULL): as many as
 * one bounded transaction should hold. 0 when that was all of them, 1 when more may remain
 * (session_end_all, after the commit, ends them), or < 0.
 */
int session_end_all_txn(struct store_txn *t, const char *user_id, const char *client_id);

/*
 * End every session of the user (of client_id only, unless NULL), each transaction ending a
 * bounded number of them; sessions that start meanwhile may be ended or not. ERR_NONE, or
 * ERR_UNAVAILABLE when a transaction failed (those before it stay committed: call it again).
 */
int session_end_all(struct ctx *c, const char *user_id, const char *client_id);

/*
 * The live session stored under key, inside t (for refresh). STORE_FOUND with *session (new
 * reference), STORE_NOTFOUND when gone or expired, or a negative store_rc.
 */
int session_get_live_txn(struct store_txn *t, const char *key, json_t **session);

/* End the session stored under key inside t (refresh-token reuse, revocation). */
int session_end_txn(struct store_txn *t, const char *key);

void login_grant_free(struct login_grant *g);

/* Register the purge rule of this module's records without "exp" (store_purge_rule). 0 or -1. */
int session_purge_rules(struct store *s);

#endif
