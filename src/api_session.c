/* The backend sessions API: silent sign-in, refresh, logout, a user's sessions. */
#include "api.h"

#include <string.h>

#include "client.h"
#include "jsonio.h"
#include "session.h"
#include "token.h"

static const struct jv_field session_auth_fields[] = {
    JV_F_STRING("session_id", 1, 256),
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_STRING("org_id", 0, 128),
    JV_END,
};

static const struct jv_field refresh_fields[] = {
    JV_F_STRING("refresh_token", 1, 128),
    JV_END,
};

static const struct jv_field logout_fields[] = {
    JV_F_STRING("session_id", 1, 256),
    JV_END,
};

/* Validate body against fields. Returns 0, or -1 after answering 400. */
static int check(struct api_call *call, const struct jv_field *fields)
{
	char err[256];
	if (jsonio_check(call->req->json, fields, err, sizeof(err)) == 0)
		return 0;
	resp_error(call->resp, ERR_INVALID_INPUT, err);
	return -1;
}

void api_session_authenticate(struct api_call *call)
{
	json_t *body = call->req->json, *tokens;
	struct login_grant g;
	struct login_opts opts;
	const char *aud;
	int rc;

	if (check(call, session_auth_fields) < 0 ||
	    api_audience(call, jsonio_str(body, "resource"), &aud) < 0)
		return;
	api_login_opts(body, &opts);
	rc = session_reauth(call->c, call->client, &opts, aud, &g);
	if (rc == ERR_NONE) {
		tokens = token_response(call->c, &g, &opts);
		if (tokens != NULL)
			resp_json(call->resp, 200, tokens);
		else
			resp_error(call->resp, ERR_INTERNAL, NULL);
	} else {
		api_fail(call, rc, NULL);
	}
	login_grant_free(&g);
}

void api_token_refresh(struct api_call *call)
{
	json_t *tokens;
	int rc;

	if (check(call, refresh_fields) < 0)
		return;
	rc = token_refresh(call->c, call->client, jsonio_str(call->req->json, "refresh_token"),
			   &tokens);
	if (rc == ERR_NONE)
		resp_json(call->resp, 200, tokens);
	else if (rc == ERR_BAD_CREDENTIALS)
		resp_error(call->resp, ERR_INVALID_INPUT, "Invalid refresh token");
	else
		api_fail(call, rc, NULL);
}

void api_session_logout(struct api_call *call)
{
	int rc;

	if (check(call, logout_fields) < 0)
		return;
	rc = session_logout(call->c, call->client, jsonio_str(call->req->json, "session_id"));
	if (rc == ERR_NONE)
		resp_json(call->resp, 204, NULL);
	else
		api_fail(call, rc, NULL);
}

void api_user_sessions(struct api_call *call)
{
	const char *user_id = call->params[0];
	/* A backend sees and ends its own sessions; an admin client those of every client. */
	const char *client_id = client_has_permission(call->client, "admin")
				    ? NULL
				    : json_string_value(json_object_get(call->client, "client_id"));
	json_t *list;
	int rc;

	if (strcmp(call->req->method, "DELETE") == 0) {
		rc = session_end_all(call->c, user_id, client_id);
		if (rc == ERR_NONE)
			resp_json(call->resp, 204, NULL);
		else
			api_fail(call, rc, NULL);
		return;
	}
	list = session_list(call->c, user_id, client_id);
	if (list == NULL)
		api_fail(call, ERR_UNAVAILABLE, NULL);
	else
		resp_json(call->resp, 200, list);
}
