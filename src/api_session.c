/*
 * The backend sessions API: silent sign-in, refresh, logout (each a pure parse step, api_parse.h,
 * and an action step), a user's sessions.
 */
#include "audit.h"
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

const struct jv_field api_session_auth_fields[] = {
    JV_F_STRING("session_id", 1, 256),
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_STRING("org_id", 0, 128),
    JV_END,
};

const struct jv_field api_token_refresh_fields[] = {
    JV_F_STRING("refresh_token", 1, 128),
    JV_END,
};

const struct jv_field api_session_logout_fields[] = {
    JV_F_STRING("session_id", 1, 256),
    JV_END,
};

int api_session_auth_parse(const struct api_input *in, struct api_session_auth *out,
			   struct api_refusal *no)
{
	memset(out, 0, sizeof(*out));
	if (api_audience(in, jsonio_str(in->body, "resource"), &out->aud, no) < 0)
		return -1;
	api_login_opts(in->body, &out->opts);
	return 0;
}

void api_session_authenticate(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	struct api_session_auth a;
	struct api_refusal no;
	struct login_grant g;
	json_t *tokens;
	int rc;

	if (api_session_auth_parse(&in, &a, &no) < 0) {
		api_refused(call, &no);
		return;
	}
	rc = login_reauth(call->c, call->client, &a.opts, a.aud, &g);
	if (rc == ERR_NONE) {
		tokens = token_response(call->c, &g, &a.opts);
		if (tokens != NULL)
			resp_json(call->resp, 200, tokens);
		else
			resp_error(call->resp, ERR_INTERNAL, NULL);
	} else {
		api_fail(call, rc, NULL);
	}
	login_grant_free(&g);
}

const char *api_token_refresh_parse(const struct api_input *in)
{
	return jsonio_str(in->body, "refresh_token");
}

void api_token_refresh(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	json_t *tokens;
	int rc = token_refresh(call->c, call->client, api_token_refresh_parse(&in), &tokens);

	if (rc == ERR_NONE)
		resp_json(call->resp, 200, tokens);
	else if (rc == ERR_BAD_CREDENTIALS)
		resp_error(call->resp, ERR_INVALID_INPUT, "Invalid refresh token");
	else
		api_fail(call, rc, NULL);
}

const char *api_session_logout_parse(const struct api_input *in)
{
	return jsonio_str(in->body, "session_id");
}

void api_session_logout(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	int rc = session_logout(call->c, call->client, api_session_logout_parse(&in));

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
		audit_event("logout", rc == ERR_NONE, audit_reason(rc), "method", "end_all",
			    "user_id", user_id, (char *)NULL);
		if (rc == ERR_NONE)
			resp_json(call->resp, 204, NULL);
		else
			api_fail(call, rc, NULL);
		return;
	}
	list_sessions(call, user_id, client_id);
}
