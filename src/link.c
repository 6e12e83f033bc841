#include "link.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "jsonio.h"
#include "lockout.h"
#include "login.h"
#include "log.h"
#include "metrics.h"
#include "resp.h" /* RESP_HEADER_MAX: a redirect must fit its Location header */

#define LINK_TOKEN_BYTES 32
#define LINK_CODE_BYTES 32
#define OPEN_PATH "/v1/auth/link/email/open?t="

/* A link send's own state, behind login_send.state. */
struct link_send_state {
	const struct link_send_req *r;
	char *token; /* the link token (new) */
	char *url;   /* the link (new) */
	char key[KEYRING_TAG_HEX];
};

static struct link_send_state *link_of(struct login_send *s)
{
	return s->state;
}

/* The address a link goes to, or the err that says why there is none. */
static int destination(struct login_send *s, json_t *user)
{
	const char *to = user ? user_email(user) : NULL;

	if (to == NULL && user == NULL && s->idtype == ID_EMAIL)
		to = s->identifier;
	if (to == NULL)
		return ERR_EMAIL_MISSING;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/* Drop the identifier's previous link for this client and point at the new one. */
static int replace_previous(struct login_send *s, struct store_txn *t)
{
	char ptr[KEYRING_TAG_HEX];
	json_t *old, *rec;
	int rc;

	if (keyring_tag(s->c->keys, ptr, "link-for", client_id_of(s->client),
			user_idtype_name(s->idtype), s->identifier, NULL) < 0)
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
	rec = json_pack("{s:s}", "link", link_of(s)->key);
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

/* A new link token, its URL and its record key. 0 or -1. */
static int new_link(struct login_send *s)
{
	struct link_send_state *l = link_of(s);

	crypto_free_str(l->token);
	free(l->url);
	l->url = NULL;
	l->token = crypto_random_token(LINK_TOKEN_BYTES);
	if (l->token == NULL ||
	    asprintf(&l->url, "%s%s%s", s->c->conf->public_base_url,
		     l->r->open_path ? l->r->open_path : OPEN_PATH, l->token) < 0) {
		l->url = NULL;
		return -1;
	}
	return keyring_tag(s->c->keys, l->key, "link", l->token, NULL);
}

static int issue(struct login_send *s, struct store_txn *t, const char *rid_tag, json_t *limit_keys)
{
	struct link_send_state *l = link_of(s);
	const struct link_send_req *r = l->r;
	unsigned minutes = r->minutes ? r->minutes : s->c->conf->link_ttl_minutes;
	json_t *rec;
	int rc;

	if (minutes > s->c->conf->link_max_ttl_minutes)
		minutes = s->c->conf->link_max_ttl_minutes;
	if (new_link(s) < 0)
		return STORE_ERR;
	if (s->channel != NULL &&
	    (rc = login_compose_mail(s->c, s->client, MAIL_LINK, s->to, l->url, minutes, r->content,
				     &s->message, &s->message_len)) != ERR_NONE)
		return rc;
	if ((rc = replace_previous(s, t)) < 0)
		return rc;
	rec = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:b, s:s}", "client_id", client_id_of(s->client),
	    "idtype", user_idtype_name(s->idtype), "identifier", s->identifier, "to",
	    s->shadow ? "" : s->to, "redirect_uri", r->redirect_uri, "state", r->state, "exp",
	    (json_int_t)(time(NULL) + (time_t)minutes * 60), "used", 0, "request_id", rid_tag);
	if (rec == NULL)
		return STORE_ERR;
	if (r->redirect != NULL)
		json_object_set(rec, "redirect", r->redirect);
	/* A dead link opens as an unknown one (open_txn). */
	if (s->shadow)
		json_object_set_new(rec, "dead", json_true());
	/* Opening it and logging in releases the recipient's send limits (see ratelimit.h). */
	if (limit_keys != NULL)
		json_object_set(rec, "limits", limit_keys);
	rc = store_put(t, TBL_CODES, l->key, strlen(l->key), rec);
	json_decref(rec);
	return rc < 0 ? rc : ERR_NONE;
}

static int deliver(struct login_send *s)
{
	return mail_send(&s->c->mail, s->c->conf->mail_from, s->to, s->message, s->message_len) ==
		       MAIL_OK
		   ? ERR_NONE
		   : ERR_DELIVERY;
}

/* A link that was never delivered must not stay usable. */
static int withdraw(struct login_send *s, struct store_txn *t)
{
	const char *key = link_of(s)->key;
	int rc = store_del(t, TBL_CODES, key, strlen(key));
	return rc < 0 ? rc : 0;
}

static const struct login_kind email_link = {"magic link", "link",  destination,
					     issue,	   deliver, withdraw};

int link_send(struct ctx *c, const struct link_send_req *r, struct link_send_res *res)
{
	struct link_send_state l = {.r = r};
	struct login_send s = {.c = c,
			       .kind = &email_link,
			       .client = r->client,
			       .idtype = r->idtype,
			       .identifier = r->identifier,
			       .channel = r->direct ? NULL : "email",
			       .want_request_id = r->want_request_id,
			       .state = &l};
	int rc;

	memset(res, 0, sizeof(*res));
	rc = login_send(&s);
	res->retry_after = s.retry_after;
	if (rc == ERR_NONE) {
		if (r->direct) {
			res->link = l.url;
			l.url = NULL;
		}
		res->request_id = s.request_id;
		s.request_id = NULL;
	}
	crypto_free_str(l.token);
	crypto_free_str(l.url);
	login_send_done(&s);
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
	const struct link_finish *f; /* a redirect flow's link (link_open_redirect), or NULL */
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

	if (uri == NULL) {
		log_err("a magic link's record names no redirect_uri");
		return NULL;
	}
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
	/* A link of the other flow (redirect or backend) is no link here: see link.h. */
	if (json_is_true(json_object_get(rec, "dead")) ||
	    (json_object_get(rec, "redirect") != NULL) != (o->f != NULL)) {
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
		if (rc == 0 && o->f != NULL) {
			rc = o->f->fn(t, rec, o->v, o->f->arg);
			json_decref(rec);
			return rc;
		}
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

static int run_open(struct ctx *c, const char *token, struct link_view *v, int consume,
		    const struct link_finish *f)
{
	struct open_state o = {c, token, consume, v, NULL, f};
	int rc;

	memset(v, 0, sizeof(*v));
	rc = store_run(c->store, open_txn, &o);
	crypto_free_str(o.code);
	return rc < 0 ? rc : 0;
}

int link_peek(struct ctx *c, const char *token, struct link_view *v)
{
	return run_open(c, token, v, 0, NULL);
}

int link_open(struct ctx *c, const char *token, struct link_view *v)
{
	return run_open(c, token, v, 1, NULL);
}

int link_open_redirect(struct ctx *c, const char *token, struct link_view *v,
		       const struct link_finish *f, int consume)
{
	return run_open(c, token, v, consume, f);
}

void link_view_free(struct link_view *v)
{
	crypto_free_str(v->redirect);
	v->redirect = NULL;
}

struct auth_state {
	struct login_attempt a;
	const struct link_auth_req *r;
	const char *aud;
	char idtype[16], identifier[256]; /* the link's, for a.idtype and a.identifier */
};

/*
 * A code of 256 bits is not guessed: a wrong one is an unknown one, and it counts only toward
 * the address and client limits (there is no identifier before a code is found), never toward
 * an account. A known one proves the mailbox the passcodes go to: it waits out the account's
 * throttle like them (lockout.h), and is kept meanwhile, so that the user may come back with it.
 */
static int auth_txn(struct store_txn *t, void *arg)
{
	struct auth_state *x = arg;
	const struct link_auth_req *r = x->r;
	char key[KEYRING_TAG_HEX];
	struct lockout l = {.rec = NULL};
	json_t *rec = NULL;
	int rc;

	x->a.retry_after = 0;
	x->a.idtype = x->a.identifier = NULL;
	if (strlen(r->code) > 128 ||
	    keyring_tag(x->a.c->keys, key, "link-code", client_id_of(r->client), r->code, NULL) < 0)
		return login_failed_txn(t, &x->a);
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : login_failed_txn(t, &x->a);
	snprintf(x->idtype, sizeof(x->idtype), "%s", jsonio_str(rec, "idtype") ?: "");
	snprintf(x->identifier, sizeof(x->identifier), "%s", jsonio_str(rec, "identifier") ?: "");
	x->a.idtype = x->idtype;
	x->a.identifier = x->identifier;
	if (json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL) ||
	    !login_request_id_ok(x->a.c, jsonio_str(rec, "request_id"), r->request_id) ||
	    user_idtype_parse(x->idtype) == ID_INVALID || x->identifier[0] == '\0') {
		/* A code is good for one attempt: a refused one is used up. */
		rc = store_del(t, TBL_CODES, key, strlen(key));
		rc = rc < 0 ? rc : ERR_BAD_CREDENTIALS;
	} else if ((rc = login_throttle_txn(t, &x->a, &l)) == ERR_LOCKED) {
		rc = STORE_REFUSE(ERR_LOCKED);
	} else if (rc == ERR_NONE && (rc = store_del(t, TBL_CODES, key, strlen(key))) >= 0) {
		rc = login_txn_end(login_finish_txn(t, &x->a, "eml", "email", "email",
						    json_object_get(rec, "limits"), &r->opts,
						    x->aud));
	}
	lockout_done(&l);
	json_decref(rec);
	return rc;
}

int link_authenticate(struct ctx *c, const struct link_auth_req *r, const char *aud,
		      json_t **tokens)
{
	struct auth_state x = {.a = {.c = c, .client = r->client, .ip = r->ip}, .r = r, .aud = aud};
	int rc = store_outcome(store_run(c->store, auth_txn, &x), ERR_UNAVAILABLE);

	metrics_login(METRICS_LOGIN_MAGIC_LINK, rc);
	audit_login("magic_link", rc, NULL,
		    json_string_value(json_object_get(x.a.grant.user, "user_id")), NULL, r->ip);
	return login_tokens(&x.a, rc, &r->opts, r->retry_after, tokens);
}
