/*
 * hosted and authz on a real store: a flow's one mail holds what the client's login_methods
 * allow (code, link, both; neither refuses), the right code ends the flow in the code redirect
 * (state, iss) exactly once, a guess where no code was sent locks nobody, a link confirms the
 * waiting flow from another browser, and a pushed request is taken once, by its client only.
 */
#include <dirent.h>
#include <time.h>

#include "authcode.h"
#include "authz.h"
#include "err.h"
#include "jwt.h"
#include "fixture.h"
#include "hosted.h"

#define REDIRECT "https://app.example/cb"

static json_t *client;
static char maildir[128];

/* The text of every message in the Maildir's new/ since the last call (then removed), with
 * quoted-printable soft breaks and =3D undone; a new string. */
static char *take_mail(void)
{
	char dir[160], path[512], buf[65536], *out = NULL;
	struct dirent *e;
	size_t len = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/new", maildir);
	out = calloc(1, 1);
	if ((d = opendir(dir)) == NULL)
		return out;
	while ((e = readdir(d)) != NULL) {
		FILE *f;
		size_t n;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		unlink(path);
		buf[n] = '\0';
		out = realloc(out, len + n + 1);
		for (size_t i = 0; i < n; i++) {
			if (buf[i] == '=' && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
				i += 2;
				continue;
			}
			if (buf[i] == '=' && buf[i + 1] == '3' && buf[i + 2] == 'D') {
				out[len++] = '=';
				i += 2;
				continue;
			}
			out[len++] = buf[i];
		}
		out[len] = '\0';
	}
	closedir(d);
	return out;
}

/* The code line ("    123456") of a mail, into code; 0 or -1. */
static int mail_code(const char *mail, char code[16])
{
	const char *p = strstr(mail, "\r\n    ");

	if (p == NULL || strspn(p + 6, "0123456789") != conf.otp_length)
		return -1;
	snprintf(code, 16, "%.*s", (int)conf.otp_length, p + 6);
	return 0;
}

/* The link token of a mail, into tok; 0 or -1. */
static int mail_link(const char *mail, char tok[64])
{
	const char *p = strstr(mail, "/oidc/login/link?t=");
	size_t n;

	if (p == NULL)
		return -1;
	p += strlen("/oidc/login/link?t=");
	n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
	if (n == 0 || n >= 64)
		return -1;
	snprintf(tok, 64, "%.*s", (int)n, p);
	return 0;
}

static json_t *params(void)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "client_id", client_id_of(client),
			 "redirect_uri", REDIRECT, "response_type", "code", "scope", "openid",
			 "state", "st&1", "nonce", "n-1");
}

/* A new flow for the standard request (new string). */
static char *new_flow(void)
{
	json_t *p = params();
	char *id = NULL;

	unsigned wait;

	check(authz_flow_start(&c, p, "192.0.2.1", &id, &wait) == ERR_NONE && id != NULL);
	json_decref(p);
	return id;
}

/* A copy of the client with login_methods (NULL: none). */
static json_t *with_methods(const char *a, const char *b)
{
	json_t *cl = json_deep_copy(client), *m = json_array();

	if (a != NULL)
		json_array_append_new(m, json_string(a));
	if (b != NULL)
		json_array_append_new(m, json_string(b));
	json_object_set_new(cl, "login_methods", m);
	return cl;
}

static void mail_contents(void)
{
	char *flow = new_flow(), *mail, code[16], tok[64];
	json_t *code_only = with_methods("email_otp", NULL),
	       *link_only = with_methods("magic_link", NULL);
	json_t *neither = with_methods("sms_otp", NULL);
	struct hosted_view v;
	unsigned wait;

	check(hosted_send(&c, client, flow, "alice@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0 && mail_link(mail, tok) == 0);
	free(mail);

	check(hosted_send(&c, code_only, flow, "alice@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0 && mail_link(mail, tok) < 0);
	free(mail);
	check(hosted_view(&c, flow, &v) == 0 && v.step == HOSTED_CODE && v.link_off && !v.code_off);
	hosted_view_free(&v);

	check(hosted_send(&c, link_only, flow, "alice@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) < 0 && mail_link(mail, tok) == 0);
	free(mail);
	check(hosted_view(&c, flow, &v) == 0 && v.step == HOSTED_CODE && v.code_off && !v.link_off);
	hosted_view_free(&v);

	check(hosted_send(&c, neither, flow, "alice@example.com", &wait) == ERR_FORBIDDEN);
	mail = take_mail();
	check(mail[0] == '\0');
	free(mail);
	json_decref(code_only);
	json_decref(link_only);
	json_decref(neither);
	crypto_free_str(flow);
}

static void code_login(void)
{
	char *flow = new_flow(), *mail, code[16], tok[64];
	json_t *link_only = with_methods("magic_link", NULL);
	struct hosted_done d;
	unsigned wait;

	/*
	 * Guesses where no code was sent (a link-only mail) count against nobody's account: two
	 * counted failures would make the account wait (and the right code below fail).
	 */
	conf.account_failures.limit = 2;
	check(hosted_send(&c, link_only, flow, "alice@example.com", &wait) == ERR_NONE);
	free(take_mail());
	for (int i = 0; i < 15; i++)
		check(hosted_code(&c, flow, "000000", NULL, NULL, &d) == ERR_BAD_CREDENTIALS);
	/* A code flow for the same account still logs in. */
	check(hosted_send(&c, client, flow, "alice@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0 && mail_link(mail, tok) == 0);
	free(mail);
	check(hosted_code(&c, flow, code, NULL, NULL, &d) == ERR_NONE);
	check(d.location != NULL &&
	      strncmp(d.location, REDIRECT "?code=", strlen(REDIRECT) + 6) == 0);
	check(d.location && strstr(d.location, "&state=st%261&iss=http%3A%2F%2F127.0.0.1%2Fcis"));
	check(d.session_id != NULL && strlen(d.session_id) >= 43);
	hosted_done_free(&d);
	conf.account_failures.limit = 10;
	/* The flow and its link end with the login. */
	check(hosted_code(&c, flow, code, NULL, NULL, &d) == ERR_NOT_FOUND);
	{
		struct hosted_link l;
		check(hosted_link_peek(&c, tok, &l) == 0 && l.state == HOSTED_LINK_UNKNOWN);
		hosted_link_free(&l);
	}
	json_decref(link_only);
	crypto_free_str(flow);
}

static void cross_device(void)
{
	char *flow = new_flow(), *other = new_flow(), *mail, code[16], tok[64];
	struct hosted_link l;
	struct hosted_view v;
	struct hosted_done d;
	unsigned wait;

	check(hosted_send(&c, client, flow, "bob@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0 && mail_link(mail, tok) == 0);
	free(mail);
	check(hosted_link_peek(&c, tok, &l) == 0 && l.state == HOSTED_LINK_VALID);
	check(json_is_object(l.params));
	hosted_link_free(&l);
	/* Opened by a browser holding another flow: it confirms the waiting one only. */
	check(hosted_link_open(&c, tok, other, NULL, NULL, &l) == ERR_NONE);
	check(l.state == HOSTED_LINK_VALID && !l.here && l.d.location == NULL);
	hosted_link_free(&l);
	check(hosted_view(&c, other, &v) == 0 && v.step == HOSTED_EMAIL);
	hosted_view_free(&v);
	check(hosted_poll(&c, other, NULL, NULL, &d) == ERR_NOT_FOUND);
	check(hosted_view(&c, flow, &v) == 0 && v.step == HOSTED_CONFIRMED);
	hosted_view_free(&v);
	check(hosted_link_open(&c, tok, NULL, NULL, NULL, &l) == ERR_NONE &&
	      l.state == HOSTED_LINK_USED);
	hosted_link_free(&l);
	check(hosted_poll(&c, flow, NULL, NULL, &d) == ERR_NONE && d.location != NULL);
	hosted_done_free(&d);
	check(hosted_poll(&c, flow, NULL, NULL, &d) == ERR_NOT_FOUND);
	crypto_free_str(flow);
	crypto_free_str(other);
}

static void flow_limit(void)
{
	json_t *p = params();
	char *id = NULL;
	unsigned wait = 0;

	conf.authorization_flows.limit = 2;
	conf.authorization_flows.period = 600;
	for (int i = 0; i < 2; i++) {
		check(authz_flow_start(&c, p, "198.51.100.7", &id, &wait) == ERR_NONE);
		crypto_free_str(id);
		id = NULL;
	}
	check(authz_flow_start(&c, p, "198.51.100.7", &id, &wait) == ERR_RATE_LIMITED);
	/* Within about a period (the windows count in slices of it). */
	check_msg(id == NULL && wait > 0 && wait <= 2 * 600, "id %p wait %u", (void *)id, wait);
	/* Another address is not held back by this one. */
	check(authz_flow_start(&c, p, "198.51.100.8", &id, &wait) == ERR_NONE);
	crypto_free_str(id);
	conf.authorization_flows.limit = 0;
	json_decref(p);
}

/* The code of the one SMS in the test spool (then removed), into code; 0 or -1. */
static int take_sms(char code[16])
{
	char dir[160], path[512], buf[4096];
	struct dirent *e;
	int found = -1;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/sms", fixture_dir);
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		FILE *f;
		size_t n;
		char *p;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		unlink(path);
		buf[n] = '\0';
		/* "To: +1..." then a blank line, then the text: "123456 is your ... code". */
		if ((p = strstr(buf, "\n\n")) != NULL &&
		    strspn(p + 2, "0123456789") == conf.otp_length) {
			snprintf(code, 16, "%.*s", (int)conf.otp_length, p + 2);
			found = 0;
		}
	}
	closedir(d);
	return found;
}

/* The acr and amr of the ID token a code redirect's code is exchanged for. */
static void exchanged(const char *location, json_t *cl, json_t **idt)
{
	const char *p = strstr(location, "code=");
	char code[128];
	struct authcode_exchange x = {.client = cl, .code = code, .redirect_uri = REDIRECT};
	json_t *tokens = NULL;
	const char *why = NULL;

	*idt = NULL;
	snprintf(code, sizeof(code), "%.*s", p ? (int)strcspn(p + 5, "&") : 0, p ? p + 5 : "");
	check(authcode_exchange(&c, &x, &tokens, &why) == ERR_NONE);
	check(jwt_verify(json_string_value(json_object_get(tokens, "id_token")) ?: "",
			 keys.published, keys.npublished, "JWT", idt) == 1);
	json_decref(tokens);
}

static void second_factor(void)
{
	json_t *mfa_client = with_methods("email_otp", "sms_otp"), *p = params(), *idt = NULL;
	char *flow = NULL, *mail, code[16], tok[64], sms[16], *first_session;
	struct hosted_view v;
	struct hosted_done d;
	unsigned wait;

	/* The stored client allows SMS (a field client_create of this branch does not know). */
	check(fixture_put(TBL_CLIENTS, client_id_of(client), mfa_client) == 0);
	json_object_set_new(p, "acr_values", json_string("mfa"));
	check(authz_flow_start(&c, p, "192.0.2.9", &flow, &wait) == ERR_NONE);
	check(hosted_send(&c, mfa_client, flow, "carol@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0 && mail_link(mail, tok) < 0);
	free(mail);
	/* The first factor sets the session, and the page asks for the second. */
	check(hosted_code(&c, flow, code, NULL, NULL, &d) == ERR_NONE);
	check(d.location == NULL && d.session_id != NULL);
	first_session = d.session_id;
	d.session_id = NULL;
	hosted_done_free(&d);
	check(hosted_view(&c, flow, &v) == 0 && v.step == HOSTED_MFA);
	hosted_view_free(&v);
	check(hosted_send_mfa(&c, mfa_client, flow, &wait) == ERR_NONE);
	check(take_sms(sms) == 0);
	check(hosted_view(&c, flow, &v) == 0 && v.step == HOSTED_CODE && v.link_off);
	hosted_view_free(&v);
	/* The second factor belongs to the first one's session: without it, it fails. */
	check(hosted_code(&c, flow, sms, NULL, NULL, &d) == ERR_SESSION_NOT_FOUND);
	check(hosted_send_mfa(&c, mfa_client, flow, &wait) == ERR_NONE);
	check(take_sms(sms) == 0);
	check(hosted_code(&c, flow, sms, NULL, first_session, &d) == ERR_NONE);
	check(d.location != NULL && d.session_id && strcmp(d.session_id, first_session) == 0);
	if (d.location != NULL) {
		exchanged(d.location, mfa_client, &idt);
		check(strcmp(json_string_value(json_object_get(idt, "acr")) ?: "", "mfa") == 0);
		check(json_array_size(json_object_get(idt, "amr")) == 3); /* eotp, sms, mfa */
		json_decref(idt);
	}
	hosted_done_free(&d);
	crypto_free_str(first_session);
	crypto_free_str(flow);

	/* Without acr_values=mfa one factor is enough, and the ID token claims no acr. */
	flow = new_flow();
	check(hosted_send(&c, mfa_client, flow, "carol@example.com", &wait) == ERR_NONE);
	mail = take_mail();
	check(mail_code(mail, code) == 0);
	free(mail);
	check(hosted_code(&c, flow, code, NULL, NULL, &d) == ERR_NONE && d.location != NULL);
	if (d.location != NULL) {
		exchanged(d.location, mfa_client, &idt);
		check(json_object_get(idt, "acr") == NULL);
		json_decref(idt);
	}
	hosted_done_free(&d);
	crypto_free_str(flow);
	check(fixture_put(TBL_CLIENTS, client_id_of(client), client) == 0);
	json_decref(mfa_client);
	json_decref(p);
}

static void phone_login(void)
{
	json_t *sms_client = with_methods("sms_otp", NULL), *idt = NULL, *amr;
	char *flow = new_flow(), sms[16];
	struct hosted_done d;
	unsigned wait;

	/* Only where the client allows it. */
	check(hosted_send_phone(&c, client, flow, "+15551234567", &wait) == ERR_FORBIDDEN);
	check(take_sms(sms) < 0);
	check(hosted_send_phone(&c, sms_client, flow, "+15551234567", &wait) == ERR_NONE);
	check(take_sms(sms) == 0);
	check(hosted_code(&c, flow, sms, NULL, NULL, &d) == ERR_NONE && d.location != NULL);
	if (d.location != NULL) {
		exchanged(d.location, client, &idt);
		amr = json_object_get(idt, "amr");
		check(json_is_array(amr) && json_array_size(amr) == 1 &&
		      strcmp(json_string_value(json_array_get(amr, 0)) ?: "", "sms") == 0);
		json_decref(idt);
	}
	hosted_done_free(&d);
	json_decref(sms_client);
	crypto_free_str(flow);
}

static void pushed(void)
{
	json_t *p = params(), *got = NULL;
	char *uri = NULL;

	check(authz_par_store(&c, p, &uri) == ERR_NONE && uri != NULL);
	check(uri && strncmp(uri, AUTHZ_PAR_PREFIX, strlen(AUTHZ_PAR_PREFIX)) == 0);
	check(authz_par_take(&c, "another-client", uri, &got) == ERR_NOT_FOUND && got == NULL);
	check(authz_par_take(&c, client_id_of(client), uri, &got) == ERR_NONE);
	check(json_equal(got, p));
	json_decref(got);
	got = NULL;
	check(authz_par_take(&c, client_id_of(client), uri, &got) == ERR_NOT_FOUND);
	check(authz_par_take(&c, client_id_of(client), "urn:x", &got) == ERR_NOT_FOUND);
	free(uri);
	json_decref(p);
}

int main(void)
{
	json_t *spec;

	if (fixture_open("/dev/shm", "hosted", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	snprintf(maildir, sizeof(maildir), "%s/mail", fixture_dir);
	free(conf.maildir);
	conf.maildir = strdup(maildir);
	free(conf.smtp_host);
	conf.smtp_host = strdup("");
	c.mail = ctx_mail_conf(&conf);
	/* Many sends to one address: the send limits are test_ratelimit's, not these tests'. */
	conf.send_cooldown = 0;
	conf.recipient_sends.limit = conf.client_emails.limit = conf.client_sms.limit = 0;
	/* SMS go to the test spool (test mode: no smtp_host). */
	free(conf.sms_backend);
	conf.sms_backend = strdup("smstools");
	free(conf.sms_test_spool_dir);
	if (asprintf(&conf.sms_test_spool_dir, "%s/sms", fixture_dir) < 0)
		conf.sms_test_spool_dir = NULL;
	spec = json_pack("{s:s, s:[s], s:s, s:s}", "name", "Hosted", "redirect_uris", REDIRECT,
			 "signup", "closed", "existence", "reveal");
	client = fixture_client(spec);
	json_decref(spec);
	check(client != NULL);
	{
		char id[64];
		fixture_user("alice@example.com", NULL, NULL, id);
		fixture_user("bob@example.com", NULL, NULL, id);
		fixture_user("carol@example.com", "+15551234567", NULL, id);
	}
	mail_contents();
	code_login();
	cross_device();
	pushed();
	second_factor();
	phone_login();
	flow_limit();
	json_decref(client);
	fixture_close();
	return check_done();
}
