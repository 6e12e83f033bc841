/* Unit tests for crypto: random digits and tokens, SHA-256, HMAC, constant-time compare, wipe. */
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

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
	int rng = -1;

	/* A second call must be a harmless no-op. */
	check(crypto_init() == 0);
	check(crypto_init() == 0);
	/* Random bytes come from the kernel's generator, not libgcrypt's slower pool. */
	check(gcry_control(GCRYCTL_GET_CURRENT_RNG_TYPE, &rng) == 0 && rng == GCRY_RNG_TYPE_SYSTEM);
}

/*
 * Security rule 1 (codes are uniform: no modulo bias), statistically, with Pearson's chi-square
 * against the uniform distribution. 10^6 codes of the default length (6 digits; test_conf
 * checks that 6 is the default [otp] length), drawn as 333334 calls for 18 digits, each three
 * codes: crypto_random_digits makes each digit alike from its own random byte whatever the
 * length, and one call costs about 9 us of libgcrypt's CSPRNG, so this takes 3 s instead of 9.
 * Statistics: the counts at each of the 18 output positions (the leading digit included) and
 * at each of the 6 code positions (df 9 each), all digits pooled (df 9), and the disjoint pairs
 * of adjacent digits (positions 0-1, 2-3, ...) pooled (df 99: digits are independent). Each
 * threshold is the chi-square quantile for p = 1e-8 (df 9: 55.45; df 99: 199.24), so the 26
 * statistics together fail a correct generator with a probability below 2.6e-7 < 1e-6.
 * "byte % 10" without the rejection (digits 0-5 at 26/256, 6-9 at 25/256) gives about 120
 * per output position, 366 per code position and 2200 pooled; rejecting at 251 instead of 250
 * (one value too many for digit 0) about 48, 140 and 860.
 */
#define CHI_DRAWS 333334
#define CHI_DRAW_LEN 18
#define CHI_CODE_LEN 6
#define CHI_DF9_MAX 55.45
#define CHI_DF99_MAX 199.24

static double chi_square(const unsigned long *count, unsigned bins, unsigned long n)
{
	double expect = (double)n / bins, x = 0;

	for (unsigned i = 0; i < bins; i++)
		x += ((double)count[i] - expect) * ((double)count[i] - expect) / expect;
	return x;
}

static void test_digits_chi_square(void)
{
	static unsigned long out_pos[CHI_DRAW_LEN][10], code_pos[CHI_CODE_LEN][10], pooled[10],
	    pairs[100];
	char draw[CHI_DRAW_LEN + 1];
	double x;
	int ok = 1;

	for (long i = 0; i < CHI_DRAWS; i++) {
		if (crypto_random_digits(draw, CHI_DRAW_LEN) != 0 ||
		    !is_digits(draw, CHI_DRAW_LEN)) {
			ok = 0;
			break;
		}
		for (int p = 0; p < CHI_DRAW_LEN; p++) {
			int d = draw[p] - '0';
			out_pos[p][d]++;
			code_pos[p % CHI_CODE_LEN][d]++;
			pooled[d]++;
			if (p % 2 == 1)
				pairs[(draw[p - 1] - '0') * 10 + d]++;
		}
	}
	check(ok);
	for (int p = 0; p < CHI_DRAW_LEN; p++) {
		x = chi_square(out_pos[p], 10, CHI_DRAWS);
		check_msg(x < CHI_DF9_MAX, "output position %d: chi-square %.1f (df 9)", p, x);
	}
	for (int p = 0; p < CHI_CODE_LEN; p++) {
		x = chi_square(code_pos[p], 10, (unsigned long)CHI_DRAWS * 3);
		check_msg(x < CHI_DF9_MAX, "code position %d: chi-square %.1f (df 9)", p, x);
	}
	x = chi_square(pooled, 10, (unsigned long)CHI_DRAWS * CHI_DRAW_LEN);
	check_msg(x < CHI_DF9_MAX, "all digits: chi-square %.1f (df 9)", x);
	x = chi_square(pairs, 100, (unsigned long)CHI_DRAWS * (CHI_DRAW_LEN / 2));
	check_msg(x < CHI_DF99_MAX, "digit pairs: chi-square %.1f (df 99)", x);
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
	test_digits_chi_square();
	test_digits_format();
	test_token();
	test_sha256();
	test_hmac_rfc4231();
	test_hmac_reuse();
	test_equal();
	test_wipe_hex();
	return check_done();
}
