#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "client.h"
#include "crypto.h"
#include "jsonio.h"
#include "log.h"
#include "store.h"

enum body_kind { BODY_NONE, BODY_JSON, BODY_FORM };
enum auth_kind { AUTH_NONE, AUTH_CLIENT, AUTH_ADMIN };

struct route {
	const char *method;
	const char *path; /* "{}" stands for one non-empty path segment */
	enum body_kind body;
	/* BODY_JSON: the body's field table, checked before the handler runs (NULL: none). */
	const struct jv_field *fields;
	enum auth_kind auth;
	enum resp_dialect dialect;
	api_handler handler;
};

static const struct route routes[] = {
    {"POST", "/oidc/token", BODY_FORM, NULL, AUTH_NONE, DIALECT_PLAIN, api_token},
    {"POST", "/oidc/token/revocation", BODY_FORM, NULL, AUTH_NONE, DIALECT_PLAIN, api_revocation},
    /* The OpenID Provider's browser side: authorization endpoint and hosted login pages. */
    {"GET", "/oidc/auth", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_authorize},
    {"POST", "/oidc/auth", BODY_FORM, NULL, AUTH_NONE, DIALECT_PLAIN, api_authorize},
    {"POST", "/oidc/request", BODY_FORM, NULL, AUTH_NONE, DIALECT_PLAIN, api_par},
    {"GET", "/oidc/login", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_hosted_login},
    {"POST", "/oidc/login", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_hosted_login},
    {"GET", "/oidc/login/link", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_hosted_link},
    {"POST", "/oidc/login/link", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_hosted_link},
    /* UserInfo reads its own body: a POST may carry the token as a form field. */
    {"GET", "/oidc/me", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_userinfo},
    {"POST", "/oidc/me", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_userinfo},
    {"GET", "/oidc/userinfo", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_userinfo},
    {"POST", "/oidc/userinfo", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_userinfo},
    {"GET", "/oidc/jwks", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_jwks},
    {"GET", "/oidc/.well-known/openid-configuration", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN,
     api_discovery},
    {"GET", "/.well-known/openid-configuration", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN,
     api_discovery},
    /* RP-initiated logout: a browser's top-level GET, or a form POST (its confirmation). */
    {"GET", "/oidc/session/end", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_session_end},
    {"POST", "/oidc/session/end", BODY_FORM, NULL, AUTH_NONE, DIALECT_PLAIN, api_session_end},
    {"POST", "/v1/auth/otp/send", BODY_JSON, api_otp_send_fields, AUTH_CLIENT, DIALECT_OTP,
     api_otp_send},
    {"POST", "/v1/auth/otp/authenticate", BODY_JSON, api_otp_auth_fields, AUTH_CLIENT, DIALECT_OTP,
     api_otp_authenticate},
    {"POST", "/v1/auth/link/email/send", BODY_JSON, api_link_send_fields, AUTH_CLIENT, DIALECT_LINK,
     api_link_send},
    {"POST", "/v1/auth/link/email/authenticate", BODY_JSON, api_link_auth_fields, AUTH_CLIENT,
     DIALECT_LINK, api_link_authenticate},
    /* The landing page: a browser's GET shows it, its button POSTs (any body is ignored). */
    {"GET", "/v1/auth/link/email/open", BODY_NONE, NULL, AUTH_NONE, DIALECT_LINK, api_link_open},
    {"POST", "/v1/auth/link/email/open", BODY_NONE, NULL, AUTH_NONE, DIALECT_LINK, api_link_open},
    /* The redirect-based One-Time Login (API-OIDC.md part A). */
    {"POST", "/v1/auth/otp/email", BODY_JSON, api_redirect_email_fields, AUTH_CLIENT,
     DIALECT_REDIRECT, api_redirect_otp_email},
    {"POST", "/v1/auth/otp/email/validation", BODY_JSON, api_redirect_email_validation_fields,
     AUTH_CLIENT, DIALECT_REDIRECT, api_redirect_otp_validate},
    {"POST", "/v1/auth/otp/sms", BODY_JSON, api_redirect_sms_fields, AUTH_CLIENT, DIALECT_REDIRECT,
     api_redirect_otp_sms},
    {"POST", "/v1/auth/otp/sms/validation", BODY_JSON, api_redirect_sms_validation_fields,
     AUTH_CLIENT, DIALECT_REDIRECT, api_redirect_otp_validate},
    {"POST", "/v1/auth/links/email", BODY_JSON, api_redirect_link_fields, AUTH_CLIENT,
     DIALECT_REDIRECT, api_redirect_link_email},
    {"GET", "/v1/auth/links/email/open", BODY_NONE, NULL, AUTH_NONE, DIALECT_LINK,
     api_redirect_link_open},
    {"POST", "/v1/auth/links/email/open", BODY_NONE, NULL, AUTH_NONE, DIALECT_LINK,
     api_redirect_link_open},
    {"GET", "/v1/auth/redirect/continue", BODY_NONE, NULL, AUTH_NONE, DIALECT_REDIRECT,
     api_redirect_ticket},
    {"POST", "/v1/token", BODY_JSON, api_redirect_token_fields, AUTH_NONE, DIALECT_REDIRECT,
     api_redirect_token},
    {"POST", "/v1/auth/logout", BODY_NONE, NULL, AUTH_NONE, DIALECT_REDIRECT, api_redirect_logout},
    {"POST", "/v1/auth/session/authenticate", BODY_JSON, api_session_auth_fields, AUTH_CLIENT,
     DIALECT_LINK, api_session_authenticate},
    {"POST", "/v1/auth/token/refresh", BODY_JSON, api_token_refresh_fields, AUTH_CLIENT,
     DIALECT_PLAIN, api_token_refresh},
    {"POST", "/v1/auth/session/logout", BODY_JSON, api_session_logout_fields, AUTH_CLIENT,
     DIALECT_LINK, api_session_logout},
    {"GET", "/v1/auth/users/{}/sessions", BODY_NONE, NULL, AUTH_CLIENT, DIALECT_PLAIN,
     api_user_sessions},
    {"DELETE", "/v1/auth/users/{}/sessions", BODY_NONE, NULL, AUTH_CLIENT, DIALECT_PLAIN,
     api_user_sessions},
    /* The users API's bodies are checked by user.c, inside the transaction that stores them. */
    {"POST", "/v1/users", BODY_JSON, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_create},
    {"GET", "/v1/users", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_list},
    {"GET", "/v1/users/email/{}", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_by_email},
    {"GET", "/v1/users/username/{}", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS,
     api_users_by_username},
    {"GET", "/v1/users/phone-number/{}", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS,
     api_users_by_phone},
    {"GET", "/v1/users/{}", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_get},
    {"PUT", "/v1/users/{}", BODY_JSON, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_update},
    {"DELETE", "/v1/manage/users/{}", BODY_NONE, NULL, AUTH_ADMIN, DIALECT_USERS, api_users_delete},
    {"GET", "/health", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_health},
    /* Access is the handler's: [metrics] allow (client addresses) or token. */
    {"GET", "/metrics", BODY_NONE, NULL, AUTH_NONE, DIALECT_PLAIN, api_metrics},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static int method_matches(const char *want, const char *got)
{
	/* HEAD is GET without a body (RFC 9110). */
	return strcmp(want, got) == 0 || (strcmp(want, "GET") == 0 && strcmp(got, "HEAD") == 0);
}

static void free_params(char *params[2])
{
	for (int i = 0; i < 2; i++) {
		free(params[i]);
		params[i] = NULL;
	}
}

/*
 * 1 when path matches pattern, with each {} segment decoded into params (new strings);
 * 0 otherwise (params left empty).
 */
static int path_matches(const char *pattern, const char *path, char *params[2])
{
	int n = 0;

	while (*pattern && *path) {
		if (strncmp(pattern, "{}", 2) == 0) {
			size_t len = strcspn(path, "/");
			if (len == 0 || n == 2 ||
			    (params[n] = req_percent_decode(path, len, 0)) == NULL)
				goto no;
			n++;
			pattern += 2;
			path += len;
		} else if (*pattern++ != *path++) {
			goto no;
		}
	}
	if (*pattern == '\0' && *path == '\0')
		return 1;
no:
	free_params(params);
	return 0;
}

void route_answer_405(struct api_call *call)
{
	char allow[128] = "", *scratch[2] = {NULL, NULL};

	for (size_t i = 0; i < NROUTES; i++) {
		if (!path_matches(routes[i].path, call->req->path, scratch))
			continue;
		free_params(scratch);
		if (allow[0])
			strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
		strncat(allow, routes[i].method, sizeof(allow) - strlen(allow) - 1);
		if (strcmp(routes[i].method, "GET") == 0)
			strncat(allow, ", HEAD", sizeof(allow) - strlen(allow) - 1);
	}
	resp_header(call->resp, "Allow", "%s", allow);
	resp_error(call->resp, ERR_METHOD, NULL);
}

int route_check_fields(struct api_call *call, const struct route *rt)
{
	char err[256];

	if (rt->fields == NULL || jsonio_check(call->req->json, rt->fields, err, sizeof(err)) == 0)
		return 0;
	resp_error(call->resp, ERR_INVALID_INPUT, err);
	return -1;
}

int route_check_body(struct api_call *call, const struct route *rt)
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
		return route_check_fields(call, rt);
	}
	return 0;
}

enum resp_dialect route_dialect(const struct route *rt)
{
	return rt->dialect;
}

const struct jv_field *route_fields(const struct route *rt)
{
	return rt->fields;
}

/* The bearer token's client (with the admin permission when asked). 0, or -1 after answering. */
static int check_client(struct api_call *call, enum auth_kind auth)
{
	const char *token = req_bearer(call->req);
	int rc;

	if (token == NULL) {
		resp_error(call->resp, ERR_INVALID_TOKEN, NULL);
		return -1;
	}
	rc = client_token_verify(call->c, token, &call->client);
	if (rc < 0) {
		api_fail(call, rc, NULL);
		return -1;
	}
	if (rc == 0) {
		resp_error(call->resp, ERR_INVALID_TOKEN, NULL);
		return -1;
	}
	log_set_client(json_string_value(json_object_get(call->client, "client_id")));
	audit_set_client(json_string_value(json_object_get(call->client, "client_id")));
	if (auth == AUTH_ADMIN && !client_has_permission(call->client, "admin")) {
		resp_error(call->resp, ERR_FORBIDDEN, "The client lacks the admin permission");
		return -1;
	}
	return 0;
}

const struct route *route_find(const char *method, const char *path, char *params[2],
			       int *path_known)
{
	*path_known = 0;
	for (size_t i = 0; i < NROUTES; i++) {
		if (!path_matches(routes[i].path, path, params))
			continue;
		/* The path's first route: its slot in the metrics when none matches. */
		if (*path_known == 0)
			*path_known = (int)i + 1;
		if (method_matches(routes[i].method, method))
			return &routes[i];
		free_params(params);
	}
	return NULL;
}

void route_dispatch(struct api_call *call)
{
	int path_known;
	const struct route *rt =
	    route_find(call->req->method, call->req->path, call->params, &path_known);

	call->route = rt != NULL ? (unsigned)(rt - routes) + 1 : (unsigned)path_known;
	if (rt == NULL) {
		if (path_known)
			route_answer_405(call);
		else
			resp_error(call->resp, ERR_NOT_FOUND, NULL);
		return;
	}
	call->resp->dialect = rt->dialect;
	call->resp->head_only = strcmp(call->req->method, "HEAD") == 0;
	/*
	 * A replicated site that is not a master with a quorum serves nothing but its state: a
	 * client's data may be behind the master's, and what it wrote could be undone.
	 */
	if (rt->handler != api_health && rt->handler != api_metrics &&
	    store_rep_unavailable(call->c->store) != NULL) {
		resp_error(call->resp, ERR_UNAVAILABLE, NULL);
		free_params(call->params);
		return;
	}
	/* Authentication first: an unauthenticated caller learns nothing about its input. */
	if ((rt->auth == AUTH_NONE || check_client(call, rt->auth) == 0) &&
	    route_check_body(call, rt) == 0)
		rt->handler(call);
	free_params(call->params);
}

unsigned route_patterns(const char **out, unsigned max)
{
	unsigned n = 0;

	for (; n < NROUTES && n < max; n++)
		out[n] = routes[n].path;
	return n;
}
