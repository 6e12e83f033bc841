/*
 * jsonio: strict JSON request parsing (Jansson, duplicate keys rejected) and table-driven
 * validation of an object's fields, so that handlers only see values of the declared shape.
 */
#ifndef OTLOGIN_JSONIO_H
#define OTLOGIN_JSONIO_H

#include <jansson.h>
#include <stddef.h>

enum jv_type {
	JV_STRING, /* non-empty string, at most maxlen bytes, no control characters */
	JV_TEXT,   /* string that may be empty and may hold newlines/tabs (mail texts) */
	JV_BOOL,
	JV_INT,	    /* integer (or a real with an integral value) within min..max */
	JV_ENUM,    /* one of the strings in values */
	JV_OBJECT,  /* any object; its members are checked by sub when sub is not NULL */
	JV_FLATMAP, /* object of at most maxlen string members, keys [A-Za-z0-9_.-] */
	JV_IPADDR,  /* an IPv4 or IPv6 address in its textual form */
	JV_INCLUDE  /* no member: the fields of sub, checked on this same object, in their place */
};

struct jv_field {
	const char *name;
	enum jv_type type;
	int required;
	size_t maxlen;		    /* JV_STRING/JV_TEXT: bytes (0: 1024); JV_FLATMAP: members */
	long long min, max;	    /* JV_INT */
	const char *const *values;  /* JV_ENUM: NULL-terminated */
	const struct jv_field *sub; /* JV_OBJECT, JV_INCLUDE: a table, ended by a NULL name */
};

/* Table entries, spelled with designated initializers. */
#define JV_F_STRING(n, req, max)                                                                   \
	{                                                                                          \
		.name = (n), .type = JV_STRING, .required = (req), .maxlen = (max)                 \
	}
#define JV_F_TEXT(n, req, max)                                                                     \
	{                                                                                          \
		.name = (n), .type = JV_TEXT, .required = (req), .maxlen = (max)                   \
	}
#define JV_F_BOOL(n, req)                                                                          \
	{                                                                                          \
		.name = (n), .type = JV_BOOL, .required = (req)                                    \
	}
#define JV_F_INT(n, req, lo, hi)                                                                   \
	{                                                                                          \
		.name = (n), .type = JV_INT, .required = (req), .min = (lo), .max = (hi)           \
	}
#define JV_F_ENUM(n, req, vals)                                                                    \
	{                                                                                          \
		.name = (n), .type = JV_ENUM, .required = (req), .values = (vals)                  \
	}
#define JV_F_OBJECT(n, req, subtable)                                                              \
	{                                                                                          \
		.name = (n), .type = JV_OBJECT, .required = (req), .sub = (subtable)               \
	}
#define JV_F_FLATMAP(n, req, max)                                                                  \
	{                                                                                          \
		.name = (n), .type = JV_FLATMAP, .required = (req), .maxlen = (max)                \
	}
#define JV_F_IPADDR(n, req)                                                                        \
	{                                                                                          \
		.name = (n), .type = JV_IPADDR, .required = (req), .maxlen = 64                    \
	}
#define JV_F_INCLUDE(subtable)                                                                     \
	{                                                                                          \
		.name = "", .type = JV_INCLUDE, .sub = (subtable)                                  \
	}
#define JV_END                                                                                     \
	{                                                                                          \
		.name = NULL                                                                       \
	}

/*
 * Parse a request body that must be one JSON object. Returns a new reference, or NULL with a
 * short public message in err (size errlen).
 */
json_t *jsonio_parse(const char *body, size_t len, char *err, size_t errlen);

/*
 * Check obj's members against fields (ended by an entry with a NULL name). Members not in the
 * table are ignored. Returns 0, or -1 with a public message naming the field in err.
 */
int jsonio_check(json_t *obj, const struct jv_field *fields, char *err, size_t errlen);

/* Borrowed string value of key, or NULL when absent (call after jsonio_check). */
const char *jsonio_str(json_t *obj, const char *key);
/* Integer value of key (integral reals too), or def when absent. */
long long jsonio_int(json_t *obj, const char *key, long long def);
/* 1 when key is the JSON true, else 0. */
int jsonio_true(json_t *obj, const char *key);

/* A new compact JSON text of obj (borrowed); caller frees. NULL on error. */
char *jsonio_dump(const json_t *obj);

#endif
