/*
 * Stored records: every place that reads a JSON record from a table (TBL_*) and acts on it,
 * fed records the fuzzer makes: a database written by an older or newer otlogin, by hand, or
 * damaged. The modules' real code runs (client.c, user.c, org.c, otp.c, link.c, session.c,
 * token.c, ratelimit.c, keyring.c, jwk.c); only Berkeley DB is replaced, by store_mem.c, where
 * each table's record is the one every lookup in that table finds.
 *
 * Input: fields separated by NUL bytes, each the stored text of one table's record (empty: no
 * record): clients, users, user index, codes (passcodes, links, link codes), counters (failure
 * counters, lockouts, rate-limit windows), sessions, refresh tokens, keys (an extra signing
 * key record next to the real one); then a string the flows present as passcode, link token,
 * session id and refresh token.
 *
 * Besides "no crash, no leak, no undefined behaviour": lookups answer found, not found or a
 * store error; flows answer one of their documented results; whatever tokens come out are a
 * JSON object; the rate-limit window functions return an object, and a window they started
 * takes a second event when the limit allows it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "fuzz.h"
#include "keyring.h"
#include "lockout.h"
#include "link.h"
#include "login.h"
#include "log.h"
#include "org.h"
#include "otp.h"
#include "ratelimit.h"
#include "resp.h"
#include "session.h"
#include "store_mem.h"
#include "token.h"
#include "user.h"

enum {
	F_CLIENTS,
	F_USERS,
	F_USER_IDX,
	F_CODES,
	F_COUNTERS,
	F_SESSIONS,
	F_REFRESH,
	F_KEYS,
	F_PRESENTED,
	F_COUNT
};

static const enum store_table field_table[F_PRESENTED] = {TBL_CLIENTS, TBL_USERS,    TBL_USER_IDX,
							  TBL_CODES,   TBL_COUNTERS, TBL_SESSIONS,
							  TBL_REFRESH, TBL_KEYS};

static struct conf conf;
static struct keyring keys;
static struct ctx c;
static char dir[] = "/tmp/otlogin-fuzz-records-XXXXXX";

/* A client that exists for the flows when the fuzzed one does not decode into an object. */
static const char *const plain_client =
    "{\"client_id\":\"fuzzclient\",\"name\":\"f\",\"secret\":\"00\",\"redirect_uris\":"
    "[\"https://app.example/cb\"],\"resources\":[],\"permissions\":[\"direct\",\"admin\"],"
    "\"signup\":\"open\",\"existence\":\"reveal\",\"created_at\":1}";

static void cleanup(void)
{
	char path[sizeof(dir) + 16];

	snprintf(path, sizeof(path), "%s/server.key", dir);
	unlink(path);
	rmdir(dir);
	keyring_free(&keys);
	store_close(c.store);
	conf_free(&conf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_records", LOG_LEVEL_ERR);
	if (crypto_init() != 0 || mkdtemp(dir) == NULL)
		abort();
	conf_defaults(&conf);
	conf.test_mode = 1;
	c.conf = &conf;
	c.mail = ctx_mail_conf(&conf);
	/* ES256: the cheapest signatures, so that inputs that mint tokens stay fast. */
	if ((c.store = store_open(dir, 4, 1)) == NULL ||
	    keyring_create(c.store, dir, "ES256") < 0 ||
	    keyring_load(&keys, c.store, dir, conf.key_overlap) < 0)
		abort();
	c.keys = &keys;
	/* The purge rules of the modules, as main registers them: the purge judges records too. */
	if (link_purge_rules(c.store) < 0 || session_purge_rules(c.store) < 0 ||
	    lockout_purge_rules(c.store) < 0)
		abort();
	store_mem_mark_baseline(c.store);
	atexit(cleanup);
	return 0;
}

static int is_store_answer(int rc)
{
	return rc == STORE_FOUND || rc == STORE_NOTFOUND || rc == STORE_ERR;
}

/* A flow's result: an api_err (or, for some, a store_rc). */
static int is_flow_answer(int rc)
{
	return (rc >= ERR_NONE && rc < ERR_COUNT) || rc == STORE_ERR || rc == STORE_FATAL ||
	       rc == STORE_RETRY;
}

static void check_tokens(int rc, json_t *tokens)
{
	FUZZ_ASSERT(is_flow_answer(rc));
	FUZZ_ASSERT(rc != ERR_NONE || json_is_object(tokens));
	json_decref(tokens);
}

static void windows(const char *text)
{
	static const struct conf_rate rules[] = {{10, 3600}, {3, 30}, {1000000, 604800}, {1, 1}};
	json_t *rec = text ? json_loadb(text, strlen(text), 0, NULL) : NULL;
	time_t now = 1800000000;

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		json_t *next;

		rl_window_wait(rec, &rules[i], now);
		next = rl_window_add(rec, &rules[i], now);
		FUZZ_ASSERT(next == NULL || json_is_object(next));
		/* What rl_window_add wrote is well formed: once more fits when the limit allows. */
		if (next != NULL && rules[i].limit > 1 && rec == NULL)
			FUZZ_ASSERT(rl_window_wait(next, &rules[i], now) == 0);
		json_decref(next);
	}
	json_decref(rec);
}

struct rl_arg {
	unsigned wait;
};

static int ratelimit_fn(struct store_txn *t, void *argp)
{
	static const struct conf_rate rule = {3, 60};
	struct rl_arg *a = argp;

	return ratelimit_txn(t, &keys, &rule, 1, &a->wait, "fuzz", "subject", NULL);
}

static void client_flows(json_t **client, const char *presented)
{
	json_t *got = NULL, *list;
	unsigned wait = 0;
	int rc;

	rc = client_get(&c, "fuzzclient", &got);
	FUZZ_ASSERT(is_store_answer(rc));
	if (rc == STORE_FOUND) {
		client_hides_existence(got);
		client_has_permission(got, "direct");
		client_lists(got, "redirect_uris", "https://app.example/cb");
		user_signup_allows(got, ID_EMAIL);
		if (json_is_object(got))
			*client = json_incref(got);
		json_decref(got);
		got = NULL;
	}
	rc = client_check_secret(&c, "fuzzclient", presented, "192.0.2.1", &got, &wait);
	json_decref(got);
	list = client_list(&c);
	json_decref(list);
}

static void user_flows(void)
{
	json_t *user = NULL, *page;
	int rc = user_get(&c, ID_EMAIL, "user@example.com", &user);

	FUZZ_ASSERT(rc <= STORE_FOUND && (rc == STORE_FOUND) == (user != NULL));
	if (user != NULL) {
		json_t *roles = NULL;
		user_is_active(user);
		user_email(user);
		user_phone(user);
		if (org_member_roles(user, "org1", &roles) == 1)
			json_decref(roles);
		json_decref(user);
	}
	user = NULL;
	if (user_get(&c, ID_USER_ID, "u1", &user) == STORE_FOUND)
		json_decref(user);
	json_decref(user_list(&c));
	page = user_page(&c, NULL, 5);
	json_decref(page);
}

static void login_flows(json_t *client, const char *presented)
{
	struct login_opts none = {0};
	struct login_opts with_session = {.session_id = presented};
	unsigned retry = 0;
	json_t *tokens = NULL;
	int more = 0;
	int rc;

	{
		struct otp_auth_req r = {.client = client,
					 .idtype = ID_EMAIL,
					 .identifier = "user@example.com",
					 .passcode = presented,
					 .opts = none,
					 .ip = "192.0.2.1",
					 .retry_after = &retry};
		rc = otp_authenticate(&c, &r, "fuzzclient", &tokens);
		check_tokens(rc, tokens);
		tokens = NULL;
		r.opts = with_session;
		r.request_id = "rid";
		rc = otp_authenticate(&c, &r, "fuzzclient", &tokens);
		check_tokens(rc, tokens);
		tokens = NULL;
	}
	{
		struct link_view v;
		memset(&v, 0, sizeof(v));
		if (link_peek(&c, presented, &v) == 0)
			FUZZ_ASSERT(v.state >= LINK_VALID && v.state <= LINK_UNKNOWN);
		link_view_free(&v);
		memset(&v, 0, sizeof(v));
		if (link_open(&c, presented, &v) == 0)
			FUZZ_ASSERT(v.state >= LINK_VALID && v.state <= LINK_UNKNOWN);
		link_view_free(&v);
	}
	{
		struct link_auth_req r = {
		    .client = client, .code = presented, .opts = none, .retry_after = &retry};
		rc = link_authenticate(&c, &r, "fuzzclient", &tokens);
		check_tokens(rc, tokens);
		tokens = NULL;
	}
	{
		struct login_grant g;
		memset(&g, 0, sizeof(g));
		rc = login_reauth(&c, client, &with_session, "fuzzclient", &g);
		FUZZ_ASSERT(is_flow_answer(rc));
		if (rc == ERR_NONE) {
			tokens = token_response(&c, &g, &with_session);
			FUZZ_ASSERT(tokens == NULL || json_is_object(tokens));
			json_decref(tokens);
			tokens = NULL;
		}
		login_grant_free(&g);
	}
	json_decref(session_list(&c, "u1", NULL, NULL, 200, &more));
	json_decref(session_list(&c, "u1", "fuzzclient", "0123456789abcdef", 1, &more));
	rc = token_refresh(&c, client, presented, &tokens);
	check_tokens(rc, tokens);
	rc = token_revoke(&c, client, presented);
	rc = session_logout(&c, client, presented);
	rc = session_end_all(&c, "u1", NULL);
}

static void key_flows(void)
{
	struct keyring kr;

	memset(&kr, 0, sizeof(kr));
	/* Fails on an unusable record or succeeds; either way nothing leaks. */
	if (keyring_load(&kr, c.store, dir, conf.key_overlap) == 0)
		FUZZ_ASSERT(kr.signing != NULL && kr.npublished >= 1);
	keyring_free(&kr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *f[F_COUNT];
	size_t n = fuzz_fields(data, size, f, F_COUNT);
	const char *presented = f[F_PRESENTED] ? f[F_PRESENTED] : "000000";
	json_t *client = NULL;
	struct rl_arg rl = {0};

	store_mem_reset(c.store);
	for (int i = 0; i < F_PRESENTED; i++) {
		if (f[i] == NULL || f[i][0] == '\0')
			continue;
		if (i == F_KEYS)
			store_mem_put_text(c.store, TBL_KEYS, "fuzzkid", f[i]);
		else
			store_mem_set_default(c.store, field_table[i], f[i]);
	}

	windows(f[F_COUNTERS]);
	for (int i = 0; i < 2; i++) {
		int rc = store_run(c.store, ratelimit_fn, &rl);
		FUZZ_ASSERT(rc == 0 || rc == 1 || rc == STORE_ERR);
		FUZZ_ASSERT(rc != 1 || rl.wait >= 1);
	}
	client_flows(&client, presented);
	if (client == NULL)
		client = json_loads(plain_client, 0, NULL);
	user_flows();
	login_flows(client, presented);
	/* Without a key record of its own the input would only reload the same keys. */
	if (f[F_KEYS] != NULL && f[F_KEYS][0] != '\0')
		key_flows();
	/* Now, and once everything has expired: the purge reads every record the flows left. */
	for (int i = 0; i < 2; i++) {
		int purged = store_purge(c.store, time(NULL) + i * 400 * 86400);
		FUZZ_ASSERT(purged >= 0 || purged == STORE_ERR);
	}

	json_decref(client);
	fuzz_fields_free(f, n);
	return 0;
}
