/*
 * The OAuth/OIDC endpoints: token and revocation (each a pure parse step, api_parse.h, and an
 * action step), JWKS and discovery.
 */
#include "audit.h"
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "authcode.h"
#include "client.h"
#include "crypto.h"
#include "jwk.h"
#include "log.h"
#include "token.h"

void api_client_auth_free(struct api_client_auth *a)
{
	free(a->basic_user);
	crypto_free_str(a->basic_pass);
	a->basic_user = a->basic_pass = NULL;
}

/*
 * The credentials of a token-endpoint request: HTTP Basic (client_secret_basic) or form fields
 * (client_secret_post), not both; or, for a public client (token_endpoint_auth_method none),
 * the form's client_id alone (a->secret NULL). Returns 0, or -1 with *no.
 */
static int parse_client_auth(const struct req *req, struct api_client_auth *a,
			     struct api_refusal *no)
{
	const char *form_id = req_form(req, "client_id");
	const char *form_secret = req_form(req, "client_secret");
	int basic = req_basic(req, &a->basic_user, &a->basic_pass);

	if (basic < 0 || (basic == 1 && form_secret != NULL) ||
	    (basic == 1 && form_id != NULL && strcmp(form_id, a->basic_user) != 0))
		return api_refuse_oauth(no, 400, "invalid_request",
					"Use exactly one client authentication method");
	if (basic == 0 && form_id == NULL)
		return api_refuse_oauth(no, 401, "invalid_client", "Client authentication failed");
	a->client_id = basic ? a->basic_user : form_id;
	a->secret = basic ? a->basic_pass : form_secret;
	return 0;
}

/* A public client, named without a secret: 1 with *client (new reference), 0 or < 0. */
static int public_client(struct ctx *c, const char *client_id, json_t **client)
{
	int rc = client_get(c, client_id, client);

	if (rc == STORE_FOUND && !client_is_public(*client)) {
		json_decref(*client);
		*client = NULL;
		rc = 0;
	}
	return rc;
}

/* Authenticate the client (or name a public one). Returns 1 with *client, or 0 after answering. */
static int token_client(struct api_call *call, const struct api_client_auth *a, json_t **client)
{
	unsigned retry_after = 0;
	/* The caller is the backend itself, so the HTTP peer is the address to throttle. */
	int rc = a->secret == NULL
		     ? public_client(call->c, a->client_id, client)
		     : client_check_secret(call->c, a->client_id, a->secret, call->req->remote_addr,
					   client, &retry_after);

	/* The client_id claimed (not a secret), so that a failure names whom it was tried on. */
	log_set_client(a->client_id);
	audit_set_client(a->client_id);

	if (rc < 0) {
		api_fail(call, rc, NULL);
		rc = 0;
	} else if (rc == CLIENT_THROTTLED) {
		log_info("client authentication failed during a delay after repeated failures");
		resp_header(call->resp, "Retry-After", "%u", retry_after ? retry_after : 1);
		resp_oauth_error(call->resp, 429, "slow_down",
				 "Too many wrong client secrets from this address; retry later");
		rc = 0;
	} else if (rc == 0) {
		log_info("client authentication failed");
		resp_oauth_error(call->resp, 401, "invalid_client", "Client authentication failed");
	}
	return rc == 1;
}

int api_token_parse(const struct req *req, struct api_token_req *out, struct api_refusal *no)
{
	const char *grant = req_form(req, "grant_type");

	memset(out, 0, sizeof(*out));
	if (grant == NULL)
		return api_refuse_oauth(no, 400, "invalid_request", "grant_type is required");
	if (strcmp(grant, "client_credentials") == 0)
		out->grant = API_GRANT_CLIENT_CREDENTIALS;
	else if (strcmp(grant, "refresh_token") == 0)
		out->grant = API_GRANT_REFRESH_TOKEN;
	else if (strcmp(grant, "authorization_code") == 0)
		out->grant = API_GRANT_AUTHORIZATION_CODE;
	else
		return api_refuse_oauth(no, 400, "unsupported_grant_type", NULL);
	if (parse_client_auth(req, &out->auth, no) < 0)
		return -1;
	/* Each grant gets its own fields only; another grant's stay NULL. */
	switch (out->grant) {
	case API_GRANT_CLIENT_CREDENTIALS:
		out->resource = req_form(req, "resource");
		break;
	case API_GRANT_REFRESH_TOKEN:
		out->refresh_token = req_form(req, "refresh_token");
		break;
	case API_GRANT_AUTHORIZATION_CODE:
		out->code = req_form(req, "code");
		out->redirect_uri = req_form(req, "redirect_uri");
		out->code_verifier = req_form(req, "code_verifier");
		break;
	}
	return 0;
}

static void client_credentials(struct api_call *call, json_t *client, const char *resource)
{
	char *token;

	if (resource != NULL && !client_lists(client, "resources", resource)) {
		resp_oauth_error(call->resp, 400, "invalid_target",
				 "resource is not registered for this client");
		return;
	}
	token = client_token_issue(call->c, client, resource ? resource : call->c->conf->issuer);
	if (token == NULL) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	resp_json(call->resp, 200,
		  json_pack("{s:s, s:s, s:I, s:s}", "access_token", token, "token_type", "Bearer",
			    "expires_in", (json_int_t)call->c->conf->access_ttl, "scope", ""));
	free(token);
}

static void refresh_grant(struct api_call *call, json_t *client, const char *refresh)
{
	json_t *tokens;
	int rc;

	if (refresh == NULL) {
		resp_oauth_error(call->resp, 400, "invalid_request", "refresh_token is required");
		return;
	}
	rc = token_refresh(call->c, client, refresh, &tokens);
	if (rc == ERR_NONE)
		resp_json(call->resp, 200, tokens);
	else if (rc == ERR_BAD_CREDENTIALS)
		resp_oauth_error(call->resp, 400, "invalid_grant", "Invalid refresh token");
	else
		api_fail(call, rc, NULL);
}

static void code_grant(struct api_call *call, json_t *client, const struct api_token_req *r)
{
	struct authcode_exchange x = {client, r->code, r->redirect_uri, r->code_verifier};
	const char *why = NULL;
	json_t *tokens;
	int rc;

	if (r->code == NULL) {
		resp_oauth_error(call->resp, 400, "invalid_request", "code is required");
		return;
	}
	rc = authcode_exchange(call->c, &x, &tokens, &why);
	if (rc == ERR_NONE) {
		resp_json(call->resp, 200, tokens);
		return;
	}
	if (rc == ERR_SESSION_NOT_FOUND)
		why = "The login session of the code has ended";
	else if (rc == ERR_USER_NOT_ACTIVE)
		why = "The user is not active";
	else if (rc != ERR_BAD_CREDENTIALS) {
		api_fail(call, rc, NULL);
		return;
	}
	log_info("authorization code exchange refused: %s", why);
	resp_oauth_error(call->resp, 400, "invalid_grant", why);
}

void api_token(struct api_call *call)
{
	struct api_token_req t;
	struct api_refusal no;
	json_t *client = NULL;
	int ok;

	if (api_token_parse(call->req, &t, &no) < 0) {
		api_refused(call, &no);
		api_client_auth_free(&t.auth);
		return;
	}
	ok = token_client(call, &t.auth, &client);
	api_client_auth_free(&t.auth);
	if (!ok)
		return;
	if (t.grant == API_GRANT_AUTHORIZATION_CODE)
		code_grant(call, client, &t);
	else if (t.grant == API_GRANT_CLIENT_CREDENTIALS && client_is_public(client))
		/* A public client has no credentials of its own to be granted tokens for. */
		resp_oauth_error(call->resp, 400, "unauthorized_client",
				 "A public client cannot use client_credentials");
	else if (t.grant == API_GRANT_CLIENT_CREDENTIALS)
		client_credentials(call, client, t.resource);
	else
		refresh_grant(call, client, t.refresh_token);
	json_decref(client);
}

int api_revocation_parse(const struct req *req, struct api_revocation_req *out,
			 struct api_refusal *no)
{
	memset(out, 0, sizeof(*out));
	if (parse_client_auth(req, &out->auth, no) < 0)
		return -1;
	out->token = req_form(req, "token");
	return 0;
}

void api_revocation(struct api_call *call)
{
	struct api_revocation_req v;
	struct api_refusal no;
	json_t *client = NULL;
	int ok, rc = ERR_NONE;

	if (api_revocation_parse(call->req, &v, &no) < 0) {
		api_refused(call, &no);
		api_client_auth_free(&v.auth);
		return;
	}
	ok = token_client(call, &v.auth, &client);
	api_client_auth_free(&v.auth);
	if (!ok)
		return;
	if (v.token == NULL) {
		resp_oauth_error(call->resp, 400, "invalid_request", "token is required");
		json_decref(client);
		return;
	}
	/*
	 * RFC 7009: 200 whatever the token was. Refresh tokens end their session; access tokens
	 * are short-lived JWTs verified without a lookup, so revoking one has no effect.
	 */
	if (strlen(v.token) <= 128)
		rc = token_revoke(call->c, client, v.token);
	if (rc == ERR_NONE)
		resp_json(call->resp, 200, NULL);
	else
		api_fail(call, rc, NULL);
	json_decref(client);
}

void api_jwks(struct api_call *call)
{
	json_t *keys = json_array();

	for (size_t i = 0; i < call->c->keys->npublished; i++)
		json_array_append_new(keys, jwk_public_json(call->c->keys->published[i]));
	resp_json(call->resp, 200, json_pack("{s:o}", "keys", keys));
}

/* The access token of a UserInfo request: the Bearer header, or a POST form's access_token. */
static const char *userinfo_token(struct api_call *call)
{
	const char *t = req_bearer(call->req);

	if (t == NULL && strcmp(call->req->method, "POST") == 0 &&
	    req_content_type_is(call->req, "application/x-www-form-urlencoded") &&
	    req_parse_form(call->req) == 0)
		t = req_form(call->req, "access_token");
	return t;
}

void api_userinfo(struct api_call *call)
{
	json_t *at = NULL, *info = NULL;
	int rc = ERR_BAD_CREDENTIALS;

	if (token_verify_access(call->c, userinfo_token(call), &at) == 1)
		rc = token_userinfo(call->c, at, &info);
	json_decref(at);
	if (rc == ERR_NONE) {
		resp_header(call->resp, "Cache-Control", "no-store");
		resp_json(call->resp, 200, info);
	} else if (rc == ERR_BAD_CREDENTIALS) {
		/* RFC 6750 3.1: the Bearer challenge, not the token endpoint's Basic one. */
		resp_header(call->resp, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		resp_json(call->resp, 401, json_pack("{s:s}", "error", "invalid_token"));
	} else {
		api_fail(call, rc, NULL);
	}
}

static json_t *url(const char *base, const char *path)
{
	char *s;
	json_t *v;
	if (asprintf(&s, "%s%s", base, path) < 0)
		return NULL;
	v = json_string(s);
	free(s);
	return v;
}

/* The algorithms of the published keys, each once. New reference. */
static json_t *signing_algs(const struct keyring *kr)
{
	json_t *algs = json_array(), *v;
	for (size_t i = 0; i < kr->npublished; i++) {
		const char *alg = jwk_alg(kr->published[i]);
		size_t j;
		int seen = 0;
		json_array_foreach(algs, j, v) seen |= strcmp(json_string_value(v), alg) == 0;
		if (!seen)
			json_array_append_new(algs, json_string(alg));
	}
	return algs;
}

/* A new array of the NULL-terminated strings. */
static json_t *strings(const char *const *v)
{
	json_t *a = json_array();

	while (*v)
		json_array_append_new(a, json_string(*v++));
	return a;
}

void api_discovery(struct api_call *call)
{
	static const char *const grants[] = {"authorization_code", "client_credentials",
					     "refresh_token", NULL};
	static const char *const auth_methods[] = {"client_secret_basic", "client_secret_post",
						   "none", NULL};
	static const char *const scopes[] = {"openid",	"email",	  "phone",
					     "profile", "offline_access", NULL};
	static const char *const claims[] = {"iss",
					     "sub",
					     "aud",
					     "exp",
					     "iat",
					     "auth_time",
					     "nonce",
					     "acr",
					     "amr",
					     "sid",
					     "azp",
					     "at_hash",
					     "email",
					     "email_verified",
					     "phone_number",
					     "phone_number_verified",
					     "name",
					     "given_name",
					     "family_name",
					     "preferred_username",
					     "username",
					     "roles",
					     NULL};
	static const char *const prompts[] = {"none", "login", "consent", NULL};
	static const char *const modes[] = {"query", "form_post", NULL};
	const char *base = call->c->conf->public_base_url;
	json_t *doc;

	doc = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "issuer", call->c->conf->issuer,
			"authorization_endpoint", url(base, "/oidc/auth"), "token_endpoint",
			url(base, "/oidc/token"), "userinfo_endpoint", url(base, "/oidc/me"),
			"jwks_uri", url(base, "/oidc/jwks"), "end_session_endpoint",
			url(base, "/oidc/session/end"), "revocation_endpoint",
			url(base, "/oidc/token/revocation"),
			"pushed_authorization_request_endpoint", url(base, "/oidc/request"));
	if (doc == NULL) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	json_object_set_new(doc, "response_types_supported", json_pack("[s]", "code"));
	json_object_set_new(doc, "response_modes_supported", strings(modes));
	json_object_set_new(doc, "grant_types_supported", strings(grants));
	json_object_set_new(doc, "subject_types_supported", json_pack("[s]", "public"));
	json_object_set_new(doc, "scopes_supported", strings(scopes));
	json_object_set_new(doc, "claims_supported", strings(claims));
	json_object_set_new(doc, "claims_parameter_supported", json_true());
	json_object_set_new(doc, "acr_values_supported", json_pack("[s]", "mfa"));
	json_object_set_new(doc, "code_challenge_methods_supported", json_pack("[s]", "S256"));
	json_object_set_new(doc, "token_endpoint_auth_methods_supported", strings(auth_methods));
	json_object_set_new(doc, "revocation_endpoint_auth_methods_supported",
			    strings(auth_methods));
	json_object_set_new(doc, "prompt_values_supported", strings(prompts));
	json_object_set_new(doc, "id_token_signing_alg_values_supported",
			    signing_algs(call->c->keys));
	json_object_set_new(doc, "authorization_response_iss_parameter_supported", json_true());
	json_object_set_new(doc, "request_parameter_supported", json_false());
	json_object_set_new(doc, "request_uri_parameter_supported", json_false());
	json_object_set_new(doc, "require_pushed_authorization_requests", json_false());
	resp_json(call->resp, 200, doc);
}

/* Shared with the pushed authorization request endpoint (api_authz.c). */
int api_parse_client_auth(const struct req *req, struct api_client_auth *a, struct api_refusal *no)
{
	return parse_client_auth(req, a, no);
}

int api_authenticate_client(struct api_call *call, const struct api_client_auth *a, json_t **client)
{
	return token_client(call, a, client);
}
