/*
 * authcode: the contract of authcode.h on a real store: a code is exchanged once, by its
 * client, with its redirect_uri and PKCE verifier (RFC 7636 appendix B's vector); a refused
 * presentation consumes nothing; a second exchange fails and ends the login session with
 * every refresh token it issued; expired codes, ended sessions and disabled users fail; the
 * ID token carries nonce exactly when asked, at_hash of the access token, acr and the extra
 * claims; refresh tokens only when granted. Also token.h's access token check and UserInfo.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authcode.h"
#include "b64url.h"
#include "err.h"
#include "fixture.h"
#include "jwt.h"
#include "session.h"
#include "token.h"

#define REDIRECT "https://app.example/cb"
#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

static json_t *client_a, *client_b;
static char user_id[64];

struct login_arg {
	json_t *client;
	struct login_grant g;
};

static int login_txn(struct store_txn *t, void *argp)
{
	struct login_arg *a = argp;
	struct login_opts opts = {0};
	json_t *user = NULL;
	int rc;

	login_grant_free(&a->g);
	rc = user_find_txn(t, ID_USER_ID, user_id, &user);
	if (rc <= 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_USER_NOT_FOUND);
	rc = session_login_txn(t, &c, user, a->client, "eotp", "email", NULL, &opts, &a->g);
	json_decref(user);
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

/* A new login session of the user with client_a: its key into key. */
static void new_session(char key[KEYRING_TAG_HEX])
{
	struct login_arg a = {.client = client_a};

	key[0] = '\0';
	if (check(store_outcome(store_run(c.store, login_txn, &a), ERR_UNAVAILABLE) == ERR_NONE))
		snprintf(key, KEYRING_TAG_HEX, "%s", a.g.session_key);
	login_grant_free(&a.g);
}

struct issue_arg {
	const struct authcode_grant *g;
	char *code;
};

static int issue_txn(struct store_txn *t, void *argp)
{
	struct issue_arg *a = argp;

	crypto_free_str(a->code);
	a->code = NULL;
	return authcode_issue_txn(t, &c, a->g, &a->code);
}

/* A code for g (new string), or NULL. */
static char *issue(const struct authcode_grant *g)
{
	struct issue_arg a = {g, NULL};

	if (!check(store_run(c.store, issue_txn, &a) == 0)) {
		crypto_free_str(a.code);
		return NULL;
	}
	return a.code;
}

/* A grant for client_a of a new session (key into key), with the defaults of these tests. */
static struct authcode_grant grant(char key[KEYRING_TAG_HEX])
{
	struct authcode_grant g = {.client_id =
				       json_string_value(json_object_get(client_a, "client_id")),
				   .redirect_uri = REDIRECT,
				   .scope = "openid email"};
	new_session(key);
	g.session_key = key;
	return g;
}

/* Exchange code at client with redirect and verifier: the err, *tokens on ERR_NONE. */
static int exchange(json_t *client, const char *code, const char *redirect, const char *verifier,
		    json_t **tokens)
{
	struct authcode_exchange x = {client, code, redirect, verifier};
	const char *why = NULL;
	json_t *t = NULL;
	int rc = authcode_exchange(&c, &x, &t, &why);

	if (rc == ERR_NONE && tokens != NULL)
		*tokens = t;
	else
		json_decref(t);
	if (rc != ERR_NONE)
		printf("# refused: %s\n", why ? why : "(no reason)");
	return rc;
}

/* The verified claims of a token of the response (new reference) or NULL. */
static json_t *claims_of(json_t *tokens, const char *member, const char *typ)
{
	json_t *cl = NULL;

	if (jwt_verify(json_string_value(json_object_get(tokens, member)), keys.published,
		       keys.npublished, typ, &cl) != 1)
		return NULL;
	return cl;
}

static void test_exchange_once(void)
{
	char key[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);
	json_t *extra = json_pack("{s:b}", "new_user", 1), *tokens = NULL, *id, *at;
	unsigned char h[CRYPTO_HASH_LEN];
	char *want_hash;

	g.nonce = "n-0S6_WzA2Mj";
	g.acr = "mfa";
	g.refresh = 1;
	g.extra_claims = extra;
	code = issue(&g);
	check(code != NULL && strlen(code) >= 43);
	check(exchange(client_a, code, REDIRECT, NULL, &tokens) == ERR_NONE);
	id = claims_of(tokens, "id_token", "JWT");
	at = claims_of(tokens, "access_token", "at+jwt");
	check(id != NULL && at != NULL);
	check(strcmp(json_string_value(json_object_get(id, "nonce")) ?: "", "n-0S6_WzA2Mj") == 0);
	check(strcmp(json_string_value(json_object_get(id, "acr")) ?: "", "mfa") == 0);
	check(json_is_true(json_object_get(id, "new_user")));
	check(strcmp(json_string_value(json_object_get(id, "sub")) ?: "", user_id) == 0);
	check(strncmp(json_string_value(json_object_get(id, "sid")) ?: "", key,
		      SESSION_HANDLE_LEN) == 0);
	check(strcmp(json_string_value(json_object_get(at, "scope")) ?: "", "openid email") == 0);
	check(strcmp(json_string_value(json_object_get(tokens, "scope")) ?: "", "openid email") ==
	      0);
	/* OIDC Core 3.1.3.6: the left half of SHA-256 of the access token (RS256 key). */
	crypto_sha256(json_string_value(json_object_get(tokens, "access_token")),
		      json_string_length(json_object_get(tokens, "access_token")), h);
	want_hash = b64url_encode(h, 16);
	check(want_hash != NULL &&
	      strcmp(json_string_value(json_object_get(id, "at_hash")) ?: "", want_hash) == 0);
	check(json_string_value(json_object_get(tokens, "refresh_token")) != NULL);
	free(want_hash);
	json_decref(id);
	json_decref(at);
	json_decref(tokens);
	json_decref(extra);
	crypto_free_str(code);
}

static void test_no_nonce_no_refresh(void)
{
	char key[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);
	json_t *tokens = NULL, *id;

	code = issue(&g);
	check(exchange(client_a, code, REDIRECT, NULL, &tokens) == ERR_NONE);
	id = claims_of(tokens, "id_token", "JWT");
	check(id != NULL && json_object_get(id, "nonce") == NULL &&
	      json_object_get(id, "acr") == NULL && json_object_get(id, "new_user") == NULL);
	check(json_object_get(tokens, "refresh_token") == NULL);
	json_decref(id);
	json_decref(tokens);
	crypto_free_str(code);
}

static void test_replay_revokes(void)
{
	char key[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);
	json_t *tokens = NULL, *again = NULL, *rotated = NULL, *s;

	g.refresh = 1;
	code = issue(&g);
	check(exchange(client_a, code, REDIRECT, NULL, &tokens) == ERR_NONE);
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	/* The first exchange's session and refresh token are gone with the replay. */
	s = fixture_get(TBL_SESSIONS, key);
	check(s == NULL);
	json_decref(s);
	check(token_refresh(&c, client_a,
			    json_string_value(json_object_get(tokens, "refresh_token")),
			    &rotated) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, REDIRECT, NULL, &again) == ERR_BAD_CREDENTIALS);
	json_decref(rotated);
	json_decref(again);
	json_decref(tokens);
	crypto_free_str(code);
}

/* Each wrong presentation is refused and consumes nothing: the right one still works. */
static void test_wrong_presentations_consume_nothing(void)
{
	char key[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);
	json_t *tokens = NULL;

	g.code_challenge = CHALLENGE;
	code = issue(&g);
	check(exchange(client_b, code, REDIRECT, VERIFIER, NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, "https://app.example/cb2", VERIFIER, NULL) ==
	      ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, NULL, VERIFIER, NULL) == ERR_BAD_CREDENTIALS);
	/* PKCE downgrade: a challenge was sent, no verifier comes. */
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, REDIRECT, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
		       NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, REDIRECT, "short", NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, REDIRECT, VERIFIER, &tokens) == ERR_NONE);
	json_decref(tokens);
	crypto_free_str(code);
}

static void test_verifier_without_challenge(void)
{
	char key[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);

	code = issue(&g);
	check(exchange(client_a, code, REDIRECT, VERIFIER, NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_NONE);
	crypto_free_str(code);
}

static void test_unknown_and_expired(void)
{
	char key[KEYRING_TAG_HEX], tag[KEYRING_TAG_HEX], *code;
	struct authcode_grant g = grant(key);
	char longcode[200];
	json_t *rec;

	check(exchange(client_a, "nonsense", REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	check(exchange(client_a, "", REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	memset(longcode, 'a', sizeof(longcode) - 1);
	longcode[sizeof(longcode) - 1] = '\0';
	check(exchange(client_a, longcode, REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	code = issue(&g);
	check(keyring_tag(&keys, tag, "authcode", code, NULL) == 0);
	rec = fixture_get(TBL_CODES, tag);
	/* Issued AUTHCODE_TTL seconds ago. */
	if (check(rec != NULL &&
		  json_integer_value(json_object_get(rec, "exp")) <= time(NULL) + AUTHCODE_TTL)) {
		json_object_set_new(rec, "exp", json_integer((json_int_t)time(NULL) - 1));
		check(fixture_put(TBL_CODES, tag, rec) == 0);
	}
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_BAD_CREDENTIALS);
	json_decref(rec);
	crypto_free_str(code);
}

static void test_session_and_user_gone(void)
{
	char key[KEYRING_TAG_HEX], *code, *code2;
	struct authcode_grant g = grant(key);
	json_t *s;

	code = issue(&g);
	code2 = issue(&g);
	s = fixture_get(TBL_SESSIONS, key);
	if (check(s != NULL)) {
		json_object_set_new(s, "exp", json_integer((json_int_t)time(NULL) - 1));
		check(fixture_put(TBL_SESSIONS, key, s) == 0);
	}
	json_decref(s);
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_SESSION_NOT_FOUND);
	crypto_free_str(code);
	crypto_free_str(code2);

	g = grant(key);
	code = issue(&g);
	check(fixture_set_status(user_id, "Disabled") == USER_CREATED);
	check(exchange(client_a, code, REDIRECT, NULL, NULL) == ERR_USER_NOT_ACTIVE);
	check(fixture_set_status(user_id, "Active") == USER_CREATED);
	crypto_free_str(code);
}

/* An access token of a code exchanged with scope (new string), or NULL. */
static char *access_for(const char *scope)
{
	char key[KEYRING_TAG_HEX], *code, *at = NULL;
	struct authcode_grant g = grant(key);
	json_t *tokens = NULL;

	g.scope = scope;
	code = issue(&g);
	if (check(exchange(client_a, code, REDIRECT, NULL, &tokens) == ERR_NONE))
		at = strdup(json_string_value(json_object_get(tokens, "access_token")));
	json_decref(tokens);
	crypto_free_str(code);
	return at;
}

static void test_userinfo(void)
{
	char *full = access_for("openid email phone profile"), *bare = access_for("openid"),
	     *noopenid = access_for("email");
	json_t *at = NULL, *info = NULL;

	check(token_verify_access(&c, full, &at) == 1);
	check(token_userinfo(&c, at, &info) == ERR_NONE);
	check(strcmp(json_string_value(json_object_get(info, "sub")) ?: "", user_id) == 0);
	check(strcmp(json_string_value(json_object_get(info, "email")) ?: "", "ann@example.com") ==
	      0);
	check(json_object_get(info, "email_verified") != NULL);
	check(strcmp(json_string_value(json_object_get(info, "phone_number")) ?: "",
		     "+15555550100") == 0);
	check(strcmp(json_string_value(json_object_get(info, "preferred_username")) ?: "", "ann") ==
	      0);
	check(strcmp(json_string_value(json_object_get(info, "name")) ?: "", "Ann Lee") == 0);
	json_decref(at);
	json_decref(info);
	at = info = NULL;

	check(token_verify_access(&c, bare, &at) == 1);
	check(token_userinfo(&c, at, &info) == ERR_NONE);
	check(json_object_size(info) == 1 && json_object_get(info, "sub") != NULL);
	json_decref(at);
	json_decref(info);
	at = info = NULL;

	check(token_verify_access(&c, noopenid, &at) == 1);
	check(token_userinfo(&c, at, &info) == ERR_BAD_CREDENTIALS);
	json_decref(at);
	at = NULL;

	/* A changed byte breaks the signature; a disabled user gets nothing. */
	full[strlen(full) - 3] ^= 1;
	check(token_verify_access(&c, full, &at) == 0);
	check(token_verify_access(&c, "not.a.token", &at) == 0);
	check(token_verify_access(&c, NULL, &at) == 0);
	check(token_verify_access(&c, bare, &at) == 1);
	check(fixture_set_status(user_id, "Disabled") == USER_CREATED);
	check(token_userinfo(&c, at, &info) == ERR_BAD_CREDENTIALS);
	check(fixture_set_status(user_id, "Active") == USER_CREATED);
	json_decref(at);
	free(full);
	free(bare);
	free(noopenid);
}

int main(void)
{
	json_t *spec;

	if (fixture_open("/tmp", "authcode", 8) < 0)
		return fixture_close(), 1;
	spec = json_pack("{s:s, s:[s]}", "name", "app A", "redirect_uris", REDIRECT);
	client_a = fixture_client(spec);
	json_decref(spec);
	spec = json_pack("{s:s, s:[s]}", "name", "app B", "redirect_uris", REDIRECT);
	client_b = fixture_client(spec);
	json_decref(spec);
	spec = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "email", "ann@example.com",
			 "phone_number", "+15555550100", "username", "ann", "name", "first_name",
			 "Ann", "last_name", "Lee");
	fixture_user_of(spec, user_id);
	json_decref(spec);
	if (check(client_a != NULL && client_b != NULL && user_id[0])) {
		test_exchange_once();
		test_no_nonce_no_refresh();
		test_replay_revokes();
		test_wrong_presentations_consume_nothing();
		test_verifier_without_challenge();
		test_unknown_and_expired();
		test_session_and_user_gone();
		test_userinfo();
	}
	json_decref(client_a);
	json_decref(client_b);
	fixture_close();
	return check_done();
}
