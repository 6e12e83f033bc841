/* What the endpoint handlers share: field tables, email_content, audience, answers. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>

#include "client.h"
#include "jsonio.h"
#include "mail.h"
#include "store.h"
#include "user.h"

const struct jv_field api_email_content_fields[] = {
    JV_F_STRING("subject", 1, 200),	 JV_F_STRING("primaryColor", 0, 7),
    JV_F_STRING("base64logo", 0, 20000), JV_F_TEXT("headerText", 0, 2000),
    JV_F_TEXT("bodyText", 0, 5000),	 JV_F_TEXT("linkText", 0, 200),
    JV_F_TEXT("infoText", 0, 2000),	 JV_F_TEXT("footerText", 0, 2000),
    JV_F_STRING("senderName", 0, 100),	 JV_END,
};

const struct jv_field api_client_attribute_fields[] = {
    JV_F_TEXT("user_agent", 0, 1024),
    JV_F_IPADDR("ip_address", 0),
    JV_END,
};

const struct jv_field api_login_fields[] = {
    JV_F_STRING("resource", 0, 512),
    JV_F_OBJECT("claims", 0, NULL),
    JV_F_STRING("org_id", 0, 128),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("session_id", 0, 256),
    JV_F_STRING("device_id", 0, 80),
    JV_F_STRING("request_id", 0, 256),
    JV_END,
};

int api_refuse(struct api_refusal *no, enum err err, const char *fmt, ...)
{
	va_list ap;

	no->err = err;
	no->oauth_error = NULL;
	no->status = 0;
	va_start(ap, fmt);
	vsnprintf(no->message, sizeof(no->message), fmt, ap);
	va_end(ap);
	return -1;
}

int api_refuse_oauth(struct api_refusal *no, int status, const char *error, const char *description)
{
	no->err = ERR_INVALID_INPUT;
	no->oauth_error = error;
	no->status = status;
	snprintf(no->message, sizeof(no->message), "%s", description ? description : "");
	return -1;
}

struct api_input api_input_of(struct api_call *call)
{
	struct api_input in = {call->req->json, call->client, call->c->conf};
	return in;
}

void api_refused(struct api_call *call, const struct api_refusal *no)
{
	if (no->oauth_error != NULL)
		resp_oauth_error(call->resp, no->status, no->oauth_error,
				 no->message[0] ? no->message : NULL);
	else
		resp_error(call->resp, no->err, no->message);
}

char *api_canonical(enum user_idtype type, const char *value, struct api_refusal *no)
{
	char *canonical = user_normalize(type, value);

	if (canonical == NULL)
		api_refuse(no, ERR_INVALID_INPUT,
			   "identifier is not valid for its identifier_type");
	return canonical;
}

int api_email_content(json_t *body, struct mail_content *m, struct api_refusal *no)
{
	json_t *ec = json_object_get(body, "email_content");
	if (ec == NULL)
		return 0;
	m->subject = jsonio_str(ec, "subject");
	m->primary_color = jsonio_str(ec, "primaryColor");
	m->base64logo = jsonio_str(ec, "base64logo");
	m->header_text = jsonio_str(ec, "headerText");
	m->body_text = jsonio_str(ec, "bodyText");
	m->link_text = jsonio_str(ec, "linkText");
	m->info_text = jsonio_str(ec, "infoText");
	m->footer_text = jsonio_str(ec, "footerText");
	m->sender_name = jsonio_str(ec, "senderName");
	if (m->primary_color != NULL && !mail_color_valid(m->primary_color))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "email_content.primaryColor must be #RRGGBB");
	return 1;
}

int api_audience(const struct api_input *in, const char *resource, const char **aud,
		 struct api_refusal *no)
{
	if (resource != NULL) {
		if (!client_lists(in->client, "resources", resource))
			return api_refuse(no, ERR_INVALID_INPUT,
					  "resource is not registered for this client");
		*aud = resource;
	} else if (in->conf->default_audience[0] != '\0') {
		*aud = in->conf->default_audience;
	} else {
		*aud = json_string_value(json_object_get(in->client, "client_id"));
	}
	return 0;
}

void api_login_opts(json_t *body, struct login_opts *opts)
{
	opts->session_id = jsonio_str(body, "session_id");
	opts->resource = jsonio_str(body, "resource");
	opts->claims = json_object_get(body, "claims");
	opts->org_id = jsonio_str(body, "org_id");
	opts->device_id = jsonio_str(body, "device_id");
}

const char *api_end_user_ip(json_t *body)
{
	json_t *attrs = json_object_get(body, "client_attributes");

	/*
	 * Only an address the backend reports for its end user: without one, the peer is the
	 * backend itself, shared by all its users, and limiting it would stop the whole site.
	 */
	return jsonio_str(attrs, "ip_address");
}

void api_retry_later(struct api_call *call, int err, unsigned retry_after)
{
	resp_header(call->resp, "Retry-After", "%u", retry_after ? retry_after : 1);
	resp_error(call->resp, (enum err)err, NULL);
}

void api_rate_limited(struct api_call *call, unsigned retry_after)
{
	api_retry_later(call, ERR_RATE_LIMITED, retry_after);
}

void api_sent(struct api_call *call, int rc, unsigned retry_after, const char *message,
	      json_t *approval_data, const char *request_id, const char *key, const char *value)
{
	json_t *out;

	if (rc == ERR_RATE_LIMITED) {
		api_rate_limited(call, retry_after);
		return;
	}
	if (rc != ERR_NONE) {
		api_fail(call, rc, NULL);
		return;
	}
	out = json_pack("{s:s}", "message", message);
	if (approval_data != NULL)
		json_object_set(out, "approval_data", approval_data);
	if (request_id != NULL)
		json_object_set_new(out, "request_id", json_string(request_id));
	if (value != NULL)
		json_object_set_new(out, key, json_string(value));
	resp_json(call->resp, 200, out);
}

void api_authenticated(struct api_call *call, int rc, json_t *tokens, unsigned retry_after)
{
	if (rc == ERR_NONE)
		resp_json(call->resp, 200, tokens);
	else if (rc == ERR_RATE_LIMITED || rc == ERR_LOCKED)
		api_retry_later(call, rc, retry_after);
	else
		api_fail(call, rc, NULL);
}

void api_fail(struct api_call *call, int err, const char *detail)
{
	if (err < 0) {
		/* A store failure: never a half answer. A fatal one also ends this worker. */
		if (err == STORE_FATAL || store_failed(call->c->store))
			call->resp->fatal = 1;
		resp_error(call->resp, ERR_UNAVAILABLE, NULL);
		return;
	}
	if (err == ERR_UNAVAILABLE && store_failed(call->c->store))
		call->resp->fatal = 1;
	resp_error(call->resp, (enum err)err, detail);
}
