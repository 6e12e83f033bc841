/*
 * growth: DESIGN security rule 16 on a real store. A flood of failed authenticates against
 * random identifiers, each from its own end-user address (passcodes, and magic-link codes
 * nobody issued), with every attempt limit on: each one writes window records, and after the
 * purge none of them is left. A second flood of the same size then fits in the pages the
 * first one freed, so the database files do not grow without bound either.
 *
 * The store lives in /dev/shm: 100 000 durable commits on a disk would take minutes, and what
 * is tested is what the records hold, not the disk. Not run under valgrind (Makefile.am):
 * test_otp covers the same code paths there.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "link.h"
#include "otp.h"
#include "user.h"

#define ATTEMPTS 100000

static int count_record(const void *k, size_t klen, json_t *val, void *arg)
{
	(*(long *)arg)++;
	return 0;
}

static int count_txn(struct store_txn *t, void *arg)
{
	static const enum store_table tables[] = {TBL_CODES,   TBL_COUNTERS, TBL_SESSIONS,
						  TBL_REFRESH, TBL_USERS,    TBL_USER_IDX};
	*(long *)arg = 0;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		int rc = store_each(t, tables[i], NULL, 0, count_record, arg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The records in every table an end user's requests can write to. */
static long records(void)
{
	long n = -1;
	check(store_run(c.store, count_txn, &n) == 0);
	return n;
}

/* The bytes of the table files (not the regions, nor the logs a checkpoint removes). */
static long long db_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long long total = 0;
	char path[320];
	struct stat st;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "__db.", 5) == 0 || strncmp(e->d_name, "log.", 4) == 0 ||
		    e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			total += (long long)st.st_blocks * 512;
	}
	closedir(d);
	return total;
}

/* ATTEMPTS failed authenticates, each against a random identifier from a random address. */
static int flood(json_t *client)
{
	char ident[64], ip[32], code[48];
	unsigned char rnd[12];
	int wrong = 0;

	for (int i = 0; i < ATTEMPTS; i++) {
		json_t *tokens = NULL;
		int rc;

		crypto_random(rnd, sizeof(rnd));
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", rnd[0], rnd[1], rnd[2]);
		if (i % 10 == 9) {
			struct link_auth_req r = {.client = client, .code = code, .ip = ip};
			snprintf(code, sizeof(code), "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[4],
				 rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
			rc = link_authenticate(&c, &r, "aud", &tokens);
		} else {
			struct otp_auth_req r = {.client = client,
						 .idtype = ID_EMAIL,
						 .identifier = ident,
						 .passcode = "123456",
						 .ip = ip};
			snprintf(ident, sizeof(ident), "%02x%02x%02x%02x%02x%02x@example.org",
				 rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9]);
			rc = otp_authenticate(&c, &r, "aud", &tokens);
		}
		json_decref(tokens);
		wrong += rc == ERR_BAD_CREDENTIALS || rc == ERR_RATE_LIMITED;
	}
	return wrong;
}

int main(void)
{
	json_t *spec, *client;
	long before, after;
	long long first, second;
	time_t later;

	if (fixture_open("/dev/shm", "growth", 8) < 0)
		return check_done();
	conf.client_attempts = (struct conf_rate){1000000, 3600};
	spec = json_pack("{s:s}", "name", "flood");
	client = fixture_client(spec);
	json_decref(spec);
	check(client != NULL);
	if (client == NULL)
		return check_done();

	before = records();
	check_msg(flood(client) == ATTEMPTS, "every attempt failed");
	after = records();
	check_msg(after - before >= ATTEMPTS, "%ld records written", after - before);
	first = db_bytes(fixture_dir);
	/* Past every window and the purge's grace: nothing the flood wrote is left. */
	later = time(NULL) + 3600 + 60 + STORE_PURGE_GRACE_S + 1;
	check(store_purge(c.store, later) >= ATTEMPTS);
	check_msg(records() == before, "%ld records left of %ld", records() - before,
		  after - before);

	/* A second flood reuses the freed pages: the files grow by less than a tenth. */
	check(flood(client) == ATTEMPTS);
	second = db_bytes(fixture_dir);
	printf("# %ld records written by %d attempts; table files %lld bytes after the first "
	       "flood, %lld after the second\n",
	       after - before, ATTEMPTS, first, second);
	check_msg(second < first + first / 10,
		  "%lld bytes after the first flood, %lld after the second", first, second);
	later = time(NULL) + 3600 + 60 + STORE_PURGE_GRACE_S + 1;
	check(store_purge(c.store, later) >= ATTEMPTS);
	check(records() == before);

	json_decref(client);
	fixture_close();
	return check_done();
}
