#include "jsonio.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/*
 * Jansson's error text quotes the offending input ("near '...'"), which may be any bytes, and
 * snprintf may cut a UTF-8 sequence in two: an error message must stay a valid JSON string.
 */
static void printable_ascii(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			*p = '?';
}

json_t *jsonio_parse(const char *body, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;

	if (len == 0) {
		snprintf(err, errlen, "Request body must be a JSON object");
		return NULL;
	}
	/* Jansson rejects \u0000 in strings unless JSON_ALLOW_NUL: keep that default. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "Malformed JSON: %s", jerr.text);
		printable_ascii(err);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		snprintf(err, errlen, "Request body must be a JSON object");
		return NULL;
	}
	return root;
}

static int has_controls(const char *s, int allow_whitespace)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (allow_whitespace && (*p == '\n' || *p == '\r' || *p == '\t'))
			continue;
		if (*p < 0x20 || *p == 0x7f)
			return 1;
	}
	return 0;
}

static int key_chars_ok(const char *key)
{
	if (*key == '\0')
		return 0;
	for (; *key; key++)
		if (!((*key >= 'a' && *key <= 'z') || (*key >= 'A' && *key <= 'Z') ||
		      (*key >= '0' && *key <= '9') || *key == '_' || *key == '.' || *key == '-'))
			return 0;
	return 1;
}

static int check_flatmap(json_t *v, const struct jv_field *f, char *err, size_t errlen)
{
	const char *key;
	json_t *member;

	if (json_object_size(v) > (f->maxlen ? f->maxlen : 10)) {
		snprintf(err, errlen, "%s has too many members", f->name);
		return -1;
	}
	json_object_foreach(v, key, member)
	{
		if (!key_chars_ok(key) || strlen(key) > 64) {
			snprintf(err, errlen, "%s: invalid key", f->name);
			return -1;
		}
		if (!json_is_string(member) || json_string_length(member) > 1024 ||
		    has_controls(json_string_value(member), 0)) {
			snprintf(err, errlen, "%s.%s must be a short string", f->name, key);
			return -1;
		}
	}
	return 0;
}

static int is_ip_address(const char *s)
{
	unsigned char raw[16];
	return inet_pton(AF_INET, s, raw) == 1 || inet_pton(AF_INET6, s, raw) == 1;
}

static int check_string(json_t *v, const struct jv_field *f, char *err, size_t errlen)
{
	size_t max = f->maxlen ? f->maxlen : 1024;
	const char *s;

	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s must be a string", f->name);
		return -1;
	}
	s = json_string_value(v);
	/* Strings are NUL-free (JSON_ALLOW_NUL is not set), so strlen is the real length. */
	if (f->type == JV_STRING && s[0] == '\0') {
		snprintf(err, errlen, "%s must not be empty", f->name);
		return -1;
	}
	if (json_string_length(v) > max) {
		snprintf(err, errlen, "%s is longer than %zu characters", f->name, max);
		return -1;
	}
	if (has_controls(s, f->type == JV_TEXT)) {
		snprintf(err, errlen, "%s contains control characters", f->name);
		return -1;
	}
	if (f->type == JV_IPADDR && !is_ip_address(s)) {
		snprintf(err, errlen, "%s must be an IPv4 or IPv6 address", f->name);
		return -1;
	}
	if (f->type == JV_ENUM) {
		for (const char *const *e = f->values; *e; e++)
			if (strcmp(*e, s) == 0)
				return 0;
		snprintf(err, errlen, "%s has an unsupported value", f->name);
		return -1;
	}
	return 0;
}

static int check_int(json_t *v, const struct jv_field *f, char *err, size_t errlen)
{
	double d;
	long long n;

	if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else if (json_is_real(v)) {
		d = json_real_value(v);
		if (d != floor(d) || d < -9e15 || d > 9e15)
			goto bad;
		n = (long long)d;
	} else {
		goto bad;
	}
	if (n < f->min || n > f->max) {
		snprintf(err, errlen, "%s must be between %lld and %lld", f->name, f->min, f->max);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "%s must be an integer", f->name);
	return -1;
}

int jsonio_check(json_t *obj, const struct jv_field *fields, char *err, size_t errlen)
{
	for (const struct jv_field *f = fields; f->name != NULL; f++) {
		json_t *v = json_object_get(obj, f->name);
		int rc = 0;

		if (f->type == JV_INCLUDE) {
			if (jsonio_check(obj, f->sub, err, errlen) < 0)
				return -1;
			continue;
		}
		if (v == NULL) {
			if (f->required) {
				snprintf(err, errlen, "%s is required", f->name);
				return -1;
			}
			continue;
		}
		switch (f->type) {
		case JV_STRING:
		case JV_TEXT:
		case JV_ENUM:
		case JV_IPADDR:
			rc = check_string(v, f, err, errlen);
			break;
		case JV_BOOL:
			if (!json_is_boolean(v)) {
				snprintf(err, errlen, "%s must be a boolean", f->name);
				rc = -1;
			}
			break;
		case JV_INT:
			rc = check_int(v, f, err, errlen);
			break;
		case JV_OBJECT:
			if (!json_is_object(v)) {
				snprintf(err, errlen, "%s must be an object", f->name);
				rc = -1;
			} else if (f->sub != NULL) {
				rc = jsonio_check(v, f->sub, err, errlen);
			}
			break;
		case JV_INCLUDE:
			break;
		case JV_FLATMAP:
			if (!json_is_object(v)) {
				snprintf(err, errlen, "%s must be an object", f->name);
				rc = -1;
			} else {
				rc = check_flatmap(v, f, err, errlen);
			}
			break;
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

const char *jsonio_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

long long jsonio_int(json_t *obj, const char *key, long long def)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return def;
}

int jsonio_true(json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
}

char *jsonio_dump(const json_t *obj)
{
	return json_dumps(obj, JSON_COMPACT);
}
