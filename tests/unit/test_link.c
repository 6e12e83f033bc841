/*
 * link: magic links on a real store, sent direct (returned, not mailed). A link opens once:
 * looking consumes nothing, opening consumes it and redirects with a fresh code, a second
 * open says used; expiry; a new send replaces the identifier's previous link for the client;
 * a hiding client's link for an identifier that cannot log in is dead. The code logs in once,
 * only for its client, with the send's request_id, and not after it expired. The redirect's
 * length and origin limits, and the purge rule of the {"link": key} pointer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "fixture.h"
#include "link.h"
#include "resp.h"

#define REDIRECT "https://app.example/cb"
#define OPEN_PATH "/v1/auth/link/email/open?t="

static json_t *client_a, *client_b, *client_hide;

static json_t *new_client(const char *name, const char *signup, const char *existence)
{
	json_t *spec =
	    json_pack("{s:s, s:[s], s:[s], s:s, s:s}", "name", name, "redirect_uris", REDIRECT,
		      "permissions", "direct", "signup", signup, "existence", existence);
	json_t *client = fixture_client(spec);

	json_decref(spec);
	return client;
}

static unsigned send_minutes; /* link_send_req.minutes of the sends */

/*
 * A direct send for client to email with state (NULL: none); the link's token (size 128) and
 * the request id (size 128, when rid is not NULL). Returns link_send's answer.
 */
static int send_link(json_t *client, const char *email, const char *state, char *token, char *rid)
{
	struct link_send_req r = {.client = client,
				  .idtype = ID_EMAIL,
				  .identifier = email,
				  .redirect_uri = REDIRECT,
				  .state = state,
				  .minutes = send_minutes,
				  .direct = 1,
				  .want_request_id = rid != NULL};
	struct link_send_res res;
	char prefix[256];
	int rc = link_send(&c, &r, &res);

	token[0] = '\0';
	if (rc != ERR_NONE)
		return rc;
	snprintf(prefix, sizeof(prefix), "%s" OPEN_PATH, conf.public_base_url);
	if (check(res.link != NULL && strncmp(res.link, prefix, strlen(prefix)) == 0))
		snprintf(token, 128, "%s", res.link + strlen(prefix));
	if (rid != NULL) {
		check(res.request_id != NULL);
		snprintf(rid, 128, "%s", res.request_id ?: "");
	} else {
		check(res.request_id == NULL);
	}
	link_send_res_free(&res);
	return rc;
}

static enum link_state peek(const char *token)
{
	struct link_view v;

	if (link_peek(&c, token, &v) != 0)
		return (enum link_state) - 1;
	check(v.redirect == NULL);
	link_view_free(&v);
	return v.state;
}

/* link_open; on LINK_VALID the code of the redirect into code (size 128). */
static enum link_state open_link(const char *token, char *code)
{
	struct link_view v;
	const char *p;

	code[0] = '\0';
	if (link_open(&c, token, &v) != 0)
		return (enum link_state) - 1;
	if (v.state == LINK_VALID) {
		p = v.redirect ? strstr(v.redirect, "code=") : NULL;
		if (check(p != NULL && strncmp(v.redirect, REDIRECT "?code=", 28) == 0))
			snprintf(code, 128, "%.*s", (int)strcspn(p + 5, "&"), p + 5);
	} else {
		check(v.redirect == NULL);
	}
	link_view_free(&v);
	return v.state;
}

static int auth(json_t *client, const char *code, const char *rid)
{
	struct link_auth_req r = {.client = client, .code = code, .request_id = rid};
	json_t *tokens = NULL;
	int rc = link_authenticate(&c, &r, "aud", &tokens);

	if (rc == ERR_NONE)
		check(json_is_string(json_object_get(tokens, "access_token")) &&
		      json_is_string(json_object_get(tokens, "id_token")) &&
		      json_is_string(json_object_get(tokens, "refresh_token")));
	else
		check(tokens == NULL);
	json_decref(tokens);
	return rc;
}

/* A token sent and opened: its code (size 128). */
static int code_for(json_t *client, const char *email, char *code, char *rid)
{
	char token[128];
	if (send_link(client, email, NULL, token, rid) != ERR_NONE)
		return -1;
	return open_link(token, code) == LINK_VALID ? 0 : -1;
}

/* Set "exp" of every record of TBL_CODES that has one (links and codes) into the past. */
static int collect(const void *k, size_t klen, json_t *val, void *arg)
{
	if (json_object_get(val, "exp") != NULL)
		return json_array_append_new(arg, json_stringn(k, klen));
	return 0;
}

static int age_txn(struct store_txn *t, void *keys_arg)
{
	json_t *k, *rec;
	size_t i;
	int rc;

	json_array_clear(keys_arg);
	if ((rc = store_each(t, TBL_CODES, NULL, 0, collect, keys_arg)) < 0)
		return rc;
	json_array_foreach(keys_arg, i, k)
	{
		const char *key = json_string_value(k);
		if (store_get(t, TBL_CODES, key, strlen(key), &rec, 1) != STORE_FOUND)
			return STORE_ERR;
		json_object_set_new(rec, "exp", json_integer(1));
		rc = store_put(t, TBL_CODES, key, strlen(key), rec);
		json_decref(rec);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void age_all(void)
{
	json_t *keys_arg = json_array();
	check(store_run(c.store, age_txn, keys_arg) == 0);
	json_decref(keys_arg);
}

/* The latest "exp" of the link records (those naming a redirect_uri). */
static int latest_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	json_int_t exp = json_integer_value(json_object_get(val, "exp"));
	if (json_object_get(val, "redirect_uri") != NULL && exp > *(json_int_t *)arg)
		*(json_int_t *)arg = exp;
	return 0;
}

static int latest_txn(struct store_txn *t, void *arg)
{
	*(json_int_t *)arg = 0;
	return store_each(t, TBL_CODES, NULL, 0, latest_cb, arg);
}

static long long latest_exp(void)
{
	json_int_t exp = 0;
	return store_run(c.store, latest_txn, &exp) == 0 ? (long long)exp : -1;
}

static int count_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	++*(int *)arg;
	return 0;
}

static int count_txn(struct store_txn *t, void *n)
{
	*(int *)n = 0;
	return store_each(t, TBL_CODES, NULL, 0, count_cb, n);
}

static int codes_records(void)
{
	int n = -1;
	return store_run(c.store, count_txn, &n) == 0 ? n : -1;
}

struct disable_arg {
	const char *email;
	json_t *user;
};

static int disable_txn(struct store_txn *t, void *argp)
{
	struct disable_arg *a = argp;
	json_t *u = NULL, *patch;
	char e[128];
	int rc = user_find_txn(t, ID_EMAIL, a->email, &u), was_active;

	if (rc != STORE_FOUND)
		return rc < 0 ? rc : STORE_ERR;
	patch = json_pack("{s:s}", "status", "Disabled");
	json_decref(a->user);
	a->user = NULL;
	rc = user_update_txn(t, json_string_value(json_object_get(u, "user_id")), patch, &a->user,
			     &was_active, e, sizeof(e));
	json_decref(patch);
	json_decref(u);
	return rc == USER_CREATED ? 0 : STORE_ERR;
}

/* Disable the user of email. */
static void disable(const char *email)
{
	struct disable_arg a = {email, NULL};
	check(store_run(c.store, disable_txn, &a) == 0);
	json_decref(a.user);
}

static void opening(void)
{
	char token[128], code[128];
	struct link_view v;
	char longtok[200];

	check(send_link(client_a, "alice@example.com", "a b&c", token, NULL) == ERR_NONE);
	check(strlen(token) >= 43);
	/* Looking consumes nothing, however often (mail scanners fetch links). */
	check(link_peek(&c, token, &v) == 0 && v.state == LINK_VALID && v.redirect == NULL);
	check(strcmp(v.redirect_origin, "https://app.example") == 0);
	check(v.masked[0] != '\0' && strstr(v.masked, "alice@") == NULL);
	link_view_free(&v);
	check(peek(token) == LINK_VALID);
	/* Opening consumes it: a redirect with a code and the state, percent-encoded. */
	check(link_open(&c, token, &v) == 0 && v.state == LINK_VALID && v.redirect != NULL);
	check(v.redirect && strncmp(v.redirect, REDIRECT "?code=", 28) == 0 &&
	      strlen(v.redirect) == 28 + 43 + strlen("&state=a%20b%26c") &&
	      strcmp(v.redirect + 28 + 43, "&state=a%20b%26c") == 0);
	check(strcmp(v.redirect_origin, "https://app.example") == 0);
	link_view_free(&v);
	check(v.redirect == NULL);
	/* A second open, or a look, says it was used. */
	check(open_link(token, code) == LINK_USED && code[0] == '\0');
	check(peek(token) == LINK_USED);
	/* Unknown tokens, however long. */
	check(peek("no-such-token") == LINK_UNKNOWN);
	check(open_link("no-such-token", code) == LINK_UNKNOWN);
	memset(longtok, 'x', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	check(peek(longtok) == LINK_UNKNOWN && peek("") == LINK_UNKNOWN);

	/* Two opens give two different codes only when there are two links. */
	{
		char t2[128], c1[128], c2[128];
		check(send_link(client_a, "alice@example.com", NULL, t2, NULL) == ERR_NONE);
		check(strcmp(t2, token) != 0);
		check(open_link(t2, c1) == LINK_VALID && strlen(c1) == 43);
		check(open_link(t2, c2) == LINK_USED);
		check(send_link(client_a, "alice@example.com", NULL, t2, NULL) == ERR_NONE);
		check(open_link(t2, c2) == LINK_VALID && strcmp(c1, c2) != 0);
	}
}

static void replacing(void)
{
	char t1[128], t2[128], tb[128], tother[128];

	check(send_link(client_a, "alice@example.com", NULL, t1, NULL) == ERR_NONE);
	check(send_link(client_b, "alice@example.com", NULL, tb, NULL) == ERR_NONE);
	check(send_link(client_a, "bob@example.com", NULL, tother, NULL) == ERR_NONE);
	check(send_link(client_a, "alice@example.com", NULL, t2, NULL) == ERR_NONE);
	/* The new link replaces the previous one of the same client and identifier only. */
	check(peek(t1) == LINK_UNKNOWN);
	check(peek(t2) == LINK_VALID && peek(tb) == LINK_VALID && peek(tother) == LINK_VALID);
}

static void hiding(void)
{
	char token[128], code[128];
	json_t *u = NULL;

	/* A revealing client says why it cannot send... */
	check(send_link(client_b, "nobody@example.com", NULL, token, NULL) == ERR_USER_NOT_FOUND);
	/* ...a hiding one answers alike, with a link that is dead. */
	check(send_link(client_hide, "nobody@example.com", NULL, token, NULL) == ERR_NONE);
	check(token[0] != '\0');
	check(peek(token) == LINK_UNKNOWN && open_link(token, code) == LINK_UNKNOWN);
	check(user_get(&c, ID_EMAIL, "nobody@example.com", &u) == STORE_NOTFOUND);
	/* The hiding client's link for a user who can log in works. */
	check(send_link(client_hide, "alice@example.com", NULL, token, NULL) == ERR_NONE);
	check(open_link(token, code) == LINK_VALID && auth(client_hide, code, NULL) == ERR_NONE);
	/* A disabled user: the revealing client says so, the hiding one sends a dead link. */
	{
		json_t *spec = json_pack("{s:s}", "email", "off@example.com"), *made = NULL;
		char e[128];
		check(user_create(&c, spec, &made, e, sizeof(e)) == USER_CREATED);
		json_decref(spec);
		json_decref(made);
	}
	disable("off@example.com");
	check(send_link(client_b, "off@example.com", NULL, token, NULL) == ERR_USER_NOT_ACTIVE);
	check(send_link(client_hide, "off@example.com", NULL, token, NULL) == ERR_NONE &&
	      peek(token) == LINK_UNKNOWN);
}

static void authenticating(void)
{
	char code[128], rid[128], wrong[128];
	json_t *u = NULL;

	/* The code logs in once. */
	check(code_for(client_a, "alice@example.com", code, NULL) == 0);
	check(auth(client_a, code, NULL) == ERR_NONE);
	check(auth(client_a, code, NULL) == ERR_BAD_CREDENTIALS);
	/* The link proved the mailbox. */
	check(user_get(&c, ID_EMAIL, "alice@example.com", &u) == STORE_FOUND &&
	      json_is_true(json_object_get(json_object_get(u, "email"), "email_verified")));
	json_decref(u);
	u = NULL;

	/* Only for its client: another one's attempt finds nothing and burns nothing. */
	check(code_for(client_a, "alice@example.com", code, NULL) == 0);
	check(auth(client_b, code, NULL) == ERR_BAD_CREDENTIALS);
	check(auth(client_a, code, NULL) == ERR_NONE);
	/* Unknown codes. */
	check(auth(client_a, "not-a-code", NULL) == ERR_BAD_CREDENTIALS);
	check(auth(client_a, "", NULL) == ERR_BAD_CREDENTIALS);

	/* The request id of the send: required when it was asked for, and a refusal uses the
	 * code up. */
	check(code_for(client_a, "alice@example.com", code, rid) == 0 && rid[0] != '\0');
	check(auth(client_a, code, NULL) == ERR_BAD_CREDENTIALS);
	check(auth(client_a, code, rid) == ERR_BAD_CREDENTIALS);
	check(code_for(client_a, "alice@example.com", code, rid) == 0);
	snprintf(wrong, sizeof(wrong), "%s", rid);
	wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
	check(auth(client_a, code, wrong) == ERR_BAD_CREDENTIALS);
	check(code_for(client_a, "alice@example.com", code, rid) == 0);
	check(auth(client_a, code, rid) == ERR_NONE);
	/* A request id that the send did not ask for is no obstacle. */
	check(code_for(client_a, "alice@example.com", code, NULL) == 0);
	check(auth(client_a, code, "whatever") == ERR_NONE);

	/* Open signup: a link to a new address creates its user at the login. */
	check(user_get(&c, ID_EMAIL, "carol@example.com", &u) == STORE_NOTFOUND);
	check(code_for(client_a, "carol@example.com", code, NULL) == 0);
	check(user_get(&c, ID_EMAIL, "carol@example.com", &u) == STORE_NOTFOUND);
	check(auth(client_a, code, NULL) == ERR_NONE);
	check(user_get(&c, ID_EMAIL, "carol@example.com", &u) == STORE_FOUND);
	json_decref(u);
	u = NULL;

	/* A code whose user was disabled after the send does not log in. */
	check(code_for(client_a, "bob@example.com", code, NULL) == 0);
	disable("bob@example.com");
	check(auth(client_a, code, NULL) == ERR_USER_NOT_ACTIVE);
}

static void expiring(void)
{
	char token[128], code[128], code2[128];

	long long now = (long long)time(NULL);

	/* A link lives the minutes asked for, the configured default, at most the maximum. */
	send_minutes = 0;
	check(send_link(client_a, "frank@example.com", NULL, token, NULL) == ERR_NONE);
	check(latest_exp() >= now + 15 * 60 && latest_exp() <= (long long)time(NULL) + 15 * 60);
	send_minutes = 100000;
	check(send_link(client_a, "frank@example.com", NULL, token, NULL) == ERR_NONE);
	check(latest_exp() >= now + 1440 * 60 && latest_exp() <= (long long)time(NULL) + 1440 * 60);
	send_minutes = 0;

	/* An expired link, and an expired code. */
	check(send_link(client_a, "dave@example.com", NULL, token, NULL) == ERR_NONE);
	check(code_for(client_b, "alice@example.com", code, NULL) == 0);
	age_all();
	check(peek(token) == LINK_EXPIRED);
	check(open_link(token, code2) == LINK_EXPIRED && code2[0] == '\0');
	check(auth(client_b, code, NULL) == ERR_BAD_CREDENTIALS);
}

static void purging(void)
{
	char token[128];
	int before, after;

	/* Everything sent so far has expired (expiring() aged it); one more, alive. */
	check(send_link(client_a, "erin@example.com", NULL, token, NULL) == ERR_NONE);
	check(link_purge_rules(c.store) == 0);
	before = codes_records();
	check(store_purge(c.store, time(NULL)) > 0);
	after = codes_records();
	/* Left: the live link and its pointer; every other link, code and pointer is gone. */
	check_msg(after == 2, "%d records of %d left", after, before);
	check(peek(token) == LINK_VALID);
	/* Replacing it leaves its successor and one pointer. */
	check(send_link(client_a, "erin@example.com", NULL, token, NULL) == ERR_NONE);
	check(store_purge(c.store, time(NULL)) == 0);
	check(codes_records() == 2 && peek(token) == LINK_VALID);
}

static void limits(void)
{
	char uri[RESP_HEADER_MAX + 16], origin[300], host[300];
	size_t base = strlen("?code=") + 43; /* what the redirect adds without a state */

	check(link_redirect_fits(REDIRECT, NULL) && link_redirect_fits(REDIRECT, "s"));
	/* The Location must fit RESP_HEADER_MAX exactly, the state counted percent-encoded. */
	memset(uri, 'u', sizeof(uri));
	memcpy(uri, "https://a.example/", 18);
	uri[RESP_HEADER_MAX - base] = '\0';
	check(link_redirect_fits(uri, NULL));
	uri[RESP_HEADER_MAX - base] = 'u';
	uri[RESP_HEADER_MAX - base + 1] = '\0';
	check(!link_redirect_fits(uri, NULL));
	uri[RESP_HEADER_MAX - base - 7 - 9] = '\0';
	check(link_redirect_fits(uri, "a-b_c.d~e"));	/* 9 unreserved bytes */
	check(!link_redirect_fits(uri, "a-b_c.d~ "));	/* one of them encoded: 11 */
	uri[RESP_HEADER_MAX - base - 7 - 9 - 2] = '\0'; /* room for the encoding */
	check(link_redirect_fits(uri, "a-b_c.d~ "));
	check(!link_redirect_fits(uri, "a-b_c.d~\xc3\xa9")); /* é: two bytes, six encoded */
	/* An origin the landing page could not name whole. */
	memset(host, 'h', 280);
	host[280] = '\0';
	snprintf(uri, sizeof(uri), "https://%s.example/cb", host);
	check(!link_redirect_fits(uri, NULL));

	/* link_origin: scheme://authority, cut at path, query or fragment. */
	check(link_origin("https://app.example:8443/cb?x=1#f", origin, sizeof(origin)) == 0 &&
	      strcmp(origin, "https://app.example:8443") == 0);
	check(link_origin("https://app.example", origin, sizeof(origin)) == 0 &&
	      strcmp(origin, "https://app.example") == 0);
	check(link_origin("https://app.example?x", origin, sizeof(origin)) == 0 &&
	      strcmp(origin, "https://app.example") == 0);
	check(link_origin("http://[::1]:3000#x", origin, sizeof(origin)) == 0 &&
	      strcmp(origin, "http://[::1]:3000") == 0);
	check(link_origin("no-scheme/cb", origin, sizeof(origin)) == 0 &&
	      strcmp(origin, "'none'") == 0);
	/* One byte short of the room: 'none', never a cut origin. */
	check(link_origin("https://a.example/cb", origin, 17) == -1 &&
	      strcmp(origin, "'none'") == 0);
	check(link_origin("https://a.example/cb", origin, 18) == 0 &&
	      strcmp(origin, "https://a.example") == 0);
}

int main(void)
{
	if (fixture_open("/dev/shm", "link", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	client_a = new_client("A", "open", "reveal");
	client_b = new_client("B", "closed", "reveal");
	client_hide = new_client("H", "closed", "hide");
	check(client_a && client_b && client_hide);
	{
		json_t *spec = json_pack("{s:s}", "email", "alice@example.com"), *u = NULL;
		char e[128];
		check(user_create(&c, spec, &u, e, sizeof(e)) == USER_CREATED);
		json_decref(spec);
		json_decref(u);
		spec = json_pack("{s:s}", "email", "bob@example.com");
		check(user_create(&c, spec, &u, e, sizeof(e)) == USER_CREATED);
		json_decref(spec);
		json_decref(u);
	}
	opening();
	replacing();
	hiding();
	authenticating();
	expiring();
	purging();
	limits();
	json_decref(client_a);
	json_decref(client_b);
	json_decref(client_hide);
	fixture_close();
	return check_done();
}
