#include "page.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "html.h"

#define TEXTS_MAX 65536

/* The built-in English texts: the same keys as etc/templates/en/texts. */
static const char *const builtin[][2] = {
    {"email_title", "Sign in to {app}"},
    {"email_intro", "Enter your email address. We will send you a code and a sign-in link."},
    {"email_label", "Email address"},
    {"email_submit", "Continue"},
    {"email_invalid", "Enter a valid email address."},
    {"code_title", "Check your email"},
    {"code_intro", "We sent a code and a sign-in link to {address}. Enter the code here, or "
		   "open the link on this or another device."},
    {"code_only_intro", "We sent a code to {address}. Enter it here."},
    {"link_only_intro", "We sent a sign-in link to {address}. Open it on this or another "
			"device: this page continues by itself."},
    {"method_unavailable", "This way of signing in is not available for {app}."},
    {"phone_intro", "Or sign in with your phone number: we will send a code by SMS."},
    {"phone_label", "Phone number"},
    {"phone_submit", "Send a code by SMS"},
    {"phone_invalid", "Enter the phone number in international format, such as +41 79 123 45 67."},
    {"mfa_title", "One more step"},
    {"mfa_intro", "{app} asks for a second step: we will send a code by SMS to {phone}."},
    {"mfa_submit", "Send the code"},
    {"sms_failed", "The SMS could not be sent. Try again later."},
    {"code_label", "Code"},
    {"code_submit", "Sign in"},
    {"code_waiting", "This page checks every few seconds whether the link was opened."},
    {"wait_link", "Opened the link on another device? Wait for it here."},
    {"wait_back", "Enter the code instead"},
    {"code_other", "Use another email address"},
    {"code_wrong", "That code is not right. Check the email and try again."},
    {"code_dead", "Too many wrong codes. Use the button below to ask for a new one."},
    {"code_expired", "That code has expired. Ask for a new one."},
    {"locked", "Too many attempts. Try again in {seconds} seconds."},
    {"rate_limited", "Too many requests. Try again in {seconds} seconds."},
    {"user_not_found", "There is no account for this address."},
    {"user_disabled", "This account is disabled."},
    {"send_failed", "The email could not be sent. Try again later."},
    {"restarted", "Your sign-in took too long, so it started again."},
    {"error_title", "Sign-in is not possible"},
    {"error_text", "The sign-in request is not valid: {reason}. Go back to the application and "
		   "try again."},
    {"gone_text", "This sign-in is no longer valid. Go back to the application and start "
		  "again."},
    {"csrf_text", "This form was not sent from the sign-in page. Go back to the application "
		  "and start again."},
    {"link_title", "Sign in"},
    {"link_intro", "Continue to sign in as {address}."},
    {"link_submit", "Continue"},
    {"elsewhere_title", "You are signed in on your other device"},
    {"elsewhere_text", "You can close this page: the page where you started signing in "
		       "continues by itself."},
    {"link_used_title", "This link was already used"},
    {"link_used_text", "Each sign-in link works once. Go back to the sign-in page if you still "
		       "need to sign in."},
    {"link_expired_title", "This link has expired"},
    {"link_expired_text", "Sign-in links work for a limited time. Start the sign-in again."},
    {"link_unknown_title", "This link is not valid"},
    {"link_unknown_text", "The link is incomplete or unknown. Copy the whole link from the "
			  "email."},
    {"link_refused_text", "This request did not come from the sign-in page, so the link was not "
			  "used. Open the link from your email again and press Continue."},
};

int page_parse_texts(const char *data, json_t *into)
{
	int n = 0;

	while (*data) {
		size_t len = strcspn(data, "\n");
		char line[4096], *eq, *k, *v, *end;

		if (len >= sizeof(line))
			return -1;
		memcpy(line, data, len);
		line[len] = '\0';
		data += len + (data[len] == '\n');
		if (len && line[len - 1] == '\r')
			line[len - 1] = '\0';
		for (k = line; *k == ' ' || *k == '\t'; k++)
			;
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL)
			return -1;
		for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		if (*k == '\0' || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(k))
			return -1;
		if (json_object_set_new(into, k, json_string(v)) < 0)
			return -1; /* not UTF-8 */
		n++;
	}
	return n;
}

int page_locale_valid(const char *name)
{
	size_t n = strlen(name);

	return n >= 2 && n < PAGE_LOCALE_MAX &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
		   n &&
	       isalpha((unsigned char)name[0]);
}

/* 1 when dir/locale/texts is a file. */
static int installed(const char *dir, const char *locale)
{
	char path[4096];
	struct stat st;

	if (!page_locale_valid(locale) ||
	    snprintf(path, sizeof(path), "%s/%s/texts", dir, locale) >= (int)sizeof(path))
		return 0;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void page_pick_locale(const char *dir, const char *ui_locales, char out[PAGE_LOCALE_MAX])
{
	const char *p = ui_locales ? ui_locales : "";

	snprintf(out, PAGE_LOCALE_MAX, "en");
	while (*p) {
		size_t len = strcspn(p, " ");
		char tag[PAGE_LOCALE_MAX];

		if (len > 0 && len < sizeof(tag)) {
			memcpy(tag, p, len);
			tag[len] = '\0';
			/* Directory names are lower-case, as etc/templates ships them. */
			for (char *q = tag; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			if (installed(dir, tag)) {
				snprintf(out, PAGE_LOCALE_MAX, "%s", tag);
				return;
			}
			tag[strcspn(tag, "-_")] = '\0';
			if (installed(dir, tag)) {
				snprintf(out, PAGE_LOCALE_MAX, "%s", tag);
				return;
			}
		}
		p += len;
		p += strspn(p, " ");
	}
}

/* The file at path (new string), at most TEXTS_MAX bytes, or NULL. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = malloc(TEXTS_MAX + 1);
	n = buf ? fread(buf, 1, TEXTS_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n > TEXTS_MAX || memchr(buf, '\0', n) != NULL) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

int page_texts_load(struct page_texts *t, const char *dir, const char *locale)
{
	char path[4096], *data;
	int rc = -1;

	t->texts = json_object();
	snprintf(t->locale, sizeof(t->locale), "en");
	if (t->texts == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		json_object_set_new(t->texts, builtin[i][0], json_string(builtin[i][1]));
	if (!page_locale_valid(locale) ||
	    snprintf(path, sizeof(path), "%s/%s/texts", dir, locale) >= (int)sizeof(path))
		return -1;
	if ((data = read_file(path)) == NULL)
		return -1;
	if (page_parse_texts(data, t->texts) >= 0) {
		snprintf(t->locale, sizeof(t->locale), "%s", locale);
		rc = 0;
	}
	free(data);
	return rc;
}

void page_texts_free(struct page_texts *t)
{
	json_decref(t->texts);
	t->texts = NULL;
}

const char *page_text(const struct page_texts *t, const char *key)
{
	return json_string_value(json_object_get(t->texts, key)) ?: "";
}

void page_add(struct sbuf *b, const char *text, json_t *vars)
{
	while (*text) {
		const char *open = strchr(text, '{'), *close;
		char name[64], *part;
		size_t n;

		close = open ? strchr(open, '}') : NULL;
		n = open ? (size_t)(open - text) : strlen(text);
		if ((part = strndup(text, n)) != NULL) {
			html_add(b, part, HTML_BREAK_SPACE);
			free(part);
		}
		if (open == NULL)
			return;
		if (close == NULL || (size_t)(close - open - 1) >= sizeof(name)) {
			html_add(b, "{", HTML_BREAK_SPACE);
			text = open + 1;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(close - open - 1), open + 1);
		html_add(b, json_string_value(json_object_get(vars, name)) ?: "", HTML_BREAK_SPACE);
		text = close + 1;
	}
}
