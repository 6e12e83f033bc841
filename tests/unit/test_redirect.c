/*
 * redirect: what the end-to-end suite cannot reach easily. /v1/auth/logout's token checks
 * (only an unexpired at+jwt of this issuer, signed by a published key, naming a user and a
 * client, ends anything; it ends only that client's sessions of that user), a ticket that
 * names nothing, and the send's refusals before anything is stored or sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "jwt.h"
#include "redirect.h"
#include "session.h"

static json_t *client_a, *client_b;
static char uid[64];

struct login_arg {
	json_t *client;
};

/* A session of the user with arg's client, as a login opens one. */
static int login_txn(struct store_txn *t, void *argp)
{
	struct login_arg *a = argp;
	struct login_opts o = {0};
	struct login_grant g = {0};
	json_t *user = NULL;
	int rc = user_find_txn(t, ID_EMAIL, "logout@example.com", &user);

	if (rc == STORE_FOUND)
		rc = session_login_txn(t, &c, user, a->client, "eotp", "email", NULL, &o, &g);
	else
		rc = STORE_ERR;
	login_grant_free(&g);
	json_decref(user);
	return rc;
}

static void open_session(json_t *client)
{
	struct login_arg a = {client};
	check(store_run(c.store, login_txn, &a) == ERR_NONE);
}

/* An access token of typ over claims from the signing key (new string). */
static char *token(const char *typ, const char *iss, const char *sub, json_t *client,
		   json_int_t exp)
{
	json_t *claims = json_pack("{s:s, s:I}", "iss", iss, "exp", exp);
	char *t;

	if (sub != NULL)
		json_object_set_new(claims, "sub", json_string(sub));
	if (client != NULL)
		json_object_set_new(claims, "client_id", json_string(client_id_of(client)));
	t = jwt_sign(keys.signing, typ, claims);
	json_decref(claims);
	return t;
}

static int logout(char *t, size_t *n)
{
	int rc = t ? redirect_logout(&c, t, n) : -99;
	free(t);
	return rc;
}

static size_t live(json_t *client)
{
	int more = 0;
	json_t *page = session_list(&c, uid, client_id_of(client), NULL, 100, &more);
	size_t n = json_array_size(page);

	json_decref(page);
	return n;
}

static void logout_checks(void)
{
	json_int_t later = (json_int_t)time(NULL) + 600, past = (json_int_t)time(NULL) - 10;
	const char *iss = conf.issuer;
	size_t n = 99;
	char *t;

	fixture_user("logout@example.com", NULL, NULL, uid);
	open_session(client_a);
	open_session(client_a);
	open_session(client_b);
	check(live(client_a) == 2 && live(client_b) == 1);

	/* Refused, and nothing ended. */
	check(logout(token("JWT", iss, uid, client_a, later), &n) == ERR_INVALID_TOKEN);
	check(logout(token("at+jwt", iss, uid, client_a, past), &n) == ERR_INVALID_TOKEN);
	check(logout(token("at+jwt", "https://elsewhere.example", uid, client_a, later), &n) ==
	      ERR_INVALID_TOKEN);
	check(logout(token("at+jwt", iss, NULL, client_a, later), &n) == ERR_INVALID_TOKEN);
	check(logout(token("at+jwt", iss, uid, NULL, later), &n) == ERR_INVALID_TOKEN);
	t = token("at+jwt", iss, uid, client_a, later);
	if (check(t != NULL)) {
		/* One flipped signature byte. */
		size_t len = strlen(t);
		t[len - 2] = t[len - 2] == 'A' ? 'B' : 'A';
	}
	check(logout(t, &n) == ERR_INVALID_TOKEN);
	check(redirect_logout(&c, "not.a.token", &n) == ERR_INVALID_TOKEN);
	check(live(client_a) == 2 && live(client_b) == 1);

	/* The right token ends the client's sessions only. */
	check(logout(token("at+jwt", iss, uid, client_a, later), &n) == ERR_NONE);
	check(n == 2);
	check(live(client_a) == 0 && live(client_b) == 1);
	check(logout(token("at+jwt", iss, uid, client_a, later), &n) == ERR_NONE);
	check(n == 0);
	check(live(client_b) == 1);
}

static void tickets(void)
{
	struct redirect_landing L = {0};
	char long_ticket[200];

	check(redirect_ticket(&c, "no-such-ticket", &L) == REDIRECT_UNKNOWN);
	check(L.location == NULL && L.session_id == NULL);
	memset(long_ticket, 'A', sizeof(long_ticket) - 1);
	long_ticket[sizeof(long_ticket) - 1] = '\0';
	check(redirect_ticket(&c, long_ticket, &L) == REDIRECT_UNKNOWN);
	redirect_landing_free(&L);
}

static void send_refusals(void)
{
	unsigned retry = 7;
	struct redirect_send_req r = {.client = client_a,
				      .kind = REDIRECT_EMAIL_OTP,
				      .idtype = ID_EMAIL,
				      .identifier = "stranger@example.com",
				      .redirect_uri = "https://app.example/cb"};

	/* Unknown without create_new_user: 404; create_new_user on a closed client: 403. */
	check(redirect_send(&c, &r, &retry) == ERR_USER_NOT_FOUND && retry == 0);
	r.kind = REDIRECT_EMAIL_LINK;
	check(redirect_send(&c, &r, &retry) == ERR_USER_NOT_FOUND);
	r.create_new_user = 1;
	check(redirect_send(&c, &r, &retry) == ERR_FORBIDDEN);
	/* Also for a known user: the 403 tells nothing about the identifier. */
	r.identifier = "logout@example.com";
	check(redirect_send(&c, &r, &retry) == ERR_FORBIDDEN);
}

int main(void)
{
	json_t *spec;

	if (fixture_open("/tmp", "redirect", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	spec = json_pack("{s:s, s:s, s:[s]}", "name", "A", "signup", "closed", "redirect_uris",
			 "https://app.example/cb");
	client_a = fixture_client(spec);
	json_decref(spec);
	spec = json_pack("{s:s}", "name", "B");
	client_b = fixture_client(spec);
	json_decref(spec);
	if (check(client_a != NULL && client_b != NULL)) {
		logout_checks();
		tickets();
		send_refusals();
	}
	json_decref(client_a);
	json_decref(client_b);
	fixture_close();
	return check_done();
}
