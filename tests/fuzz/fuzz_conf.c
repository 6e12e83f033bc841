/*
 * The configuration file (conf.c): conf_load over the input as the file's contents, on top of
 * the defaults, as every process does at startup.
 *
 * Besides "no crash, no leak" (also for the partly loaded struct after an error): an error has
 * a message; a loaded configuration satisfies every rule conf_load promises (otlogin.conf(5)):
 * http(s) public_base_url without a trailing slash, an issuer, the key algorithm one of three,
 * each number within its range and each ttl within its cap, rate limits either off or with a
 * period of 1 s to 7 days, STARTTLS decided (auto resolved to yes or no), every string set;
 * and loading the same text again gives the same answer.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_conf", LOG_LEVEL_ERR);
	return 0;
}

static void check_rate(const struct conf_rate *r)
{
	FUZZ_ASSERT((r->limit == 0) == (r->period == 0));
	FUZZ_ASSERT(r->limit <= 1000000 && r->period <= 604800);
}

static void check_loaded(const struct conf *c)
{
	const char *const strings[] = {c->public_base_url,
				       c->issuer,
				       c->db_dir,
				       c->default_audience,
				       c->key_algorithm,
				       c->mail_from,
				       c->mail_from_name,
				       c->smtp_host,
				       c->smtp_user,
				       c->smtp_password,
				       c->maildir,
				       c->sms_backend,
				       c->sms_spool_dir,
				       c->sms_test_spool_dir,
				       c->sms_command,
				       c->sms_email_gateway,
				       c->sms_default_message,
				       c->sms_sender_id};
	size_t len = strlen(c->public_base_url);

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		FUZZ_ASSERT(strings[i] != NULL);
	FUZZ_ASSERT(strncmp(c->public_base_url, "http://", 7) == 0 ||
		    strncmp(c->public_base_url, "https://", 8) == 0);
	FUZZ_ASSERT(len > 0 && c->public_base_url[len - 1] != '/');
	FUZZ_ASSERT(c->issuer[0] != '\0');
	FUZZ_ASSERT(strcmp(c->key_algorithm, "RS256") == 0 ||
		    strcmp(c->key_algorithm, "ES256") == 0 ||
		    strcmp(c->key_algorithm, "EdDSA") == 0);
	FUZZ_ASSERT(c->otp_length >= 4 && c->otp_length <= 8);
	FUZZ_ASSERT(c->otp_ttl_minutes <= c->otp_max_ttl_minutes);
	FUZZ_ASSERT(c->link_ttl_minutes <= c->link_max_ttl_minutes);
	FUZZ_ASSERT(c->session_ttl <= c->session_max_ttl);
	FUZZ_ASSERT(c->max_body >= 1024 && c->max_body <= (16ul << 20));
	FUZZ_ASSERT(c->refresh_grace <= 10 && c->smtp_port >= 1 && c->smtp_port <= 65535);
	FUZZ_ASSERT(c->smtp_starttls == 0 || c->smtp_starttls == 1);
	FUZZ_ASSERT(conf_test_mode(c) == (c->test_mode || c->smtp_host[0] == '\0'));
	check_rate(&c->recipient_sends);
	check_rate(&c->client_emails);
	check_rate(&c->client_sms);
	check_rate(&c->identifier_attempts);
	check_rate(&c->ip_attempts);
	check_rate(&c->client_secret_failures);
}

/* conf_load of the text in fd (rewound); the answer. */
static int load(int fd, struct conf *c, char *err, size_t errlen)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	conf_defaults(c);
	err[0] = '\0';
	return conf_load(c, path, err, errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf c, again;
	char err[512], err2[512];
	int fd = memfd_create("otlogin.conf", 0), rc, rc2;

	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(write(fd, data, size) == (ssize_t)size);
	rc = load(fd, &c, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 || rc == -1);
	if (rc == 0)
		check_loaded(&c);
	else
		FUZZ_ASSERT(err[0] != '\0');
	rc2 = load(fd, &again, err2, sizeof(err2));
	FUZZ_ASSERT(rc2 == rc && strcmp(err, err2) == 0);
	conf_free(&c);
	conf_free(&again);
	close(fd);
	return 0;
}
