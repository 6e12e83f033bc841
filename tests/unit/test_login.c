/*
 * login: the core every login kind shares (login.h), through a test kind of its own whose
 * functions record their calls: sending (signup policy, hidden existence and the shadow send,
 * request ids, send limits counted only when the send is not refused, a failed delivery
 * withdrawn and revealed or not), login_request_id_ok, failed attempts past the attempt
 * limit, login_txn_end's one rule, login_finish_txn (signup, disabled users, the failure
 * count ended, the send limits released, a refusal committing nothing), login_tokens and
 * silent sign-in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "fixture.h"
#include "jwt.h"
#include "login.h"
#include "token.h"
#include "user.h"

/* ---- the test kind ---- */

static struct calls {
	int destination, issue, deliver, withdraw;
	int issue_shadow;		   /* s->shadow seen by the last issue */
	char rid_tag[KEYRING_TAG_HEX];	   /* the last issue's */
	json_t *limits;			   /* a copy of the last issue's limit keys, or NULL */
	char to[256];			   /* what the last deliver was to deliver to */
	json_t *dest_user;		   /* whether destination saw a user (1/0) */
	int dest_rc, issue_rc, deliver_rc; /* what to answer */
} calls;

static void calls_reset(void)
{
	json_decref(calls.limits);
	json_decref(calls.dest_user);
	memset(&calls, 0, sizeof(calls));
}

/* The record the test kind issues, under "test:<identifier>" in TBL_CODES. */
static void record_key(const char *identifier, char *key, size_t len)
{
	snprintf(key, len, "test:%s", identifier);
}

static int k_destination(struct login_send *s, json_t *user)
{
	calls.destination++;
	json_decref(calls.dest_user);
	calls.dest_user = json_boolean(user != NULL);
	if (calls.dest_rc != ERR_NONE)
		return calls.dest_rc;
	/* A user's address, else (signup) the identifier itself. */
	snprintf(s->to, sizeof(s->to), "%s",
		 user != NULL && user_email(user) ? user_email(user) : s->identifier);
	return ERR_NONE;
}

static int k_issue(struct login_send *s, struct store_txn *t, const char *rid_tag,
		   json_t *limit_keys)
{
	char key[300];
	json_t *rec;
	int rc;

	calls.issue++;
	calls.issue_shadow = s->shadow;
	snprintf(calls.rid_tag, sizeof(calls.rid_tag), "%s", rid_tag);
	json_decref(calls.limits);
	calls.limits = limit_keys ? json_deep_copy(limit_keys) : NULL;
	if (calls.issue_rc != ERR_NONE)
		return calls.issue_rc;
	record_key(s->identifier, key, sizeof(key));
	rec = json_pack("{s:b, s:s, s:I}", "dead", s->shadow, "request_id", rid_tag, "exp",
			(json_int_t)time(NULL) + 600);
	rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	json_decref(rec);
	return rc;
}

static int k_deliver(struct login_send *s)
{
	calls.deliver++;
	snprintf(calls.to, sizeof(calls.to), "%s", s->to);
	return calls.deliver_rc;
}

static int k_withdraw(struct login_send *s, struct store_txn *t)
{
	char key[300];
	int rc;

	calls.withdraw++;
	record_key(s->identifier, key, sizeof(key));
	rc = store_del(t, TBL_CODES, key, strlen(key));
	return rc < 0 ? rc : 0;
}

static const struct login_kind test_kind = {
    .what = "test secret",
    .secret = "secret",
    .destination = k_destination,
    .issue = k_issue,
    .deliver = k_deliver,
    .withdraw = k_withdraw,
};

/* ---- helpers ---- */

/* The test kind's record of identifier: 1 live, 2 dead (shadow), 0 none. */
static int record_state(const char *identifier)
{
	char key[300];
	json_t *rec;
	int rc;

	record_key(identifier, key, sizeof(key));
	rec = fixture_get(TBL_CODES, key);
	rc = rec != NULL ? (json_is_true(json_object_get(rec, "dead")) ? 2 : 1) : 0;
	json_decref(rec);
	return rc;
}

/* Send by email through the test kind (channel NULL: direct); s is the caller's to finish. */
static int do_send(struct login_send *s, json_t *client, enum user_idtype idtype,
		   const char *identifier, const char *channel, int want_rid)
{
	memset(s, 0, sizeof(*s));
	s->c = &c;
	s->kind = &test_kind;
	s->client = client;
	s->idtype = idtype;
	s->identifier = identifier;
	s->channel = channel;
	s->want_request_id = want_rid;
	return login_send(s);
}

/* send, then login_send_done. */
static int send1(json_t *client, enum user_idtype idtype, const char *identifier,
		 const char *channel)
{
	struct login_send s;
	int rc = do_send(&s, client, idtype, identifier, channel, 0);

	login_send_done(&s);
	return rc;
}

/* ---- sending ---- */

static void sending(json_t *closed_reveal, json_t *closed_hide, json_t *open_reveal)
{
	char uid[64], tag[KEYRING_TAG_HEX];
	struct login_send s;
	int rc;

	/* Closed signup, revealing: an unknown user is said so; nothing is issued. */
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "unknown@example.com", "email") == ERR_USER_NOT_FOUND);
	check(calls.issue == 0 && calls.deliver == 0);
	check(record_state("unknown@example.com") == 0);

	/* Open signup: the unknown address gets its secret (destination without a user). */
	calls_reset();
	check(send1(open_reveal, ID_EMAIL, "signup@example.com", "email") == ERR_NONE);
	check(calls.destination == 1 && json_is_false(calls.dest_user));
	check(calls.issue == 1 && !calls.issue_shadow && calls.deliver == 1 && calls.withdraw == 0);
	check(strcmp(calls.to, "signup@example.com") == 0);
	check(json_array_size(calls.limits) > 0); /* the recipient's limits, to release */
	check(record_state("signup@example.com") == 1);
	/* Signup is for emails and phones only. */
	calls_reset();
	check(send1(open_reveal, ID_USERNAME, "someone", "email") == ERR_USER_NOT_FOUND);
	check(calls.issue == 0);

	/* A known user, with a closed signup: sent. */
	fixture_user("known@example.com", NULL, NULL, uid);
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "known@example.com", "email") == ERR_NONE);
	check(json_is_true(calls.dest_user) && calls.issue == 1 && calls.deliver == 1);
	/* Again at once: the recipient's cool-down refuses, nothing issued or delivered. */
	calls_reset();
	check(do_send(&s, closed_reveal, ID_EMAIL, "known@example.com", "email", 0) ==
	      ERR_RATE_LIMITED);
	check(s.retry_after > 0);
	check(calls.issue == 0 && calls.deliver == 0);
	login_send_done(&s);

	/* Hiding: the unknown user gets a shadow send, issued dead and delivered nowhere. */
	calls_reset();
	check(do_send(&s, closed_hide, ID_EMAIL, "ghost@example.com", "email", 0) == ERR_NONE);
	check(calls.issue == 1 && calls.issue_shadow && s.shadow);
	check(calls.deliver == 0 && calls.withdraw == 0);
	check(strcmp(s.to, conf.mail_from) == 0);
	check(record_state("ghost@example.com") == 2);
	login_send_done(&s);
	/* A known one gets a real send. */
	fixture_user("hidden-known@example.com", NULL, NULL, uid);
	calls_reset();
	check(do_send(&s, closed_hide, ID_EMAIL, "hidden-known@example.com", "email", 0) ==
	      ERR_NONE);
	check(calls.issue == 1 && !calls.issue_shadow && calls.deliver == 1);
	check(record_state("hidden-known@example.com") == 1);
	login_send_done(&s);

	/*
	 * Hiding, the limits that refuse are the request's; the recipient's own, reached by
	 * another identifier of the same user, make a shadow send answered as sent.
	 */
	calls_reset();
	check(do_send(&s, closed_hide, ID_EMAIL, "hidden-known@example.com", "email", 0) ==
	      ERR_RATE_LIMITED);
	check(s.retry_after > 0 && calls.issue == 0 && calls.deliver == 0);
	login_send_done(&s);
	calls_reset();
	check(do_send(&s, closed_hide, ID_USER_ID, uid, "email", 0) == ERR_NONE);
	check(s.over == 1 && s.shadow == 1);
	check(calls.issue == 1 && calls.issue_shadow && calls.deliver == 0);
	login_send_done(&s);
	/* A revealing client is refused by the recipient's limits, whoever counted them. */
	calls_reset();
	check(send1(closed_reveal, ID_USER_ID, uid, "email") == ERR_RATE_LIMITED);
	check(calls.issue == 0 && calls.deliver == 0);

	/* A disabled user: said so, or a shadow send. */
	fixture_user("disabled@example.com", NULL, NULL, uid);
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "disabled@example.com", "email") ==
	      ERR_USER_NOT_ACTIVE);
	check(calls.issue == 0);
	calls_reset();
	check(send1(closed_hide, ID_EMAIL, "disabled@example.com", "email") == ERR_NONE);
	check(calls.issue == 1 && calls.issue_shadow && calls.deliver == 0);

	/* The kind's destination error: said, or a shadow send. */
	fixture_user("nowhere@example.com", NULL, NULL, uid);
	calls_reset();
	calls.dest_rc = ERR_PHONE_MISSING;
	check(send1(closed_reveal, ID_EMAIL, "nowhere@example.com", "email") == ERR_PHONE_MISSING);
	check(calls.issue == 0);
	calls_reset();
	calls.dest_rc = ERR_PHONE_MISSING;
	check(send1(closed_hide, ID_EMAIL, "nowhere@example.com", "email") == ERR_NONE);
	check(calls.issue == 1 && calls.issue_shadow && calls.deliver == 0);

	/* A failed delivery: withdrawn; the error revealed, or answered as sent. */
	fixture_user("bounce@example.com", NULL, NULL, uid);
	calls_reset();
	calls.deliver_rc = ERR_DELIVERY;
	check(send1(closed_reveal, ID_EMAIL, "bounce@example.com", "email") == ERR_DELIVERY);
	check(calls.issue == 1 && calls.deliver == 1 && calls.withdraw == 1);
	check(record_state("bounce@example.com") == 0);
	fixture_user("bounce-hidden@example.com", NULL, NULL, uid);
	calls_reset();
	calls.deliver_rc = ERR_DELIVERY;
	check(send1(closed_hide, ID_EMAIL, "bounce-hidden@example.com", "email") == ERR_NONE);
	check(calls.issue == 1 && calls.deliver == 1 && calls.withdraw == 1);
	check(record_state("bounce-hidden@example.com") == 0);
	calls_reset();
	calls.deliver_rc = ERR_INVALID_INPUT;
	check(send1(open_reveal, ID_EMAIL, "bad-content@example.com", "email") ==
	      ERR_INVALID_INPUT);
	check(calls.withdraw == 1);

	/* A refusal of issue after the limits were counted counts none of them. */
	fixture_user("refused@example.com", NULL, NULL, uid);
	calls_reset();
	calls.issue_rc = ERR_INVALID_INPUT;
	check(send1(closed_reveal, ID_EMAIL, "refused@example.com", "email") == ERR_INVALID_INPUT);
	check(calls.issue == 1 && calls.deliver == 0);
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "refused@example.com", "email") == ERR_NONE);
	check(calls.deliver == 1);

	/* Direct (no channel): nothing delivered, no send limits. */
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "known@example.com", NULL) == ERR_NONE);
	check(calls.issue == 1 && calls.deliver == 0 && calls.limits == NULL);
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "known@example.com", NULL) == ERR_NONE);

	/* A request id when asked: returned raw, its keyed hash handed to issue. */
	calls_reset();
	rc = do_send(&s, closed_reveal, ID_EMAIL, "known@example.com", NULL, 1);
	check(rc == ERR_NONE && s.request_id != NULL && strlen(s.request_id) >= 16);
	check(s.request_id != NULL &&
	      keyring_tag(&keys, tag, "request-id", s.request_id, NULL) == 0 &&
	      strcmp(tag, calls.rid_tag) == 0);
	check(login_request_id_ok(&c, calls.rid_tag, s.request_id) == 1);
	check(login_request_id_ok(&c, calls.rid_tag, "not-the-id") == 0);
	check(login_request_id_ok(&c, calls.rid_tag, NULL) == 0);
	check(login_request_id_ok(&c, calls.rid_tag, "") == 0);
	{
		char longid[300];
		memset(longid, 'a', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		check(login_request_id_ok(&c, calls.rid_tag, longid) == 0);
	}
	/* None asked: none stored, anything (or nothing) presented is fine. */
	check(login_request_id_ok(&c, NULL, NULL) == 1);
	check(login_request_id_ok(&c, "", "whatever") == 1);
	login_send_done(&s);
	check(s.request_id == NULL && s.message == NULL);
	calls_reset();
	check(do_send(&s, closed_reveal, ID_EMAIL, "known@example.com", NULL, 0) == ERR_NONE);
	check(s.request_id == NULL && calls.rid_tag[0] == '\0');
	login_send_done(&s);
	/* A hiding client's shadow send answers with a request id as well. */
	calls_reset();
	check(do_send(&s, closed_hide, ID_EMAIL, "ghost2@example.com", "email", 1) == ERR_NONE);
	check(s.request_id != NULL && calls.issue_shadow && calls.rid_tag[0] != '\0');
	login_send_done(&s);
	calls_reset();
}

/* ---- authenticating ---- */

static int failed_txn(struct store_txn *t, void *argp)
{
	struct login_attempt *a = argp;
	return login_failed_txn(t, a);
}

static int fail(json_t *client, const char *identifier, unsigned *retry_after)
{
	struct login_attempt a = {.c = &c,
				  .client = client,
				  .ip = "192.0.2.1",
				  .idtype = "email",
				  .identifier = identifier};
	int rc = store_run(c.store, failed_txn, &a);

	if (retry_after != NULL)
		*retry_after = a.retry_after;
	login_grant_free(&a.grant);
	return rc;
}

struct finish_arg {
	struct login_attempt *a;
	json_t *limits;
	struct login_opts opts;
	const char *verifies;
};

static int finish_txn(struct store_txn *t, void *argp)
{
	struct finish_arg *f = argp;
	int rc =
	    login_finish_txn(t, f->a, "eotp", "email", f->verifies, f->limits, &f->opts, "api://x");
	return login_txn_end(rc);
}

/*
 * A login of identifier (email) with client, as the kinds end one: login_finish_txn under
 * login_txn_end, then login_tokens. The tokens (new) into *tokens when not NULL.
 */
static int finish(json_t *client, const char *identifier, json_t *limits, const char *session_id,
		  json_t **tokens)
{
	struct login_attempt a = {
	    .c = &c, .client = client, .idtype = "email", .identifier = identifier};
	struct finish_arg f = {&a, limits, {0}, "email"};
	json_t *out = NULL;
	unsigned retry = 0;
	int rc;

	f.opts.session_id = session_id;
	rc = store_outcome(store_run(c.store, finish_txn, &f), ERR_UNAVAILABLE);
	rc = login_tokens(&a, rc, &f.opts, &retry, &out);
	check(a.grant.user == NULL && a.grant.session == NULL); /* released */
	if (tokens != NULL)
		*tokens = out;
	else
		json_decref(out);
	return rc;
}

static void authenticating(json_t *closed_reveal, json_t *open_reveal)
{
	char uid[64];
	unsigned retry = 0;
	json_t *tokens = NULL, *user = NULL;
	struct conf_rate saved = conf.identifier_attempts;

	/* Failed attempts: wrong, and past the identifier's limit, rate limited. */
	conf.identifier_attempts = (struct conf_rate){3, 3600};
	for (int i = 0; i < 3; i++)
		check(fail(closed_reveal, "guess@example.com", NULL) == ERR_BAD_CREDENTIALS);
	check(fail(closed_reveal, "guess@example.com", &retry) == ERR_RATE_LIMITED);
	check_msg(retry > 0 && retry <= 3600 + 60, "retry = %u", retry);
	check(fail(closed_reveal, "other-guess@example.com", NULL) == ERR_BAD_CREDENTIALS);

	/* A login ends the identifier's count. */
	fixture_user("guess@example.com", NULL, NULL, uid);
	check(finish(closed_reveal, "guess@example.com", NULL, NULL, &tokens) == ERR_NONE);
	check(json_is_string(json_object_get(tokens, "refresh_token")) &&
	      json_is_string(json_object_get(tokens, "session_id")) &&
	      json_is_string(json_object_get(tokens, "access_token")));
	json_decref(tokens);
	for (int i = 0; i < 3; i++)
		check(fail(closed_reveal, "guess@example.com", NULL) == ERR_BAD_CREDENTIALS);
	conf.identifier_attempts = saved;

	/* Signup: an open client creates the user, marked verified by the login. */
	check(finish(open_reveal, "newcomer@example.com", NULL, NULL, NULL) == ERR_NONE);
	check(user_get(&c, ID_EMAIL, "newcomer@example.com", &user) == STORE_FOUND);
	check(json_is_true(json_object_get(json_object_get(user, "email"), "email_verified")));
	json_decref(user);
	/* A closed one does not. */
	check(finish(closed_reveal, "stranger@example.com", NULL, NULL, NULL) ==
	      ERR_USER_NOT_FOUND);
	check(user_get(&c, ID_EMAIL, "stranger@example.com", &user) == STORE_NOTFOUND);
	/* A refusal commits nothing: no user created for a login that failed later. */
	check(finish(open_reveal, "almost@example.com", NULL, "no-such-session", NULL) ==
	      ERR_SESSION_NOT_FOUND);
	check(user_get(&c, ID_EMAIL, "almost@example.com", &user) == STORE_NOTFOUND);

	/* A disabled user is refused, found at signup or not. */
	fixture_user("off@example.com", NULL, NULL, uid);
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	check(finish(open_reveal, "off@example.com", NULL, NULL, NULL) == ERR_USER_NOT_ACTIVE);
	check(finish(closed_reveal, "off@example.com", NULL, NULL, NULL) == ERR_USER_NOT_ACTIVE);

	/* The send limits listed are released: the next send need not wait. */
	fixture_user("release@example.com", NULL, NULL, uid);
	calls_reset();
	check(send1(closed_reveal, ID_EMAIL, "release@example.com", "email") == ERR_NONE);
	check(send1(closed_reveal, ID_EMAIL, "release@example.com", "email") == ERR_RATE_LIMITED);
	check(json_array_size(calls.limits) > 0);
	check(finish(closed_reveal, "release@example.com", calls.limits, NULL, NULL) == ERR_NONE);
	check(send1(closed_reveal, ID_EMAIL, "release@example.com", "email") == ERR_NONE);
	calls_reset();

	/* login_tokens on a refusal: the wait at least 1 s, the grant released. */
	{
		struct login_attempt a = {.c = &c, .client = closed_reveal, .identifier = "x"};
		json_t *t = NULL;
		retry = 0;
		check(login_tokens(&a, ERR_RATE_LIMITED, &(struct login_opts){0}, &retry, &t) ==
		      ERR_RATE_LIMITED);
		check(retry == 1 && t == NULL);
		a.retry_after = 42;
		check(login_tokens(&a, ERR_LOCKED, &(struct login_opts){0}, &retry, &t) ==
		      ERR_LOCKED);
		check(retry == 42 && t == NULL);
	}
}

struct throttle_arg {
	struct login_attempt *a;
	int fail;	  /* count a failure against the account when not locked */
	char user_id[64]; /* out: the user_id of l.user, "" when it is NULL */
};

static int throttle_txn(struct store_txn *t, void *argp)
{
	struct throttle_arg *th = argp;
	struct lockout l;
	int rc = login_throttle_txn(t, th->a, &l);

	snprintf(th->user_id, sizeof(th->user_id), "%s",
		 json_string_value(json_object_get(l.user, "user_id")) ?: "");
	if (rc == ERR_NONE && th->fail)
		rc = lockout_fail_txn(t, &c, &l);
	lockout_done(&l);
	check(l.rec == NULL && l.user == NULL);
	return rc;
}

/* The user_id of the user the last throttle() read ("" when none). */
static char throttled_user[64];

/* login_throttle_txn for (idtype, identifier), counting a failure when asked. */
static int throttle(const char *idtype, const char *identifier, int fail, unsigned *retry)
{
	struct login_attempt a = {
	    .c = &c, .client = NULL, .idtype = idtype, .identifier = identifier};
	struct throttle_arg th = {&a, fail, ""};
	int rc = store_run(c.store, throttle_txn, &th);

	if (retry != NULL)
		*retry = a.retry_after;
	snprintf(throttled_user, sizeof(throttled_user), "%s", th.user_id);
	return rc;
}

/* The account throttle is the user's, whichever identifier names it. */
static void throttling(void)
{
	char uid[64];
	unsigned retry = 0;

	fixture_user("throttle@example.com", NULL, NULL, uid);
	/* The user it read is handed on (login_session_txn takes it from there). */
	check(throttle("email", "throttle@example.com", 0, NULL) == ERR_NONE &&
	      strcmp(throttled_user, uid) == 0);
	check(throttle("email", "throttle-nobody@example.com", 0, NULL) == ERR_NONE &&
	      throttled_user[0] == '\0');
	for (unsigned i = 0; i < conf.account_failures.limit; i++)
		check(throttle("email", "throttle@example.com", 1, NULL) == ERR_NONE);
	check(throttle("email", "throttle@example.com", 0, &retry) == ERR_LOCKED);
	check(retry > 0 && retry <= conf.otp_backoff);
	retry = 0;
	check(throttle("user_id", uid, 0, &retry) == ERR_LOCKED && retry > 0);
	/* An identifier without a user is an account of its own. */
	for (unsigned i = 0; i < conf.account_failures.limit; i++)
		check(throttle("email", "throttle-nobody@example.com", 1, NULL) == ERR_NONE);
	check(throttle("email", "throttle-nobody@example.com", 0, NULL) == ERR_LOCKED);
	check(throttle("email", "throttle-nobody2@example.com", 0, NULL) == ERR_NONE);
}

static void txn_end(void)
{
	/* The login itself refused: abort, so that its secret is not spent. */
	static const int refused[] = {ERR_USER_NOT_ACTIVE, ERR_USER_NOT_FOUND,
				      ERR_SESSION_NOT_FOUND, ERR_ORG_NOT_MEMBER, ERR_INTERNAL};
	/* Everything else commits: failures counted, secrets spent. */
	static const int committed[] = {ERR_NONE,	  ERR_BAD_CREDENTIALS, ERR_CODE_EXPIRED,
					ERR_RATE_LIMITED, ERR_LOCKED,	       STORE_ERR,
					STORE_RETRY};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		check_msg(login_txn_end(refused[i]) == STORE_REFUSE(refused[i]) &&
			      store_refused(login_txn_end(refused[i])) == refused[i],
			  "rc %d", refused[i]);
	for (size_t i = 0; i < sizeof(committed) / sizeof(committed[0]); i++)
		check_msg(login_txn_end(committed[i]) == committed[i], "rc %d", committed[i]);
}

/* ---- silent sign-in ---- */

static void reauth(json_t *closed_reveal, json_t *open_reveal)
{
	char uid[64];
	struct login_grant g;
	struct login_opts o = {0};
	json_t *tokens = NULL, *claims = json_pack("{s:{s:n}}", "id_token", "email"), *out;
	char *raw;

	fixture_user("silent@example.com", NULL, NULL, uid);
	check(finish(closed_reveal, "silent@example.com", NULL, NULL, &tokens) == ERR_NONE);
	raw = strdup(json_string_value(json_object_get(tokens, "session_id")) ?: "");
	json_decref(tokens);

	o.session_id = raw;
	o.claims = claims;
	check(login_reauth(&c, closed_reveal, &o, "api://silent", &g) == ERR_NONE);
	check(g.refresh_token != NULL && g.aud != NULL && strcmp(g.aud, "api://silent") == 0);
	check(g.session_id != NULL && strcmp(g.session_id, raw) == 0);
	check(strcmp(json_string_value(json_object_get(g.user, "user_id")) ?: "", uid) == 0);
	/* Its refresh family keeps the claims request. */
	out = NULL;
	check(token_refresh(&c, closed_reveal, g.refresh_token, &out) == ERR_NONE);
	{
		json_t *idt = NULL;
		const char *tok = json_string_value(json_object_get(out, "id_token"));
		check(tok != NULL &&
		      jwt_verify(tok, keys.published, keys.npublished, "JWT", &idt) == 1);
		check(strcmp(json_string_value(json_object_get(idt, "email")) ?: "",
			     "silent@example.com") == 0);
		json_decref(idt);
	}
	json_decref(out);
	login_grant_free(&g);

	/* Another client's session, a dead one, an organization the user is not in. */
	check(login_reauth(&c, open_reveal, &o, "aud", &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	o.org_id = "acme";
	check(login_reauth(&c, closed_reveal, &o, "aud", &g) == ERR_ORG_NOT_MEMBER);
	login_grant_free(&g);
	o.org_id = NULL;
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	check(login_reauth(&c, closed_reveal, &o, "aud", &g) == ERR_USER_NOT_ACTIVE);
	login_grant_free(&g);
	check(fixture_set_status(uid, "Active") == USER_CREATED);
	check(session_logout(&c, closed_reveal, raw) == ERR_NONE);
	check(login_reauth(&c, closed_reveal, &o, "aud", &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	o.session_id = "no-such-session";
	check(login_reauth(&c, closed_reveal, &o, "aud", &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	json_decref(claims);
	free(raw);
}

int main(void)
{
	json_t *closed_reveal, *closed_hide, *open_reveal;

	if (fixture_open("/dev/shm", "login", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	closed_reveal = fixture_direct_client("closed-reveal", "closed", "reveal");
	closed_hide = fixture_direct_client("closed-hide", "closed", "hide");
	open_reveal = fixture_direct_client("open-reveal", "open", "reveal");
	check(closed_reveal != NULL && closed_hide != NULL && open_reveal != NULL);

	sending(closed_reveal, closed_hide, open_reveal);
	authenticating(closed_reveal, open_reveal);
	txn_end();
	throttling();
	reauth(closed_reveal, open_reveal);

	calls_reset();
	json_decref(closed_reveal);
	json_decref(closed_hide);
	json_decref(open_reveal);
	fixture_close();
	return check_done();
}
