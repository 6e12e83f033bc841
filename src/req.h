/*
 * req: one request as the front line sees it: CGI environment, the Authorization header, and a
 * bounded body (CONTENT_LENGTH parsed with a checked conversion). The request owns everything
 * it parsed; req_free releases it and wipes the body, which may carry secrets.
 */
#ifndef OTLOGIN_REQ_H
#define OTLOGIN_REQ_H

#include <jansson.h>
#include <stddef.h>

/* Reads up to len bytes into buf; returns the count, 0 at the end. */
typedef size_t (*req_read_fn)(void *buf, size_t len, void *ctx);
/* Looks up a CGI variable; NULL when unset. */
typedef const char *(*req_env_fn)(const char *name, void *ctx);

enum req_status {
	REQ_OK = 0,
	REQ_TOO_LARGE,	/* 413 */
	REQ_BAD_LENGTH, /* 400: CONTENT_LENGTH malformed or body shorter than announced */
	REQ_NO_METHOD	/* 400: not a CGI request */
};

/* Longest request id taken from the web server (UNIQUE_ID, X-Request-Id). */
#define REQ_ID_MAX 64

struct req_form_pair {
	char *name;
	char *value;
};

struct req {
	const char *method;	  /* borrowed from the environment */
	char *path;		  /* PATH_INFO with a leading "/cis" removed; "/" when empty */
	const char *content_type; /* borrowed, may be NULL */
	const char *authorization;
	const char *query; /* QUERY_STRING, borrowed, may be NULL */
	const char *remote_addr;
	/* Browser headers the magic-link landing page judges a POST by (borrowed, may be NULL). */
	const char *origin;	    /* Origin */
	const char *sec_fetch_site; /* Sec-Fetch-Site */
	const char *cookie;	    /* Cookie */
	char *body;		    /* NUL-terminated, body_len bytes (may be 0) */
	size_t body_len;
	struct req_form_pair *form; /* parsed by req_parse_form */
	size_t nform;
	json_t *json; /* parsed body for JSON routes (owned) */
	/*
	 * The id the log shows for this request: the web server's UNIQUE_ID (Apache
	 * mod_unique_id) or X-Request-Id header when one is 1 to REQ_ID_MAX letters, digits and
	 * "-._:@+/=", else 16 random hex digits. Neither comes from a secret.
	 */
	char request_id[REQ_ID_MAX + 1];
};

/*
 * Read the request from env and the body reader, accepting at most max_body bytes.
 * Returns a req_status; on any status r is initialised and must be released with req_free.
 */
enum req_status req_read(struct req *r, req_env_fn env, req_read_fn read, void *ctx,
			 size_t max_body);

/* 1 when the media type (before any ';' parameters, case-insensitive) is type, else 0. */
int req_content_type_is(const struct req *r, const char *type);

/*
 * Parse an application/x-www-form-urlencoded body into r->form. Returns 0, or -1 when malformed
 * (bad %-escape, a NUL or control byte, or a repeated name: RFC 6749 forbids repeats).
 */
int req_parse_form(struct req *r);

/*
 * Percent-decode len bytes (with plus_is_space, '+' is a space: form encoding) into a new
 * string; NULL when an escape is malformed or the result would hold NUL or a control byte.
 */
char *req_percent_decode(const char *s, size_t len, int plus_is_space);

/* Borrowed value of a form field, or NULL. */
const char *req_form(const struct req *r, const char *name);

/*
 * The bearer token of "Authorization: Bearer <token>" (scheme case-insensitive, exactly one
 * space, token68 characters only), borrowed; NULL when absent or malformed.
 */
const char *req_bearer(const struct req *r);

/*
 * Decode "Authorization: Basic" credentials (RFC 6749 2.3.1: both parts form-urlencoded).
 * Returns 1 with new strings in *user and *pass (caller wipes and frees), 0 when the header
 * is not Basic, -1 when it is malformed.
 */
int req_basic(const struct req *r, char **user, char **pass);

/* Decode one query-string parameter (new string, caller frees) or NULL when absent/malformed. */
char *req_query_param(const struct req *r, const char *name);

/*
 * The value of cookie name in the Cookie header (RFC 6265 5.4: "a=b; c=d"), as a new string;
 * NULL when absent or given more than once (a second copy may come from a sibling host).
 */
char *req_cookie(const struct req *r, const char *name);

void req_free(struct req *r);

#endif
