/*
 * sms: segment counting (GSM-7 with escapes, UCS-2 with surrogate pairs), number, sender and
 * template checks, message composition, the three backends against real files and programs,
 * and the [sms] configuration checks.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "fixture.h"
#include "sms.h"

static char tmpdir[] = "/tmp/otlogin-test-sms-XXXXXX";

static char *repeat(const char *s, int n)
{
	size_t len = strlen(s);
	char *out = malloc(len * (size_t)n + 1);
	for (int i = 0; i < n; i++)
		memcpy(out + len * (size_t)i, s, len);
	out[len * (size_t)n] = '\0';
	return out;
}

/* Segments of a (freed) text, -1 when it does not measure. */
static int segs(char *text, int *ucs2)
{
	struct sms_size sz;
	int rc = sms_measure(text, &sz);
	free(text);
	if (ucs2)
		*ucs2 = sz.ucs2;
	return rc < 0 ? -1 : (int)sz.segments;
}

static char *cat3(const char *a, const char *b, const char *s3)
{
	char *out;
	if (asprintf(&out, "%s%s%s", a, b, s3) < 0)
		return NULL;
	return out;
}

static void test_measure(void)
{
	struct sms_size sz;
	int ucs2 = -1;
	char *a152 = repeat("a", 152), *a151 = repeat("a", 151);

	check(segs(repeat("a", 160), &ucs2) == 1 && ucs2 == 0);
	check(segs(repeat("a", 161), NULL) == 2);
	check(segs(repeat("a", 306), NULL) == 2);
	check(segs(repeat("a", 307), NULL) == 3);
	/* Extension characters cost two septets. */
	check(segs(repeat("{", 80), &ucs2) == 1 && ucs2 == 0);
	check(segs(repeat("{", 81), NULL) == 2);
	check(segs(repeat("\xe2\x82\xac", 80), &ucs2) == 1 && ucs2 == 0); /* euro sign */
	/* An escape pair is never split: 152 + {2} does not fit a 153-septet part. */
	check(segs(cat3(a152, "{", a152), NULL) == 3);
	check(segs(cat3(a151, "{", a152), NULL) == 2);
	/* GSM's own non-ASCII letters stay GSM-7; others switch to UCS-2. */
	check(segs(repeat("\xc3\xa9", 160), &ucs2) == 1 && ucs2 == 0); /* e acute */
	check(segs(repeat("\xce\x94", 160), &ucs2) == 1 && ucs2 == 0); /* Greek Delta */
	check(segs(repeat("\xc4\x85", 70), &ucs2) == 1 && ucs2 == 1);  /* a ogonek */
	check(segs(repeat("\xc4\x85", 71), NULL) == 2);
	check(segs(repeat("\xc4\x85", 134), NULL) == 2);
	check(segs(repeat("\xc4\x85", 135), NULL) == 3);
	check(segs(repeat("`", 1), &ucs2) == 1 && ucs2 == 1);
	check(segs(repeat("\t", 1), &ucs2) == 1 && ucs2 == 1);
	/* Astral characters take two UTF-16 units and are not split either. */
	check(segs(repeat("\xf0\x9f\x98\x80", 35), &ucs2) == 1 && ucs2 == 1);
	check(segs(repeat("\xf0\x9f\x98\x80", 36), NULL) == 2);
	check(sms_measure("\xf0\x9f\x98\x80", &sz) == 0 && sz.units == 2);
	check(sms_measure("ab{", &sz) == 0 && sz.units == 4 && sz.ucs2 == 0);
	/* Not UTF-8: overlong, surrogate, truncated, past U+10FFFF, stray continuation. */
	check(sms_measure("\xc0\xaf", &sz) < 0);
	check(sms_measure("\xed\xa0\x80", &sz) < 0);
	check(sms_measure("a\xe2\x82", &sz) < 0);
	check(sms_measure("\xf4\x90\x80\x80", &sz) < 0);
	check(sms_measure("\x80", &sz) < 0);
	free(a152);
	free(a151);
}

static void test_checks(void)
{
	char err[160], *t;

	check(sms_number_valid("+491701234567"));
	check(sms_number_valid("+1234567"));
	check(sms_number_valid("+123456789012345"));
	check(!sms_number_valid("+1234567890123456"));
	check(!sms_number_valid("+123456"));
	check(!sms_number_valid("491701234567"));
	check(!sms_number_valid("+0491701234567"));
	check(!sms_number_valid("+49 1701234567"));
	check(!sms_number_valid("+49170123456a"));
	check(!sms_number_valid(""));
	check(!sms_number_valid(NULL));

	check(sms_sender_valid("Example"));
	check(sms_sender_valid("My Bank 24"));
	check(sms_sender_valid("12345678901"));
	check(!sms_sender_valid("123456789012"));
	check(!sms_sender_valid(" Bank"));
	check(!sms_sender_valid("Bank "));
	check(!sms_sender_valid("Bank-24"));
	check(!sms_sender_valid("B\xc3\xa4nk"));
	check(!sms_sender_valid("Bank\n"));
	check(!sms_sender_valid(""));

	check(sms_template_valid("{otp}", err, sizeof(err)));
	check(sms_template_valid("Your {app} code:\n{otp}", err, sizeof(err)));
	check(!sms_template_valid("no code here", err, sizeof(err)) && strstr(err, "{otp}"));
	check(!sms_template_valid("{OTP}", err, sizeof(err)));
	check(!sms_template_valid("", err, sizeof(err)));
	check(!sms_template_valid("{otp}\x01", err, sizeof(err)) && strstr(err, "control"));
	check(!sms_template_valid("{otp}\xc2\x85", err, sizeof(err)));
	check(!sms_template_valid("{otp}\xff", err, sizeof(err)) && strstr(err, "UTF-8"));
	/* 140 characters is the limit, counted in characters, not bytes. */
	t = repeat("a", 135);
	{
		char *u = cat3(t, "{otp}", "");
		check(sms_template_valid(u, err, sizeof(err)));
		free(u);
		u = cat3(t, "{otp}", "a");
		check(!sms_template_valid(u, err, sizeof(err)));
		free(u);
	}
	free(t);
	t = repeat("\xd0\x96", 135); /* Cyrillic Zhe: 270 bytes */
	{
		char *u = cat3(t, "{otp}", "");
		check(sms_template_valid(u, err, sizeof(err)));
		free(u);
		u = cat3(t, "{otp}", "a");
		check(!sms_template_valid(u, err, sizeof(err)) && strstr(err, "140"));
		free(u);
	}
	free(t);
}

static void test_compose(void)
{
	json_t *approval = json_pack("{s:s, s:s}", "amount", "10 EUR", "payee", "Bob\nSmith");
	struct sms_compose_req r = {.tmpl = "{otp} is your {app} code ({otp})",
				    .app = "Shop\r\nX",
				    .code = "012345",
				    .max_segments = 3};
	char err[200], *text = NULL, *long_value;

	check(sms_compose(&r, &text, err, sizeof(err)) == 0);
	check_msg(text && strcmp(text, "012345 is your Shop  X code (012345)") == 0, "%s", text);
	free(text);

	r.tmpl = "Code {otp}\r\nfor {app}\rok";
	r.app = NULL;
	check(sms_compose(&r, &text, err, sizeof(err)) == 0);
	check_msg(text && strcmp(text, "Code 012345\nfor \nok") == 0, "%s", text);
	free(text);

	r.tmpl = "{otp}";
	r.approval_data = approval;
	check(sms_compose(&r, &text, err, sizeof(err)) == 0);
	check_msg(text && strcmp(text, "012345\namount: 10 EUR\npayee: Bob Smith") == 0, "%s",
		  text);
	free(text);

	/* Too many segments: a clear reason, no text. */
	long_value = repeat("z", 500);
	json_object_set_new(approval, "note", json_string(long_value));
	text = (char *)1;
	check(sms_compose(&r, &text, err, sizeof(err)) < 0 && text == NULL);
	check_msg(strstr(err, "4 SMS segments") && strstr(err, "3 allowed"), "%s", err);
	r.max_segments = 0;
	check(sms_compose(&r, &text, err, sizeof(err)) == 0);
	free(text);
	r.tmpl = "no code";
	check(sms_compose(&r, &text, err, sizeof(err)) < 0 && strstr(err, "{otp}"));
	free(long_value);
	json_decref(approval);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = calloc(1, 65536);
	n = fread(buf, 1, 65535, f);
	fclose(f);
	if (len)
		*len = n;
	return buf;
}

/* The only entry of dir into name (size 512); returns the number of entries. */
static int only_entry(const char *dir, char *name)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		snprintf(name, 512, "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static void test_smstools(void)
{
	char spool[600], name[512], *content;
	struct sms_conf sc = {.backend = "smstools", .spool_dir = spool};
	struct sms_message msg = {"+491701234567", "Example", "Code 123456"};
	struct stat st;
	size_t len;
	/* "Kod 1" in Cyrillic-K form: U+041A U+043E U+0434 ' ' '1' */
	static const char ucs2_body[] = "\x04\x1a\x04\x3e\x04\x34\x00\x20\x00\x31";

	snprintf(spool, sizeof(spool), "%s/outgoing", tmpdir);
	/* A production spool belongs to smsd: a missing one is an error, not created. */
	check(sms_send(&sc, &msg) == SMS_EDELIVER);
	check(stat(spool, &st) < 0);
	mkdir(spool, 0700);

	check(sms_send(&sc, &msg) == SMS_OK);
	check(only_entry(spool, name) == 1);
	check_msg(strstr(name, ".LOCK") == NULL && strstr(name, "/otlogin."), "%s", name);
	check(stat(name, &st) == 0 && (st.st_mode & 07777) == 0640);
	content = slurp(name, NULL);
	check_msg(content &&
		      strcmp(content,
			     "To: 491701234567\nFrom: Example\nAlphabet: ISO\n\nCode 123456") == 0,
		  "%s", content);
	free(content);
	unlink(name);

	msg.sender = NULL;
	msg.text = "\xd0\x9a\xd0\xbe\xd0\xb4 1";
	check(sms_send(&sc, &msg) == SMS_OK);
	check(only_entry(spool, name) == 1);
	content = slurp(name, &len);
	check(content && strncmp(content, "To: 491701234567\nAlphabet: UCS2\n\n", 33) == 0);
	check(content && len == 33 + 10 && memcmp(content + 33, ucs2_body, 10) == 0);
	free(content);
	unlink(name);

	/* The euro sign is GSM-7 but not Latin-1: UCS2 so that smsd does not mangle it. */
	msg.text = "\xe2\x82\xac 5";
	check(sms_send(&sc, &msg) == SMS_OK && only_entry(spool, name) == 1);
	content = slurp(name, &len);
	check(content && strstr(content, "Alphabet: UCS2\n\n") && len == 33 + 6);
	free(content);
	unlink(name);
	/* An e acute is Latin-1: one byte, ISO. */
	msg.text = "caf\xc3\xa9";
	check(sms_send(&sc, &msg) == SMS_OK && only_entry(spool, name) == 1);
	content = slurp(name, &len);
	check(content && len >= 4 && memcmp(content + len - 4, "caf\xe9", 4) == 0);
	free(content);
	unlink(name);

	/* Test mode writes to its own spool and creates it. */
	snprintf(spool, sizeof(spool), "%s/testspool", tmpdir);
	sc.backend = "command";
	sc.test_mode = 1;
	msg.text = "hello";
	check(sms_send(&sc, &msg) == SMS_OK);
	check(only_entry(spool, name) == 1);
	check(stat(spool, &st) == 0 && (st.st_mode & 0777) == 0700);
	unlink(name);
}

static int write_script(const char *path, const char *body)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	return chmod(path, 0700);
}

static void test_command(void)
{
	char prog[600], script[2048], path[700], *s;
	struct sms_conf sc = {.backend = "command", .command = prog, .command_timeout = 2};
	struct sms_message msg = {"+491701234567", "Example", "Code 123456\nline two"};
	struct timespec t0, t1;

	snprintf(prog, sizeof(prog), "%s/record", tmpdir);
	snprintf(script, sizeof(script),
		 "printf '%%s|%%s|%%s' \"$#\" \"$1\" \"$2\" >%s/args\ncat >%s/stdin\n"
		 "env >%s/env\nls /proc/$$/fd >%s/fds\nexit 0",
		 tmpdir, tmpdir, tmpdir, tmpdir);
	check(write_script(prog, script) == 0);
	/* What the worker's environment holds under FastCGI must not reach the program. */
	setenv("HTTP_AUTHORIZATION", "Bearer secret-token", 1);
	check(sms_send(&sc, &msg) == SMS_OK);
	snprintf(path, sizeof(path), "%s/args", tmpdir);
	s = slurp(path, NULL);
	check_msg(s && strcmp(s, "2|+491701234567|Example") == 0, "%s", s);
	free(s);
	snprintf(path, sizeof(path), "%s/stdin", tmpdir);
	s = slurp(path, NULL);
	check(s && strcmp(s, "Code 123456\nline two") == 0);
	free(s);
	snprintf(path, sizeof(path), "%s/env", tmpdir);
	s = slurp(path, NULL);
	check(s && strstr(s, "secret-token") == NULL && strstr(s, "PATH=") != NULL);
	free(s);
	snprintf(path, sizeof(path), "%s/fds", tmpdir);
	s = slurp(path, NULL);
	/* 0, 1, 2 and the fd ls itself opens for /proc/$$/fd's listing at most. */
	check_msg(s && strstr(s, "5\n") == NULL && strstr(s, "6\n") == NULL, "%s", s);
	free(s);

	/* No sender: the argument is still there, empty. */
	msg.sender = NULL;
	check(sms_send(&sc, &msg) == SMS_OK);
	snprintf(path, sizeof(path), "%s/args", tmpdir);
	s = slurp(path, NULL);
	check_msg(s && strcmp(s, "2|+491701234567|") == 0, "%s", s);
	free(s);

	check(write_script(prog, "cat >/dev/null\nexit 3") == 0);
	check(sms_send(&sc, &msg) == SMS_EDELIVER);
	check(write_script(prog, "kill -9 $$") == 0);
	check(sms_send(&sc, &msg) == SMS_EDELIVER);
	/* Exits without reading stdin: only the status counts. */
	check(write_script(prog, "exit 0") == 0);
	check(sms_send(&sc, &msg) == SMS_OK);

	/*
	 * A program that hangs (and a child of it holding stdout) is killed after
	 * command_timeout = 2 s. The bound asserted is generous (< 15 s) because it only
	 * exists to tell a hang from a kill on a loaded machine.
	 */
	check(write_script(prog, "sleep 60 &\nsleep 60") == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check(sms_send(&sc, &msg) == SMS_EDELIVER);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	check(t1.tv_sec - t0.tv_sec < 15);

	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	sc.command = path;
	check(sms_send(&sc, &msg) == SMS_EDELIVER);
	sc.command = "relative/prog";
	check(sms_send(&sc, &msg) == SMS_ECONFIG);
	sc.command = "";
	check(sms_send(&sc, &msg) == SMS_ECONFIG);
}

static void test_email(void)
{
	char maildir[600], newdir[700], name[512], *s;
	struct mail_conf mc = {.maildir = maildir};
	struct sms_conf sc = {.backend = "email",
			      .email_gateway = "{number}@sms.example.net",
			      .mail_from = "otlogin@example.org",
			      .mail = &mc};
	struct sms_message msg = {"+491701234567", "Example", "Code 123456\nfor Shop"};

	snprintf(maildir, sizeof(maildir), "%s/maildir", tmpdir);
	snprintf(newdir, sizeof(newdir), "%s/new", maildir);
	check(sms_send(&sc, &msg) == SMS_OK);
	check(only_entry(newdir, name) == 1);
	s = slurp(name, NULL);
	check(s && strstr(s, "\r\nTo: 491701234567@sms.example.net\r\n"));
	check(s && strstr(s, "From: otlogin@example.org\r\n"));
	check(s && strstr(s, "Content-Type: text/plain; charset=utf-8\r\n"));
	check(s && strstr(s, "\r\n\r\nCode 123456\r\nfor Shop\r\n"));
	free(s);
	unlink(name);

	msg.text = "\xd0\x9a\xd0\xbe\xd0\xb4 123456";
	check(sms_send(&sc, &msg) == SMS_OK && only_entry(newdir, name) == 1);
	s = slurp(name, NULL);
	check(s && strstr(s, "Content-Transfer-Encoding: base64\r\n") &&
	      strstr(s, "0JrQvtC0IDEyMzQ1Ng=="));
	free(s);
	unlink(name);

	sc.email_gateway = "sms.example.net";
	check(sms_send(&sc, &msg) == SMS_ECONFIG);
	sc.email_gateway = "{number}@bad domain";
	check(sms_send(&sc, &msg) == SMS_ECONFIG);
}

static void test_send_checks(void)
{
	struct sms_conf sc = {.backend = "none"};
	struct sms_message msg = {"+491701234567", NULL, "hi"};

	check(sms_backend_for(&sc) == NULL);
	check(sms_send(&sc, &msg) == SMS_ECONFIG);
	sc.backend = "smstools";
	check(sms_backend_for(&sc) == &sms_smstools_backend);
	msg.to = "491701234567";
	check(sms_send(&sc, &msg) == SMS_EINPUT);
	msg.to = "+491701234567";
	msg.sender = "bad-sender!";
	check(sms_send(&sc, &msg) == SMS_EINPUT);
	msg.sender = NULL;
	msg.text = "";
	check(sms_send(&sc, &msg) == SMS_EINPUT);
	check(sms_backend_name_valid("none") && sms_backend_name_valid("email"));
	check(!sms_backend_name_valid("twilio") && !sms_backend_name_valid(NULL));
}

/* Load a configuration made of text; returns conf_load's result, err filled. */
static int load(struct conf *cf, const char *text, char *err, size_t errlen)
{
	char path[700];
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "%s/t.conf", tmpdir);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	conf_defaults(cf);
	rc = conf_load(cf, path, err, errlen);
	return rc;
}

static void test_conf(void)
{
	struct conf cf;
	struct sms_conf sc;
	struct mail_conf mc;
	char err[512];

	check(load(&cf, "[mail]\nsmtp_host = relay.example\n", err, sizeof(err)) == 0);
	check(strcmp(cf.sms_backend, "none") == 0 && cf.sms_max_segments == 3);
	check(!conf_test_mode(&cf));
	mc = ctx_mail_conf(&cf);
	sc = ctx_sms_conf(&cf, &mc);
	check(mc.smtp_host != NULL && sms_backend_for(&sc) == NULL);
	conf_free(&cf);

	/* No relay means the development Maildir: that is test mode, SMS go to the test spool. */
	check(load(&cf, "[sms]\nbackend = command\ncommand = /bin/true\ntest_spool_dir = sms\n",
		   err, sizeof(err)) == 0);
	check(conf_test_mode(&cf));
	mc = ctx_mail_conf(&cf);
	sc = ctx_sms_conf(&cf, &mc);
	check(mc.smtp_host == NULL && sms_backend_for(&sc) == &sms_smstools_backend);
	check(strncmp(sc.spool_dir, tmpdir, strlen(tmpdir)) == 0 && strstr(sc.spool_dir, "/sms"));
	conf_free(&cf);

	check(load(&cf, "[server]\ntest_mode = yes\n[mail]\nsmtp_host = relay.example\n", err,
		   sizeof(err)) == 0);
	check(conf_test_mode(&cf));
	mc = ctx_mail_conf(&cf);
	check(mc.smtp_host == NULL);
	conf_free(&cf);

	check(load(&cf, "[sms]\nbackend = twilio\n", err, sizeof(err)) < 0 &&
	      strstr(err, "backend"));
	conf_free(&cf);
	check(load(&cf, "[sms]\nbackend = email\n", err, sizeof(err)) < 0 &&
	      strstr(err, "email_gateway"));
	conf_free(&cf);
	check(load(&cf, "[sms]\nbackend = command\n", err, sizeof(err)) < 0 &&
	      strstr(err, "command"));
	conf_free(&cf);
	check(load(&cf, "[sms]\ndefault_message = hello\n", err, sizeof(err)) < 0 &&
	      strstr(err, "{otp}"));
	conf_free(&cf);
	check(load(&cf, "[sms]\nsender_id = much too long\n", err, sizeof(err)) < 0 &&
	      strstr(err, "sender_id"));
	conf_free(&cf);
	check(load(&cf, "[sms]\nmax_segments = 11\n", err, sizeof(err)) < 0);
	conf_free(&cf);
	check(load(&cf,
		   "[sms]\nbackend = smstools\nspool_dir = /var/spool/sms/outgoing\n"
		   "sender_id = Example\nmax_segments = 1\ndefault_message = {app}: {otp}\n",
		   err, sizeof(err)) == 0);
	check(strcmp(cf.sms_sender_id, "Example") == 0 && cf.sms_max_segments == 1);
	conf_free(&cf);
}

int main(void)
{
	if (crypto_init() < 0 || mkdtemp(tmpdir) == NULL) {
		printf("Bail out! setup\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	test_measure();
	test_checks();
	test_compose();
	test_smstools();
	test_command();
	test_email();
	test_send_checks();
	test_conf();
	fixture_remove(tmpdir);
	return check_done();
}
