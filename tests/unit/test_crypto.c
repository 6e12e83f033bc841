/* Unit tests for crypto: random digits and tokens, SHA-256, HMAC, constant-time compare, wipe. */
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "check.h"
#include "crypto.h"

/* Parse hex into out (len bytes). */
static void unhex(const char *hex, unsigned char *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
}

static int is_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static void test_init(void)
{
	/* A second call must be a harmless no-op. */
	check(crypto_init() == 0);
	check(crypto_init() == 0);
}

/*
 * Security rule 1: codes are uniform. 100000 single digits: each digit is expected 10000 times
 * with a standard deviation of about 95, so a +-10% window (over 10 sigma) never flakes; it
 * catches gross bias (a stuck or skewed digit), not subtle bias, which the rejection sampling
 * in crypto_random_digits rules out by construction.
 */
static void test_digits_uniform(void)
{
	unsigned long count[10] = {0};
	char d[2];
	int ok = 1;

	for (int i = 0; i < 100000; i++) {
		if (crypto_random_digits(d, 1) != 0 || !is_digits(d, 1)) {
			ok = 0;
			break;
		}
		count[d[0] - '0']++;
	}
	check(ok);
	for (int i = 0; i < 10; i++)
		check_msg(count[i] >= 9000 && count[i] <= 11000, "digit %d seen %lu times", i,
			  count[i]);

	/* Each position of 18-digit codes is uniform too, not just the first. */
	{
		unsigned long pos[18][10] = {{0}};
		char code[19];
		int pos_ok = 1;

		for (int i = 0; i < 20000; i++) {
			crypto_random_digits(code, 18);
			for (int p = 0; p < 18; p++)
				pos[p][code[p] - '0']++;
		}
		for (int p = 0; p < 18; p++)
			for (int v = 0; v < 10; v++)
				if (pos[p][v] < 1600 || pos[p][v] > 2400)
					pos_ok = 0;
		check_msg(pos_ok, "per-position counts within 2000 +- 20%%");
	}
}

static void test_digits_format(void)
{
	char buf[32];
	int zero_lead = 0, all_ok = 1;

	/* Leading zeros are kept: about 10% of 6-digit codes start with 0. */
	for (int i = 0; i < 2000; i++) {
		memset(buf, 'x', sizeof(buf));
		if (crypto_random_digits(buf, 6) != 0 || !is_digits(buf, 6))
			all_ok = 0;
		if (buf[0] == '0')
			zero_lead++;
	}
	check(all_ok);
	check_msg(zero_lead > 50, "only %d of 2000 codes start with 0", zero_lead);

	/* Length bounds: 1..18 accepted, NUL written right after. */
	for (unsigned n = 1; n <= 18; n++) {
		memset(buf, 'x', sizeof(buf));
		check_msg(crypto_random_digits(buf, n) == 0 && is_digits(buf, n) &&
			      buf[n + 1] == 'x',
			  "ndigits %u", n);
	}
	memset(buf, 'x', sizeof(buf));
	check(crypto_random_digits(buf, 0) == -1 && buf[0] == 'x');
	check(crypto_random_digits(buf, 19) == -1 && buf[0] == 'x');
	check(crypto_random_digits(buf, 1000) == -1);

	/* Two 18-digit codes colliding would mean the RNG is broken. */
	{
		char a[19], b[19];
		crypto_random_digits(a, 18);
		crypto_random_digits(b, 18);
		check(strcmp(a, b) != 0);
	}
}

static void test_token(void)
{
	char *a = crypto_random_token(16), *b = crypto_random_token(16), *c;
	unsigned char *raw = NULL;
	size_t rawlen = 0;

	/* 16 bytes = 128 bits, 22 base64url characters. */
	check(a != NULL && strlen(a) == 22);
	check(b != NULL && strcmp(a, b) != 0);
	check(a != NULL && b64url_decode(a, strlen(a), &raw, &rawlen) == 0 && rawlen == 16);
	free(raw);
	c = crypto_random_token(32);
	check(c != NULL && strlen(c) == 43);
	crypto_free_str(a);
	crypto_free_str(b);
	crypto_free_str(c);
	c = crypto_random_token(0);
	check(c != NULL && c[0] == '\0');
	free(c);
	crypto_free_str(NULL);
}

static void test_sha256(void)
{
	unsigned char out[CRYPTO_HASH_LEN], want[CRYPTO_HASH_LEN];
	char hex[2 * CRYPTO_HASH_LEN + 1];

	crypto_sha256("abc", 3, out);
	crypto_hex(out, sizeof(out), hex);
	check(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
	crypto_sha256("", 0, out);
	unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want,
	      sizeof(want));
	check(memcmp(out, want, sizeof(out)) == 0);
}

/* RFC 4231 test cases 1, 2 (and 6 for a key longer than the block), HMAC-SHA-256. */
static void test_hmac_rfc4231(void)
{
	unsigned char key[131], out[CRYPTO_HASH_LEN], want[CRYPTO_HASH_LEN];
	crypto_hmac_t *h;

	memset(key, 0x0b, 20);
	unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want,
	      sizeof(want));
	check(crypto_hmac_once(key, 20, "Hi There", 8, out) == 0 &&
	      memcmp(out, want, sizeof(out)) == 0);

	unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want,
	      sizeof(want));
	check(crypto_hmac_once("Jefe", 4, "what do ya want for nothing?", 28, out) == 0 &&
	      memcmp(out, want, sizeof(out)) == 0);

	memset(key, 0xaa, 131);
	unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", want,
	      sizeof(want));
	h = crypto_hmac_open(key, 131);
	check(h != NULL);
	check(crypto_hmac(h, "Test Using Larger Than Block-Size Key - Hash Key First", 54, out) ==
		  0 &&
	      memcmp(out, want, sizeof(out)) == 0);
	crypto_hmac_close(h);
	crypto_hmac_close(NULL);
}

/* A reused context must give the one-shot result every time, also for split input. */
static void test_hmac_reuse(void)
{
	static const char key[] = "server key for tests";
	unsigned char once[CRYPTO_HASH_LEN], out[CRYPTO_HASH_LEN], other[CRYPTO_HASH_LEN];
	crypto_hmac_t *h = crypto_hmac_open(key, strlen(key));
	int ok = 1;

	check(h != NULL);
	if (h == NULL)
		return;
	for (int i = 0; i < 100; i++) {
		char msg[64];
		int n = snprintf(msg, sizeof(msg), "message number %d", i);
		crypto_hmac_once(key, strlen(key), msg, (size_t)n, once);
		if (crypto_hmac(h, msg, (size_t)n, out) != 0 || memcmp(out, once, sizeof(out)) != 0)
			ok = 0;
		/* The same message split into parts, with an empty part. */
		const void *parts[3] = {msg, "", msg + 5};
		size_t lens[3] = {5, 0, (size_t)n - 5};
		if (crypto_hmac_parts(h, 3, parts, lens, out) != 0 ||
		    memcmp(out, once, sizeof(out)) != 0)
			ok = 0;
	}
	check_msg(ok, "reused HMAC context matches one-shot HMAC");
	crypto_hmac(h, "a", 1, out);
	crypto_hmac(h, "b", 1, other);
	check(memcmp(out, other, sizeof(out)) != 0);
	check(crypto_hmac(NULL, "a", 1, out) == -1);
	crypto_hmac_close(h);

	/* An empty key is valid HMAC (it is padded with zeros). */
	check(crypto_hmac_once("", 0, "x", 1, out) == 0);
	check(crypto_hmac_once(NULL, 0, "x", 1, other) == 0 && memcmp(out, other, 32) == 0);
}

static void test_equal(void)
{
	unsigned char a[64], b[64];

	crypto_random(a, sizeof(a));
	memcpy(b, a, sizeof(b));
	check(crypto_equal(a, b, sizeof(a)) == 1);
	check(crypto_equal(a, b, 0) == 1);
	for (size_t i = 0; i < sizeof(a); i += 21) {
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (unsigned char)(1u << bit);
			check_msg(crypto_equal(a, b, sizeof(a)) == 0, "byte %zu bit %d", i, bit);
			b[i] ^= (unsigned char)(1u << bit);
		}
	}
	b[63] ^= 0x80;
	check(crypto_equal(a, b, sizeof(a)) == 0);
	check(crypto_equal(a, b, 63) == 1);

	check(crypto_str_equal("", "") == 1);
	check(crypto_str_equal("secret", "secret") == 1);
	check(crypto_str_equal("secret", "secreT") == 0);
	check(crypto_str_equal("secret", "secret2") == 0);
	check(crypto_str_equal("secret2", "secret") == 0);
	check(crypto_str_equal("", "x") == 0);
	check(crypto_str_equal("x", "") == 0);
	/* A shorter string that matches a longer one's prefix up to the other's NUL. */
	check(crypto_str_equal("ab", "ab\0c") == 1);
	check(crypto_str_equal("abc", "ab") == 0);
}

static void test_wipe_hex(void)
{
	unsigned char buf[40];
	char hex[9];
	char *s;
	int zero = 1;

	memset(buf, 0xa5, sizeof(buf));
	crypto_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != 0)
			zero = 0;
	check(zero);
	crypto_wipe(NULL, 10);
	crypto_wipe(buf, 0);
	s = strdup("secret");
	crypto_free_str(s);

	crypto_hex((const unsigned char *)"\x00\x9f\xa0\xff", 4, hex);
	check(strcmp(hex, "009fa0ff") == 0);
	crypto_hex((const unsigned char *)"", 0, hex);
	check(hex[0] == '\0');
}

int main(void)
{
	if (crypto_init() != 0) {
		printf("Bail out! crypto_init\n");
		return 1;
	}
	test_init();
	test_digits_uniform();
	test_digits_format();
	test_token();
	test_sha256();
	test_hmac_rfc4231();
	test_hmac_reuse();
	test_equal();
	test_wipe_hex();
	return check_done();
}
