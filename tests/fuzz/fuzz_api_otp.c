/* api_otp.c compiled into fuzz_req for its tables and checks; see fuzz_api.h. */
#include "api_otp.c"

#include "fuzz_api.h"

/* api_otp_send up to otp_send, without the client's permissions and the SMS configuration. */
static int send_checks(struct api_call *call, char **canonical)
{
	json_t *body = call->req->json;
	struct mail_content content = {0};
	enum user_idtype type;
	const char *s;
	char err[256];

	if (jsonio_check(body, send_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	s = jsonio_str(body, "custom_email");
	if (s != NULL && !mail_address_valid(s)) {
		resp_error(call->resp, ERR_INVALID_INPUT, "custom_email is not a valid address");
		return -1;
	}
	s = jsonio_str(body, "custom_phone_number");
	if (s != NULL && !user_phone_valid(s)) {
		resp_error(call->resp, ERR_INVALID_INPUT, "custom_phone_number");
		return -1;
	}
	if (api_email_content(call, &content) < 0)
		return -1;
	*canonical = canonical_identifier(call, &type);
	return *canonical != NULL ? 0 : -1;
}

static int authenticate_checks(struct api_call *call, char **canonical)
{
	struct login_opts opts;
	enum user_idtype type;
	char err[256];

	if (jsonio_check(call->req->json, authenticate_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	api_login_opts(call->req->json, &opts);
	*canonical = canonical_identifier(call, &type);
	return *canonical != NULL ? 0 : -1;
}

const struct fuzz_endpoint fuzz_otp_endpoints[2] = {
    {"/v1/auth/otp/send", DIALECT_OTP, send_fields, send_checks},
    {"/v1/auth/otp/authenticate", DIALECT_OTP, authenticate_fields, authenticate_checks},
};
