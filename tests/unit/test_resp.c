/*
 * resp: every enum err answers a status and a JSON body in each dialect (error_code spelled as
 * the dialect says, the users API's 400 message wrapped in an array), a detail replaces the
 * message, resp_header refuses CR/LF and values over RESP_HEADER_MAX without cutting them,
 * and resp_write serialises status, headers and body (none for HEAD).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "resp.h"

/* The status of each error (err.h's meaning of each). */
static const int status_of[ERR_COUNT] = {
    [ERR_INVALID_INPUT] = 400,	 [ERR_INVALID_TOKEN] = 401,
    [ERR_FORBIDDEN] = 403,	 [ERR_NOT_FOUND] = 404,
    [ERR_METHOD] = 405,		 [ERR_TOO_LARGE] = 413,
    [ERR_MEDIA_TYPE] = 415,	 [ERR_CONFLICT] = 409,
    [ERR_RATE_LIMITED] = 429,	 [ERR_INTERNAL] = 500,
    [ERR_DELIVERY] = 502,	 [ERR_UNAVAILABLE] = 503,
    [ERR_BAD_CREDENTIALS] = 400, [ERR_CODE_EXPIRED] = 400,
    [ERR_LOCKED] = 403,		 [ERR_USER_NOT_FOUND] = 404,
    [ERR_USER_NOT_ACTIVE] = 403, [ERR_EMAIL_MISSING] = 404,
    [ERR_PHONE_MISSING] = 404,	 [ERR_SESSION_NOT_FOUND] = 400,
    [ERR_ORG_NOT_MEMBER] = 400,
};

/* The body of r as JSON (new reference), or NULL. */
static json_t *body_of(const struct resp *r)
{
	return r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

/* error_code and message of err answered in dialect d; 1 when they obey the dialect's rules. */
static int error_fits(enum err err, enum resp_dialect d)
{
	struct resp r;
	json_t *body, *code, *msg;
	int ok = 1;

	resp_init(&r);
	r.dialect = d;
	resp_error(&r, err, NULL);
	body = body_of(&r);
	code = json_object_get(body, "error_code");
	msg = json_object_get(body, "message");
	ok &= r.status == status_of[err];
	ok &= r.content_type != NULL && strncmp(r.content_type, "application/json", 16) == 0;
	ok &= json_object_size(body) == 2;
	/* The users API wraps a 400's message in an array, and only a 400's. */
	if (d == DIALECT_USERS && r.status == 400)
		ok &= json_array_size(msg) == 1 && json_string_length(json_array_get(msg, 0)) > 0;
	else
		ok &= json_string_length(msg) > 0;
	if (json_is_integer(code)) {
		ok &= json_integer_value(code) == r.status;
	} else if (json_is_string(code)) {
		char num[8];
		snprintf(num, sizeof(num), "%d", r.status);
		/* Magic links spell the status as a string; the others use symbols. */
		if (d == DIALECT_LINK)
			ok &= strcmp(json_string_value(code), num) == 0;
		else
			ok &= strspn(json_string_value(code), "abcdefghijklmnopqrstuvwxyz_") ==
				  json_string_length(code) &&
			      d != DIALECT_USERS;
	} else {
		ok = 0;
	}
	/* Every status an error answers has its own reason phrase. */
	ok &= strcmp(resp_reason(r.status), "Error") != 0 &&
	      (r.status == 500 || strcmp(resp_reason(r.status), "Internal Server Error") != 0);
	if (!ok)
		printf("# err %d dialect %d: status %d body %.*s\n", (int)err, (int)d, r.status,
		       (int)r.body_len, r.body ? r.body : "");
	json_decref(body);
	resp_free(&r);
	return ok;
}

/* The error_code of err in dialect d, as a string ("" when numeric); static storage. */
static const char *code_in(enum err err, enum resp_dialect d)
{
	static char out[64];
	struct resp r;
	json_t *body;

	resp_init(&r);
	r.dialect = d;
	resp_error(&r, err, NULL);
	body = body_of(&r);
	snprintf(out, sizeof(out), "%s",
		 json_string_value(json_object_get(body, "error_code")) ?: "");
	json_decref(body);
	resp_free(&r);
	return out;
}

struct sink {
	char buf[8192];
	size_t len;
	size_t fail_after; /* a write that would pass this many bytes fails (0: never) */
};

static size_t sink_write(const void *buf, size_t len, void *ctx)
{
	struct sink *s = ctx;
	if ((s->fail_after && s->len + len > s->fail_after) || s->len + len >= sizeof(s->buf))
		return 0;
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return len;
}

int main(void)
{
	char big[RESP_HEADER_MAX + 2];
	struct resp r;
	struct sink out;
	json_t *body;
	size_t full;
	int all = 1;

	/* Every error, in every dialect. */
	for (int e = ERR_NONE + 1; e < ERR_COUNT; e++)
		for (int d = DIALECT_PLAIN; d <= DIALECT_USERS; d++)
			all &= error_fits((enum err)e, (enum resp_dialect)d);
	check(all);

	/* The spellings API.md names for the passcode and link families. */
	check(strcmp(code_in(ERR_BAD_CREDENTIALS, DIALECT_OTP), "auth_invalid_credentials") == 0);
	check(strcmp(code_in(ERR_CODE_EXPIRED, DIALECT_OTP), "auth_otp_passcode_expired") == 0);
	check(strcmp(code_in(ERR_USER_NOT_FOUND, DIALECT_OTP), "user_not_found") == 0);
	check(strcmp(code_in(ERR_INVALID_INPUT, DIALECT_OTP), "system_invalid_input") == 0);
	check(strcmp(code_in(ERR_BAD_CREDENTIALS, DIALECT_LINK), "400") == 0);
	check(strcmp(code_in(ERR_USER_NOT_FOUND, DIALECT_USERS), "") == 0);
	check(strcmp(code_in(ERR_NOT_FOUND, DIALECT_PLAIN), "") == 0);

	/* A detail replaces the message; one that is not UTF-8 leaves the table's. */
	resp_init(&r);
	resp_error(&r, ERR_INVALID_INPUT, "email is not valid");
	body = body_of(&r);
	check(strcmp(json_string_value(json_object_get(body, "message")) ?: "",
		     "email is not valid") == 0);
	json_decref(body);
	resp_free(&r);
	resp_init(&r);
	r.dialect = DIALECT_USERS;
	resp_error(&r, ERR_INVALID_INPUT, "bad \xff byte");
	body = body_of(&r);
	check(r.status == 400 &&
	      strcmp(json_string_value(json_array_get(json_object_get(body, "message"), 0)) ?: "",
		     "Invalid input") == 0);
	json_decref(body);
	resp_free(&r);

	/* An invalid token names the Bearer scheme's error. */
	resp_init(&r);
	resp_error(&r, ERR_INVALID_TOKEN, NULL);
	check(r.headers != NULL &&
	      strcmp(r.headers, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n") == 0);
	resp_free(&r);

	/* resp_header: formatted, appended in order; CR/LF and long values refused, not cut. */
	resp_init(&r);
	resp_header(&r, "X-One", "%d-%s", 1, "a");
	resp_header(&r, "X-Bad", "a\r\nSet-Cookie: x=1");
	resp_header(&r, "X-Bad", "a\nb");
	resp_header(&r, "X-Bad", "a\rb");
	resp_header(&r, "X-Two", "b");
	check(r.headers != NULL && strcmp(r.headers, "X-One: 1-a\r\nX-Two: b\r\n") == 0);
	check(r.headers_len == strlen("X-One: 1-a\r\nX-Two: b\r\n"));
	resp_free(&r);
	memset(big, 'v', sizeof(big));
	big[RESP_HEADER_MAX] = '\0';
	resp_init(&r);
	resp_header(&r, "Location", "%s", big); /* exactly RESP_HEADER_MAX: passes */
	check(r.headers_len == strlen("Location: ") + RESP_HEADER_MAX + 2);
	big[RESP_HEADER_MAX] = 'v';
	big[RESP_HEADER_MAX + 1] = '\0';
	resp_header(&r, "Location", "%s", big); /* one more: refused */
	check(r.headers_len == strlen("Location: ") + RESP_HEADER_MAX + 2);
	resp_free(&r);
	resp_init(&r);
	resp_header(&r, "Location", "%s%s", big, "more"); /* far over: nothing at all */
	check(r.headers == NULL && r.headers_len == 0);
	resp_free(&r);

	/* JSON bodies: compact, typed; none for a NULL body. */
	resp_init(&r);
	check(r.status == 500);
	resp_json(&r, 201, json_pack("{s:s}", "a", "é"));
	check(r.status == 201 && r.body_len == strlen("{\"a\":\"é\"}") &&
	      memcmp(r.body, "{\"a\":\"é\"}", r.body_len) == 0);
	check(strcmp(r.content_type, "application/json; charset=utf-8") == 0);
	resp_json(&r, 204, NULL);
	check(r.status == 204 && r.body == NULL && r.body_len == 0 && r.content_type == NULL);
	resp_free(&r);

	/* resp_html copies the page. */
	resp_init(&r);
	{
		char page[] = "<p>hi</p>";
		resp_html(&r, 200, page);
		page[0] = 'X';
		check(r.body_len == 9 && memcmp(r.body, "<p>hi</p>", 9) == 0 &&
		      strcmp(r.content_type, "text/html; charset=utf-8") == 0);
	}
	resp_free(&r);

	/* OAuth errors: RFC 6749's members; a 401 asks for Basic authentication. */
	resp_init(&r);
	resp_oauth_error(&r, 401, "invalid_client", "who are you");
	body = body_of(&r);
	check(r.status == 401 &&
	      strcmp(json_string_value(json_object_get(body, "error")) ?: "", "invalid_client") ==
		  0 &&
	      strcmp(json_string_value(json_object_get(body, "error_description")) ?: "",
		     "who are you") == 0);
	check(r.headers && strstr(r.headers, "WWW-Authenticate: Basic") == r.headers);
	json_decref(body);
	resp_free(&r);
	resp_init(&r);
	resp_oauth_error(&r, 400, "invalid_grant", NULL);
	body = body_of(&r);
	check(r.status == 400 && r.headers == NULL && json_object_size(body) == 1);
	json_decref(body);
	resp_free(&r);

	/* resp_write: status line, fixed headers, extra headers, blank line, body. */
	resp_init(&r);
	resp_header(&r, "X-A", "1");
	resp_json(&r, 200, json_pack("{s:i}", "n", 7));
	memset(&out, 0, sizeof(out));
	check(resp_write(&r, sink_write, &out) == 0);
	check(strncmp(out.buf, "Status: 200 OK\r\n", 16) == 0);
	check(strstr(out.buf, "Cache-Control: no-store\r\n") != NULL);
	check(strstr(out.buf, "Content-Type: application/json; charset=utf-8\r\n") != NULL);
	check(strstr(out.buf, "Content-Length: 7\r\n") != NULL);
	check(strstr(out.buf, "X-A: 1\r\n\r\n{\"n\":7}") != NULL);
	check(out.len >= 7 && strcmp(out.buf + out.len - 7, "{\"n\":7}") == 0);
	/* HEAD: the same headers (Content-Length of the body it would have), no body. */
	r.head_only = 1;
	memset(&out, 0, sizeof(out));
	check(resp_write(&r, sink_write, &out) == 0);
	check(strstr(out.buf, "Content-Length: 7\r\n") != NULL);
	check(out.len > 4 && strcmp(out.buf + out.len - 4, "\r\n\r\n") == 0);
	check(strstr(out.buf, "{\"n\":7}") == NULL);
	r.head_only = 0;
	/* A write that fails is reported, wherever it fails. */
	memset(&out, 0, sizeof(out));
	out.fail_after = 10;
	check(resp_write(&r, sink_write, &out) == -1);
	memset(&out, 0, sizeof(out));
	check(resp_write(&r, sink_write, &out) == 0);
	full = out.len;
	memset(&out, 0, sizeof(out));
	out.fail_after = full - 1; /* the body's write */
	check(resp_write(&r, sink_write, &out) == -1);
	resp_free(&r);

	/* An empty response: no Content-Type, length 0, and a status the table does not name. */
	resp_init(&r);
	r.status = 418;
	memset(&out, 0, sizeof(out));
	check(resp_write(&r, sink_write, &out) == 0);
	check(strncmp(out.buf, "Status: 418 Error\r\n", 19) == 0);
	check(strstr(out.buf, "\r\nContent-Type") == NULL &&
	      strstr(out.buf, "Content-Length: 0\r\n"));
	check(strcmp(resp_reason(599), "Internal Server Error") == 0);
	resp_free(&r);

	return check_done();
}
