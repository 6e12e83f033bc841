#include "token.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "jwt.h"
#include "log.h"

int token_refresh_create_txn(struct store_txn *t, struct ctx *c, const char *session_key,
			     struct login_grant *g, const char *family)
{
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec;
	int rc;

	g->refresh_token = crypto_random_token(REFRESH_TOKEN_BYTES);
	if (g->refresh_token == NULL ||
	    keyring_tag(c->keys, key, "refresh", g->refresh_token, NULL) < 0)
		return STORE_ERR;
	rec = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "session", session_key, "user_id",
			json_string_value(json_object_get(g->user, "user_id")), "client_id",
			g->client_id, "family", family ? family : key, "created", (json_int_t)now,
			"exp", (json_int_t)(now + (time_t)c->conf->refresh_ttl));
	if (rec == NULL)
		return STORE_ERR;
	rc = store_put(t, TBL_REFRESH, key, strlen(key), rec);
	json_decref(rec);
	return rc;
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

static json_t *roles_of(json_t *user)
{
	json_t *roles = json_object_get(user, "roles");
	return json_is_array(roles) ? json_incref(roles) : json_array();
}

json_t *token_response(struct ctx *c, const struct login_grant *g, const struct login_opts *o,
		       const char *aud)
{
	const char *sub = json_string_value(json_object_get(g->user, "user_id"));
	json_int_t now = (json_int_t)time(NULL);
	char *jti = crypto_random_token(16), *access = NULL, *id = NULL;
	json_t *at = NULL, *idt = NULL, *out = NULL, *request = NULL;

	if (jti == NULL)
		goto out;
	at = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:s, s:s}", "iss",
		       c->conf->issuer, "sub", sub, "aud", aud, "client_id", g->client_id, "iat",
		       now, "exp", now + (json_int_t)c->conf->access_ttl, "jti", jti, "sid", g->sid,
		       "roles", roles_of(g->user), "tid", "default", "scope", "openid");
	idt = json_pack("{s:s, s:s, s:s, s:I, s:I, s:O, s:O, s:s, s:s}", "iss", c->conf->issuer,
			"sub", sub, "aud", g->client_id, "iat", now, "exp",
			now + (json_int_t)c->conf->id_ttl, "auth_time",
			json_object_get(g->session, "auth_time"), "amr",
			json_object_get(g->session, "amr"), "sid", g->sid, "tid", "default");
	if (at == NULL || idt == NULL)
		goto out;
	if (o->claims != NULL) {
		request = json_object_get(o->claims, "id_token");
		add_requested_claims(idt, g->user, request);
		add_requested_claims(at, g->user, json_object_get(o->claims, "access_token"));
	}
	if (g->extra_claims != NULL)
		json_object_update(idt, g->extra_claims);
	access = jwt_sign(c->keys->signing, "at+jwt", at);
	id = jwt_sign(c->keys->signing, "JWT", idt);
	if (access == NULL || id == NULL) {
		log_err("signing the user tokens failed");
		goto out;
	}
	out = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "access_token", access, "id_token", id,
			"refresh_token", g->refresh_token, "token_type", "Bearer", "expires_in",
			(json_int_t)c->conf->access_ttl, "session_id", g->session_id);
out:
	json_decref(at);
	json_decref(idt);
	free(jti);
	free(access);
	free(id);
	return out;
}
