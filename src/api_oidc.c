/*
 * The OAuth/OIDC endpoints: token and revocation (each a pure parse step, api_parse.h, and an
 * action step), JWKS and discovery.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

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
 * (client_secret_post), not both. Returns 0, or -1 with *no.
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
	if (basic == 0 && (form_id == NULL || form_secret == NULL))
		return api_refuse_oauth(no, 401, "invalid_client", "Client authentication failed");
	a->client_id = basic ? a->basic_user : form_id;
	a->secret = basic ? a->basic_pass : form_secret;
	return 0;
}

/* Check the client's secret. Returns 1 with *client, or 0 after answering. */
static int token_client(struct api_call *call, const struct api_client_auth *a, json_t **client)
{
	unsigned retry_after = 0;
	/* The caller is the backend itself, so the HTTP peer is the address to throttle. */
	int rc = client_check_secret(call->c, a->client_id, a->secret, call->req->remote_addr,
				     client, &retry_after);

	/* The client_id claimed (not a secret), so that a failure names whom it was tried on. */
	log_set_client(a->client_id);

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
	else
		return api_refuse_oauth(no, 400, "unsupported_grant_type", NULL);
	if (parse_client_auth(req, &out->auth, no) < 0)
		return -1;
	if (out->grant == API_GRANT_CLIENT_CREDENTIALS)
		out->resource = req_form(req, "resource");
	else
		out->refresh_token = req_form(req, "refresh_token");
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
	if (t.grant == API_GRANT_CLIENT_CREDENTIALS)
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

void api_discovery(struct api_call *call)
{
	const char *base = call->c->conf->public_base_url;
	json_t *doc;

	doc = json_pack(
	    "{s:s, s:o, s:o, s:o, s:o, s:[ss], s:[s], s:[s], s:[ss], s:[sssssssssssss]}", "issuer",
	    call->c->conf->issuer, "jwks_uri", url(base, "/oidc/jwks"), "token_endpoint",
	    url(base, "/oidc/token"), "revocation_endpoint", url(base, "/oidc/token/revocation"),
	    "id_token_signing_alg_values_supported", signing_algs(call->c->keys),
	    "grant_types_supported", "client_credentials", "refresh_token",
	    "response_types_supported", "token", "subject_types_supported", "public",
	    "token_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post",
	    "claims_supported", "iss", "sub", "aud", "exp", "iat", "auth_time", "amr", "sid",
	    "email", "email_verified", "phone_number", "phone_number_verified", "roles");
	resp_json(call->resp, 200, doc);
}
