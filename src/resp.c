#include "resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct err_entry {
	int status;
	const char *code[5]; /* per dialect: PLAIN, OTP, LINK, USERS, REDIRECT; NULL: numeric */
	const char *message;
};

/* The one table of public errors. */
static const struct err_entry err_table[ERR_COUNT] = {
    [ERR_INVALID_INPUT] = {400, {NULL, "system_invalid_input", "400"}, "Invalid input"},
    [ERR_INVALID_TOKEN] = {401, {NULL, NULL, NULL}, "Invalid token"},
    [ERR_FORBIDDEN] = {403, {NULL, NULL, "403"}, "The client is not allowed to do this"},
    [ERR_NOT_FOUND] = {404, {NULL, NULL, NULL}, "Not found"},
    [ERR_METHOD] = {405, {NULL, NULL, NULL}, "Method not allowed"},
    [ERR_TOO_LARGE] = {413, {NULL, NULL, NULL}, "Request body too large"},
    [ERR_MEDIA_TYPE] = {415, {NULL, NULL, NULL}, "Unsupported content type"},
    [ERR_CONFLICT] = {409, {NULL, NULL, NULL}, "Conflict"},
    [ERR_RATE_LIMITED] = {429, {NULL, NULL, NULL}, "Too many requests"},
    [ERR_INTERNAL] = {500, {NULL, NULL, NULL}, "Internal error"},
    [ERR_DELIVERY] = {502,
		      {"external_provider_configuration_error",
		       "external_provider_configuration_error", "502"},
		      "The message could not be delivered"},
    [ERR_UNAVAILABLE] = {503, {NULL, NULL, NULL}, "Service temporarily unavailable"},
    [ERR_BAD_CREDENTIALS] = {400,
			     {"auth_invalid_credentials", "auth_invalid_credentials", "400"},
			     "Invalid passcode"},
    [ERR_CODE_EXPIRED] = {400,
			  {"auth_otp_passcode_expired", "auth_otp_passcode_expired", "400"},
			  "Passcode expired"},
    [ERR_LOCKED] = {403, {"auth_locked", "auth_locked", "403"}, "Too many failed attempts"},
    [ERR_USER_NOT_FOUND] = {404, {NULL, "user_not_found", "404"}, "User not found"},
    [ERR_USER_NOT_ACTIVE] = {403, {NULL, "user_not_active", "403"}, "User is not active"},
    [ERR_EMAIL_MISSING] = {404,
			   {NULL, "user_email_address_missing", "404"},
			   "User has no email address"},
    [ERR_PHONE_MISSING] = {404,
			   {NULL, "user_phone_number_missing", "404"},
			   "User has no phone number"},
    [ERR_ORG_NOT_MEMBER] = {400,
			    {NULL, "system_invalid_input", "400"},
			    "User is not a member of the organization"},
    [ERR_SESSION_NOT_FOUND] = {400, {NULL, "system_invalid_input", "400"}, "Session not found"},
};

void resp_init(struct resp *r)
{
	memset(r, 0, sizeof(*r));
	r->status = 500;
}

void resp_free(struct resp *r)
{
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

void resp_header(struct resp *r, const char *name, const char *fmt, ...)
{
	char value[RESP_HEADER_MAX + 1], *grown;
	size_t add;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(value)) {
		log_err("refused a response header longer than %d bytes: %s", RESP_HEADER_MAX,
			name);
		return;
	}
	if (strpbrk(value, "\r\n") != NULL) {
		log_err("refused a response header with CR/LF: %s", name);
		return;
	}
	add = strlen(name) + 2 + strlen(value) + 2;
	grown = realloc(r->headers, r->headers_len + add + 1);
	if (grown == NULL)
		return;
	r->headers = grown;
	snprintf(r->headers + r->headers_len, add + 1, "%s: %s\r\n", name, value);
	r->headers_len += add;
}

static void resp_set_body(struct resp *r, int status, const char *ctype, char *body, size_t len)
{
	free(r->body);
	r->status = status;
	r->content_type = ctype;
	r->body = body;
	r->body_len = len;
}

void resp_json(struct resp *r, int status, json_t *body)
{
	char *text = NULL;

	if (body != NULL) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		if (text == NULL) {
			resp_set_body(r, 500, NULL, NULL, 0);
			return;
		}
	}
	resp_set_body(r, status, text ? "application/json; charset=utf-8" : NULL, text,
		      text ? strlen(text) : 0);
}

void resp_html(struct resp *r, int status, const char *html)
{
	char *copy = strdup(html);
	resp_set_body(r, copy ? status : 500, copy ? "text/html; charset=utf-8" : NULL, copy,
		      copy ? strlen(copy) : 0);
}

void resp_error(struct resp *r, enum err err, const char *detail)
{
	const struct err_entry *e = &err_table[err];
	const char *code = e->code[r->dialect];
	/* A detail that is not valid UTF-8 cannot be a JSON string: the table's text stands. */
	json_t *message = detail ? json_string(detail) : NULL;
	json_t *body;

	if (message == NULL)
		message = json_string(e->message);
	if ((r->dialect == DIALECT_USERS || r->dialect == DIALECT_REDIRECT) && e->status == 400)
		message = json_pack("[o]", message);
	body = json_pack("{s:o, s:o}", "message", message, "error_code",
			 code ? json_string(code) : json_integer(e->status));
	if (err == ERR_INVALID_TOKEN)
		resp_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
	resp_json(r, e->status, body);
}

void resp_oauth_error(struct resp *r, int status, const char *error, const char *description)
{
	json_t *body = json_pack("{s:s}", "error", error);
	if (description != NULL)
		json_object_set_new(body, "error_description", json_string(description));
	if (status == 401)
		resp_header(r, "WWW-Authenticate", "Basic realm=\"otlogin\"");
	resp_json(r, status, body);
}

const char *resp_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 303:
		return "See Other";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 429:
		return "Too Many Requests";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return status < 500 ? "Error" : "Internal Server Error";
	}
}

int resp_write(const struct resp *r, size_t (*write)(const void *buf, size_t len, void *ctx),
	       void *ctx)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof(head),
		     "Status: %d %s\r\n"
		     "Cache-Control: no-store\r\n"
		     "Pragma: no-cache\r\n"
		     "X-Content-Type-Options: nosniff\r\n",
		     r->status, resp_reason(r->status));
	if (r->content_type != NULL)
		n += snprintf(head + n, sizeof(head) - n, "Content-Type: %s\r\n", r->content_type);
	n += snprintf(head + n, sizeof(head) - n, "Content-Length: %zu\r\n", r->body_len);
	if (write(head, (size_t)n, ctx) != (size_t)n)
		return -1;
	if (r->headers_len && write(r->headers, r->headers_len, ctx) != r->headers_len)
		return -1;
	if (write("\r\n", 2, ctx) != 2)
		return -1;
	if (!r->head_only && r->body_len && write(r->body, r->body_len, ctx) != r->body_len)
		return -1;
	return 0;
}
