/*
 * bench/gcrypt_sign: the CPU time of one libgcrypt signature (RSA-2048 PKCS#1 v1.5, ECDSA
 * P-256 with RFC 6979 nonces, Ed25519) with nothing of otlogin around it, with or without
 * libgcrypt's secure memory (otlogin's crypto_init turns it on). bench/run compares it with
 * bench/signrate's jwt_sign (what otlogin adds) and with `openssl speed` (another library on
 * the same CPU).
 *
 *   gcrypt_sign secmem|nosecmem [SECONDS]
 *
 * Prints one JSON object {"RS256": CPU_US, "ES256": CPU_US, "EdDSA": CPU_US}.
 */
#include <gcrypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const char *const names[] = {"RS256", "ES256", "EdDSA"};
	static const char *const specs[] = {"(genkey(rsa(nbits 4:2048)))",
					    "(genkey(ecc(curve nistp256)))",
					    "(genkey(ecc(curve Ed25519)(flags eddsa)))"};
	static const char digest[] = "0123456789abcdef0123456789abcdef";
	double budget = argc > 2 ? atof(argv[2]) : 1.0;
	int secmem;

	if (argc < 2 || (strcmp(argv[1], "secmem") != 0 && strcmp(argv[1], "nosecmem") != 0)) {
		fprintf(stderr, "usage: gcrypt_sign secmem|nosecmem [SECONDS]\n");
		return 2;
	}
	secmem = strcmp(argv[1], "secmem") == 0;
	if (!gcry_check_version(NULL))
		return 1;
	if (secmem)
		gcry_control(GCRYCTL_INIT_SECMEM, 1024 * 1024, 0); /* as crypto_init */
	else
		gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);

	printf("{");
	for (int k = 0; k < 3; k++) {
		gcry_sexp_t spec, key, sk, data, sig;
		long n = 0;
		double c0;
		int rc;

		if (gcry_sexp_new(&spec, specs[k], 0, 1) || gcry_pk_genkey(&key, spec)) {
			fprintf(stderr, "gcrypt_sign: cannot make a %s key\n", names[k]);
			return 1;
		}
		sk = gcry_sexp_find_token(key, "private-key", 0);
		if (k == 0)
			rc = gcry_sexp_build(&data, NULL, "(data (flags pkcs1)(hash sha256 %b))",
					     32, digest);
		else if (k == 1)
			rc = gcry_sexp_build(&data, NULL, "(data (flags rfc6979)(hash sha256 %b))",
					     32, digest);
		else
			rc = gcry_sexp_build(&data, NULL,
					     "(data (flags eddsa)(hash-algo sha512)"
					     "(value %b))",
					     32, digest);
		if (rc || sk == NULL)
			return 1;
		c0 = cpu_s();
		do {
			if (gcry_pk_sign(&sig, data, sk)) {
				fprintf(stderr, "gcrypt_sign: %s sign failed\n", names[k]);
				return 1;
			}
			gcry_sexp_release(sig);
			n++;
		} while (cpu_s() - c0 < budget);
		printf("%s\"%s\": %.2f", k ? ", " : "", names[k], (cpu_s() - c0) * 1e6 / (double)n);
		gcry_sexp_release(data);
		gcry_sexp_release(sk);
		gcry_sexp_release(key);
		gcry_sexp_release(spec);
	}
	printf("}\n");
	return 0;
}
