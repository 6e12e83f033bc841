#include "authz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authcode.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "jsonio.h"
#include "log.h"
#include "org.h"
#include "ratelimit.h"
#include "resp.h" /* RESP_HEADER_MAX: a redirect must fit its Location header */
#include "sbuf.h"
#include "session.h"
#include "user.h"

#define FLOW_ID_BYTES 32

const char *const authz_param_names[] = {"client_id",
					 "redirect_uri",
					 "response_type",
					 "response_mode",
					 "scope",
					 "state",
					 "nonce",
					 "code_challenge",
					 "code_challenge_method",
					 "prompt",
					 "max_age",
					 "login_hint",
					 "acr_values",
					 "claims",
					 "resource",
					 "org_id",
					 "ui_locales",
					 "request_uri",
					 "display",
					 NULL};

/* The scopes otlogin grants; others are dropped from the grant, as RFC 6749 3.3 allows. */
static const char *const known_scopes[] = {"openid",  "email",		"phone",
					   "profile", "offline_access", NULL};

static const char *param(json_t *params, const char *name)
{
	return json_string_value(json_object_get(params, name));
}

/* 1 when the space-separated list holds word. */
static int list_has(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list ? list : ""; *p;) {
		size_t len = strcspn(p, " ");
		if (len == n && strncmp(p, word, n) == 0)
			return 1;
		p += len;
		p += strspn(p, " ");
	}
	return 0;
}

static int unreserved(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("-._~", ch) != NULL);
}

/* Append "&name=value" (or "?name=" first), value percent-encoded. */
static void add_param(struct sbuf *b, int *first, const char *name, const char *value)
{
	sbuf_puts(b, *first ? "" : "&");
	*first = 0;
	sbuf_puts(b, name);
	sbuf_puts(b, "=");
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (unreserved(*p))
			sbuf_add(b, (const char *)p, 1);
		else
			sbuf_printf(b, "%%%02X", *p);
	}
}

/*
 * redirect_uri plus the pairs (name, value; a NULL value is left out; the list ends with a
 * NULL name), state and iss: a new string, or NULL when it would not fit a Location header.
 */
static char *redirect_with(struct ctx *c, json_t *params, const char *const *pairs)
{
	const char *uri = param(params, "redirect_uri"), *state = param(params, "state");
	struct sbuf b = {0};
	int first = 0;
	char *out;

	if (uri == NULL)
		return NULL;
	sbuf_puts(&b, uri);
	sbuf_puts(&b, strchr(uri, '?') ? "&" : "?");
	first = 1;
	for (; pairs[0] != NULL; pairs += 2)
		if (pairs[1] != NULL)
			add_param(&b, &first, pairs[0], pairs[1]);
	if (state != NULL)
		add_param(&b, &first, "state", state);
	add_param(&b, &first, "iss", c->conf->issuer);
	out = sbuf_take(&b);
	if (out != NULL && strlen(out) > RESP_HEADER_MAX) {
		log_warn("an authorization redirect is too long for the Location header");
		free(out);
		out = NULL;
	}
	return out;
}

char *authz_error_location(struct ctx *c, json_t *params, const char *error,
			   const char *description)
{
	const char *pairs[] = {"error", error, "error_description", description, NULL};
	return redirect_with(c, params, pairs);
}

/* Judge r refused: verdict v, the OAuth error and its public description. Returns 0. */
static int refuse(struct authz_req *r, enum authz_verdict v, const char *error,
		  const char *description)
{
	r->verdict = v;
	r->error = error;
	snprintf(r->description, sizeof(r->description), "%s", description);
	return 0;
}

/* A PKCE S256 challenge: the base64url SHA-256 of a verifier, 43 characters. */
static int challenge_ok(const char *s)
{
	return strlen(s) == 43 &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43;
}

/* prompt: none alone, or any of login, consent, select_account. 0, or -1 when invalid. */
static int parse_prompt(struct authz_req *r, const char *prompt)
{
	const char *p = prompt ? prompt : "";

	while (*p) {
		size_t len = strcspn(p, " ");
		if (len == 4 && strncmp(p, "none", 4) == 0)
			r->prompt_none = 1;
		else if (len == 5 && strncmp(p, "login", 5) == 0)
			r->prompt_login = 1;
		else if (!((len == 7 && strncmp(p, "consent", 7) == 0) ||
			   (len == 14 && strncmp(p, "select_account", 14) == 0)))
			return -1;
		p += len;
		p += strspn(p, " ");
	}
	/* OIDC Core 3.1.2.1: none with any other value is an error. */
	return r->prompt_none && strcmp(prompt, "none") != 0 ? -1 : 0;
}

static void check_params(struct ctx *c, struct authz_req *r)
{
	json_t *p = r->params;
	const char *v, *ch, *method;
	char *end;
	json_t *claims;

	v = param(p, "response_type");
	if (v == NULL)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "response_type is required");
	if (strcmp(v, "code") != 0)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "unsupported_response_type",
				    "Only response_type=code is supported");
	v = param(p, "response_mode");
	if (v != NULL && strcmp(v, "query") != 0 && strcmp(v, "form_post") != 0)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "response_mode must be query or form_post");
	if (!list_has(param(p, "scope"), "openid"))
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_scope",
				    "scope must include openid");
	if (parse_prompt(r, param(p, "prompt")) < 0)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "prompt is not valid");
	v = param(p, "max_age");
	r->max_age = -1;
	if (v != NULL) {
		long n = strtol(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || n < 0 || n > 100000000)
			return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
					    "max_age must be a number of seconds");
		r->max_age = n;
	}
	r->want_mfa = list_has(param(p, "acr_values"), "mfa");
	ch = param(p, "code_challenge");
	method = param(p, "code_challenge_method");
	if (ch == NULL && method != NULL)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "code_challenge_method without code_challenge");
	if (ch != NULL && (method == NULL || strcmp(method, "S256") != 0))
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "code_challenge_method must be S256");
	if (ch != NULL && !challenge_ok(ch))
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "code_challenge is not a S256 challenge");
	if (ch == NULL && client_requires_pkce(r->client))
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "This client requires PKCE: code_challenge is required");
	v = param(p, "claims");
	if (v != NULL) {
		claims = json_loads(v, JSON_REJECT_DUPLICATES, NULL);
		if (!json_is_object(claims)) {
			json_decref(claims);
			return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
					    "claims must be a JSON object");
		}
		json_decref(claims);
	}
	v = param(p, "resource");
	if (v != NULL && !client_lists(r->client, "resources", v))
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_target",
				    "resource is not registered for this client");
	/* What must fit the code redirect must fit an error redirect already. */
	if ((v = param(p, "state")) != NULL && strlen(v) > 512)
		return (void)refuse(r, AUTHZ_ERROR_PAGE, "invalid_request", "state is too long");
	if ((v = param(p, "nonce")) != NULL && strlen(v) > 512)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "nonce is too long");
	if ((v = param(p, "login_hint")) != NULL && strlen(v) > 320)
		return (void)refuse(r, AUTHZ_ERROR_REDIRECT, "invalid_request",
				    "login_hint is too long");
	r->verdict = AUTHZ_OK;
}

int authz_check(struct ctx *c, json_t *params, struct authz_req *r)
{
	const char *client_id = param(params, "client_id"), *uri = param(params, "redirect_uri");
	char *probe;
	int rc;

	memset(r, 0, sizeof(*r));
	r->params = json_incref(params);
	r->max_age = -1;
	if (client_id == NULL)
		return refuse(r, AUTHZ_ERROR_PAGE, "invalid_request", "client_id is missing");
	rc = client_get(c, client_id, &r->client);
	if (rc < 0)
		return rc;
	if (rc == STORE_NOTFOUND)
		return refuse(r, AUTHZ_ERROR_PAGE, "invalid_client", "client_id is not known");
	/* Exact match only: no case folding, no prefix, no extra query or fragment. */
	if (uri == NULL)
		return refuse(r, AUTHZ_ERROR_PAGE, "invalid_request", "redirect_uri is missing");
	if (!client_lists(r->client, "redirect_uris", uri))
		return refuse(r, AUTHZ_ERROR_PAGE, "invalid_request",
			      "redirect_uri is not registered for this client");
	/* An error redirect that cannot be written cannot be sent: show the page instead. */
	probe = authz_error_location(c, params, "invalid_request", NULL);
	if (probe == NULL)
		return refuse(r, AUTHZ_ERROR_PAGE, "invalid_request",
			      "redirect_uri and state are too long for a redirect");
	free(probe);
	check_params(c, r);
	return 0;
}

void authz_req_free(struct authz_req *r)
{
	json_decref(r->params);
	json_decref(r->client);
	r->params = r->client = NULL;
}

int authz_session_fits(json_t *session, long max_age, int want_mfa, long now)
{
	json_int_t auth_time = json_integer_value(json_object_get(session, "auth_time"));
	json_t *amr = json_object_get(session, "amr"), *v;
	size_t i;
	int mfa = 0;

	/* max_age=0 asks for a login now, as prompt=login does (OIDC Core 3.1.2.1). */
	if (max_age >= 0 && now - auth_time >= max_age)
		return 0;
	json_array_foreach(amr, i, v) mfa |= strcmp(json_string_value(v) ?: "", "mfa") == 0;
	return !want_mfa || mfa;
}

int authz_user_fits(json_t *params, json_t *user)
{
	const char *org_id = param(params, "org_id");
	json_t *roles = NULL;
	int ok;

	if (org_id == NULL)
		return 1;
	ok = org_member_roles(user, org_id, &roles);
	json_decref(roles);
	return ok;
}

void authz_params_options(json_t *params, long *max_age, int *want_mfa)
{
	const char *v = param(params, "max_age");

	*max_age = v ? strtol(v, NULL, 10) : -1;
	*want_mfa = list_has(param(params, "acr_values"), "mfa");
}

/* The granted scopes of a request: the known ones it asks for (new string). */
static char *granted_scopes(const char *scope)
{
	struct sbuf b = {0};

	for (int i = 0; known_scopes[i] != NULL; i++) {
		if (list_has(scope, known_scopes[i])) {
			if (b.len)
				sbuf_puts(&b, " ");
			sbuf_puts(&b, known_scopes[i]);
		}
	}
	return sbuf_take(&b);
}

int authz_issue_txn(struct store_txn *t, struct ctx *c, json_t *params, const char *session_key,
		    json_t *session, char **location)
{
	char *scope = granted_scopes(param(params, "scope")), *code = NULL;
	const char *cv = param(params, "claims");
	json_t *claims = cv ? json_loads(cv, 0, NULL) : NULL;
	long max_age;
	int want_mfa, rc;
	struct authcode_grant g = {
	    .client_id = param(params, "client_id"),
	    .redirect_uri = param(params, "redirect_uri"),
	    .session_key = session_key,
	    .code_challenge = param(params, "code_challenge"),
	    .nonce = param(params, "nonce"),
	    .scope = scope,
	    .resource = param(params, "resource"),
	    .org_id = param(params, "org_id"),
	    .claims = json_is_object(claims) ? claims : NULL,
	};

	*location = NULL;
	authz_params_options(params, &max_age, &want_mfa);
	if (want_mfa && authz_session_fits(session, -1, 1, 0))
		g.acr = "mfa";
	g.refresh = list_has(scope, "offline_access");
	rc = scope ? authcode_issue_txn(t, c, &g, &code) : STORE_ERR;
	if (rc == 0) {
		const char *pairs[] = {"code", code, NULL};
		*location = redirect_with(c, params, pairs);
		rc = *location ? 0 : STORE_ERR;
	}
	crypto_free_str(code);
	json_decref(claims);
	free(scope);
	return rc;
}

struct sso_state {
	struct ctx *c;
	const struct authz_req *r;
	const char *key;
	char *location;
};

static int sso_txn(struct store_txn *t, void *arg)
{
	struct sso_state *s = arg;
	json_t *session = NULL, *user = NULL;
	const char *user_id;
	int rc;

	free(s->location);
	s->location = NULL;
	rc = session_get_live_txn(t, s->key, &session);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	rc = ERR_SESSION_NOT_FOUND;
	if (!authz_session_fits(session, s->r->max_age, s->r->want_mfa, (long)time(NULL)))
		goto out;
	user_id = json_string_value(json_object_get(session, "user_id"));
	rc = user_find_txn(t, ID_USER_ID, user_id ? user_id : "", &user);
	if (rc <= 0) {
		rc = rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
		goto out;
	}
	if (!user_is_active(user)) {
		rc = ERR_SESSION_NOT_FOUND;
		goto out;
	}
	if (!authz_user_fits(s->r->params, user)) {
		rc = ERR_ORG_NOT_MEMBER;
		goto out;
	}
	rc = authz_issue_txn(t, s->c, s->r->params, s->key, session, &s->location);
out:
	json_decref(user);
	json_decref(session);
	/* Nothing was written on a refusal. */
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

int authz_sso(struct ctx *c, const struct authz_req *r, const char *session_id, char **location)
{
	char key[KEYRING_TAG_HEX];
	struct sso_state s = {c, r, key, NULL};
	int rc;

	*location = NULL;
	/* prompt=login asks for a new login whatever the session. */
	if (session_id == NULL || r->prompt_login || strlen(session_id) > 256 ||
	    keyring_tag(c->keys, key, "session", session_id, NULL) < 0)
		return ERR_SESSION_NOT_FOUND;
	rc = store_outcome(store_run(c->store, sso_txn, &s), ERR_UNAVAILABLE);
	if (rc == ERR_NONE)
		*location = s.location;
	else
		free(s.location);
	return rc;
}

int authz_flow_key(struct ctx *c, const char *flow_id, char key[KEYRING_TAG_HEX])
{
	if (flow_id == NULL || strlen(flow_id) > 128)
		return -1;
	return keyring_tag(c->keys, key, "authz-flow", flow_id, NULL);
}

int authz_flow_handle(struct ctx *c, const char *flow_id, char out[AUTHZ_FLOW_HANDLE + 1])
{
	char key[KEYRING_TAG_HEX];

	out[0] = '\0';
	if (authz_flow_key(c, flow_id, key) < 0)
		return -1;
	memcpy(out, key, AUTHZ_FLOW_HANDLE);
	out[AUTHZ_FLOW_HANDLE] = '\0';
	return 0;
}

struct start_state {
	struct ctx *c;
	json_t *rec;
	const char *key;
	const char *ip;
	unsigned wait;
};

static int start_txn(struct store_txn *t, void *arg)
{
	struct start_state *s = arg;
	char subject[64];
	int rc;

	s->wait = 0;
	ratelimit_ip_subject(s->ip, subject, sizeof(subject));
	rc = ratelimit_txn(t, s->c->keys, &s->c->conf->authorization_flows, 1, &s->wait, "flow",
			   subject, NULL);
	if (rc != 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_RATE_LIMITED);
	return store_put(t, TBL_CODES, s->key, strlen(s->key), s->rec);
}

int authz_flow_start(struct ctx *c, json_t *params, const char *ip, char **flow_id,
		     unsigned *retry_after)
{
	char key[KEYRING_TAG_HEX];
	struct start_state s = {c, NULL, key, ip, 0};
	int rc = ERR_INTERNAL;

	*flow_id = crypto_random_token(FLOW_ID_BYTES);
	if (*flow_id == NULL || authz_flow_key(c, *flow_id, key) < 0)
		goto out;
	s.rec =
	    json_pack("{s:O, s:s, s:I}", "params", params, "client_id", param(params, "client_id"),
		      "exp", (json_int_t)(time(NULL) + AUTHZ_FLOW_TTL));
	if (s.rec == NULL)
		goto out;
	rc = store_outcome(store_run(c->store, start_txn, &s), ERR_UNAVAILABLE);
	*retry_after = s.wait ? s.wait : 1;
out:
	json_decref(s.rec);
	if (rc != ERR_NONE) {
		crypto_free_str(*flow_id);
		*flow_id = NULL;
	}
	return rc;
}

#define PAR_ID_BYTES 32

struct par_state {
	const char *key;
	json_t *rec;
	const char *client_id;
};

static int par_put_txn(struct store_txn *t, void *arg)
{
	struct par_state *s = arg;
	return store_put(t, TBL_CODES, s->key, strlen(s->key), s->rec);
}

int authz_par_store(struct ctx *c, json_t *params, char **request_uri)
{
	char key[KEYRING_TAG_HEX], *id = crypto_random_token(PAR_ID_BYTES);
	struct par_state s = {key, NULL, NULL};
	int rc = ERR_INTERNAL;

	*request_uri = NULL;
	if (id == NULL || keyring_tag(c->keys, key, "authz-par", id, NULL) < 0)
		goto out;
	s.rec =
	    json_pack("{s:O, s:s, s:I}", "params", params, "client_id", param(params, "client_id"),
		      "exp", (json_int_t)(time(NULL) + AUTHZ_PAR_TTL));
	if (s.rec == NULL || asprintf(request_uri, AUTHZ_PAR_PREFIX "%s", id) < 0) {
		*request_uri = NULL;
		goto out;
	}
	rc = store_outcome(store_run(c->store, par_put_txn, &s), ERR_UNAVAILABLE);
	if (rc != ERR_NONE) {
		free(*request_uri);
		*request_uri = NULL;
	}
out:
	json_decref(s.rec);
	crypto_free_str(id);
	return rc;
}

static int par_take_txn(struct store_txn *t, void *arg)
{
	struct par_state *s = arg;
	json_t *rec;
	int rc = store_get(t, TBL_CODES, s->key, strlen(s->key), &rec, 1);

	if (rc <= 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_NOT_FOUND);
	/* Another client's request_uri is not consumed: it is simply not this client's. */
	if (strcmp(jsonio_str(rec, "client_id") ?: "", s->client_id) != 0) {
		json_decref(rec);
		return STORE_REFUSE(ERR_NOT_FOUND);
	}
	/* Single use: taken (or found expired) is gone. */
	rc = store_del(t, TBL_CODES, s->key, strlen(s->key));
	if (rc >= 0 && json_integer_value(json_object_get(rec, "exp")) > (json_int_t)time(NULL))
		s->rec = json_incref(json_object_get(rec, "params"));
	json_decref(rec);
	return rc < 0 ? rc : (s->rec ? ERR_NONE : ERR_NOT_FOUND);
}

int authz_par_take(struct ctx *c, const char *client_id, const char *request_uri, json_t **params)
{
	char key[KEYRING_TAG_HEX];
	struct par_state s = {key, NULL, client_id};
	size_t n = strlen(AUTHZ_PAR_PREFIX);
	int rc;

	*params = NULL;
	if (strncmp(request_uri, AUTHZ_PAR_PREFIX, n) != 0 || strlen(request_uri) > n + 128 ||
	    keyring_tag(c->keys, key, "authz-par", request_uri + n, NULL) < 0)
		return ERR_NOT_FOUND;
	rc = store_outcome(store_run(c->store, par_take_txn, &s), ERR_UNAVAILABLE);
	if (rc == ERR_NONE)
		*params = s.rec;
	else
		json_decref(s.rec);
	return rc;
}
