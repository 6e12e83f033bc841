/* POST /v1/auth/otp/send and /v1/auth/otp/authenticate (Transmit's one-time passcodes). */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "crypto.h"
#include "jsonio.h"
#include "mail.h"
#include "otp.h"
#include "sms.h"
#include "user.h"

static const char *const channels[] = {"email", "sms", "direct", NULL};
static const char *const idtypes[] = {"email", "phone_number", "user_id", "username", NULL};

/*
 * The JSON limit on custom_message is in bytes: 140 characters of UTF-8 take up to 560.
 * sms_template_valid then counts characters.
 */
static const struct jv_field sms_input_fields[] = {
    JV_F_TEXT("custom_message", 0, SMS_MAX_TEMPLATE_CHARS * 4),
    JV_F_STRING("sender_id", 0, SMS_MAX_SENDER),
    JV_END,
};

static const struct jv_field send_fields[] = {
    JV_F_ENUM("channel", 1, channels),
    JV_F_ENUM("identifier_type", 1, idtypes),
    JV_F_STRING("identifier", 1, 320),
    JV_F_OBJECT("email_content", 0, api_email_content_fields),
    JV_F_OBJECT("custom_sms_input", 0, sms_input_fields),
    JV_F_FLATMAP("approval_data", 0, 10),
    JV_F_STRING("custom_email", 0, 320),
    JV_F_STRING("custom_phone_number", 0, 16),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_INT("expires_in", 0, 1, 1440),
    JV_F_STRING("device_id", 0, 80),
    JV_F_BOOL("generate_request_id", 0),
    JV_END,
};

static const struct jv_field authenticate_fields[] = {
    JV_F_STRING("passcode", 1, 16),
    JV_F_ENUM("identifier_type", 1, idtypes),
    JV_F_STRING("identifier", 1, 320),
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_STRING("org_id", 0, 128),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("session_id", 0, 256),
    JV_F_STRING("device_id", 0, 80),
    JV_F_STRING("request_id", 0, 256),
    JV_END,
};

/*
 * The SMS inputs of a send: custom_sms_input checked and copied into r, and the whole message
 * built once with a stand-in code of the configured length (digits are GSM-7, so it has the
 * real message's size) so that a bad template or too many segments get a precise 400 before
 * any code exists. Returns 0, or -1 after answering.
 */
static int check_sms(struct api_call *call, struct otp_send_req *r)
{
	json_t *body = call->req->json, *in = json_object_get(body, "custom_sms_input");
	struct sms_conf sc = ctx_sms_conf(call->c->conf, &call->c->mail);
	struct sms_compose_req m = {0};
	char err[200], why[160], code[16], *text = NULL;

	if (sms_backend_for(&sc) == NULL) {
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "SMS delivery is not configured on this server");
		return -1;
	}
	r->sms_template = jsonio_str(in, "custom_message");
	r->sender_id = jsonio_str(in, "sender_id");
	if (r->sms_template != NULL && !sms_template_valid(r->sms_template, why, sizeof(why))) {
		snprintf(err, sizeof(err), "custom_sms_input.custom_message: %s", why);
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	if (r->sender_id != NULL && !sms_sender_valid(r->sender_id)) {
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "custom_sms_input.sender_id must be 1 to 11 letters, digits or inner "
			   "spaces");
		return -1;
	}
	memset(code, '0', call->c->conf->otp_length);
	code[call->c->conf->otp_length] = '\0';
	m.tmpl = r->sms_template ? r->sms_template : call->c->conf->sms_default_message;
	m.app = json_string_value(json_object_get(call->client, "name"));
	m.code = code;
	m.approval_data = json_object_get(body, "approval_data");
	m.max_segments = call->c->conf->sms_max_segments;
	if (sms_compose(&m, &text, why, sizeof(why)) < 0) {
		snprintf(err, sizeof(err), "SMS: %s", why);
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return -1;
	}
	crypto_free_str(text);
	return 0;
}

/*
 * The request's identifier in canonical form (new string), or NULL after answering 400.
 */
static char *canonical_identifier(struct api_call *call, enum user_idtype *type)
{
	json_t *body = call->req->json;
	char *canonical;

	*type = user_idtype_parse(jsonio_str(body, "identifier_type"));
	canonical = user_normalize(*type, jsonio_str(body, "identifier"));
	if (canonical == NULL)
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "identifier is not valid for its identifier_type");
	return canonical;
}

void api_otp_send(struct api_call *call)
{
	json_t *body = call->req->json, *out;
	struct mail_content content = {0};
	struct otp_send_req r = {.client = call->client};
	struct otp_send_res res;
	char err[256], *canonical = NULL;
	int rc;

	if (jsonio_check(body, send_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return;
	}
	r.channel = jsonio_str(body, "channel");
	if (strcmp(r.channel, "direct") == 0 && !client_has_permission(call->client, "direct")) {
		resp_error(call->resp, ERR_FORBIDDEN,
			   "The client lacks the permission for the direct channel");
		return;
	}
	r.custom_email = jsonio_str(body, "custom_email");
	if (r.custom_email != NULL && !mail_address_valid(r.custom_email)) {
		resp_error(call->resp, ERR_INVALID_INPUT, "custom_email is not a valid address");
		return;
	}
	r.custom_phone = jsonio_str(body, "custom_phone_number");
	if (r.custom_phone != NULL && !user_phone_valid(r.custom_phone)) {
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "custom_phone_number must be an E.164 number: + and 7 to 15 digits");
		return;
	}
	if (strcmp(r.channel, "sms") == 0 && check_sms(call, &r) < 0)
		return;
	if ((rc = api_email_content(call, &content)) < 0)
		return;
	r.content = rc ? &content : NULL;
	if ((canonical = canonical_identifier(call, &r.idtype)) == NULL)
		return;
	r.identifier = canonical;
	r.approval_data = json_object_get(body, "approval_data");
	r.minutes = (unsigned)jsonio_int(body, "expires_in", 0);
	r.want_request_id = jsonio_true(body, "generate_request_id");

	rc = otp_send(call->c, &r, &res);
	if (rc == ERR_RATE_LIMITED) {
		api_rate_limited(call, res.retry_after);
		goto out;
	}
	if (rc != ERR_NONE) {
		api_fail(call, rc, NULL);
		goto out;
	}
	out = json_pack("{s:s}", "message", "OTP sent");
	if (r.approval_data != NULL)
		json_object_set(out, "approval_data", r.approval_data);
	if (res.request_id != NULL)
		json_object_set_new(out, "request_id", json_string(res.request_id));
	if (res.code != NULL)
		json_object_set_new(out, "code", json_string(res.code));
	resp_json(call->resp, 200, out);
	otp_send_res_free(&res);
out:
	free(canonical);
}

void api_otp_authenticate(struct api_call *call)
{
	json_t *body = call->req->json, *tokens = NULL;
	struct otp_auth_req r = {.client = call->client};
	const char *aud;
	char err[256], *canonical;
	unsigned retry_after = 0;
	int rc;

	if (jsonio_check(body, authenticate_fields, err, sizeof(err)) < 0) {
		resp_error(call->resp, ERR_INVALID_INPUT, err);
		return;
	}
	if (api_audience(call, jsonio_str(body, "resource"), &aud) < 0)
		return;
	if ((canonical = canonical_identifier(call, &r.idtype)) == NULL)
		return;
	r.identifier = canonical;
	r.passcode = jsonio_str(body, "passcode");
	r.request_id = jsonio_str(body, "request_id");
	api_login_opts(body, &r.opts);
	r.ip = api_end_user_ip(call);
	r.retry_after = &retry_after;

	rc = otp_authenticate(call->c, &r, aud, &tokens);
	if (rc == ERR_NONE)
		resp_json(call->resp, 200, tokens);
	else if (rc == ERR_RATE_LIMITED || rc == ERR_LOCKED)
		api_retry_later(call, rc, retry_after);
	else
		api_fail(call, rc, NULL);
	free(canonical);
}
