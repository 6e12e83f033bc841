/*
 * client: creation with its validation (redirect URI rules included) and defaults, lookups
 * and the list without secrets; client_check_secret (the right secret always accepted, wrong
 * ones throttled per client and address, unknown ids never counted); client access tokens as
 * client_token_issue mints them, and every claim client_token_verify checks; the policy
 * helpers. The OpenID Connect members (type, pkce, post-logout redirect URIs, login methods,
 * display name, logo, colour) valid and not, their accessors, client_update (everything it may
 * change, nothing it may not, nothing at all when refused), and a public client's lack of a
 * secret.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "b64url.h"
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
		/* The secret, except for a public client, and nothing else. */
		check(json_object_size(out) == (json_object_get(out, "client_secret") ? 2 : 1));
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

/* Whether a client named "f" with member set to value (stolen) is made. */
static int field_ok(const char *member, json_t *value)
{
	return create(NULL, NULL, "{s:s, s:o}", "name", "f", member, value) == 0;
}

/* A new data: URI of type (the part after "data:") holding the len bytes at data. */
static char *data_uri(const char *type, const void *data, size_t len)
{
	char *b64 = b64_encode(data, len), *uri = NULL;

	if (b64 == NULL || asprintf(&uri, "data:%s;base64,%s", type, b64) < 0)
		uri = NULL;
	free(b64);
	return uri;
}

/* Whether a client is made with the logo of type holding the len bytes at data. */
static int data_logo_ok(const char *type, const void *data, size_t len)
{
	char *uri = data_uri(type, data, len);
	int ok = uri != NULL && field_ok("logo", json_string(uri));

	free(uri);
	return ok;
}

/* The member of the stored client id (a new reference; NULL when absent). */
static json_t *member(const char *id, const char *name)
{
	json_t *cl = get(id), *v = json_incref(json_object_get(cl, name));

	json_decref(cl);
	return v;
}

/* 1 when the stored client's string member name equals want. */
static int member_is(const char *id, const char *name, const char *want)
{
	json_t *v = member(id, name);
	int same = json_is_string(v) && strcmp(json_string_value(v), want) == 0;

	json_decref(v);
	return same;
}

/* client_update with a spec in json_pack's format. */
static int update(const char *id, const char *fmt, ...)
{
	json_t *spec;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	spec = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	err[0] = '\0';
	rc = spec ? client_update(&c, id, spec, err, sizeof(err)) : -9;
	json_decref(spec);
	return rc;
}

/* A refused update: -1 with a message, and the stored client exactly as before. */
static int refused_unchanged(const char *id, int rc, json_t *before)
{
	json_t *after = get(id);
	int same = after != NULL && json_equal(after, before);

	json_decref(after);
	return rc == -1 && err[0] != '\0' && same;
}

/* client_token_verify of token, which is kept; 1 only when it names client id. */
static int verify_kept(const char *token, const char *id)
{
	json_t *cl = NULL;
	int rc = client_token_verify(&c, token, &cl);

	if (rc == 1 && strcmp(client_id_of(cl) ?: "", id) != 0)
		rc = -8;
	json_decref(cl);
	return rc;
}

/*
 * A token sent again is not verified again (its claims are kept), yet every check that can
 * change between two requests still applies: its times, the client's existence, and a token
 * that differs by a byte is verified afresh.
 */
static void token_again(const char *a)
{
	const char *iss = conf.issuer;
	char gone[128], *token, *copy, *soon, *last;
	json_t *cl = get(a), *gone_cl;

	token = client_token_issue(&c, cl, iss);
	check(token != NULL && verify_kept(token, a) == 1);
	check(keys.client_token_seen != NULL && strcmp(keys.client_token_seen, token) == 0);
	check(verify_kept(token, a) == 1 && verify_kept(token, a) == 1);
	/* A different text, even by one byte of its signature: refused, the kept one stays. */
	copy = strdup(token);
	last = copy + strlen(copy) - 2;
	*last = *last == 'A' ? 'B' : 'A';
	check(verify_kept(copy, a) == 0);
	check(strcmp(keys.client_token_seen, token) == 0 && verify_kept(token, a) == 1);
	/* The claims are kept, but exp is checked on every request. */
	soon = mint("at+jwt", "{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "aud", iss, "client_id", a,
		    "iat", (long long)time(NULL), "exp", (long long)time(NULL) + 1);
	check(soon != NULL && verify_kept(soon, a) == 1 &&
	      strcmp(keys.client_token_seen, soon) == 0);
	while (time(NULL) <= json_integer_value(json_object_get(keys.client_token_claims, "exp")))
		sleep(1);
	check(verify_kept(soon, a) == 0);
	/* The client is read on every request: deleted, its kept token names no client. */
	check(create(gone, NULL, "{s:s}", "name", "Gone again") == 0);
	gone_cl = get(gone);
	free(token);
	token = client_token_issue(&c, gone_cl, iss);
	check(verify_kept(token, gone) == 1 && verify_kept(token, gone) == 1);
	check(store_run(c.store, del_txn, gone) == STORE_FOUND);
	check(verify_kept(token, gone) == 0);
	json_decref(gone_cl);
	json_decref(cl);
	free(token);
	free(copy);
	free(soon);
}

static void oidc_defaults(void)
{
	char id[128];
	json_t *cl, *old;

	check(create(id, NULL, "{s:s}", "name", "Defaults") == 0);
	cl = get(id);
	check(member_is(id, "type", "confidential") && member_is(id, "pkce", "allow"));
	check(json_is_array(json_object_get(cl, "post_logout_redirect_uris")) &&
	      json_array_size(json_object_get(cl, "post_logout_redirect_uris")) == 0);
	{
		json_t *want = json_pack("[s, s]", "email_otp", "magic_link");
		check(json_equal(json_object_get(cl, "login_methods"), want));
		json_decref(want);
	}
	check(!client_is_public(cl) && !client_requires_pkce(cl));
	check(client_allows_login_method(cl, "email_otp") &&
	      client_allows_login_method(cl, "magic_link") &&
	      !client_allows_login_method(cl, "sms_otp") &&
	      !client_allows_login_method(cl, "password"));
	check(json_object_get(cl, "display_name") == NULL && json_object_get(cl, "logo") == NULL &&
	      json_object_get(cl, "color") == NULL);
	json_decref(cl);
	/* A record from before these members existed reads with the same defaults. */
	old = json_pack("{s:s, s:s}", "client_id", "old", "name", "Old");
	check(!client_is_public(old) && !client_requires_pkce(old));
	check(client_allows_login_method(old, "email_otp") &&
	      client_allows_login_method(old, "magic_link") &&
	      !client_allows_login_method(old, "sms_otp"));
	check(!client_lists(old, "post_logout_redirect_uris", "https://x.example/"));
	json_decref(old);
	check(!client_is_public(NULL) && !client_requires_pkce(NULL));
}

static void oidc_fields(void)
{
	char id[128], name65[200], name64[200], long_url[2100];
	static const unsigned char png[] = {0x89, 'P',	'N', 'G', '\r', '\n',
					    0x1a, '\n', 0,   0,	  0,	13};
	static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F'};
	static const char svg[] =
	    "<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" "
	    "width=\"8\" height=\"8\"><rect width=\"8\" height=\"8\"/></svg>";
	unsigned char *big;
	json_t *cl;

	/* type and pkce. */
	check(field_ok("type", json_string("confidential")) &&
	      field_ok("type", json_string("public")));
	check(!field_ok("type", json_string("Public")) && !field_ok("type", json_string("")) &&
	      !field_ok("type", json_integer(1)) && !field_ok("type", json_string("native")));
	check(field_ok("pkce", json_string("allow")) && field_ok("pkce", json_string("require")));
	check(!field_ok("pkce", json_string("S256")) && !field_ok("pkce", json_string("none")) &&
	      !field_ok("pkce", json_true()));
	check(create(id, NULL, "{s:s, s:s}", "name", "P", "pkce", "require") == 0);
	cl = get(id);
	check(client_requires_pkce(cl) && !client_is_public(cl));
	json_decref(cl);
	/* A public client always requires PKCE: set by itself, and never allow. */
	check(create(id, NULL, "{s:s, s:s}", "name", "Pub", "type", "public") == 0);
	cl = get(id);
	check(client_is_public(cl) && client_requires_pkce(cl) && member_is(id, "pkce", "require"));
	json_decref(cl);
	check(create(NULL, NULL, "{s:s, s:s, s:s}", "name", "x", "type", "public", "pkce",
		     "allow") == -1 &&
	      strstr(err, "PKCE") != NULL);
	check(create(NULL, NULL, "{s:s, s:s, s:s}", "name", "x", "type", "public", "pkce",
		     "require") == 0);

	/* post_logout_redirect_uris: the rules of redirect_uris. */
	check(create(id, NULL, "{s:s, s:[s, s]}", "name", "L", "post_logout_redirect_uris",
		     "https://app.example/bye", "http://127.0.0.1:8080/bye") == 0);
	cl = get(id);
	check(client_lists(cl, "post_logout_redirect_uris", "https://app.example/bye") &&
	      client_lists(cl, "post_logout_redirect_uris", "http://127.0.0.1:8080/bye") &&
	      !client_lists(cl, "post_logout_redirect_uris", "https://app.example/") &&
	      !client_lists(cl, "redirect_uris", "https://app.example/bye"));
	json_decref(cl);
	check(!field_ok("post_logout_redirect_uris", json_pack("[s]", "http://app.example/bye")));
	check(!field_ok("post_logout_redirect_uris", json_pack("[s]", "https://app.example/b#x")));
	check(!field_ok("post_logout_redirect_uris", json_pack("[s]", "https:///bye")));
	check(!field_ok("post_logout_redirect_uris", json_pack("[s]", "/bye")));
	check(!field_ok("post_logout_redirect_uris", json_pack("[s]", "")));
	check(!field_ok("post_logout_redirect_uris", json_pack("[i]", 1)));
	check(!field_ok("post_logout_redirect_uris", json_string("https://app.example/bye")));
	check(!field_ok("post_logout_redirect_uris",
			json_pack("[s]", "http://127.0.0.1@e.example/")));
	check(create(NULL, NULL, "{s:s, s:[s], s:b}", "name", "x", "post_logout_redirect_uris",
		     "http://app.example/bye", "allow_http_redirect", 1) == 0);
	check(create(NULL, NULL, "{s:s, s:[s]}", "name", "x", "post_logout_redirect_uris",
		     "http://app.example/bye") == -1 &&
	      strstr(err, "post-logout") != NULL);

	/* login_methods: a non-empty set of the three. */
	check(create(id, NULL, "{s:s, s:[s]}", "name", "S", "login_methods", "sms_otp") == 0);
	cl = get(id);
	check(client_allows_login_method(cl, "sms_otp") &&
	      !client_allows_login_method(cl, "email_otp") &&
	      !client_allows_login_method(cl, "magic_link"));
	json_decref(cl);
	check(field_ok("login_methods",
		       json_pack("[s, s, s]", "magic_link", "sms_otp", "email_otp")));
	check(!field_ok("login_methods", json_array()));
	check(!field_ok("login_methods", json_pack("[s]", "password")));
	check(!field_ok("login_methods", json_pack("[s]", "EMAIL_OTP")));
	check(!field_ok("login_methods", json_pack("[s, s]", "email_otp", "email_otp")));
	check(!field_ok("login_methods", json_pack("[s, i]", "email_otp", 1)));
	check(!field_ok("login_methods", json_string("email_otp")));

	/* display_name: 1 to 64 characters (not bytes), none a control or a direction override. */
	name64[0] = name65[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(name64, "\xc3\xa9"); /* é: 128 bytes, 64 characters */
	snprintf(name65, sizeof(name65), "%sx", name64);
	check(field_ok("display_name", json_string(name64)));
	check(!field_ok("display_name", json_string(name65)));
	check(field_ok("display_name", json_string("\xc3\x9cn\xc3\xaf"
						   "code App \xe2\x9c\x93 (beta)")));
	check(!field_ok("display_name", json_string("")));
	check(!field_ok("display_name", json_string("two\nlines")));
	check(!field_ok("display_name", json_string("tab\there")));
	check(!field_ok("display_name", json_string("del\x7f")));
	check(!field_ok("display_name", json_string("c1\xc2\x85")));	      /* U+0085 NEL */
	check(!field_ok("display_name", json_string("evil\xe2\x80\xaeppa"))); /* U+202E RLO */
	check(!field_ok("display_name", json_string("zero\xe2\x80\x8bwidth")));
	check(!field_ok("display_name", json_string("iso\xe2\x81\xa6late"))); /* U+2066 */
	check(!field_ok("display_name", json_string("line\xe2\x80\xa8sep")));
	check(!field_ok("display_name", json_integer(5)));

	/* logo as a URL: http(s), a host, nothing that could leave an HTML attribute. */
	check(field_ok("logo", json_string("https://cdn.example/logo.png")));
	check(field_ok("logo", json_string("http://cdn.example/logo.png?v=2")));
	check(!field_ok("logo", json_string("https://")) &&
	      !field_ok("logo", json_string("https:///logo.png")));
	check(!field_ok("logo", json_string("javascript:alert(1)")));
	check(!field_ok("logo", json_string("ftp://cdn.example/logo.png")));
	check(!field_ok("logo", json_string("//cdn.example/logo.png")));
	check(!field_ok("logo", json_string("https://cdn.example/a b.png")));
	check(!field_ok("logo", json_string("https://cdn.example/\"onerror=\"x")));
	check(!field_ok("logo", json_string("https://cdn.example/'x")));
	check(!field_ok("logo", json_string("https://cdn.example/<x>")));
	check(!field_ok("logo", json_string("https://cdn.example/\xc3\xa9.png")));
	check(!field_ok("logo", json_string("")) && !field_ok("logo", json_true()));
	memcpy(long_url, "https://cdn.example/", 20);
	memset(long_url + 20, 'a', CLIENT_LOGO_URL_MAX - 20);
	long_url[CLIENT_LOGO_URL_MAX] = '\0';
	check(field_ok("logo", json_string(long_url)));
	long_url[CLIENT_LOGO_URL_MAX] = 'a';
	long_url[CLIENT_LOGO_URL_MAX + 1] = '\0';
	check(!field_ok("logo", json_string(long_url)));

	/* logo as a data: URI: PNG, JPEG or SVG, holding what its type says. */
	check(data_logo_ok("image/png", png, sizeof(png)));
	check(data_logo_ok("image/jpeg", jpeg, sizeof(jpeg)));
	check(data_logo_ok("image/svg+xml", svg, strlen(svg)));
	check(!data_logo_ok("image/png", jpeg, sizeof(jpeg)));
	check(!data_logo_ok("image/jpeg", png, sizeof(png)));
	check(!data_logo_ok("image/svg+xml", png, sizeof(png)));
	check(!data_logo_ok("image/gif", "GIF89a", 6));
	check(!data_logo_ok("text/html", "<svg>", 5));
	check(!data_logo_ok("image/svg+xml", "<svg><script>alert(1)</script></svg>", 36));
	check(!data_logo_ok("image/svg+xml", "<svg><ScRiPt>alert(1)</ScRiPt></svg>", 36));
	check(!data_logo_ok("image/png", png, 4));
	check(!field_ok("logo", json_string("data:image/png;base64,iVBORw0KGgo!")));
	check(!field_ok("logo", json_string("data:image/png;base64,iVBORw0KGgo")));
	check(!field_ok("logo", json_string("data:image/png,\x89PNG")));
	check(!field_ok("logo", json_string("data:image/png;base64,")));
	/* At most CLIENT_LOGO_DATA_MAX characters, the prefix included. */
	big = calloc(1, CLIENT_LOGO_DATA_MAX);
	if (check(big != NULL)) {
		size_t fits = (CLIENT_LOGO_DATA_MAX - strlen("data:image/png;base64,")) / 4 * 3;
		char *uri;
		memcpy(big, png, sizeof(png));
		uri = data_uri("image/png", big, fits);
		check(uri != NULL && strlen(uri) <= CLIENT_LOGO_DATA_MAX &&
		      strlen(uri) > CLIENT_LOGO_DATA_MAX - 4);
		free(uri);
		check(data_logo_ok("image/png", big, fits));
		check(!data_logo_ok("image/png", big, fits + 1));
		free(big);
	}

	/* color. */
	check(field_ok("color", json_string("#a1B2c3")) &&
	      field_ok("color", json_string("#000000")));
	check(!field_ok("color", json_string("#abc")) && !field_ok("color", json_string("a1b2c3")));
	check(!field_ok("color", json_string("#GGGGGG")) &&
	      !field_ok("color", json_string("#1234567")));
	check(!field_ok("color", json_string("")) && !field_ok("color", json_string("red")) &&
	      !field_ok("color", json_string("#12345")) && !field_ok("color", json_integer(0)));

	/* Every member stored as given. */
	check(create(id, NULL, "{s:s, s:s, s:s, s:s}", "name", "Brand", "display_name", "My App",
		     "logo", "https://cdn.example/l.svg", "color", "#ABCDEF") == 0);
	check(member_is(id, "display_name", "My App") &&
	      member_is(id, "logo", "https://cdn.example/l.svg") &&
	      member_is(id, "color", "#ABCDEF"));

	/* No member a client spec does not know, least of all an id or a secret. */
	check(!field_ok("colour", json_string("#000000")) && strstr(err, "colour") != NULL);
	check(!field_ok("secret", json_string("0123")) && strstr(err, "never change") != NULL);
	check(!field_ok("client_secret", json_string("x")) && strstr(err, "never change") != NULL);
	check(!field_ok("client_id", json_string("mine")) && strstr(err, "never change") != NULL);
	check(!field_ok("created_at", json_integer(0)));
	check(create(NULL, NULL, "[s]", "name") == -1);
}

/* A stored client record as written before the OpenID Connect members existed. */
static int put_old_txn(struct store_txn *t, void *rec)
{
	const char *id = json_string_value(json_object_get(rec, "client_id"));
	return store_put(t, TBL_CLIENTS, id, strlen(id), rec);
}

static void updating(void)
{
	char id[128], secret[128], pub[128];
	json_t *before, *cl, *v;

	check(create(id, secret, "{s:s, s:[s], s:[s]}", "name", "Up", "redirect_uris",
		     "https://up.example/cb", "permissions", "direct") == 0);
	before = get(id);
	/* Everything update may change. */
	check(
	    update(id, "{s:s, s:[s, s], s:[s], s:[s], s:s, s:s, s:s, s:[s], s:[s], s:s, s:s, s:s}",
		   "name", "Up 2", "redirect_uris", "https://up.example/cb2", "http://127.0.0.1/cb",
		   "resources", "https://api.up.example", "permissions", "admin", "signup",
		   "closed", "existence", "hide", "pkce", "require", "post_logout_redirect_uris",
		   "https://up.example/bye", "login_methods", "sms_otp", "display_name", "Up!",
		   "logo", "https://up.example/logo.png", "color", "#102030") == 0);
	cl = get(id);
	check(member_is(id, "name", "Up 2") && member_is(id, "signup", "closed") &&
	      client_hides_existence(cl) && client_requires_pkce(cl) && !client_is_public(cl));
	check(client_lists(cl, "redirect_uris", "https://up.example/cb2") &&
	      client_lists(cl, "redirect_uris", "http://127.0.0.1/cb") &&
	      !client_lists(cl, "redirect_uris", "https://up.example/cb"));
	check(client_has_permission(cl, "admin") && !client_has_permission(cl, "direct"));
	check(client_lists(cl, "resources", "https://api.up.example"));
	check(client_lists(cl, "post_logout_redirect_uris", "https://up.example/bye"));
	check(client_allows_login_method(cl, "sms_otp") &&
	      !client_allows_login_method(cl, "email_otp"));
	check(member_is(id, "display_name", "Up!") &&
	      member_is(id, "logo", "https://up.example/logo.png") &&
	      member_is(id, "color", "#102030"));
	check(json_is_integer(json_object_get(cl, "updated_at")));
	/* Nothing update may not change: the id, the secret, the creation time. */
	check(
	    json_equal(json_object_get(cl, "secret"), json_object_get(before, "secret")) &&
	    json_equal(json_object_get(cl, "created_at"), json_object_get(before, "created_at")) &&
	    strcmp(client_id_of(cl) ?: "", id) == 0);
	check(secret_check(id, secret, "192.0.2.50", NULL) == 1);
	json_decref(cl);
	json_decref(before);

	/* Only what the spec names changes. */
	before = get(id);
	check(update(id, "{s:s}", "color", "#FFFFFF") == 0);
	cl = get(id);
	check(member_is(id, "color", "#FFFFFF"));
	json_object_del(cl, "color");
	json_object_del(cl, "updated_at");
	json_object_del(before, "color");
	json_object_del(before, "updated_at");
	check(json_equal(cl, before));
	json_decref(cl);
	json_decref(before);
	/* null removes an optional member, never a required one. */
	check(update(id, "{s:n, s:n}", "display_name", "logo") == 0);
	v = member(id, "display_name");
	check(v == NULL && (v = member(id, "logo")) == NULL && member_is(id, "color", "#FFFFFF"));
	json_decref(v);

	/* Refused updates change nothing at all, even the valid members next to a bad one. */
	before = get(id);
	check(refused_unchanged(id, update(id, "{s:s, s:s}", "name", "Changed?", "color", "blue"),
				before));
	check(refused_unchanged(id, update(id, "{s:s}", "name", ""), before));
	check(refused_unchanged(id, update(id, "{s:n}", "name"), before) &&
	      strstr(err, "cannot be removed") != NULL);
	check(refused_unchanged(id, update(id, "{s:n}", "redirect_uris"), before));
	check(refused_unchanged(id, update(id, "{s:[s]}", "redirect_uris", "http://up.example/"),
				before));
	check(refused_unchanged(
	    id, update(id, "{s:[s]}", "post_logout_redirect_uris", "https://up.example/#f"),
	    before));
	check(refused_unchanged(id, update(id, "{s:[]}", "login_methods"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "display_name", "a\x01"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "logo", "file:///etc/passwd"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "type", "trusted"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "pkce", "maybe"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "signup", "ajar"), before));
	check(refused_unchanged(id, update(id, "{s:[s]}", "permissions", "root"), before));
	check(refused_unchanged(id, update(id, "{s:s}", "secret", "chosen-by-attacker"), before) &&
	      strstr(err, "never change") != NULL);
	check(refused_unchanged(id, update(id, "{s:s}", "client_id", "other"), before));
	check(refused_unchanged(id, update(id, "{s:I}", "created_at", (json_int_t)0), before));
	check(refused_unchanged(id, update(id, "{s:s}", "nonsense", "x"), before));
	check(refused_unchanged(id, update(id, "[s]", "name"), before));
	json_decref(before);
	/* allow_http_redirect: set and taken back, only while no plain http URI needs it. */
	check(update(id, "{s:[s], s:b}", "redirect_uris", "http://up.example/cb",
		     "allow_http_redirect", 1) == 0);
	before = get(id);
	check(refused_unchanged(id, update(id, "{s:b}", "allow_http_redirect", 0), before));
	json_decref(before);
	check(update(id, "{s:[s], s:b}", "redirect_uris", "https://up.example/cb",
		     "allow_http_redirect", 0) == 0);
	v = member(id, "allow_http_redirect");
	check(v == NULL);
	json_decref(v);

	/* Unknown clients. */
	check(update("0123456789abcdef0123456789abcdef", "{s:s}", "name", "x") == CLIENT_UNKNOWN &&
	      err[0] != '\0');
	check(update("", "{s:s}", "name", "x") == CLIENT_UNKNOWN);
	check(client_update(&c, NULL, NULL, err, sizeof(err)) == CLIENT_UNKNOWN);

	/* A client turned public: its secret is gone for good, its PKCE required. */
	check(update(id, "{s:s}", "type", "public") == 0);
	cl = get(id);
	check(client_is_public(cl) && client_requires_pkce(cl) &&
	      member_is(id, "pkce", "require") && json_object_get(cl, "secret") == NULL);
	json_decref(cl);
	check(secret_check(id, secret, "192.0.2.51", NULL) == 0);
	before = get(id);
	check(refused_unchanged(id, update(id, "{s:s}", "pkce", "allow"), before) &&
	      strstr(err, "PKCE") != NULL);
	check(refused_unchanged(id, update(id, "{s:s}", "type", "confidential"), before) &&
	      strstr(err, "no secret") != NULL);
	json_decref(before);
	check(secret_check(id, secret, "192.0.2.51", NULL) == 0);

	/* A public client updated in other ways stays public. */
	check(create(pub, NULL, "{s:s, s:s}", "name", "Pub", "type", "public") == 0);
	check(update(pub, "{s:s, s:s}", "display_name", "Pub App", "pkce", "require") == 0);
	cl = get(pub);
	check(client_is_public(cl) && client_requires_pkce(cl));
	json_decref(cl);

	/* A record from before these members existed takes an update, with the defaults. */
	cl =
	    json_pack("{s:s, s:s, s:s, s:[], s:[], s:[], s:s, s:s, s:I}", "client_id", "legacy",
		      "name", "Legacy", "secret", "00", "redirect_uris", "resources", "permissions",
		      "signup", "open", "existence", "reveal", "created_at", (json_int_t)1);
	check(store_run(c.store, put_old_txn, cl) == 0);
	json_decref(cl);
	check(update("legacy", "{s:s}", "color", "#010203") == 0);
	check(member_is("legacy", "type", "confidential") && member_is("legacy", "pkce", "allow") &&
	      member_is("legacy", "secret", "00") && member_is("legacy", "color", "#010203"));
	cl = get("legacy");
	check(client_allows_login_method(cl, "magic_link") &&
	      !client_allows_login_method(cl, "sms_otp"));
	json_decref(cl);
}

static void public_secrets(void)
{
	char pub[128], conf_id[128], conf_secret[128];
	json_t *spec = json_pack("{s:s, s:s}", "name", "SPA", "type", "public"), *out = NULL;
	unsigned wait = 0;

	/* create hands out no secret for a public client, and stores none. */
	check(client_create(&c, spec, &out, err, sizeof(err)) == 0);
	check(json_object_size(out) == 1 && json_object_get(out, "client_secret") == NULL);
	snprintf(pub, sizeof(pub), "%s",
		 json_string_value(json_object_get(out, "client_id")) ?: "");
	json_decref(out);
	json_decref(spec);
	check(member(pub, "secret") == NULL);
	/* No secret is accepted: not empty, not another client's, not a guess. */
	check(create(conf_id, conf_secret, "{s:s}", "name", "Conf") == 0);
	check(secret_check(pub, "", "192.0.2.60", NULL) == 0);
	check(secret_check(pub, conf_secret, "192.0.2.60", NULL) == 0);
	check(secret_check(pub, "00", "192.0.2.60", NULL) == 0);
	/* Nor is any counted: a public client's callers are never throttled by guessing. */
	conf.client_secret_failures.limit = 1;
	conf.client_secret_failures.period = 900;
	conf.client_secret_delay = 30;
	conf.client_secret_max_delay = 100;
	for (int i = 0; i < 5; i++)
		check(secret_check(pub, "guess", "192.0.2.61", &wait) == 0 && wait == 0);
	/* The confidential client next to it still authenticates. */
	check(secret_check(conf_id, conf_secret, "192.0.2.61", NULL) == 1);
	conf.client_secret_failures.limit = 0;
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
	token_again(a);
	oidc_defaults();
	oidc_fields();
	updating();
	public_secrets();
	check(client_id_of(NULL) == NULL);
	{
		json_t *rec = json_pack("{s:i}", "client_id", 5);
		check(client_id_of(rec) == NULL && !client_hides_existence(rec));
		json_decref(rec);
	}
	fixture_close();
	return check_done();
}
