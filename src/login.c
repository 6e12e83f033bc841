#include "login.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "token.h"

#define REQUEST_ID_BYTES 16

/* ---- sending -------------------------------------------------------------------------------- */

/* Why the identifier cannot log in (an err), or ERR_NONE with s->to filled by the kind. */
static int deliverable(struct login_send *s, json_t *user, int found)
{
	if (!found && !user_signup_allows(s->client, s->idtype))
		return ERR_USER_NOT_FOUND;
	if (user != NULL && !user_is_active(user))
		return ERR_USER_NOT_ACTIVE;
	return s->kind->destination(s, user);
}

/*
 * The send limits, counted in t. A revealing client's are those of the recipient, the address
 * or number the message goes to. A hiding client's that can refuse are keyed by the request
 * alone, so that they answer alike whether or not there is a recipient; the recipient's own
 * are then kept silently (s->over, see ratelimit_hidden_send_txn).
 */
static int send_limits(struct login_send *s, struct store_txn *t, json_t *keys)
{
	const char *client_id = client_id_of(s->client);

	s->over = 0;
	if (!client_hides_existence(s->client))
		return ratelimit_send_txn(t, s->c, client_id, s->channel, s->to, NULL,
					  &s->retry_after, keys);
	return ratelimit_hidden_send_txn(t, s->c, client_id, s->channel,
					 user_idtype_name(s->idtype), s->identifier, s->custom,
					 s->shadow ? NULL : s->to, &s->over, &s->retry_after, keys);
}

/* A new request id (replacing s->request_id) and its keyed hash for the record. 0 or -1. */
static int new_request_id(struct login_send *s, char tag[KEYRING_TAG_HEX])
{
	crypto_free_str(s->request_id);
	s->request_id = crypto_random_token(REQUEST_ID_BYTES);
	return s->request_id != NULL &&
		       keyring_tag(s->c->keys, tag, "request-id", s->request_id, NULL) == 0
		   ? 0
		   : -1;
}

static int send_txn(struct store_txn *t, void *arg)
{
	struct login_send *s = arg;
	char rid_tag[KEYRING_TAG_HEX] = "";
	json_t *user = NULL, *limit_keys = NULL;
	int rc;

	rc = user_find_txn(t, s->idtype, s->identifier, &user);
	if (rc < 0)
		return rc;
	s->shadow = 0;
	rc = deliverable(s, user, rc == STORE_FOUND);
	json_decref(user);
	if (rc != ERR_NONE) {
		if (!client_hides_existence(s->client))
			return rc;
		/*
		 * The client hides whether this identifier can log in: go on exactly as for one
		 * that can (same limits, same composing, same writes), but store a secret that
		 * never works and deliver nothing. The message goes to a stand-in that is valid
		 * wherever a real message can be composed at all: our own sender address.
		 */
		s->shadow = 1;
		snprintf(s->to, sizeof(s->to), "%s",
			 s->channel && strcmp(s->channel, "sms") == 0 ? "+10000000000"
								      : s->c->conf->mail_from);
	}
	if (s->channel != NULL) {
		if ((limit_keys = json_array()) == NULL)
			return STORE_ERR;
		if ((rc = send_limits(s, t, limit_keys)) < 0)
			goto out;
		/* Over the recipient's own limits: answered as sent, and nothing goes out. */
		if (s->over)
			s->shadow = 1;
	}
	if (s->want_request_id && new_request_id(s, rid_tag) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	rc = s->kind->issue(s, t, rid_tag, json_array_size(limit_keys) ? limit_keys : NULL);
out:
	json_decref(limit_keys);
	/* A refusal after the limits were counted must not count them. */
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

static int withdraw_txn(struct store_txn *t, void *arg)
{
	struct login_send *s = arg;
	return s->kind->withdraw(s, t);
}

/*
 * Deliver what was issued; the record is committed already. On failure it is withdrawn (no
 * usable secret may stay behind a delivery that failed), and a client that hides existence
 * hears of it no more than of a send that never tried (those are the identifiers that cannot
 * receive): the failure is only logged and answered as a send, no sooner than a delivery.
 */
static int deliver(struct login_send *s, const struct timespec *start)
{
	char masked[64];
	uint64_t started = metrics_clock_us();
	int rc;

	log_mask_addr(s->to, masked, sizeof(masked));
	rc = s->kind->deliver(s);
	metrics_delivery(s->channel, rc == ERR_NONE, started);
	audit_event(rc == ERR_NONE ? "message_sent" : "delivery_failed", rc == ERR_NONE,
		    audit_reason(rc), "client_id", client_id_of(s->client), "message",
		    s->kind->secret, "channel", s->channel, "destination", s->to, (char *)NULL);
	if (rc == ERR_NONE) {
		ratelimit_delivery_took(s->c, s->channel, start);
		log_info("sent a %s by %s to %s", s->kind->what, s->channel, masked);
		return ERR_NONE;
	}
	log_err("no %s went out by %s to %s: the %s is withdrawn", s->kind->what, s->channel,
		masked, s->kind->secret);
	if (store_run(s->c->store, withdraw_txn, s) < 0)
		log_err("a %s whose delivery failed could not be withdrawn; it expires by itself",
			s->kind->what);
	if (!client_hides_existence(s->client))
		return rc;
	log_warn("the failed send is answered as sent: the client hides existence");
	ratelimit_delivery_pace(s->c, s->channel, start);
	return ERR_NONE;
}

int login_send(struct login_send *s)
{
	struct timespec start;
	char masked[64];
	int rc;

	/*
	 * The time of a send is counted from here, before the transaction: a real send's (which
	 * counts the recipient's limits too) is in its delivery time, and a send that delivers
	 * nothing is paced from here, so the two transactions cannot differ visibly.
	 */
	clock_gettime(CLOCK_MONOTONIC, &start);
	rc = store_outcome(store_run(s->c->store, send_txn, s), ERR_UNAVAILABLE);
	if (rc == ERR_RATE_LIMITED) {
		s->retry_after = s->retry_after ? s->retry_after : 1;
		log_info("%s send for %s refused: rate limit, retry in %u s", s->kind->what,
			 log_mask_addr(s->identifier, masked, sizeof(masked)), s->retry_after);
	}
	if (rc != ERR_NONE || s->channel == NULL || s->shadow)
		/* Sent or not, with why: a delivery's outcome is audited by deliver. */
		audit_event("message_sent", rc == ERR_NONE && !s->shadow,
			    s->over	? "recipient_limit"
			    : s->shadow ? "not_sent"
					: audit_reason(rc),
			    "client_id", client_id_of(s->client), "message", s->kind->secret,
			    "channel", s->channel ? s->channel : "none", "destination",
			    s->to[0] ? s->to : s->identifier, (char *)NULL);
	if (rc != ERR_NONE || s->channel == NULL)
		return rc;
	if (s->over)
		log_info("%s to %s not sent: the recipient's send limit is reached (answered as "
			 "sent: the client hides existence)",
			 s->kind->what, log_mask_addr(s->to, masked, sizeof(masked)));
	if (!s->shadow)
		return deliver(s, &start);
	/* Nothing goes out; take about as long as a delivery would have. */
	ratelimit_delivery_pace(s->c, s->channel, &start);
	return ERR_NONE;
}

void login_send_done(struct login_send *s)
{
	if (s->message != NULL) {
		crypto_wipe(s->message, s->message_len);
		free(s->message);
		s->message = NULL;
	}
	crypto_free_str(s->request_id);
	s->request_id = NULL;
}

int login_compose_mail(struct ctx *c, json_t *client, enum mail_kind kind, const char *to,
		       const char *secret, unsigned minutes, const struct mail_content *content,
		       char **msg, size_t *len)
{
	struct mail_request m = {
	    .kind = kind,
	    .from_addr = c->conf->mail_from,
	    .from_name = c->conf->mail_from_name,
	    .to_addr = to,
	    .app_name = json_string_value(json_object_get(client, "name")),
	    .code = kind == MAIL_OTP ? secret : NULL,
	    .url = kind == MAIL_LINK ? secret : NULL,
	    .minutes = minutes,
	    .custom = content != NULL,
	};
	int rc;

	if (content != NULL)
		m.content = *content;
	if (*msg != NULL) {
		crypto_wipe(*msg, *len);
		free(*msg);
		*msg = NULL;
	}
	rc = mail_compose(&m, msg, len);
	if (rc == MAIL_EADDR || rc == MAIL_EINPUT)
		return ERR_INVALID_INPUT;
	return rc == MAIL_OK ? ERR_NONE : ERR_INTERNAL;
}

int login_request_id_ok(struct ctx *c, const char *stored, const char *presented)
{
	char tag[KEYRING_TAG_HEX];

	if (stored == NULL || stored[0] == '\0')
		return 1; /* the send asked for none */
	return presented != NULL && strlen(presented) <= 256 &&
	       keyring_tag(c->keys, tag, "request-id", presented, NULL) == 0 &&
	       crypto_str_equal(tag, stored);
}

/* ---- authenticating ------------------------------------------------------------------------- */

int login_failed_txn(struct store_txn *t, struct login_attempt *a)
{
	int rc = ratelimit_auth_fail_txn(t, a->c, client_id_of(a->client), a->ip, a->idtype,
					 a->identifier, &a->retry_after);
	if (rc < 0)
		return rc;
	return rc ? ERR_RATE_LIMITED : ERR_BAD_CREDENTIALS;
}

int login_throttle_txn(struct store_txn *t, struct login_attempt *a, struct lockout *l)
{
	json_t *known = NULL;
	int rc;

	l->rec = NULL;
	l->user = NULL;
	rc = user_find_txn(t, user_idtype_parse(a->idtype), a->identifier, &known);
	if (rc >= 0)
		rc =
		    lockout_begin_txn(t, a->c, json_string_value(json_object_get(known, "user_id")),
				      a->idtype, a->identifier, l, &a->retry_after);
	l->user = known;
	return rc;
}

int login_session_txn(struct store_txn *t, struct login_attempt *a, const char *amr,
		      const char *channel, const char *verifies, json_t *limits,
		      const struct login_opts *opts)
{
	json_t *user = NULL;
	int rc;

	login_grant_free(&a->grant);
	if (a->known != NULL) { /* read in this transaction already: the same record */
		user = json_incref(a->known);
		rc = ERR_NONE;
	} else {
		rc = user_for_login_txn(t, a->client, user_idtype_parse(a->idtype), a->identifier,
					&user);
	}
	if (rc != ERR_NONE)
		return rc;
	rc = user_is_active(user) ? ERR_NONE : ERR_USER_NOT_ACTIVE;
	if (rc == ERR_NONE)
		rc = session_login_txn(t, a->c, user, a->client, amr, channel, verifies, opts,
				       &a->grant);
	json_decref(user);
	if (rc == ERR_NONE)
		rc = ratelimit_auth_success_txn(t, a->c, a->idtype, a->identifier);
	if (rc == ERR_NONE)
		rc = ratelimit_release_txn(t, limits);
	return rc;
}

int login_finish_txn(struct store_txn *t, struct login_attempt *a, const char *amr,
		     const char *channel, const char *verifies, json_t *limits,
		     const struct login_opts *opts, const char *aud)
{
	int rc = login_session_txn(t, a, amr, channel, verifies, limits, opts);

	if (rc == ERR_NONE)
		rc = token_refresh_create_txn(t, a->c, &a->grant, aud, NULL);
	return rc;
}

int login_txn_end(int rc)
{
	if (rc == ERR_USER_NOT_ACTIVE || rc == ERR_USER_NOT_FOUND || rc == ERR_SESSION_NOT_FOUND ||
	    rc == ERR_ORG_NOT_MEMBER || rc == ERR_INTERNAL)
		return STORE_REFUSE(rc);
	return rc;
}

int login_tokens(struct login_attempt *a, int rc, const struct login_opts *opts,
		 unsigned *retry_after, json_t **tokens)
{
	char masked[64];

	if (rc == ERR_RATE_LIMITED || rc == ERR_LOCKED) {
		unsigned wait = a->retry_after ? a->retry_after : 1;
		if (retry_after != NULL)
			*retry_after = wait;
		log_info("authenticate for %s refused: %s, retry in %u s",
			 a->identifier ? log_mask_addr(a->identifier, masked, sizeof(masked))
				       : "an unknown code",
			 rc == ERR_LOCKED ? "the account is throttled" : "rate limit", wait);
	} else if (rc == ERR_BAD_CREDENTIALS || rc == ERR_CODE_EXPIRED ||
		   rc == ERR_USER_NOT_FOUND || rc == ERR_USER_NOT_ACTIVE) {
		/* A failed login is what an admin watching for attacks looks for first. */
		log_info("authenticate for %s failed: %s",
			 a->identifier ? log_mask_addr(a->identifier, masked, sizeof(masked))
				       : "an unknown code",
			 rc == ERR_BAD_CREDENTIALS  ? "wrong code"
			 : rc == ERR_CODE_EXPIRED   ? "expired code"
			 : rc == ERR_USER_NOT_FOUND ? "no such user"
						    : "the user is disabled");
	}
	if (rc == ERR_NONE) {
		*tokens = token_response(a->c, &a->grant, opts);
		if (*tokens == NULL)
			rc = ERR_INTERNAL;
	}
	login_grant_free(&a->grant);
	return rc;
}

struct reauth_state {
	struct ctx *c;
	json_t *client;
	const struct login_opts *opts;
	const char *aud;
	struct login_grant *g;
};

static int reauth_txn(struct store_txn *t, void *arg)
{
	struct reauth_state *r = arg;
	int rc = session_reauth_txn(t, r->c, r->client, r->opts, r->g);

	if (rc == ERR_NONE)
		rc = token_refresh_create_txn(t, r->c, r->g, r->aud, NULL);
	return rc;
}

int login_reauth(struct ctx *c, json_t *client, const struct login_opts *opts, const char *aud,
		 struct login_grant *g)
{
	struct reauth_state r = {c, client, opts, aud, g};
	int rc;

	memset(g, 0, sizeof(*g));
	rc = store_outcome(store_run(c->store, reauth_txn, &r), ERR_UNAVAILABLE);
	audit_login("session", rc, NULL, json_string_value(json_object_get(g->user, "user_id")),
		    NULL, NULL);
	return metrics_login(METRICS_LOGIN_SESSION, rc);
}
