/*
 * jwt_verify: otlogin's JWT verification (src/jwt.c) as a filter, for the differential test
 * against PyJWT (test_jwt_pyjwt.py).
 *
 *   jwt_verify gen ALG KID    print a new key of ALG (RS256, ES256, EdDSA) in otlogin's stored
 *                             form {"kid","alg","sexp"} (jwk_private_serialize)
 *   jwt_verify key FILE       verify each token on stdin (one a line) with jwt_verify against
 *                             the stored-form key in FILE
 *   jwt_verify hs256 HEX      verify each token on stdin with jwt_verify_hs256 under the HMAC
 *                             key given in hex
 *
 * Each verdict is printed on a line of its own: 1 valid, 0 invalid, -1 internal error. No typ
 * is required (NULL), as the differential compares signature and structure checks only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "jwk.h"
#include "jwt.h"
#include "log.h"

#define MAX_LINE (64 * 1024)

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(MAX_LINE);
	size_t n;

	if (f == NULL || buf == NULL) {
		if (f != NULL)
			fclose(f);
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, MAX_LINE - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	static char line[MAX_LINE];
	jwk_t *key = NULL;
	crypto_hmac_t *mac = NULL;

	log_init("jwt_verify", LOG_LEVEL_ERR);
	if (crypto_init() != 0)
		return 1;
	if (argc == 4 && strcmp(argv[1], "gen") == 0) {
		char *text;
		if ((key = jwk_generate(argv[2], argv[3])) == NULL ||
		    (text = jwk_private_serialize(key)) == NULL)
			return 1;
		puts(text);
		crypto_free_str(text);
		jwk_free(key);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "key") == 0) {
		char *text = read_file(argv[2]);
		key = jwk_private_parse(text);
		crypto_free_str(text);
		if (key == NULL) {
			fprintf(stderr, "jwt_verify: %s: not a key\n", argv[2]);
			return 1;
		}
	} else if (argc == 3 && strcmp(argv[1], "hs256") == 0) {
		size_t len = strlen(argv[2]) / 2;
		unsigned char *raw = malloc(len + 1);
		for (size_t i = 0; raw != NULL && i < len; i++) {
			unsigned v;
			if (sscanf(argv[2] + 2 * i, "%2x", &v) != 1)
				return 2;
			raw[i] = (unsigned char)v;
		}
		if (raw == NULL || (mac = crypto_hmac_open(raw, len)) == NULL)
			return 1;
		free(raw);
	} else {
		fprintf(stderr, "usage: jwt_verify gen ALG KID | key FILE | hs256 HEXKEY\n");
		return 2;
	}
	while (fgets(line, sizeof(line), stdin) != NULL) {
		json_t *claims = NULL;
		int rc;

		line[strcspn(line, "\n")] = '\0';
		if (key != NULL)
			rc = jwt_verify(line, &key, 1, NULL, &claims);
		else
			rc = jwt_verify_hs256(line, mac, NULL, &claims);
		json_decref(claims);
		printf("%d\n", rc);
	}
	jwk_free(key);
	crypto_hmac_close(mac);
	return 0;
}
