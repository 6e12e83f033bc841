/*
 * The handlers' parse steps (api_parse.h): what each accepts, and which refusal comes first
 * when a body has several faults (the order is part of the answers clients see). Bodies pass
 * the endpoint's field table first, as route checks it before the handler runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_parse.h"
#include "check.h"

static struct conf conf_sms, conf_plain;
static json_t *client_all, *client_direct, *client_none;

/* A body the endpoint's table accepts (a failure here is a broken test case). */
static json_t *body(const char *text, const struct jv_field *fields)
{
	char err[256];
	json_t *b = jsonio_parse(text, strlen(text), err, sizeof(err));

	check_msg(b != NULL && jsonio_check(b, fields, err, sizeof(err)) == 0, "%s: %s", text,
		  b ? err : "not JSON");
	return b;
}

static struct api_input input(json_t *b, json_t *client, const struct conf *conf)
{
	struct api_input in = {b, client, conf};
	return in;
}

/* no holds the refusal err with message. */
static int refused(const struct api_refusal *no, enum err err, const char *message)
{
	int ok = no->err == err && strcmp(no->message, message) == 0;

	if (!ok)
		printf("# got %d \"%s\"\n", (int)no->err, no->message);
	return ok;
}

struct send_case {
	const char *body;
	json_t **client;
	const struct conf *conf;
	enum err err; /* ERR_NONE: accepted */
	const char *message;
};

static void otp_send_cases(void)
{
	static const struct send_case cases[] = {
	    {"{\"channel\":\"email\",\"identifier_type\":\"email\",\"identifier\":\"A@Example."
	     "COM\"}",
	     &client_none, &conf_plain, ERR_NONE, NULL},
	    /* The permission comes before the custom address. */
	    {"{\"channel\":\"direct\",\"identifier_type\":\"email\",\"identifier\":\"a@b.c\","
	     "\"custom_email\":\"not an address\"}",
	     &client_none, &conf_sms, ERR_FORBIDDEN,
	     "The client lacks the permission for the direct channel"},
	    {"{\"channel\":\"direct\",\"identifier_type\":\"email\",\"identifier\":\"a@b.c\","
	     "\"custom_email\":\"not an address\"}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT, "custom_email is not a valid address"},
	    {"{\"channel\":\"sms\",\"identifier_type\":\"email\",\"identifier\":\"a@b.c\","
	     "\"custom_phone_number\":\"12\"}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT,
	     "custom_phone_number must be an E.164 number: + and 7 to 15 digits"},
	    /* The SMS inputs come before email_content, which comes before the identifier. */
	    {"{\"channel\":\"sms\",\"identifier_type\":\"email\",\"identifier\":\"x\","
	     "\"custom_sms_input\":{\"sender_id\":\"!\"},\"email_content\":{\"subject\":\"s\","
	     "\"primaryColor\":\"red\"}}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT,
	     "custom_sms_input.sender_id must be 1 to 11 letters, digits or inner spaces"},
	    {"{\"channel\":\"sms\",\"identifier_type\":\"phone_number\",\"identifier\":"
	     "\"+4915112345678\"}",
	     &client_all, &conf_plain, ERR_INVALID_INPUT,
	     "SMS delivery is not configured on this server"},
	    {"{\"channel\":\"email\",\"identifier_type\":\"email\",\"identifier\":\"x\","
	     "\"email_content\":{\"subject\":\"s\",\"primaryColor\":\"red\"}}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT,
	     "email_content.primaryColor must be #RRGGBB"},
	    {"{\"channel\":\"email\",\"identifier_type\":\"email\",\"identifier\":\"x\"}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT,
	     "identifier is not valid for its identifier_type"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct send_case *c = &cases[i];
		json_t *b = body(c->body, api_otp_send_fields);
		struct api_input in = input(b, *c->client, c->conf);
		struct api_otp_send s;
		struct api_refusal no;
		int rc = api_otp_send_parse(&in, &s, &no);

		if (c->err == ERR_NONE)
			check(rc == 0 && s.r.identifier == s.identifier && s.r.content == NULL &&
			      strcmp(s.identifier, "a@example.com") == 0);
		else
			check(rc == -1 && refused(&no, c->err, c->message));
		api_otp_send_free(&s);
		json_decref(b);
	}
}

static void otp_send_content(void)
{
	json_t *b =
	    body("{\"channel\":\"sms\",\"identifier_type\":\"phone_number\",\"identifier\":"
		 "\"+4915112345678\",\"custom_sms_input\":{\"custom_message\":\"{otp}!\","
		 "\"sender_id\":\"Acme\"},\"email_content\":{\"subject\":\"Hi\"},"
		 "\"expires_in\":5,\"generate_request_id\":true,\"approval_data\":{\"k\":\"v\"}}",
		 api_otp_send_fields);
	struct api_input in = input(b, client_all, &conf_sms);
	struct api_otp_send s;
	struct api_refusal no;

	check(api_otp_send_parse(&in, &s, &no) == 0);
	check(s.r.content == &s.content && strcmp(s.content.subject, "Hi") == 0);
	check(strcmp(s.r.sms_template, "{otp}!") == 0 && strcmp(s.r.sender_id, "Acme") == 0);
	check(s.r.minutes == 5 && s.r.want_request_id == 1 && s.r.client == client_all);
	check(s.r.idtype == ID_PHONE && strcmp(s.r.identifier, "+4915112345678") == 0);
	check(s.r.approval_data == json_object_get(b, "approval_data"));
	api_otp_send_free(&s);
	json_decref(b);
}

static void otp_auth(void)
{
	json_t *b = body("{\"passcode\":\"1\",\"identifier_type\":\"email\",\"identifier\":\"x\","
			 "\"resource\":\"https://other\"}",
			 api_otp_auth_fields);
	struct api_input in = input(b, client_all, &conf_sms);
	struct api_otp_auth a;
	struct api_refusal no;

	/* The resource comes before the identifier. */
	check(api_otp_auth_parse(&in, &a, &no) == -1 &&
	      refused(&no, ERR_INVALID_INPUT, "resource is not registered for this client"));
	api_otp_auth_free(&a);
	json_decref(b);

	b = body("{\"passcode\":\"1\",\"identifier_type\":\"username\",\"identifier\":\"bob\","
		 "\"session_id\":\"s\",\"client_attributes\":{\"ip_address\":\"10.0.0.1\"}}",
		 api_otp_auth_fields);
	in = input(b, client_all, &conf_sms);
	check(api_otp_auth_parse(&in, &a, &no) == 0);
	check(strcmp(a.aud, "all") == 0 && strcmp(a.r.identifier, "bob") == 0);
	check(strcmp(a.r.ip, "10.0.0.1") == 0 && strcmp(a.r.opts.session_id, "s") == 0);
	check(a.r.retry_after == NULL && strcmp(a.r.passcode, "1") == 0);
	api_otp_auth_free(&a);
	json_decref(b);
}

static void link_send_cases(void)
{
	static const struct send_case cases[] = {
	    {"{\"email\":\"A@B.C\",\"redirect_uri\":\"https://app/cb\",\"state\":\"s\"}",
	     &client_all, &conf_sms, ERR_NONE, NULL},
	    /* The redirect URI comes first, whatever else is wrong. */
	    {"{\"redirect_uri\":\"https://evil/cb\",\"channel\":\"direct\"}", &client_none,
	     &conf_sms, ERR_INVALID_INPUT,
	     "redirect_uri is not one of the allowed redirect URIs configured for this app"},
	    {"{\"redirect_uri\":\"https://app/cb\",\"channel\":\"direct\"}", &client_none,
	     &conf_sms, ERR_FORBIDDEN, "The client lacks the permission for the direct channel"},
	    /* email_content comes before the identifier. */
	    {"{\"redirect_uri\":\"https://app/cb\",\"channel\":\"direct\",\"email_content\":"
	     "{\"subject\":\"s\",\"primaryColor\":\"red\"}}",
	     &client_direct, &conf_sms, ERR_INVALID_INPUT,
	     "email_content.primaryColor must be #RRGGBB"},
	    {"{\"redirect_uri\":\"https://app/cb\",\"email\":\"a@b.c\",\"identifier\":\"x\"}",
	     &client_all, &conf_sms, ERR_INVALID_INPUT,
	     "Use either email or identifier with identifier_type"},
	    {"{\"redirect_uri\":\"https://app/cb\",\"identifier\":\"x\"}", &client_all, &conf_sms,
	     ERR_INVALID_INPUT, "email, or identifier with identifier_type, is required"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct send_case *c = &cases[i];
		json_t *b = body(c->body, api_link_send_fields);
		struct api_input in = input(b, *c->client, c->conf);
		struct api_link_send s;
		struct api_refusal no;
		int rc = api_link_send_parse(&in, &s, &no);

		if (c->err == ERR_NONE)
			check(rc == 0 && strcmp(s.r.identifier, "a@b.c") == 0 &&
			      s.r.idtype == ID_EMAIL && strcmp(s.r.state, "s") == 0 && !s.r.direct);
		else
			check(rc == -1 && refused(&no, c->err, c->message));
		api_link_send_free(&s);
		json_decref(b);
	}
}

/* A redirect that would not fit a header is refused before the channel's permission. */
static void link_send_too_long(void)
{
	char uri[1100], state[513], text[2000];
	json_t *client, *b;
	struct api_input in;
	struct api_link_send s;
	struct api_refusal no;

	snprintf(uri, sizeof(uri), "https://app/%01000d", 0);
	memset(state, '%', 512);
	state[512] = '\0';
	client = json_pack("{s:s, s:[s]}", "client_id", "long", "redirect_uris", uri);
	snprintf(text, sizeof(text),
		 "{\"redirect_uri\":\"%s\",\"state\":\"%s\",\"channel\":\"direct\"}", uri, state);
	b = body(text, api_link_send_fields);
	in = input(b, client, &conf_sms);
	check(api_link_send_parse(&in, &s, &no) == -1 &&
	      refused(&no, ERR_INVALID_INPUT,
		      "redirect_uri and state are too long for the redirect: with the code and "
		      "state percent-encoded they must fit 2047 bytes"));
	api_link_send_free(&s);
	json_decref(b);
	json_decref(client);
}

static void audiences(void)
{
	json_t *b =
	    body("{\"session_id\":\"s\",\"resource\":\"https://api\"}", api_session_auth_fields);
	struct api_input in = input(b, client_all, &conf_sms);
	struct api_session_auth a;
	struct api_link_auth l;
	struct api_refusal no;

	check(api_session_auth_parse(&in, &a, &no) == 0 && strcmp(a.aud, "https://api") == 0);
	json_decref(b);
	/* Without a resource: the configured default audience, else the client_id. */
	b = body("{\"code\":\"c\"}", api_link_auth_fields);
	in = input(b, client_all, &conf_plain);
	check(api_link_auth_parse(&in, &l, &no) == 0 &&
	      strcmp(l.aud, "https://audience.example") == 0 && strcmp(l.r.code, "c") == 0);
	in = input(b, client_all, &conf_sms);
	check(api_link_auth_parse(&in, &l, &no) == 0 && strcmp(l.aud, "all") == 0);
	json_decref(b);
}

/* A request with a form body and an Authorization header. */
static void form_req(struct req *r, const char *form, const char *authorization)
{
	memset(r, 0, sizeof(*r));
	r->body = strdup(form);
	r->body_len = strlen(form);
	r->authorization = authorization;
	check(req_parse_form(r) == 0);
}

static void oauth(void)
{
	struct req r;
	struct api_token_req t;
	struct api_revocation_req v;
	struct api_refusal no;

	form_req(&r, "client_id=c&client_secret=s", NULL);
	check(api_token_parse(&r, &t, &no) == -1 && no.oauth_error != NULL &&
	      strcmp(no.oauth_error, "invalid_request") == 0 && no.status == 400 &&
	      strcmp(no.message, "grant_type is required") == 0);
	api_client_auth_free(&t.auth);
	req_free(&r);

	/* The grant type comes before the client's credentials. */
	form_req(&r, "grant_type=password", NULL);
	check(api_token_parse(&r, &t, &no) == -1 &&
	      strcmp(no.oauth_error, "unsupported_grant_type") == 0 && no.message[0] == '\0');
	api_client_auth_free(&t.auth);
	req_free(&r);

	/* No credentials at all; a client_id alone names a public client (no secret). */
	form_req(&r, "grant_type=refresh_token", NULL);
	check(api_token_parse(&r, &t, &no) == -1 && no.status == 401 &&
	      strcmp(no.oauth_error, "invalid_client") == 0);
	api_client_auth_free(&t.auth);
	req_free(&r);
	form_req(&r,
		 "grant_type=authorization_code&client_id=c&code=k&redirect_uri=u&code_verifier=v",
		 NULL);
	check(api_token_parse(&r, &t, &no) == 0 && t.grant == API_GRANT_AUTHORIZATION_CODE &&
	      strcmp(t.auth.client_id, "c") == 0 && t.auth.secret == NULL &&
	      strcmp(t.code, "k") == 0 && strcmp(t.redirect_uri, "u") == 0 &&
	      strcmp(t.code_verifier, "v") == 0);
	api_client_auth_free(&t.auth);
	req_free(&r);

	/* Basic "c:s" and a form secret: two methods. */
	form_req(&r, "grant_type=client_credentials&client_secret=s", "Basic Yzpz");
	check(api_token_parse(&r, &t, &no) == -1 && no.status == 400 &&
	      strcmp(no.message, "Use exactly one client authentication method") == 0);
	api_client_auth_free(&t.auth);
	req_free(&r);

	/* A missing refresh token is the action's to answer, after the client is known. */
	form_req(&r, "grant_type=refresh_token&client_id=c", "Basic Yzpz");
	check(api_token_parse(&r, &t, &no) == 0 && t.grant == API_GRANT_REFRESH_TOKEN &&
	      t.refresh_token == NULL && strcmp(t.auth.client_id, "c") == 0 &&
	      strcmp(t.auth.secret, "s") == 0);
	api_client_auth_free(&t.auth);
	check(t.auth.basic_user == NULL && t.auth.basic_pass == NULL);
	req_free(&r);

	form_req(&r, "client_id=c&client_secret=s", NULL);
	check(api_revocation_parse(&r, &v, &no) == 0 && v.token == NULL &&
	      strcmp(v.auth.secret, "s") == 0 && v.auth.basic_user == NULL);
	api_client_auth_free(&v.auth);
	req_free(&r);
}

int main(void)
{
	conf_defaults(&conf_sms); /* no SMTP host: test mode, where SMS go to the spool */
	conf_defaults(&conf_plain);
	free(conf_plain.smtp_host);
	conf_plain.smtp_host = strdup("mail.example");
	free(conf_plain.default_audience);
	conf_plain.default_audience = strdup("https://audience.example");
	client_all = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "client_id", "all", "name", "App",
			       "permissions", "direct", "redirect_uris", "https://app/cb",
			       "resources", "https://api");
	client_direct = json_pack("{s:s, s:[s], s:[s]}", "client_id", "direct", "permissions",
				  "direct", "redirect_uris", "https://app/cb");
	client_none =
	    json_pack("{s:s, s:[s]}", "client_id", "none", "redirect_uris", "https://app/cb");

	otp_send_cases();
	otp_send_content();
	otp_auth();
	link_send_cases();
	link_send_too_long();
	audiences();
	oauth();

	json_decref(client_all);
	json_decref(client_direct);
	json_decref(client_none);
	conf_free(&conf_sms);
	conf_free(&conf_plain);
	return check_done();
}
