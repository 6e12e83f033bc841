#include "token.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "b64url.h"
#include "crypto.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "user.h"

int token_refresh_create_txn(struct store_txn *t, struct ctx *c, struct login_grant *g,
			     const char *aud, const char *family)
{
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec;
	int rc;

	crypto_free_str(g->refresh_token);
	free(g->aud);
	g->aud = strdup(aud);
	g->refresh_token = crypto_random_token(REFRESH_TOKEN_BYTES);
	if (g->aud == NULL || g->refresh_token == NULL ||
	    keyring_tag(c->keys, key, "refresh", g->refresh_token, NULL) < 0)
		return STORE_ERR;
	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "session", g->session_key, "user_id",
			json_string_value(json_object_get(g->user, "user_id")), "client_id",
			g->client_id, "aud", aud, "family", family ? family : key, "created",
			(json_int_t)now, "exp", (json_int_t)(now + (time_t)c->conf->refresh_ttl));
	if (rec == NULL)
		return STORE_ERR;
	/* A refreshed ID token answers the claims request of the login that began the family. */
	if (g->claims != NULL)
		json_object_set(rec, "claims", g->claims);
	if (g->org_id != NULL)
		json_object_set_new(rec, "org_id", json_string(g->org_id));
	rc = store_put(t, TBL_REFRESH, key, strlen(key), rec);
	json_decref(rec);
	return rc;
}

/*
 * The successor of a rotated token is kept for the grace window, encrypted with a pad only
 * the holder of the predecessor can derive (HMAC under the server key of the predecessor), so
 * that a retried refresh gets the same successor while the database alone reveals nothing.
 */
static int successor_pad(struct ctx *c, const char *old_raw, unsigned char pad[CRYPTO_HASH_LEN])
{
	char hex[KEYRING_TAG_HEX];
	if (keyring_tag(c->keys, hex, "refresh-successor", old_raw, NULL) < 0)
		return -1;
	for (int i = 0; i < CRYPTO_HASH_LEN; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		pad[i] = (unsigned char)v;
	}
	crypto_wipe(hex, sizeof(hex));
	return 0;
}

/* XOR is its own inverse: this seals a successor and opens a sealed one. */
/* XOR raw (a b64url token of REFRESH_TOKEN_BYTES) with the pad, as b64url. New or NULL. */
static char *seal_successor(struct ctx *c, const char *old_raw, const char *succ_raw)
{
	unsigned char pad[CRYPTO_HASH_LEN], *bytes = NULL;
	size_t len;
	char *out = NULL;

	if (b64url_decode(succ_raw, strlen(succ_raw), &bytes, &len) < 0 ||
	    len != REFRESH_TOKEN_BYTES || successor_pad(c, old_raw, pad) < 0)
		goto out;
	for (size_t i = 0; i < len; i++)
		bytes[i] ^= pad[i];
	out = b64url_encode(bytes, len);
out:
	crypto_wipe(pad, sizeof(pad));
	if (bytes != NULL) {
		crypto_wipe(bytes, REFRESH_TOKEN_BYTES);
		free(bytes);
	}
	return out;
}

struct refresh_state {
	struct ctx *c;
	json_t *client;
	const char *raw;
	struct login_grant g;
};

/* A reused (already rotated) token: the family is compromised, its session ends. */
static int revoke_family(struct store_txn *t, json_t *rec)
{
	const char *session = json_string_value(json_object_get(rec, "session"));
	int rc = session ? session_end_txn(t, session) : 0;
	log_warn("a rotated refresh token was presented again: its session is revoked");
	metrics_count(METRIC_REFRESH_REUSE);
	audit_event("refresh_reuse", 0, "family_revoked", "user_id",
		    json_string_value(json_object_get(rec, "user_id")), (char *)NULL);
	return rc < 0 ? rc : ERR_BAD_CREDENTIALS;
}

/* Within the grace window: the same successor, if it is still the live end of the chain. */
static int grace_successor(struct refresh_state *r, struct store_txn *t, json_t *rec)
{
	const char *sealed = json_string_value(json_object_get(rec, "successor"));
	char key[KEYRING_TAG_HEX];
	json_t *next = NULL;
	int rc;

	crypto_free_str(r->g.refresh_token);
	r->g.refresh_token = sealed ? seal_successor(r->c, r->raw, sealed) : NULL;
	if (r->g.refresh_token == NULL ||
	    keyring_tag(r->c->keys, key, "refresh", r->g.refresh_token, NULL) < 0)
		return revoke_family(t, rec);
	rc = store_get(t, TBL_REFRESH, key, strlen(key), &next, 0);
	if (rc < 0)
		return rc;
	if (rc == STORE_NOTFOUND || json_object_get(next, "rotated_at") != NULL) {
		json_decref(next);
		return revoke_family(t, rec);
	}
	json_decref(next);
	return ERR_NONE;
}

static int rotate(struct refresh_state *r, struct store_txn *t, const char *key, json_t *rec)
{
	char *sealed;
	int rc = token_refresh_create_txn(t, r->c, &r->g,
					  json_string_value(json_object_get(rec, "aud")) ?: "",
					  json_string_value(json_object_get(rec, "family")));
	if (rc < 0)
		return rc;
	sealed = seal_successor(r->c, r->raw, r->g.refresh_token);
	if (sealed == NULL)
		return STORE_ERR;
	json_object_set_new(rec, "rotated_at", json_integer((json_int_t)time(NULL)));
	json_object_set_new(rec, "successor", json_string(sealed));
	free(sealed);
	rc = store_put(t, TBL_REFRESH, key, strlen(key), rec);
	metrics_count(METRIC_REFRESH_ROTATIONS);
	return rc < 0 ? rc : ERR_NONE;
}

static int refresh_txn(struct store_txn *t, void *argp)
{
	struct refresh_state *r = argp;
	const char *client_id = json_string_value(json_object_get(r->client, "client_id"));
	char key[KEYRING_TAG_HEX];
	json_t *rec = NULL, *rotated;
	time_t now = time(NULL);
	int rc;

	login_grant_free(&r->g);
	r->g.client_id = client_id;
	if (strlen(r->raw) > 128 || keyring_tag(r->c->keys, key, "refresh", r->raw, NULL) < 0)
		return ERR_BAD_CREDENTIALS;
	rc = store_get(t, TBL_REFRESH, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_BAD_CREDENTIALS;
	if (strcmp(json_string_value(json_object_get(rec, "client_id")) ?: "", client_id) != 0 ||
	    json_integer_value(json_object_get(rec, "exp")) <= (json_int_t)now) {
		rc = ERR_BAD_CREDENTIALS;
		goto out;
	}
	snprintf(r->g.session_key, sizeof(r->g.session_key), "%s",
		 json_string_value(json_object_get(rec, "session")) ?: "");
	rc = session_get_live_txn(t, r->g.session_key, &r->g.session);
	if (rc <= 0) {
		rc = rc < 0 ? rc : ERR_BAD_CREDENTIALS;
		goto out;
	}
	rc = user_find_txn(t, ID_USER_ID, json_string_value(json_object_get(rec, "user_id")) ?: "",
			   &r->g.user);
	if (rc <= 0 || !user_is_active(r->g.user)) {
		rc = rc < 0 ? rc : ERR_BAD_CREDENTIALS;
		goto out;
	}
	memcpy(r->g.sid, r->g.session_key, SESSION_HANDLE_LEN);
	r->g.claims = json_incref(json_object_get(rec, "claims"));
	/* Roles come from the user's membership now: a removed member's refresh fails. */
	if (session_scope_org(&r->g, json_string_value(json_object_get(rec, "org_id"))) !=
	    ERR_NONE) {
		rc = ERR_BAD_CREDENTIALS;
		goto out;
	}
	rotated = json_object_get(rec, "rotated_at");
	if (rotated == NULL)
		rc = rotate(r, t, key, rec);
	else if (r->c->conf->refresh_grace > 0 &&
		 now - (time_t)json_integer_value(rotated) <= (time_t)r->c->conf->refresh_grace)
		rc = grace_successor(r, t, rec);
	else
		rc = revoke_family(t, rec);
	if (rc == ERR_NONE && r->g.aud == NULL)
		r->g.aud = strdup(json_string_value(json_object_get(rec, "aud")) ?: "");
out:
	json_decref(rec);
	return rc;
}

int token_refresh(struct ctx *c, json_t *client, const char *refresh_token, json_t **tokens)
{
	struct refresh_state r = {.c = c, .client = client, .raw = refresh_token};
	struct login_opts opts = {0};
	int rc = store_run(c->store, refresh_txn, &r);

	rc = store_outcome(rc, ERR_UNAVAILABLE);
	if (rc == ERR_NONE) {
		opts.claims = r.g.claims;
		*tokens = token_response(c, &r.g, &opts);
		if (*tokens == NULL)
			rc = ERR_INTERNAL;
	}
	login_grant_free(&r.g);
	return rc;
}

struct revoke_state {
	struct ctx *c;
	const char *client_id;
	const char *raw;
};

static int revoke_txn(struct store_txn *t, void *argp)
{
	struct revoke_state *r = argp;
	char key[KEYRING_TAG_HEX];
	json_t *rec;
	int rc;

	if (strlen(r->raw) > 128 || keyring_tag(r->c->keys, key, "refresh", r->raw, NULL) < 0)
		return 0;
	rc = store_get(t, TBL_REFRESH, key, strlen(key), &rec, 1);
	if (rc <= 0)
		return rc;
	/* RFC 7009 2.1: a token issued to another client is left alone. */
	if (strcmp(json_string_value(json_object_get(rec, "client_id")) ?: "", r->client_id) == 0) {
		rc = session_end_txn(t, json_string_value(json_object_get(rec, "session")) ?: "");
		if (rc >= 0)
			rc = store_del(t, TBL_REFRESH, key, strlen(key));
	}
	json_decref(rec);
	return rc < 0 ? rc : 0;
}

int token_revoke(struct ctx *c, json_t *client, const char *refresh_token)
{
	struct revoke_state r = {c, json_string_value(json_object_get(client, "client_id")),
				 refresh_token};
	int rc = store_run(c->store, revoke_txn, &r);
	return rc < 0 ? ERR_UNAVAILABLE : ERR_NONE;
}

/*
 * OIDC Core 3.1.3.6 at_hash: the left half of the hash of the access token's ASCII, with the
 * hash of the ID token's alg (SHA-512 for Ed25519, as OIDC's errata and RFC 8037 pair them).
 * New reference.
 */
static json_t *at_hash(const jwk_t *key, const char *access)
{
	unsigned char h[64];
	size_t half = 16;
	char *b64;
	json_t *v;

	if (strcmp(jwk_alg(key), JWK_EDDSA) == 0) {
		crypto_sha512(access, strlen(access), h);
		half = 32;
	} else {
		crypto_sha256(access, strlen(access), h);
	}
	b64 = b64url_encode(h, half);
	v = b64 ? json_string(b64) : json_null();
	free(b64);
	return v;
}

/* Claims of the user the OIDC "claims" request may select for a token. */
static void add_requested_claims(json_t *claims, json_t *user, json_t *request)
{
	json_t *email = json_object_get(user, "email"),
	       *phone = json_object_get(user, "phone_number");
	const char *name;
	json_t *v;

	if (!json_is_object(request))
		return;
	json_object_foreach(request, name, v)
	{
		json_t *value = NULL;
		if (strcmp(name, "email") == 0)
			value = json_object_get(email, "value");
		else if (strcmp(name, "email_verified") == 0)
			value = json_object_get(email, "email_verified");
		else if (strcmp(name, "phone_number") == 0)
			value = json_object_get(phone, "value");
		else if (strcmp(name, "phone_number_verified") == 0)
			value = json_object_get(phone, "phone_number_verified");
		else if (strcmp(name, "username") == 0 || strcmp(name, "roles") == 0 ||
			 strcmp(name, "custom_data") == 0)
			value = json_object_get(user, name);
		if (value != NULL && !json_is_null(value))
			json_object_set(claims, name, value);
	}
}

/* The roles tokens carry: the user's, or their roles in the organization the login is for. */
static json_t *roles_of(const struct login_grant *g)
{
	json_t *roles = g->org_roles ? g->org_roles : json_object_get(g->user, "roles");
	return json_is_array(roles) ? json_incref(roles) : json_array();
}

json_t *token_response(struct ctx *c, const struct login_grant *g, const struct login_opts *o)
{
	const char *sub = json_string_value(json_object_get(g->user, "user_id"));
	json_int_t now = (json_int_t)time(NULL);
	char *jti = crypto_random_token(16), *access = NULL, *id = NULL;
	json_t *at = NULL, *idt = NULL, *out = NULL;
	const jwk_t *key = c->keys->signing;

	if (jti == NULL || key == NULL) /* no key yet: a replicated site that just became master */
		goto out;
	at = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:s, s:s}", "iss",
		       c->conf->issuer, "sub", sub, "aud", g->aud ? g->aud : g->client_id,
		       "client_id", g->client_id, "iat", now, "exp",
		       now + (json_int_t)c->conf->access_ttl, "jti", jti, "sid", g->sid, "roles",
		       roles_of(g), "tid", "default", "scope", g->scope ? g->scope : "openid");
	idt = json_pack("{s:s, s:s, s:s, s:I, s:I, s:O, s:O, s:s, s:s}", "iss", c->conf->issuer,
			"sub", sub, "aud", g->client_id, "iat", now, "exp",
			now + (json_int_t)c->conf->id_ttl, "auth_time",
			json_object_get(g->session, "auth_time"), "amr",
			json_object_get(g->session, "amr"), "sid", g->sid, "tid", "default");
	if (at == NULL || idt == NULL)
		goto out;
	if (o->claims != NULL) {
		add_requested_claims(idt, g->user, json_object_get(o->claims, "id_token"));
		add_requested_claims(at, g->user, json_object_get(o->claims, "access_token"));
	}
	if (g->extra_claims != NULL)
		json_object_update(idt, g->extra_claims);
	if (g->org_id != NULL) {
		/* Inside an organization the roles are that organization's, whoever asked. */
		json_object_set_new(idt, "org_id", json_string(g->org_id));
		json_object_set_new(at, "org_id", json_string(g->org_id));
		json_object_set_new(at, "roles", roles_of(g));
		if (json_object_get(idt, "roles") != NULL)
			json_object_set_new(idt, "roles", roles_of(g));
	}
	if (g->nonce != NULL)
		json_object_set_new(idt, "nonce", json_string(g->nonce));
	if (g->acr != NULL)
		json_object_set_new(idt, "acr", json_string(g->acr));
	access = jwt_sign(key, "at+jwt", at);
	if (access != NULL && g->scope != NULL)
		json_object_set_new(idt, "at_hash", at_hash(key, access));
	id = jwt_sign(key, "JWT", idt);
	if (access == NULL || id == NULL) {
		log_err("signing the user tokens failed");
		goto out;
	}
	out = json_pack("{s:s, s:s, s:s, s:I}", "access_token", access, "id_token", id,
			"token_type", "Bearer", "expires_in", (json_int_t)c->conf->access_ttl);
	if (out != NULL && g->refresh_token != NULL)
		json_object_set_new(out, "refresh_token", json_string(g->refresh_token));
	if (out != NULL && g->scope != NULL)
		json_object_set_new(out, "scope", json_string(g->scope));
	if (out != NULL && g->session_id != NULL)
		json_object_set_new(out, "session_id", json_string(g->session_id));
out:
	json_decref(at);
	json_decref(idt);
	free(jti);
	free(access);
	free(id);
	return out;
}

int token_verify_access(struct ctx *c, const char *token, json_t **claims)
{
	json_int_t now = (json_int_t)time(NULL);
	json_t *cl = NULL;

	if (token == NULL || strlen(token) > 8192 ||
	    jwt_verify(token, c->keys->published, c->keys->npublished, "at+jwt", &cl) != 1)
		return 0;
	if (strcmp(json_string_value(json_object_get(cl, "iss")) ?: "", c->conf->issuer) != 0 ||
	    !json_is_integer(json_object_get(cl, "exp")) ||
	    json_integer_value(json_object_get(cl, "exp")) <= now ||
	    json_integer_value(json_object_get(cl, "iat")) > now + 60 ||
	    json_string_value(json_object_get(cl, "sub")) == NULL) {
		json_decref(cl);
		return 0;
	}
	*claims = cl;
	return 1;
}

/* 1 when the space-separated list has word. */
static int has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p; p += strcspn(p, " "), p += strspn(p, " "))
		if (strncmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

/* Set out's claim name to the user's member value at path (object, then member) if present. */
static void copy_claim(json_t *out, const char *name, json_t *obj, const char *member)
{
	json_t *v = json_object_get(obj, member);

	if (v != NULL && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
		json_object_set(out, name, v);
}

/* OIDC "name": the user's name parts joined by spaces, when any is set. */
static void full_name(json_t *out, json_t *name)
{
	static const char *const parts[] = {"first_name", "middle_name", "last_name"};
	char buf[512] = "";

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		const char *p = json_string_value(json_object_get(name, parts[i]));
		if (p == NULL || *p == '\0')
			continue;
		if (buf[0])
			strncat(buf, " ", sizeof(buf) - strlen(buf) - 1);
		strncat(buf, p, sizeof(buf) - strlen(buf) - 1);
	}
	if (buf[0])
		json_object_set_new(out, "name", json_string(buf));
}

int token_userinfo(struct ctx *c, json_t *at, json_t **out)
{
	const char *sub = json_string_value(json_object_get(at, "sub"));
	const char *scope = json_string_value(json_object_get(at, "scope")) ?: "";
	json_t *user = NULL, *o;
	int rc;

	if (sub == NULL || !has_word(scope, "openid"))
		return ERR_BAD_CREDENTIALS;
	rc = user_get(c, ID_USER_ID, sub, &user);
	if (rc < 0)
		return ERR_UNAVAILABLE;
	if (rc == 0 || !user_is_active(user)) {
		json_decref(user);
		return ERR_BAD_CREDENTIALS;
	}
	o = json_pack("{s:s}", "sub", sub);
	if (has_word(scope, "email")) {
		copy_claim(o, "email", json_object_get(user, "email"), "value");
		copy_claim(o, "email_verified", json_object_get(user, "email"), "email_verified");
	}
	if (has_word(scope, "phone")) {
		copy_claim(o, "phone_number", json_object_get(user, "phone_number"), "value");
		copy_claim(o, "phone_number_verified", json_object_get(user, "phone_number"),
			   "phone_number_verified");
	}
	if (has_word(scope, "profile")) {
		full_name(o, json_object_get(user, "name"));
		copy_claim(o, "given_name", json_object_get(user, "name"), "first_name");
		copy_claim(o, "family_name", json_object_get(user, "name"), "last_name");
		copy_claim(o, "preferred_username", user, "username");
	}
	json_decref(user);
	*out = o;
	return ERR_NONE;
}
