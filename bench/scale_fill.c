/*
 * bench/scale_fill: give every user of a database a live session and a refresh token, as a
 * direct-channel passcode login does, in large transactions: bench/scale's way to a database
 * with a million live sessions in minutes instead of hours of HTTP logins. It links
 * src/libotlogin.a and calls the flows a login ends with (session_login_txn: the session, its
 * user index entry and the user's login record; token_refresh_create_txn: the refresh token),
 * so the records are the server's own.
 *
 *   scale_fill -c CONF --client CLIENT_ID [--batch N] [--sample K] [--sample-out FILE]
 *   scale_fill -c CONF --warm
 *
 * Walks the users in key order, BATCH (default 2000) logins per transaction. Writes K (default
 * 0) of the raw refresh tokens, spread evenly over the users, one a line, to FILE (bench/scale
 * refreshes them: a refresh of a random session among all of them). Prints one JSON object:
 * {"sessions": N, "seconds": S}. With --warm it only reads every table from end to end (as
 * store_count does), which brings them into the cache of the running environment: a server
 * that has run for a while has its cache full, a stack started for a benchmark does not. Not a
 * product tool: nothing in otlogin needs sessions made without a login.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "keyring.h"
#include "log.h"
#include "session.h"
#include "store.h"
#include "token.h"

struct fill {
	struct ctx *c;
	json_t *client;
	const char *aud;
	unsigned batch;
	size_t users, done, sample_every;
	FILE *sample;
	/* The next batch starts at the first user id after this one. */
	char *next;
};

struct batch {
	struct fill *f;
	json_t *users; /* the batch's user records, in key order */
	char *last;
};

static int collect_cb(const void *key, size_t klen, json_t *user, void *arg)
{
	struct batch *b = arg;

	if (b->f->next != NULL && klen == strlen(b->f->next) && memcmp(key, b->f->next, klen) == 0)
		return 0; /* the previous batch's last user */
	if (json_array_size(b->users) >= b->f->batch)
		return 1;
	json_array_append(b->users, user);
	free(b->last);
	b->last = strndup(key, klen);
	return b->last == NULL ? STORE_ERR : 0;
}

static int batch_txn(struct store_txn *t, void *arg)
{
	struct batch *b = arg;
	struct fill *f = b->f;
	size_t i;
	json_t *user;
	const struct login_opts opts = {0};
	int rc = 0;

	json_array_clear(b->users);
	free(b->last);
	b->last = NULL;
	rc = store_each(t, TBL_USERS, f->next, f->next ? strlen(f->next) : 0, collect_cb, b);
	if (rc < 0)
		return rc;
	json_array_foreach(b->users, i, user)
	{
		struct login_grant g;
		size_t n = f->done + i;

		rc = session_login_txn(t, f->c, user, f->client, "otp", "otp", NULL, &opts, &g);
		if (rc == ERR_NONE)
			rc = token_refresh_create_txn(t, f->c, &g, f->aud, NULL);
		if (rc == ERR_NONE && f->sample != NULL && f->sample_every > 0 &&
		    n % f->sample_every == 0)
			fprintf(f->sample, "%s\n", g.refresh_token);
		login_grant_free(&g);
		if (rc != ERR_NONE)
			return rc < 0 ? rc : STORE_ERR;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_txn(struct store_txn *t, void *arg)
{
	return store_count(t, TBL_USERS, arg);
}

/* Read every page of every table (a count at read-committed: no locks pile up). */
static int warm_txn(struct store_txn *t, void *arg)
{
	size_t n;

	(void)arg;
	for (int i = 0; i < TBL_COUNT; i++) {
		int rc = store_count(t, (enum store_table)i, &n);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: scale_fill -c CONF --client CLIENT_ID [--batch N] [--sample K] "
			"[--sample-out FILE]\n       scale_fill -c CONF --warm\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"client", required_argument, NULL, 'C'}, {"batch", required_argument, NULL, 'b'},
	    {"sample", required_argument, NULL, 's'}, {"sample-out", required_argument, NULL, 'o'},
	    {"warm", no_argument, NULL, 'w'},	      {NULL, 0, NULL, 0}};
	const char *conf_file = NULL, *client_id = NULL, *sample_out = NULL;
	struct conf conf;
	struct keyring keys;
	struct ctx c = {.conf = &conf, .keys = &keys};
	struct fill f = {.c = &c, .batch = 2000};
	struct batch b = {.f = &f};
	size_t sample = 0;
	char err[512];
	double t0;
	int opt, warm = 0;

	while ((opt = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			conf_file = optarg;
			break;
		case 'C':
			client_id = optarg;
			break;
		case 'b':
			f.batch = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			sample = strtoul(optarg, NULL, 10);
			break;
		case 'o':
			sample_out = optarg;
			break;
		case 'w':
			warm = 1;
			break;
		default:
			usage();
		}
	}
	if (conf_file == NULL || (client_id == NULL && !warm) || f.batch < 1)
		usage();
	log_init("scale_fill", LOG_LEVEL_WARN);
	if (crypto_init() < 0)
		fatal("libgcrypt could not be initialised");
	conf_defaults(&conf);
	if (conf_load(&conf, conf_file, err, sizeof(err)) < 0)
		fatal("configuration: %s", err);
	c.store = store_open(conf.db_dir, conf.db_cache_mb, 0);
	if (c.store == NULL || keyring_load(&keys, c.store, conf.db_dir, conf.key_overlap) < 0)
		fatal("cannot open the database %s", conf.db_dir);
	if (warm) {
		t0 = now_s();
		if (store_run(c.store, warm_txn, NULL) < 0)
			fatal("cannot read the tables");
		printf("{\"warmed\": true, \"seconds\": %.1f}\n", now_s() - t0);
		goto out;
	}
	if (session_purge_rules(c.store) < 0)
		fatal("purge rules");
	if (client_get(&c, client_id, &f.client) != STORE_FOUND)
		fatal("no client %s", client_id);
	f.aud = json_string_value(json_object_get(f.client, "client_id"));
	if (store_run(c.store, count_txn, &f.users) < 0)
		fatal("cannot count the users");
	if (sample > 0) {
		f.sample = fopen(sample_out ? sample_out : "/dev/stdout", "w");
		if (f.sample == NULL)
			fatal("cannot write %s", sample_out);
		f.sample_every = f.users / sample ? f.users / sample : 1;
	}
	b.users = json_array();
	t0 = now_s();
	for (;;) {
		int rc = store_run(c.store, batch_txn, &b);
		size_t n = json_array_size(b.users);

		if (rc < 0)
			fatal("a batch failed (%d) after %zu sessions", rc, f.done);
		if (n == 0)
			break;
		f.done += n;
		free(f.next);
		f.next = b.last;
		b.last = NULL;
	}
	if (f.sample != NULL)
		fclose(f.sample);
	printf("{\"sessions\": %zu, \"seconds\": %.1f}\n", f.done, now_s() - t0);
	json_decref(b.users);
	json_decref(f.client);
	free(f.next);
out:
	keyring_free(&keys);
	store_close(c.store);
	conf_free(&conf);
	return 0;
}
