/*
 * session: the contract of session.h on a real store: a login opens a session or joins the
 * one named by session_id (alive, the same user's and client's only), amr and channels with
 * "mfa" only for two different channels (also for sessions from before channels were kept),
 * the sliding lifetime under the absolute cap, organization scoping, silent sign-in, ending
 * one session (by raw id or handle, the client's only), listing in pages, ending all of a
 * user's sessions across batches (of one client only, or all), and the purge rule of the
 * user index entries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "org.h"
#include "session.h"
#include "user.h"

/* ---- records ---- */

/* Set member of the record under key to the integer v. */
static void set_field(enum store_table tbl, const char *key, const char *member, json_int_t v)
{
	json_t *rec = fixture_get(tbl, key);

	if (check(rec != NULL)) {
		json_object_set_new(rec, member, json_integer(v));
		check(fixture_put(tbl, key, rec) == 0);
	}
	json_decref(rec);
}

static int index_exists(const char *user_id, const char *session_key)
{
	char ikey[300];
	json_t *rec;

	snprintf(ikey, sizeof(ikey), "u:%s:%s", user_id, session_key);
	rec = fixture_get(TBL_SESSIONS, ikey);
	json_decref(rec);
	return rec != NULL;
}

/* 1 when the JSON array a holds the string s. */
static int has(json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return 1;
	}
	return 0;
}

/* The public handle of a session key. */
static void to_handle(char handle[SESSION_HANDLE_LEN + 1], const char *key)
{
	memcpy(handle, key, SESSION_HANDLE_LEN);
	handle[SESSION_HANDLE_LEN] = '\0';
}

/* ---- logins ---- */

struct login_arg {
	const char *user_id;
	json_t *client;
	const char *amr, *channel, *verifies;
	struct login_opts opts;
	struct login_grant *g;
};

/* The user read inside the transaction, as the callers do; a refusal commits nothing. */
static int login_txn(struct store_txn *t, void *argp)
{
	struct login_arg *a = argp;
	json_t *user = NULL;
	int rc;

	login_grant_free(a->g);
	rc = user_find_txn(t, ID_USER_ID, a->user_id, &user);
	if (rc <= 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_USER_NOT_FOUND);
	rc = session_login_txn(t, &c, user, a->client, a->amr, a->channel, a->verifies, &a->opts,
			       a->g);
	json_decref(user);
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

/* Log user_id in to client (joining session_id when not NULL, for org_id when not NULL). */
static int login(const char *user_id, json_t *client, const char *amr, const char *channel,
		 const char *session_id, const char *org_id, struct login_grant *g)
{
	struct login_arg a = {user_id, client, amr, channel, NULL, {0}, g};

	a.opts.session_id = session_id;
	a.opts.org_id = org_id;
	memset(g, 0, sizeof(*g));
	return store_outcome(store_run(c.store, login_txn, &a), ERR_UNAVAILABLE);
}

/* A new session of user_id with client; its raw id into raw (64), its key into key. */
static int open_session(const char *user_id, json_t *client, char *raw, char *key)
{
	struct login_grant g;
	int rc = login(user_id, client, "eotp", "email", NULL, NULL, &g);

	if (rc == ERR_NONE) {
		snprintf(raw, 64, "%s", g.session_id);
		snprintf(key, KEYRING_TAG_HEX, "%s", g.session_key);
	}
	login_grant_free(&g);
	return rc;
}

static int alive(const char *key)
{
	json_t *s = fixture_get(TBL_SESSIONS, key);
	int live = s != NULL && json_integer_value(json_object_get(s, "exp")) > time(NULL);

	json_decref(s);
	return live;
}

struct reauth_arg {
	json_t *client;
	struct login_opts opts;
	struct login_grant *g;
};

static int reauth_txn(struct store_txn *t, void *argp)
{
	struct reauth_arg *a = argp;
	int rc = session_reauth_txn(t, &c, a->client, &a->opts, a->g);
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

static int reauth(json_t *client, const char *session_id, const char *org_id, struct login_grant *g)
{
	struct reauth_arg a = {client, {0}, g};

	a.opts.session_id = session_id;
	a.opts.org_id = org_id;
	memset(g, 0, sizeof(*g));
	return store_outcome(store_run(c.store, reauth_txn, &a), ERR_UNAVAILABLE);
}

/* ---- the user, below account.c ---- */

struct user_arg {
	const char *id;
	json_t *patch;
	int del;
};

static int user_txn(struct store_txn *t, void *argp)
{
	struct user_arg *a = argp;
	char err[128];
	json_t *user = NULL;
	int was, rc;

	if (a->del)
		return user_delete_txn(t, a->id);
	rc = user_update_txn(t, a->id, a->patch, &user, &was, err, sizeof(err));
	json_decref(user);
	return rc;
}

/* The user's status set with user_update_txn alone (no session is touched). */
static int set_status(const char *user_id, const char *status)
{
	struct user_arg a = {user_id, json_pack("{s:s}", "status", status), 0};
	int rc = store_run(c.store, user_txn, &a);

	json_decref(a.patch);
	return rc;
}

static int delete_user(const char *user_id)
{
	struct user_arg a = {user_id, NULL, 1};
	return store_run(c.store, user_txn, &a);
}

/* ---- the cases ---- */

static void new_and_join(json_t *a, json_t *b)
{
	char uid[64], other[64], legacy_key[KEYRING_TAG_HEX], ikey[300];
	struct login_grant g, g2;
	time_t now = time(NULL);
	json_t *s, *user, *legacy;
	char *raw;

	fixture_user("join@example.com", "+15550000001", NULL, uid);
	fixture_user("other@example.com", NULL, NULL, other);

	/* A new session: a raw id, its handle, the record, the index entry, the user's login. */
	check(login(uid, a, "eotp", "email", NULL, NULL, &g) == ERR_NONE);
	check(g.session_id != NULL && strlen(g.session_id) >= 40);
	check(strlen(g.session_key) == KEYRING_TAG_HEX - 1);
	check(strlen(g.sid) == SESSION_HANDLE_LEN &&
	      strncmp(g.sid, g.session_key, SESSION_HANDLE_LEN) == 0);
	check(g.refresh_token == NULL); /* the caller's (login.h) */
	check(strcmp(g.client_id, client_id_of(a)) == 0);
	check(strcmp(json_string_value(json_object_get(g.user, "user_id")), uid) == 0);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(s != NULL);
	check(strcmp(json_string_value(json_object_get(s, "user_id")) ?: "", uid) == 0);
	check(strcmp(json_string_value(json_object_get(s, "client_id")) ?: "", client_id_of(a)) ==
	      0);
	check(json_array_size(json_object_get(s, "amr")) == 1 &&
	      has(json_object_get(s, "amr"), "eotp"));
	check(json_array_size(json_object_get(s, "channels")) == 1 &&
	      has(json_object_get(s, "channels"), "email"));
	{
		json_int_t exp = json_integer_value(json_object_get(s, "exp"));
		json_int_t at = json_integer_value(json_object_get(s, "auth_time"));
		check(exp >= now + (json_int_t)conf.session_ttl &&
		      exp <= now + (json_int_t)conf.session_ttl + 5);
		check(at >= now && at <= now + 5);
		check(json_integer_value(json_object_get(s, "max_exp")) >=
		      now + (json_int_t)conf.session_max_ttl);
	}
	json_decref(s);
	check(index_exists(uid, g.session_key));
	/* The store keys the session by its hash only, never by the raw id. */
	s = fixture_get(TBL_SESSIONS, g.session_id);
	check(s == NULL);
	json_decref(s);
	raw = strdup(g.session_id);
	login_grant_free(&g);

	/* Joining by session_id: the same session; a second channel earns "mfa". */
	check(login(uid, a, "sms", "phone", raw, NULL, &g) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(strcmp(g.session_id, raw) == 0);
	check(s != NULL && has(json_object_get(s, "amr"), "eotp") &&
	      has(json_object_get(s, "amr"), "sms") && has(json_object_get(s, "amr"), "mfa"));
	check(has(json_object_get(s, "channels"), "email") &&
	      has(json_object_get(s, "channels"), "phone"));
	/* A factor again adds nothing twice. */
	login_grant_free(&g);
	check(login(uid, a, "sms", "phone", raw, NULL, &g) == ERR_NONE);
	json_decref(s);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(json_array_size(json_object_get(s, "amr")) == 3);
	check(json_array_size(json_object_get(s, "channels")) == 2);
	json_decref(s);
	login_grant_free(&g);

	/* Two methods over one channel are no mfa; nor is a login that proved no channel. */
	check(login(uid, a, "eotp", "email", NULL, NULL, &g) == ERR_NONE);
	check(login(uid, a, "eml", "email", g.session_id, NULL, &g2) == ERR_NONE);
	login_grant_free(&g2);
	check(login(uid, a, "otp", NULL, g.session_id, NULL, &g2) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(s != NULL && has(json_object_get(s, "amr"), "eml") &&
	      has(json_object_get(s, "amr"), "otp") && !has(json_object_get(s, "amr"), "mfa"));
	check(json_array_size(json_object_get(s, "channels")) == 1);
	json_decref(s);
	login_grant_free(&g2);
	/* A different channel after all: "otp" delivered by the backend. */
	check(login(uid, a, "otp", "otp", g.session_id, NULL, &g2) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(s != NULL && has(json_object_get(s, "amr"), "mfa"));
	json_decref(s);
	login_grant_free(&g2);
	login_grant_free(&g);

	/* The verified channel is marked on the user; every login sets last_auth. */
	check(user_get(&c, ID_USER_ID, uid, &user) == STORE_FOUND);
	check(json_string_value(json_object_get(user, "last_auth")) != NULL);
	json_decref(user);
	{
		struct login_arg la = {uid, a, "eotp", "email", "email", {0}, &g};
		memset(&g, 0, sizeof(g));
		check(store_run(c.store, login_txn, &la) == ERR_NONE);
		login_grant_free(&g);
		check(user_get(&c, ID_USER_ID, uid, &user) == STORE_FOUND);
		check(json_is_true(
		    json_object_get(json_object_get(user, "email"), "email_verified")));
		check(!json_is_true(json_object_get(json_object_get(user, "phone_number"),
						    "phone_number_verified")));
		json_decref(user);
	}

	/* Joining is for the same user and client only, and a live session only. */
	check(login(other, a, "eotp", "email", raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	check(login(uid, b, "eotp", "email", raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	check(login(uid, a, "eotp", "email", "no-such-session", NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	{
		char longid[400];
		memset(longid, 'x', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		check(login(uid, a, "eotp", "email", longid, NULL, &g) == ERR_SESSION_NOT_FOUND);
		login_grant_free(&g);
	}
	/* The refusals wrote nothing: the session is as it was. */
	check(login(uid, a, "eotp", "email", raw, NULL, &g) == ERR_NONE);
	set_field(TBL_SESSIONS, g.session_key, "exp", (json_int_t)now - 1);
	login_grant_free(&g);
	check(login(uid, a, "eotp", "email", raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	free(raw);

	/*
	 * A session from before channels were kept: what its amr values prove counts. Two
	 * methods over the mailbox stay one channel; a phone makes two.
	 */
	check(keyring_tag(&keys, legacy_key, "session", "legacy-session-id", NULL) == 0);
	legacy = json_pack("{s:s, s:s, s:I, s:I, s:I, s:[s]}", "user_id", uid, "client_id",
			   client_id_of(a), "created", (json_int_t)now, "max_exp",
			   (json_int_t)now + 86400, "exp", (json_int_t)now + 3600, "amr", "eml");
	check(fixture_put(TBL_SESSIONS, legacy_key, legacy) == 0);
	snprintf(ikey, sizeof(ikey), "u:%s:%s", uid, legacy_key);
	json_decref(legacy);
	legacy = json_object();
	check(fixture_put(TBL_SESSIONS, ikey, legacy) == 0);
	json_decref(legacy);
	check(login(uid, a, "eotp", "email", "legacy-session-id", NULL, &g) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, legacy_key);
	check(s != NULL && !has(json_object_get(s, "amr"), "mfa"));
	check(json_array_size(json_object_get(s, "channels")) == 1 &&
	      has(json_object_get(s, "channels"), "email"));
	json_decref(s);
	login_grant_free(&g);
	check(login(uid, a, "sms", "phone", "legacy-session-id", NULL, &g) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, legacy_key);
	check(s != NULL && has(json_object_get(s, "amr"), "mfa"));
	json_decref(s);
	login_grant_free(&g);

	check(strcmp(session_amr_channel("eml"), "email") == 0);
	check(strcmp(session_amr_channel("eotp"), "email") == 0);
	check(strcmp(session_amr_channel("sms"), "phone") == 0);
	check(strcmp(session_amr_channel("otp"), "otp") == 0);
}

/* The lifetime slides with each authentication, never past session_max_ttl from the start. */
static void sliding(json_t *a)
{
	char uid[64];
	struct login_grant g, g2;
	unsigned long ttl = conf.session_ttl, max_ttl = conf.session_max_ttl;
	json_t *s;
	time_t now = time(NULL);
	json_int_t exp1, exp2, max_exp;

	fixture_user("slide@example.com", NULL, NULL, uid);
	conf.session_ttl = 60;
	conf.session_max_ttl = 500;
	check(login(uid, a, "eotp", "email", NULL, NULL, &g) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	exp1 = json_integer_value(json_object_get(s, "exp"));
	max_exp = json_integer_value(json_object_get(s, "max_exp"));
	check(exp1 >= now + 60 && exp1 <= now + 65);
	check(max_exp >= now + 500 && max_exp <= now + 505);
	json_decref(s);

	conf.session_ttl = 300; /* slides on */
	check(login(uid, a, "eotp", "email", g.session_id, NULL, &g2) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	exp2 = json_integer_value(json_object_get(s, "exp"));
	check(exp2 >= now + 300 && exp2 <= now + 305);
	json_decref(s);
	login_grant_free(&g2);

	conf.session_ttl = 100000;   /* capped by the max_exp set at the start */
	conf.session_max_ttl = 1000; /* a later configuration does not move the cap */
	check(login(uid, a, "eotp", "email", g.session_id, NULL, &g2) == ERR_NONE);
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(json_integer_value(json_object_get(s, "exp")) == max_exp);
	check(json_integer_value(json_object_get(s, "max_exp")) == max_exp);
	json_decref(s);
	login_grant_free(&g2);
	login_grant_free(&g);
	conf.session_ttl = ttl;
	conf.session_max_ttl = max_ttl;
}

static void orgs(json_t *a, json_t *b)
{
	char uid[64], err[128];
	struct login_grant g, g2;
	json_t *out = NULL, *roles = json_pack("[s]", "admin");

	fixture_user("org@example.com", NULL, NULL, uid);
	check(org_create(&c, "acme", "Acme", &out, err, sizeof(err)) == 0);
	json_decref(out);
	check(org_create(&c, "other", "Other", &out, err, sizeof(err)) == 0);
	json_decref(out);
	check(org_add_member(&c, "acme", uid, roles, err, sizeof(err)) == 0);
	json_decref(roles);

	check(login(uid, a, "eotp", "email", NULL, "acme", &g) == ERR_NONE);
	check(g.org_id != NULL && strcmp(g.org_id, "acme") == 0);
	check(json_array_size(g.org_roles) == 1 &&
	      strcmp(json_string_value(json_array_get(g.org_roles, 0)), "admin") == 0);
	check(login(uid, a, "eotp", "email", NULL, "other", &g2) == ERR_ORG_NOT_MEMBER);
	login_grant_free(&g2);
	check(login(uid, a, "eotp", "email", g.session_id, "nosuch", &g2) == ERR_ORG_NOT_MEMBER);
	login_grant_free(&g2);
	check(login(uid, a, "eotp", "email", NULL, NULL, &g2) == ERR_NONE);
	check(g2.org_id == NULL && g2.org_roles == NULL);
	login_grant_free(&g2);

	/* Silent sign-in, scoped the same way. */
	check(reauth(a, g.session_id, "acme", &g2) == ERR_NONE);
	check(g2.org_id != NULL && strcmp(g2.org_id, "acme") == 0 &&
	      json_array_size(g2.org_roles) == 1);
	login_grant_free(&g2);
	check(reauth(a, g.session_id, "other", &g2) == ERR_ORG_NOT_MEMBER);
	login_grant_free(&g2);
	check(reauth(b, g.session_id, "acme", &g2) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g2);
	login_grant_free(&g);
}

static void reauthenticate(json_t *a, json_t *b)
{
	char uid[64], raw[64], key[KEYRING_TAG_HEX];
	struct login_grant g;

	fixture_user("reauth@example.com", NULL, NULL, uid);
	check(open_session(uid, a, raw, key) == ERR_NONE);

	check(reauth(a, raw, NULL, &g) == ERR_NONE);
	check(g.session_id != NULL && strcmp(g.session_id, raw) == 0);
	check(strcmp(g.session_key, key) == 0);
	check(strlen(g.sid) == SESSION_HANDLE_LEN && strncmp(g.sid, key, SESSION_HANDLE_LEN) == 0);
	check(strcmp(json_string_value(json_object_get(g.user, "user_id")) ?: "", uid) == 0);
	check(json_is_object(g.session) && g.org_id == NULL && g.refresh_token == NULL);
	login_grant_free(&g);

	/* The client's session only, alive, by its raw id (the handle is no credential). */
	check(reauth(b, raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
	{
		char handle[SESSION_HANDLE_LEN + 1];
		to_handle(handle, key);
		check(reauth(a, handle, NULL, &g) == ERR_SESSION_NOT_FOUND);
		login_grant_free(&g);
	}
	check(reauth(a, "nope", NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);

	/* The user must be active (disabled here below account.c, so the session stays). */
	check(set_status(uid, "Disabled") == USER_CREATED);
	check(alive(key));
	check(reauth(a, raw, NULL, &g) == ERR_USER_NOT_ACTIVE);
	login_grant_free(&g);
	check(set_status(uid, "Active") == USER_CREATED);
	check(reauth(a, raw, NULL, &g) == ERR_NONE);
	login_grant_free(&g);

	/* An expired session is none. */
	set_field(TBL_SESSIONS, key, "exp", (json_int_t)time(NULL) - 1);
	check(reauth(a, raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);

	/* Nor is the session of a user who is gone. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	check(delete_user(uid) == STORE_FOUND);
	check(reauth(a, raw, NULL, &g) == ERR_SESSION_NOT_FOUND);
	login_grant_free(&g);
}

struct key_arg {
	const char *key;
	json_t *live;
	int found;
};

static int end_txn(struct store_txn *t, void *argp)
{
	return session_end_txn(t, ((struct key_arg *)argp)->key);
}

static int live_txn(struct store_txn *t, void *argp)
{
	struct key_arg *k = argp;
	json_decref(k->live);
	k->live = NULL;
	return k->found = session_get_live_txn(t, k->key, &k->live);
}

static int live(const char *key)
{
	struct key_arg k = {key, NULL, 0};
	int rc = store_run(c.store, live_txn, &k);

	if (rc == STORE_FOUND)
		check(json_is_object(k.live));
	json_decref(k.live);
	return rc;
}

static void ending(json_t *a, json_t *b)
{
	char uid[64], raw[64], key[KEYRING_TAG_HEX], handle[SESSION_HANDLE_LEN + 1];
	struct key_arg k = {key, NULL, 0};

	fixture_user("end@example.com", NULL, NULL, uid);

	/* session_get_live_txn: live, then expired, then gone. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	check(live(key) == STORE_FOUND);
	set_field(TBL_SESSIONS, key, "exp", (json_int_t)time(NULL));
	check(live(key) == STORE_NOTFOUND);
	check(live("0123") == STORE_NOTFOUND);

	/* session_end_txn: the session and its index entry go; a missing one is no error. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	check(index_exists(uid, key));
	check(store_run(c.store, end_txn, &k) == 0);
	check(fixture_get(TBL_SESSIONS, key) == NULL);
	check(!index_exists(uid, key));
	check(store_run(c.store, end_txn, &k) == 0);

	/* session_logout by the raw id: the client's only. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	check(session_logout(&c, b, raw) == ERR_SESSION_NOT_FOUND);
	check(alive(key));
	check(session_logout(&c, a, raw) == ERR_NONE);
	check(!alive(key) && fixture_get(TBL_SESSIONS, key) == NULL && !index_exists(uid, key));
	check(session_logout(&c, a, raw) == ERR_SESSION_NOT_FOUND);

	/* By the public handle, the same. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	to_handle(handle, key);
	check(session_logout(&c, b, handle) == ERR_SESSION_NOT_FOUND);
	check(alive(key));
	check(session_logout(&c, a, handle) == ERR_NONE);
	check(!alive(key) && !index_exists(uid, key));
	check(session_logout(&c, a, handle) == ERR_SESSION_NOT_FOUND);
	/* An expired session is not found, by either name. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	to_handle(handle, key);
	set_field(TBL_SESSIONS, key, "exp", (json_int_t)time(NULL) - 1);
	check(session_logout(&c, a, handle) == ERR_SESSION_NOT_FOUND);
	check(session_logout(&c, a, raw) == ERR_SESSION_NOT_FOUND);
	check(session_logout(&c, a, "00000000000000000000000000000000") == ERR_SESSION_NOT_FOUND);
	check(session_logout(&c, a, "") == ERR_SESSION_NOT_FOUND);
}

/* The handles of a session_list page, checked for shape and order after *last (updated). */
static size_t page_ok(json_t *page, char *last)
{
	size_t i, bad = 0;
	json_t *e;

	json_array_foreach(page, i, e)
	{
		const char *h = json_string_value(json_object_get(e, "session_id"));
		const char *st = json_string_value(json_object_get(e, "start_time"));
		const char *ex = json_string_value(json_object_get(e, "expiration_time"));
		if (h == NULL || strlen(h) != SESSION_HANDLE_LEN || strcmp(h, last) <= 0)
			bad++;
		if (st == NULL || strlen(st) != 20 || st[10] != 'T' || st[19] != 'Z' ||
		    ex == NULL || strlen(ex) != 20 || strcmp(ex, st) <= 0)
			bad++;
		if (h != NULL)
			snprintf(last, SESSION_HANDLE_LEN + 1, "%s", h);
	}
	return bad;
}

/* How many live sessions session_list shows of user_id (and client_id when not NULL). */
static size_t count(const char *user_id, const char *client_id)
{
	int more = -1;
	json_t *all = session_list(&c, user_id, client_id, NULL, 100000, &more);
	size_t n = json_array_size(all);

	check(all != NULL && more == 0);
	json_decref(all);
	return n;
}

static void listing(json_t *a, json_t *b)
{
	char uid[64], other[64], raw[64], key[KEYRING_TAG_HEX], last[SESSION_HANDLE_LEN + 1] = "";
	size_t total = 0, bad = 0, pages = 0;
	int more = 1;
	json_t *page;

	fixture_user("list@example.com", NULL, NULL, uid);
	fixture_user("list2@example.com", NULL, NULL, other);
	for (int i = 0; i < 5; i++)
		check(open_session(uid, a, raw, key) == ERR_NONE);
	for (int i = 0; i < 3; i++)
		check(open_session(uid, b, raw, key) == ERR_NONE);
	check(open_session(other, a, raw, key) == ERR_NONE);
	check(open_session(uid, a, raw, key) == ERR_NONE); /* expired: not listed */
	set_field(TBL_SESSIONS, key, "exp", (json_int_t)time(NULL) - 1);

	/* Pages of 2 of client A's: 2, 2, 1, in handle order, more on all but the last. */
	while (more && pages < 10) {
		page = session_list(&c, uid, client_id_of(a), total ? last : NULL, 2, &more);
		check(page != NULL);
		pages++;
		total += json_array_size(page);
		bad += page_ok(page, last);
		check(json_array_size(page) == (more ? 2 : 1));
		json_decref(page);
	}
	check(pages == 3 && total == 5 && bad == 0);

	/* A page that holds them all exactly: no more. */
	page = session_list(&c, uid, client_id_of(a), NULL, 5, &more);
	check(json_array_size(page) == 5 && more == 0);
	json_decref(page);
	page = session_list(&c, uid, client_id_of(a), NULL, 4, &more);
	check(json_array_size(page) == 4 && more == 1);
	json_decref(page);
	/* After the last handle: nothing. */
	page = session_list(&c, uid, client_id_of(a), last, 5, &more);
	check(page != NULL && json_array_size(page) == 0 && more == 0);
	json_decref(page);

	/* Every client's (NULL), one client's, another user's. */
	check(count(uid, NULL) == 8);
	check(count(uid, client_id_of(b)) == 3);
	check(count(other, NULL) == 1);
	check(count("nobody", NULL) == 0);
}

struct bulk_arg {
	const char *user_id;
	json_t *client;
	int n;
};

/* n new sessions of a user in one transaction. */
static int bulk_txn(struct store_txn *t, void *argp)
{
	struct bulk_arg *b = argp;
	struct login_opts opts = {0};
	struct login_grant g = {0};
	json_t *user = NULL;
	int rc = user_find_txn(t, ID_USER_ID, b->user_id, &user);

	for (int i = 0; i < b->n && rc >= 0; i++) {
		rc = session_login_txn(t, &c, user, b->client, "eotp", "email", NULL, &opts, &g);
		login_grant_free(&g);
	}
	json_decref(user);
	return rc < 0 ? rc : 0;
}

static void bulk(const char *user_id, json_t *client, int n)
{
	for (int done = 0; done < n; done += 50) {
		struct bulk_arg b = {user_id, client, n - done < 50 ? n - done : 50};
		check(store_run(c.store, bulk_txn, &b) == 0);
	}
}

struct end_all_arg {
	const char *user_id, *client_id;
};

static int end_all_txn(struct store_txn *t, void *argp)
{
	struct end_all_arg *e = argp;
	return session_end_all_txn(t, e->user_id, e->client_id);
}

static void end_all(json_t *a, json_t *b)
{
	char uid[64], other[64], raw[64], key[KEYRING_TAG_HEX];
	struct end_all_arg e;

	fixture_user("many@example.com", NULL, NULL, uid);
	fixture_user("bystander@example.com", NULL, NULL, other);
	bulk(uid, a, 205);
	bulk(uid, b, 105);
	check(open_session(other, a, raw, key) == ERR_NONE);
	check(count(uid, client_id_of(a)) == 205);
	/* Listing one client's walks past the other's in more than one pass. */
	check(count(uid, client_id_of(b)) == 105);

	/* Pages of a batch's size over more than a batch of them, with the other's between. */
	{
		char last[SESSION_HANDLE_LEN + 1] = "";
		size_t total = 0, bad = 0, sizes[4] = {0};
		int more = 1, pages = 0;
		while (more && pages < 4) {
			json_t *page =
			    session_list(&c, uid, client_id_of(a), pages ? last : NULL, 100, &more);
			sizes[pages++] = json_array_size(page);
			total += json_array_size(page);
			bad += page_ok(page, last);
			json_decref(page);
		}
		check_msg(pages == 3 && sizes[0] == 100 && sizes[1] == 100 && sizes[2] == 5 &&
			      total == 205 && bad == 0,
			  "pages %d: %zu %zu %zu, bad %zu", pages, sizes[0], sizes[1], sizes[2],
			  bad);
	}

	/* One client's: all of them over more than one batch; the other client's stay. */
	check(session_end_all(&c, uid, client_id_of(a)) == ERR_NONE);
	check(count(uid, client_id_of(a)) == 0);
	check(count(uid, client_id_of(b)) == 105);
	check(count(other, NULL) == 1 && alive(key));

	/* session_end_all_txn: one batch, and 1 when more may remain; then 0. */
	e.user_id = uid;
	e.client_id = NULL;
	check(store_run(c.store, end_all_txn, &e) == 1);
	check(count(uid, NULL) == 5);
	check(store_run(c.store, end_all_txn, &e) == 0);
	check(count(uid, NULL) == 0);
	check(store_run(c.store, end_all_txn, &e) == 0);

	/* A batch exactly: all of them, and 0; one more: 1. */
	bulk(uid, a, 100);
	check(store_run(c.store, end_all_txn, &e) == 0);
	check(count(uid, NULL) == 0);
	bulk(uid, b, 101);
	check(store_run(c.store, end_all_txn, &e) == 1);
	check(count(uid, NULL) == 1);
	check(store_run(c.store, end_all_txn, &e) == 0);
	check(count(uid, NULL) == 0);

	/* Every client's. */
	bulk(uid, a, 120);
	bulk(uid, b, 3);
	check(session_end_all(&c, uid, NULL) == ERR_NONE);
	check(count(uid, NULL) == 0);
	check(count(other, NULL) == 1 && alive(key));
	check(session_end_all(&c, "nobody", NULL) == ERR_NONE);
}

static void purge(json_t *a)
{
	char uid[64], raw[64], key[KEYRING_TAG_HEX], dead[KEYRING_TAG_HEX], ikey[300];
	json_t *empty = json_object();

	fixture_user("purge@example.com", NULL, NULL, uid);
	check(session_purge_rules(c.store) == 0);
	/* A live session's entry stays; an orphan's and an old expired session's go. */
	check(open_session(uid, a, raw, key) == ERR_NONE);
	snprintf(ikey, sizeof(ikey), "u:%s:%064d", uid, 0);
	check(fixture_put(TBL_SESSIONS, ikey, empty) == 0);
	check(open_session(uid, a, raw, dead) == ERR_NONE);
	set_field(TBL_SESSIONS, dead, "exp", 1);
	check(store_purge(c.store, time(NULL)) >= 3);
	check(fixture_get(TBL_SESSIONS, ikey) == NULL);
	check(!index_exists(uid, dead) && fixture_get(TBL_SESSIONS, dead) == NULL);
	check(index_exists(uid, key) && alive(key));
	json_decref(empty);
}

int main(void)
{
	json_t *a, *b;

	if (fixture_open("/dev/shm", "session", 8) < 0)
		return check_done();
	a = fixture_direct_client("A", NULL, NULL);
	b = fixture_direct_client("B", NULL, NULL);
	check(a != NULL && b != NULL);

	new_and_join(a, b);
	sliding(a);
	orgs(a, b);
	reauthenticate(a, b);
	ending(a, b);
	listing(a, b);
	end_all(a, b);
	purge(a);

	json_decref(a);
	json_decref(b);
	fixture_close();
	return check_done();
}
