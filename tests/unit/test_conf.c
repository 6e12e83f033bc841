/* conf: defaults, the shipped sample, and every kind of error naming its line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"

static const char *write_file(const char *text)
{
	static char path[64];
	FILE *f;
	snprintf(path, sizeof(path), "/tmp/otlogin-test-conf-%d/otlogin.conf", (int)getpid());
	f = fopen(path, "w");
	if (f == NULL)
		return NULL;
	fputs(text, f);
	fclose(f);
	return path;
}

/* Load text; returns the rc and leaves the message in err. */
static int load(const char *text, struct conf *c, char *err, size_t errlen)
{
	conf_free(c);
	conf_defaults(c);
	err[0] = '\0';
	return conf_load(c, write_file(text), err, errlen);
}

int main(void)
{
	struct conf c;
	char err[512], dir[64], sample[512];
	const char *top = getenv("top_srcdir");

	snprintf(dir, sizeof(dir), "/tmp/otlogin-test-conf-%d", (int)getpid());
	mkdir(dir, 0700);
	conf_defaults(&c);
	check(c.otp_length == 6);
	check(c.otp_ttl_minutes == 10);
	check(c.otp_max_failures == 3);
	check(c.otp_lockout_minutes == 15);
	check(c.account_failures.limit == 10 && c.account_failures.period == 3600);
	check(c.otp_backoff == 30);
	check(c.client_attempts.limit == 0);
	check(c.access_ttl == 3600);
	check(c.max_body == 65536);
	check(strcmp(c.smtp_host, "") == 0);

	/* The shipped sample loads and equals the defaults. */
	snprintf(sample, sizeof(sample), "%s/etc/otlogin.conf", top ? top : ".");
	check_msg(conf_load(&c, sample, err, sizeof(err)) == 0, "%s", err);
	check(strcmp(c.issuer, c.public_base_url) == 0);
	check(c.session_ttl == 1209600);

	check(load("[otp]\nlength = 8\n[server]\npublic_base_url = https://a.example/cis///\n"
		   "db_dir = data\n",
		   &c, err, sizeof(err)) == 0);
	check(c.otp_length == 8);
	check(strcmp(c.public_base_url, "https://a.example/cis") == 0);
	check(strncmp(c.db_dir, dir, strlen(dir)) == 0 &&
	      strcmp(c.db_dir + strlen(dir), "/data") == 0);
	check(load("; comment\n# comment\n\n[mail]\nsmtp_starttls = yes\n", &c, err, sizeof(err)) ==
	      0);
	check(c.smtp_starttls == 1);

	/*
	 * STARTTLS is required by default (auto) unless the relay is on loopback; yes and no
	 * override that either way.
	 */
	{
		static const struct {
			const char *conf;
			int starttls;
		} tls[] = {
		    {"[mail]\nsmtp_host = relay.example.com\n", 1},
		    {"[mail]\nsmtp_host = 192.0.2.25\n", 1},
		    {"[mail]\nsmtp_host = 128.0.0.1\n", 1},
		    {"[mail]\nsmtp_host = 127.0.0.1.example.com\n", 1},
		    {"[mail]\nsmtp_host = localhost.example.com\n", 1},
		    {"[mail]\nsmtp_host = 2001:db8::25\n", 1},
		    {"[mail]\nsmtp_host = 0177.0.0.1\n", 1},
		    {"[mail]\nsmtp_host = relay.example.com\nsmtp_starttls = auto\n", 1},
		    {"[mail]\nsmtp_host = relay.example.com\nsmtp_starttls = no\n", 0},
		    {"[mail]\nsmtp_host = 127.0.0.1\n", 0},
		    {"[mail]\nsmtp_host = 127.1.2.3\n", 0},
		    {"[mail]\nsmtp_host = localhost\n", 0},
		    {"[mail]\nsmtp_host = LocalHost\n", 0},
		    {"[mail]\nsmtp_host = ::1\n", 0},
		    {"[mail]\nsmtp_host = [::1]\n", 0},
		    {"[mail]\nsmtp_host = 127.0.0.1\nsmtp_starttls = yes\n", 1},
		    {"[mail]\nsmtp_host = localhost\nsmtp_starttls = auto\n", 0},
		};
		for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++)
			check_msg(load(tls[i].conf, &c, err, sizeof(err)) == 0 &&
				      c.smtp_starttls == tls[i].starttls,
				  "%s: starttls %d, expected %d (%s)", tls[i].conf, c.smtp_starttls,
				  tls[i].starttls, err);
	}

	check(load("[otp]\nlength = 9\n", &c, err, sizeof(err)) < 0);
	check(strstr(err, ":2:") != NULL && strstr(err, "outside") != NULL);
	check(load("[otp]\nlength = 3\n", &c, err, sizeof(err)) < 0);
	check(load("[otp]\nlenght = 6\n", &c, err, sizeof(err)) < 0);
	check(strstr(err, "unknown key") != NULL);
	check(load("[otp]\nlength = six\n", &c, err, sizeof(err)) < 0);
	check(load("[otp]\nlength = -6\n", &c, err, sizeof(err)) < 0);
	check(load("[otp]\nlength = 6x\n", &c, err, sizeof(err)) < 0);
	check(load("[otp]\nlength = 99999999999999999999999\n", &c, err, sizeof(err)) < 0);
	check(load("[otp\nlength = 6\n", &c, err, sizeof(err)) < 0);
	check(load("length = 6\n", &c, err, sizeof(err)) < 0); /* outside any section */
	check(load("[otp]\nlength\n", &c, err, sizeof(err)) < 0);
	check(load("[mail]\nsmtp_starttls = maybe\n", &c, err, sizeof(err)) < 0);
	check(load("[server]\nlog_level = loud\n", &c, err, sizeof(err)) < 0);
	check(load("[server]\npublic_base_url = ftp://x\n", &c, err, sizeof(err)) < 0);
	/* No host: "http://" would become "http:" once its trailing slashes are cut. */
	check(load("[server]\npublic_base_url = http://\n", &c, err, sizeof(err)) < 0);
	check(load("[server]\npublic_base_url = https:///cis\n", &c, err, sizeof(err)) < 0);
	check(load("[server]\npublic_base_url = https://h/cis//\n", &c, err, sizeof(err)) == 0 &&
	      strcmp(c.public_base_url, "https://h/cis") == 0);
	check(load("[otp]\nttl_minutes = 90\nmax_ttl_minutes = 60\n", &c, err, sizeof(err)) < 0);
	check(conf_load(&c, "/nonexistent/otlogin.conf", err, sizeof(err)) < 0);

	setenv("OTLOGIN_CONF", "/x/y.conf", 1);
	check(strcmp(conf_path(NULL), "/x/y.conf") == 0);
	check(strcmp(conf_path("/a.conf"), "/a.conf") == 0);
	conf_free(&c);
	unlink(write_file(""));
	rmdir(dir);
	return check_done();
}
