#include "session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "token.h"
#include "user.h"

#define SESSION_ID_BYTES 32

static int amr_add(json_t *amrs, const char *amr)
{
	size_t i;
	json_t *v;
	json_array_foreach(amrs, i, v) if (strcmp(json_string_value(v), amr) == 0) return 0;
	return json_array_append_new(amrs, json_string(amr));
}

/* Load the session named by the raw id for update: alive and the same user's, or not found. */
static int session_resume(struct store_txn *t, struct ctx *c, const char *raw, json_t *user,
			  char key[KEYRING_TAG_HEX], json_t **session)
{
	const char *user_id = json_string_value(json_object_get(user, "user_id"));
	json_t *s;
	int rc;

	if (strlen(raw) > 256 || keyring_tag(c->keys, key, "session", raw, NULL) < 0)
		return STORE_NOTFOUND;
	rc = store_get(t, TBL_SESSIONS, key, strlen(key), &s, 1);
	if (rc != STORE_FOUND)
		return rc;
	if (json_integer_value(json_object_get(s, "exp")) <= (json_int_t)time(NULL) ||
	    strcmp(json_string_value(json_object_get(s, "user_id")) ?: "", user_id) != 0) {
		json_decref(s);
		return STORE_NOTFOUND;
	}
	*session = s;
	return STORE_FOUND;
}

int session_login_txn(struct store_txn *t, struct ctx *c, json_t *user, json_t *client,
		      const char *amr, const struct login_opts *opts, struct login_grant *g)
{
	/* The channel the login proved; a direct passcode proves none. */
	const char *channel = strcmp(amr, "sms") == 0	? "phone_number"
			      : strcmp(amr, "otp") == 0 ? NULL
							: "email";
	time_t now = time(NULL);
	char key[KEYRING_TAG_HEX];
	json_int_t max_exp, exp;
	json_t *s = NULL;
	int rc;

	memset(g, 0, sizeof(*g));
	g->client_id = json_string_value(json_object_get(client, "client_id"));
	g->user = json_incref(user);
	rc = user_record_login_txn(t, user, channel);
	if (rc < 0)
		return rc;

	if (opts->session_id != NULL) {
		rc = session_resume(t, c, opts->session_id, user, key, &s);
		if (rc < 0)
			return rc;
		if (rc == STORE_NOTFOUND)
			return ERR_SESSION_NOT_FOUND;
		g->session_id = strdup(opts->session_id);
	} else {
		g->session_id = crypto_random_token(SESSION_ID_BYTES);
		if (g->session_id == NULL ||
		    keyring_tag(c->keys, key, "session", g->session_id, NULL) < 0)
			return STORE_ERR;
		s = json_pack("{s:s, s:s, s:I, s:I, s:[]}", "user_id",
			      json_string_value(json_object_get(user, "user_id")), "client_id",
			      g->client_id, "created", (json_int_t)now, "max_exp",
			      (json_int_t)(now + (time_t)c->conf->session_max_ttl), "amr");
		if (s == NULL)
			return STORE_ERR;
	}
	g->session = s;
	/* The lifetime slides with each authentication, never past the absolute cap. */
	max_exp = json_integer_value(json_object_get(s, "max_exp"));
	exp = (json_int_t)(now + (time_t)c->conf->session_ttl);
	json_object_set_new(s, "exp", json_integer(exp < max_exp ? exp : max_exp));
	json_object_set_new(s, "auth_time", json_integer((json_int_t)now));
	if (amr_add(json_object_get(s, "amr"), amr) < 0)
		return STORE_ERR;
	rc = store_put(t, TBL_SESSIONS, key, strlen(key), s);
	if (rc < 0)
		return rc;
	memcpy(g->sid, key, 32);
	g->sid[32] = '\0';
	rc = token_refresh_create_txn(t, c, key, g, NULL);
	return rc < 0 ? rc : ERR_NONE;
}

void login_grant_free(struct login_grant *g)
{
	json_decref(g->user);
	json_decref(g->session);
	json_decref(g->extra_claims);
	crypto_free_str(g->session_id);
	crypto_free_str(g->refresh_token);
	memset(g, 0, sizeof(*g));
}
