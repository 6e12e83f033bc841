/*
 * POST /v1/auth/otp/send and /v1/auth/otp/authenticate (Transmit's one-time passcodes): each a
 * pure parse step (api_parse.h) and an action step.
 */
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

const struct jv_field api_otp_send_fields[] = {
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

const struct jv_field api_otp_auth_fields[] = {
    JV_F_STRING("passcode", 1, 16),
    JV_F_ENUM("identifier_type", 1, idtypes),
    JV_F_STRING("identifier", 1, 320),
    JV_F_INCLUDE(api_login_fields),
    JV_END,
};

/*
 * The SMS inputs of a send: custom_sms_input checked and copied into r, and the whole message
 * built once with a stand-in code of the configured length (digits are GSM-7, so it has the
 * real message's size) so that a bad template or too many segments get a precise 400 before
 * any code exists. Returns 0, or -1 with *no.
 */
static int parse_sms(const struct api_input *in, struct otp_send_req *r, struct api_refusal *no)
{
	json_t *sms_input = json_object_get(in->body, "custom_sms_input");
	/* Only the backend's choice is read here: nothing is delivered. */
	struct sms_conf sc = ctx_sms_conf(in->conf, NULL);
	struct sms_compose_req m = {0};
	char why[160], code[16], *text = NULL;

	if (sms_backend_for(&sc) == NULL)
		return api_refuse(no, ERR_INVALID_INPUT,
				  "SMS delivery is not configured on this server");
	r->sms_template = jsonio_str(sms_input, "custom_message");
	r->sender_id = jsonio_str(sms_input, "sender_id");
	if (r->sms_template != NULL && !sms_template_valid(r->sms_template, why, sizeof(why)))
		return api_refuse(no, ERR_INVALID_INPUT, "custom_sms_input.custom_message: %s",
				  why);
	if (r->sender_id != NULL && !sms_sender_valid(r->sender_id))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "custom_sms_input.sender_id must be 1 to 11 letters, digits or "
				  "inner spaces");
	memset(code, '0', in->conf->otp_length);
	code[in->conf->otp_length] = '\0';
	m.tmpl = r->sms_template ? r->sms_template : in->conf->sms_default_message;
	m.app = json_string_value(json_object_get(in->client, "name"));
	m.code = code;
	m.approval_data = json_object_get(in->body, "approval_data");
	m.max_segments = in->conf->sms_max_segments;
	if (sms_compose(&m, &text, why, sizeof(why)) < 0)
		return api_refuse(no, ERR_INVALID_INPUT, "SMS: %s", why);
	crypto_free_str(text);
	return 0;
}

/* The body's identifier in canonical form (new string), or NULL with *no. */
static char *canonical_identifier(json_t *body, enum user_idtype *type, struct api_refusal *no)
{
	*type = user_idtype_parse(jsonio_str(body, "identifier_type"));
	return api_canonical(*type, jsonio_str(body, "identifier"), no);
}

int api_otp_send_parse(const struct api_input *in, struct api_otp_send *out, struct api_refusal *no)
{
	json_t *body = in->body;
	struct otp_send_req *r = &out->r;
	int rc;

	memset(out, 0, sizeof(*out));
	r->client = in->client;
	r->channel = jsonio_str(body, "channel");
	if (strcmp(r->channel, "direct") == 0 && !client_has_permission(in->client, "direct"))
		return api_refuse(no, ERR_FORBIDDEN,
				  "The client lacks the permission for the direct channel");
	r->custom_email = jsonio_str(body, "custom_email");
	if (r->custom_email != NULL && !mail_address_valid(r->custom_email))
		return api_refuse(no, ERR_INVALID_INPUT, "custom_email is not a valid address");
	r->custom_phone = jsonio_str(body, "custom_phone_number");
	if (r->custom_phone != NULL && !user_phone_valid(r->custom_phone))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "custom_phone_number must be an E.164 number: + and 7 to 15 "
				  "digits");
	if (strcmp(r->channel, "sms") == 0 && parse_sms(in, r, no) < 0)
		return -1;
	if ((rc = api_email_content(body, &out->content, no)) < 0)
		return -1;
	r->content = rc ? &out->content : NULL;
	if ((out->identifier = canonical_identifier(body, &r->idtype, no)) == NULL)
		return -1;
	r->identifier = out->identifier;
	r->approval_data = json_object_get(body, "approval_data");
	r->minutes = (unsigned)jsonio_int(body, "expires_in", 0);
	r->want_request_id = jsonio_true(body, "generate_request_id");
	return 0;
}

void api_otp_send_free(struct api_otp_send *s)
{
	free(s->identifier);
	s->identifier = NULL;
}

void api_otp_send(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	struct api_otp_send s;
	struct api_refusal no;
	struct otp_send_res res = {0};
	int rc;

	if (api_otp_send_parse(&in, &s, &no) < 0) {
		api_refused(call, &no);
	} else {
		rc = otp_send(call->c, &s.r, &res);
		api_sent(call, rc, res.retry_after, "OTP sent", s.r.approval_data, res.request_id,
			 "code", res.code);
		if (rc == ERR_NONE)
			otp_send_res_free(&res);
	}
	api_otp_send_free(&s);
}

int api_otp_auth_parse(const struct api_input *in, struct api_otp_auth *out, struct api_refusal *no)
{
	json_t *body = in->body;
	struct otp_auth_req *r = &out->r;

	memset(out, 0, sizeof(*out));
	r->client = in->client;
	if (api_audience(in, jsonio_str(body, "resource"), &out->aud, no) < 0)
		return -1;
	if ((out->identifier = canonical_identifier(body, &r->idtype, no)) == NULL)
		return -1;
	r->identifier = out->identifier;
	r->passcode = jsonio_str(body, "passcode");
	r->request_id = jsonio_str(body, "request_id");
	api_login_opts(body, &r->opts);
	r->ip = api_end_user_ip(body);
	return 0;
}

void api_otp_auth_free(struct api_otp_auth *a)
{
	free(a->identifier);
	a->identifier = NULL;
}

void api_otp_authenticate(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	struct api_otp_auth a;
	struct api_refusal no;
	json_t *tokens = NULL;
	unsigned retry_after = 0;
	int rc;

	if (api_otp_auth_parse(&in, &a, &no) < 0) {
		api_refused(call, &no);
	} else {
		a.r.retry_after = &retry_after;
		rc = otp_authenticate(call->c, &a.r, a.aud, &tokens);
		api_authenticated(call, rc, tokens, retry_after);
	}
	api_otp_auth_free(&a);
}
