/*
 * JWT parsing and verification (jwt_verify for the RS256, ES256 and EdDSA user tokens,
 * jwt_verify_hs256 for client access tokens) against keys made at startup, which no input
 * can know: whatever the input, no token may be accepted and none may count as an internal
 * error (-1 would turn a forged token into a 500 instead of a 401).
 *
 * The first byte picks how the rest is read, so that the fuzzer need not learn base64 to
 * reach the signature checks:
 *   0  a compact token as it is;
 *   1  header JSON, NUL, payload JSON, NUL, signature bytes: encoded and joined here;
 *   2  claims JSON, NUL, key, position, byte: a token signed here must verify with the same
 *      claims, and the same token with the byte at position changed must not;
 *   3  header JSON, NUL, payload JSON, NUL, key: HS256 under a public key's JWK text or raw
 *      bytes (algorithm confusion) must not verify against the asymmetric keys.
 */
#include <string.h>

#include "b64url.h"
#include "crypto.h"
#include "fuzz.h"
#include "jwk.h"
#include "jwt.h"

#define NKEYS 3

static jwk_t *keys[NKEYS];
static crypto_hmac_t *hs_mac; /* under a random key */
/* Per asymmetric key: its public JWK as text, and its raw public value (n or x). */
static char *pub_text[NKEYS];
static unsigned char *pub_raw[NKEYS];
static size_t pub_rawlen[NKEYS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const algs[NKEYS] = {JWK_RS256, JWK_ES256, JWK_EDDSA};
	static const char *const kids[NKEYS] = {"rs", "es", "ed"};

	unsigned char hs_key[32];

	FUZZ_ASSERT(crypto_init() == 0);
	crypto_random(hs_key, sizeof(hs_key));
	hs_mac = crypto_hmac_open(hs_key, sizeof(hs_key));
	FUZZ_ASSERT(hs_mac != NULL);
	for (int i = 0; i < NKEYS; i++) {
		json_t *pub;
		const char *raw;
		keys[i] = jwk_generate(algs[i], kids[i]);
		FUZZ_ASSERT(keys[i] != NULL);
		pub = jwk_public_json(keys[i]);
		FUZZ_ASSERT(pub != NULL);
		pub_text[i] = json_dumps(pub, JSON_COMPACT);
		raw = json_string_value(json_object_get(pub, i == 0 ? "n" : "x"));
		FUZZ_ASSERT(pub_text[i] != NULL && raw != NULL);
		FUZZ_ASSERT(b64url_decode(raw, strlen(raw), &pub_raw[i], &pub_rawlen[i]) == 0);
		json_decref(pub);
	}
	return 0;
}

/* Every verifier must refuse token, and none may call it an internal error. */
static void refuse(const char *token, const char *typ)
{
	json_t *claims = NULL;

	FUZZ_ASSERT(jwt_verify(token, keys, NKEYS, typ, &claims) == 0 && claims == NULL);
	FUZZ_ASSERT(jwt_verify_hs256(token, hs_mac, typ, &claims) == 0 && claims == NULL);
	/* One key at a time too: kid lookup must not fall through to another key. */
	for (int i = 0; i < NKEYS; i++)
		FUZZ_ASSERT(jwt_verify(token, &keys[i], 1, typ, &claims) == 0 && claims == NULL);
}

/* b64url(a) "." b64url(b) ["." b64url(c)] as a new string. */
static char *join(const void *a, size_t alen, const void *b, size_t blen, const void *c,
		  size_t clen)
{
	char *ea = b64url_encode(a, alen), *eb = b64url_encode(b, blen);
	char *ec = c != NULL ? b64url_encode(c, clen) : NULL, *out;
	size_t len;

	FUZZ_ASSERT(ea != NULL && eb != NULL && (c == NULL || ec != NULL));
	len = strlen(ea) + strlen(eb) + (ec ? strlen(ec) + 1 : 0) + 2;
	out = malloc(len);
	FUZZ_ASSERT(out != NULL);
	snprintf(out, len, "%s.%s%s%s", ea, eb, ec ? "." : "", ec ? ec : "");
	free(ea);
	free(eb);
	free(ec);
	return out;
}

/* The length of the NUL-terminated field at data (or all of it), and where the next starts. */
static size_t field(const uint8_t *data, size_t size, size_t *next)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t len = nul ? (size_t)(nul - data) : size;

	*next = nul ? len + 1 : size;
	return len;
}

static void structured(const uint8_t *data, size_t size, const char *typ)
{
	size_t hlen, plen, next, next2;
	char *token;

	hlen = field(data, size, &next);
	plen = field(data + next, size - next, &next2);
	next2 += next;
	/* The signature is the rest, NUL bytes included: RS256 values may start with zeros. */
	token = join(data, hlen, data + next, plen, data + next2, size - next2);
	refuse(token, typ);
	free(token);
}

static void round_trip(const uint8_t *data, size_t size, const char *typ)
{
	size_t clen, next, len, pos;
	json_t *claims, *got = NULL;
	char *text, *token;
	unsigned k;
	int rc;

	clen = field(data, size, &next);
	if (size - next < 4)
		return;
	text = fuzz_strndup(data, clen);
	claims = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	if (!json_is_object(claims)) {
		json_decref(claims);
		return;
	}
	k = data[next] % (NKEYS + 1);
	if (k < NKEYS)
		token = jwt_sign(keys[k], typ, claims);
	else
		token = jwt_sign_hs256(hs_mac, "hs", typ, claims);
	FUZZ_ASSERT(token != NULL);
	if (k < NKEYS)
		rc = jwt_verify(token, keys, NKEYS, typ, &got);
	else
		rc = jwt_verify_hs256(token, hs_mac, typ, &got);
	FUZZ_ASSERT(rc == 1 && json_equal(got, claims));
	json_decref(got);

	/* Change one character: strict base64url makes every change change the bytes. */
	len = strlen(token);
	pos = ((size_t)data[next + 1] << 8 | data[next + 2]) % len;
	if (data[next + 3] != 0 && token[pos] != (char)data[next + 3]) {
		token[pos] = (char)data[next + 3];
		refuse(token, typ);
	}
	free(token);
	json_decref(claims);
}

static void confusion(const uint8_t *data, size_t size, const char *typ)
{
	size_t hlen, plen, next, next2, outlen;
	unsigned char mac[CRYPTO_HASH_LEN];
	char *input, *token, *sig;
	unsigned k;

	hlen = field(data, size, &next);
	plen = field(data + next, size - next, &next2);
	k = next + next2 < size ? data[next + next2] % (2 * NKEYS) : 0;
	input = join(data, hlen, data + next, plen, NULL, 0);
	if (k < NKEYS)
		FUZZ_ASSERT(crypto_hmac_once(pub_text[k], strlen(pub_text[k]), input, strlen(input),
					     mac) == 0);
	else
		FUZZ_ASSERT(crypto_hmac_once(pub_raw[k - NKEYS], pub_rawlen[k - NKEYS], input,
					     strlen(input), mac) == 0);
	sig = b64url_encode(mac, sizeof(mac));
	outlen = strlen(input) + strlen(sig) + 2;
	token = malloc(outlen);
	FUZZ_ASSERT(sig != NULL && token != NULL);
	snprintf(token, outlen, "%s.%s", input, sig);
	refuse(token, typ);
	free(token);
	free(sig);
	free(input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *typ;
	char *token;

	if (size == 0) {
		refuse("", NULL);
		return 0;
	}
	typ = data[0] & 4 ? "JWT" : NULL;
	switch (data[0] & 3) {
	case 0:
		token = fuzz_strndup(data + 1, size - 1);
		refuse(token, typ);
		free(token);
		break;
	case 1:
		structured(data + 1, size - 1, typ);
		break;
	case 2:
		round_trip(data + 1, size - 1, typ);
		break;
	case 3:
		confusion(data + 1, size - 1, typ);
		break;
	}
	return 0;
}
