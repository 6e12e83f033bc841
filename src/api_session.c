/* The backend sessions API: silent sign-in, refresh, logout, a user's sessions. */
#include "api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "jsonio.h"
#include "login.h"
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
	rc = login_reauth(call->c, call->client, &opts, aud, &g);
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

#define SESSIONS_PAGE_DEFAULT 200
#define SESSIONS_PAGE_MAX 1000

/* s percent-encoded for a URL path segment or query value, as a new string (NULL: ENOMEM). */
static char *url_escape(const char *s)
{
	char *out = malloc(3 * strlen(s) + 1), *o = out;

	for (; out != NULL && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || strchr("-._~", ch) != NULL)
			*o++ = (char)ch;
		else
			o += sprintf(o, "%%%02X", ch);
	}
	if (out != NULL)
		*o = '\0';
	return out;
}

/*
 * RFC 8288: where the next page of a user's sessions is. The list stays a bare array (the
 * contract's shape), so the cursor travels in the header, as the last handle of this page.
 */
static void link_next(struct api_call *call, const char *user_id, long size, json_t *list)
{
	json_t *last = json_array_get(list, json_array_size(list) - 1);
	const char *handle = json_string_value(json_object_get(last, "session_id"));
	char *id = url_escape(user_id);

	if (id != NULL && handle != NULL)
		resp_header(call->resp, "Link",
			    "<%s/v1/auth/users/%s/sessions?page_size=%ld&cursor=%s>; rel=\"next\"",
			    call->c->conf->public_base_url, id, size, handle);
	free(id);
}

/* page_size and cursor of the sessions list. 0, or -1 after answering 400. */
static int page_params(struct api_call *call, long *size, char **cursor)
{
	char *size_text = req_query_param(call->req, "page_size"), *end = NULL;
	int rc = 0;

	*size = SESSIONS_PAGE_DEFAULT;
	*cursor = req_query_param(call->req, "cursor");
	if (size_text != NULL) {
		*size = strtol(size_text, &end, 10);
		if (*size_text == '\0' || *end != '\0' || *size < 1 || *size > SESSIONS_PAGE_MAX) {
			resp_error(call->resp, ERR_INVALID_INPUT, "page_size must be 1 to 1000");
			rc = -1;
		}
	}
	/* A cursor is a session handle, as the previous page's Link names it. */
	if (rc == 0 && *cursor != NULL &&
	    (strlen(*cursor) != SESSION_HANDLE_LEN ||
	     strspn(*cursor, "0123456789abcdef") != SESSION_HANDLE_LEN)) {
		resp_error(call->resp, ERR_INVALID_INPUT, "cursor must be a session handle");
		rc = -1;
	}
	free(size_text);
	return rc;
}

static void list_sessions(struct api_call *call, const char *user_id, const char *client_id)
{
	char *cursor;
	long size;
	int more = 0;
	json_t *list;

	if (page_params(call, &size, &cursor) < 0)
		goto out;
	list = session_list(call->c, user_id, client_id, cursor, (size_t)size, &more);
	if (list == NULL) {
		api_fail(call, ERR_UNAVAILABLE, NULL);
		goto out;
	}
	if (more)
		link_next(call, user_id, size, list);
	resp_json(call->resp, 200, list);
out:
	free(cursor);
}

void api_user_sessions(struct api_call *call)
{
	const char *user_id = call->params[0];
	/* A backend sees and ends its own sessions; an admin client those of every client. */
	const char *client_id = client_has_permission(call->client, "admin")
				    ? NULL
				    : json_string_value(json_object_get(call->client, "client_id"));
	int rc;

	if (strcmp(call->req->method, "DELETE") == 0) {
		rc = session_end_all(call->c, user_id, client_id);
		if (rc == ERR_NONE)
			resp_json(call->resp, 204, NULL);
		else
			api_fail(call, rc, NULL);
		return;
	}
	list_sessions(call, user_id, client_id);
}
