#include "redirect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "authcode.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "jwt.h"
#include "keyring.h"
#include "log.h"
#include "login.h"
#include "otp.h"
#include "ratelimit.h"
#include "resp.h" /* RESP_HEADER_MAX: the redirect must fit its Location header */
#include "session.h"
#include "sms.h"
#include "store.h"

#define TICKET_BYTES 32

/* ---- sending -------------------------------------------------------------------------------- */

/* The options a send keeps with its passcode or link, for the browser's arrival (new). */
static json_t *send_options(const struct redirect_send_req *r)
{
	static const char *const kinds[] = {"email-otp", "sms", "email"};
	json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "kind", kinds[r->kind], "redirect_uri",
			      r->redirect_uri, "create_new_user", r->create_new_user, "require_mfa",
			      r->require_mfa);

	if (o == NULL)
		return NULL;
	if (r->resource != NULL)
		json_object_set_new(o, "resource", json_string(r->resource));
	if (r->org_id != NULL)
		json_object_set_new(o, "org_id", json_string(r->org_id));
	if (r->claims != NULL)
		json_object_set(o, "claims", r->claims);
	if (r->approval_data != NULL)
		json_object_set(o, "approval_data", r->approval_data);
	return o;
}

/*
 * Unknown identifiers: the contract answers 404 unless create_new_user asks for a signup, and
 * create_new_user needs the client's open signup whoever the identifier is (so that the 403
 * tells nothing about the identifier). ERR_NONE or that err.
 */
static int send_allowed(struct ctx *c, const struct redirect_send_req *r)
{
	json_t *user = NULL;
	int rc;

	if (r->create_new_user)
		return user_signup_allows(r->client, r->idtype) ? ERR_NONE : ERR_FORBIDDEN;
	rc = user_get(c, r->idtype, r->identifier, &user);
	json_decref(user);
	if (rc < 0)
		return ERR_UNAVAILABLE;
	return rc == STORE_FOUND ? ERR_NONE : ERR_USER_NOT_FOUND;
}

int redirect_send(struct ctx *c, const struct redirect_send_req *r, unsigned *retry_after)
{
	json_t *opts = NULL;
	int rc;

	*retry_after = 0;
	if ((rc = send_allowed(c, r)) != ERR_NONE)
		return rc;
	if ((opts = send_options(r)) == NULL)
		return ERR_INTERNAL;
	if (r->kind == REDIRECT_EMAIL_LINK) {
		struct link_send_req l = {.client = r->client,
					  .idtype = r->idtype,
					  .identifier = r->identifier,
					  .redirect_uri = r->redirect_uri,
					  .content = r->content,
					  .redirect = opts,
					  .open_path = REDIRECT_LINK_PATH "?t="};
		struct link_send_res res;
		rc = link_send(c, &l, &res);
		*retry_after = res.retry_after;
		if (rc == ERR_NONE)
			link_send_res_free(&res);
	} else {
		int sms = r->kind == REDIRECT_SMS_OTP;
		struct otp_send_req o = {.client = r->client,
					 .channel = sms ? "sms" : "email",
					 .idtype = r->idtype,
					 .identifier = r->identifier,
					 .content = r->content,
					 .approval_data = r->approval_data,
					 .sms_template = r->sms_template,
					 .sender_id = r->sender_id,
					 .redirect = opts};
		struct otp_send_res res;
		rc = otp_send(c, &o, &res);
		*retry_after = res.retry_after;
		if (rc == ERR_NONE)
			otp_send_res_free(&res);
	}
	json_decref(opts);
	return rc;
}

/* ---- validating a passcode: the ticket ------------------------------------------------------ */

struct validate_state {
	const struct redirect_validate_req *r;
	char *ticket; /* the raw ticket (new) */
};

/*
 * otp.h's finish: the passcode was right and is consumed. The proof becomes a ticket that
 * carries what the browser's arrival needs; the identifier's failure count ends and the send
 * limits are released here, where the proof happened, as login_finish_txn does.
 */
static int validated_txn(struct store_txn *t, struct login_attempt *a, json_t *rec, void *arg)
{
	struct validate_state *v = arg;
	json_t *opts = json_object_get(rec, "redirect"), *user = NULL, *ticket;
	char key[KEYRING_TAG_HEX];
	int rc;

	if (!json_is_object(opts))
		return ERR_INTERNAL;
	/* A user deleted since the send: refused now, while the backend can still answer. */
	if (!json_is_true(json_object_get(opts, "create_new_user"))) {
		rc = user_find_txn(t, user_idtype_parse(a->idtype), a->identifier, &user);
		json_decref(user);
		if (rc <= 0)
			return rc < 0 ? rc : ERR_USER_NOT_FOUND;
	}
	if ((rc = ratelimit_auth_success_txn(t, a->c, a->idtype, a->identifier)) < 0 ||
	    (rc = ratelimit_release_txn(t, json_object_get(rec, "limits"))) < 0)
		return rc;
	crypto_free_str(v->ticket);
	v->ticket = crypto_random_token(TICKET_BYTES);
	if (v->ticket == NULL ||
	    keyring_tag(a->c->keys, key, "redirect-ticket", v->ticket, NULL) < 0)
		return STORE_ERR;
	/* channel null: the code proved no channel (otp.c). */
	ticket = json_pack(
	    "{s:s, s:s, s:s, s:s, s:O, s:s, s:o, s:I, s:b}", "client_id", client_id_of(a->client),
	    "idtype", a->idtype, "identifier", a->identifier, "amr",
	    json_string_value(json_object_get(rec, "amr")) ?: "otp", "channel",
	    json_object_get(rec, "channel") ?: json_null(), "verifies",
	    json_string_value(json_object_get(rec, "verifies")) ?: "", "redirect",
	    json_deep_copy(opts), "exp", (json_int_t)(time(NULL) + REDIRECT_TICKET_TTL), "used", 0);
	if (ticket == NULL)
		return STORE_ERR;
	if (v->r->nonce != NULL)
		json_object_set_new(json_object_get(ticket, "redirect"), "nonce",
				    json_string(v->r->nonce));
	rc = store_put(t, TBL_CODES, key, strlen(key), ticket);
	json_decref(ticket);
	return rc < 0 ? rc : ERR_NONE;
}

int redirect_validate(struct ctx *c, const struct redirect_validate_req *r, char **url,
		      unsigned *retry_after)
{
	struct validate_state v = {r, NULL};
	struct otp_auth_req o = {.client = r->client,
				 .idtype = r->idtype,
				 .identifier = r->identifier,
				 .passcode = r->passcode,
				 .ip = r->ip,
				 .retry_after = retry_after,
				 .finish = validated_txn,
				 .finish_arg = &v};
	json_t *none = NULL;
	int rc;

	*url = NULL;
	rc = otp_authenticate(c, &o, NULL, &none);
	if (rc == ERR_NONE && asprintf(url, "%s" REDIRECT_TICKET_PATH "?t=%s",
				       c->conf->public_base_url, v.ticket) < 0) {
		*url = NULL;
		rc = ERR_INTERNAL;
	}
	crypto_free_str(v.ticket);
	return rc;
}

/* ---- the browser's arrival ------------------------------------------------------------------ */

static int unreserved(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("-._~", ch) != NULL);
}

/* Append name=percent-encoded(value) to *out (realloc'd), after sep. 0 or -1. */
static int add_param(char **out, char sep, const char *name, const char *value)
{
	size_t n = strlen(*out), need = n + 2 + strlen(name) + 3 * strlen(value) + 1;
	char *s = realloc(*out, need);

	if (s == NULL)
		return -1;
	*out = s;
	n += (size_t)sprintf(s + n, "%c%s=", sep, name);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (unreserved(*p))
			s[n++] = (char)*p;
		else
			n += (size_t)sprintf(s + n, "%%%02X", *p);
	}
	s[n] = '\0';
	return 0;
}

/*
 * L->location = uri?name=value&..&iss=<issuer> (RFC 9207), pairs a NULL-terminated list of
 * names and values. 0 or -1 (also when it would not fit a Location header).
 */
static int set_location(struct ctx *c, struct redirect_landing *L, const char *uri,
			const char *const *pairs)
{
	char sep = strchr(uri, '?') ? '&' : '?';

	free(L->location);
	if ((L->location = strdup(uri)) == NULL)
		return -1;
	for (; pairs[0] != NULL; pairs += 2, sep = '&')
		if (add_param(&L->location, sep, pairs[0], pairs[1]) < 0)
			return -1;
	if (add_param(&L->location, sep, "iss", c->conf->issuer) < 0 ||
	    strlen(L->location) > RESP_HEADER_MAX) {
		log_err("redirect: the redirect to the app does not fit a Location header");
		return -1;
	}
	return 0;
}

/* Send the browser back with an OAuth error. Returns STORE_REFUSE(err), or STORE_ERR. */
static int refuse(struct ctx *c, struct redirect_landing *L, const char *uri, const char *error,
		  const char *description, int err)
{
	const char *pairs[] = {"error", error, "error_description", description, NULL};

	if (set_location(c, L, uri, pairs) < 0)
		return STORE_ERR;
	return STORE_REFUSE(err);
}

static int has(json_t *array, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(array, i, v)
	{
		if (strcmp(json_string_value(v) ?: "", s) == 0)
			return 1;
	}
	return 0;
}

/*
 * The second factors the user can still use: those over a channel the session has not proved,
 * to an address or number the user has (Transmit's names, in its order).
 */
static void second_factors(struct ctx *c, json_t *user, json_t *session, char *out, size_t n)
{
	json_t *chans = json_object_get(session, "channels");
	struct sms_conf sc = ctx_sms_conf(c->conf, &c->mail);
	int email = user_email(user) != NULL && !has(chans, "email");
	int sms = user_phone(user) != NULL && !has(chans, "phone") && sms_backend_for(&sc) != NULL;

	snprintf(out, n, "%s%s%s%s%s", email ? "email" : "", email && sms ? "," : "",
		 sms ? "sms" : "", email ? "," : "", email ? "email-otp" : "");
}

/* What the code grants beyond the login: approval_data and new_user (new reference or NULL). */
static json_t *extra_claims(json_t *opts, int new_user)
{
	json_t *extra = json_object();

	if (json_object_get(opts, "approval_data") != NULL)
		json_object_set(extra, "approval_data", json_object_get(opts, "approval_data"));
	if (new_user)
		json_object_set_new(extra, "new_user", json_true());
	if (json_object_size(extra) == 0) {
		json_decref(extra);
		return NULL;
	}
	return extra;
}

/*
 * The code for a finished login g, or mfa_required. new_user is kept on the session between
 * the factors of require_mfa, so that the code after the second one still says so.
 */
static int issue(struct store_txn *t, struct ctx *c, struct redirect_landing *L, json_t *opts,
		 json_t *user, struct login_grant *g)
{
	const char *uri = json_string_value(json_object_get(opts, "redirect_uri"));
	int mfa = json_is_true(json_object_get(opts, "require_mfa"));
	int new_user = json_is_true(json_object_get(g->session, "new_user"));
	struct authcode_grant a = {0};
	char *code = NULL, methods[64], why[128];
	int rc;

	if (mfa && !has(json_object_get(g->session, "amr"), "mfa")) {
		second_factors(c, user, g->session, methods, sizeof(methods));
		if (methods[0] == '\0')
			return refuse(c, L, uri, "access_denied",
				      "A second factor is required, and none is available",
				      ERR_FORBIDDEN);
		snprintf(why, sizeof(why), "A second factor is required: %s", methods);
		const char *pairs[] = {"error", "mfa_required", "error_description", why, NULL};
		return set_location(c, L, uri, pairs) < 0 ? STORE_ERR : 0;
	}
	if (new_user) {
		json_object_del(g->session, "new_user");
		rc = store_put(t, TBL_SESSIONS, g->session_key, strlen(g->session_key), g->session);
		if (rc < 0)
			return rc;
	}
	a.client_id = g->client_id;
	/*
	 * No redirect_uri binding (RFC 6749 4.1.3 binds the one a browser's authorization
	 * request named): here the app's authenticated backend chose it at the send, and the
	 * deprecated /v1/token exchange names none.
	 */
	a.redirect_uri = NULL;
	a.session_key = g->session_key;
	a.nonce = json_string_value(json_object_get(opts, "nonce"));
	a.scope = "openid";
	a.acr = mfa ? "mfa" : NULL;
	a.resource = json_string_value(json_object_get(opts, "resource"));
	a.org_id = json_string_value(json_object_get(opts, "org_id"));
	a.claims = json_object_get(opts, "claims");
	a.extra_claims = extra_claims(opts, new_user);
	a.refresh = 1;
	rc = authcode_issue_txn(t, c, &a, &code);
	json_decref(a.extra_claims);
	if (rc < 0)
		return rc;
	const char *pairs[] = {"code", code, NULL};
	rc = set_location(c, L, uri, pairs) < 0 ? STORE_ERR : 0;
	crypto_free_str(code);
	return rc;
}

/*
 * Inside t, a proved factor (a ticket or a link record: client_id, idtype, identifier and the
 * send's options under "redirect") arrives in the browser: find or create the user, open a
 * login session or join the cookie's (the same user's and client's; any other cookie is
 * replaced), then the code or mfa_required. Returns 0 with L filled, STORE_REFUSE(err) with
 * L->location an error redirect (nothing written is kept), or a negative store_rc.
 */
static int land_txn(struct store_txn *t, struct ctx *c, json_t *proof, const char *amr,
		    const char *channel, const char *verifies, struct redirect_landing *L)
{
	json_t *opts = json_object_get(proof, "redirect"), *client = NULL, *user = NULL;
	const char *uri = json_string_value(json_object_get(opts, "redirect_uri"));
	const char *cid = json_string_value(json_object_get(proof, "client_id")) ?: "";
	enum user_idtype idtype =
	    user_idtype_parse(json_string_value(json_object_get(proof, "idtype")));
	const char *ident = json_string_value(json_object_get(proof, "identifier")) ?: "";
	struct login_opts lo = {.session_id = L->cookie,
				.resource = json_string_value(json_object_get(opts, "resource")),
				.claims = json_object_get(opts, "claims"),
				.org_id = json_string_value(json_object_get(opts, "org_id"))};
	struct login_grant g = {0};
	int rc, new_user = 0;

	free(L->session_id);
	L->session_id = NULL;
	if (uri == NULL)
		return STORE_ERR;
	rc = store_get(t, TBL_CLIENTS, cid, strlen(cid), &client, 0);
	if (rc <= 0)
		return rc < 0 ? rc
			      : refuse(c, L, uri, "access_denied", "The app is not registered",
				       ERR_INVALID_INPUT);
	rc = user_find_txn(t, idtype, ident, &user);
	if (rc == STORE_NOTFOUND && json_is_true(json_object_get(opts, "create_new_user")) &&
	    user_signup_allows(client, idtype)) {
		rc = user_for_login_txn(t, client, idtype, ident, &user);
		rc = rc == ERR_NONE ? STORE_FOUND : rc > 0 ? STORE_ERR : rc;
		new_user = 1;
	}
	if (rc < 0)
		goto out;
	if (rc == STORE_NOTFOUND) {
		rc = refuse(c, L, uri, "access_denied", "User not found", ERR_USER_NOT_FOUND);
		goto out;
	}
	if (!user_is_active(user)) {
		rc = refuse(c, L, uri, "access_denied", "User is not active", ERR_USER_NOT_ACTIVE);
		goto out;
	}
	rc = session_login_txn(t, c, user, client, amr, channel, verifies, &lo, &g);
	if (rc == ERR_SESSION_NOT_FOUND && lo.session_id != NULL) {
		/* The cookie's session is gone, or another user's or app's: a fresh one. */
		login_grant_free(&g);
		lo.session_id = NULL;
		rc = session_login_txn(t, c, user, client, amr, channel, verifies, &lo, &g);
	}
	if (rc == ERR_ORG_NOT_MEMBER) {
		rc = refuse(c, L, uri, "access_denied", "User is not a member of the organization",
			    ERR_ORG_NOT_MEMBER);
		goto out;
	}
	if (rc != ERR_NONE) {
		rc = rc > 0 ? STORE_ERR : rc;
		goto out;
	}
	if (new_user) {
		json_object_set_new(g.session, "new_user", json_true());
		rc = store_put(t, TBL_SESSIONS, g.session_key, strlen(g.session_key), g.session);
		if (rc < 0)
			goto out;
	}
	rc = issue(t, c, L, opts, user, &g);
	if (rc == 0 && (L->session_id = strdup(g.session_id)) == NULL)
		rc = STORE_ERR;
out:
	login_grant_free(&g);
	json_decref(user);
	json_decref(client);
	return rc;
}

struct ticket_state {
	struct ctx *c;
	const char *ticket;
	struct redirect_landing *L;
};

/*
 * A ticket is kept, marked used, until it expires, so that a second use still knows where to
 * send the browser back (with access_denied).
 */
static int ticket_txn(struct store_txn *t, void *arg)
{
	struct ticket_state *s = arg;
	char key[KEYRING_TAG_HEX];
	json_t *rec = NULL;
	const char *uri;
	int rc;

	if (strlen(s->ticket) > 128 ||
	    keyring_tag(s->c->keys, key, "redirect-ticket", s->ticket, NULL) < 0)
		return REDIRECT_UNKNOWN;
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : REDIRECT_UNKNOWN;
	uri = json_string_value(json_object_get(json_object_get(rec, "redirect"), "redirect_uri"));
	if (uri == NULL) {
		rc = REDIRECT_UNKNOWN;
	} else if (json_is_true(json_object_get(rec, "used"))) {
		rc = refuse(s->c, s->L, uri, "access_denied", "The sign-in was already completed",
			    ERR_BAD_CREDENTIALS);
	} else if (json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL)) {
		rc = refuse(s->c, s->L, uri, "access_denied", "The sign-in has expired",
			    ERR_CODE_EXPIRED);
	} else {
		json_object_set_new(rec, "used", json_true());
		rc = store_put(t, TBL_CODES, key, strlen(key), rec);
		if (rc == 0)
			rc = land_txn(t, s->c, rec, json_string_value(json_object_get(rec, "amr")),
				      json_string_value(json_object_get(rec, "channel")),
				      json_string_value(json_object_get(rec, "verifies")), s->L);
	}
	json_decref(rec);
	return rc;
}

int redirect_ticket(struct ctx *c, const char *ticket, struct redirect_landing *L)
{
	struct ticket_state s = {c, ticket, L};
	int rc = store_run(c->store, ticket_txn, &s);

	/* A refusal wrote nothing (a used or expired ticket is simply answered). */
	if (store_refused(rc) >= 0)
		return L->location != NULL ? 0 : STORE_ERR;
	if (rc != 0)
		return rc;
	return L->location != NULL ? 0 : STORE_ERR;
}

struct redirect_link_state {
	struct ctx *c;
	struct redirect_landing *L;
};

/*
 * link.h's finish: the link proves the mailbox, as the backend's magic link does, and like it
 * waits out the account's throttle (lockout.h): the link is then kept for the user to come
 * back with, and the browser goes back to the app with temporarily_unavailable.
 */
static int link_finish(struct store_txn *t, json_t *rec, struct link_view *v, void *arg)
{
	struct redirect_link_state *s = arg;
	const char *idtype = json_string_value(json_object_get(rec, "idtype")) ?: "";
	const char *ident = json_string_value(json_object_get(rec, "identifier")) ?: "";
	const char *uri =
	    json_string_value(json_object_get(json_object_get(rec, "redirect"), "redirect_uri"));
	struct login_attempt a = {.c = s->c, .idtype = idtype, .identifier = ident};
	struct lockout l = {.rec = NULL};
	int rc;

	if (uri == NULL)
		return STORE_ERR;
	rc = login_throttle_txn(t, &a, &l);
	lockout_done(&l);
	if (rc == ERR_LOCKED)
		rc = refuse(s->c, s->L, uri, "temporarily_unavailable",
			    "Too many failed attempts: try again later", ERR_LOCKED);
	else if (rc == ERR_NONE && (rc = ratelimit_auth_success_txn(t, s->c, idtype, ident)) == 0 &&
		 (rc = ratelimit_release_txn(t, json_object_get(rec, "limits"))) == 0)
		rc = land_txn(t, s->c, rec, "eml", "email", "email", s->L);
	free(v->redirect);
	v->redirect = s->L->location ? strdup(s->L->location) : NULL;
	if (v->redirect == NULL && rc >= 0)
		rc = STORE_ERR;
	return rc;
}

int redirect_link(struct ctx *c, const char *token, int consume, struct link_view *v,
		  struct redirect_landing *L)
{
	struct redirect_link_state s = {c, L};
	struct link_finish f = {link_finish, &s};
	int rc = link_open_redirect(c, token, v, &f, consume);

	if (consume)
		audit_login("redirect_link", store_outcome(rc, ERR_UNAVAILABLE), NULL, NULL, NULL,
			    NULL);

	/* A refused login still sends the browser back, with its error. */
	if (store_refused(rc) >= 0 && v->redirect != NULL) {
		free(L->session_id);
		L->session_id = NULL;
		return 0;
	}
	return rc;
}

void redirect_landing_free(struct redirect_landing *L)
{
	free(L->location);
	crypto_free_str(L->session_id);
	L->location = L->session_id = NULL;
}

/* ---- logout --------------------------------------------------------------------------------- */

int redirect_logout(struct ctx *c, const char *access_token, size_t *count)
{
	json_t *claims = NULL, *page;
	const char *sub, *client_id, *iss;
	char after[SESSION_HANDLE_LEN + 1] = "";
	int rc = ERR_INVALID_TOKEN, more = 1;

	*count = 0;
	if (strlen(access_token) > 8192 ||
	    jwt_verify(access_token, (jwk_t *const *)c->keys->published, c->keys->npublished,
		       "at+jwt", &claims) != 1)
		return ERR_INVALID_TOKEN;
	iss = json_string_value(json_object_get(claims, "iss"));
	sub = json_string_value(json_object_get(claims, "sub"));
	client_id = json_string_value(json_object_get(claims, "client_id"));
	if (iss == NULL || strcmp(iss, c->conf->issuer) != 0 || sub == NULL || client_id == NULL ||
	    !json_is_integer(json_object_get(claims, "exp")) ||
	    json_integer_value(json_object_get(claims, "exp")) <= (json_int_t)time(NULL))
		goto out;
	/* The count first: session_end_all ends them in bounded batches without counting. */
	while (more) {
		size_t n;
		page = session_list(c, sub, client_id, after[0] ? after : NULL, 100, &more);
		if (page == NULL) {
			rc = ERR_UNAVAILABLE;
			goto out;
		}
		n = json_array_size(page);
		*count += n;
		if (n > 0)
			snprintf(after, sizeof(after), "%s",
				 json_string_value(
				     json_object_get(json_array_get(page, n - 1), "session_id"))
				     ?: "");
		json_decref(page);
		if (n == 0)
			break;
	}
	rc = session_end_all(c, sub, client_id);
	audit_event("logout", rc == ERR_NONE, audit_reason(rc), "method", "redirect", "user_id",
		    sub, "client_id", client_id, (char *)NULL);
out:
	json_decref(claims);
	return rc;
}
