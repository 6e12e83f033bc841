/*
 * otp: the passcode rules of DESIGN.md (1 to 5) on a real store: strong uniform codes, single
 * use (also across processes racing for one code), failures counted against the live code and
 * the account's throttle (never against a guess at no code), a new send replacing the old code,
 * codes bound to client and identifier, expiry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "lockout.h"
#include "otp.h"
#include "user.h"

static json_t *new_client(const char *name)
{
	json_t *spec = json_pack("{s:s, s:[s]}", "name", name, "permissions", "direct");
	json_t *client = fixture_client(spec);

	json_decref(spec);
	return client;
}

/*
 * Send a direct passcode to email for client; the code goes into code (size 16), and with rid
 * not NULL a request id is asked for and returned in *rid (new).
 */
static int send_code_rid(json_t *client, const char *email, char *code, char **rid)
{
	struct otp_send_req r = {.client = client,
				 .channel = "direct",
				 .idtype = ID_EMAIL,
				 .identifier = email,
				 .want_request_id = rid != NULL};
	struct otp_send_res res;
	int rc = otp_send(&c, &r, &res);
	if (rc == ERR_NONE) {
		snprintf(code, 16, "%s", res.code);
		if (rid != NULL)
			*rid = strdup(res.request_id);
		otp_send_res_free(&res);
	}
	return rc;
}

static int send_code(json_t *client, const char *email, char *code)
{
	return send_code_rid(client, email, code, NULL);
}

static int auth_rid(json_t *client, const char *email, const char *code, const char *rid)
{
	struct otp_auth_req r = {.client = client,
				 .idtype = ID_EMAIL,
				 .identifier = email,
				 .passcode = code,
				 .request_id = rid};
	json_t *tokens = NULL;
	int rc = otp_authenticate(&c, &r, "aud", &tokens);
	if (rc == ERR_NONE)
		check(json_string_value(json_object_get(tokens, "refresh_token")) != NULL);
	json_decref(tokens);
	return rc;
}

static int auth(json_t *client, const char *email, const char *code)
{
	return auth_rid(client, email, code, NULL);
}

static void wrong_code(const char *code, char *wrong)
{
	snprintf(wrong, 16, "%s", code);
	wrong[0] = wrong[0] == '9' ? '0' : (char)(wrong[0] + 1);
}

/* Set the "exp" or "locked_until" of every record of a table into the past. */
struct age_arg {
	enum store_table tbl;
	const char *field;
	json_t *keys;
};

static int collect(const void *k, size_t klen, json_t *val, void *arg)
{
	return json_array_append_new(arg, json_stringn(k, klen));
}

static int age_records(struct store_txn *t, void *argp)
{
	struct age_arg *a = argp;
	size_t i;
	json_t *k, *rec;
	int rc;

	json_array_clear(a->keys);
	if ((rc = store_each(t, a->tbl, NULL, 0, collect, a->keys)) < 0)
		return rc;
	json_array_foreach(a->keys, i, k)
	{
		const char *key = json_string_value(k);
		if (store_get(t, a->tbl, key, strlen(key), &rec, 1) != STORE_FOUND)
			return STORE_ERR;
		json_object_set_new(rec, a->field, json_integer(1));
		rc = store_put(t, a->tbl, key, strlen(key), rec);
		json_decref(rec);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void age(enum store_table tbl, const char *field)
{
	struct age_arg a = {tbl, field, json_array()};
	check(store_run(c.store, age_records, &a) == 0);
	json_decref(a.keys);
}

int main(void)
{
	char err[256], code[16], code2[16], wrong[16];
	json_t *a, *b;
	int leading_zero = 0, all_digits = 1;

	if (fixture_open("/tmp", "otp", 8) < 0)
		return check_done();
	free(conf.issuer);
	conf.issuer = strdup("http://127.0.0.1/cis");
	a = new_client("A");
	b = new_client("B");
	check(a != NULL && b != NULL);
	snprintf(err, sizeof(err), "x");

	/* Rule 1: digits of the configured length; leading zeros kept. */
	for (int i = 0; i < 300; i++) {
		check(send_code(a, "codes@example.com", code) == ERR_NONE);
		all_digits &= strlen(code) == 6 && strspn(code, "0123456789") == 6;
		leading_zero |= code[0] == '0';
	}
	check(all_digits);
	check(leading_zero); /* P(no leading zero in 300) = 0.9^300 < 1e-13 */

	/* Rule 2: a code succeeds once. */
	check(send_code(a, "once@example.com", code) == ERR_NONE);
	check(auth(a, "once@example.com", code) == ERR_NONE);
	check(auth(a, "once@example.com", code) == ERR_BAD_CREDENTIALS);

	/* Rule 2 across processes: 8 processes race for one code; exactly one wins. */
	check(send_code(a, "race@example.com", code) == ERR_NONE);
	{
		int wins = 0, status;
		pid_t pids[8];
		for (int i = 0; i < 8; i++) {
			pids[i] = fork();
			if (pids[i] == 0) {
				/*
				 * A worker of its own: its own environment handle. Its checks
				 * must not print TAP lines of their own (the parent counts).
				 */
				if (freopen("/dev/null", "w", stdout) == NULL)
					_exit(1);
				c.store = store_open(fixture_dir, 8, 0);
				_exit(c.store && auth(a, "race@example.com", code) == ERR_NONE ? 0
											       : 1);
			}
		}
		for (int i = 0; i < 8; i++)
			if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
			    WEXITSTATUS(status) == 0)
				wins++;
		check_msg(wins == 1, "wins = %d", wins);
	}

	/* Rule 3: wrong passcodes count against the live code; the third kills it. */
	check(send_code(a, "dies@example.com", code) == ERR_NONE);
	wrong_code(code, wrong);
	for (int i = 0; i < 3; i++)
		check(auth(a, "dies@example.com", wrong) == ERR_BAD_CREDENTIALS);
	check(auth(a, "dies@example.com", code) == ERR_BAD_CREDENTIALS); /* dead */
	check(send_code(a, "dies@example.com", code) == ERR_NONE);	 /* a new one works */
	check(auth(a, "dies@example.com", code) == ERR_NONE);

	/*
	 * Guesses where no code is outstanding, or from another client, harm nobody: past
	 * [limits] identifier_attempts (20) they answer 429, and the right code still works.
	 */
	for (int i = 0; i < 15; i++)
		check(auth(b, "victim@example.com", "000000") == ERR_BAD_CREDENTIALS);
	check(send_code(a, "victim@example.com", code) == ERR_NONE);
	wrong_code(code, wrong);
	for (int i = 15; i < 25; i++)
		check(auth(b, "victim@example.com", wrong) ==
		      (i < 20 ? ERR_BAD_CREDENTIALS : ERR_RATE_LIMITED));
	check(auth(a, "victim@example.com", code) == ERR_NONE);
	/* The success ended the count: wrong ones are plain wrong again. */
	check(auth(b, "victim@example.com", wrong) == ERR_BAD_CREDENTIALS);

	/* A code sent with a request_id is burnt only by guesses that present it. */
	{
		char *rid = NULL;
		check(send_code_rid(a, "bound-rid@example.com", code, &rid) == ERR_NONE);
		wrong_code(code, wrong);
		for (int i = 0; i < 5; i++)
			check(auth_rid(a, "bound-rid@example.com", wrong, NULL) ==
			      ERR_BAD_CREDENTIALS);
		check(auth_rid(a, "bound-rid@example.com", code, NULL) == ERR_BAD_CREDENTIALS);
		check(auth_rid(a, "bound-rid@example.com", code, rid) == ERR_NONE);
		free(rid);
	}

	/*
	 * The account throttle: the 10th failure against live codes in an hour starts a delay
	 * of 30 s, doubling per failure up to lockout_minutes; during it even the right code
	 * waits; after it the right code works.
	 */
	check(lockout_delay(&conf, 9) == 0 && lockout_delay(&conf, 10) == 30 &&
	      lockout_delay(&conf, 11) == 60 && lockout_delay(&conf, 14) == 480 &&
	      lockout_delay(&conf, 15) == 900 && lockout_delay(&conf, 1000) == 900);
	for (int i = 0; i < 10; i++) {
		if (i % 3 == 0)
			check(send_code(a, "lock@example.com", code) == ERR_NONE);
		wrong_code(code, wrong);
		check(auth(a, "lock@example.com", wrong) == ERR_BAD_CREDENTIALS);
	}
	check(send_code(a, "lock@example.com", code) == ERR_NONE);
	check(auth(a, "lock@example.com", code) == ERR_LOCKED);
	age(TBL_COUNTERS, "until"); /* the delay passes */
	check(auth(a, "lock@example.com", code) == ERR_NONE);

	/* Rule 4: a new send replaces the previous code. */
	check(send_code(a, "replace@example.com", code) == ERR_NONE);
	do
		check(send_code(a, "replace@example.com", code2) == ERR_NONE);
	while (strcmp(code, code2) == 0);
	check(auth(a, "replace@example.com", code) == ERR_BAD_CREDENTIALS);
	check(auth(a, "replace@example.com", code2) == ERR_NONE);

	/* Rule 5: bound to the client and the identifier. */
	check(send_code(a, "bound@example.com", code) == ERR_NONE);
	check(auth(b, "bound@example.com", code) == ERR_BAD_CREDENTIALS);
	check(auth(a, "other@example.com", code) == ERR_BAD_CREDENTIALS);
	check(auth(a, "bound@example.com", code) == ERR_NONE);

	/* Expiry: an expired code fails with its own error and is gone. */
	check(send_code(a, "expiry@example.com", code) == ERR_NONE);
	age(TBL_CODES, "exp");
	check(auth(a, "expiry@example.com", code) == ERR_CODE_EXPIRED);
	check(auth(a, "expiry@example.com", code) == ERR_BAD_CREDENTIALS);

	/* Signup policy: closed refuses unknown users at send; user_id/username need a user. */
	{
		struct otp_send_req r = {.client = a,
					 .channel = "direct",
					 .idtype = ID_USERNAME,
					 .identifier = "nobody"};
		struct otp_send_res res;
		check(otp_send(&c, &r, &res) == ERR_USER_NOT_FOUND);
	}

	json_decref(a);
	json_decref(b);
	fixture_close();
	return check_done();
}
