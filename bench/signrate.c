/*
 * bench/signrate: how many of otlogin's own primitives one core does per second, with the
 * code the server runs (it links src/libotlogin.a). bench/run builds and runs it in the same
 * run as the HTTP load, so the login and refresh rates can be read against these numbers.
 *
 *   signrate [-t SECONDS] [-d DBDIR]
 *
 * Prints one JSON object: for each measurement {"ops": N, "secs": S, "per_sec": R, "us": U,
 * "cpu_us": C}: operations, wall seconds, operations per wall second, wall and CPU microseconds
 * per operation. On a shared machine the CPU figure is the steadier one.
 *   RS256, ES256, EdDSA   jwt_sign of an ID-token-sized claims set (as token_response does)
 *   HS256_sign            jwt_sign_hs256 (client access tokens, on the keyring's kept handle)
 *   HS256_verify          jwt_verify_hs256 of that token (every client-bearer request)
 *   HMAC_once             crypto_hmac_once over that token's signing input (a handle per call,
 *                         as jwt_sign_hs256 / jwt_verify_hs256 did before they took a handle)
 *   HMAC_reused           crypto_hmac on a reused handle over the same bytes (keyring_tag's way)
 *   commit                store_run putting one small record: one durable (fsync) commit,
 *                         in DBDIR (default: a new directory under $TMPDIR or /tmp)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto.h"
#include "jwk.h"
#include "jwt.h"
#include "log.h"
#include "store.h"

static double clock_s(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_s(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* Time budget per measurement; checked every `batch` operations. */
static double budget = 1.5;

struct result {
	long ops;
	double secs; /* wall */
	double cpu;  /* this process's CPU time */
};

static void print_result(const char *name, struct result r, int last)
{
	double rate = r.secs > 0 ? (double)r.ops / r.secs : 0;
	printf("  \"%s\": {\"ops\": %ld, \"secs\": %.3f, \"per_sec\": %.1f, \"us\": %.2f, "
	       "\"cpu_us\": %.2f}%s\n",
	       name, r.ops, r.secs, rate, r.ops ? r.secs * 1e6 / (double)r.ops : 0,
	       r.ops ? r.cpu * 1e6 / (double)r.ops : 0, last ? "" : ",");
}

/* Claims of the size and shape of an ID token (token_response). */
static json_t *sample_claims(void)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:[s], s:s, s:s, s:b}", "iss",
			 "http://127.0.0.1:8080/cis", "sub", "0123456789abcdef0123456789abcdef",
			 "aud", "0123456789abcdef0123456789abcdef", "iat", (json_int_t)1700000000,
			 "exp", (json_int_t)1700003600, "auth_time", (json_int_t)1700000000, "sid",
			 "0123456789abcdef0123456789abcdef", "amr", "otp", "jti",
			 "AbCdEfGhIjKlMnOpQrStUv", "email", "user-1@example.org", "email_verified",
			 1);
}

static struct result time_sign(const jwk_t *key, json_t *claims)
{
	struct result r = {0, 0, 0};
	double t0 = now_s(), c0 = cpu_s();

	do {
		for (int i = 0; i < 4; i++) {
			char *tok = jwt_sign(key, "JWT", claims);
			if (tok == NULL) {
				fprintf(stderr, "signrate: jwt_sign %s failed\n", jwk_alg(key));
				exit(1);
			}
			free(tok);
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	return r;
}

static struct result time_hs256_sign(crypto_hmac_t *k, json_t *claims)
{
	struct result r = {0, 0, 0};
	double t0 = now_s(), c0 = cpu_s();

	do {
		for (int i = 0; i < 256; i++) {
			char *tok = jwt_sign_hs256(k, "kid", "at+jwt", claims);
			if (tok == NULL) {
				fprintf(stderr, "signrate: jwt_sign_hs256 failed\n");
				exit(1);
			}
			free(tok);
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	return r;
}

static struct result time_hs256_verify(crypto_hmac_t *k, const char *tok)
{
	struct result r = {0, 0, 0};
	double t0 = now_s(), c0 = cpu_s();

	do {
		for (int i = 0; i < 256; i++) {
			json_t *claims = NULL;
			if (jwt_verify_hs256(tok, k, "at+jwt", &claims) != 1) {
				fprintf(stderr, "signrate: jwt_verify_hs256 failed\n");
				exit(1);
			}
			json_decref(claims);
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	return r;
}

static struct result time_hmac_reused(const unsigned char *k, const char *data)
{
	crypto_hmac_t *h = crypto_hmac_open(k, 32);
	unsigned char mac[CRYPTO_HASH_LEN];
	struct result r = {0, 0, 0};
	size_t len = strlen(data);
	double t0 = now_s(), c0 = cpu_s();

	if (h == NULL)
		exit(1);
	do {
		for (int i = 0; i < 1024; i++) {
			if (crypto_hmac(h, data, len, mac) < 0)
				exit(1);
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	crypto_hmac_close(h);
	return r;
}

static struct result time_hmac_once(const unsigned char *k, const char *data)
{
	unsigned char mac[CRYPTO_HASH_LEN];
	struct result r = {0, 0, 0};
	size_t len = strlen(data);
	double t0 = now_s(), c0 = cpu_s();

	do {
		for (int i = 0; i < 256; i++) {
			if (crypto_hmac_once(k, 32, data, len, mac) < 0)
				exit(1);
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	return r;
}

struct put_arg {
	long n;
	json_t *rec;
};

static int put_txn(struct store_txn *t, void *argp)
{
	struct put_arg *a = argp;
	char key[32];
	int n = snprintf(key, sizeof(key), "bench-%ld", a->n % 1000);
	return store_put(t, TBL_COUNTERS, key, (size_t)n, a->rec);
}

static struct result time_commit(struct store *s)
{
	struct put_arg a = {
	    0, json_pack("{s:I, s:I}", "failures", (json_int_t)0, "locked_until", (json_int_t)0)};
	struct result r = {0, 0, 0};
	double t0 = now_s(), c0 = cpu_s();

	do {
		for (int i = 0; i < 16; i++) {
			if (store_run(s, put_txn, &a) < 0) {
				fprintf(stderr, "signrate: commit failed\n");
				exit(1);
			}
			a.n++;
			r.ops++;
		}
		r.secs = now_s() - t0;
	} while (r.secs < budget);
	r.cpu = cpu_s() - c0;
	json_decref(a.rec);
	return r;
}

int main(int argc, char **argv)
{
	const char *algs[] = {JWK_RS256, JWK_ES256, JWK_EDDSA};
	char tmpl[4096] = "", *dbdir = NULL;
	unsigned char hk[32];
	struct store *s;
	json_t *claims;
	crypto_hmac_t *hmac;
	char *tok;
	int opt;

	while ((opt = getopt(argc, argv, "t:d:")) != -1) {
		if (opt == 't')
			budget = atof(optarg);
		else if (opt == 'd')
			dbdir = optarg;
		else {
			fprintf(stderr, "usage: signrate [-t SECONDS] [-d DBDIR]\n");
			return 2;
		}
	}
	if (budget <= 0)
		budget = 1.5;
	log_init("signrate", LOG_LEVEL_WARN);
	if (crypto_init() < 0)
		return 1;
	claims = sample_claims();
	crypto_random(hk, sizeof(hk));

	printf("{\n");
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		jwk_t *key = jwk_generate(algs[i], "bench");
		if (key == NULL) {
			fprintf(stderr, "signrate: cannot generate a %s key\n", algs[i]);
			return 1;
		}
		print_result(algs[i], time_sign(key, claims), 0);
		jwk_free(key);
	}
	if ((hmac = crypto_hmac_open(hk, 32)) == NULL)
		return 1;
	print_result("HS256_sign", time_hs256_sign(hmac, claims), 0);
	tok = jwt_sign_hs256(hmac, "kid", "at+jwt", claims);
	if (tok == NULL)
		return 1;
	print_result("HS256_verify", time_hs256_verify(hmac, tok), 0);
	crypto_hmac_close(hmac);
	/* The same bytes an HS256 verification MACs: the signing input. */
	snprintf(tmpl, sizeof(tmpl), "%.*s", (int)(strrchr(tok, '.') - tok), tok);
	print_result("HMAC_once", time_hmac_once(hk, tmpl), 0);
	print_result("HMAC_reused", time_hmac_reused(hk, tmpl), 0);
	free(tok);

	if (dbdir == NULL) {
		const char *base = getenv("TMPDIR");
		static char made[4096];
		snprintf(made, sizeof(made), "%s/otlogin-signrate-XXXXXX", base ? base : "/tmp");
		if (mkdtemp(made) == NULL) {
			fprintf(stderr, "signrate: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		dbdir = made;
	}
	if ((s = store_open(dbdir, 16, 1)) == NULL)
		return 1;
	print_result("commit", time_commit(s), 1);
	store_close(s);
	printf("}\n");
	json_decref(claims);
	return 0;
}
