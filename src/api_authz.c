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
#include "b64url.h"
#include "client.h"
#include "crypto.h"
#include "html.h"
#include "link.h"
#include "log.h"
#include "sbuf.h"

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

/*
 * The form_post response (OAuth 2.0 Form Post Response Mode): a page whose form posts the
 * response's parameters to the redirect URI, submitted by a script allowed by its hash; with
 * scripts off the user presses the button.
 */
static void form_post(struct api_call *call, const char *uri, const char *query)
{
	static const char script[] = "document.forms[0].submit();";
	unsigned char hash[CRYPTO_HASH_LEN];
	char origin[300], *b64, *html;
	struct sbuf b = {0};

	sbuf_puts(&b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
		      "<title>Continue</title></head><body><form method=\"post\" action=\"");
	html_add(&b, uri, HTML_BREAK_SPACE);
	sbuf_puts(&b, "\">");
	for (const char *p = query; p != NULL && *p;) {
		const char *amp = strchr(p, '&'), *eq;
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);
		char *name, *value;

		eq = memchr(p, '=', seg);
		name = eq ? req_percent_decode(p, (size_t)(eq - p), 0) : NULL;
		value = eq ? req_percent_decode(eq + 1, seg - (size_t)(eq + 1 - p), 0) : NULL;
		if (name != NULL && value != NULL) {
			sbuf_puts(&b, "<input type=\"hidden\" name=\"");
			html_add(&b, name, HTML_BREAK_SPACE);
			sbuf_puts(&b, "\" value=\"");
			html_add(&b, value, HTML_BREAK_SPACE);
			sbuf_puts(&b, "\">");
		}
		free(name);
		crypto_free_str(value);
		p = amp ? amp + 1 : NULL;
	}
	sbuf_puts(&b,
		  "<noscript><button type=\"submit\">Continue</button></noscript></form><script>");
	sbuf_puts(&b, script);
	sbuf_puts(&b, "</script></body></html>");
	crypto_sha256(script, strlen(script), hash);
	b64 = b64_encode(hash, sizeof(hash));
	link_origin(uri, origin, sizeof(origin));
	resp_header(call->resp, "Content-Security-Policy",
		    "default-src 'none'; script-src 'sha256-%s'; form-action %s; "
		    "frame-ancestors 'none'; base-uri 'none'",
		    b64 ? b64 : "", origin);
	resp_header(call->resp, "X-Frame-Options", "DENY");
	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	html = sbuf_take(&b);
	if (html != NULL && b64 != NULL)
		resp_html(call->resp, 200, html);
	else
		resp_error(call->resp, ERR_INTERNAL, NULL);
	crypto_free_str(html);
	free(b64);
}

void api_authz_respond(struct api_call *call, json_t *params, const char *location)
{
	const char *mode = json_string_value(json_object_get(params, "response_mode"));
	const char *uri = json_string_value(json_object_get(params, "redirect_uri"));
	char *action;

	if (mode != NULL && strcmp(mode, "form_post") == 0 && uri != NULL &&
	    strncmp(location, uri, strlen(uri)) == 0) {
		/* location is uri, then '?' or '&', then the response's parameters. */
		const char *query = location + strlen(uri);
		action = strdup(uri);
		if (action != NULL)
			form_post(call, action, *query ? query + 1 : "");
		else
			resp_error(call->resp, ERR_INTERNAL, NULL);
		free(action);
		return;
	}
	resp_header(call->resp, "Location", "%s", location);
	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	resp_json(call->resp, 303, NULL);
}

static void redirect_error(struct api_call *call, json_t *params, const char *error,
			   const char *description)
{
	char *location = authz_error_location(call->c, params, error, description);

	if (location != NULL)
		api_authz_respond(call, params, location);
	else
		api_hosted_error_page(call, 400, NULL, NULL, "the redirect is too long");
	free(location);
}

/*
 * A request by reference to a pushed one (RFC 9126 4): *params becomes the pushed request's
 * (taken once), whose client must be the one named here. 0, or -1 after answering with a page
 * (there is no redirect_uri to trust yet).
 */
static int pushed(struct api_call *call, json_t **params)
{
	const char *client_id = json_string_value(json_object_get(*params, "client_id"));
	const char *uri = json_string_value(json_object_get(*params, "request_uri"));
	json_t *stored = NULL;
	int rc;

	if (client_id == NULL) {
		api_hosted_error_page(call, 400, NULL, NULL, "client_id is missing");
		return -1;
	}
	rc = authz_par_take(call->c, client_id, uri, &stored);
	if (rc == ERR_NOT_FOUND) {
		log_info("authorization request refused with a page: unknown request_uri");
		api_hosted_error_page(call, 400, NULL, NULL,
				      "request_uri is unknown, used or expired");
		return -1;
	}
	if (rc != ERR_NONE) {
		api_fail(call, rc, NULL);
		return -1;
	}
	json_decref(*params);
	*params = stored;
	return 0;
}

void api_authorize(struct api_call *call)
{
	json_t *params = collect(call);
	struct authz_req r;
	char *session = NULL, *location = NULL, *flow_id = NULL;
	unsigned retry_after = 0;
	int rc;

	memset(&r, 0, sizeof(r));
	if (params == NULL) {
		api_hosted_error_page(call, 400, NULL, NULL,
				      "a parameter is repeated or malformed");
		return;
	}
	if (json_object_get(params, "request_uri") != NULL && pushed(call, &params) < 0)
		goto out;
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
		api_authz_respond(call, params, location);
	} else if (rc == ERR_ORG_NOT_MEMBER) {
		redirect_error(call, params, "access_denied",
			       "The user is not a member of the organization");
	} else if (rc != ERR_SESSION_NOT_FOUND) {
		api_fail(call, rc, NULL);
	} else if (r.prompt_none) {
		redirect_error(call, params, "login_required", "The user is not signed in");
	} else if ((rc = authz_flow_start(call->c, params, call->req->remote_addr, &flow_id,
					  &retry_after)) == ERR_RATE_LIMITED) {
		log_info("authorization request refused: too many sign-ins from this address");
		resp_header(call->resp, "Retry-After", "%u", retry_after);
		api_hosted_error_page(call, 429, r.client, params,
				      "too many sign-ins were started from this address; try again "
				      "later");
	} else if (rc != ERR_NONE) {
		api_fail(call, rc, NULL);
	} else {
		api_set_flow_cookie(call, flow_id);
		api_see_flow(call, flow_id);
	}
out:
	free(location);
	crypto_free_str(session);
	crypto_free_str(flow_id);
	authz_req_free(&r);
	json_decref(params);
}

/*
 * POST /oidc/request (RFC 9126): the authorization request's parameters with client
 * authentication, checked as /oidc/auth checks them, stored for AUTHZ_PAR_TTL seconds.
 * 201 {"request_uri", "expires_in"}; errors in RFC 6749's JSON shape.
 */
void api_par(struct api_call *call)
{
	struct api_client_auth auth;
	struct api_refusal no;
	struct authz_req r;
	json_t *client = NULL, *params = NULL;
	const char *named;
	char *request_uri = NULL;
	int rc;

	memset(&r, 0, sizeof(r));
	memset(&auth, 0, sizeof(auth));
	if (api_parse_client_auth(call->req, &auth, &no) < 0) {
		api_refused(call, &no);
		goto out;
	}
	if (!api_authenticate_client(call, &auth, &client))
		goto out;
	if ((params = collect(call)) == NULL) {
		resp_oauth_error(call->resp, 400, "invalid_request", "Malformed parameters");
		goto out;
	}
	if (json_object_get(params, "request_uri") != NULL) {
		resp_oauth_error(call->resp, 400, "invalid_request",
				 "request_uri is not allowed in a pushed request");
		goto out;
	}
	/* The authenticated client is the request's client. */
	named = json_string_value(json_object_get(params, "client_id"));
	if (named != NULL && strcmp(named, client_id_of(client)) != 0) {
		resp_oauth_error(call->resp, 400, "invalid_request",
				 "client_id differs from the authenticated client");
		goto out;
	}
	json_object_set_new(params, "client_id", json_string(client_id_of(client)));
	if ((rc = authz_check(call->c, params, &r)) < 0) {
		api_fail(call, rc, NULL);
		goto out;
	}
	if (r.verdict != AUTHZ_OK) {
		resp_oauth_error(call->resp, 400, r.error, r.description);
		goto out;
	}
	if ((rc = authz_par_store(call->c, params, &request_uri)) != ERR_NONE) {
		api_fail(call, rc, NULL);
		goto out;
	}
	resp_json(call->resp, 201,
		  json_pack("{s:s, s:i}", "request_uri", request_uri, "expires_in", AUTHZ_PAR_TTL));
out:
	free(request_uri);
	authz_req_free(&r);
	json_decref(params);
	json_decref(client);
	api_client_auth_free(&auth);
}
