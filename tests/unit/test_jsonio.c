/* jsonio: strict parsing and the validation table, as data-driven valid/invalid cases. */
#include <string.h>

#include "check.h"
#include "jsonio.h"

static const char *const colors[] = {"red", "blue", NULL};
static const struct jv_field sub[] = {JV_F_STRING("subject", 1, 10), JV_F_TEXT("body", 0, 20),
				      JV_END};
/* Checked in its place in fields, on the same object. */
static const struct jv_field extra[] = {JV_F_BOOL("more", 0), JV_END};
static const struct jv_field fields[] = {
    JV_F_STRING("name", 1, 8),	    JV_F_ENUM("color", 0, colors),
    JV_F_INT("n", 0, 1, 60),	    JV_F_BOOL("flag", 0),
    JV_F_OBJECT("content", 0, sub), JV_F_INCLUDE(extra),
    JV_F_FLATMAP("data", 0, 2),	    JV_END,
};

static const char *const valid[] = {
    "{\"name\":\"abc\"}",
    "{\"name\":\"abcdefgh\",\"color\":\"red\",\"n\":60,\"flag\":false}",
    "{\"name\":\"a\",\"n\":5.0}",
    "{\"name\":\"a\",\"unknown\":[1,2,{\"x\":1}]}",
    "{\"name\":\"a\",\"content\":{\"subject\":\"s\",\"body\":\"line\\nline\",\"extra\":1}}",
    "{\"name\":\"a\",\"data\":{\"k.1\":\"v\",\"K_2-x\":\"w\"}}",
    "{\"name\":\"\\u00e9t\\u00e9\"}",
    "{\"name\":\"a\",\"more\":true}",
    "{\"name\":\"a\",\"\":5}", /* the empty key is no included table's */
};

static const char *const invalid[] = {
    "",
    "[]",
    "\"name\"",
    "{\"name\":\"a\"",
    "{\"name\":\"a\",\"name\":\"b\"}", /* duplicate key */
    "{}",			       /* required */
    "{\"name\":\"\"}",
    "{\"name\":1}",
    "{\"name\":null}",
    "{\"name\":\"abcdefghi\"}", /* too long */
    "{\"name\":\"a\\u0000b\"}", /* NUL */
    "{\"name\":\"a\\nb\"}",	/* control in a plain string */
    "{\"name\":\"a\",\"color\":\"green\"}",
    "{\"name\":\"a\",\"color\":1}",
    "{\"name\":\"a\",\"n\":0}",
    "{\"name\":\"a\",\"n\":61}",
    "{\"name\":\"a\",\"n\":1.5}",
    "{\"name\":\"a\",\"n\":\"5\"}",
    "{\"name\":\"a\",\"flag\":\"true\"}",
    "{\"name\":\"a\",\"flag\":1}",
    "{\"name\":\"a\",\"content\":\"x\"}",
    "{\"name\":\"a\",\"content\":{}}",
    "{\"name\":\"a\",\"content\":{\"subject\":\"s\",\"body\":7}}",
    "{\"name\":\"a\",\"data\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}}",
    "{\"name\":\"a\",\"data\":{\"a b\":\"1\"}}",
    "{\"name\":\"a\",\"data\":{\"a\":1}}",
    "{\"name\":\"a\",\"data\":{\"a\":{\"nested\":\"x\"}}}",
    "{\"name\":\"a\"} trailing",
    "{\"name\":\"a\",\"more\":1}",
};

int main(void)
{
	char err[256];
	json_t *v;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		v = jsonio_parse(valid[i], strlen(valid[i]), err, sizeof(err));
		check_msg(v != NULL && jsonio_check(v, fields, err, sizeof(err)) == 0,
			  "valid %zu: %s", i, err);
		json_decref(v);
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		err[0] = '\0';
		v = jsonio_parse(invalid[i], strlen(invalid[i]), err, sizeof(err));
		check_msg(v == NULL || jsonio_check(v, fields, err, sizeof(err)) < 0,
			  "invalid %zu accepted", i);
		check_msg(err[0] != '\0', "invalid %zu: no message", i);
		json_decref(v);
	}
	const char *text = "{\"name\":\"a\",\"n\":7,\"flag\":true}";
	v = jsonio_parse(text, strlen(text), err, sizeof(err));
	check(v != NULL);
	check(strcmp(jsonio_str(v, "name"), "a") == 0);
	check(jsonio_str(v, "missing") == NULL);
	check(jsonio_int(v, "n", 0) == 7);
	check(jsonio_int(v, "missing", 42) == 42);
	check(jsonio_true(v, "flag") == 1);
	check(jsonio_true(v, "name") == 0);
	json_decref(v);
	/* The message names the field. */
	text = "{\"name\":\"a\",\"n\":0}";
	v = jsonio_parse(text, strlen(text), err, sizeof(err));
	check(jsonio_check(v, fields, err, sizeof(err)) < 0 && strstr(err, "n must") != NULL);
	json_decref(v);
	/* An included table's fields are checked in its place: before data. */
	text = "{\"name\":\"a\",\"data\":[],\"more\":\"x\"}";
	v = jsonio_parse(text, strlen(text), err, sizeof(err));
	check(jsonio_check(v, fields, err, sizeof(err)) < 0 &&
	      strcmp(err, "more must be a boolean") == 0);
	json_decref(v);
	return check_done();
}
