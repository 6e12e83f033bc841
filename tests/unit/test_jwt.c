/*
 * Unit tests for jwk and jwt: RFC 7515 appendix A.1-A.3 and RFC 8037 A.4 vectors, round trips
 * for RS256/ES256/EdDSA/HS256, and the refusals security rule 10 asks for (alg "none", alg
 * confusion, unknown kid, ES256 signatures of any length but 64, private members in the JWKS).
 */
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>
#include <jansson.h>

#include "b64url.h"
#include "check.h"
#include "crypto.h"
#include "jwk.h"
#include "jwt.h"

/* RFC 7515 A.1-A.3 share this payload segment; A.1 has its own header. */
#define RFC_PAYLOAD                                                                                \
	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0" \
	"cn"                                                                                       \
	"VlfQ"

/* RFC 7515 A.1: HS256. */
#define A1_INPUT "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." RFC_PAYLOAD
#define A1_SIG "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define A1_KEY                                                                                     \
	"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"

/* RFC 7515 A.2: RS256, with the RSA key of A.2.1. */
#define A2_INPUT "eyJhbGciOiJSUzI1NiJ9." RFC_PAYLOAD
#define A2_SIG                                                                                     \
	"cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"    \
	"O8W2Fp5j"                                                                                 \
	"ujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"                                        \
	"nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb"                                               \
	"1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"                                          \
	"eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QO"                                            \
	"YEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
#define A2_N                                                                                       \
	"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"                    \
	"4qPCJrcS2mJPMEzP1Pt0Bm4"                                                                  \
	"d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"                 \
	"bSf63kpaSHSXndS5z5r"                                                                      \
	"exMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_"          \
	"I5IhlJH7aGhy"                                                                             \
	"xXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
#define A2_E "AQAB"
#define A2_D                                                                                       \
	"Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-"       \
	"7YwVol2NXO"                                                                               \
	"oAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-"                                               \
	"GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V5"                                        \
	"1gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_" \
	"jTj"                                                                                      \
	"3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ"
#define A2_P                                                                                       \
	"4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_" \
	"Py5P"                                                                                     \
	"JdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc"
#define A2_Q                                                                                       \
	"uQPEfgmVtjL0Uyyx88GZFF1fOunH3-"                                                           \
	"7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZ"                           \
	"D_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc"

/* RFC 7515 A.3: ES256, with the P-256 key of A.3.1. */
#define A3_INPUT "eyJhbGciOiJFUzI1NiJ9." RFC_PAYLOAD
#define A3_SIG                                                                                     \
	"DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
#define A3_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define A3_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define A3_D "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"

/* RFC 8037 A.1 and A.4: Ed25519 key and the signature of "Example of Ed25519 signing". */
#define ED_INPUT "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
#define ED_SIG                                                                                     \
	"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
#define ED_D "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
#define ED_X "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"

/* Decode a base64url test constant (which is known to be valid) into a new buffer. */
static unsigned char *unb64(const char *s, size_t *len)
{
	unsigned char *out = NULL;

	if (b64url_decode(s, strlen(s), &out, len) != 0) {
		printf("Bail out! bad test constant %s\n", s);
		exit(1);
	}
	return out;
}

static gcry_mpi_t mpi_b64(const char *s)
{
	size_t len;
	unsigned char *raw = unb64(s, &len);
	gcry_mpi_t m = NULL;

	gcry_mpi_scan(&m, GCRYMPI_FMT_USG, raw, len, NULL);
	free(raw);
	return m;
}

/* The storage text jwk_private_parse reads, for a private key S-expression built here. */
static char *storage_text(const char *kid, const char *alg, gcry_sexp_t priv)
{
	size_t size = gcry_sexp_sprint(priv, GCRYSEXP_FMT_CANON, NULL, 0), len;
	char *canon = malloc(size), *b64, *text;

	len = gcry_sexp_sprint(priv, GCRYSEXP_FMT_CANON, canon, size);
	b64 = b64url_encode(canon, len);
	text = malloc(strlen(b64) + strlen(kid) + strlen(alg) + 64);
	sprintf(text, "{\"kid\":\"%s\",\"alg\":\"%s\",\"sexp\":\"%s\"}", kid, alg, b64);
	free(canon);
	free(b64);
	return text;
}

/* A key from a private key S-expression through the storage format, the way keys are loaded. */
static jwk_t *key_from_sexp(const char *kid, const char *alg, gcry_sexp_t priv)
{
	char *text = storage_text(kid, alg, priv);
	jwk_t *key = jwk_private_parse(text);

	free(text);
	return key;
}

/*
 * The RFC 7515 A.2.1 RSA key (with d off by two when bad_d is set). libgcrypt wants p < q and
 * u = p^-1 mod q.
 */
static jwk_t *rfc_rsa_key(const char *kid, int bad_d)
{
	gcry_mpi_t n = mpi_b64(A2_N), e = mpi_b64(A2_E), d = mpi_b64(A2_D), p = mpi_b64(A2_P),
		   q = mpi_b64(A2_Q), u = gcry_mpi_new(0);
	gcry_sexp_t s = NULL;
	jwk_t *key;

	if (bad_d)
		gcry_mpi_add_ui(d, d, 2);
	if (gcry_mpi_cmp(p, q) > 0)
		gcry_mpi_swap(p, q);
	gcry_mpi_invm(u, p, q);
	gcry_sexp_build(&s, NULL, "(private-key (rsa (n %m)(e %m)(d %m)(p %m)(q %m)(u %m)))", n, e,
			d, p, q, u);
	key = key_from_sexp(kid, JWK_RS256, s);
	gcry_sexp_release(s);
	gcry_mpi_release(n);
	gcry_mpi_release(e);
	gcry_mpi_release(d);
	gcry_mpi_release(p);
	gcry_mpi_release(q);
	gcry_mpi_release(u);
	return key;
}

/* The RFC 7515 A.3.1 P-256 key (q = 0x04 || X || Y); a wrong d when bad_d is set. */
static jwk_t *rfc_ec_key(const char *kid, int bad_d)
{
	unsigned char q[65], *x, *y;
	size_t xl, yl;
	gcry_mpi_t d = mpi_b64(bad_d ? A2_E : A3_D);
	gcry_sexp_t s = NULL;
	jwk_t *key;

	x = unb64(A3_X, &xl);
	y = unb64(A3_Y, &yl);
	q[0] = 0x04;
	memcpy(q + 1, x, 32);
	memcpy(q + 33, y, 32);
	gcry_sexp_build(&s, NULL, "(private-key (ecc (curve \"NIST P-256\")(q %b)(d %m)))", 65, q,
			d);
	key = key_from_sexp(kid, JWK_ES256, s);
	gcry_sexp_release(s);
	gcry_mpi_release(d);
	free(x);
	free(y);
	return key;
}

enum ed_variant { ED_PLAIN, ED_NOFLAG, ED_PREFIXED, ED_WRONG_D };

/*
 * The RFC 8037 A.1 Ed25519 key, as given or varied: without the eddsa flag, with q in
 * libgcrypt's 0x40-prefixed form, or with a d that does not belong to q.
 */
static jwk_t *rfc_ed_key(const char *kid, enum ed_variant v)
{
	size_t dl, xl;
	unsigned char *d = unb64(ED_D, &dl), *x = unb64(ED_X, &xl), q[33];
	gcry_sexp_t s = NULL;
	jwk_t *key;

	q[0] = 0x40;
	memcpy(q + 1, x, 32);
	if (v == ED_WRONG_D)
		d[5] ^= 1;
	gcry_sexp_build(&s, NULL,
			v == ED_NOFLAG
			    ? "(private-key (ecc (curve Ed25519)(q %b)(d %b)))"
			    : "(private-key (ecc (curve Ed25519)(flags eddsa)(q %b)(d %b)))",
			v == ED_PREFIXED ? 33 : 32, v == ED_PREFIXED ? q : x, (int)dl, d);
	key = key_from_sexp(kid, JWK_EDDSA, s);
	gcry_sexp_release(s);
	free(d);
	free(x);
	return key;
}

/* 1 when member name of obj is a string equal to want. */
static int member_is(json_t *obj, const char *name, const char *want)
{
	json_t *v = json_object_get(obj, name);
	return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

/* Length of the base64url-decoded string member name of obj, or (size_t)-1. */
static size_t member_len(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	unsigned char *raw = NULL;
	size_t len = 0;

	if (!json_is_string(v) ||
	    b64url_decode(json_string_value(v), json_string_length(v), &raw, &len) != 0)
		return (size_t)-1;
	free(raw);
	return len;
}

/* A token of our own making from a header text, a payload text and a signature. */
static char *make_token(const char *header, const char *payload, const unsigned char *sig,
			size_t siglen)
{
	char *h = b64url_encode(header, strlen(header)),
	     *p = b64url_encode(payload, strlen(payload));
	char *s = b64url_encode(sig, siglen);
	char *t = malloc(strlen(h) + strlen(p) + strlen(s) + 3);

	sprintf(t, "%s.%s.%s", h, p, s);
	free(h);
	free(p);
	free(s);
	return t;
}

/* A token with header and payload texts, signed by key with jwt_sign_input. */
static char *signed_token(const jwk_t *key, const char *header, const char *payload)
{
	char *h = b64url_encode(header, strlen(header)),
	     *p = b64url_encode(payload, strlen(payload));
	char *input = malloc(strlen(h) + strlen(p) + 2), *t = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;

	sprintf(input, "%s.%s", h, p);
	if (jwt_sign_input(key, input, strlen(input), &sig, &siglen) == 0) {
		char *s = b64url_encode(sig, siglen);
		t = malloc(strlen(input) + strlen(s) + 2);
		sprintf(t, "%s.%s", input, s);
		free(s);
	}
	free(input);
	free(sig);
	free(h);
	free(p);
	return t;
}

/* An HS256 token over header and payload texts. */
static char *hs256_token(const void *key, size_t keylen, const char *header, const char *payload)
{
	char *h = b64url_encode(header, strlen(header)),
	     *p = b64url_encode(payload, strlen(payload));
	char *input = malloc(strlen(h) + strlen(p) + 2), *t;
	unsigned char mac[CRYPTO_HASH_LEN];

	sprintf(input, "%s.%s", h, p);
	crypto_hmac_once(key, keylen, input, strlen(input), mac);
	t = make_token(header, payload, mac, sizeof(mac));
	free(input);
	free(h);
	free(p);
	return t;
}

/* jwt_verify result for token against one key, dropping claims. */
static int verify1(const char *token, jwk_t *key, const char *typ)
{
	json_t *claims = NULL;
	jwk_t *keys[1] = {key};
	int rc = jwt_verify(token, keys, 1, typ, &claims);

	json_decref(claims);
	return rc;
}

static int verify_hs(const char *token, const void *key, size_t keylen, const char *typ)
{
	json_t *claims = NULL;
	crypto_hmac_t *mac = crypto_hmac_open(key, keylen);
	int rc = jwt_verify_hs256(token, mac, typ, &claims);

	crypto_hmac_close(mac);
	json_decref(claims);
	return rc;
}

/* HS256 signing under a raw key, as a test has it. */
static char *sign_hs(const void *key, size_t keylen, const char *kid, const char *typ,
		     json_t *claims)
{
	crypto_hmac_t *mac = crypto_hmac_open(key, keylen);
	char *token = jwt_sign_hs256(mac, kid, typ, claims);

	crypto_hmac_close(mac);
	return token;
}

/* The decoded header segment of token as a new string. */
static char *header_text(const char *token)
{
	const char *dot = strchr(token, '.');
	unsigned char *raw = NULL;
	size_t len;

	if (dot == NULL || b64url_decode(token, (size_t)(dot - token), &raw, &len) != 0)
		return NULL;
	return (char *)raw;
}

static void test_rfc_a1(void)
{
	size_t keylen, siglen;
	unsigned char *key = unb64(A1_KEY, &keylen), *want = unb64(A1_SIG, &siglen);
	unsigned char mac[CRYPTO_HASH_LEN];
	json_t *claims = NULL;
	crypto_hmac_t *mac_handle;
	const char *token = A1_INPUT "." A1_SIG;

	check(crypto_hmac_once(key, keylen, A1_INPUT, strlen(A1_INPUT), mac) == 0);
	check(siglen == 32 && memcmp(mac, want, 32) == 0);

	mac_handle = crypto_hmac_open(key, keylen);
	check(jwt_verify_hs256(token, mac_handle, NULL, &claims) == 1);
	crypto_hmac_close(mac_handle);
	check(member_is(claims, "iss", "joe"));
	check(json_integer_value(json_object_get(claims, "exp")) == 1300819380);
	check(json_is_true(json_object_get(claims, "http://example.com/is_root")));
	json_decref(claims);
	check(verify_hs(token, key, keylen, "JWT") == 1);
	check(verify_hs(token, key, keylen, "at+jwt") == 0);
	check(verify_hs(token, key, keylen - 1, NULL) == 0);
	/* The RFC token through the asymmetric verifier: no kid, HS256; refused. */
	{
		jwk_t *ek = rfc_ec_key("k", 0);
		check(verify1(token, ek, NULL) == 0);
		jwk_free(ek);
	}
	free(key);
	free(want);
}

static void test_rfc_a2(void)
{
	jwk_t *key = rfc_rsa_key("2010-12-29", 0);
	unsigned char *sig = NULL, *want;
	size_t siglen = 0, wantlen;
	json_t *pub;

	check(key != NULL);
	if (key == NULL)
		return;
	want = unb64(A2_SIG, &wantlen);
	/* PKCS#1 v1.5 is deterministic: signing the RFC's input gives the RFC's signature. */
	check(jwt_sign_input(key, A2_INPUT, strlen(A2_INPUT), &sig, &siglen) == 0);
	check(siglen == 256 && wantlen == 256 && memcmp(sig, want, 256) == 0);
	check(jwt_verify_input(key, A2_INPUT, strlen(A2_INPUT), want, wantlen) == 1);
	/* One bit off, one byte short, a leading zero byte added: all invalid. */
	want[100] ^= 1;
	check(jwt_verify_input(key, A2_INPUT, strlen(A2_INPUT), want, wantlen) == 0);
	want[100] ^= 1;
	check(jwt_verify_input(key, A2_INPUT, strlen(A2_INPUT), want + 1, wantlen - 1) == 0);
	{
		unsigned char longer[257] = {0};
		memcpy(longer + 1, want, 256);
		check(jwt_verify_input(key, A2_INPUT, strlen(A2_INPUT), longer, 257) == 0);
	}
	/*
	 * The RFC token carries no kid, and kid must name one of our keys: refused by jwt_verify
	 * even though its signature is good (checked above).
	 */
	check(verify1(A2_INPUT "." A2_SIG, key, NULL) == 0);

	pub = jwk_public_json(key);
	check(member_is(pub, "kty", "RSA") && member_is(pub, "n", A2_N) &&
	      member_is(pub, "e", "AQAB") && member_is(pub, "kid", "2010-12-29"));
	json_decref(pub);

	/* Our own RS256 token under the RFC key, with a kid, verifies. */
	{
		json_t *c = json_pack("{s:s}", "sub", "x");
		char *t = jwt_sign(key, "JWT", c);
		check(t != NULL && verify1(t, key, "JWT") == 1);
		free(t);
		json_decref(c);
	}
	free(sig);
	free(want);
	jwk_free(key);

	/* A private exponent that does not match the public key is refused at load time. */
	key = rfc_rsa_key("bad", 1);
	check(key == NULL);
	jwk_free(key);
}

static void test_rfc_a3(void)
{
	jwk_t *key = rfc_ec_key("e9bc097a-ce51-4036-9562-d2ade882db0d", 0);
	unsigned char *want;
	size_t wantlen;
	json_t *pub;

	check(key != NULL);
	if (key == NULL)
		return;
	want = unb64(A3_SIG, &wantlen);
	check(wantlen == 64);
	check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), want, wantlen) == 1);
	want[63] ^= 1;
	check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), want, wantlen) == 0);
	want[63] ^= 1;
	check(jwt_verify_input(key, A2_INPUT, strlen(A2_INPUT), want, wantlen) == 0);
	/* Not 64 bytes: refused before any arithmetic, whatever the content. */
	check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), want, 63) == 0);
	{
		unsigned char longer[66] = {0};
		memcpy(longer + 1, want, 32);
		memcpy(longer + 34, want + 32, 32);
		check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), longer, 66) == 0);
		memcpy(longer + 1, want, 64);
		check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), longer, 65) == 0);
	}
	/* All-zero R and S are out of range. */
	{
		unsigned char zero[64] = {0};
		check(jwt_verify_input(key, A3_INPUT, strlen(A3_INPUT), zero, 64) == 0);
	}
	check(verify1(A3_INPUT "." A3_SIG, key, NULL) == 0); /* no kid */

	pub = jwk_public_json(key);
	check(member_is(pub, "kty", "EC") && member_is(pub, "crv", "P-256") &&
	      member_is(pub, "x", A3_X) && member_is(pub, "y", A3_Y));
	json_decref(pub);
	free(want);
	jwk_free(key);

	/* A d that does not belong to the public point is refused at load time. */
	key = rfc_ec_key("bad", 1);
	check(key == NULL);
	jwk_free(key);
}

static void test_rfc8037(void)
{
	jwk_t *key = rfc_ed_key("ed", ED_PLAIN);
	unsigned char *sig = NULL, *want;
	size_t siglen = 0, wantlen;
	json_t *pub;

	check(key != NULL);
	if (key == NULL)
		return;
	want = unb64(ED_SIG, &wantlen);
	/* Ed25519 is deterministic: the RFC's signature exactly. */
	check(jwt_sign_input(key, ED_INPUT, strlen(ED_INPUT), &sig, &siglen) == 0);
	check(siglen == 64 && wantlen == 64 && memcmp(sig, want, 64) == 0);
	check(jwt_verify_input(key, ED_INPUT, strlen(ED_INPUT), want, wantlen) == 1);
	want[10] ^= 0x20;
	check(jwt_verify_input(key, ED_INPUT, strlen(ED_INPUT), want, wantlen) == 0);
	check(jwt_verify_input(key, ED_INPUT, strlen(ED_INPUT), sig, 63) == 0);
	pub = jwk_public_json(key);
	check(member_is(pub, "kty", "OKP") && member_is(pub, "crv", "Ed25519") &&
	      member_is(pub, "x", ED_X) && json_object_get(pub, "y") == NULL);
	json_decref(pub);
	free(sig);
	free(want);
	jwk_free(key);

	/* Without the eddsa flag libgcrypt would treat it as ECDSA: refused. */
	key = rfc_ed_key("ed", ED_NOFLAG);
	check(key == NULL);
	jwk_free(key);
	/* A d that does not belong to q: refused. */
	key = rfc_ed_key("ed", ED_WRONG_D);
	check(key == NULL);
	jwk_free(key);
	/*
	 * With the pairwise test deferred (CGI), that key loads, but nothing is signed with it,
	 * at the first attempt or any later one; its public key still verifies real signatures.
	 */
	jwk_defer_pairwise_test(1);
	key = rfc_ed_key("ed", ED_WRONG_D);
	check(key != NULL);
	if (key != NULL) {
		json_t *c = json_pack("{s:s}", "sub", "u");
		sig = NULL;
		check(jwt_sign_input(key, ED_INPUT, strlen(ED_INPUT), &sig, &siglen) != 0 &&
		      sig == NULL);
		check(jwt_sign_input(key, ED_INPUT, strlen(ED_INPUT), &sig, &siglen) != 0 &&
		      sig == NULL);
		check(jwt_sign(key, "JWT", c) == NULL);
		check(jwk_private_sexp(key) == NULL);
		want = unb64(ED_SIG, &wantlen);
		check(jwt_verify_input(key, ED_INPUT, strlen(ED_INPUT), want, wantlen) == 1);
		free(want);
		json_decref(c);
	}
	jwk_free(key);
	/* ...and a sound key signs as before: the RFC's signature. */
	key = rfc_ed_key("ed", ED_PLAIN);
	check(key != NULL);
	if (key != NULL) {
		want = unb64(ED_SIG, &wantlen);
		sig = NULL;
		check(jwt_sign_input(key, ED_INPUT, strlen(ED_INPUT), &sig, &siglen) == 0 &&
		      siglen == 64 && memcmp(sig, want, 64) == 0);
		free(sig);
		free(want);
	}
	jwk_free(key);
	jwk_defer_pairwise_test(0);
	/* Back to the default: refused at load again. */
	key = rfc_ed_key("ed", ED_WRONG_D);
	check(key == NULL);
	jwk_free(key);
	/* q with libgcrypt's 0x40 prefix: same JWK x, same signature. */
	key = rfc_ed_key("ed", ED_PREFIXED);
	check(key != NULL);
	if (key != NULL) {
		want = unb64(ED_SIG, &wantlen);
		pub = jwk_public_json(key);
		check(member_is(pub, "x", ED_X));
		check(jwt_sign_input(key, ED_INPUT, strlen(ED_INPUT), &sig, &siglen) == 0 &&
		      siglen == 64 && memcmp(sig, want, 64) == 0);
		check(jwt_verify_input(key, ED_INPUT, strlen(ED_INPUT), want, wantlen) == 1);
		json_decref(pub);
		free(sig);
		free(want);
		jwk_free(key);
	}
}

static jwk_t *rsa, *ec, *ed, *ec2;

static void test_generate(void)
{
	rsa = jwk_generate(JWK_RS256, "rsa-1");
	ec = jwk_generate(JWK_ES256, "ec-1");
	ed = jwk_generate(JWK_EDDSA, "ed-1");
	ec2 = jwk_generate(JWK_ES256, "ec-2");
	check(rsa != NULL && ec != NULL && ed != NULL && ec2 != NULL);
	if (!rsa || !ec || !ed || !ec2) {
		printf("Bail out! key generation\n");
		exit(1);
	}
	check(strcmp(jwk_alg(rsa), "RS256") == 0 && strcmp(jwk_kid(rsa), "rsa-1") == 0);
	check(strcmp(jwk_alg(ec), "ES256") == 0 && strcmp(jwk_alg(ed), "EdDSA") == 0);
	check(gcry_pk_get_nbits(jwk_public_sexp(rsa)) == 2048);
	/* Private keys live in libgcrypt's secure memory. */
	check(gcry_is_secure(jwk_private_sexp(rsa)) && gcry_is_secure(jwk_private_sexp(ec)) &&
	      gcry_is_secure(jwk_private_sexp(ed)));

	check(jwk_generate("none", "x") == NULL);
	check(jwk_generate("HS256", "x") == NULL);
	check(jwk_generate("rs256", "x") == NULL);
	check(jwk_generate(NULL, "x") == NULL);
	check(jwk_generate(JWK_ES256, NULL) == NULL);
	check(jwk_generate(JWK_ES256, "") == NULL);
}

/* Security rule 10: the JWKS never has private members, and public members are well formed. */
static void test_public_json(void)
{
	static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k", "sexp"};
	jwk_t *keys[3] = {rsa, ec, ed};

	for (int i = 0; i < 3; i++) {
		json_t *pub = jwk_public_json(keys[i]);
		int clean = 1;

		check(pub != NULL);
		for (size_t j = 0; j < sizeof(priv) / sizeof(priv[0]); j++)
			if (json_object_get(pub, priv[j]) != NULL)
				clean = 0;
		check_msg(clean, "key %d has a private member", i);
		check(member_is(pub, "kid", jwk_kid(keys[i])) && member_is(pub, "use", "sig") &&
		      member_is(pub, "alg", jwk_alg(keys[i])));
		if (keys[i] == rsa) {
			json_t *n = json_object_get(pub, "n");
			unsigned char *raw = NULL;
			size_t len = 0;
			check(member_is(pub, "kty", "RSA") && member_is(pub, "e", "AQAB"));
			check(json_object_size(pub) == 6);
			/* 256 bytes, no leading zero byte. */
			check(b64url_decode(json_string_value(n), json_string_length(n), &raw,
					    &len) == 0 &&
			      len == 256 && raw[0] != 0);
			free(raw);
		} else if (keys[i] == ec) {
			check(member_is(pub, "kty", "EC") && member_is(pub, "crv", "P-256"));
			check(member_len(pub, "x") == 32 && member_len(pub, "y") == 32);
			check(json_object_size(pub) == 7);
		} else {
			check(member_is(pub, "kty", "OKP") && member_is(pub, "crv", "Ed25519"));
			check(member_len(pub, "x") == 32);
			check(json_object_size(pub) == 6);
		}
		json_decref(pub);
	}
	check(jwk_public_json(NULL) == NULL);
}

/* Storage round trip: the parsed key signs what the original verifies and vice versa. */
static void test_private_roundtrip(void)
{
	jwk_t *keys[3] = {rsa, ec, ed};

	for (int i = 0; i < 3; i++) {
		char *text = jwk_private_serialize(keys[i]), *t1, *t2;
		jwk_t *back = text ? jwk_private_parse(text) : NULL;
		json_t *c = json_pack("{s:s,s:i}", "sub", "user", "i", i), *p1, *p2;
		jwk_t *orig[1] = {keys[i]}, *parsed[1] = {back};
		json_t *got = NULL;

		check(text != NULL && back != NULL);
		if (back == NULL) {
			crypto_free_str(text);
			json_decref(c);
			continue;
		}
		check(strcmp(jwk_kid(back), jwk_kid(keys[i])) == 0 &&
		      strcmp(jwk_alg(back), jwk_alg(keys[i])) == 0);
		check(gcry_is_secure(jwk_private_sexp(back)));
		p1 = jwk_public_json(keys[i]);
		p2 = jwk_public_json(back);
		check(json_equal(p1, p2));
		t1 = jwt_sign(back, "JWT", c);
		t2 = jwt_sign(keys[i], "JWT", c);
		check(jwt_verify(t1, orig, 1, "JWT", &got) == 1 && json_equal(got, c));
		json_decref(got);
		got = NULL;
		check(jwt_verify(t2, parsed, 1, "JWT", &got) == 1 && json_equal(got, c));
		json_decref(got);
		/* The storage text is the documented shape. */
		{
			json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
			check(json_object_size(j) == 3 && member_is(j, "kid", jwk_kid(keys[i])) &&
			      member_is(j, "alg", jwk_alg(keys[i])) &&
			      json_is_string(json_object_get(j, "sexp")));
			json_decref(j);
		}
		json_decref(p1);
		json_decref(p2);
		free(t1);
		free(t2);
		json_decref(c);
		crypto_free_str(text);
		jwk_free(back);
	}
	check(jwk_private_serialize(NULL) == NULL);
}

/* Storage texts that must not load. */
static void test_private_parse_rejects(void)
{
	char *rtext = jwk_private_serialize(rsa), *etext = jwk_private_serialize(ec);
	json_t *r = json_loads(rtext, 0, NULL), *e = json_loads(etext, 0, NULL);
	const char *rsexp = json_string_value(json_object_get(r, "sexp"));
	const char *esexp = json_string_value(json_object_get(e, "sexp"));
	char buf[8192];

	check(jwk_private_parse(NULL) == NULL);
	check(jwk_private_parse("") == NULL);
	check(jwk_private_parse("[]") == NULL);
	check(jwk_private_parse("{\"kid\":\"a\",\"alg\":\"ES256\"}") == NULL);
	/* The alg must match the key's type: an RSA key labelled ES256 or EdDSA, and back. */
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"ES256\",\"sexp\":\"%s\"}", rsexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"EdDSA\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"RS256\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"HS256\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"none\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	/* Empty kid, non-string kid, duplicate member. */
	snprintf(buf, sizeof(buf), "{\"kid\":\"\",\"alg\":\"ES256\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":1,\"alg\":\"ES256\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf),
		 "{\"kid\":\"a\",\"kid\":\"b\",\"alg\":\"ES256\",\"sexp\":\"%s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	/* The sexp must be strict base64url of a canonical S-expression. */
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"ES256\",\"sexp\":\"%s=\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"ES256\",\"sexp\":\"%.40s\"}", esexp);
	check(jwk_private_parse(buf) == NULL);
	{
		/* The same key in advanced (not canonical) form. */
		gcry_sexp_t s = jwk_private_sexp(ec);
		size_t size = gcry_sexp_sprint(s, GCRYSEXP_FMT_ADVANCED, NULL, 0);
		char *adv = malloc(size), *b64;
		size_t len = gcry_sexp_sprint(s, GCRYSEXP_FMT_ADVANCED, adv, size);
		b64 = b64url_encode(adv, len);
		snprintf(buf, sizeof(buf), "{\"kid\":\"a\",\"alg\":\"ES256\",\"sexp\":\"%s\"}",
			 b64);
		check(jwk_private_parse(buf) == NULL);
		free(adv);
		free(b64);
	}
	/* A public key is not a private key. */
	{
		char *text = storage_text("a", JWK_ES256, jwk_public_sexp(ec));
		check(jwk_private_parse(text) == NULL);
		free(text);
	}
	/* Too small an RSA key (rule 10: at least 2048 bits). */
	{
		gcry_sexp_t parms = NULL, pair = NULL, priv;
		char *text;
		jwk_t *k;
		gcry_sexp_new(&parms, "(genkey (rsa (nbits 4:1024)))", 0, 1);
		gcry_pk_genkey(&pair, parms);
		priv = gcry_sexp_find_token(pair, "private-key", 0);
		text = storage_text("small", JWK_RS256, priv);
		check((k = jwk_private_parse(text)) == NULL);
		jwk_free(k);
		free(text);
		gcry_sexp_release(priv);
		gcry_sexp_release(pair);
		gcry_sexp_release(parms);
	}
	/* A P-384 key labelled ES256. */
	{
		gcry_sexp_t parms = NULL, pair = NULL, priv;
		char *text;
		jwk_t *k;
		gcry_sexp_new(&parms, "(genkey (ecc (curve \"NIST P-384\")))", 0, 1);
		gcry_pk_genkey(&pair, parms);
		priv = gcry_sexp_find_token(pair, "private-key", 0);
		text = storage_text("p384", JWK_ES256, priv);
		check((k = jwk_private_parse(text)) == NULL);
		jwk_free(k);
		free(text);
		gcry_sexp_release(priv);
		gcry_sexp_release(pair);
		gcry_sexp_release(parms);
	}
	json_decref(r);
	json_decref(e);
	crypto_free_str(rtext);
	crypto_free_str(etext);
}

static void test_roundtrips(void)
{
	jwk_t *all[4] = {ec2, rsa, ec, ed};

	for (int i = 1; i < 4; i++) {
		json_t *c = json_pack("{s:s,s:i,s:s}", "sub", "user-1", "exp", 2000000000, "uni",
				      "\xc3\xa9t\xc3\xa9");
		char *t = jwt_sign(all[i], "JWT", c), *h;
		json_t *got = NULL;
		char want[128];

		check(t != NULL);
		if (t == NULL) {
			json_decref(c);
			continue;
		}
		/* Header members in the order alg, typ, kid, compact. */
		h = header_text(t);
		snprintf(want, sizeof(want), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
			 jwk_alg(all[i]), jwk_kid(all[i]));
		check_msg(h != NULL && strcmp(h, want) == 0, "header %s", h ? h : "NULL");
		free(h);
		/* Found among several keys by kid; claims come back equal. */
		check(jwt_verify(t, all, 4, "JWT", &got) == 1 && json_equal(got, c));
		json_decref(got);
		check(verify1(t, all[i], NULL) == 1);
		check(verify1(t, all[i], "at+jwt") == 0);
		/* The right kid missing from the list. */
		check(jwt_verify(t, all, (size_t)i, "JWT", &got) == 0);
		check(jwt_verify(t, all, 0, "JWT", &got) == 0);
		free(t);
		json_decref(c);
	}

	/* No typ: the header has none, and a typ-requiring verifier refuses. */
	{
		json_t *c = json_pack("{s:s}", "sub", "u");
		char *t = jwt_sign(ec, NULL, c), *h = header_text(t);
		check(h != NULL && strcmp(h, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}") == 0);
		check(verify1(t, ec, NULL) == 1);
		check(verify1(t, ec, "JWT") == 0);
		free(h);
		free(t);
		/* Claims must be an object. */
		json_decref(c);
		c = json_pack("[s]", "x");
		check(jwt_sign(ec, "JWT", c) == NULL);
		check(sign_hs("k", 1, "k1", "JWT", c) == NULL);
		check(jwt_sign(ec, "JWT", NULL) == NULL);
		json_decref(c);
	}
}

/* Rule 10: exactly 64 bytes for ES256 (R and S padded), also when R or S is short. */
static void test_es256_length(void)
{
	int len_ok = 1, verify_ok = 1, short_seen = 0;

	for (int i = 0; i < 200; i++) {
		char input[64];
		unsigned char *sig = NULL;
		size_t siglen = 0;

		snprintf(input, sizeof(input), "eyJhbGciOiJFUzI1NiJ9.%d", i);
		if (jwt_sign_input(ec, input, strlen(input), &sig, &siglen) != 0 || siglen != 64)
			len_ok = 0;
		else {
			if (sig[0] == 0 || sig[32] == 0)
				short_seen++;
			if (jwt_verify_input(ec, input, strlen(input), sig, siglen) != 1)
				verify_ok = 0;
		}
		free(sig);
	}
	check_msg(len_ok, "every ES256 signature is 64 bytes");
	check_msg(verify_ok, "every ES256 signature verifies");
	printf("# %d of 200 signatures had a leading zero byte in R or S\n", short_seen);

	/*
	 * Make sure the padding path itself ran: sign until R or S has a leading zero byte (about
	 * one signature in 128; 20000 tries fail with probability below 1e-60).
	 */
	{
		int found = 0, ok = 0;
		for (int i = 0; i < 20000 && !found; i++) {
			char input[64];
			unsigned char *sig = NULL;
			size_t siglen = 0;
			snprintf(input, sizeof(input), "eyJhbGciOiJFUzI1NiJ9.pad%d", i);
			if (jwt_sign_input(ec, input, strlen(input), &sig, &siglen) == 0 &&
			    (sig[0] == 0 || sig[32] == 0)) {
				found = 1;
				ok = siglen == 64 &&
				     jwt_verify_input(ec, input, strlen(input), sig, siglen) == 1;
			}
			free(sig);
		}
		check(found && ok);
	}

	/* EdDSA is 64 and RS256 the modulus size, every time too. */
	{
		int ok = 1;
		for (int i = 0; i < 50; i++) {
			char input[32];
			unsigned char *sig = NULL;
			size_t siglen = 0;
			snprintf(input, sizeof(input), "x.%d", i);
			if (jwt_sign_input(ed, input, strlen(input), &sig, &siglen) != 0 ||
			    siglen != 64 ||
			    jwt_verify_input(ed, input, strlen(input), sig, 64) != 1)
				ok = 0;
			free(sig);
			sig = NULL;
			if (i < 10 &&
			    (jwt_sign_input(rsa, input, strlen(input), &sig, &siglen) != 0 ||
			     siglen != 256))
				ok = 0;
			free(sig);
		}
		check(ok);
	}

	/* An ES256 token whose signature is DER-encoded or padded to 65 bytes is refused. */
	{
		json_t *c = json_pack("{s:s}", "sub", "u");
		char *t = jwt_sign(ec, "JWT", c), *dot = strrchr(t, '.'), *bad;
		unsigned char *sig = NULL, der[72];
		size_t siglen = 0, n = 0;

		b64url_decode(dot + 1, strlen(dot + 1), &sig, &siglen);
		der[n++] = 0x30;
		der[n++] = 68;
		der[n++] = 0x02;
		der[n++] = 32;
		memcpy(der + n, sig, 32);
		n += 32;
		der[n++] = 0x02;
		der[n++] = 32;
		memcpy(der + n, sig + 32, 32);
		n += 32;
		*dot = '\0';
		{
			char *s64 = b64url_encode(der, n);
			bad = malloc(strlen(t) + strlen(s64) + 2);
			sprintf(bad, "%s.%s", t, s64);
			check(verify1(bad, ec, NULL) == 0);
			free(bad);
			free(s64);
		}
		memmove(der + 1, sig, 64);
		der[0] = 0;
		{
			char *s64 = b64url_encode(der, 65);
			bad = malloc(strlen(t) + strlen(s64) + 2);
			sprintf(bad, "%s.%s", t, s64);
			check(verify1(bad, ec, NULL) == 0);
			free(bad);
			free(s64);
		}
		*dot = '.';
		check(verify1(t, ec, NULL) == 1);
		free(sig);
		free(t);
		json_decref(c);
	}
}

/* Change one character of segment seg (0..2) of a copy of token. */
static char *tweak(const char *token, int seg, size_t off)
{
	char *t = strdup(token), *p = t;

	for (int i = 0; i < seg; i++)
		p = strchr(p, '.') + 1;
	p[off] = p[off] == 'A' ? 'B' : 'A';
	return t;
}

static void test_tampering(void)
{
	jwk_t *keys[3] = {rsa, ec, ed};

	for (int i = 0; i < 3; i++) {
		json_t *c = json_pack("{s:s,s:b}", "sub", "alice", "admin", 0);
		char *t = jwt_sign(keys[i], "JWT", c), *b;

		for (int seg = 0; seg < 3; seg++) {
			for (size_t off = 0; off < 12; off += 5) {
				b = tweak(t, seg, off);
				check_msg(verify1(b, keys[i], NULL) == 0, "key %d seg %d off %zu",
					  i, seg, off);
				free(b);
			}
		}
		/* Another payload under the original header and signature. */
		{
			json_t *c2 = json_pack("{s:s,s:b}", "sub", "alice", "admin", 1);
			char *t2 = jwt_sign(keys[i], "JWT", c2);
			char *d1 = strchr(t, '.'), *d2 = strchr(t2, '.'), *e2 = strrchr(t2, '.');
			char *mix = malloc(strlen(t) + strlen(t2));
			sprintf(mix, "%.*s%.*s%s", (int)(d1 - t), t, (int)(e2 - d2), d2,
				strrchr(t, '.'));
			check(verify1(mix, keys[i], NULL) == 0);
			free(mix);
			free(t2);
			json_decref(c2);
		}
		/* Truncated signature. */
		b = strdup(t);
		b[strlen(b) - 4] = '\0';
		check(verify1(b, keys[i], NULL) == 0);
		free(b);
		free(t);
		json_decref(c);
	}
}

static void test_structure(void)
{
	json_t *c = json_pack("{s:s}", "sub", "u");
	char *t = jwt_sign(ec, "JWT", c), *b;
	size_t n = strlen(t);

	check(verify1(t, ec, NULL) == 1);
	check(verify1("", ec, NULL) == 0);
	check(verify1(NULL, ec, NULL) == 0);
	check(verify1("..", ec, NULL) == 0);
	check(verify1("a.b", ec, NULL) == 0);
	b = malloc(n + 8);
	/* A fourth segment, a trailing dot, empty signature, padding, whitespace. */
	sprintf(b, "%s.AAAA", t);
	check(verify1(b, ec, NULL) == 0);
	sprintf(b, "%s.", t);
	check(verify1(b, ec, NULL) == 0);
	strcpy(b, t);
	*(strrchr(b, '.') + 1) = '\0';
	check(verify1(b, ec, NULL) == 0);
	sprintf(b, "%s=", t);
	check(verify1(b, ec, NULL) == 0);
	sprintf(b, "%s ", t);
	check(verify1(b, ec, NULL) == 0);
	sprintf(b, " %s", t);
	check(verify1(b, ec, NULL) == 0);
	/* Empty header segment. */
	strcpy(b, strchr(t, '.'));
	check(verify1(b, ec, NULL) == 0);
	free(b);
	free(t);

	/*
	 * Headers and payloads that are correctly signed but malformed: not an object, duplicate
	 * members, a crit member, a kid that is not a string, an alg that is not a string.
	 */
	{
		static const char *const bad_headers[] = {
		    "[\"ES256\"]",
		    "\"ES256\"",
		    "{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"kid\":\"ec-1\"}",
		    "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
		    "{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"crit\":[\"exp\"]}",
		    "{\"alg\":\"ES256\",\"kid\":[\"ec-1\"]}",
		    "{\"alg\":[\"ES256\"],\"kid\":\"ec-1\"}",
		    "{\"kid\":\"ec-1\"}",
		    "{\"alg\":\"ES256\",\"kid\":\"ec-1\"",
		    "{\"alg\":\"ES256\",\"kid\":\"EC-1\"}",
		    "{\"alg\":\"es256\",\"kid\":\"ec-1\"}",
		};
		for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
			char *bt = signed_token(ec, bad_headers[i], "{\"sub\":\"u\"}");
			check_msg(bt != NULL && verify1(bt, ec, NULL) == 0, "header %s",
				  bad_headers[i]);
			free(bt);
		}
		static const char *const bad_payloads[] = {"{\"sub\":\"u\",\"sub\":\"admin\"}",
							   "[1]",
							   "\"x\"",
							   "",
							   "{\"sub\":",
							   "{\"sub\":\"\\u0000\"}"};
		for (size_t i = 0; i < sizeof(bad_payloads) / sizeof(bad_payloads[0]); i++) {
			char *bt = signed_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
						bad_payloads[i]);
			check_msg(bt != NULL && verify1(bt, ec, NULL) == 0, "payload %s",
				  bad_payloads[i]);
			free(bt);
		}
		/* The good case of the same construction, for contrast. */
		{
			char *bt = signed_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
						"{\"sub\":\"u\"}");
			check(verify1(bt, ec, NULL) == 1);
			free(bt);
		}
	}
	json_decref(c);
}

/*
 * Headers that point at or carry a key (jku, jwk, x5u, x5c) and headers with duplicate members
 * are refused, by jwt_verify and by jwt_verify_hs256, even when correctly signed by the right
 * key; an unknown member alone is not (the contrast shows the refusal is for these names).
 */
static void test_key_headers(void)
{
	static const unsigned char hkey[32] = {7};
	static const char *const members[] = {
	    "\"jku\":\"https://attacker.example/jwks\"",
	    "\"x5u\":\"https://attacker.example/cert.pem\"",
	    "\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}",
	    "\"x5c\":[\"MIIB\"]",
	    "\"jku\":null",
	    "\"x5c\":[]",
	    "\"typ\":\"JWT\",\"typ\":\"JWT\"",
	    "\"foo\":1,\"foo\":1",
	    "\"foo\":1,\"foo\":2",
	};
	char header[256], *t;

	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"ec-1\",%s}",
			 members[i]);
		t = signed_token(ec, header, "{\"sub\":\"u\"}");
		check_msg(t != NULL && verify1(t, ec, NULL) == 0, "ES256 header %s", header);
		free(t);
		snprintf(header, sizeof(header), "{\"alg\":\"HS256\",%s}", members[i]);
		t = hs256_token(hkey, sizeof(hkey), header, "{\"sub\":\"u\"}");
		check_msg(verify_hs(t, hkey, sizeof(hkey), NULL) == 0, "HS256 header %s", header);
		free(t);
	}
	t = signed_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"foo\":1}", "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 1);
	free(t);
	t = hs256_token(hkey, sizeof(hkey), "{\"alg\":\"HS256\",\"foo\":1}", "{\"sub\":\"u\"}");
	check(verify_hs(t, hkey, sizeof(hkey), NULL) == 1);
	free(t);
}

/*
 * Ed25519 signatures are not malleable: S + L (the group order) verifies under libgcrypt 1.10
 * but must be refused (RFC 8032 section 5.1.7: S must be below L).
 */
static void test_ed25519_s_range(void)
{
	static const unsigned char order[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
						0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
						0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
						0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
	const char *input = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0";
	unsigned char *sig = NULL, alt[64];
	size_t siglen = 0;
	unsigned carry = 0;

	check(jwt_sign_input(ed, input, strlen(input), &sig, &siglen) == 0 && siglen == 64);
	if (sig == NULL)
		return;
	check(jwt_verify_input(ed, input, strlen(input), sig, siglen) == 1);
	memcpy(alt, sig, 32);
	for (int i = 0; i < 32; i++) {
		unsigned v = sig[32 + i] + order[i] + carry;
		alt[32 + i] = (unsigned char)v;
		carry = v >> 8;
	}
	check(carry == 0 && jwt_verify_input(ed, input, strlen(input), alt, 64) == 0);
	memcpy(alt + 32, order, 32);
	check(jwt_verify_input(ed, input, strlen(input), alt, 64) == 0);
	free(sig);
}

/* alg "none", alg confusion, unknown kid. */
static void test_alg_pinning(void)
{
	json_t *c = json_pack("{s:s}", "sub", "u");
	char *t, *pubtext, hdr[128];
	json_t *pub;
	unsigned char hskey[32] = "0123456789abcdef0123456789abcdef";

	/* alg none, with an empty or with a copied signature. */
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"kid\":\"%s\"}", jwk_kid(ec));
	t = make_token(hdr, "{\"sub\":\"u\"}", (const unsigned char *)"", 0);
	check(verify1(t, ec, NULL) == 0);
	check(verify_hs(t, hskey, 32, NULL) == 0);
	free(t);
	{
		/* Unsigned token in its usual form "h.p." */
		char *h = b64url_encode(hdr, strlen(hdr)), *u = malloc(strlen(h) + 32);
		sprintf(u, "%s.eyJzdWIiOiJ1In0.", h);
		check(verify1(u, ec, NULL) == 0);
		free(h);
		free(u);
	}
	{
		unsigned char fake[64] = {1};
		t = make_token(hdr, "{\"sub\":\"u\"}", fake, 64);
		check(verify1(t, ec, NULL) == 0);
		free(t);
	}
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"None\",\"kid\":\"%s\"}", jwk_kid(ec));
	t = make_token(hdr, "{\"sub\":\"u\"}", (const unsigned char *)"", 0);
	check(verify1(t, ec, NULL) == 0);
	free(t);

	/*
	 * HS256 header against the RSA key, MACed with what an attacker knows of it: the public
	 * JWK text and the modulus bytes.
	 */
	pub = jwk_public_json(rsa);
	pubtext = json_dumps(pub, JSON_COMPACT);
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
		 jwk_kid(rsa));
	t = hs256_token(pubtext, strlen(pubtext), hdr, "{\"sub\":\"u\"}");
	check(verify1(t, rsa, NULL) == 0);
	check(verify_hs(t, pubtext, strlen(pubtext), NULL) == 1); /* it is a valid HS256 token */
	free(t);
	{
		size_t nlen;
		unsigned char *n = unb64(json_string_value(json_object_get(pub, "n")), &nlen);
		t = hs256_token(n, nlen, hdr, "{\"sub\":\"u\"}");
		check(verify1(t, rsa, NULL) == 0);
		free(t);
		free(n);
	}
	free(pubtext);
	json_decref(pub);

	/* RS256 header naming the ES key's kid, signed with the RSA key. */
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", jwk_kid(ec));
	t = signed_token(rsa, hdr, "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 0);
	{
		jwk_t *both[2] = {ec, rsa};
		json_t *got = NULL;
		check(jwt_verify(t, both, 2, NULL, &got) == 0 && got == NULL);
	}
	free(t);
	/* ES256 token re-labelled EdDSA for the Ed key's kid, and an EdDSA token labelled ES256. */
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", jwk_kid(ec));
	t = signed_token(ed, hdr, "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 0);
	free(t);
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", jwk_kid(ed));
	t = signed_token(ec, hdr, "{\"sub\":\"u\"}");
	check(verify1(t, ed, NULL) == 0);
	free(t);

	/* Asymmetric tokens are never HS256 tokens. */
	t = jwt_sign(ec, "JWT", c);
	check(verify_hs(t, hskey, 32, NULL) == 0);
	free(t);

	/* Unknown and missing kid. */
	t = signed_token(ec, "{\"alg\":\"ES256\",\"kid\":\"ec-9\"}", "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 0);
	free(t);
	t = signed_token(ec, "{\"alg\":\"ES256\"}", "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 0);
	free(t);
	t = signed_token(ec, "{\"alg\":\"ES256\",\"kid\":\"\"}", "{\"sub\":\"u\"}");
	check(verify1(t, ec, NULL) == 0);
	free(t);
	/* Two keys, the token's kid names the one that did not sign it. */
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", jwk_kid(ec2));
	t = signed_token(ec, hdr, "{\"sub\":\"u\"}");
	{
		jwk_t *both[2] = {ec, ec2};
		json_t *got = NULL;
		check(jwt_verify(t, both, 2, NULL, &got) == 0);
	}
	free(t);
	json_decref(c);
}

static void test_hs256(void)
{
	unsigned char key[32], other[32];
	json_t *c = json_pack("{s:s,s:i}", "client_id", "app", "exp", 1900000000), *got = NULL;
	crypto_hmac_t *mac;
	char *t, *h;

	crypto_random(key, sizeof(key));
	memcpy(other, key, sizeof(other));
	other[31] ^= 1;
	t = sign_hs(key, sizeof(key), "srv-1", "at+jwt", c);
	check(t != NULL);
	h = header_text(t);
	check(h != NULL &&
	      strcmp(h, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"srv-1\"}") == 0);
	free(h);
	mac = crypto_hmac_open(key, sizeof(key));
	check(jwt_verify_hs256(t, mac, "at+jwt", &got) == 1 && json_equal(got, c));
	/* The handle is reused: a second verify on it gives the same answer. */
	json_decref(got);
	check(jwt_verify_hs256(t, mac, "at+jwt", &got) == 1 && json_equal(got, c));
	crypto_hmac_close(mac);
	json_decref(got);
	check(verify_hs(t, key, sizeof(key), NULL) == 1);
	check(verify_hs(t, key, sizeof(key), "JWT") == 0);
	check(verify_hs(t, other, sizeof(other), "at+jwt") == 0);
	for (int seg = 0; seg < 3; seg++) {
		char *b = tweak(t, seg, 3);
		check(verify_hs(b, key, sizeof(key), NULL) == 0);
		free(b);
	}
	/* An HS256 token is not accepted by the asymmetric verifier even with a matching kid. */
	check(verify1(t, ec, NULL) == 0);
	free(t);
	/* Without kid. */
	t = sign_hs(key, sizeof(key), NULL, "at+jwt", c);
	h = header_text(t);
	check(h != NULL && strcmp(h, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}") == 0);
	check(verify_hs(t, key, sizeof(key), "at+jwt") == 1);
	free(h);
	free(t);
	/* A MAC of the wrong length (truncated HMAC). */
	{
		char *full = hs256_token(key, sizeof(key), "{\"alg\":\"HS256\"}", "{\"a\":1}");
		char *cut = strdup(full);
		check(verify_hs(full, key, sizeof(key), NULL) == 1);
		cut[strlen(cut) - 11] = '\0'; /* 43 chars -> 32: 24 bytes */
		check(verify_hs(cut, key, sizeof(key), NULL) == 0);
		free(full);
		free(cut);
	}
	json_decref(c);
}

int main(void)
{
	if (crypto_init() != 0) {
		printf("Bail out! crypto_init\n");
		return 1;
	}
	test_rfc_a1();
	test_rfc_a2();
	test_rfc_a3();
	test_rfc8037();
	test_generate();
	test_public_json();
	test_private_roundtrip();
	test_private_parse_rejects();
	test_roundtrips();
	test_es256_length();
	test_tampering();
	test_structure();
	test_alg_pinning();
	test_key_headers();
	test_ed25519_s_range();
	test_hs256();
	jwk_free(rsa);
	jwk_free(ec);
	jwk_free(ed);
	jwk_free(ec2);
	return check_done();
}
