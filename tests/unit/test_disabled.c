/*
 * A disabled user's refresh tokens and sessions mint nothing, whatever else holds: the flows
 * (token_refresh, login_reauth: /oidc/token and /v1/auth/token/refresh, and
 * /v1/auth/session/authenticate) check the user's status themselves. Disabling a user also
 * ends their sessions (test_users.py), so an end-to-end test cannot tell whether this check
 * exists; here the session and the refresh token are alive and only the status differs.
 * Real session.c, token.c and user.c over tests/fuzz/store_mem.c, whose default record per
 * table is what every lookup in it finds (the keys are HMAC tags of the raw tokens).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "keyring.h"
#include "login.h"
#include "log.h"
#include "resp.h"
#include "session.h"
#include "store_mem.h"
#include "token.h"

static const char client_text[] =
    "{\"client_id\":\"c1\",\"name\":\"c\",\"secret\":\"00\",\"redirect_uris\":[],"
    "\"resources\":[],\"permissions\":[],\"signup\":\"open\",\"existence\":\"reveal\"}";
static const char session_text[] = "{\"user_id\":\"u1\",\"client_id\":\"c1\",\"created\":1,"
				   "\"max_exp\":4000000000,\"amr\":[\"otp\"],\"exp\":4000000000,"
				   "\"auth_time\":1}";
static const char refresh_text[] = "{\"session\":\"5e55105e55105e55105e55105e55105e\","
				   "\"user_id\":\"u1\",\"client_id\":\"c1\",\"aud\":\"c1\","
				   "\"family\":\"f\",\"created\":1,\"exp\":4000000000}";
static const char user_fmt[] = "{\"user_id\":\"u1\",\"email\":{\"value\":\"u@example.com\","
			       "\"email_verified\":true,\"verified_at\":1},\"status\":\"%s\","
			       "\"roles\":[],\"org_ids\":[]}";

static struct conf conf;
static struct keyring keys;
static struct ctx c;

/* The records of a live session and refresh token of user u1, whose status is status. */
static void records(const char *status)
{
	char user[512];

	snprintf(user, sizeof(user), user_fmt, status);
	store_mem_reset(c.store);
	store_mem_set_default(c.store, TBL_CLIENTS, client_text);
	store_mem_set_default(c.store, TBL_USERS, user);
	store_mem_set_default(c.store, TBL_SESSIONS, session_text);
	store_mem_set_default(c.store, TBL_REFRESH, refresh_text);
}

static int refresh(json_t *client)
{
	json_t *tokens = NULL;
	int rc = token_refresh(&c, client, "a-refresh-token", &tokens);

	check(rc != ERR_NONE || json_is_object(tokens));
	json_decref(tokens);
	return rc;
}

static int reauth(json_t *client)
{
	struct login_opts opts = {.session_id = "a-session-id"};
	struct login_grant g;
	int rc = login_reauth(&c, client, &opts, "c1", &g);

	login_grant_free(&g);
	return rc;
}

int main(void)
{
	static const char *const inactive[] = {"Disabled", "Pending", "", "active"};
	char dir[] = "/tmp/otlogin-test-disabled-XXXXXX", path[64];
	json_t *client = json_loads(client_text, 0, NULL);

	log_init("test_disabled", LOG_LEVEL_ERR);
	if (crypto_init() != 0 || mkdtemp(dir) == NULL) {
		printf("Bail out! setup\n");
		return 1;
	}
	conf_defaults(&conf);
	conf.test_mode = 1;
	c.conf = &conf;
	c.mail = ctx_mail_conf(&conf);
	c.store = store_open(dir, 4, 1);
	if (c.store == NULL || keyring_create(c.store, dir, "ES256") < 0 ||
	    keyring_load(&keys, c.store, dir, conf.key_overlap) < 0) {
		printf("Bail out! keyring\n");
		return 1;
	}
	c.keys = &keys;
	store_mem_mark_baseline(c.store);

	/* Active: both mint tokens (so the refusals below are the status's doing). */
	records("Active");
	check(refresh(client) == ERR_NONE);
	records("Active");
	check(reauth(client) == ERR_NONE);
	for (size_t i = 0; i < sizeof(inactive) / sizeof(inactive[0]); i++) {
		records(inactive[i]);
		check_msg(refresh(client) == ERR_BAD_CREDENTIALS, "refresh for status \"%s\"",
			  inactive[i]);
		records(inactive[i]);
		check_msg(reauth(client) == ERR_USER_NOT_ACTIVE, "session for status \"%s\"",
			  inactive[i]);
	}
	/* No status at all is not active either. */
	store_mem_reset(c.store);
	store_mem_set_default(c.store, TBL_USERS, "{\"user_id\":\"u1\"}");
	store_mem_set_default(c.store, TBL_SESSIONS, session_text);
	store_mem_set_default(c.store, TBL_REFRESH, refresh_text);
	check(refresh(client) == ERR_BAD_CREDENTIALS);
	check(reauth(client) == ERR_USER_NOT_ACTIVE);

	json_decref(client);
	keyring_free(&keys);
	store_close(c.store);
	conf_free(&conf);
	snprintf(path, sizeof(path), "%s/server.key", dir);
	unlink(path);
	rmdir(dir);
	return check_done();
}
