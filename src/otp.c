#include "otp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "lockout.h"
#include "login.h"
#include "log.h"
#include "metrics.h"

/*
 * What a login with this send's code claims (RFC 8176 amr) and the channel it proves: the
 * account's mailbox ("eotp") or phone ("sms") when the code went there, the backend's own
 * delivery ("otp") for a direct send. A code sent to custom_email or custom_phone_number went
 * to an address never verified as the user's: it claims a one-time code, "otp", and proves
 * no channel, so it never makes "mfa".
 */
static const char *amr_of(const struct otp_send_req *r)
{
	if (strcmp(r->channel, "email") == 0 && r->custom_email == NULL)
		return "eotp";
	if (strcmp(r->channel, "sms") == 0 && r->custom_phone == NULL)
		return "sms";
	return "otp";
}

static const char *channel_of(const struct otp_send_req *r)
{
	if (strcmp(r->channel, "email") == 0)
		return r->custom_email == NULL ? "email" : NULL;
	if (strcmp(r->channel, "sms") == 0)
		return r->custom_phone == NULL ? "phone" : NULL;
	return "otp";
}

/* The database key of the pending code of (client, identifier). */
static int code_key(struct ctx *c, json_t *client, enum user_idtype type, const char *ident,
		    char key[KEYRING_TAG_HEX])
{
	return keyring_tag(c->keys, key, "code", client_id_of(client), user_idtype_name(type),
			   ident, NULL);
}

/* A passcode send's own state, behind login_send.state. */
struct otp_state {
	const struct otp_send_req *r;
	char key[KEYRING_TAG_HEX];
	char code[16];
};

static struct otp_state *otp_of(struct login_send *s)
{
	return s->state;
}

/* Where an email passcode goes, or the err that says why it cannot go anywhere. */
static int email_destination(struct login_send *s, json_t *user)
{
	const struct otp_send_req *r = otp_of(s)->r;
	const char *to = r->custom_email;

	if (to == NULL && user != NULL)
		to = user_email(user);
	if (to == NULL && user == NULL && r->idtype == ID_EMAIL)
		to = r->identifier;
	if (to == NULL)
		return ERR_EMAIL_MISSING;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/*
 * Where an SMS passcode goes: custom_phone_number, the user's phone, or for an unknown user
 * that may sign up by phone the identifier itself; else the err that says why not.
 */
static int sms_destination(struct login_send *s, json_t *user)
{
	const struct otp_send_req *r = otp_of(s)->r;
	const char *to = r->custom_phone;

	if (to == NULL && user != NULL)
		to = user_phone(user);
	if (to == NULL && user == NULL && r->idtype == ID_PHONE)
		to = r->identifier;
	if (to == NULL)
		return ERR_PHONE_MISSING;
	if (!sms_number_valid(to))
		return ERR_INVALID_INPUT;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/* A direct passcode goes to the backend, whatever the account holds. */
static int direct_destination(struct login_send *s, json_t *user)
{
	return ERR_NONE;
}

static int compose_sms(struct login_send *s)
{
	struct otp_state *o = otp_of(s);
	struct sms_compose_req m = {
	    .tmpl = o->r->sms_template ? o->r->sms_template : s->c->conf->sms_default_message,
	    .app = json_string_value(json_object_get(s->client, "name")),
	    .code = o->code,
	    .approval_data = o->r->approval_data,
	    .max_segments = s->c->conf->sms_max_segments,
	};
	char err[160];

	crypto_free_str(s->message);
	s->message = NULL;
	/* The caller checked the same text with a stand-in code: this fails only on ENOMEM. */
	if (sms_compose(&m, &s->message, err, sizeof(err)) < 0) {
		log_warn("otp: cannot build the SMS: %s", err);
		return ERR_INVALID_INPUT;
	}
	s->message_len = strlen(s->message);
	return ERR_NONE;
}

/* The message of a send to s->to: a mail, an SMS, or none (direct). */
static int compose(struct login_send *s, unsigned minutes)
{
	struct otp_state *o = otp_of(s);

	if (s->channel == NULL)
		return ERR_NONE;
	if (strcmp(s->channel, "sms") == 0)
		return compose_sms(s);
	return login_compose_mail(s->c, s->client, MAIL_OTP, s->to, o->code, minutes, o->r->content,
				  &s->message, &s->message_len);
}

/* The record of a code: its keyed hash (none for a shadow send) and what a login with it claims. */
static json_t *code_record(struct login_send *s, const char *code_tag, unsigned minutes,
			   const char *rid_tag)
{
	const struct otp_send_req *r = otp_of(s)->r;
	const char *channel = channel_of(r);
	json_t *rec;

	rec = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:o}", "code", s->shadow ? "" : code_tag,
			"exp", (json_int_t)(time(NULL) + (time_t)minutes * 60), "amr", amr_of(r),
			"request_id", rid_tag, "idtype", user_idtype_name(r->idtype), "identifier",
			r->identifier, "channel", channel ? json_string(channel) : json_null());
	if (rec == NULL)
		return NULL;
	if (r->approval_data != NULL)
		json_object_set(rec, "approval_data", r->approval_data);
	if (r->redirect != NULL)
		json_object_set(rec, "redirect", r->redirect);
	/*
	 * Only a code delivered to the account's own address or number proves that channel:
	 * one sent to custom_email or custom_phone_number marks nothing verified.
	 */
	json_object_set_new(
	    rec, "verifies",
	    json_string(strcmp(r->channel, "email") == 0 && !r->custom_email ? "email"
			: strcmp(r->channel, "sms") == 0 && !r->custom_phone ? "phone_number"
									     : ""));
	return rec;
}

static int issue(struct login_send *s, struct store_txn *t, const char *rid_tag, json_t *limit_keys)
{
	struct otp_state *o = otp_of(s);
	unsigned minutes = o->r->minutes ? o->r->minutes : s->c->conf->otp_ttl_minutes;
	char code_tag[KEYRING_TAG_HEX];
	json_t *rec;
	int rc;

	if (minutes > s->c->conf->otp_max_ttl_minutes)
		minutes = s->c->conf->otp_max_ttl_minutes;
	if (crypto_random_digits(o->code, s->c->conf->otp_length) < 0 ||
	    code_key(s->c, s->client, s->idtype, s->identifier, o->key) < 0 ||
	    keyring_tag(s->c->keys, code_tag, "code-value", o->key, o->code, NULL) < 0)
		return STORE_ERR;
	if ((rc = compose(s, minutes)) != ERR_NONE)
		return rc;
	if ((rec = code_record(s, code_tag, minutes, rid_tag)) == NULL)
		return STORE_ERR;
	/* A login with this code releases the recipient's send limits (see ratelimit.h). */
	if (limit_keys != NULL)
		json_object_set(rec, "limits", limit_keys);
	/* The same key for the same client and identifier: a new send replaces the old code. */
	rc = store_put(t, TBL_CODES, o->key, strlen(o->key), rec);
	json_decref(rec);
	return rc < 0 ? rc : ERR_NONE;
}

/* The sender id of an SMS: the request's, else the configured one, else none. */
static const char *sms_sender(struct login_send *s)
{
	const char *id = otp_of(s)->r->sender_id;

	if (id != NULL)
		return id;
	return s->c->conf->sms_sender_id[0] ? s->c->conf->sms_sender_id : NULL;
}

static int deliver(struct login_send *s)
{
	if (strcmp(s->channel, "sms") == 0) {
		struct sms_conf sc = ctx_sms_conf(s->c->conf, &s->c->mail);
		struct sms_message m = {s->to, sms_sender(s), s->message};
		int rc = sms_send(&sc, &m);
		if (rc == SMS_OK)
			return ERR_NONE;
		return rc == SMS_EINPUT ? ERR_INVALID_INPUT : ERR_DELIVERY;
	}
	return mail_send(&s->c->mail, s->c->conf->mail_from, s->to, s->message, s->message_len) ==
		       MAIL_OK
		   ? ERR_NONE
		   : ERR_DELIVERY;
}

/* Delete the code that failed to go out, unless a newer send has replaced it already. */
static int withdraw(struct login_send *s, struct store_txn *t)
{
	struct otp_state *o = otp_of(s);
	char code_tag[KEYRING_TAG_HEX];
	json_t *rec;
	int rc;

	if (keyring_tag(s->c->keys, code_tag, "code-value", o->key, o->code, NULL) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_CODES, o->key, strlen(o->key), &rec, 1);
	if (rc != STORE_FOUND)
		return rc;
	if (crypto_str_equal(json_string_value(json_object_get(rec, "code")) ?: "", code_tag))
		rc = store_del(t, TBL_CODES, o->key, strlen(o->key));
	json_decref(rec);
	return rc < 0 ? rc : 0;
}

static const struct login_kind email_otp = {"passcode", "code",	 email_destination,
					    issue,	deliver, withdraw};
static const struct login_kind sms_otp = {"passcode", "code",  sms_destination,
					  issue,      deliver, withdraw};
static const struct login_kind direct_otp = {"passcode", "code", direct_destination,
					     issue,	 NULL,	 NULL};

int otp_send(struct ctx *c, const struct otp_send_req *r, struct otp_send_res *res)
{
	struct otp_state o = {.r = r};
	struct login_send s = {.c = c,
			       .client = r->client,
			       .idtype = r->idtype,
			       .identifier = r->identifier,
			       .want_request_id = r->want_request_id,
			       .state = &o};
	int rc;

	memset(res, 0, sizeof(*res));
	if (strcmp(r->channel, "sms") == 0) {
		struct sms_conf sc = ctx_sms_conf(c->conf, &c->mail);
		/* No backend: refuse before a code exists (the caller explains it first). */
		if (sms_backend_for(&sc) == NULL)
			return ERR_INVALID_INPUT;
		s.kind = &sms_otp;
		s.channel = "sms";
		s.custom = r->custom_phone;
	} else if (strcmp(r->channel, "email") == 0) {
		s.kind = &email_otp;
		s.channel = "email";
		s.custom = r->custom_email;
	} else {
		s.kind = &direct_otp;
	}
	rc = login_send(&s);
	res->retry_after = s.retry_after;
	if (rc == ERR_NONE) {
		if (s.channel == NULL && (res->code = strdup(o.code)) == NULL)
			rc = ERR_INTERNAL;
		res->request_id = s.request_id;
		s.request_id = NULL;
	}
	crypto_wipe(o.code, sizeof(o.code));
	login_send_done(&s);
	return rc;
}

void otp_send_res_free(struct otp_send_res *res)
{
	crypto_free_str(res->code);
	crypto_free_str(res->request_id);
	memset(res, 0, sizeof(*res));
}

struct auth_txn {
	struct login_attempt a;
	const struct otp_auth_req *r;
	const char *aud;
};

/*
 * A wrong passcode aimed at the live code rec (under key): the code dies at its
 * max_failures'th, and the account's throttle counts it.
 */
static int wrong_guess(struct store_txn *t, struct auth_txn *x, const char *key, json_t *rec,
		       struct lockout *l)
{
	json_int_t n = json_integer_value(json_object_get(rec, "failures")) + 1;
	int rc;

	if (n >= (json_int_t)x->a.c->conf->otp_max_failures) {
		rc = store_del(t, TBL_CODES, key, strlen(key));
	} else {
		json_object_set_new(rec, "failures", json_integer(n));
		rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	}
	if (rc < 0 || (rc = lockout_fail_txn(t, x->a.c, l)) < 0)
		return rc;
	return login_failed_txn(t, &x->a);
}

/* The right passcode for the live code rec (under key): consume it and log the user in. */
static int login(struct store_txn *t, struct auth_txn *x, const char *key, json_t *rec)
{
	const char *amr = json_string_value(json_object_get(rec, "amr")) ?: "otp";
	/* null: the code proved no channel; absent: a code sent before channels were kept. */
	const char *channel = json_object_get(rec, "channel") != NULL
				  ? json_string_value(json_object_get(rec, "channel"))
				  : session_amr_channel(amr);
	int rc;

	if ((rc = store_del(t, TBL_CODES, key, strlen(key))) < 0)
		return rc;
	if (x->r->finish != NULL)
		return x->r->finish(t, &x->a, rec, x->r->finish_arg);
	rc = login_finish_txn(t, &x->a, amr, channel,
			      json_string_value(json_object_get(rec, "verifies")),
			      json_object_get(rec, "limits"), &x->r->opts, x->aud);
	if (rc == ERR_NONE && json_object_get(rec, "approval_data") != NULL)
		x->a.grant.extra_claims =
		    json_pack("{s:O}", "approval_data", json_object_get(rec, "approval_data"));
	return rc;
}

/*
 * Only a guess at a live code of this (client, identifier), made with its request_id when the
 * send asked for one, counts against that code and the account (lockout.h): a guess where no
 * code is outstanding, from another client or outside the code's flow harms nobody's login.
 */
static int auth_txn(struct store_txn *t, void *arg)
{
	struct auth_txn *x = arg;
	const struct otp_auth_req *r = x->r;
	char key[KEYRING_TAG_HEX], tag[KEYRING_TAG_HEX];
	struct lockout l = {.rec = NULL};
	json_t *rec = NULL;
	int rc, expired;

	x->a.retry_after = 0;
	if (code_key(x->a.c, r->client, r->idtype, r->identifier, key) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : login_failed_txn(t, &x->a);
	/* A code of the other flow (redirect or backend) is no code here: see otp.h. */
	if ((json_object_get(rec, "redirect") != NULL) != (r->finish != NULL)) {
		json_decref(rec);
		return login_failed_txn(t, &x->a);
	}
	/*
	 * "Expired" tells that a code was sent. A client that hides existence tells it only to
	 * the holder of the right code; any other passcode is simply wrong, as for an identifier
	 * that never got one.
	 */
	expired = json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL);
	if (expired && !client_hides_existence(r->client)) {
		rc = store_del(t, TBL_CODES, key, strlen(key));
		rc = rc < 0 ? rc : ERR_CODE_EXPIRED;
	} else if (!login_request_id_ok(x->a.c,
					json_string_value(json_object_get(rec, "request_id")),
					r->request_id)) {
		rc = login_failed_txn(t, &x->a);
	} else if ((rc = login_throttle_txn(t, &x->a, &l)) != ERR_NONE) {
		/* ERR_LOCKED, or a store error */
	} else if (keyring_tag(x->a.c->keys, tag, "code-value", key, r->passcode, NULL) < 0) {
		rc = STORE_ERR;
	} else if (!crypto_str_equal(tag, json_string_value(json_object_get(rec, "code")) ?: "")) {
		rc = expired ? login_failed_txn(t, &x->a) : wrong_guess(t, x, key, rec, &l);
	} else if (expired) {
		rc = (rc = store_del(t, TBL_CODES, key, strlen(key))) < 0 ? rc : ERR_CODE_EXPIRED;
	} else {
		/* The user login_throttle_txn read: nothing in between writes it. */
		x->a.known = l.user;
		rc = login(t, x, key, rec);
		x->a.known = NULL;
	}
	lockout_done(&l);
	json_decref(rec);
	return login_txn_end(rc);
}

int otp_authenticate(struct ctx *c, const struct otp_auth_req *r, const char *aud, json_t **tokens)
{
	struct auth_txn x = {.a = {.c = c,
				   .client = r->client,
				   .ip = r->ip,
				   .idtype = user_idtype_name(r->idtype),
				   .identifier = r->identifier},
			     .r = r,
			     .aud = aud};
	int rc = store_outcome(store_run(c->store, auth_txn, &x), ERR_UNAVAILABLE);

	metrics_login(METRICS_LOGIN_OTP, rc);
	audit_login(r->idtype == ID_PHONE ? "sms_otp" : "email_otp", rc, NULL,
		    json_string_value(json_object_get(x.a.grant.user, "user_id")), r->identifier,
		    r->ip);
	if (r->finish != NULL && rc == ERR_NONE) {
		*tokens = NULL;
		login_grant_free(&x.a.grant);
		return ERR_NONE;
	}
	return login_tokens(&x.a, rc, &r->opts, r->retry_after, tokens);
}
