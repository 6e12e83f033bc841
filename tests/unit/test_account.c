/*
 * account: the contract of account.h on a real store: a user who is no longer Active keeps no
 * session (more than one batch of them too), becoming Active again revives none and ends
 * whatever sessions a disable left behind; other changes leave the sessions alone; refusals
 * (bad input, a taken identifier, an unknown user); account_delete removes the user, its
 * indexes and every session, and touches nobody else's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account.h"
#include "fixture.h"
#include "session.h"
#include "token.h"
#include "user.h"

struct bulk_arg {
	const char *user_id;
	json_t *client;
	int n;
	char *refresh_token; /* of the last session (new), when asked */
	int want_rt;
};

/* n new sessions of a user in one transaction (whatever its status: below login.c). */
static int bulk_txn(struct store_txn *t, void *argp)
{
	struct bulk_arg *b = argp;
	struct login_opts opts = {0};
	struct login_grant g = {0};
	json_t *user = NULL;
	int rc = user_find_txn(t, ID_USER_ID, b->user_id, &user);

	for (int i = 0; i < b->n && rc >= 0; i++) {
		rc = session_login_txn(t, &c, user, b->client, "eotp", "email", NULL, &opts, &g);
		if (rc == ERR_NONE && b->want_rt && i == b->n - 1) {
			rc = token_refresh_create_txn(t, &c, &g, "aud", NULL);
			free(b->refresh_token);
			b->refresh_token = rc == 0 ? strdup(g.refresh_token) : NULL;
		}
		login_grant_free(&g);
	}
	json_decref(user);
	return rc < 0 ? rc : 0;
}

/* n sessions of user_id with client; the refresh token of the last one (new) or NULL. */
static char *sessions(const char *user_id, json_t *client, int n)
{
	char *rt = NULL;

	for (int done = 0; done < n; done += 50) {
		struct bulk_arg b = {user_id, client, n - done < 50 ? n - done : 50, NULL,
				     done + 50 >= n};
		check(store_run(c.store, bulk_txn, &b) == 0);
		if (b.refresh_token != NULL) {
			free(rt);
			rt = b.refresh_token;
		}
	}
	return rt;
}

struct scan {
	char prefix[128];
	size_t n;
};

static int scan_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	struct scan *s = arg;
	size_t plen = strlen(s->prefix);

	if (klen < plen || memcmp(k, s->prefix, plen) != 0)
		return 1;
	s->n++;
	return 0;
}

static int scan_txn(struct store_txn *t, void *arg)
{
	struct scan *s = arg;
	s->n = 0;
	return store_each(t, TBL_SESSIONS, s->prefix, strlen(s->prefix), scan_cb, s);
}

/* The user's index entries in TBL_SESSIONS (live or not). */
static size_t index_entries(const char *user_id)
{
	struct scan s;

	snprintf(s.prefix, sizeof(s.prefix), "u:%s:", user_id);
	check(store_run(c.store, scan_txn, &s) == 0);
	return s.n;
}

/* The user's live sessions, every client's. */
static size_t count(const char *user_id)
{
	int more = -1;
	json_t *all = session_list(&c, user_id, NULL, NULL, 100000, &more);
	size_t n = json_array_size(all);

	check(all != NULL && more == 0);
	json_decref(all);
	return n;
}

/* account_update of a patch given as JSON text: its result, the user's status into status. */
static int update(const char *user_id, const char *patch_text, char *status)
{
	char err[128] = "";
	json_t *patch = json_loads(patch_text, 0, NULL), *user = NULL;
	int rc = account_update(&c, user_id, patch, &user, err, sizeof(err));

	if (status != NULL)
		snprintf(status, 16, "%s",
			 json_string_value(json_object_get(user, "status")) ?: "");
	if (rc == USER_CREATED)
		check(json_is_object(user) &&
		      strcmp(json_string_value(json_object_get(user, "user_id")) ?: "", user_id) ==
			  0);
	else if (rc == USER_INVALID)
		check_msg(err[0] != '\0', "no message for an invalid update");
	json_decref(patch);
	json_decref(user);
	return rc;
}

static int refresh_ok(json_t *client, const char *rt)
{
	json_t *tokens = NULL;
	int rc = token_refresh(&c, client, rt, &tokens);

	json_decref(tokens);
	return rc == ERR_NONE;
}

static void statuses(json_t *a, json_t *b)
{
	char uid[64], other[64], status[16];
	char *rt, *other_rt;

	fixture_user("status@example.com", NULL, NULL, uid);
	fixture_user("bystander@example.com", NULL, NULL, other);
	other_rt = sessions(other, a, 2);

	/* Other changes leave the sessions alone. */
	rt = sessions(uid, a, 3);
	check(update(uid, "{\"external_account_id\": \"x-1\"}", status) == USER_CREATED &&
	      strcmp(status, "Active") == 0);
	check(update(uid, "{\"status\": \"Active\"}", status) == USER_CREATED);
	check(count(uid) == 3);

	/* Disabling ends every session, more than one batch of them, every client's. */
	free(rt);
	rt = sessions(uid, a, 180);
	free(sessions(uid, b, 40));
	check(count(uid) == 223);
	check(update(uid, "{\"status\": \"Disabled\"}", status) == USER_CREATED &&
	      strcmp(status, "Disabled") == 0);
	check(count(uid) == 0 && index_entries(uid) == 0);
	check(!refresh_ok(a, rt));
	/* Disabled again: nothing to do, still no error. */
	check(update(uid, "{\"status\": \"Disabled\"}", status) == USER_CREATED);

	/* Re-enabling revives none. */
	check(update(uid, "{\"status\": \"Active\"}", status) == USER_CREATED &&
	      strcmp(status, "Active") == 0);
	check(count(uid) == 0);
	check(!refresh_ok(a, rt));
	free(rt);

	/* Pending is not Active either. */
	rt = sessions(uid, a, 2);
	check(update(uid, "{\"status\": \"Pending\"}", status) == USER_CREATED &&
	      strcmp(status, "Pending") == 0);
	check(count(uid) == 0);
	check(!refresh_ok(a, rt));
	free(rt);

	/*
	 * A disable that left sessions behind (interrupted, or sessions opened below the login
	 * checks): becoming Active ends them first, a batch or many.
	 */
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	rt = sessions(uid, a, 30);
	check(count(uid) == 30);
	check(update(uid, "{\"status\": \"Active\"}", status) == USER_CREATED &&
	      strcmp(status, "Active") == 0);
	check(count(uid) == 0 && index_entries(uid) == 0);
	check(!refresh_ok(a, rt));
	free(rt);
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	rt = sessions(uid, a, 250);
	check(update(uid, "{\"status\": \"Active\"}", status) == USER_CREATED &&
	      strcmp(status, "Active") == 0);
	check(count(uid) == 0 && index_entries(uid) == 0);
	check(!refresh_ok(a, rt));
	free(rt);

	/* Somebody else's sessions are untouched throughout. */
	check(count(other) == 2);
	check(refresh_ok(a, other_rt));
	free(other_rt);
}

static void refusals(json_t *a)
{
	char uid[64], other[64], status[16];
	json_t *user = NULL;

	fixture_user("refuse@example.com", NULL, NULL, uid);
	fixture_user("taken@example.com", NULL, NULL, other);
	free(sessions(uid, a, 2));

	check(update(uid, "{\"status\": \"Gone\"}", status) == USER_INVALID);
	check(update(uid, "{\"email\": \"taken@example.com\"}", status) == USER_CONFLICT);
	check(update(uid, "{\"email\": null}", status) == USER_INVALID); /* no email nor phone */
	/* None of them changed anything. */
	check(count(uid) == 2);
	check(user_get(&c, ID_USER_ID, uid, &user) == STORE_FOUND);
	check(strcmp(json_string_value(json_object_get(user, "status")) ?: "", "Active") == 0);
	check(strcmp(json_string_value(json_object_get(json_object_get(user, "email"), "value"))
			 ?: "",
		     "refuse@example.com") == 0);
	json_decref(user);
	/* A refused disable ends nothing either. */
	check(update(uid, "{\"status\": \"Disabled\", \"email\": \"taken@example.com\"}", status) ==
	      USER_CONFLICT);
	check(count(uid) == 2);

	/* Unknown users. */
	check(update("no-such-user", "{\"status\": \"Disabled\"}", status) == STORE_NOTFOUND);
	check(account_delete(&c, "no-such-user") == STORE_NOTFOUND);
}

static void deletion(json_t *a, json_t *b)
{
	char uid[64], other[64];
	json_t *user = NULL;
	char *rt, *other_rt;

	fixture_user("delete@example.com", NULL, "deleteme", uid);
	fixture_user("stays@example.com", NULL, NULL, other);
	{
		json_t *patch = json_pack("{s:s}", "phone_number", "+15550001234"), *u = NULL;
		char err[128];
		check(account_update(&c, uid, patch, &u, err, sizeof(err)) == USER_CREATED);
		json_decref(patch);
		json_decref(u);
	}
	rt = sessions(uid, a, 130);
	free(sessions(uid, b, 5));
	other_rt = sessions(other, a, 1);

	check(account_delete(&c, uid) == STORE_FOUND);
	/* The user and every index of it. */
	check(user_get(&c, ID_USER_ID, uid, &user) == STORE_NOTFOUND);
	check(user_get(&c, ID_EMAIL, "delete@example.com", &user) == STORE_NOTFOUND);
	check(user_get(&c, ID_PHONE, "+15550001234", &user) == STORE_NOTFOUND);
	check(user_get(&c, ID_USERNAME, "deleteme", &user) == STORE_NOTFOUND);
	/* Every session, and with them the refresh tokens. */
	check(count(uid) == 0 && index_entries(uid) == 0);
	check(!refresh_ok(a, rt));
	free(rt);
	/* Once. */
	check(account_delete(&c, uid) == STORE_NOTFOUND);
	/* The identifiers are free again. */
	{
		char again[64];
		fixture_user("delete@example.com", NULL, "deleteme", again);
		check(strcmp(again, uid) != 0);
	}
	/* Nobody else's. */
	check(count(other) == 1 && refresh_ok(a, other_rt));
	check(user_get(&c, ID_USER_ID, other, &user) == STORE_FOUND);
	json_decref(user);
	free(other_rt);
}

int main(void)
{
	json_t *a, *b;

	if (fixture_open("/dev/shm", "account", 8) < 0)
		return check_done();
	a = fixture_direct_client("A", NULL, NULL);
	b = fixture_direct_client("B", NULL, NULL);
	check(a != NULL && b != NULL);

	statuses(a, b);
	refusals(a);
	deletion(a, b);

	json_decref(a);
	json_decref(b);
	fixture_close();
	return check_done();
}
