/*
 * The identifier validators: mail_address_valid (what libesmtp may see: it writes the address
 * verbatim into RCPT TO), the E.164 checks (user_phone_valid, sms_number_valid), sender ids,
 * brand colours and user_normalize for every identifier type.
 *
 * Each validator is compared with an independent statement of its rule as a POSIX regular
 * expression plus length limits, so that a validator accepting anything outside its
 * documented language (a CR/LF, a space, a second '@') or refusing something inside it fails.
 */
#include <ctype.h>
#include <regex.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "mail.h"
#include "sms.h"
#include "user.h"

#define ATEXT "[-A-Za-z0-9!#$%&'*+/=?^_`{|}~]"
#define LABEL "[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"

static regex_t re_addr, re_phone, re_color, re_sender;

static void compile(regex_t *re, const char *pattern)
{
	FUZZ_ASSERT(regcomp(re, pattern, REG_EXTENDED | REG_NOSUB) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	compile(&re_addr, "^" ATEXT "+(\\." ATEXT "+)*@" LABEL "(\\." LABEL ")*$");
	compile(&re_phone, "^\\+[1-9][0-9]{6,14}$");
	compile(&re_color, "^#[0-9A-Fa-f]{6}$");
	compile(&re_sender, "^[A-Za-z0-9]([A-Za-z0-9 ]*[A-Za-z0-9])?$");
	return 0;
}

static int matches(regex_t *re, const char *s)
{
	return regexec(re, s, 0, NULL, 0) == 0;
}

/* RFC 5321 limits: local part 64, domain 253 and each label 63 octets, the whole 254. */
static int addr_oracle(const char *s)
{
	const char *at = strchr(s, '@'), *label;
	size_t len;

	if (!matches(&re_addr, s) || strlen(s) > 254 || at - s > 64 || strlen(at + 1) > 253)
		return 0;
	for (label = at + 1; *label; label += len + (label[len] == '.')) {
		len = strcspn(label, ".");
		if (len > 63)
			return 0;
	}
	return 1;
}

static void check_address(const char *s)
{
	int valid = mail_address_valid(s);

	FUZZ_ASSERT(valid == addr_oracle(s));
	if (valid)
		/* What the SMTP envelope and the To: header rely on, stated directly. */
		FUZZ_ASSERT(strpbrk(s, " \t\r\n<>()[]\\,;:\"") == NULL);
}

static void check_normalize(const char *s)
{
	char *n;

	n = user_normalize(ID_EMAIL, s);
	FUZZ_ASSERT((n != NULL) == mail_address_valid(s));
	if (n != NULL) {
		FUZZ_ASSERT(strlen(n) == strlen(s) && strcasecmp(n, s) == 0);
		for (const char *p = n; *p; p++)
			FUZZ_ASSERT(!isupper((unsigned char)*p));
		/* Canonical forms are fixed points: normalising again changes nothing. */
		char *again = user_normalize(ID_EMAIL, n);
		FUZZ_ASSERT(again != NULL && strcmp(again, n) == 0);
		free(again);
	}
	free(n);

	n = user_normalize(ID_PHONE, s);
	FUZZ_ASSERT((n != NULL) == matches(&re_phone, s));
	FUZZ_ASSERT(n == NULL || strcmp(n, s) == 0);
	free(n);

	for (int type = ID_USER_ID; type <= ID_USERNAME; type++) {
		size_t len = strlen(s);
		int ok = len >= 1 && len <= 128;
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == 0x7f)
				ok = 0;
		n = user_normalize((enum user_idtype)type, s);
		FUZZ_ASSERT((n != NULL) == ok);
		FUZZ_ASSERT(n == NULL || strcmp(n, s) == 0);
		free(n);
	}
	FUZZ_ASSERT(user_normalize(ID_INVALID, s) == NULL);

	enum user_idtype t = user_idtype_parse(s);
	FUZZ_ASSERT(t == ID_INVALID || strcmp(user_idtype_name(t), s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);

	check_address(s);
	check_normalize(s);
	FUZZ_ASSERT(user_phone_valid(s) == matches(&re_phone, s));
	FUZZ_ASSERT(sms_number_valid(s) == user_phone_valid(s));
	FUZZ_ASSERT(mail_color_valid(s) == matches(&re_color, s));
	FUZZ_ASSERT(sms_sender_valid(s) == (matches(&re_sender, s) && strlen(s) <= 11));
	free(s);
	return 0;
}
