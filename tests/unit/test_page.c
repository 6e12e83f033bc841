/*
 * page: text sets (parsing, the built-in fallback, the shipped en and de sets agree on keys),
 * locale choice from ui_locales, and interpolation that escapes both text and values.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "page.h"

#ifndef TEMPLATES_DIR
#define TEMPLATES_DIR "etc/templates"
#endif

static char *render(const char *text, json_t *vars)
{
	struct sbuf b = {0};
	char *s;

	page_add(&b, text, vars);
	s = sbuf_take(&b);
	return s ? s : strdup("");
}

static void test_parse(void)
{
	json_t *o = json_object();

	check(page_parse_texts("# c\n\n a = one \nb=two=2\r\n", o) == 2);
	check(strcmp(json_string_value(json_object_get(o, "a")), "one") == 0);
	check(strcmp(json_string_value(json_object_get(o, "b")), "two=2") == 0);
	check(page_parse_texts("no equals sign\n", o) == -1);
	check(page_parse_texts("Bad-Key = x\n", o) == -1);
	check(page_parse_texts("k = \xff\xfe\n", o) == -1); /* not UTF-8 */
	json_decref(o);
}

static void test_render(void)
{
	json_t *vars = json_pack("{s:s, s:s}", "app", "<b>\"A&B\"</b>", "address", "j***@x.org");
	char *s;

	s = render("Sign in to {app}", vars);
	check(strcmp(s, "Sign in to &lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt;") == 0);
	free(s);
	s = render("<i>{address}</i> {missing}.", vars);
	check(strcmp(s, "&lt;i&gt;j***@x.org&lt;/i&gt; .") == 0);
	free(s);
	s = render("brace { alone", vars);
	check(strcmp(s, "brace { alone") == 0);
	free(s);
	json_decref(vars);
}

static void test_locales(void)
{
	char loc[PAGE_LOCALE_MAX];

	check(page_locale_valid("de"));
	check(page_locale_valid("pt-BR"));
	check(!page_locale_valid("../etc"));
	check(!page_locale_valid("x"));
	check(!page_locale_valid("d/e"));
	page_pick_locale(TEMPLATES_DIR, NULL, loc);
	check(strcmp(loc, "en") == 0);
	page_pick_locale(TEMPLATES_DIR, "fr de", loc);
	check(strcmp(loc, "de") == 0);
	page_pick_locale(TEMPLATES_DIR, "de-CH", loc);
	check(strcmp(loc, "de") == 0);
	page_pick_locale(TEMPLATES_DIR, "DE", loc);
	check(strcmp(loc, "de") == 0);
	page_pick_locale(TEMPLATES_DIR, "../../etc fr", loc);
	check(strcmp(loc, "en") == 0);
	page_pick_locale("/nonexistent", "de", loc);
	check(strcmp(loc, "en") == 0);
}

static void test_load(void)
{
	struct page_texts en, de, none;
	const char *k;
	json_t *v;

	check(page_texts_load(&en, TEMPLATES_DIR, "en") == 0);
	check(page_texts_load(&de, TEMPLATES_DIR, "de") == 0);
	check(strcmp(de.locale, "de") == 0);
	check(strcmp(page_text(&de, "email_submit"), "Weiter") == 0);
	/* The shipped sets hold the same keys as the built-in English, no more, no fewer. */
	check(page_texts_load(&none, "/nonexistent", "en") == -1);
	check(strcmp(none.locale, "en") == 0);
	check(strcmp(page_text(&none, "email_submit"), "Continue") == 0);
	check(json_object_size(en.texts) == json_object_size(none.texts));
	check(json_object_size(de.texts) == json_object_size(none.texts));
	json_object_foreach(none.texts, k, v)
	{
		check_msg(strcmp(json_string_value(v), page_text(&en, k)) == 0,
			  "en/texts differs from the built-in text of %s", k);
		check_msg(json_object_get(de.texts, k) != NULL, "de/texts lacks %s", k);
	}
	check(strcmp(page_text(&en, "no_such_key"), "") == 0);
	page_texts_free(&en);
	page_texts_free(&de);
	page_texts_free(&none);
}

int main(void)
{
	test_parse();
	test_render();
	test_locales();
	test_load();
	return check_done();
}
