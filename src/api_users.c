/* The users API (clients with the admin permission), shaped like Transmit's. */
#include "audit.h"
#include "api.h"

#include "account.h"

#include <stdlib.h>
#include <string.h>

#include "jsonio.h"
#include "user.h"

#define PAGE_SIZE_DEFAULT 50
#define PAGE_SIZE_MAX 500

static void answer_user(struct api_call *call, int status, json_t *user)
{
	resp_json(call->resp, status, json_pack("{s:o}", "result", user));
}

/* The answer for a user_create/account_update result that is not a success. */
static void answer_user_error(struct api_call *call, int rc, const char *err)
{
	if (rc == USER_CONFLICT)
		resp_error(call->resp, ERR_CONFLICT, "A user with that identifier already exists");
	else if (rc == USER_INVALID)
		resp_error(call->resp, ERR_INVALID_INPUT, err);
	else if (rc == STORE_NOTFOUND)
		resp_error(call->resp, ERR_NOT_FOUND, "User not found");
	else
		api_fail(call, rc < 0 ? rc : ERR_INTERNAL, NULL);
}

void api_users_create(struct api_call *call)
{
	char err[256] = "";
	json_t *user;
	int rc = user_create(call->c, call->req->json, &user, err, sizeof(err));

	audit_event("user_created", rc == USER_CREATED, "refused", "user_id",
		    rc == USER_CREATED ? json_string_value(json_object_get(user, "user_id")) : NULL,
		    "by", "api", (char *)NULL);
	if (rc == USER_CREATED)
		answer_user(call, 201, user);
	else
		answer_user_error(call, rc, err);
}

static void get_by(struct api_call *call, enum user_idtype type)
{
	char *canonical = user_normalize(type, call->params[0]);
	json_t *user;
	int rc = canonical ? user_get(call->c, type, canonical, &user) : STORE_NOTFOUND;

	if (rc == STORE_FOUND)
		answer_user(call, 200, user);
	else
		answer_user_error(call, rc, NULL);
	free(canonical);
}

void api_users_get(struct api_call *call)
{
	get_by(call, ID_USER_ID);
}

void api_users_by_email(struct api_call *call)
{
	get_by(call, ID_EMAIL);
}

void api_users_by_username(struct api_call *call)
{
	get_by(call, ID_USERNAME);
}

void api_users_by_phone(struct api_call *call)
{
	get_by(call, ID_PHONE);
}

void api_users_list(struct api_call *call)
{
	char *size_text = req_query_param(call->req, "page_size");
	char *cursor = req_query_param(call->req, "cursor"), *end = NULL;
	long size = PAGE_SIZE_DEFAULT;
	json_t *page;

	if (size_text != NULL) {
		size = strtol(size_text, &end, 10);
		if (*size_text == '\0' || *end != '\0' || size < 1 || size > PAGE_SIZE_MAX) {
			resp_error(call->resp, ERR_INVALID_INPUT, "page_size must be 1 to 500");
			goto out;
		}
	}
	page = user_page(call->c, cursor, (size_t)size);
	if (page == NULL)
		api_fail(call, ERR_UNAVAILABLE, NULL);
	else
		resp_json(call->resp, 200, page);
out:
	free(size_text);
	free(cursor);
}

void api_users_update(struct api_call *call)
{
	char err[256] = "";
	json_t *user;
	int rc = account_update(call->c, call->params[0], call->req->json, &user, err, sizeof(err));

	audit_event("user_updated", rc == USER_CREATED, "refused", "user_id", call->params[0], "by",
		    "api", (char *)NULL);
	if (rc == USER_CREATED)
		answer_user(call, 200, user);
	else
		answer_user_error(call, rc, err);
}

void api_users_delete(struct api_call *call)
{
	int rc = account_delete(call->c, call->params[0]);

	audit_event("user_deleted", rc == STORE_FOUND,
		    rc == STORE_NOTFOUND ? "not_found" : "refused", "user_id", call->params[0],
		    "by", "api", (char *)NULL);
	if (rc == STORE_FOUND)
		resp_json(call->resp, 204, NULL);
	else
		answer_user_error(call, rc, NULL);
}
