#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "crypto.h"
#include "metrics.h"
#include "org.h"
#include "user.h"

#define SESSION_ID_BYTES 32
/*
 * Index entries a transaction looks at when ending a user's sessions: a user may hold any
 * number of sessions, so they are ended in transactions of bounded size (locks, log, time).
 */
#define SESSION_BATCH 100

const char *session_amr_channel(const char *amr)
{
	if (strcmp(amr, "eml") == 0 || strcmp(amr, "eotp") == 0)
		return "email";
	if (strcmp(amr, "sms") == 0)
		return "phone";
	return amr;
}

/* Append s to the array a unless it holds it already. 0 or -1. */
static int add_once(json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (strcmp(json_string_value(v) ?: "", s) == 0)
			return 0;
	}
	return json_array_append_new(a, json_string(s));
}

/*
 * Add amr to the session's list and channel (NULL: the login proved none, as a code sent to an
 * address never verified as the user's) to its channels, and "mfa" to the list once two
 * different channels are present.
 */
static int amr_add(json_t *session, const char *amr, const char *channel)
{
	json_t *amrs = json_object_get(session, "amr"),
	       *chans = json_object_get(session, "channels");
	size_t i;
	json_t *v;

	if (!json_is_array(chans)) {
		/* A session from before channels were kept: what its amr values prove. */
		chans = json_array();
		if (chans == NULL || json_object_set_new(session, "channels", chans) < 0)
			return -1;
		json_array_foreach(amrs, i, v)
		{
			const char *a = json_string_value(v) ?: "mfa";
			if (strcmp(a, "mfa") != 0 && add_once(chans, session_amr_channel(a)) < 0)
				return -1;
		}
	}
	if (add_once(amrs, amr) < 0 || (channel != NULL && add_once(chans, channel) < 0))
		return -1;
	return json_array_size(chans) >= 2 ? add_once(amrs, "mfa") : 0;
}

static int user_index_key(char *out, size_t outlen, const char *user_id, const char *key)
{
	int n = snprintf(out, outlen, "u:%s:%s", user_id, key ? key : "");
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int session_get_live_txn(struct store_txn *t, const char *key, json_t **session)
{
	json_t *s;
	int rc = store_get(t, TBL_SESSIONS, key, strlen(key), &s, 1);

	if (rc != STORE_FOUND)
		return rc;
	if (json_integer_value(json_object_get(s, "exp")) <= (json_int_t)time(NULL)) {
		json_decref(s);
		return STORE_NOTFOUND;
	}
	*session = s;
	return STORE_FOUND;
}

/* Load the live session of a raw id, owned by client_id and (when not NULL) by user_id. */
static int session_by_id(struct store_txn *t, struct ctx *c, const char *raw, const char *user_id,
			 const char *client_id, char key[KEYRING_TAG_HEX], json_t **session)
{
	json_t *s;
	const char *owner_user, *owner_client;
	int rc;

	if (strlen(raw) > 256 || keyring_tag(c->keys, key, "session", raw, NULL) < 0)
		return STORE_NOTFOUND;
	rc = session_get_live_txn(t, key, &s);
	if (rc != STORE_FOUND)
		return rc;
	owner_user = json_string_value(json_object_get(s, "user_id"));
	owner_client = json_string_value(json_object_get(s, "client_id"));
	if (owner_client == NULL || strcmp(owner_client, client_id) != 0 ||
	    (user_id != NULL && (owner_user == NULL || strcmp(owner_user, user_id) != 0))) {
		json_decref(s);
		return STORE_NOTFOUND;
	}
	*session = s;
	return STORE_FOUND;
}

static int new_session(struct store_txn *t, struct ctx *c, json_t *user, struct login_grant *g,
		       json_t **session)
{
	const char *user_id = json_string_value(json_object_get(user, "user_id"));
	time_t now = time(NULL);
	char ikey[300];
	json_t *empty;
	int n, rc;

	g->session_id = crypto_random_token(SESSION_ID_BYTES);
	if (g->session_id == NULL ||
	    keyring_tag(c->keys, g->session_key, "session", g->session_id, NULL) < 0)
		return STORE_ERR;
	*session =
	    json_pack("{s:s, s:s, s:I, s:I, s:[], s:[]}", "user_id", user_id, "client_id",
		      g->client_id, "created", (json_int_t)now, "max_exp",
		      (json_int_t)(now + (time_t)c->conf->session_max_ttl), "amr", "channels");
	n = user_index_key(ikey, sizeof(ikey), user_id, g->session_key);
	if (*session == NULL || n < 0)
		return STORE_ERR;
	empty = json_object();
	rc = store_put(t, TBL_SESSIONS, ikey, (size_t)n, empty);
	json_decref(empty);
	metrics_count(METRIC_SESSIONS_CREATED);
	audit_event("session_created", 1, NULL, "user_id", user_id, "client_id", g->client_id,
		    NULL);
	return rc;
}

/* The user index entry new_session writes, "u:<user_id>:<session key>" -> {}, dies with it. */
static int index_entry_dead(struct store_txn *t, const void *key, size_t klen, json_t *val,
			    time_t cutoff)
{
	const char *colon;

	if (klen < 3 || memcmp(key, "u:", 2) != 0 || json_object_size(val) != 0)
		return 0;
	colon = memrchr(key, ':', klen);
	if (colon == NULL || colon < (const char *)key + 2)
		return 0;
	return store_dead(t, TBL_SESSIONS, colon + 1,
			  klen - (size_t)(colon + 1 - (const char *)key), cutoff);
}

int session_purge_rules(struct store *s)
{
	return store_purge_rule(s, TBL_SESSIONS, index_entry_dead);
}

int session_login_txn(struct store_txn *t, struct ctx *c, json_t *user, json_t *client,
		      const char *amr, const char *channel, const char *verifies,
		      const struct login_opts *opts, struct login_grant *g)
{
	const char *user_id = json_string_value(json_object_get(user, "user_id"));
	time_t now = time(NULL);
	json_int_t max_exp, exp;
	json_t *s = NULL;
	int rc;

	memset(g, 0, sizeof(*g));
	g->client_id = json_string_value(json_object_get(client, "client_id"));
	g->user = json_incref(user);
	if (opts->session_id != NULL) {
		rc = session_by_id(t, c, opts->session_id, user_id, g->client_id, g->session_key,
				   &s);
		if (rc < 0)
			return rc;
		if (rc == STORE_NOTFOUND)
			return ERR_SESSION_NOT_FOUND;
		g->session_id = strdup(opts->session_id);
	} else if ((rc = new_session(t, c, user, g, &s)) < 0) {
		json_decref(s);
		return rc;
	}
	g->session = s;
	g->claims = json_incref(opts->claims);
	if ((rc = session_scope_org(g, opts->org_id)) != ERR_NONE)
		return rc;
	if ((rc = user_record_login_txn(t, user, verifies && *verifies ? verifies : NULL)) < 0)
		return rc;
	/* The lifetime slides with each authentication, never past the absolute cap. */
	max_exp = json_integer_value(json_object_get(s, "max_exp"));
	exp = (json_int_t)(now + (time_t)c->conf->session_ttl);
	json_object_set_new(s, "exp", json_integer(exp < max_exp ? exp : max_exp));
	json_object_set_new(s, "auth_time", json_integer((json_int_t)now));
	if (amr_add(s, amr, channel) < 0)
		return STORE_ERR;
	rc = store_put(t, TBL_SESSIONS, g->session_key, strlen(g->session_key), s);
	if (rc < 0)
		return rc;
	memcpy(g->sid, g->session_key, SESSION_HANDLE_LEN);
	g->sid[SESSION_HANDLE_LEN] = '\0';
	return ERR_NONE;
}

int session_scope_org(struct login_grant *g, const char *org_id)
{
	json_t *roles;

	if (org_id == NULL)
		return ERR_NONE;
	if (!org_member_roles(g->user, org_id, &roles))
		return ERR_ORG_NOT_MEMBER;
	free(g->org_id);
	json_decref(g->org_roles);
	g->org_id = strdup(org_id);
	g->org_roles = roles;
	return g->org_id ? ERR_NONE : STORE_ERR;
}

int session_reauth_txn(struct store_txn *t, struct ctx *c, json_t *client,
		       const struct login_opts *opts, struct login_grant *g)
{
	json_t *s = NULL, *user = NULL;
	const char *user_id;
	int rc;

	login_grant_free(g);
	g->client_id = json_string_value(json_object_get(client, "client_id"));
	rc = session_by_id(t, c, opts->session_id, NULL, g->client_id, g->session_key, &s);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	g->session = s;
	user_id = json_string_value(json_object_get(s, "user_id"));
	rc = user_find_txn(t, ID_USER_ID, user_id ? user_id : "", &user);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	g->user = user;
	if (!user_is_active(user))
		return ERR_USER_NOT_ACTIVE;
	if ((rc = session_scope_org(g, opts->org_id)) != ERR_NONE)
		return rc;
	if ((g->session_id = strdup(opts->session_id)) == NULL)
		return STORE_ERR;
	memcpy(g->sid, g->session_key, SESSION_HANDLE_LEN);
	g->claims = json_incref(opts->claims);
	return ERR_NONE;
}

int session_end_txn(struct store_txn *t, const char *key)
{
	char ikey[300];
	json_t *s;
	int rc = store_get(t, TBL_SESSIONS, key, strlen(key), &s, 1), n;

	if (rc <= 0)
		return rc;
	n = user_index_key(ikey, sizeof(ikey), json_string_value(json_object_get(s, "user_id")),
			   key);
	audit_event("session_ended", 1, NULL, "user_id",
		    json_string_value(json_object_get(s, "user_id")), "client_id",
		    json_string_value(json_object_get(s, "client_id")), (char *)NULL);
	json_decref(s);
	if (n >= 0 && (rc = store_del(t, TBL_SESSIONS, ikey, (size_t)n)) < 0)
		return rc;
	/* Refresh tokens name their session: with it gone, they are dead. */
	metrics_count(METRIC_SESSIONS_ENDED);
	rc = store_del(t, TBL_SESSIONS, key, strlen(key));
	return rc < 0 ? rc : 0;
}

struct find_handle {
	const char *handle;
	char key[KEYRING_TAG_HEX];
};

static int handle_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	struct find_handle *f = arg;
	if (klen == KEYRING_TAG_HEX - 1 && memcmp(k, f->handle, SESSION_HANDLE_LEN) == 0)
		memcpy(f->key, k, klen);
	return 1; /* only the first key at or after the handle can match */
}

struct logout_state {
	struct ctx *c;
	const char *client_id;
	const char *id;
};

static int logout_txn(struct store_txn *t, void *argp)
{
	struct logout_state *l = argp;
	struct find_handle f = {l->id, ""};
	json_t *s = NULL;
	int rc;

	if (strlen(l->id) == SESSION_HANDLE_LEN &&
	    strspn(l->id, "0123456789abcdef") == SESSION_HANDLE_LEN) {
		if ((rc = store_each(t, TBL_SESSIONS, l->id, SESSION_HANDLE_LEN, handle_cb, &f)) <
		    0)
			return rc;
		if (f.key[0] != '\0')
			rc = session_get_live_txn(t, f.key, &s);
	}
	if (s == NULL) {
		rc = session_by_id(t, l->c, l->id, NULL, l->client_id, f.key, &s);
		if (rc <= 0)
			return rc < 0 ? rc : ERR_SESSION_NOT_FOUND;
	}
	if (strcmp(json_string_value(json_object_get(s, "client_id")) ?: "", l->client_id) != 0) {
		json_decref(s);
		return ERR_SESSION_NOT_FOUND;
	}
	json_decref(s);
	rc = session_end_txn(t, f.key);
	return rc < 0 ? rc : ERR_NONE;
}

int session_logout(struct ctx *c, json_t *client, const char *id_or_handle)
{
	struct logout_state l = {c, json_string_value(json_object_get(client, "client_id")),
				 id_or_handle};
	int rc = store_outcome(store_run(c->store, logout_txn, &l), ERR_UNAVAILABLE);

	audit_event("logout", rc == ERR_NONE, audit_reason(rc), "method", "api", (char *)NULL);
	return rc;
}

struct browser_end {
	struct ctx *c;
	const char *raw_id, *user_id, *sid;
	int other_user;
	int ended;
};

/* The store key of the live session with public handle sid into key ("" when none). */
static int key_of_handle(struct store_txn *t, const char *sid, char key[KEYRING_TAG_HEX])
{
	struct find_handle f = {sid, ""};
	int rc = 0;

	key[0] = '\0';
	if (strlen(sid) == SESSION_HANDLE_LEN &&
	    strspn(sid, "0123456789abcdef") == SESSION_HANDLE_LEN)
		rc = store_each(t, TBL_SESSIONS, sid, SESSION_HANDLE_LEN, handle_cb, &f);
	memcpy(key, f.key, KEYRING_TAG_HEX);
	return rc < 0 ? rc : 0;
}

/* End the live session under key when user_id (NULL: anyone) owns it; 1 ended, 0 not, < 0. */
static int end_if_users(struct store_txn *t, const char *key, const char *user_id, int *other)
{
	json_t *s;
	int rc = session_get_live_txn(t, key, &s), mine;

	if (rc <= 0)
		return rc;
	mine = user_id == NULL ||
	       strcmp(json_string_value(json_object_get(s, "user_id")) ?: "", user_id) == 0;
	json_decref(s);
	if (!mine) {
		*other = 1;
		return 0;
	}
	rc = session_end_txn(t, key);
	return rc < 0 ? rc : 1;
}

static int end_browser_txn(struct store_txn *t, void *argp)
{
	struct browser_end *b = argp;
	char key[KEYRING_TAG_HEX];
	int rc, other = 0, ended = 0;

	/* The transaction may run again: nothing carries over from a previous run. */
	if (b->raw_id != NULL && strlen(b->raw_id) <= 256) {
		if (keyring_tag(b->c->keys, key, "session", b->raw_id, NULL) < 0)
			return STORE_ERR;
		if ((rc = end_if_users(t, key, b->user_id, &other)) < 0)
			return rc;
		ended += rc;
	}
	if (b->sid != NULL && b->user_id != NULL) {
		int ignored = 0;
		if ((rc = key_of_handle(t, b->sid, key)) < 0)
			return rc;
		if (key[0] != '\0' && (rc = end_if_users(t, key, b->user_id, &ignored)) < 0)
			return rc;
		ended += key[0] != '\0' ? rc : 0;
	}
	b->other_user = other;
	b->ended = ended;
	return 0;
}

int session_end_browser(struct ctx *c, const char *raw_id, const char *user_id, const char *sid,
			int *ended, int *other_user)
{
	struct browser_end b = {c, raw_id, user_id, sid, 0, 0};
	int rc = store_run(c->store, end_browser_txn, &b);

	*ended = b.ended;
	*other_user = b.other_user;
	return store_outcome(rc, ERR_UNAVAILABLE);
}

/*
 * A walk over a user's index entries "u:<user_id>:<session key>" in key order, from start,
 * collecting at most limit session keys per pass.
 */
struct user_scan {
	char prefix[300];
	size_t prefix_len;
	char start[400]; /* the first key a pass may look at */
	size_t start_len;
	size_t limit;
	json_t *keys; /* this pass's session keys */
	int more;     /* entries beyond the limit remain */
};

static int scan_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	struct user_scan *u = arg;
	if (klen < u->prefix_len || memcmp(k, u->prefix, u->prefix_len) != 0)
		return 1;
	if (json_array_size(u->keys) >= u->limit) {
		u->more = 1;
		return 1;
	}
	return json_array_append_new(
		   u->keys, json_stringn((const char *)k + u->prefix_len, klen - u->prefix_len)) < 0
		   ? STORE_ERR
		   : 0;
}

/*
 * Set u up for user_id's entries at or after "u:<user_id>:<from>" (from: fromlen bytes, may be
 * empty), limit keys per pass. 0, or -1 when the key does not fit.
 */
static int scan_init(struct user_scan *u, const char *user_id, const char *from, size_t fromlen,
		     size_t limit)
{
	int n = user_index_key(u->prefix, sizeof(u->prefix), user_id, NULL);

	if (n < 0 || (size_t)n + fromlen > sizeof(u->start))
		return -1;
	u->prefix_len = (size_t)n;
	memcpy(u->start, u->prefix, u->prefix_len);
	memcpy(u->start + u->prefix_len, from, fromlen);
	u->start_len = u->prefix_len + fromlen;
	u->limit = limit;
	return 0;
}

/* Continue u right after the last key of its pass (none: it stays). 0 or -1. */
static int scan_advance(struct user_scan *u)
{
	const char *last = json_string_value(json_array_get(u->keys, json_array_size(u->keys) - 1));
	size_t len = last ? strlen(last) : 0;

	if (last == NULL)
		return 0;
	if (u->prefix_len + len + 1 > sizeof(u->start))
		return -1;
	/* key + NUL is the first key after key: session keys never hold a NUL. */
	memcpy(u->start + u->prefix_len, last, len);
	u->start[u->prefix_len + len] = '\0';
	u->start_len = u->prefix_len + len + 1;
	return 0;
}

/* One pass of u inside t; it starts over when the transaction runs again. */
static int scan_txn(struct store_txn *t, struct user_scan *u)
{
	u->more = 0;
	json_array_clear(u->keys);
	return store_each(t, TBL_SESSIONS, u->start, u->start_len, scan_cb, u);
}

/*
 * End the session under key, listed in user_id's index, when it is client_id's (NULL: any
 * client's). An index entry whose session is already gone goes as well. 0 or < 0.
 */
static int end_listed_txn(struct store_txn *t, const char *user_id, const char *key,
			  const char *client_id)
{
	char ikey[300];
	json_t *s;
	int n, mine, rc = store_get(t, TBL_SESSIONS, key, strlen(key), &s, 1);

	if (rc < 0)
		return rc;
	if (rc == STORE_NOTFOUND) {
		n = user_index_key(ikey, sizeof(ikey), user_id, key);
		rc = n < 0 ? 0 : store_del(t, TBL_SESSIONS, ikey, (size_t)n);
		return rc < 0 ? rc : 0;
	}
	mine = client_id == NULL ||
	       strcmp(json_string_value(json_object_get(s, "client_id")) ?: "", client_id) == 0;
	json_decref(s);
	return mine ? session_end_txn(t, key) : 0;
}

struct end_all {
	const char *user_id;
	const char *client_id;
	struct user_scan u;
};

/* One bounded pass: 1 when entries beyond it remain, 0 when it reached the end, or < 0. */
static int end_batch_txn(struct store_txn *t, void *arg)
{
	struct end_all *e = arg;
	size_t i;
	json_t *k;
	int rc = scan_txn(t, &e->u);

	json_array_foreach(e->u.keys, i, k)
	{
		if (rc < 0)
			break;
		rc = end_listed_txn(t, e->user_id, json_string_value(k), e->client_id);
	}
	return rc < 0 ? rc : e->u.more;
}

int session_end_all_txn(struct store_txn *t, const char *user_id, const char *client_id)
{
	struct end_all e = {user_id, client_id, {.keys = json_array()}};
	int rc = e.u.keys != NULL && scan_init(&e.u, user_id, "", 0, SESSION_BATCH) == 0
		     ? end_batch_txn(t, &e)
		     : STORE_ERR;

	json_decref(e.u.keys);
	return rc;
}

int session_end_all(struct ctx *c, const char *user_id, const char *client_id)
{
	struct end_all e = {user_id, client_id, {.keys = json_array()}};
	int rc = STORE_ERR;

	if (e.u.keys == NULL || scan_init(&e.u, user_id, "", 0, SESSION_BATCH) < 0)
		goto out;
	/*
	 * Each pass commits on its own and the next one starts after the last entry it looked
	 * at, so the walk ends even when the sessions of other clients stay behind.
	 */
	while ((rc = store_run(c->store, end_batch_txn, &e)) == 1)
		if (scan_advance(&e.u) < 0) {
			rc = STORE_ERR;
			break;
		}
out:
	json_decref(e.u.keys);
	return rc < 0 ? ERR_UNAVAILABLE : ERR_NONE;
}

static json_t *rfc3339(json_int_t when)
{
	char out[32];
	time_t t = (time_t)when;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(out);
}

struct list_state {
	const char *user_id;
	const char *client_id;
	const char *after; /* the handle the page starts after, or NULL */
	size_t page_size;
	json_t *out;
	int more;
};

/* The list entry of session s under key. New reference. */
static json_t *list_entry(const char *key, json_t *s)
{
	char handle[SESSION_HANDLE_LEN + 1];

	snprintf(handle, sizeof(handle), "%s", key);
	return json_pack("{s:s, s:o, s:o}", "session_id", handle, "start_time",
			 rfc3339(json_integer_value(json_object_get(s, "created"))),
			 "expiration_time", rfc3339(json_integer_value(json_object_get(s, "exp"))));
}

/*
 * Add the listed session under key to the page when it is alive and the client's; once the
 * page is full, one more such session sets l->more. 1 to stop, 0 to go on, or < 0.
 */
static int list_one(struct store_txn *t, struct list_state *l, const char *key)
{
	json_t *s;
	int rc = session_get_live_txn(t, key, &s), mine;

	if (rc != STORE_FOUND)
		return rc < 0 ? rc : 0;
	mine = l->client_id == NULL ||
	       strcmp(json_string_value(json_object_get(s, "client_id")) ?: "", l->client_id) == 0;
	if (mine && json_array_size(l->out) >= l->page_size)
		l->more = 1;
	else if (mine && json_array_append_new(l->out, list_entry(key, s)) < 0)
		rc = STORE_ERR;
	json_decref(s);
	return rc < 0 ? rc : l->more;
}

static int list_txn(struct store_txn *t, void *argp)
{
	struct list_state *l = argp;
	/* After handle H come the keys at or after "Hg": every key H... sorts below it. */
	char from[SESSION_HANDLE_LEN + 2];
	struct user_scan u = {.keys = json_array()};
	size_t i;
	json_t *k;
	int rc;

	snprintf(from, sizeof(from), "%s%s", l->after ? l->after : "", l->after ? "g" : "");
	json_array_clear(l->out);
	l->more = 0;
	rc = u.keys != NULL && scan_init(&u, l->user_id, from, strlen(from), SESSION_BATCH) == 0
		 ? 0
		 : STORE_ERR;
	/* The walk goes on in bounded passes (the list filters) until the page and one more. */
	do {
		if (rc == 0)
			rc = scan_txn(t, &u);
		json_array_foreach(u.keys, i, k)
		{
			if (rc != 0)
				break;
			rc = list_one(t, l, json_string_value(k));
		}
		if (rc == 0 && u.more && scan_advance(&u) < 0)
			rc = STORE_ERR;
	} while (rc == 0 && u.more);
	json_decref(u.keys);
	return rc < 0 ? rc : 0;
}

json_t *session_list(struct ctx *c, const char *user_id, const char *client_id, const char *after,
		     size_t page_size, int *more)
{
	struct list_state l = {user_id, client_id, after, page_size, json_array(), 0};

	if (l.out == NULL || store_run(c->store, list_txn, &l) < 0) {
		json_decref(l.out);
		return NULL;
	}
	*more = l.more;
	return l.out;
}

void login_grant_free(struct login_grant *g)
{
	json_decref(g->user);
	json_decref(g->session);
	json_decref(g->extra_claims);
	json_decref(g->claims);
	json_decref(g->org_roles);
	free(g->org_id);
	crypto_free_str(g->session_id);
	crypto_free_str(g->refresh_token);
	free(g->aud);
	memset(g, 0, sizeof(*g));
}
