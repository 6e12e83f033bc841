/* api_link.c compiled into fuzz_req for its tables and checks; see fuzz_api.h. */
#include "api_link.c"

#include "fuzz_api.h"

/* api_link_send up to link_send, without the client's redirect URIs and permissions. */
static int send_checks(struct api_call *call, char **canonical)
{
	struct mail_content content = {0};
	enum user_idtype type;
	char err[256];

	if (jsonio_check(call->req->json, send_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	if (api_email_content(call, &content) < 0)
		return -1;
	*canonical = send_identifier(call, &type);
	return *canonical != NULL ? 0 : -1;
}

static int authenticate_checks(struct api_call *call, char **canonical)
{
	struct login_opts opts;
	char err[256];

	if (jsonio_check(call->req->json, authenticate_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	api_login_opts(call->req->json, &opts);
	*canonical = NULL;
	return 0;
}

const struct fuzz_endpoint fuzz_link_endpoints[2] = {
    {"/v1/auth/link/email/send", DIALECT_LINK, send_fields, send_checks},
    {"/v1/auth/link/email/authenticate", DIALECT_LINK, authenticate_fields, authenticate_checks},
};

char *fuzz_link_page(const char *text, const char *token)
{
	return page_html("Sign in", text, token, token);
}
