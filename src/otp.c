#include "otp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "crypto.h"
#include "err.h"
#include "lockout.h"
#include "log.h"
#include "ratelimit.h"
#include "token.h"

#define REQUEST_ID_BYTES 16

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

int otp_failed_delivery_answer(struct ctx *c, json_t *client, const char *channel,
			       const struct timespec *start, int rc)
{
	if (!client_hides_existence(client))
		return rc;
	log_warn("the failed send is answered as sent: the client hides existence");
	ratelimit_delivery_pace(c, channel, start);
	return ERR_NONE;
}

/* The database key of the pending code of (client, identifier). */
static int code_key(struct ctx *c, json_t *client, enum user_idtype type, const char *ident,
		    char key[KEYRING_TAG_HEX])
{
	return keyring_tag(c->keys, key, "code",
			   json_string_value(json_object_get(client, "client_id")),
			   user_idtype_name(type), ident, NULL);
}

struct send_txn {
	struct ctx *c;
	const struct otp_send_req *r;
	char key[KEYRING_TAG_HEX];
	char code[16];
	char *request_id;
	char *message; /* composed mail or SMS text, new */
	size_t message_len;
	char to[256];
	int sms;
	int shadow;	      /* hidden existence: nothing usable is stored or delivered */
	int over;	      /* the recipient's own limits hold it back: a shadow send too */
	unsigned retry_after; /* ERR_RATE_LIMITED */
};

/* Where an email passcode goes, or the api_err that says why it cannot go anywhere. */
static int email_destination(struct send_txn *s, json_t *user)
{
	const char *to = s->r->custom_email;
	if (to == NULL && user != NULL)
		to = user_email(user);
	if (to == NULL && user == NULL && s->r->idtype == ID_EMAIL)
		to = s->r->identifier;
	if (to == NULL)
		return ERR_EMAIL_MISSING;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/*
 * Where an SMS passcode goes: custom_phone_number, the user's phone, or for an unknown user
 * that may sign up by phone the identifier itself; else the api_err that says why not.
 */
static int sms_destination(struct send_txn *s, json_t *user)
{
	const char *to = s->r->custom_phone;
	if (to == NULL && user != NULL)
		to = user_phone(user);
	if (to == NULL && user == NULL && s->r->idtype == ID_PHONE)
		to = s->r->identifier;
	if (to == NULL)
		return ERR_PHONE_MISSING;
	if (!sms_number_valid(to))
		return ERR_INVALID_INPUT;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

static int compose_sms(struct send_txn *s)
{
	struct sms_compose_req m = {
	    .tmpl = s->r->sms_template ? s->r->sms_template : s->c->conf->sms_default_message,
	    .app = json_string_value(json_object_get(s->r->client, "name")),
	    .code = s->code,
	    .approval_data = s->r->approval_data,
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

int otp_compose_mail(struct ctx *c, json_t *client, enum mail_kind kind, const char *to,
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

int otp_new_request_id(struct ctx *c, char **raw, char tag[KEYRING_TAG_HEX])
{
	crypto_free_str(*raw);
	*raw = crypto_random_token(REQUEST_ID_BYTES);
	return *raw != NULL && keyring_tag(c->keys, tag, "request-id", *raw, NULL) == 0 ? 0 : -1;
}

int otp_request_id_ok(struct ctx *c, const char *stored, const char *presented)
{
	char tag[KEYRING_TAG_HEX];

	if (stored == NULL || stored[0] == '\0')
		return 1; /* the send asked for none */
	return presented != NULL && strlen(presented) <= 256 &&
	       keyring_tag(c->keys, tag, "request-id", presented, NULL) == 0 &&
	       crypto_str_equal(tag, stored);
}

/*
 * Where the code of this send goes (s->to), or the api_err that says why it cannot go: the
 * account is unknown and signup closed, disabled, or lacks the address or number.
 */
static int destination(struct send_txn *s, json_t *user, int found)
{
	const struct otp_send_req *r = s->r;

	if (!found && !user_signup_allows(r->client, r->idtype))
		return ERR_USER_NOT_FOUND;
	if (user != NULL && !user_is_active(user))
		return ERR_USER_NOT_ACTIVE;
	if (strcmp(r->channel, "email") == 0)
		return email_destination(s, user);
	if (s->sms)
		return sms_destination(s, user);
	return ERR_NONE;
}

/*
 * The send limits of this message, counted in t. A revealing client's are those of the
 * recipient, the address or number it goes to. A hiding client's that can refuse are keyed by
 * the request alone, so that they answer alike whether or not there is a recipient; the
 * recipient's own are then kept silently (s->over, see ratelimit_hidden_send_txn).
 */
static int send_limits(struct send_txn *s, struct store_txn *t, json_t *keys)
{
	const struct otp_send_req *r = s->r;
	const char *client_id = json_string_value(json_object_get(r->client, "client_id"));

	s->over = 0;
	if (!client_hides_existence(r->client))
		return ratelimit_send_txn(t, s->c, client_id, r->channel, s->to, NULL,
					  &s->retry_after, keys);
	return ratelimit_hidden_send_txn(t, s->c, client_id, r->channel,
					 user_idtype_name(r->idtype), r->identifier,
					 s->sms ? r->custom_phone : r->custom_email,
					 s->shadow ? NULL : s->to, &s->over, &s->retry_after, keys);
}

static int send_txn(struct store_txn *t, void *argp)
{
	struct send_txn *s = argp;
	const struct otp_send_req *r = s->r;
	unsigned minutes = r->minutes ? r->minutes : s->c->conf->otp_ttl_minutes;
	char code_tag[KEYRING_TAG_HEX], rid_tag[KEYRING_TAG_HEX] = "";
	json_t *user = NULL, *rec, *limit_keys = NULL;
	int rc;

	rc = user_find_txn(t, r->idtype, r->identifier, &user);
	if (rc < 0)
		return rc;
	s->shadow = 0;
	rc = destination(s, user, rc == STORE_FOUND);
	json_decref(user);
	if (rc != ERR_NONE) {
		if (!client_hides_existence(r->client))
			return rc;
		/*
		 * The client hides whether this identifier can log in: go on exactly as for one
		 * that can (same limits, same composing, same writes), but store a code record
		 * that never matches and deliver nothing. The mail is composed to our own sender
		 * address, which is valid wherever real mail can be composed at all.
		 */
		s->shadow = 1;
		snprintf(s->to, sizeof(s->to), "%s",
			 s->sms ? "+10000000000" : s->c->conf->mail_from);
	}
	if (strcmp(r->channel, "direct") != 0) {
		limit_keys = json_array();
		if (limit_keys == NULL)
			return STORE_ERR;
		rc = send_limits(s, t, limit_keys);
		if (rc < 0) {
			json_decref(limit_keys);
			return rc;
		}
		/* Over the recipient's own limits: answered as sent, and nothing goes out. */
		if (s->over)
			s->shadow = 1;
	}

	if (minutes > s->c->conf->otp_max_ttl_minutes)
		minutes = s->c->conf->otp_max_ttl_minutes;
	if (crypto_random_digits(s->code, s->c->conf->otp_length) < 0 ||
	    code_key(s->c, r->client, r->idtype, r->identifier, s->key) < 0 ||
	    keyring_tag(s->c->keys, code_tag, "code-value", s->key, s->code, NULL) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	if (strcmp(r->channel, "email") == 0 &&
	    (rc = otp_compose_mail(s->c, s->r->client, MAIL_OTP, s->to, s->code, minutes,
				   s->r->content, &s->message, &s->message_len)) != ERR_NONE)
		goto out;
	if (s->sms && (rc = compose_sms(s)) != ERR_NONE)
		goto out;
	if (r->want_request_id && otp_new_request_id(s->c, &s->request_id, rid_tag) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	/* A hidden send's record holds no code tag: no passcode ever matches it. */
	rec = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "code", s->shadow ? "" : code_tag, "exp",
			(json_int_t)(time(NULL) + (time_t)minutes * 60), "amr", amr_of(r),
			"request_id", rid_tag, "idtype", user_idtype_name(r->idtype), "identifier",
			r->identifier);
	if (rec == NULL) {
		rc = STORE_ERR;
		goto out;
	}
	if (r->approval_data != NULL)
		json_object_set(rec, "approval_data", r->approval_data);
	json_object_set_new(rec, "channel",
			    channel_of(r) ? json_string(channel_of(r)) : json_null());
	/* A login with this code releases the recipient's send limits (see ratelimit.h). */
	if (limit_keys != NULL && json_array_size(limit_keys) > 0)
		json_object_set(rec, "limits", limit_keys);
	/*
	 * Only a code delivered to the account's own address or number proves that channel:
	 * one sent to custom_email or custom_phone_number marks nothing verified.
	 */
	json_object_set_new(
	    rec, "verifies",
	    json_string(strcmp(r->channel, "email") == 0 && !r->custom_email ? "email"
			: strcmp(r->channel, "sms") == 0 && !r->custom_phone ? "phone_number"
									     : ""));
	/* The same key for the same client and identifier: a new send replaces the old code. */
	rc = store_put(t, TBL_CODES, s->key, strlen(s->key), rec);
	json_decref(rec);
	rc = rc < 0 ? rc : ERR_NONE;
out:
	json_decref(limit_keys);
	/* A refusal after the limits were counted must not count them. */
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

struct forget_arg {
	const char *key;
	const char *code_tag;
};

/* Delete the code that failed to go out, unless a newer send has replaced it already. */
static int forget_txn(struct store_txn *t, void *argp)
{
	struct forget_arg *a = argp;
	json_t *rec;
	int rc = store_get(t, TBL_CODES, a->key, strlen(a->key), &rec, 1);

	if (rc != STORE_FOUND)
		return rc;
	if (crypto_str_equal(json_string_value(json_object_get(rec, "code")) ?: "", a->code_tag))
		rc = store_del(t, TBL_CODES, a->key, strlen(a->key));
	json_decref(rec);
	return rc < 0 ? rc : 0;
}

/* The sender id of an SMS: the request's, else the configured one, else none. */
static const char *sms_sender(struct send_txn *s)
{
	if (s->r->sender_id != NULL)
		return s->r->sender_id;
	return s->c->conf->sms_sender_id[0] ? s->c->conf->sms_sender_id : NULL;
}

/*
 * Deliver the composed message, begun at start; the code record is already committed. On
 * failure it is deleted again (no usable code may stay behind a delivery that failed) and
 * ERR_DELIVERY (ERR_INVALID_INPUT for an SMS the module refused to attempt) is returned.
 */
static int deliver(struct send_txn *s, const struct timespec *start)
{
	char code_tag[KEYRING_TAG_HEX], masked[64];
	struct forget_arg forget = {s->key, code_tag};
	int rc;

	log_mask_addr(s->to, masked, sizeof(masked));
	if (s->sms) {
		struct sms_conf sc = ctx_sms_conf(s->c->conf, &s->c->mail);
		struct sms_message m = {s->to, sms_sender(s), s->message};
		rc = sms_send(&sc, &m);
		if (rc == SMS_OK) {
			ratelimit_delivery_took(s->c, "sms", start);
			log_info("sent a passcode by SMS to %s", masked);
			return ERR_NONE;
		}
		log_err("no passcode went out by SMS to %s: the code is withdrawn", masked);
		rc = rc == SMS_EINPUT ? ERR_INVALID_INPUT : ERR_DELIVERY;
	} else {
		if (mail_send(&s->c->mail, s->c->conf->mail_from, s->to, s->message,
			      s->message_len) == MAIL_OK) {
			ratelimit_delivery_took(s->c, "email", start);
			log_info("sent a passcode by email to %s", masked);
			return ERR_NONE;
		}
		log_err("no passcode went out by email to %s: the code is withdrawn", masked);
		rc = ERR_DELIVERY;
	}
	if (keyring_tag(s->c->keys, code_tag, "code-value", s->key, s->code, NULL) < 0 ||
	    store_run(s->c->store, forget_txn, &forget) < 0)
		log_err("a passcode whose delivery failed could not be deleted; it expires by "
			"itself");
	return rc;
}

int otp_send(struct ctx *c, const struct otp_send_req *r, struct otp_send_res *res)
{
	struct send_txn s = {.c = c, .r = r, .sms = strcmp(r->channel, "sms") == 0};
	int delivers = s.sms || strcmp(r->channel, "email") == 0; /* not "direct" */
	struct timespec start;
	int rc;

	memset(res, 0, sizeof(*res));
	if (s.sms) {
		struct sms_conf sc = ctx_sms_conf(c->conf, &c->mail);
		/* No backend: refuse before a code exists (the caller explains it first). */
		if (sms_backend_for(&sc) == NULL)
			return ERR_INVALID_INPUT;
	}
	/*
	 * The time of a send is counted from here, before the transaction: a real send's
	 * (which counts the recipient's limits too) is in its delivery time, and a send that
	 * delivers nothing is paced from here, so the two transactions cannot differ visibly.
	 */
	clock_gettime(CLOCK_MONOTONIC, &start);
	rc = store_run(c->store, send_txn, &s);
	rc = store_outcome(rc, ERR_UNAVAILABLE);
	if (rc == ERR_RATE_LIMITED) {
		char masked[64];
		res->retry_after = s.retry_after ? s.retry_after : 1;
		log_info("passcode send for %s refused: rate limit, retry in %u s",
			 log_mask_addr(r->identifier, masked, sizeof(masked)), res->retry_after);
	}
	if (rc != ERR_NONE)
		goto out;
	if (s.over) {
		char masked[64];
		log_info("passcode to %s not sent: the recipient's send limit is reached (answered "
			 "as sent: the client hides existence)",
			 log_mask_addr(s.to, masked, sizeof(masked)));
	}
	if (s.shadow) {
		/* Nothing goes out; take about as long as a delivery would have. */
		if (delivers)
			ratelimit_delivery_pace(c, r->channel, &start);
	} else if (delivers && (rc = deliver(&s, &start)) != ERR_NONE &&
		   (rc = otp_failed_delivery_answer(c, r->client, r->channel, &start, rc)) !=
		       ERR_NONE) {
		goto out;
	}
	if (strcmp(r->channel, "direct") == 0)
		res->code = strdup(s.code);
	res->request_id = s.request_id;
	s.request_id = NULL;
out:
	crypto_wipe(s.code, sizeof(s.code));
	crypto_free_str(s.request_id);
	if (s.message != NULL) {
		crypto_wipe(s.message, s.message_len);
		free(s.message);
	}
	return rc;
}

void otp_send_res_free(struct otp_send_res *res)
{
	crypto_free_str(res->code);
	crypto_free_str(res->request_id);
	memset(res, 0, sizeof(*res));
}

struct auth_txn {
	struct ctx *c;
	const struct otp_auth_req *r;
	const char *aud;
	struct login_grant grant;
	unsigned retry_after;
};

/* A failed attempt: it counts toward the attempt limits, and past one of them answers 429. */
static int failed_attempt(struct store_txn *t, struct auth_txn *a)
{
	const struct otp_auth_req *r = a->r;
	int rc =
	    ratelimit_auth_fail_txn(t, a->c, client_id_of(r->client), r->ip,
				    user_idtype_name(r->idtype), r->identifier, &a->retry_after);

	if (rc < 0)
		return rc;
	return rc ? ERR_RATE_LIMITED : ERR_BAD_CREDENTIALS;
}

/*
 * A wrong passcode aimed at the live code rec (under key): the code dies at its
 * max_failures'th, and the account's throttle counts it.
 */
static int wrong_guess(struct store_txn *t, struct auth_txn *a, const char *key, json_t *rec,
		       struct lockout *l)
{
	json_int_t n = json_integer_value(json_object_get(rec, "failures")) + 1;
	int rc;

	if (n >= (json_int_t)a->c->conf->otp_max_failures) {
		rc = store_del(t, TBL_CODES, key, strlen(key));
	} else {
		json_object_set_new(rec, "failures", json_integer(n));
		rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	}
	if (rc < 0 || (rc = lockout_fail_txn(t, a->c, l)) < 0)
		return rc;
	return failed_attempt(t, a);
}

/* The right passcode for the live code rec (under key): consume it and log the user in. */
static int login(struct store_txn *t, struct auth_txn *a, const char *key, json_t *rec)
{
	const struct otp_auth_req *r = a->r;
	const char *amr = json_string_value(json_object_get(rec, "amr")) ?: "otp";
	/* null: the code proved no channel; absent (a code sent before channels were kept). */
	const char *channel = json_object_get(rec, "channel") != NULL
				  ? json_string_value(json_object_get(rec, "channel"))
				  : session_amr_channel(amr);
	json_t *user = NULL;
	int rc;

	if ((rc = store_del(t, TBL_CODES, key, strlen(key))) < 0 ||
	    (rc = ratelimit_auth_success_txn(t, a->c, user_idtype_name(r->idtype), r->identifier)) <
		0)
		return rc;
	rc = user_for_login_txn(t, r->client, r->idtype, r->identifier, &user);
	if (rc != ERR_NONE)
		return rc;
	rc = user_is_active(user) ? ERR_NONE : ERR_USER_NOT_ACTIVE;
	if (rc == ERR_NONE)
		rc = session_login_txn(t, a->c, user, r->client, amr, channel,
				       json_string_value(json_object_get(rec, "verifies")),
				       &r->opts, a->aud, &a->grant);
	json_decref(user);
	if (rc == ERR_NONE && json_object_get(rec, "approval_data") != NULL)
		a->grant.extra_claims =
		    json_pack("{s:O}", "approval_data", json_object_get(rec, "approval_data"));
	if (rc == ERR_NONE)
		rc = ratelimit_release_txn(t, json_object_get(rec, "limits"));
	return rc;
}

/*
 * Only a guess at a live code of this (client, identifier), made with its request_id when the
 * send asked for one, counts against that code and the account (lockout.h): a guess where no
 * code is outstanding, from another client or outside the code's flow harms nobody's login.
 */
static int auth_txn(struct store_txn *t, void *argp)
{
	struct auth_txn *a = argp;
	const struct otp_auth_req *r = a->r;
	char key[KEYRING_TAG_HEX], tag[KEYRING_TAG_HEX];
	struct lockout l = {.rec = NULL};
	json_t *rec = NULL, *known = NULL;
	int rc, expired;

	login_grant_free(&a->grant);
	a->retry_after = 0;
	if (code_key(a->c, r->client, r->idtype, r->identifier, key) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_NOTFOUND) {
		rc = failed_attempt(t, a);
		goto out;
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
		goto out;
	}
	if (!otp_request_id_ok(a->c, json_string_value(json_object_get(rec, "request_id")),
			       r->request_id)) {
		rc = failed_attempt(t, a);
		goto out;
	}
	if ((rc = user_find_txn(t, r->idtype, r->identifier, &known)) < 0 ||
	    (rc = lockout_begin_txn(t, a->c, json_string_value(json_object_get(known, "user_id")),
				    user_idtype_name(r->idtype), r->identifier, &l,
				    &a->retry_after)) != ERR_NONE)
		goto out;
	if (keyring_tag(a->c->keys, tag, "code-value", key, r->passcode, NULL) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	if (!crypto_str_equal(tag, json_string_value(json_object_get(rec, "code")) ?: ""))
		rc = expired ? failed_attempt(t, a) : wrong_guess(t, a, key, rec, &l);
	else if (expired)
		rc = (rc = store_del(t, TBL_CODES, key, strlen(key))) < 0 ? rc : ERR_CODE_EXPIRED;
	else
		rc = login(t, a, key, rec);
out:
	lockout_done(&l);
	json_decref(known);
	json_decref(rec);
	/*
	 * A failure that was counted must be committed, and so may a refusal that changed at
	 * most a dead code (expired, locked). A refusal after the code was consumed (user
	 * disabled, session not found) must not consume it: those abort.
	 */
	if (rc == ERR_USER_NOT_ACTIVE || rc == ERR_USER_NOT_FOUND || rc == ERR_SESSION_NOT_FOUND ||
	    rc == ERR_ORG_NOT_MEMBER || rc == ERR_INTERNAL)
		return STORE_REFUSE(rc);
	return rc;
}

int otp_authenticate(struct ctx *c, const struct otp_auth_req *r, const char *aud, json_t **tokens)
{
	struct auth_txn a = {.c = c, .r = r, .aud = aud};
	int rc = store_run(c->store, auth_txn, &a);

	rc = store_outcome(rc, ERR_UNAVAILABLE);
	if (rc == ERR_RATE_LIMITED || rc == ERR_LOCKED) {
		char masked[64];
		if (r->retry_after != NULL)
			*r->retry_after = a.retry_after ? a.retry_after : 1;
		log_info("authenticate for %s refused: %s, retry in %u s",
			 log_mask_addr(r->identifier, masked, sizeof(masked)),
			 rc == ERR_LOCKED ? "the account is throttled" : "rate limit",
			 a.retry_after ? a.retry_after : 1);
	}
	if (rc == ERR_NONE) {
		*tokens = token_response(c, &a.grant, &r->opts);
		if (*tokens == NULL)
			rc = ERR_INTERNAL;
	}
	login_grant_free(&a.grant);
	return rc;
}
