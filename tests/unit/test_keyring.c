/*
 * keyring: the server key made once (0600) and refused when others may read it or its
 * directory; record tags deterministic under one server key, separated by purpose and by part
 * boundaries, different under another key; signing keys published ahead of activation, the
 * newest active one signing, a replaced one published for the overlap, and a rotation noticed
 * by keyring_refresh at most once a second.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fixture.h"

static char dir_b[80];

/* 1 when kid is one of kr's published keys. */
static int published(const struct keyring *kr, const char *kid)
{
	for (size_t i = 0; i < kr->npublished; i++)
		if (strcmp(jwk_kid(kr->published[i]), kid) == 0)
			return 1;
	return 0;
}

/* The kid of the key newest in the store by insertion: the one not in before (size 17). */
static void newest_kid(const struct keyring *before, struct store *s, const char *db_dir, char *kid)
{
	struct keyring kr;

	kid[0] = '\0';
	if (keyring_load(&kr, s, db_dir, 1000000) != 0)
		return;
	for (size_t i = 0; i < kr.npublished; i++)
		if (!published(before, jwk_kid(kr.published[i])))
			snprintf(kid, 17, "%s", jwk_kid(kr.published[i]));
	keyring_free(&kr);
}

static int read_file(const char *path, unsigned char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len);
	close(fd);
	return (int)n;
}

static void tags(struct keyring *kr, struct keyring *same, struct keyring *other)
{
	char a[KEYRING_TAG_HEX], b[KEYRING_TAG_HEX];

	check(keyring_tag(kr, a, "link", "token", NULL) == 0);
	check(strlen(a) == 64 && strspn(a, "0123456789abcdef") == 64);
	check(keyring_tag(kr, b, "link", "token", NULL) == 0 && strcmp(a, b) == 0);
	/* The same server key, loaded again: the same tags (every worker agrees). */
	check(keyring_tag(same, b, "link", "token", NULL) == 0 && strcmp(a, b) == 0);
	/* Another server key: other tags. */
	check(keyring_tag(other, b, "link", "token", NULL) == 0 && strcmp(a, b) != 0);
	/* Separated by purpose... */
	check(keyring_tag(kr, b, "link-code", "token", NULL) == 0 && strcmp(a, b) != 0);
	/* ...and by where the parts end. */
	check(keyring_tag(kr, a, "p", "ab", "c", NULL) == 0);
	check(keyring_tag(kr, b, "p", "a", "bc", NULL) == 0 && strcmp(a, b) != 0);
	check(keyring_tag(kr, b, "p", "abc", NULL) == 0 && strcmp(a, b) != 0);
	check(keyring_tag(kr, a, "pa", "b", NULL) == 0);
	check(keyring_tag(kr, b, "p", "ab", NULL) == 0 && strcmp(a, b) != 0);
	check(keyring_tag(kr, a, "p", NULL) == 0);
	check(keyring_tag(kr, b, "p", "", NULL) == 0 && strcmp(a, b) != 0);
	/* Sixteen parts at most; more is an error, not a tag of the first sixteen. */
	check(keyring_tag(kr, a, "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
			  "13", "14", "15", "16", NULL) == 0);
	check(keyring_tag(kr, b, "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
			  "13", "14", "15", "16", "17", NULL) == -1);
}

int main(void)
{
	unsigned char key1[64], key2[64];
	char path[128], kid_a[17], kid_b[17], kid_c[17], kid_d[17];
	struct keyring kr, again, other, narrow;
	struct store *s, *sb;
	time_t now = time(NULL);

	fixture_begin("/dev/shm", "keyring");
	snprintf(dir_b, sizeof(dir_b), "%s-b", fixture_dir);
	snprintf(path, sizeof(path), "%s/server.key", fixture_dir);
	s = store_open(fixture_dir, 8, 1);
	if (!check(s != NULL))
		return check_done();

	/* No server key yet: nothing to load; the check leaves a missing key to the load. */
	check(keyring_check_private(fixture_dir) == 0);
	check(keyring_load(&kr, s, fixture_dir, 3600) == -1);

	/* A first key active long ago (A); keyring_create then adds no other. */
	check(keyring_add_signing_key(s, JWK_ES256, now - 1000) == 0);
	check(keyring_create(s, fixture_dir, JWK_ES256) == 0);
	{
		struct stat st;
		check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32);
	}
	check(read_file(path, key1, sizeof(key1)) == 32);
	/* Again: the server key stays as it is. */
	check(keyring_create(s, fixture_dir, JWK_ES256) == 0);
	check(read_file(path, key2, sizeof(key2)) == 32 && memcmp(key1, key2, 32) == 0);

	check(keyring_load(&kr, s, fixture_dir, 3600) == 0);
	check(kr.signing != NULL && kr.npublished == 1 && kr.published[0] == kr.signing);
	check(strcmp(jwk_alg(kr.signing), JWK_ES256) == 0);
	check(strlen(kr.client_token_kid) == 16 &&
	      strspn(kr.client_token_kid, "0123456789abcdef") == 16);
	snprintf(kid_a, sizeof(kid_a), "%s", jwk_kid(kr.signing));
	check(keyring_load(&again, s, fixture_dir, 3600) == 0);
	check(strcmp(again.client_token_kid, kr.client_token_kid) == 0);

	/* Another store with its own server key, whose only key is not active yet: no load. */
	sb = store_open(dir_b, 8, 1);
	check(sb != NULL);
	check(keyring_add_signing_key(sb, JWK_ES256, now + 1000) == 0);
	check(keyring_create(sb, dir_b, JWK_ES256) == 0);
	check(keyring_load(&other, sb, dir_b, 3600) == -1); /* and nothing to release */
	check(keyring_add_signing_key(sb, JWK_ES256, now - 1) == 0);
	check(keyring_load(&other, sb, dir_b, 3600) == 0);
	check(other.npublished == 2 && strcmp(other.client_token_kid, kr.client_token_kid) != 0);

	tags(&kr, &again, &other);

	/* B, active in 1000 s: published ahead, not signing; A still signs. */
	check(keyring_add_signing_key(s, JWK_ES256, now + 1000) == 0);
	newest_kid(&kr, s, fixture_dir, kid_b);
	check(kid_b[0] != '\0');
	kr.next_check = time(NULL) + 60; /* not due: the store is not looked at */
	keyring_refresh(&kr, s);
	check(kr.npublished == 1);
	kr.next_check = 0;
	keyring_refresh(&kr, s);
	check(kr.npublished == 2 && published(&kr, kid_a) && published(&kr, kid_b));
	check(strcmp(jwk_kid(kr.signing), kid_a) == 0);
	check(kr.next_change == now + 1000);

	/* C, active since 10 s: it signs; A, replaced, stays published for the overlap. */
	check(keyring_add_signing_key(s, JWK_ES256, now - 10) == 0);
	newest_kid(&kr, s, fixture_dir, kid_c);
	check(kid_c[0] != '\0' && strcmp(kid_c, kid_b) != 0);
	kr.next_check = 0;
	keyring_refresh(&kr, s);
	check(kr.npublished == 3 && published(&kr, kid_a) && published(&kr, kid_c));
	check(strcmp(jwk_kid(kr.signing), kid_c) == 0);
	check(kr.next_change == now + 1000); /* B activates before A retires */
	/* With an overlap of 5 s, A's time is up (C became active 10 s ago). */
	check(keyring_load(&narrow, s, fixture_dir, 5) == 0);
	check(narrow.npublished == 2 && !published(&narrow, kid_a) && published(&narrow, kid_b) &&
	      published(&narrow, kid_c) && strcmp(jwk_kid(narrow.signing), kid_c) == 0);
	keyring_free(&narrow);
	/* An overlap of 600 s: published until C's activation plus 600 s. */
	check(keyring_load(&narrow, s, fixture_dir, 600) == 0);
	check(narrow.npublished == 3 && published(&narrow, kid_a));
	check(narrow.next_change == now - 10 + 600);
	keyring_free(&narrow);

	/* Another signing algorithm joins the same set. */
	check(keyring_add_signing_key(s, JWK_EDDSA, now - 5) == 0);
	newest_kid(&kr, s, fixture_dir, kid_d);
	kr.next_check = 0;
	keyring_refresh(&kr, s);
	check(kid_d[0] != '\0' && strcmp(jwk_kid(kr.signing), kid_d) == 0 &&
	      strcmp(jwk_alg(kr.signing), JWK_EDDSA) == 0 && kr.npublished == 4);

	/* Secrets open to others are refused: the key file, then its directory. */
	check(chmod(path, 0640) == 0);
	check(keyring_check_private(fixture_dir) == -1);
	check(keyring_load(&narrow, s, fixture_dir, 3600) == -1);
	check(chmod(path, 0604) == 0);
	check(keyring_check_private(fixture_dir) == -1);
	check(keyring_load(&narrow, s, fixture_dir, 3600) == -1);
	check(chmod(path, 0400) == 0);
	check(keyring_check_private(fixture_dir) == 0);
	check(chmod(path, 0600) == 0);
	check(chmod(fixture_dir, 0750) == 0);
	check(keyring_check_private(fixture_dir) == -1);
	check(chmod(fixture_dir, 0701) == 0);
	check(keyring_check_private(fixture_dir) == -1);
	check(chmod(fixture_dir, 0700) == 0);
	check(keyring_check_private(fixture_dir) == 0);
	/* A server key of the wrong length is no key. */
	check(truncate(path, 16) == 0);
	check(keyring_load(&narrow, s, fixture_dir, 3600) == -1);

	keyring_free(&kr);
	keyring_free(&again);
	keyring_free(&other);
	store_close(sb);
	store_close(s);
	fixture_remove(dir_b);
	fixture_remove(fixture_dir);
	return check_done();
}
