/*
 * client: creation with its validation (redirect URI rules included) and defaults, lookups
 * and the list without secrets; client_check_secret (the right secret always accepted, wrong
 * ones throttled per client and address, unknown ids never counted); client access tokens as
 * client_token_issue mints them, and every claim client_token_verify checks; the policy
 * helpers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "jwt.h"

static char err[256];

/* client_create of a spec in json_pack's format; id and secret (size 128 each) when made. */
static int create(char *id, char *secret, const char *fmt, ...)
{
	json_t *spec, *out = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	spec = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	err[0] = '\0';
	rc = client_create(&c, spec, &out, err, sizeof(err));
	json_decref(spec);
	if (rc == 0) {
		if (id != NULL)
			snprintf(id, 128, "%s",
				 json_string_value(json_object_get(out, "client_id")));
		if (secret != NULL)
			snprintf(secret, 128, "%s",
				 json_string_value(json_object_get(out, "client_secret")));
		check(json_object_size(out) == 2);
	}
	json_decref(out);
	return rc;
}

/* Whether a client with this one redirect URI (and allow_http_redirect when allow) is made. */
static int uri_ok(const char *uri, int allow)
{
	return allow ? create(NULL, NULL, "{s:s, s:[s], s:b}", "name", "u", "redirect_uris", uri,
			      "allow_http_redirect", 1) == 0
		     : create(NULL, NULL, "{s:s, s:[s]}", "name", "u", "redirect_uris", uri) == 0;
}

static json_t *get(const char *id)
{
	json_t *cl = NULL;
	return client_get(&c, id, &cl) == STORE_FOUND ? cl : NULL;
}

/* client_check_secret; the client is dropped, the wait goes to *wait (0 when none). */
static int secret_check(const char *id, const char *secret, const char *addr, unsigned *wait)
{
	json_t *cl = NULL;
	unsigned w = 0;
	int rc = client_check_secret(&c, id, secret, addr, &cl, &w);

	if (rc == 1)
		check(cl != NULL && strcmp(client_id_of(cl) ?: "", id) == 0);
	json_decref(cl);
	if (wait != NULL)
		*wait = w;
	return rc;
}

/* client_token_verify of token (freed); 1 only when it names client id. */
static int verify(char *token, const char *id)
{
	json_t *cl = NULL;
	int rc = token ? client_token_verify(&c, token, &cl) : -9;

	if (rc == 1 && strcmp(client_id_of(cl) ?: "", id) != 0)
		rc = -8;
	json_decref(cl);
	free(token);
	return rc;
}

/* A token signed with the client token key, of typ, with claims in json_pack's format. */
static char *mint(const char *typ, const char *fmt, ...)
{
	json_t *claims;
	char *token;
	va_list ap;

	va_start(ap, fmt);
	claims = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	token = claims ? jwt_sign_hs256(keys.client_token_mac, keys.client_token_kid, typ, claims)
		       : NULL;
	json_decref(claims);
	return token;
}

static int del_txn(struct store_txn *t, void *id)
{
	return store_del(t, TBL_CLIENTS, id, strlen(id));
}

static void creating(char *a, char *a_secret)
{
	char b[128], long_name[102];
	json_t *cl, *list, *v;
	size_t i;
	int no_secrets = 1, found = 0;

	check(create(a, a_secret, "{s:s, s:[s], s:[s], s:[s, s]}", "name", "App A", "redirect_uris",
		     "https://app.example/cb", "resources", "https://api.example", "permissions",
		     "direct", "admin") == 0);
	check(strlen(a) == 32 && strspn(a, "0123456789abcdef") == 32);
	check(strlen(a_secret) >= 43);
	cl = get(a);
	check(cl != NULL && strcmp(client_id_of(cl) ?: "", a) == 0);
	/* Defaults, and the secret kept only as a keyed hash. */
	check(strcmp(json_string_value(json_object_get(cl, "signup")) ?: "", "open") == 0);
	check(strcmp(json_string_value(json_object_get(cl, "existence")) ?: "", "reveal") == 0);
	check(!client_hides_existence(cl));
	check(json_is_string(json_object_get(cl, "secret")) &&
	      strcmp(json_string_value(json_object_get(cl, "secret")), a_secret) != 0);
	{
		char *text = json_dumps(cl, 0);
		check(text != NULL && strstr(text, a_secret) == NULL);
		free(text);
	}
	check(client_has_permission(cl, "direct") && client_has_permission(cl, "admin"));
	check(client_lists(cl, "redirect_uris", "https://app.example/cb"));
	check(!client_lists(cl, "redirect_uris", "https://app.example/cb/"));
	check(!client_lists(cl, "redirect_uris", "https://app.example/"));
	check(client_lists(cl, "resources", "https://api.example"));
	check(!client_lists(cl, "nothing", "x"));
	json_decref(cl);

	check(create(b, NULL, "{s:s, s:s, s:s}", "name", "App B", "signup", "closed", "existence",
		     "hide") == 0);
	cl = get(b);
	check(client_hides_existence(cl) && !client_has_permission(cl, "direct") &&
	      !client_has_permission(cl, "admin"));
	check(strcmp(json_string_value(json_object_get(cl, "signup")) ?: "", "closed") == 0);
	check(json_array_size(json_object_get(cl, "redirect_uris")) == 0);
	json_decref(cl);

	/* Lookups that find nothing. */
	check(get("0123456789abcdef0123456789abcdef") == NULL);
	check(get(NULL) == NULL && get("") == NULL);
	memset(long_name, 'a', 101);
	long_name[101] = '\0';
	check(get(long_name) == NULL);

	/* The list: every client, none with its secret. */
	list = client_list(&c);
	check(list != NULL && json_array_size(list) >= 2);
	json_array_foreach(list, i, v)
	{
		no_secrets &= json_object_get(v, "secret") == NULL;
		found +=
		    strcmp(client_id_of(v) ?: "", a) == 0 || strcmp(client_id_of(v) ?: "", b) == 0;
	}
	check(no_secrets && found == 2);
	json_decref(list);

	/* Bad specs. */
	check(create(NULL, NULL, "{}") == -1 && err[0] != '\0');
	check(create(NULL, NULL, "{s:s}", "name", "") == -1);
	long_name[100] = '\0';
	check(create(NULL, NULL, "{s:s}", "name", long_name) == 0);
	long_name[100] = 'a';
	check(create(NULL, NULL, "{s:s}", "name", long_name) == -1);
	check(create(NULL, NULL, "{s:i}", "name", 1) == -1);
	check(create(NULL, NULL, "{s:s, s:s}", "name", "x", "signup", "maybe") == -1);
	check(create(NULL, NULL, "{s:s, s:s}", "name", "x", "existence", "show") == -1);
	check(create(NULL, NULL, "{s:s, s:s}", "name", "x", "allow_http_redirect", "yes") == -1);
	check(create(NULL, NULL, "{s:s, s:[s]}", "name", "x", "permissions", "root") == -1);
	check(create(NULL, NULL, "{s:s, s:[i]}", "name", "x", "permissions", 1) == -1);
	check(create(NULL, NULL, "{s:s, s:s}", "name", "x", "permissions", "direct") == -1);
	check(create(NULL, NULL, "{s:s, s:[i]}", "name", "x", "resources", 1) == -1);
	check(create(NULL, NULL, "{s:s, s:s}", "name", "x", "redirect_uris", "https://a/") == -1);
	check(create(NULL, NULL, "{s:s, s:[i]}", "name", "x", "redirect_uris", 1) == -1);
}

static void redirect_rules(void)
{
	json_t *list, *v;
	size_t i;
	int flagged = 0;

	check(uri_ok("https://app.example/cb?x=1", 0));
	check(uri_ok("https://app.example:8443/cb", 0));
	/* http only on this machine's loopback (RFC 8252 7.3)... */
	check(uri_ok("http://127.0.0.1/cb", 0) && uri_ok("http://127.0.0.1:8080/cb", 0));
	check(uri_ok("http://localhost:3000/cb", 0) && uri_ok("http://[::1]:3000/cb", 0));
	check(uri_ok("http://127.1.2.3/cb", 0) && uri_ok("http://localhost", 0));
	check(!uri_ok("http://app.example/cb", 0) && !uri_ok("http://10.0.0.1/cb", 0));
	/* ...which an authority with userinfo, a bad port or another host is not. */
	check(!uri_ok("http://127.0.0.1@evil.example/cb", 0));
	check(!uri_ok("http://localhost.evil.example/cb", 0));
	check(!uri_ok("http://127.0.0.1:80x/cb", 0));
	check(!uri_ok("http://[::1]x/cb", 0) && !uri_ok("http://[::1/cb", 0));
	check(!uri_ok("http:///cb", 0));
	/* Every URI names a host: browsers would read https:///x.example/ as https://x.example/. */
	check(!uri_ok("https:///cb", 0) && !uri_ok("https://", 0) && !uri_ok("https://?x=1", 0));
	check(!uri_ok("http:///cb", 1) && !uri_ok("http://#", 1));
	/* Never a fragment, controls or spaces, another scheme, or a relative URI. */
	check(!uri_ok("https://app.example/cb#x", 0) && !uri_ok("https://app.example/c b", 0));
	check(!uri_ok("https://app.example/c\tb", 0) && !uri_ok("https://app.example/\x7f", 0));
	check(!uri_ok("ftp://app.example/cb", 0) && !uri_ok("/cb", 0) && !uri_ok("app://cb", 0));
	check(!uri_ok("HTTPS://app.example/cb", 0));
	/* allow_http_redirect lets plain http through, nothing else. */
	check(uri_ok("http://app.example/cb", 1));
	check(!uri_ok("http://app.example/cb#x", 1) && !uri_ok("ftp://app.example/", 1));
	list = client_list(&c);
	json_array_foreach(list, i, v) flagged +=
	    json_is_true(json_object_get(v, "allow_http_redirect"));
	check(flagged == 1);
	json_decref(list);
}

static void secrets(const char *a, const char *a_secret)
{
	char b[128], b_secret[128], wrong[128];
	unsigned wait = 0, first;

	conf.client_secret_failures.limit = 3;
	conf.client_secret_failures.period = 900;
	conf.client_secret_delay = 30;
	conf.client_secret_max_delay = 100;
	check(create(b, b_secret, "{s:s}", "name", "B") == 0);
	snprintf(wrong, sizeof(wrong), "%s", a_secret);
	wrong[0] = wrong[0] == 'A' ? 'B' : 'A';

	check(secret_check(a, a_secret, "192.0.2.1", NULL) == 1);
	/* Another client's secret is wrong; so is an empty, a long or a missing one. */
	check(secret_check(a, b_secret, "198.51.100.1", NULL) == 0);
	check(secret_check(b, a_secret, "198.51.100.1", NULL) == 0);
	check(secret_check(a, "", "198.51.100.2", NULL) == 0);
	check(secret_check(a, NULL, "198.51.100.3", NULL) == 0);
	check(secret_check(NULL, a_secret, "198.51.100.4", NULL) == 0);

	/* The free wrong secrets of an address, then a wait that counts nothing. */
	for (int i = 0; i < 3; i++)
		check(secret_check(a, wrong, "192.0.2.1", &wait) == 0 && wait == 0);
	check(secret_check(a, wrong, "192.0.2.1", &wait) == CLIENT_THROTTLED && wait >= 1 &&
	      wait <= 30);
	first = wait;
	check(secret_check(a, wrong, "192.0.2.1", &wait) == CLIENT_THROTTLED && wait <= first);
	/* The right secret is accepted during the wait, and ends nothing of it. */
	check(secret_check(a, a_secret, "192.0.2.1", &wait) == 1);
	check(secret_check(a, wrong, "192.0.2.1", &wait) == CLIENT_THROTTLED);
	/* The same address written as IPv4-mapped IPv6 is the same caller. */
	check(secret_check(a, wrong, "::ffff:192.0.2.1", &wait) == CLIENT_THROTTLED);
	/* Other addresses, and other clients from this one, have their own count. */
	check(secret_check(a, wrong, "192.0.2.2", &wait) == 0 && wait == 0);
	check(secret_check(b, wrong, "192.0.2.1", &wait) == 0 && wait == 0);
	/* An IPv6 caller is counted by its /64. */
	for (int i = 0; i < 3; i++)
		check(secret_check(a, wrong, i % 2 ? "2001:db8:1:2::1" : "2001:db8:1:2::99",
				   &wait) == 0);
	check(secret_check(a, wrong, "2001:db8:1:2:aaaa::5", &wait) == CLIENT_THROTTLED);
	check(secret_check(a, wrong, "2001:db8:1:3::1", &wait) == 0);
	/* Unknown client ids are never counted (nor throttled). */
	for (int i = 0; i < 6; i++)
		check(secret_check("0123456789abcdef0123456789abcdef", wrong, "192.0.2.9", &wait) ==
		      0);
	/* Over-long ids and secrets are wrong without a lookup. */
	{
		char longsecret[300];
		memset(longsecret, 'x', 257);
		longsecret[257] = '\0';
		check(secret_check(b, longsecret, "192.0.2.10", NULL) == 0);
	}
	/* Delays off: wrong secrets stay wrong, never throttled. */
	conf.client_secret_failures.limit = 0;
	for (int i = 0; i < 5; i++)
		check(secret_check(b, wrong, "192.0.2.11", &wait) == 0);
	check(secret_check(b, b_secret, "192.0.2.11", NULL) == 1);
}

static void tokens(const char *a)
{
	const char *iss = conf.issuer;
	long long now = (long long)time(NULL);
	char gone[128], *token, big[5000];
	json_t *cl = get(a), *gone_cl;
	crypto_hmac_t *other;
	unsigned char k[32] = {1};

	/* As minted: for this otlogin (aud = issuer), not for a resource. */
	check(verify(client_token_issue(&c, cl, iss), a) == 1);
	check(verify(client_token_issue(&c, cl, "https://api.example"), a) == 0);
	/* The same claims as minted here pass; each one that is off fails. */
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now, "exp", now + 60),
		     a) == 1);
	check(verify(mint("JWT", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss, "client_id",
			  a, "iat", now, "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", "https://other.example",
			  "aud", iss, "client_id", a, "iat", now, "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:I, s:I}", "aud", iss, "client_id", a, "iat", now,
			  "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:[s, s], s:s, s:I, s:I}", "iss", iss, "aud",
			  "https://x.example", iss, "client_id", a, "iat", now, "exp", now + 60),
		     a) == 1);
	check(verify(mint("at+jwt", "{s:s, s:[s], s:s, s:I, s:I}", "iss", iss, "aud",
			  "https://x.example", "client_id", a, "iat", now, "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss, "iat", now,
			  "exp", now + 60),
		     a) == 0);
	/* iat: required, an integer, not ahead of now beyond the leeway. */
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I}", "iss", iss, "aud", iss, "client_id", a,
			  "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:s, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", "now", "exp", now + 60),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now + 30, "exp", now + 600),
		     a) == 1);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now + 300, "exp", now + 600),
		     a) == 0);
	/* nbf: optional, an integer, not ahead of now beyond the leeway. */
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now, "exp", now + 600, "nbf", now + 30),
		     a) == 1);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now, "exp", now + 600, "nbf", now + 300),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now, "exp", now + 600, "nbf", "soon"),
		     a) == 0);
	/* exp: required, in the future, after iat. */
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I}", "iss", iss, "aud", iss, "client_id", a,
			  "iat", now),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now - 100, "exp", now - 1),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now - 100, "exp", now - 100),
		     a) == 0);
	check(verify(mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
			  "client_id", a, "iat", now + 50, "exp", now + 40),
		     a) == 0);
	/* Signed with another key, or tampered with: refused. */
	other = crypto_hmac_open(k, sizeof(k));
	{
		json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
					   "client_id", a, "iat", now, "exp", now + 60);
		token = jwt_sign_hs256(other, keys.client_token_kid, "at+jwt", claims);
		json_decref(claims);
	}
	crypto_hmac_close(other);
	check(verify(token, a) == 0);
	token = client_token_issue(&c, cl, iss);
	if (check(token != NULL && strlen(token) > 10)) {
		char *last = token + strlen(token) - 2;
		*last = *last == 'A' ? 'B' : 'A';
	}
	check(verify(token, a) == 0);
	/* A user token, signed with the published signing key, is no client token. */
	{
		json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss,
					   "client_id", a, "iat", now, "exp", now + 60);
		token = jwt_sign(keys.signing, "at+jwt", claims);
		json_decref(claims);
	}
	check(verify(token, a) == 0);
	/* Over 4096 bytes: refused unread. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	check(client_token_verify(&c, big, &gone_cl) == 0);
	check(client_token_verify(&c, "", &gone_cl) == 0 &&
	      client_token_verify(&c, "a.b.c", &gone_cl) == 0);
	/* A client that no longer exists has no valid tokens. */
	check(create(gone, NULL, "{s:s}", "name", "Gone") == 0);
	gone_cl = get(gone);
	token = client_token_issue(&c, gone_cl, iss);
	check(token != NULL);
	check(store_run(c.store, del_txn, gone) == STORE_FOUND);
	check(verify(token, gone) == 0);
	json_decref(gone_cl);
	json_decref(cl);
}

int main(void)
{
	char a[128], a_secret[128];

	if (fixture_open("/dev/shm", "client", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	creating(a, a_secret);
	redirect_rules();
	secrets(a, a_secret);
	tokens(a);
	check(client_id_of(NULL) == NULL);
	{
		json_t *rec = json_pack("{s:i}", "client_id", 5);
		check(client_id_of(rec) == NULL && !client_hides_existence(rec));
		json_decref(rec);
	}
	fixture_close();
	return check_done();
}
