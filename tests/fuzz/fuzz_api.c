/* fuzz_req's calls of the real parse steps; see fuzz_api.h. */
#include "fuzz_api.h"

#include <string.h>

#include "client.h"
#include "fuzz.h"
#include "link.h"
#include "mail.h"
#include "sms.h"
#include "user.h"

struct api_input fuzz_env[FUZZ_NENV];

static struct conf confs[FUZZ_NENV];

static void set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
	FUZZ_ASSERT(*field != NULL);
}

void fuzz_env_init(void)
{
	/* A client with every permission and list entry the corpus names, test mode (SMS). */
	conf_defaults(&confs[0]);
	fuzz_env[0].client = json_pack("{s:s, s:s, s:[s], s:[ss], s:[sss]}", "client_id",
				       "fuzz-client", "name", "Fuzz App", "permissions", "direct",
				       "redirect_uris", "https://app/cb", "https://app.example/cb",
				       "resources", "https://api", "https://api.example", "r");
	/* A client without any, SMS not configured, a default audience. */
	conf_defaults(&confs[1]);
	set_str(&confs[1].smtp_host, "mail.example");
	set_str(&confs[1].default_audience, "https://audience.example");
	confs[1].otp_length = 8;
	fuzz_env[1].client = json_pack("{s:s}", "client_id", "plain-client");
	for (int i = 0; i < FUZZ_NENV; i++) {
		FUZZ_ASSERT(fuzz_env[i].client != NULL);
		fuzz_env[i].conf = &confs[i];
	}
}

static void no_controls(const char *s)
{
	for (; s != NULL && *s; s++)
		FUZZ_ASSERT((unsigned char)*s >= 0x20 && *s != 0x7f);
}

/* A canonical identifier: printable, no spaces, the one the request names. */
static void identifier_ok(const char *owned, const char *in_req)
{
	FUZZ_ASSERT(owned != NULL && in_req == owned && owned[0] != '\0');
	no_controls(owned);
	FUZZ_ASSERT(strchr(owned, ' ') == NULL);
}

/* The audience: a resource only when the client registered it. */
static void audience_ok(const struct api_input *in, const char *aud)
{
	const char *resource = json_string_value(json_object_get(in->body, "resource"));

	FUZZ_ASSERT(aud != NULL && aud[0] != '\0');
	if (resource != NULL)
		FUZZ_ASSERT(aud == resource && client_lists(in->client, "resources", resource));
}

static void content_ok(const struct api_input *in, const struct mail_content *content)
{
	FUZZ_ASSERT((content != NULL) == (json_object_get(in->body, "email_content") != NULL));
	if (content != NULL) {
		FUZZ_ASSERT(content->subject != NULL);
		FUZZ_ASSERT(content->primary_color == NULL ||
			    mail_color_valid(content->primary_color));
	}
}

static int parse_otp_send(const struct api_input *in, struct api_refusal *no)
{
	struct api_otp_send s;
	const struct otp_send_req *r = &s.r;
	int rc = api_otp_send_parse(in, &s, no);

	if (rc == 0) {
		identifier_ok(s.identifier, r->identifier);
		FUZZ_ASSERT(r->client == in->client);
		FUZZ_ASSERT(strcmp(r->channel, "direct") != 0 ||
			    client_has_permission(in->client, "direct"));
		FUZZ_ASSERT(r->custom_email == NULL || mail_address_valid(r->custom_email));
		FUZZ_ASSERT(r->custom_phone == NULL || user_phone_valid(r->custom_phone));
		FUZZ_ASSERT(r->sender_id == NULL || sms_sender_valid(r->sender_id));
		FUZZ_ASSERT(r->minutes <= 1440);
		content_ok(in, r->content);
	}
	api_otp_send_free(&s);
	FUZZ_ASSERT(s.identifier == NULL);
	return rc;
}

static int parse_otp_auth(const struct api_input *in, struct api_refusal *no)
{
	struct api_otp_auth a;
	int rc = api_otp_auth_parse(in, &a, no);

	if (rc == 0) {
		identifier_ok(a.identifier, a.r.identifier);
		audience_ok(in, a.aud);
		FUZZ_ASSERT(a.r.passcode != NULL && a.r.retry_after == NULL);
	}
	api_otp_auth_free(&a);
	return rc;
}

static int parse_link_send(const struct api_input *in, struct api_refusal *no)
{
	struct api_link_send s;
	const struct link_send_req *r = &s.r;
	int rc = api_link_send_parse(in, &s, no);

	if (rc == 0) {
		identifier_ok(s.identifier, r->identifier);
		FUZZ_ASSERT(client_lists(in->client, "redirect_uris", r->redirect_uri));
		FUZZ_ASSERT(link_redirect_fits(r->redirect_uri, r->state));
		FUZZ_ASSERT(!r->direct || client_has_permission(in->client, "direct"));
		FUZZ_ASSERT(r->minutes <= 10080);
		content_ok(in, r->content);
	}
	api_link_send_free(&s);
	return rc;
}

static int parse_link_auth(const struct api_input *in, struct api_refusal *no)
{
	struct api_link_auth a;
	int rc = api_link_auth_parse(in, &a, no);

	if (rc == 0) {
		audience_ok(in, a.aud);
		FUZZ_ASSERT(a.r.code != NULL && a.r.client == in->client);
	}
	return rc;
}

static int parse_session_auth(const struct api_input *in, struct api_refusal *no)
{
	struct api_session_auth a;
	int rc = api_session_auth_parse(in, &a, no);

	if (rc == 0) {
		audience_ok(in, a.aud);
		FUZZ_ASSERT(a.opts.session_id != NULL);
	}
	return rc;
}

static int parse_token_refresh(const struct api_input *in, struct api_refusal *no)
{
	FUZZ_ASSERT(api_token_refresh_parse(in) != NULL);
	return 0;
}

static int parse_session_logout(const struct api_input *in, struct api_refusal *no)
{
	FUZZ_ASSERT(api_session_logout_parse(in) != NULL);
	return 0;
}

const struct fuzz_endpoint fuzz_endpoints[] = {
    {"/v1/auth/otp/send", parse_otp_send},
    {"/v1/auth/otp/authenticate", parse_otp_auth},
    {"/v1/auth/link/email/send", parse_link_send},
    {"/v1/auth/link/email/authenticate", parse_link_auth},
    {"/v1/auth/session/authenticate", parse_session_auth},
    {"/v1/auth/token/refresh", parse_token_refresh},
    {"/v1/auth/session/logout", parse_session_logout},
};
const size_t fuzz_nendpoints = sizeof(fuzz_endpoints) / sizeof(fuzz_endpoints[0]);
