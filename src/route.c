#include "route.h"

#include <string.h>

#include "client.h"
#include "jsonio.h"
#include "log.h"

enum body_kind { BODY_NONE, BODY_JSON, BODY_FORM };
enum auth_kind { AUTH_NONE, AUTH_CLIENT };

struct route {
	const char *method;
	const char *path;
	enum body_kind body;
	enum auth_kind auth;
	enum resp_dialect dialect;
	api_handler handler;
};

static const struct route routes[] = {
    {"POST", "/oidc/token", BODY_FORM, AUTH_NONE, DIALECT_PLAIN, api_token},
    {"POST", "/oidc/token/revocation", BODY_FORM, AUTH_NONE, DIALECT_PLAIN, api_revocation},
    {"GET", "/oidc/jwks", BODY_NONE, AUTH_NONE, DIALECT_PLAIN, api_jwks},
    {"GET", "/oidc/.well-known/openid-configuration", BODY_NONE, AUTH_NONE, DIALECT_PLAIN,
     api_discovery},
    {"GET", "/.well-known/openid-configuration", BODY_NONE, AUTH_NONE, DIALECT_PLAIN,
     api_discovery},
    {"POST", "/v1/auth/otp/send", BODY_JSON, AUTH_CLIENT, DIALECT_OTP, api_otp_send},
    {"POST", "/v1/auth/otp/authenticate", BODY_JSON, AUTH_CLIENT, DIALECT_OTP,
     api_otp_authenticate},
    {"POST", "/v1/auth/link/email/send", BODY_JSON, AUTH_CLIENT, DIALECT_LINK, api_link_send},
    {"POST", "/v1/auth/link/email/authenticate", BODY_JSON, AUTH_CLIENT, DIALECT_LINK,
     api_link_authenticate},
    /* The landing page: a browser's GET shows it, its button POSTs (any body is ignored). */
    {"GET", "/v1/auth/link/email/open", BODY_NONE, AUTH_NONE, DIALECT_LINK, api_link_open},
    {"POST", "/v1/auth/link/email/open", BODY_NONE, AUTH_NONE, DIALECT_LINK, api_link_open},
    {"GET", "/health", BODY_NONE, AUTH_NONE, DIALECT_PLAIN, api_health},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static int method_matches(const char *want, const char *got)
{
	/* HEAD is GET without a body (RFC 9110). */
	return strcmp(want, got) == 0 || (strcmp(want, "GET") == 0 && strcmp(got, "HEAD") == 0);
}

static void answer_405(struct api_call *call)
{
	char allow[128] = "";
	for (size_t i = 0; i < NROUTES; i++) {
		if (strcmp(routes[i].path, call->req->path) != 0)
			continue;
		if (allow[0])
			strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
		strncat(allow, routes[i].method, sizeof(allow) - strlen(allow) - 1);
		if (strcmp(routes[i].method, "GET") == 0)
			strncat(allow, ", HEAD", sizeof(allow) - strlen(allow) - 1);
	}
	resp_header(call->resp, "Allow", "%s", allow);
	resp_error(call->resp, ERR_METHOD, NULL);
}

/* Content type and body syntax. Returns 0, or -1 after answering. */
static int check_body(struct api_call *call, const struct route *rt)
{
	char err[256];

	switch (rt->body) {
	case BODY_NONE:
		return 0;
	case BODY_FORM:
		if (!req_content_type_is(call->req, "application/x-www-form-urlencoded")) {
			resp_error(call->resp, ERR_MEDIA_TYPE, NULL);
			return -1;
		}
		if (req_parse_form(call->req) < 0) {
			resp_oauth_error(call->resp, 400, "invalid_request", "Malformed form body");
			return -1;
		}
		return 0;
	case BODY_JSON:
		if (!req_content_type_is(call->req, "application/json")) {
			resp_error(call->resp, ERR_MEDIA_TYPE, NULL);
			return -1;
		}
		call->req->json =
		    jsonio_parse(call->req->body, call->req->body_len, err, sizeof(err));
		if (call->req->json == NULL) {
			resp_error(call->resp, ERR_INVALID_INPUT, err);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* The bearer token's client. Returns 0, or -1 after answering. */
static int check_client(struct api_call *call)
{
	const char *token = req_bearer(call->req);
	int rc;

	if (token == NULL) {
		resp_error(call->resp, ERR_INVALID_TOKEN, NULL);
		return -1;
	}
	rc = client_token_verify(call->c, token, &call->client);
	if (rc == 1)
		return 0;
	if (rc < 0)
		api_fail(call, STORE_ERR, NULL);
	else
		resp_error(call->resp, ERR_INVALID_TOKEN, NULL);
	return -1;
}

void route_dispatch(struct api_call *call)
{
	const struct route *rt = NULL;
	int path_known = 0;

	for (size_t i = 0; i < NROUTES && rt == NULL; i++) {
		if (strcmp(routes[i].path, call->req->path) != 0)
			continue;
		path_known = 1;
		if (method_matches(routes[i].method, call->req->method))
			rt = &routes[i];
	}
	if (rt == NULL) {
		if (path_known)
			answer_405(call);
		else
			resp_error(call->resp, ERR_NOT_FOUND, NULL);
		return;
	}
	call->resp->dialect = rt->dialect;
	call->resp->head_only = strcmp(call->req->method, "HEAD") == 0;
	/* Authentication first: an unauthenticated caller learns nothing about its input. */
	if (rt->auth == AUTH_CLIENT && check_client(call) < 0)
		return;
	if (check_body(call, rt) < 0)
		return;
	rt->handler(call);
}
