/*
 * Transmit's redirect-based One-Time Login (API-OIDC.md part A): POST /v1/auth/otp/email,
 * /v1/auth/otp/sms, their /validation, /v1/auth/links/email (each a pure parse step and an
 * action step, as the backend API's), the browser's side (GET of a validation's result URL,
 * the emailed link's landing page), the deprecated POST /v1/token and POST /v1/auth/logout.
 * A 400 here carries its message in an array (DIALECT_REDIRECT).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authcode.h"
#include "b64url.h"
#include "client.h"
#include "crypto.h"
#include "jsonio.h"
#include "log.h"
#include "redirect.h"
#include "sms.h"
#include "user.h"

static const char *const response_types[] = {"code", NULL};

const struct jv_field api_redirect_email_fields[] = {
    JV_F_STRING("email", 1, 320),
    JV_F_STRING("redirect_uri", 1, 2048),
    JV_F_BOOL("create_new_user", 0),
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("email_content", 0, api_email_content_fields),
    JV_F_BOOL("require_mfa", 0),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("org_id", 0, 128),
    JV_F_FLATMAP("approval_data", 0, 10),
    JV_END,
};

/* The JSON limit on custom_message is in bytes: sms_template_valid then counts characters. */
const struct jv_field api_redirect_sms_fields[] = {
    JV_F_STRING("phone_number", 1, 16),
    JV_F_STRING("redirect_uri", 1, 2048),
    JV_F_BOOL("create_new_user", 0),
    JV_F_STRING("resource", 0, 512),
    JV_F_BOOL("require_mfa", 0),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("org_id", 0, 128),
    JV_F_FLATMAP("approval_data", 0, 10),
    JV_F_TEXT("custom_message", 0, SMS_MAX_TEMPLATE_CHARS * 4),
    JV_F_STRING("sender_id", 0, SMS_MAX_SENDER),
    JV_END,
};

const struct jv_field api_redirect_link_fields[] = {
    JV_F_STRING("email", 1, 320),
    JV_F_STRING("redirect_uri", 1, 2048),
    JV_F_BOOL("create_new_user", 0),
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("email_content", 0, api_email_content_fields),
    JV_F_BOOL("require_mfa", 0),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("org_id", 0, 128),
    JV_END,
};

const struct jv_field api_redirect_email_validation_fields[] = {
    JV_F_STRING("email", 1, 320),
    JV_F_STRING("passcode", 1, 16),
    JV_F_ENUM("response_type", 0, response_types),
    JV_F_STRING("nonce", 0, 512),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_END,
};

const struct jv_field api_redirect_sms_validation_fields[] = {
    JV_F_STRING("phone_number", 1, 16),
    JV_F_STRING("passcode", 1, 16),
    JV_F_ENUM("response_type", 0, response_types),
    JV_F_STRING("nonce", 0, 512),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_END,
};

const struct jv_field api_redirect_token_fields[] = {
    JV_F_STRING("code", 1, 256),
    JV_F_STRING("client_id", 1, 128),
    JV_F_STRING("client_secret", 1, 256),
    JV_END,
};

/*
 * The options every send shares. The redirect must fit a Location header with a code or an
 * error and the issuer, percent-encoded (checked now, so that no login ends in a cut one).
 */
static int parse_options(const struct api_input *in, struct redirect_send_req *r,
			 struct api_refusal *no)
{
	json_t *body = in->body;
	const char *aud;

	r->client = in->client;
	r->redirect_uri = jsonio_str(body, "redirect_uri");
	/* Exact match only, with the backend link send's message. */
	if (!client_lists(in->client, "redirect_uris", r->redirect_uri))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "redirect_uri is not one of the allowed redirect URIs configured "
				  "for this app");
	if (strlen(r->redirect_uri) + 3 * strlen(in->conf->issuer) + 400 > RESP_HEADER_MAX)
		return api_refuse(no, ERR_INVALID_INPUT,
				  "redirect_uri is too long for the redirect back to the app");
	r->resource = jsonio_str(body, "resource");
	if (r->resource != NULL && api_audience(in, r->resource, &aud, no) < 0)
		return -1;
	r->create_new_user = jsonio_true(body, "create_new_user");
	r->require_mfa = jsonio_true(body, "require_mfa");
	r->org_id = jsonio_str(body, "org_id");
	r->claims = json_object_get(body, "claims");
	r->approval_data = json_object_get(body, "approval_data");
	return 0;
}

/* A send's parsed request: the flow's struct and what it points into. */
struct send_parse {
	struct redirect_send_req r;
	struct mail_content content;
	char *identifier; /* canonical (owned) */
};

static int parse_email_send(const struct api_input *in, struct send_parse *s,
			    enum redirect_kind kind, struct api_refusal *no)
{
	int rc;

	memset(s, 0, sizeof(*s));
	s->r.kind = kind;
	if (parse_options(in, &s->r, no) < 0)
		return -1;
	if ((rc = api_email_content(in->body, &s->content, no)) < 0)
		return -1;
	s->r.content = rc ? &s->content : NULL;
	s->r.idtype = ID_EMAIL;
	if ((s->identifier = api_canonical(ID_EMAIL, jsonio_str(in->body, "email"), no)) == NULL)
		return -1;
	s->r.identifier = s->identifier;
	return 0;
}

/* As the backend's SMS send: the whole message is built once with a stand-in code. */
static int parse_sms_send(const struct api_input *in, struct send_parse *s, struct api_refusal *no)
{
	struct sms_conf sc = ctx_sms_conf(in->conf, NULL);
	struct sms_compose_req m = {0};
	char why[160], code[16], *text = NULL;

	memset(s, 0, sizeof(*s));
	s->r.kind = REDIRECT_SMS_OTP;
	if (parse_options(in, &s->r, no) < 0)
		return -1;
	if (sms_backend_for(&sc) == NULL)
		return api_refuse(no, ERR_INVALID_INPUT,
				  "SMS delivery is not configured on this server");
	s->r.sms_template = jsonio_str(in->body, "custom_message");
	s->r.sender_id = jsonio_str(in->body, "sender_id");
	if (s->r.sms_template != NULL &&
	    (!sms_template_valid(s->r.sms_template, why, sizeof(why)) ||
	     strstr(s->r.sms_template, "{otp}") == NULL))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "custom_message must hold {otp} and at most 140 characters");
	if (s->r.sender_id != NULL && !sms_sender_valid(s->r.sender_id))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "sender_id must be 1 to 11 letters, digits or inner spaces");
	memset(code, '0', in->conf->otp_length);
	code[in->conf->otp_length] = '\0';
	m.tmpl = s->r.sms_template ? s->r.sms_template : in->conf->sms_default_message;
	m.app = json_string_value(json_object_get(in->client, "name"));
	m.code = code;
	m.approval_data = s->r.approval_data;
	m.max_segments = in->conf->sms_max_segments;
	if (sms_compose(&m, &text, why, sizeof(why)) < 0)
		return api_refuse(no, ERR_INVALID_INPUT, "SMS: %s", why);
	crypto_free_str(text);
	s->r.idtype = ID_PHONE;
	s->identifier = api_canonical(ID_PHONE, jsonio_str(in->body, "phone_number"), no);
	if (s->identifier == NULL)
		return -1;
	s->r.identifier = s->identifier;
	return 0;
}

/* Answer a send's outcome. */
static void sent(struct api_call *call, struct send_parse *s, int rc, unsigned retry_after,
		 const char *message)
{
	if (rc == ERR_USER_NOT_FOUND)
		resp_error(call->resp, ERR_USER_NOT_FOUND, "User Not Found");
	else if (rc == ERR_FORBIDDEN)
		resp_error(call->resp, ERR_FORBIDDEN,
			   "create_new_user needs the app's signup policy to be open");
	else
		api_sent(call, rc, retry_after, message, s->r.approval_data, NULL, NULL, NULL);
}

static void send_login(struct api_call *call, enum redirect_kind kind, const char *message)
{
	struct api_input in = api_input_of(call);
	struct send_parse s;
	struct api_refusal no;
	unsigned retry_after = 0;
	int rc;

	rc = kind == REDIRECT_SMS_OTP ? parse_sms_send(&in, &s, &no)
				      : parse_email_send(&in, &s, kind, &no);
	if (rc < 0) {
		api_refused(call, &no);
	} else {
		rc = redirect_send(call->c, &s.r, &retry_after);
		sent(call, &s, rc, retry_after, message);
	}
	free(s.identifier);
}

void api_redirect_otp_email(struct api_call *call)
{
	send_login(call, REDIRECT_EMAIL_OTP, "OTP email sent");
}

void api_redirect_otp_sms(struct api_call *call)
{
	send_login(call, REDIRECT_SMS_OTP, "SMS sent");
}

void api_redirect_link_email(struct api_call *call)
{
	send_login(call, REDIRECT_EMAIL_LINK, "Email sent successfully");
}

/* Both validations: the passcode of /v1/auth/otp/email or /v1/auth/otp/sms. */
void api_redirect_otp_validate(struct api_call *call)
{
	json_t *body = call->req->json;
	int sms = json_object_get(body, "phone_number") != NULL;
	struct redirect_validate_req r = {.client = call->client,
					  .idtype = sms ? ID_PHONE : ID_EMAIL,
					  .passcode = jsonio_str(body, "passcode"),
					  .nonce = jsonio_str(body, "nonce"),
					  .ip = api_end_user_ip(body)};
	struct api_refusal no;
	unsigned retry_after = 0;
	char *identifier, *url = NULL;
	int rc;

	identifier = api_canonical(r.idtype, jsonio_str(body, sms ? "phone_number" : "email"), &no);
	if (identifier == NULL) {
		api_refused(call, &no);
		return;
	}
	r.identifier = identifier;
	rc = redirect_validate(call->c, &r, &url, &retry_after);
	switch (rc) {
	case ERR_NONE:
		resp_json(call->resp, 200, json_pack("{s:s}", "result", url));
		break;
	/* The backend API's error_code symbols, in this API's 400 message. */
	case ERR_BAD_CREDENTIALS:
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "auth_invalid_credentials: Invalid passcode");
		break;
	case ERR_CODE_EXPIRED:
		resp_error(call->resp, ERR_INVALID_INPUT,
			   "auth_otp_passcode_expired: Passcode expired");
		break;
	case ERR_LOCKED:
		resp_header(call->resp, "Retry-After", "%u", retry_after ? retry_after : 1);
		resp_error(call->resp, ERR_INVALID_INPUT, "auth_locked: Too many failed attempts");
		break;
	case ERR_USER_NOT_FOUND:
		resp_error(call->resp, ERR_USER_NOT_FOUND, "User Not Found");
		break;
	default:
		api_authenticated(call, rc, NULL, retry_after);
	}
	free(url);
	free(identifier);
}

/* The pages of the browser's side: no script, nothing from elsewhere, never framed. */
static void page(struct api_call *call, int status, const char *title, const char *text)
{
	char *html = api_link_page_html(title, text, NULL, NULL);

	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	resp_header(call->resp, "X-Frame-Options", "DENY");
	resp_header(call->resp, "Content-Security-Policy",
		    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
		    "base-uri 'none'; form-action 'none'");
	if (html != NULL)
		resp_html(call->resp, status, html);
	else
		resp_error(call->resp, ERR_INTERNAL, NULL);
	free(html);
}

/* 303 to L->location, with the login-session cookie when one was opened or joined. */
static void go(struct api_call *call, const struct redirect_landing *L)
{
	if (L->session_id != NULL)
		api_set_login_cookie(call, L->session_id, call->c->conf->session_ttl);
	resp_header(call->resp, "Location", "%s", L->location);
	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	resp_json(call->resp, 303, NULL);
}

/*
 * GET of a validation's result URL. The contract has the top-level navigation itself consume
 * the ticket: unlike a mailed link, this URL goes from the app's backend straight to the
 * browser, never through a mail scanner. HEAD consumes nothing.
 */
void api_redirect_ticket(struct api_call *call)
{
	struct redirect_landing L = {0};
	char *ticket, *cookie;
	int rc;

	if (strcmp(call->req->method, "GET") != 0) {
		resp_header(call->resp, "Allow", "GET");
		resp_error(call->resp, ERR_METHOD, NULL);
		return;
	}
	ticket = req_query_param(call->req, "t");
	cookie = api_login_cookie(call);
	L.cookie = cookie;
	rc = ticket ? redirect_ticket(call->c, ticket, &L) : REDIRECT_UNKNOWN;
	if (rc == REDIRECT_UNKNOWN)
		page(call, 400, "This sign-in link is not valid",
		     "Go back to the app and sign in again.");
	else if (rc < 0)
		api_fail(call, rc, NULL);
	else
		go(call, &L);
	redirect_landing_free(&L);
	crypto_free_str(cookie);
	crypto_free_str(ticket);
}

static int link_peek_ops(struct api_call *call, const char *token, struct link_view *v)
{
	struct redirect_landing L = {0};
	int rc = redirect_link(call->c, token, 0, v, &L);

	redirect_landing_free(&L);
	return rc;
}

/* The landing page's POST: the cookie goes with the 303 api_link_landing answers. */
static int link_open_ops(struct api_call *call, const char *token, struct link_view *v)
{
	char *cookie = api_login_cookie(call);
	struct redirect_landing L = {.cookie = cookie};
	int rc = redirect_link(call->c, token, 1, v, &L);

	if (rc == 0 && v->state == LINK_VALID && L.session_id != NULL)
		api_set_login_cookie(call, L.session_id, call->c->conf->session_ttl);
	redirect_landing_free(&L);
	crypto_free_str(cookie);
	return rc;
}

void api_redirect_link_open(struct api_call *call)
{
	static const struct api_link_ops ops = {link_peek_ops, link_open_ops};

	api_link_landing(call, &ops);
}

/* The ID token's new_user claim (the exchange's own token, just signed): 1 or 0. */
static int id_token_new_user(const char *id_token)
{
	const char *p = strchr(id_token, '.'), *q = p ? strchr(p + 1, '.') : NULL;
	unsigned char *raw = NULL;
	size_t len = 0;
	json_t *claims;
	int yes = 0;

	if (q == NULL || b64url_decode(p + 1, (size_t)(q - p - 1), &raw, &len) < 0)
		return 0;
	claims = json_loadb((const char *)raw, len, 0, NULL);
	yes = json_is_true(json_object_get(claims, "new_user"));
	json_decref(claims);
	free(raw);
	return yes;
}

/* POST /v1/token: the authorization code exchange of /oidc/token, in Transmit's shape. */
void api_redirect_token(struct api_call *call)
{
	json_t *body = call->req->json, *client = NULL, *tokens = NULL;
	struct authcode_exchange x = {0};
	const char *why = NULL, *id_token;
	unsigned retry_after = 0;
	int rc;

	rc = client_check_secret(call->c, jsonio_str(body, "client_id"),
				 jsonio_str(body, "client_secret"), call->req->remote_addr, &client,
				 &retry_after);
	if (rc < 0) {
		api_fail(call, rc, NULL);
		return;
	}
	if (rc == CLIENT_THROTTLED) {
		api_rate_limited(call, retry_after);
		return;
	}
	if (rc == 0) {
		log_info("client authentication failed at /v1/token");
		resp_json(call->resp, 401,
			  json_pack("{s:s, s:i}", "message", "Invalid client credentials",
				    "error_code", 401));
		return;
	}
	x.client = client;
	x.code = jsonio_str(body, "code");
	rc = authcode_exchange(call->c, &x, &tokens, &why);
	if (rc == ERR_NONE) {
		id_token = json_string_value(json_object_get(tokens, "id_token"));
		resp_json(call->resp, 200,
			  json_pack("{s:O, s:O, s:O*, s:b}", "id_token",
				    json_object_get(tokens, "id_token"), "access_token",
				    json_object_get(tokens, "access_token"), "refresh_token",
				    json_object_get(tokens, "refresh_token"), "is_user_created",
				    id_token ? id_token_new_user(id_token) : 0));
	} else if (rc == ERR_BAD_CREDENTIALS) {
		resp_error(call->resp, ERR_INVALID_INPUT, why ? why : "Invalid code");
	} else {
		api_fail(call, rc, NULL);
	}
	json_decref(tokens);
	json_decref(client);
}

/* POST /v1/auth/logout with the user's access token. */
void api_redirect_logout(struct api_call *call)
{
	const char *token = req_bearer(call->req);
	size_t n = 0;
	int rc = token ? redirect_logout(call->c, token, &n) : ERR_INVALID_TOKEN;

	if (rc == ERR_NONE)
		resp_json(call->resp, 200,
			  json_pack("{s:I, s:{s:I}}", "sessions_count", (json_int_t)n, "result",
				    "sessions_count", (json_int_t)n));
	else
		api_fail(call, rc, NULL);
}
