/*
 * token: the contract of token.h on a real store: refresh tokens stored by keyed hash only,
 * bound to client and session, rotated on every use within one family; an already rotated
 * token presented again revokes the session (every token of the family dies), except that a
 * retry of the immediate predecessor within the grace window gets the same successor; the
 * refusals (unknown, expired, another client's, session ended, user disabled, organization
 * left); revocation (RFC 7009); the claims of the token response; and processes racing to
 * refresh one token, who all get the same successor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "jwt.h"
#include "org.h"
#include "session.h"
#include "token.h"
#include "user.h"

/* A new user of email with the role "reader"; its user_id into id (64). */
static void reader(const char *email, char *id)
{
	json_t *spec = json_pack("{s:s, s:[s]}", "email", email, "roles", "reader");

	fixture_user_of(spec, id);
	json_decref(spec);
}

static void set_field(enum store_table tbl, const char *key, const char *member, json_t *v)
{
	json_t *rec = fixture_get(tbl, key);

	if (check(rec != NULL)) {
		json_object_set(rec, member, v);
		check(fixture_put(tbl, key, rec) == 0);
	}
	json_decref(rec);
	json_decref(v);
}

/* The record of a raw refresh token (new reference) or NULL. */
static json_t *refresh_rec(const char *raw, char key[KEYRING_TAG_HEX])
{
	char k[KEYRING_TAG_HEX];

	if (key == NULL)
		key = k;
	if (keyring_tag(&keys, key, "refresh", raw, NULL) < 0)
		return NULL;
	return fixture_get(TBL_REFRESH, key);
}

static int session_alive(const char *key)
{
	json_t *s = fixture_get(TBL_SESSIONS, key);
	int live = s != NULL && json_integer_value(json_object_get(s, "exp")) > time(NULL);

	json_decref(s);
	return live;
}

struct login_arg {
	const char *user_id;
	json_t *client;
	const char *aud, *family;
	struct login_opts opts;
	struct login_grant *g;
};

/* A login as login_finish_txn makes one: a session, then a refresh token. */
static int login_txn(struct store_txn *t, void *argp)
{
	struct login_arg *a = argp;
	json_t *user = NULL;
	int rc;

	login_grant_free(a->g);
	rc = user_find_txn(t, ID_USER_ID, a->user_id, &user);
	if (rc <= 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_USER_NOT_FOUND);
	rc = session_login_txn(t, &c, user, a->client, "eotp", "email", NULL, &a->opts, a->g);
	json_decref(user);
	if (rc == ERR_NONE)
		rc = token_refresh_create_txn(t, &c, a->g, a->aud, a->family);
	return rc > 0 ? STORE_REFUSE(rc) : rc;
}

static int login(const char *user_id, json_t *client, const char *aud, const char *org_id,
		 json_t *claims, struct login_grant *g)
{
	struct login_arg a = {user_id, client, aud, NULL, {0}, g};

	a.opts.org_id = org_id;
	a.opts.claims = claims;
	memset(g, 0, sizeof(*g));
	return store_outcome(store_run(c.store, login_txn, &a), ERR_UNAVAILABLE);
}

/* Log in and keep only the refresh token (new) and the session key. */
static char *login_rt(const char *user_id, json_t *client, char *session_key)
{
	struct login_grant g;
	char *rt = NULL;

	if (check(login(user_id, client, "api://x", NULL, NULL, &g) == ERR_NONE)) {
		rt = strdup(g.refresh_token);
		if (session_key != NULL)
			snprintf(session_key, KEYRING_TAG_HEX, "%s", g.session_key);
	}
	login_grant_free(&g);
	return rt;
}

/* Refresh rt with client: ERR_*; the new refresh token (new) into *next when not NULL. */
static int refresh(json_t *client, const char *rt, char **next)
{
	json_t *tokens = NULL;
	int rc = token_refresh(&c, client, rt, &tokens);

	if (next != NULL)
		*next = NULL;
	if (rc == ERR_NONE) {
		const char *n = json_string_value(json_object_get(tokens, "refresh_token"));
		check(n != NULL && strcmp(n, rt) != 0);
		check(json_object_get(tokens, "session_id") == NULL);
		if (next != NULL && n != NULL)
			*next = strdup(n);
	}
	json_decref(tokens);
	return rc;
}

/* The verified claims of a signed token of typ (new reference) or NULL. */
static json_t *claims_of(const char *token, const char *typ)
{
	json_t *claims = NULL;

	if (token == NULL || jwt_verify(token, keys.published, keys.npublished, typ, &claims) != 1)
		return NULL;
	return claims;
}

static int str_is(json_t *v, const char *s)
{
	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* ---- the cases ---- */

static void create(json_t *a, const char *uid)
{
	struct login_grant g;
	char key[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	json_t *rec;
	struct login_arg la;

	check(login(uid, a, "api://x", NULL, NULL, &g) == ERR_NONE);
	check(g.refresh_token != NULL && strlen(g.refresh_token) >= 40);
	check(g.aud != NULL && strcmp(g.aud, "api://x") == 0);
	rec = refresh_rec(g.refresh_token, key);
	check(rec != NULL);
	check(str_is(json_object_get(rec, "session"), g.session_key));
	check(str_is(json_object_get(rec, "user_id"), uid));
	check(str_is(json_object_get(rec, "client_id"), client_id_of(a)));
	check(str_is(json_object_get(rec, "aud"), "api://x"));
	check(str_is(json_object_get(rec, "family"), key)); /* a new family is named by itself */
	check(json_integer_value(json_object_get(rec, "exp")) >=
		  now + (json_int_t)conf.refresh_ttl &&
	      json_integer_value(json_object_get(rec, "exp")) <=
		  now + (json_int_t)conf.refresh_ttl + 5);
	check(json_object_get(rec, "rotated_at") == NULL);
	json_decref(rec);
	/* Stored by its keyed hash only. */
	rec = fixture_get(TBL_REFRESH, g.refresh_token);
	check(rec == NULL);
	json_decref(rec);
	login_grant_free(&g);

	/* In a given family. */
	la = (struct login_arg){uid, a, "api://y", "fam-1", {0}, &g};
	memset(&g, 0, sizeof(g));
	check(store_run(c.store, login_txn, &la) == ERR_NONE);
	rec = refresh_rec(g.refresh_token, NULL);
	check(rec != NULL && str_is(json_object_get(rec, "family"), "fam-1") &&
	      str_is(json_object_get(rec, "aud"), "api://y"));
	json_decref(rec);
	login_grant_free(&g);
}

static void rotation(json_t *a, json_t *b, const char *uid)
{
	char skey[KEYRING_TAG_HEX], k1[KEYRING_TAG_HEX];
	char *r1 = login_rt(uid, a, skey), *r2 = NULL, *r2b = NULL, *r3 = NULL;
	json_t *rec1, *rec2, *tokens = NULL;

	/* A rotation: a new token of the same family, for the same session and audience. */
	conf.refresh_grace = 10;
	check(token_refresh(&c, a, r1, &tokens) == ERR_NONE);
	check(str_is(json_object_get(tokens, "token_type"), "Bearer"));
	check(json_integer_value(json_object_get(tokens, "expires_in")) ==
	      (json_int_t)conf.access_ttl);
	check(json_is_string(json_object_get(tokens, "access_token")) &&
	      json_is_string(json_object_get(tokens, "id_token")));
	check(json_object_get(tokens, "session_id") == NULL);
	r2 = strdup(json_string_value(json_object_get(tokens, "refresh_token")) ?: "");
	check(strcmp(r2, r1) != 0);
	{
		json_t *at =
		    claims_of(json_string_value(json_object_get(tokens, "access_token")), "at+jwt");
		check(at != NULL && str_is(json_object_get(at, "aud"), "api://x") &&
		      str_is(json_object_get(at, "sub"), uid));
		json_decref(at);
	}
	json_decref(tokens);
	rec1 = refresh_rec(r1, k1);
	rec2 = refresh_rec(r2, NULL);
	check(rec1 != NULL && json_is_integer(json_object_get(rec1, "rotated_at")) &&
	      json_is_string(json_object_get(rec1, "successor")));
	/* The successor is sealed: not the raw token. */
	check(rec1 != NULL && !str_is(json_object_get(rec1, "successor"), r2));
	check(rec2 != NULL && str_is(json_object_get(rec2, "family"), k1) &&
	      str_is(json_object_get(rec2, "session"), skey) &&
	      str_is(json_object_get(rec2, "aud"), "api://x") &&
	      json_object_get(rec2, "rotated_at") == NULL);
	json_decref(rec1);
	json_decref(rec2);

	/* Within the grace window a retry of the predecessor gets the same successor. */
	check(refresh(a, r1, &r2b) == ERR_NONE);
	check(r2b != NULL && strcmp(r2b, r2) == 0);
	check(session_alive(skey));
	/* Another client presenting it: refused, nothing revoked. */
	check(refresh(b, r1, NULL) == ERR_BAD_CREDENTIALS);
	check(refresh(b, r2, NULL) == ERR_BAD_CREDENTIALS);
	check(session_alive(skey));
	/* The successor rotates on. */
	check(refresh(a, r2, &r3) == ERR_NONE);
	/* Now the predecessor's successor is rotated itself: reuse, the family dies. */
	check(refresh(a, r1, NULL) == ERR_BAD_CREDENTIALS);
	check(!session_alive(skey));
	check(refresh(a, r3, NULL) == ERR_BAD_CREDENTIALS);
	check(refresh(a, r2, NULL) == ERR_BAD_CREDENTIALS);
	free(r1);
	free(r2);
	free(r2b);
	free(r3);

	/* Without a grace window, any reuse revokes at once. */
	conf.refresh_grace = 0;
	r1 = login_rt(uid, a, skey);
	check(refresh(a, r1, &r2) == ERR_NONE);
	check(refresh(a, r1, NULL) == ERR_BAD_CREDENTIALS);
	check(!session_alive(skey));
	check(refresh(a, r2, NULL) == ERR_BAD_CREDENTIALS);
	free(r1);
	free(r2);

	/* Late in the grace window, still the successor; past it, the same as above. */
	conf.refresh_grace = 10;
	r1 = login_rt(uid, a, skey);
	check(refresh(a, r1, &r2) == ERR_NONE);
	json_decref(refresh_rec(r1, k1));
	set_field(TBL_REFRESH, k1, "rotated_at", json_integer((json_int_t)time(NULL) - 9));
	check(refresh(a, r1, &r2b) == ERR_NONE);
	check(r2b != NULL && strcmp(r2b, r2) == 0);
	free(r2b);
	r2b = NULL;
	set_field(TBL_REFRESH, k1, "rotated_at", json_integer((json_int_t)time(NULL) - 11));
	check(refresh(a, r1, NULL) == ERR_BAD_CREDENTIALS);
	check(!session_alive(skey));
	check(refresh(a, r2, NULL) == ERR_BAD_CREDENTIALS);
	free(r1);
	free(r2);

	/* A family revoked leaves the user's other sessions alone. */
	{
		char s1[KEYRING_TAG_HEX], s2[KEYRING_TAG_HEX];
		char *x = login_rt(uid, a, s1), *y = login_rt(uid, a, s2), *x2 = NULL, *y2 = NULL;
		conf.refresh_grace = 0;
		check(refresh(a, x, &x2) == ERR_NONE);
		check(refresh(a, x, NULL) == ERR_BAD_CREDENTIALS);
		check(!session_alive(s1) && session_alive(s2));
		check(refresh(a, y, &y2) == ERR_NONE);
		free(x);
		free(y);
		free(x2);
		free(y2);
	}
	conf.refresh_grace = 10;
}

static void refusals(json_t *a, const char *uid)
{
	char skey[KEYRING_TAG_HEX], key[KEYRING_TAG_HEX], longtok[200];
	char *rt, *next = NULL;
	json_t *rec;

	check(refresh(a, "no-such-token", NULL) == ERR_BAD_CREDENTIALS);
	check(refresh(a, "", NULL) == ERR_BAD_CREDENTIALS);
	memset(longtok, 'A', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	check(refresh(a, longtok, NULL) == ERR_BAD_CREDENTIALS);

	/* Expired. */
	rt = login_rt(uid, a, skey);
	rec = refresh_rec(rt, key);
	json_decref(rec);
	set_field(TBL_REFRESH, key, "exp", json_integer((json_int_t)time(NULL) - 1));
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	free(rt);

	/* Its session ended (or expired). */
	rt = login_rt(uid, a, skey);
	skey[SESSION_HANDLE_LEN] = '\0'; /* its handle */
	check(session_logout(&c, a, skey) == ERR_NONE);
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	free(rt);
	rt = login_rt(uid, a, skey);
	set_field(TBL_SESSIONS, skey, "exp", json_integer((json_int_t)time(NULL) - 1));
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	free(rt);

	/* The user disabled: refused while so, not revoked. */
	rt = login_rt(uid, a, skey);
	check(fixture_set_status(uid, "Disabled") == USER_CREATED);
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	check(fixture_set_status(uid, "Active") == USER_CREATED);
	check(refresh(a, rt, &next) == ERR_NONE);
	free(rt);
	free(next);
}

static void organizations(json_t *a, const char *uid)
{
	char err[128];
	struct login_grant g;
	json_t *out = NULL, *roles = json_pack("[s]", "owner"), *tokens = NULL, *at, *user;
	char *rt;

	check(org_create(&c, "acme", "Acme", &out, err, sizeof(err)) == 0);
	json_decref(out);
	check(org_add_member(&c, "acme", uid, roles, err, sizeof(err)) == 0);
	json_decref(roles);
	check(login(uid, a, "api://x", "acme", NULL, &g) == ERR_NONE);
	rt = strdup(g.refresh_token);
	login_grant_free(&g);
	check(token_refresh(&c, a, rt, &tokens) == ERR_NONE);
	at = claims_of(json_string_value(json_object_get(tokens, "access_token")), "at+jwt");
	check(at != NULL && str_is(json_object_get(at, "org_id"), "acme") &&
	      json_array_size(json_object_get(at, "roles")) == 1 &&
	      str_is(json_array_get(json_object_get(at, "roles"), 0), "owner"));
	json_decref(at);
	free(rt);
	rt = strdup(json_string_value(json_object_get(tokens, "refresh_token")) ?: "");
	json_decref(tokens);

	/* A member removed: the refresh fails. */
	check(user_get(&c, ID_USER_ID, uid, &user) == STORE_FOUND);
	json_object_del(user, "org_ids");
	json_object_del(user, "org_roles");
	check(fixture_put(TBL_USERS, uid, user) == 0);
	json_decref(user);
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	free(rt);
}

static void revocation(json_t *a, json_t *b, const char *uid)
{
	char skey[KEYRING_TAG_HEX], key[KEYRING_TAG_HEX];
	char *rt = login_rt(uid, a, skey), *r2 = NULL;
	json_t *rec;

	check(refresh(a, rt, &r2) == ERR_NONE);
	/* Another client's revoke is ignored; unknown tokens too. */
	check(token_revoke(&c, b, r2) == ERR_NONE);
	check(session_alive(skey));
	check(token_revoke(&c, a, "no-such-token") == ERR_NONE);
	/* The client's own: the session ends, and every token of it. */
	check(token_revoke(&c, a, r2) == ERR_NONE);
	check(!session_alive(skey));
	rec = refresh_rec(r2, key);
	check(rec == NULL);
	json_decref(rec);
	check(refresh(a, r2, NULL) == ERR_BAD_CREDENTIALS);
	check(refresh(a, rt, NULL) == ERR_BAD_CREDENTIALS);
	check(token_revoke(&c, a, r2) == ERR_NONE);
	free(rt);
	free(r2);
}

static void response(json_t *a, const char *uid)
{
	struct login_grant g;
	struct login_opts o = {0};
	json_t *claims = json_pack("{s:{s:n, s:n}, s:{s:n}}", "id_token", "email", "roles",
				   "access_token", "email");
	json_t *out, *at, *idt, *s;
	json_int_t now = (json_int_t)time(NULL), iat;
	char *rt = NULL;

	check(login(uid, a, "api://x", NULL, claims, &g) == ERR_NONE);
	out = token_response(&c, &g, &o);
	check(out != NULL);
	check(str_is(json_object_get(out, "refresh_token"), g.refresh_token));
	check(str_is(json_object_get(out, "session_id"), g.session_id));
	check(str_is(json_object_get(out, "token_type"), "Bearer"));
	at = claims_of(json_string_value(json_object_get(out, "access_token")), "at+jwt");
	idt = claims_of(json_string_value(json_object_get(out, "id_token")), "JWT");
	check(at != NULL && idt != NULL);
	/* The access token: for the audience, of the client, the session's handle. */
	check(str_is(json_object_get(at, "iss"), conf.issuer));
	check(str_is(json_object_get(at, "sub"), uid));
	check(str_is(json_object_get(at, "aud"), "api://x"));
	check(str_is(json_object_get(at, "client_id"), client_id_of(a)));
	check(str_is(json_object_get(at, "sid"), g.sid) && strlen(g.sid) == SESSION_HANDLE_LEN);
	check(str_is(json_object_get(at, "scope"), "openid"));
	check(json_is_string(json_object_get(at, "jti")));
	iat = json_integer_value(json_object_get(at, "iat"));
	check(iat >= now && iat <= now + 5);
	check(json_integer_value(json_object_get(at, "exp")) == iat + (json_int_t)conf.access_ttl);
	check(json_array_size(json_object_get(at, "roles")) == 1 &&
	      str_is(json_array_get(json_object_get(at, "roles"), 0), "reader"));
	check(json_object_get(at, "email") == NULL); /* the login's claims request is o's */
	/* The ID token: for the client, amr and auth_time of the session, no nonce. */
	s = fixture_get(TBL_SESSIONS, g.session_key);
	check(str_is(json_object_get(idt, "iss"), conf.issuer));
	check(str_is(json_object_get(idt, "sub"), uid));
	check(str_is(json_object_get(idt, "aud"), client_id_of(a)));
	check(str_is(json_object_get(idt, "sid"), g.sid));
	check(json_equal(json_object_get(idt, "amr"), json_object_get(s, "amr")));
	check(json_equal(json_object_get(idt, "auth_time"), json_object_get(s, "auth_time")));
	check(json_integer_value(json_object_get(idt, "exp")) ==
	      json_integer_value(json_object_get(idt, "iat")) + (json_int_t)conf.id_ttl);
	check(json_object_get(idt, "nonce") == NULL);
	check(json_object_get(idt, "email") == NULL);
	json_decref(s);
	json_decref(at);
	json_decref(idt);
	json_decref(out);

	/* The claims request selects user claims; extra claims go into the ID token. */
	o.claims = claims;
	g.extra_claims = json_pack("{s:s}", "approval_data", "x");
	out = token_response(&c, &g, &o);
	at = claims_of(json_string_value(json_object_get(out, "access_token")), "at+jwt");
	idt = claims_of(json_string_value(json_object_get(out, "id_token")), "JWT");
	check(str_is(json_object_get(idt, "email"), "tok@example.com"));
	check(json_array_size(json_object_get(idt, "roles")) == 1);
	check(str_is(json_object_get(at, "email"), "tok@example.com"));
	check(str_is(json_object_get(idt, "approval_data"), "x"));
	json_decref(at);
	json_decref(idt);
	json_decref(out);

	/* Without an audience: the client's; without a raw session id: no session_id. */
	free(g.aud);
	g.aud = NULL;
	crypto_free_str(g.session_id);
	g.session_id = NULL;
	out = token_response(&c, &g, &(struct login_opts){0});
	at = claims_of(json_string_value(json_object_get(out, "access_token")), "at+jwt");
	check(out != NULL && json_object_get(out, "session_id") == NULL);
	check(str_is(json_object_get(at, "aud"), client_id_of(a)));
	json_decref(at);
	json_decref(out);
	rt = strdup(g.refresh_token);
	login_grant_free(&g);

	/* A refresh answers the claims request of the login that began the family. */
	out = NULL;
	check(token_refresh(&c, a, rt, &out) == ERR_NONE);
	idt = claims_of(json_string_value(json_object_get(out, "id_token")), "JWT");
	at = claims_of(json_string_value(json_object_get(out, "access_token")), "at+jwt");
	check(str_is(json_object_get(idt, "email"), "tok@example.com"));
	check(str_is(json_object_get(at, "aud"), "api://x"));
	json_decref(idt);
	json_decref(at);
	json_decref(out);
	json_decref(claims);
	free(rt);
}

/* The token the race children present (a global: valgrind checks each child at its exit). */
static char *race_token;

/*
 * Processes racing to refresh one token within the grace window: one rotates it, the others
 * are retries of the predecessor, and all of them get the same successor; nothing is revoked.
 */
static void race(json_t *a, const char *uid)
{
	char skey[KEYRING_TAG_HEX], buf[1024] = "", *line, *save = NULL, *next = NULL;
	int fds[2], status, lines = 0, same = 1, ok = 1;
	size_t got = 0;
	ssize_t n;
	pid_t pids[4];

	conf.refresh_grace = 10;
	race_token = login_rt(uid, a, skey);
	if (!check(race_token != NULL && pipe(fds) == 0))
		return;
	fflush(stdout);
	for (int i = 0; i < 4; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			json_t *tokens = NULL;
			char out[256] = "FAIL\n";
			close(fds[0]);
			if (freopen("/dev/null", "w", stdout) == NULL)
				_exit(1);
			c.store = store_open(fixture_dir, 8, 0);
			if (c.store != NULL &&
			    token_refresh(&c, a, race_token, &tokens) == ERR_NONE)
				snprintf(
				    out, sizeof(out), "%s\n",
				    json_string_value(json_object_get(tokens, "refresh_token")));
			json_decref(tokens);
			_exit(write(fds[1], out, strlen(out)) == (ssize_t)strlen(out) ? 0 : 1);
		}
	}
	close(fds[1]);
	while (got < sizeof(buf) - 1 && (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fds[0]);
	for (int i = 0; i < 4; i++)
		ok &= waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0;
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (strcmp(line, "FAIL") == 0 || strcmp(line, race_token) == 0 ||
		    (next != NULL && strcmp(line, next) != 0))
			same = 0;
		if (next == NULL)
			next = strdup(line);
	}
	check(ok);
	check_msg(lines == 4 && same, "%d answers, the same successor: %d", lines, same);
	check(session_alive(skey));
	check(next != NULL && refresh(a, next, NULL) == ERR_NONE);
	free(next);
	free(race_token);
	race_token = NULL;
}

int main(void)
{
	char uid[64], uid2[64];
	json_t *a, *b;

	if (fixture_open("/dev/shm", "token", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	a = fixture_direct_client("A", NULL, NULL);
	b = fixture_direct_client("B", NULL, NULL);
	check(a != NULL && b != NULL);
	reader("tok@example.com", uid);
	reader("tok2@example.com", uid2);

	create(a, uid);
	rotation(a, b, uid);
	refusals(a, uid);
	revocation(a, b, uid);
	response(a, uid);
	organizations(a, uid2);
	race(a, uid);

	json_decref(a);
	json_decref(b);
	fixture_close();
	return check_done();
}
