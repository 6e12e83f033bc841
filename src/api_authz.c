/*
 * The authorization endpoint, GET and POST {public_base_url}/oidc/auth (OpenID Connect Core
 * 3.1.2). A request that names no trustworthy redirect (unknown client_id, missing or
 * unregistered redirect_uri) gets a 400 page here and never a redirect; every other error is
 * a 303 to redirect_uri?error=..&error_description=..&state=..&iss=.. (RFC 6749 4.1.2.1,
 * RFC 9207). A browser whose login session satisfies the request gets its code at once;
 * prompt=none without one gets login_required; any other goes to the hosted login page
 * (api_hosted.c) with its request parked as a flow tied to the browser by the flow cookie.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "crypto.h"
#include "log.h"

static int known_param(const char *name)
{
	for (int i = 0; authz_param_names[i] != NULL; i++)
		if (strcmp(authz_param_names[i], name) == 0)
			return 1;
	return 0;
}

/*
 * The request's parameters (the query of a GET, the form of a POST) that otlogin reads, as a
 * new object of strings; NULL when one is repeated or malformed (RFC 6749 3.1).
 */
static json_t *collect(struct api_call *call)
{
	json_t *out = json_object();
	const char *p = call->req->query;

	if (out == NULL)
		return NULL;
	if (strcmp(call->req->method, "POST") == 0) {
		for (size_t i = 0; i < call->req->nform; i++)
			if (known_param(call->req->form[i].name))
				json_object_set_new(out, call->req->form[i].name,
						    json_string(call->req->form[i].value));
		return out;
	}
	while (p != NULL && *p) {
		const char *amp = strchr(p, '&'), *eq;
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);
		char *name, *value;

		eq = memchr(p, '=', seg);
		name = req_percent_decode(p, eq ? (size_t)(eq - p) : seg, 1);
		value = eq ? req_percent_decode(eq + 1, seg - (size_t)(eq + 1 - p), 1) : strdup("");
		if (name == NULL || value == NULL ||
		    (known_param(name) && json_object_get(out, name) != NULL) ||
		    (known_param(name) && json_object_set_new(out, name, json_string(value)) < 0)) {
			free(name);
			free(value);
			json_decref(out);
			return NULL;
		}
		free(name);
		free(value);
		p = amp ? amp + 1 : NULL;
	}
	return out;
}

static void redirect(struct api_call *call, const char *location)
{
	resp_header(call->resp, "Location", "%s", location);
	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	resp_json(call->resp, 303, NULL);
}

static void redirect_error(struct api_call *call, json_t *params, const char *error,
			   const char *description)
{
	char *location = authz_error_location(call->c, params, error, description);

	if (location != NULL)
		redirect(call, location);
	else
		api_hosted_error_page(call, 400, NULL, NULL, "the redirect is too long");
	free(location);
}

void api_authorize(struct api_call *call)
{
	json_t *params = collect(call);
	struct authz_req r;
	char *session = NULL, *location = NULL, *flow_id = NULL;
	int rc;

	memset(&r, 0, sizeof(r));
	if (params == NULL) {
		api_hosted_error_page(call, 400, NULL, NULL,
				      "a parameter is repeated or malformed");
		return;
	}
	if ((rc = authz_check(call->c, params, &r)) < 0) {
		api_fail(call, rc, NULL);
		goto out;
	}
	if (r.verdict == AUTHZ_ERROR_PAGE) {
		log_info("authorization request refused with a page: %s", r.description);
		api_hosted_error_page(call, 400, r.client, NULL, r.description);
		goto out;
	}
	if (r.verdict == AUTHZ_ERROR_REDIRECT) {
		log_info("authorization request refused: %s: %s", r.error, r.description);
		redirect_error(call, params, r.error, r.description);
		goto out;
	}
	session = api_login_cookie(call);
	rc = authz_sso(call->c, &r, session, &location);
	if (rc == ERR_NONE) {
		redirect(call, location);
	} else if (rc != ERR_SESSION_NOT_FOUND) {
		api_fail(call, rc, NULL);
	} else if (r.prompt_none) {
		redirect_error(call, params, "login_required", "The user is not signed in");
	} else if ((rc = authz_flow_start(call->c, params, &flow_id)) != ERR_NONE) {
		api_fail(call, rc, NULL);
	} else {
		api_set_flow_cookie(call, flow_id);
		resp_header(call->resp, "Location", "%s/oidc/login",
			    call->c->conf->public_base_url);
		resp_json(call->resp, 303, NULL);
	}
out:
	free(location);
	crypto_free_str(session);
	crypto_free_str(flow_id);
	authz_req_free(&r);
	json_decref(params);
}
