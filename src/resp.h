/*
 * resp: the response being built for one request (status, headers, body) and the single table
 * that maps every API error to its HTTP status, public message and error_code.
 */
#ifndef OTLOGIN_RESP_H
#define OTLOGIN_RESP_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

/*
 * Which error_code spelling an endpoint family uses (API.md: Transmit mixes them):
 * symbolic strings for OTP, "400"-style strings for magic links, numbers elsewhere; the users
 * API and the redirect-based One-Time Login (API-OIDC.md part A) also wrap a 400's message in
 * an array.
 */
enum resp_dialect { DIALECT_PLAIN = 0, DIALECT_OTP, DIALECT_LINK, DIALECT_USERS, DIALECT_REDIRECT };

struct resp {
	int status;
	char *headers; /* extra header lines, each ending in CRLF */
	size_t headers_len;
	char *body;
	size_t body_len;
	const char *content_type;
	enum resp_dialect dialect;
	int head_only; /* HEAD: headers but no body */
	int fatal;     /* the store saw DB_RUNRECOVERY: answer, then exit the worker */
};

void resp_init(struct resp *r);
void resp_free(struct resp *r);

/*
 * The longest header value resp_header passes on, in bytes: far below what lighttpd, nginx
 * (fastcgi_buffer_size, 4 KiB for the whole header) and Apache accept from the application.
 */
#define RESP_HEADER_MAX 2047

/*
 * Add a header line "name: value" (value formatted). A value with CR/LF or longer than
 * RESP_HEADER_MAX is refused (logged), never cut short: callers that build long values (the
 * link's redirect) check their length first.
 */
void resp_header(struct resp *r, const char *name, const char *fmt, ...)
    __attribute__((format(__printf__, 3, 4)));

/* Answer status with body (reference stolen; NULL for an empty body). */
void resp_json(struct resp *r, int status, json_t *body);

/* Answer an HTML page (text/html; charset=utf-8), body copied. */
void resp_html(struct resp *r, int status, const char *html);

/* Answer err from the table; detail (may be NULL) replaces the table's message. */
void resp_error(struct resp *r, enum err err, const char *detail);

/* RFC 6749 error for the token endpoints: {"error":..., "error_description":...}. */
void resp_oauth_error(struct resp *r, int status, const char *error, const char *description);

/* The HTTP reason phrase of a status. */
const char *resp_reason(int status);

/*
 * Serialise as a CGI response (Status line, headers, blank line, body) through write.
 * Returns 0, or -1 when write failed.
 */
int resp_write(const struct resp *r, size_t (*write)(const void *buf, size_t len, void *ctx),
	       void *ctx);

#endif
