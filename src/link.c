#include "link.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "crypto.h"
#include "err.h"
#include "lockout.h"
#include "log.h"
#include "otp.h"
#include "ratelimit.h"
#include "resp.h" /* RESP_HEADER_MAX: a redirect must fit its Location header */
#include "token.h"

#define LINK_TOKEN_BYTES 32
#define LINK_CODE_BYTES 32
#define OPEN_PATH "/v1/auth/link/email/open?t="

struct send_state {
	struct ctx *c;
	const struct link_send_req *r;
	char *token; /* the link token (new) */
	char *url;   /* the link (new) */
	char *request_id;
	char *message;
	size_t message_len;
	char to[256];
	char key[KEYRING_TAG_HEX];
	int shadow;	      /* hidden existence: no usable link is stored or mailed */
	int over;	      /* the recipient's own limits hold it back: a shadow send too */
	unsigned retry_after; /* ERR_RATE_LIMITED */
};

/* The address a link goes to, or the api_err that says why there is none. */
static int destination(struct send_state *s, json_t *user)
{
	const char *to = user ? user_email(user) : NULL;
	if (to == NULL && user == NULL && s->r->idtype == ID_EMAIL)
		to = s->r->identifier;
	if (to == NULL)
		return ERR_EMAIL_MISSING;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/* Drop the identifier's previous link for this client and point at the new one. */
static int replace_previous(struct send_state *s, struct store_txn *t)
{
	char ptr[KEYRING_TAG_HEX];
	json_t *old, *rec;
	int rc;

	if (keyring_tag(s->c->keys, ptr, "link-for", client_id_of(s->r->client),
			user_idtype_name(s->r->idtype), s->r->identifier, NULL) < 0)
		return STORE_ERR;
	rc = store_get(t, TBL_CODES, ptr, strlen(ptr), &old, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		const char *prev = json_string_value(json_object_get(old, "link"));
		rc = prev ? store_del(t, TBL_CODES, prev, strlen(prev)) : 0;
		json_decref(old);
		if (rc < 0)
			return rc;
	}
	rec = json_pack("{s:s}", "link", s->key);
	rc = store_put(t, TBL_CODES, ptr, strlen(ptr), rec);
	json_decref(rec);
	return rc;
}

/* The pointer replace_previous writes carries no "exp": it is dead with the link it names. */
static int pointer_dead(struct store_txn *t, const void *key, size_t klen, json_t *val,
			time_t cutoff)
{
	json_t *link = json_object_get(val, "link");

	if (json_object_size(val) != 1 || !json_is_string(link))
		return 0;
	return store_dead(t, TBL_CODES, json_string_value(link), json_string_length(link), cutoff);
}

int link_purge_rules(struct store *s)
{
	return store_purge_rule(s, TBL_CODES, pointer_dead);
}

/* Why this identifier cannot get a link (an api_err), or ERR_NONE with s->to set. */
static int deliverable(struct send_state *s, json_t *user, int found)
{
	if (!found && !user_signup_allows(s->r->client, s->r->idtype))
		return ERR_USER_NOT_FOUND;
	if (user != NULL && !user_is_active(user))
		return ERR_USER_NOT_ACTIVE;
	return destination(s, user);
}

static int send_txn(struct store_txn *t, void *argp)
{
	struct send_state *s = argp;
	const struct link_send_req *r = s->r;
	unsigned minutes = r->minutes ? r->minutes : s->c->conf->link_ttl_minutes;
	char rid_tag[KEYRING_TAG_HEX] = "";
	json_t *user = NULL, *rec, *limit_keys = NULL;
	int rc;

	rc = user_find_txn(t, r->idtype, r->identifier, &user);
	if (rc < 0)
		return rc;
	s->shadow = 0;
	rc = deliverable(s, user, rc == STORE_FOUND);
	json_decref(user);
	if (rc != ERR_NONE) {
		if (!client_hides_existence(r->client))
			return rc;
		/* As in otp.c: the same work as a real send, with a link that is dead. */
		s->shadow = 1;
		snprintf(s->to, sizeof(s->to), "%s", s->c->conf->mail_from);
	}
	s->over = 0;
	if (!r->direct) {
		limit_keys = json_array();
		if (limit_keys == NULL)
			return STORE_ERR;
		/* As in otp.c (send_limits): a hiding client's 429s depend on the request only. */
		if (client_hides_existence(r->client))
			rc = ratelimit_hidden_send_txn(t, s->c, client_id_of(r->client), "email",
						       user_idtype_name(r->idtype), r->identifier,
						       NULL, s->shadow ? NULL : s->to, &s->over,
						       &s->retry_after, limit_keys);
		else
			rc = ratelimit_send_txn(t, s->c, client_id_of(r->client), "email", s->to,
						NULL, &s->retry_after, limit_keys);
		if (rc < 0)
			goto out;
		/* Over the recipient's own limits: answered as sent, and nothing goes out. */
		if (s->over)
			s->shadow = 1;
	}
	if (minutes > s->c->conf->link_max_ttl_minutes)
		minutes = s->c->conf->link_max_ttl_minutes;

	crypto_free_str(s->token);
	free(s->url);
	s->url = NULL;
	s->token = crypto_random_token(LINK_TOKEN_BYTES);
	if (s->token == NULL ||
	    asprintf(&s->url, "%s" OPEN_PATH "%s", s->c->conf->public_base_url, s->token) < 0 ||
	    keyring_tag(s->c->keys, s->key, "link", s->token, NULL) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	if (!r->direct &&
	    (rc = otp_compose_mail(s->c, s->r->client, MAIL_LINK, s->to, s->url, minutes,
				   s->r->content, &s->message, &s->message_len)) != ERR_NONE)
		goto out;
	if (r->want_request_id && otp_new_request_id(s->c, &s->request_id, rid_tag) < 0) {
		rc = STORE_ERR;
		goto out;
	}
	if ((rc = replace_previous(s, t)) < 0)
		goto out;
	rec = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:b, s:s}", "client_id", client_id_of(r->client),
	    "idtype", user_idtype_name(r->idtype), "identifier", r->identifier, "to",
	    s->shadow ? "" : s->to, "redirect_uri", r->redirect_uri, "state", r->state, "exp",
	    (json_int_t)(time(NULL) + (time_t)minutes * 60), "used", 0, "request_id", rid_tag);
	if (rec == NULL) {
		rc = STORE_ERR;
		goto out;
	}
	/* A dead link opens as an unknown one (open_txn). */
	if (s->shadow)
		json_object_set_new(rec, "dead", json_true());
	/* Opening it and logging in releases the recipient's send limits (see ratelimit.h). */
	if (limit_keys != NULL && json_array_size(limit_keys) > 0)
		json_object_set(rec, "limits", limit_keys);
	rc = store_put(t, TBL_CODES, s->key, strlen(s->key), rec);
	json_decref(rec);
	rc = rc < 0 ? rc : ERR_NONE;
out:
	json_decref(limit_keys);
	/* A refusal after the limits were counted must not count them. */
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

static int forget_txn(struct store_txn *t, void *argp)
{
	const char *key = argp;
	int rc = store_del(t, TBL_CODES, key, strlen(key));
	return rc < 0 ? rc : 0;
}

int link_send(struct ctx *c, const struct link_send_req *r, struct link_send_res *res)
{
	struct send_state s = {.c = c, .r = r};
	struct timespec start;
	char masked[64];
	int rc;

	memset(res, 0, sizeof(*res));
	/* As in otp_send: a send's time counts from before its transaction. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	rc = store_run(c->store, send_txn, &s);
	rc = store_outcome(rc, ERR_UNAVAILABLE);
	if (rc == ERR_RATE_LIMITED) {
		res->retry_after = s.retry_after ? s.retry_after : 1;
		log_info("magic link send for %s refused: rate limit, retry in %u s",
			 log_mask_addr(r->identifier, masked, sizeof(masked)), res->retry_after);
	}
	if (rc != ERR_NONE)
		goto out;
	if (r->direct) {
		res->link = s.url;
		s.url = NULL;
	} else if (s.shadow) {
		/* Nothing goes out; take about as long as a delivery would have. */
		if (s.over)
			log_info("magic link to %s not sent: the recipient's send limit is reached "
				 "(answered as sent: the client hides existence)",
				 log_mask_addr(s.to, masked, sizeof(masked)));
		ratelimit_delivery_pace(c, "email", &start);
	} else {
		log_mask_addr(s.to, masked, sizeof(masked));
		if (mail_send(&c->mail, c->conf->mail_from, s.to, s.message, s.message_len) ==
		    MAIL_OK) {
			ratelimit_delivery_took(c, "email", &start);
			log_info("sent a magic link to %s", masked);
		} else {
			/* A link that was never delivered must not stay usable. */
			log_err("no magic link went out to %s: the link is withdrawn", masked);
			store_run(c->store, forget_txn, s.key);
			rc =
			    otp_failed_delivery_answer(c, r->client, "email", &start, ERR_DELIVERY);
			if (rc != ERR_NONE)
				goto out;
		}
	}
	res->request_id = s.request_id;
	s.request_id = NULL;
out:
	crypto_free_str(s.token);
	crypto_free_str(s.url);
	crypto_free_str(s.request_id);
	if (s.message != NULL) {
		crypto_wipe(s.message, s.message_len);
		free(s.message);
	}
	return rc;
}

void link_send_res_free(struct link_send_res *res)
{
	crypto_free_str(res->link);
	crypto_free_str(res->request_id);
	memset(res, 0, sizeof(*res));
}

int link_origin(const char *uri, char *out, size_t outlen)
{
	const char *p = strstr(uri, "://");
	size_t n;

	if (p != NULL) {
		n = (size_t)(p + 3 - uri) + strcspn(p + 3, "/?#");
		if (n < outlen) {
			snprintf(out, outlen, "%.*s", (int)n, uri);
			return 0;
		}
	}
	snprintf(out, outlen, "'none'");
	return p == NULL ? 0 : -1;
}

struct open_state {
	struct ctx *c;
	const char *token;
	int consume;
	struct link_view *v;
	char *code;
};

static void describe(struct link_view *v, json_t *rec)
{
	log_mask_addr(json_string_value(json_object_get(rec, "to")), v->masked, sizeof(v->masked));
	link_origin(json_string_value(json_object_get(rec, "redirect_uri")) ?: "",
		    v->redirect_origin, sizeof(v->redirect_origin));
}

/* The code record a consumed link hands to its client. */
static int issue_code(struct open_state *o, struct store_txn *t, json_t *link)
{
	char key[KEYRING_TAG_HEX];
	json_t *rec;
	int rc;

	crypto_free_str(o->code);
	o->code = crypto_random_token(LINK_CODE_BYTES);
	if (o->code == NULL ||
	    keyring_tag(o->c->keys, key, "link-code",
			json_string_value(json_object_get(link, "client_id")), o->code, NULL) < 0)
		return STORE_ERR;
	rec = json_pack("{s:O, s:O, s:O, s:I}", "idtype", json_object_get(link, "idtype"),
			"identifier", json_object_get(link, "identifier"), "request_id",
			json_object_get(link, "request_id"), "exp",
			(json_int_t)(time(NULL) + (time_t)o->c->conf->link_code_ttl));
	if (rec == NULL)
		return STORE_ERR;
	if (json_object_get(link, "limits") != NULL)
		json_object_set(rec, "limits", json_object_get(link, "limits"));
	rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	json_decref(rec);
	return rc;
}

/* The code in a redirect: LINK_CODE_BYTES random bytes, base64url without padding. */
#define LINK_CODE_CHARS ((LINK_CODE_BYTES * 4 + 2) / 3)

static int unreserved(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("-._~", ch) != NULL);
}

/* Bytes of state once percent-encoded (0 for none). */
static size_t encoded_len(const char *state)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)(state ? state : ""); *p; p++)
		n += unreserved(*p) ? 1 : 3;
	return n;
}

/* Bytes of redirect_url's result for a link of uri and state. */
static size_t redirect_len(const char *uri, const char *state)
{
	return strlen(uri) + strlen("?code=") + LINK_CODE_CHARS +
	       (state ? strlen("&state=") + encoded_len(state) : 0);
}

int link_redirect_fits(const char *redirect_uri, const char *state)
{
	char origin[sizeof(((struct link_view *)0)->redirect_origin)];

	/* The landing page's form-action names the origin: it must not be cut short either. */
	return redirect_len(redirect_uri, state) <= RESP_HEADER_MAX &&
	       link_origin(redirect_uri, origin, sizeof(origin)) == 0;
}

/*
 * redirect_uri?code=..&state=.. (or &code= when the registered URI has a query); NULL when it
 * would not fit a header (a link sent before sends checked it): never a shortened redirect.
 */
static char *redirect_url(json_t *link, const char *code)
{
	const char *uri = json_string_value(json_object_get(link, "redirect_uri"));
	const char *state = json_string_value(json_object_get(link, "state"));
	char *out = NULL, *enc = NULL;
	size_t n = 0;

	if (redirect_len(uri, state) > RESP_HEADER_MAX || strlen(code) != LINK_CODE_CHARS) {
		log_err("a magic link's redirect is too long for the Location header");
		return NULL;
	}
	if (state != NULL) {
		enc = malloc(encoded_len(state) + 1);
		if (enc == NULL)
			return NULL;
		for (const unsigned char *p = (const unsigned char *)state; *p; p++) {
			if (unreserved(*p))
				enc[n++] = (char)*p;
			else
				n += (size_t)sprintf(enc + n, "%%%02X", *p);
		}
		enc[n] = '\0';
	}
	if (asprintf(&out, "%s%scode=%s%s%s", uri, strchr(uri, '?') ? "&" : "?", code,
		     enc ? "&state=" : "", enc ? enc : "") < 0)
		out = NULL;
	free(enc);
	return out;
}

static int open_txn(struct store_txn *t, void *argp)
{
	struct open_state *o = argp;
	char key[KEYRING_TAG_HEX];
	json_t *rec;
	int rc;

	o->v->state = LINK_UNKNOWN;
	if (strlen(o->token) > 128 || keyring_tag(o->c->keys, key, "link", o->token, NULL) < 0)
		return 0;
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, o->consume);
	if (rc <= 0)
		return rc;
	if (json_is_true(json_object_get(rec, "dead"))) {
		json_decref(rec);
		return 0;
	}
	describe(o->v, rec);
	if (json_is_true(json_object_get(rec, "used")))
		o->v->state = LINK_USED;
	else if (json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL))
		o->v->state = LINK_EXPIRED;
	else
		o->v->state = LINK_VALID;
	rc = 0;
	if (o->consume && o->v->state == LINK_VALID) {
		/* Kept, marked used, until it expires: a second click says "already used". */
		json_object_set_new(rec, "used", json_true());
		rc = store_put(t, TBL_CODES, key, strlen(key), rec);
		if (rc == 0)
			rc = issue_code(o, t, rec);
		if (rc == 0) {
			free(o->v->redirect);
			o->v->redirect = redirect_url(rec, o->code);
			rc = o->v->redirect ? 0 : STORE_ERR;
		}
	}
	json_decref(rec);
	return rc;
}

static int run_open(struct ctx *c, const char *token, struct link_view *v, int consume)
{
	struct open_state o = {c, token, consume, v, NULL};
	int rc;

	memset(v, 0, sizeof(*v));
	rc = store_run(c->store, open_txn, &o);
	crypto_free_str(o.code);
	return rc < 0 ? rc : 0;
}

int link_peek(struct ctx *c, const char *token, struct link_view *v)
{
	return run_open(c, token, v, 0);
}

int link_open(struct ctx *c, const char *token, struct link_view *v)
{
	return run_open(c, token, v, 1);
}

void link_view_free(struct link_view *v)
{
	crypto_free_str(v->redirect);
	v->redirect = NULL;
}

struct auth_state {
	struct ctx *c;
	const struct link_auth_req *r;
	const char *aud;
	struct login_grant grant;
	unsigned retry_after;
};

/*
 * A code of 256 bits is not guessed, so an unknown one counts only toward the address and
 * client limits (there is no identifier to count against before one is found) and never
 * toward an account.
 */
static int unknown_code(struct store_txn *t, struct auth_state *a)
{
	int rc = ratelimit_auth_fail_txn(t, a->c, client_id_of(a->r->client), a->r->ip, NULL, NULL,
					 &a->retry_after);
	if (rc < 0)
		return rc;
	return rc ? ERR_RATE_LIMITED : ERR_BAD_CREDENTIALS;
}

/*
 * The account of (type, identifier) is throttled by wrong passcodes (lockout.h): the mailbox a
 * link proves is the one the passcodes go to, so it waits out the same delay. ERR_NONE,
 * ERR_LOCKED (a->retry_after) or a negative store_rc.
 */
static int account_throttled(struct store_txn *t, struct auth_state *a, enum user_idtype type,
			     const char *identifier)
{
	struct lockout l;
	json_t *known = NULL;
	int rc = user_find_txn(t, type, identifier, &known);

	if (rc >= 0) {
		rc =
		    lockout_begin_txn(t, a->c, json_string_value(json_object_get(known, "user_id")),
				      user_idtype_name(type), identifier, &l, &a->retry_after);
		lockout_done(&l);
	}
	json_decref(known);
	return rc;
}

/* Log in the user of the link record rec (its code consumed already). */
static int login(struct store_txn *t, struct auth_state *a, enum user_idtype type,
		 const char *identifier, json_t *rec)
{
	json_t *user = NULL;
	int rc = user_for_login_txn(t, a->r->client, type, identifier, &user);

	if (rc != ERR_NONE)
		return rc;
	rc = user_is_active(user) ? ERR_NONE : ERR_USER_NOT_ACTIVE;
	if (rc == ERR_NONE)
		rc = session_login_txn(t, a->c, user, a->r->client, "eml", "email", "email",
				       &a->r->opts, a->aud, &a->grant);
	json_decref(user);
	/* A success releases the identifier's failed attempts and the recipient's send limits. */
	if (rc == ERR_NONE &&
	    (rc = ratelimit_auth_success_txn(t, a->c, user_idtype_name(type), identifier)) == 0)
		rc = ratelimit_release_txn(t, json_object_get(rec, "limits"));
	return rc;
}

static int auth_txn(struct store_txn *t, void *argp)
{
	struct auth_state *a = argp;
	const struct link_auth_req *r = a->r;
	char key[KEYRING_TAG_HEX];
	const char *identifier;
	enum user_idtype type;
	json_t *rec = NULL;
	int rc;

	login_grant_free(&a->grant);
	a->retry_after = 0;
	if (strlen(r->code) > 128 ||
	    keyring_tag(a->c->keys, key, "link-code", client_id_of(r->client), r->code, NULL) < 0)
		return unknown_code(t, a);
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : unknown_code(t, a);
	type = user_idtype_parse(json_string_value(json_object_get(rec, "idtype")) ?: "");
	identifier = json_string_value(json_object_get(rec, "identifier"));
	if (json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL) ||
	    !otp_request_id_ok(a->c, json_string_value(json_object_get(rec, "request_id")),
			       r->request_id) ||
	    type == ID_INVALID || identifier == NULL) {
		/* A code is good for one attempt: a refused one is used up. */
		rc = store_del(t, TBL_CODES, key, strlen(key));
		rc = rc < 0 ? rc : ERR_BAD_CREDENTIALS;
	} else if ((rc = account_throttled(t, a, type, identifier)) == ERR_LOCKED) {
		/* Not used up: the user may come back with it once the delay is over. */
		rc = STORE_REFUSE(ERR_LOCKED);
	} else if (rc == ERR_NONE && (rc = store_del(t, TBL_CODES, key, strlen(key))) >= 0) {
		/* Consumed whatever follows (user disabled, session gone): commit. */
		rc = login(t, a, type, identifier, rec);
	}
	json_decref(rec);
	return rc;
}

int link_authenticate(struct ctx *c, const struct link_auth_req *r, const char *aud,
		      json_t **tokens)
{
	struct auth_state a = {.c = c, .r = r, .aud = aud};
	int rc = store_run(c->store, auth_txn, &a);

	rc = store_outcome(rc, ERR_UNAVAILABLE);
	if ((rc == ERR_RATE_LIMITED || rc == ERR_LOCKED) && r->retry_after != NULL)
		*r->retry_after = a.retry_after ? a.retry_after : 1;
	if (rc == ERR_NONE) {
		*tokens = token_response(c, &a.grant, &r->opts);
		if (*tokens == NULL)
			rc = ERR_INTERNAL;
	}
	login_grant_free(&a.grant);
	return rc;
}
