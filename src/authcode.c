#include "authcode.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "b64url.h"
#include "crypto.h"
#include "err.h"
#include "log.h"
#include "session.h"
#include "token.h"
#include "user.h"

#define AUTHCODE_BYTES 32

/* The store key of a raw code: its keyed hash. 0, or -1 for a code that cannot be ours. */
static int code_key(struct ctx *c, const char *code, char key[KEYRING_TAG_HEX])
{
	if (code == NULL || code[0] == '\0' || strlen(code) > 128)
		return -1;
	return keyring_tag(c->keys, key, "authcode", code, NULL);
}

/* Set member name of rec to the string v when v is set. */
static void set_str(json_t *rec, const char *name, const char *v)
{
	if (v != NULL)
		json_object_set_new(rec, name, json_string(v));
}

int authcode_issue_txn(struct store_txn *t, struct ctx *c, const struct authcode_grant *g,
		       char **code)
{
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	char *raw = crypto_random_token(AUTHCODE_BYTES);
	json_t *rec = NULL;
	int rc = STORE_ERR;

	if (raw == NULL || code_key(c, raw, key) < 0)
		goto out;
	rec =
	    json_pack("{s:s, s:s, s:s, s:b, s:I, s:I}", "client_id", g->client_id, "redirect_uri",
		      g->redirect_uri ? g->redirect_uri : "", "session", g->session_key, "refresh",
		      g->refresh, "iat", (json_int_t)now, "exp", (json_int_t)(now + AUTHCODE_TTL));
	if (rec == NULL)
		goto out;
	set_str(rec, "challenge", g->code_challenge);
	set_str(rec, "nonce", g->nonce);
	set_str(rec, "scope", g->scope);
	set_str(rec, "acr", g->acr);
	set_str(rec, "resource", g->resource);
	set_str(rec, "org_id", g->org_id);
	if (g->claims != NULL)
		json_object_set(rec, "claims", g->claims);
	if (g->extra_claims != NULL)
		json_object_set(rec, "extra_claims", g->extra_claims);
	rc = store_put(t, TBL_CODES, key, strlen(key), rec);
out:
	json_decref(rec);
	if (rc < 0) {
		crypto_free_str(raw);
		return rc;
	}
	*code = raw;
	return 0;
}

/*
 * RFC 7636 4.1 and 4.6: a verifier is 43 to 128 unreserved characters and matches when the
 * base64url SHA-256 of it equals the challenge. 1 when it matches, else 0.
 */
static int pkce_matches(const char *challenge, const char *verifier)
{
	static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					 "0123456789-._~";
	unsigned char h[CRYPTO_HASH_LEN];
	size_t len = strlen(verifier);
	char *want;
	int ok;

	if (len < 43 || len > 128 || strspn(verifier, unreserved) != len)
		return 0;
	crypto_sha256(verifier, len, h);
	want = b64url_encode(h, sizeof(h));
	ok = want != NULL && crypto_str_equal(want, challenge);
	free(want);
	return ok;
}

struct exchange_state {
	struct ctx *c;
	const struct authcode_exchange *x;
	json_t *rec; /* the code's record, after a successful exchange */
	struct login_grant g;
	const char *why;
};

/* Whether the presentation fits the code: 1, or 0 with s->why. Consumes nothing. */
static int presentation_ok(struct exchange_state *s, json_t *rec)
{
	const char *client = json_string_value(json_object_get(rec, "client_id")) ?: "";
	const char *redirect = json_string_value(json_object_get(rec, "redirect_uri")) ?: "";
	const char *challenge = json_string_value(json_object_get(rec, "challenge"));
	const struct authcode_exchange *x = s->x;

	if (strcmp(client, json_string_value(json_object_get(x->client, "client_id")) ?: "") != 0)
		s->why = "The code was issued to another client";
	/* RFC 6749 4.1.3: required and identical when the authorization request had one. */
	else if (redirect[0] != '\0' &&
		 (x->redirect_uri == NULL || strcmp(redirect, x->redirect_uri) != 0))
		s->why = "redirect_uri does not match the authorization request";
	else if (challenge != NULL && x->code_verifier == NULL)
		s->why = "code_verifier is required";
	else if (challenge == NULL && x->code_verifier != NULL)
		s->why = "code_verifier without a code_challenge";
	else if (challenge != NULL && !pkce_matches(challenge, x->code_verifier))
		s->why = "code_verifier does not match the code_challenge";
	else
		return 1;
	return 0;
}

/* The login grant of the code's session, its user, and what the code granted. */
static int grant_txn(struct exchange_state *s, struct store_txn *t, json_t *rec)
{
	struct login_grant *g = &s->g;
	const char *user_id;
	int rc;

	g->client_id = json_string_value(json_object_get(s->x->client, "client_id"));
	snprintf(g->session_key, sizeof(g->session_key), "%s",
		 json_string_value(json_object_get(rec, "session")) ?: "");
	rc = session_get_live_txn(t, g->session_key, &g->session);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	user_id = json_string_value(json_object_get(g->session, "user_id"));
	rc = user_find_txn(t, ID_USER_ID, user_id ? user_id : "", &g->user);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	if (!user_is_active(g->user))
		return ERR_USER_NOT_ACTIVE;
	memcpy(g->sid, g->session_key, SESSION_HANDLE_LEN);
	g->sid[SESSION_HANDLE_LEN] = '\0';
	rc = session_scope_org(g, json_string_value(json_object_get(rec, "org_id")));
	if (rc != ERR_NONE)
		return rc;
	g->claims = json_incref(json_object_get(rec, "claims"));
	g->extra_claims = json_incref(json_object_get(rec, "extra_claims"));
	g->scope = json_string_value(json_object_get(rec, "scope"));
	g->nonce = json_string_value(json_object_get(rec, "nonce"));
	g->acr = json_string_value(json_object_get(rec, "acr"));
	return ERR_NONE;
}

/* The access token's audience: the code's resource, else the default, else the client. */
static const char *audience(struct exchange_state *s, json_t *rec)
{
	const char *resource = json_string_value(json_object_get(rec, "resource"));

	if (resource != NULL)
		return resource;
	if (s->c->conf->default_audience[0] != '\0')
		return s->c->conf->default_audience;
	return json_string_value(json_object_get(s->x->client, "client_id"));
}

static int exchange_txn(struct store_txn *t, void *argp)
{
	struct exchange_state *s = argp;
	char key[KEYRING_TAG_HEX];
	json_t *rec = NULL;
	int rc;

	login_grant_free(&s->g);
	json_decref(s->rec);
	s->rec = NULL;
	s->why = "Invalid authorization code";
	if (code_key(s->c, s->x->code, key) < 0)
		return ERR_BAD_CREDENTIALS;
	rc = store_get(t, TBL_CODES, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_BAD_CREDENTIALS;
	if (json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)time(NULL) ||
	    json_object_get(rec, "session") == NULL) {
		s->why = "The authorization code has expired";
		rc = ERR_BAD_CREDENTIALS;
		goto out;
	}
	if (!presentation_ok(s, rec)) {
		rc = ERR_BAD_CREDENTIALS;
		goto out;
	}
	if (json_object_get(rec, "used") != NULL) {
		/*
		 * RFC 6749 4.1.2: a code used twice was stolen or replayed; what its first
		 * exchange issued is revoked by ending the login session (with it every refresh
		 * token it holds), as a reused refresh token does (token.c).
		 */
		log_warn("an authorization code was presented again: its login session is ended");
		audit_event("code_replay", 0, "session_revoked", (char *)NULL);
		rc = session_end_txn(t, json_string_value(json_object_get(rec, "session")));
		s->why = "The authorization code was already used";
		rc = rc < 0 ? rc : ERR_BAD_CREDENTIALS;
		goto out;
	}
	json_object_set_new(rec, "used", json_integer((json_int_t)time(NULL)));
	rc = store_put(t, TBL_CODES, key, strlen(key), rec);
	if (rc < 0)
		goto out;
	rc = grant_txn(s, t, rec);
	if (rc == ERR_NONE && json_is_true(json_object_get(rec, "refresh")))
		rc = token_refresh_create_txn(t, s->c, &s->g, audience(s, rec), NULL);
	if (rc == ERR_NONE && s->g.aud == NULL &&
	    (s->g.aud = strdup(audience(s, rec) ?: "")) == NULL)
		rc = STORE_ERR;
	if (rc == ERR_NONE) {
		s->rec = rec; /* the grant borrows its strings */
		rec = NULL;
	}
out:
	json_decref(rec);
	return rc;
}

int authcode_exchange(struct ctx *c, const struct authcode_exchange *x, json_t **tokens,
		      const char **why)
{
	struct exchange_state s = {.c = c, .x = x};
	struct login_opts opts = {0};
	int rc = store_run(c->store, exchange_txn, &s);

	rc = store_outcome(rc, ERR_UNAVAILABLE);
	audit_event("code_exchange", rc == ERR_NONE, audit_reason(rc), "user_id",
		    json_string_value(json_object_get(s.g.user, "user_id")), (char *)NULL);
	*why = s.why;
	if (rc == ERR_NONE) {
		opts.claims = s.g.claims;
		*tokens = token_response(c, &s.g, &opts);
		if (*tokens == NULL)
			rc = ERR_INTERNAL;
	}
	login_grant_free(&s.g);
	json_decref(s.rec);
	return rc;
}
