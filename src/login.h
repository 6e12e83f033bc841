/*
 * login: what every login kind shares. A kind (a passcode by email, SMS or for the backend to
 * deliver; a magic link; later the redirect flows) is a table of functions over this core, the
 * way OpenSMTPD's backends are tables of functions:
 *
 * - sending: find the account, decide where the secret goes or, for a client that hides
 *   existence, go on as if it could go (a "shadow" send: the same work and answer, nothing
 *   usable stored or delivered), count the send limits, issue the secret with a request id
 *   when asked, then deliver it (or take as long as a delivery would), and withdraw it when
 *   the delivery failed;
 * - authenticating: count a failed attempt against the attempt limits, hold back a throttled
 *   account (lockout.h), and finish a login: the user (created at signup), a session, the
 *   end of the identifier's failure count, then the tokens.
 */
#ifndef OTLOGIN_LOGIN_H
#define OTLOGIN_LOGIN_H

#include <jansson.h>
#include <time.h>

#include "ctx.h"
#include "keyring.h"
#include "lockout.h"
#include "mail.h"
#include "session.h"
#include "store.h"
#include "user.h"

struct login_send;

struct login_kind {
	const char *what;   /* "passcode", "magic link": for the logs */
	const char *secret; /* "code", "link": what a failed delivery withdraws, for the logs */
	/*
	 * Where the secret of s goes for user (NULL: no such user yet): fill s->to, or return
	 * the err that says why it cannot go (no address or number, an invalid one).
	 */
	int (*destination)(struct login_send *s, json_t *user);
	/*
	 * Inside t: make the secret, compose the message to s->to (when s->channel is set),
	 * and store the record, dead when s->shadow, with "request_id" set to rid_tag and
	 * "limits" to limit_keys when not NULL (a login releases them). ERR_NONE, an err, or a
	 * negative store_rc. Runs again when the transaction is retried.
	 */
	int (*issue)(struct login_send *s, struct store_txn *t, const char *rid_tag,
		     json_t *limit_keys);
	/* Deliver the composed message: ERR_NONE, ERR_DELIVERY or ERR_INVALID_INPUT. */
	int (*deliver)(struct login_send *s);
	/* Inside t, after a failed delivery: make the issued secret unusable. */
	int (*withdraw)(struct login_send *s, struct store_txn *t);
};

struct login_send {
	/* in */
	struct ctx *c;
	const struct login_kind *kind;
	json_t *client; /* borrowed */
	enum user_idtype idtype;
	const char *identifier; /* canonical form */
	const char *channel;	/* "email" or "sms"; NULL: nothing is delivered (direct) */
	const char *custom;	/* the request's custom destination, or NULL */
	int want_request_id;
	void *state; /* the kind's own */
	/* out */
	char to[256];
	char *message; /* composed by issue (new; wiped by login_send_done) */
	size_t message_len;
	char *request_id; /* when asked (new) */
	int shadow;	  /* nothing usable is stored or delivered */
	int over;	  /* the recipient's own limits held it back (a shadow send) */
	unsigned retry_after;
};

/*
 * Send: ERR_NONE (s->request_id set when asked), or an err: ERR_RATE_LIMITED with
 * s->retry_after (nothing stored or sent), the kind's destination errors, ERR_USER_NOT_FOUND,
 * ERR_USER_NOT_ACTIVE, ERR_DELIVERY, ERR_UNAVAILABLE. A client that hides existence gets
 * ERR_NONE for all of those but a rate limit (see login.h above).
 */
int login_send(struct login_send *s);
/* Wipe and release what login_send filled in (not request_id once taken: set it to NULL). */
void login_send_done(struct login_send *s);

/*
 * Compose the login mail of kind (MAIL_OTP: secret is the code; MAIL_LINK: the link) to `to`,
 * replacing (wiping) *msg. ERR_NONE with *msg (new) and *len, ERR_INVALID_INPUT when the mail
 * module refuses the content, ERR_INTERNAL.
 */
int login_compose_mail(struct ctx *c, json_t *client, enum mail_kind kind, const char *to,
		       const char *secret, unsigned minutes, const struct mail_content *content,
		       char **msg, size_t *len);

/*
 * 1 when a send's stored request id hash (NULL or "": none was asked for) matches the one
 * presented (constant time), else 0.
 */
int login_request_id_ok(struct ctx *c, const char *stored, const char *presented);

/* The attempt of a login being authenticated, in one transaction. */
struct login_attempt {
	struct ctx *c;
	json_t *client;		/* borrowed */
	const char *ip;		/* the end user's address, or NULL */
	const char *idtype;	/* the identifier, once known (NULL for an unknown magic link) */
	const char *identifier; /* canonical form */
	unsigned retry_after;	/* ERR_RATE_LIMITED, ERR_LOCKED */
	struct login_grant grant;
	/*
	 * Borrowed, or NULL: the identifier's user as read earlier in the same transaction and
	 * not written since (struct lockout's user), which login_session_txn then takes instead
	 * of reading it again. Set only around that call.
	 */
	json_t *known;
};

/*
 * Inside t, a failed attempt (a wrong secret, or one where none is outstanding): it counts
 * toward the attempt limits. ERR_BAD_CREDENTIALS, ERR_RATE_LIMITED past one of them (with
 * a->retry_after), or a negative store_rc.
 */
int login_failed_txn(struct store_txn *t, struct login_attempt *a);

/*
 * Inside t, read the throttle of the identifier's account into l (release it with
 * lockout_done), and the account's user into l->user (NULL when there is none yet): ERR_NONE,
 * ERR_LOCKED (a->retry_after) or a negative store_rc.
 */
int login_throttle_txn(struct store_txn *t, struct login_attempt *a, struct lockout *l);

/*
 * Inside t, the secret proved the identifier: find or create (signup) its user, who must be
 * active, open or join a session with amr and the channel it proved (session.h), end the
 * identifier's failure count and release the send limits listed in limits (NULL: none).
 * ERR_NONE with a->grant filled, an err, or a negative store_rc.
 */
int login_finish_txn(struct store_txn *t, struct login_attempt *a, const char *amr,
		     const char *channel, const char *verifies, json_t *limits,
		     const struct login_opts *opts, const char *aud);

/*
 * login_finish_txn without the tokens: for a login that ends in an authorization code (the
 * hosted page), whose tokens come from the code's exchange. ERR_NONE with a->grant filled
 * (no refresh token), an err, or a negative store_rc.
 */
int login_session_txn(struct store_txn *t, struct login_attempt *a, const char *amr,
		      const char *channel, const char *verifies, json_t *limits,
		      const struct login_opts *opts);

/*
 * The one rule for ending an authenticate transaction that returned rc: a refusal of the login
 * itself (user disabled or unknown, session or organization not found), after its secret was
 * consumed, must not consume it (STORE_REFUSE: abort); everything else commits, failures
 * counted and secrets spent.
 */
int login_txn_end(int rc);

/*
 * After the transaction, rc its outcome (store_outcome already applied): the token response
 * into *tokens (new reference) on ERR_NONE; the log line of a refusal; a->grant released.
 * Returns rc, or ERR_INTERNAL when the tokens could not be made.
 */
int login_tokens(struct login_attempt *a, int rc, const struct login_opts *opts,
		 unsigned *retry_after, json_t **tokens);

/*
 * Silent sign-in (a login kind of its own: the session is the proof): tokens for the session
 * named by the raw opts->session_id, which must be alive and the client's, scoped to
 * opts->org_id; the refresh family it begins keeps opts->claims. Returns ERR_NONE with g
 * filled, ERR_SESSION_NOT_FOUND, ERR_USER_NOT_ACTIVE, ERR_ORG_NOT_MEMBER or ERR_UNAVAILABLE.
 */
int login_reauth(struct ctx *c, json_t *client, const struct login_opts *opts, const char *aud,
		 struct login_grant *g);

#endif
