/*
 * The request front line: what lighttpd or Apache hand a worker (CGI variables and a body)
 * through req_read, route matching, form and JSON body parsing, bearer and Basic credentials,
 * query parameters, route's front line (route.h: matching, content type, body syntax, the
 * endpoint's field table) and every endpoint's real parse step (api_parse.h; the JSON ones run
 * by fuzz_api.c under a few clients and configurations, the OAuth ones on the form and
 * Authorization): all the handlers do before the store.
 *
 * Input: lines NAME=VALUE (REQUEST_METHOD, PATH_INFO, CONTENT_TYPE, CONTENT_LENGTH,
 * HTTP_AUTHORIZATION, QUERY_STRING, REMOTE_ADDR, SCRIPT_NAME, HTTP_COOKIE), an empty line, then the
 * body. Without a CONTENT_LENGTH line the body's own length is announced.
 *
 * What must hold: nothing crashes or leaks; a body jsonio_check accepts really has the shape
 * its table declares (checked here independently); every error answer is the contract's JSON
 * error object and the response has well-formed CRLF headers; decoded credentials, form
 * fields, path parameters and identifiers carry no control characters.
 */
#include <arpa/inet.h>
#include <string.h>

#include "crypto.h"
#include "fuzz.h"
#include "fuzz_api.h"
#include "req.h"
#include "resp.h"
#include "route.h"

#define MAX_BODY 65536
#define NVARS 9

/* The CGI variables (values[i] is var_names[i]'s, NULL when unset) and the body. */
struct input {
	char *values[NVARS];
	const uint8_t *body;
	size_t body_len, pos;
};

static const char *const var_names[NVARS] = {"REQUEST_METHOD", "PATH_INFO",	     "CONTENT_TYPE",
					     "CONTENT_LENGTH", "HTTP_AUTHORIZATION", "QUERY_STRING",
					     "REMOTE_ADDR",    "SCRIPT_NAME",	     "HTTP_COOKIE"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FUZZ_ASSERT(crypto_init() == 0);
	fuzz_env_init();
	return 0;
}

static const char *env(const char *name, void *ctx)
{
	struct input *in = ctx;

	for (int i = 0; i < NVARS; i++)
		if (strcmp(var_names[i], name) == 0)
			return in->values[i];
	return NULL;
}

/* The body in pieces of up to 7 bytes, as a slow client sends it. */
static size_t body_read(void *buf, size_t len, void *ctx)
{
	struct input *in = ctx;
	size_t n = in->body_len - in->pos;

	if (n > len)
		n = len;
	if (n > 7)
		n = 7;
	memcpy(buf, in->body + in->pos, n);
	in->pos += n;
	return n;
}

static void parse_input(const uint8_t *data, size_t size, struct input *in)
{
	size_t p = 0;

	memset(in, 0, sizeof(*in));
	while (p < size) {
		const uint8_t *nl = memchr(data + p, '\n', size - p);
		size_t len = nl ? (size_t)(nl - (data + p)) : size - p;
		const uint8_t *eq = memchr(data + p, '=', len);
		if (len == 0) {
			p++;
			break;
		}
		for (int i = 0; eq != NULL && i < NVARS; i++) {
			size_t nlen = strlen(var_names[i]);
			if ((size_t)(eq - (data + p)) == nlen &&
			    memcmp(data + p, var_names[i], nlen) == 0 && in->values[i] == NULL)
				in->values[i] = fuzz_strndup(eq + 1, len - nlen - 1);
		}
		p += len + (nl != NULL);
	}
	in->body = data + p;
	in->body_len = size - p;
	if (in->values[3] == NULL) {
		char length[32];
		snprintf(length, sizeof(length), "%zu", in->body_len);
		in->values[3] = strdup(length);
	}
}

static void no_controls(const char *s)
{
	for (; s != NULL && *s; s++)
		FUZZ_ASSERT((unsigned char)*s >= 0x20 && *s != 0x7f);
}

/* The CGI response as written: CRLF-terminated header lines, a blank line, the body. */
struct sink {
	char buf[16384];
	size_t len;
};

static size_t sink_write(const void *p, size_t len, void *ctx)
{
	struct sink *s = ctx;

	FUZZ_ASSERT(s->len + len <= sizeof(s->buf));
	memcpy(s->buf + s->len, p, len);
	s->len += len;
	return len;
}

static void check_resp(const struct resp *resp)
{
	struct sink *s = malloc(sizeof(*s));
	const char *end;

	FUZZ_ASSERT(s != NULL);
	s->len = 0;
	FUZZ_ASSERT(resp_write(resp, sink_write, s) == 0);
	end = memmem(s->buf, s->len, "\r\n\r\n", 4);
	FUZZ_ASSERT(end != NULL);
	for (const char *p = s->buf; p < end + 2; p++) {
		if (*p == '\r')
			FUZZ_ASSERT(p[1] == '\n');
		if (*p == '\n')
			FUZZ_ASSERT(p > s->buf && p[-1] == '\r');
		FUZZ_ASSERT(*p != '\0');
	}
	FUZZ_ASSERT((size_t)(s->buf + s->len - (end + 4)) == resp->body_len);
	free(s);
}

/*
 * An error answer: status >= 400 and the contract's {"message", "error_code"} body, whose
 * message the users and redirect APIs put in an array on a 400.
 */
static void check_error(const struct resp *resp)
{
	json_t *body, *msg;
	int in_array = resp->status == 400 &&
		       (resp->dialect == DIALECT_USERS || resp->dialect == DIALECT_REDIRECT);

	FUZZ_ASSERT(resp->status >= 400 && resp->body != NULL);
	body = json_loadb(resp->body, resp->body_len, 0, NULL);
	FUZZ_ASSERT(json_is_object(body));
	msg = json_object_get(body, "message");
	if (in_array)
		FUZZ_ASSERT(json_array_size(msg) == 1 && json_is_string(json_array_get(msg, 0)));
	else
		FUZZ_ASSERT(json_is_string(msg));
	FUZZ_ASSERT(json_object_get(body, "error_code") != NULL);
	json_decref(body);
	check_resp(resp);
}

/* ---- an independent statement of what a table admits ---- */

static int text_ok(const char *s, int multiline)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 || *p == 0x7f) &&
		    !(multiline && (*p == '\n' || *p == '\r' || *p == '\t')))
			return 0;
	return 1;
}

static void table_holds(json_t *obj, const struct jv_field *fields)
{
	FUZZ_ASSERT(json_is_object(obj));
	for (const struct jv_field *f = fields; f->name != NULL; f++) {
		json_t *v = json_object_get(obj, f->name);
		size_t max = f->maxlen ? f->maxlen : 1024;
		const char *s = json_string_value(v);
		if (f->type == JV_INCLUDE) {
			table_holds(obj, f->sub);
			continue;
		}
		if (v == NULL) {
			FUZZ_ASSERT(!f->required);
			continue;
		}
		switch (f->type) {
		case JV_STRING:
			FUZZ_ASSERT(s != NULL && s[0] != '\0');
			/* fall through */
		case JV_TEXT:
			FUZZ_ASSERT(s != NULL && strlen(s) == json_string_length(v));
			FUZZ_ASSERT(strlen(s) <= max && text_ok(s, f->type == JV_TEXT));
			break;
		case JV_ENUM: {
			const char *const *e = f->values;
			FUZZ_ASSERT(s != NULL);
			while (*e != NULL && strcmp(*e, s) != 0)
				e++;
			FUZZ_ASSERT(*e != NULL);
			break;
		}
		case JV_IPADDR: {
			unsigned char raw[16];
			FUZZ_ASSERT(s != NULL && (inet_pton(AF_INET, s, raw) == 1 ||
						  inet_pton(AF_INET6, s, raw) == 1));
			break;
		}
		case JV_BOOL:
			FUZZ_ASSERT(json_is_boolean(v));
			break;
		case JV_INT: {
			long long n = jsonio_int(obj, f->name, f->min - 1);
			FUZZ_ASSERT(json_is_number(v) && n >= f->min && n <= f->max);
			FUZZ_ASSERT(json_is_integer(v) || json_real_value(v) == (double)n);
			break;
		}
		case JV_INCLUDE: /* handled above */
			break;
		case JV_OBJECT:
			FUZZ_ASSERT(json_is_object(v));
			if (f->sub != NULL)
				table_holds(v, f->sub);
			break;
		case JV_FLATMAP: {
			const char *key;
			json_t *m;
			FUZZ_ASSERT(json_is_object(v) &&
				    json_object_size(v) <= (f->maxlen ? f->maxlen : 10));
			json_object_foreach(v, key, m)
			{
				FUZZ_ASSERT(key[0] != '\0' && strlen(key) <= 64 &&
					    strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
							"QRSTUVWXYZ0123456789_.-") == strlen(key));
				FUZZ_ASSERT(json_is_string(m) && json_string_length(m) <= 1024 &&
					    text_ok(json_string_value(m), 0));
			}
			break;
		}
		}
	}
}

/*
 * One endpoint's route (its field table) and parse step on the body, under every client and
 * configuration: each answer is the contract's, and a body the table accepts has its shape.
 */
static void check_endpoint(struct req *r, const struct fuzz_endpoint *e)
{
	char *params[2] = {NULL, NULL};
	int known;
	const struct route *rt = route_find("POST", e->path, params, &known);
	struct resp resp;
	struct api_call call = {.req = r, .resp = &resp};
	struct api_refusal no;

	FUZZ_ASSERT(rt != NULL && route_fields(rt) != NULL && params[0] == NULL);
	resp_init(&resp);
	resp.dialect = route_dialect(rt);
	if (route_check_fields(&call, rt) < 0) {
		check_error(&resp);
		resp_free(&resp);
		return;
	}
	table_holds(r->json, route_fields(rt));
	for (int i = 0; i < FUZZ_NENV; i++) {
		struct api_input in = fuzz_env[i];
		in.body = r->json;
		memset(&no, 0, sizeof(no));
		if (e->parse(&in, &no) == 0)
			continue;
		FUZZ_ASSERT(no.err == ERR_INVALID_INPUT || no.err == ERR_FORBIDDEN);
		FUZZ_ASSERT(no.message[0] != '\0' && strlen(no.message) < sizeof(no.message) - 1);
		resp_error(&resp, no.err, no.message);
		check_error(&resp);
		resp_free(&resp);
		resp_init(&resp);
		resp.dialect = route_dialect(rt);
	}
	resp_free(&resp);
}

/*
 * The body as JSON (as route parsed it, else parsed here), through every JSON endpoint (not
 * only the path's: more reach).
 */
static void check_json(struct req *r, enum resp_dialect dialect)
{
	char err[256];

	if (r->json == NULL)
		r->json = jsonio_parse(r->body, r->body_len, err, sizeof(err));
	if (r->json == NULL) {
		struct resp resp;
		resp_init(&resp);
		resp.dialect = dialect;
		resp_error(&resp, ERR_INVALID_INPUT, err);
		check_error(&resp);
		resp_free(&resp);
		return;
	}
	for (size_t i = 0; i < fuzz_nendpoints; i++)
		check_endpoint(r, &fuzz_endpoints[i]);
}

/* An answer in OAuth's shape (RFC 6749 5.2): {"error", "error_description"?}, no "message". */
static int is_oauth_error_shape(const struct resp *resp)
{
	json_t *body = json_loadb(resp->body, resp->body_len, 0, NULL);
	const char *error = json_string_value(json_object_get(body, "error"));
	json_t *description = json_object_get(body, "error_description");
	int oauth = error != NULL && json_object_get(body, "message") == NULL;

	FUZZ_ASSERT(!oauth || description == NULL || json_is_string(description));
	json_decref(body);
	return oauth;
}

/*
 * A parsed client authentication: one method's credentials, without controls; a form's
 * client_id alone (no secret) names a public client.
 */
static void client_auth_ok(struct req *r, const struct api_client_auth *a)
{
	FUZZ_ASSERT(a->client_id != NULL && (a->secret != NULL || a->basic_user == NULL));
	no_controls(a->client_id);
	no_controls(a->secret);
	if (a->basic_user != NULL)
		FUZZ_ASSERT(a->client_id == a->basic_user && a->secret == a->basic_pass &&
			    req_form(r, "client_secret") == NULL);
	else
		FUZZ_ASSERT(a->client_id == req_form(r, "client_id") &&
			    a->secret == req_form(r, "client_secret"));
}

/* A refusal of the OAuth endpoints: RFC 6749's error object, as api_refused answers it. */
static void check_oauth_refusal(struct req *r, const struct api_refusal *no)
{
	struct resp resp;
	struct api_call call = {.req = r, .resp = &resp};

	FUZZ_ASSERT(no->oauth_error != NULL && (no->status == 400 || no->status == 401));
	resp_init(&resp);
	api_refused(&call, no);
	FUZZ_ASSERT(resp.status == no->status && is_oauth_error_shape(&resp));
	check_resp(&resp);
	resp_free(&resp);
}

/* The grant is the one grant_type names, with its own form fields and no other grant's. */
static void token_fields_ok(struct req *r, const struct api_token_req *t)
{
	static const char *const names[] = {[API_GRANT_CLIENT_CREDENTIALS] = "client_credentials",
					    [API_GRANT_REFRESH_TOKEN] = "refresh_token",
					    [API_GRANT_AUTHORIZATION_CODE] = "authorization_code"};
	int cc = t->grant == API_GRANT_CLIENT_CREDENTIALS;
	int code = t->grant == API_GRANT_AUTHORIZATION_CODE;

	FUZZ_ASSERT((size_t)t->grant < sizeof(names) / sizeof(names[0]) &&
		    strcmp(req_form(r, "grant_type"), names[t->grant]) == 0);
	FUZZ_ASSERT(t->resource == (cc ? req_form(r, "resource") : NULL));
	FUZZ_ASSERT(t->refresh_token ==
		    (t->grant == API_GRANT_REFRESH_TOKEN ? req_form(r, "refresh_token") : NULL));
	FUZZ_ASSERT(t->code == (code ? req_form(r, "code") : NULL));
	FUZZ_ASSERT(t->redirect_uri == (code ? req_form(r, "redirect_uri") : NULL));
	FUZZ_ASSERT(t->code_verifier == (code ? req_form(r, "code_verifier") : NULL));
}

/* The parse steps of /oidc/token and /oidc/token/revocation on the form. */
static void check_oauth(struct req *r)
{
	struct api_token_req t;
	struct api_revocation_req v;
	struct api_refusal no;

	if (api_token_parse(r, &t, &no) == 0) {
		client_auth_ok(r, &t.auth);
		token_fields_ok(r, &t);
	} else {
		check_oauth_refusal(r, &no);
	}
	api_client_auth_free(&t.auth);
	FUZZ_ASSERT(t.auth.basic_user == NULL && t.auth.basic_pass == NULL);
	if (api_revocation_parse(r, &v, &no) == 0)
		client_auth_ok(r, &v.auth);
	else
		check_oauth_refusal(r, &no);
	api_client_auth_free(&v.auth);
}

/* The form, as route parsed it (a form route), else parsed here; the OAuth parse steps. */
static void check_form(struct req *r)
{
	if (r->nform == 0 && req_parse_form(r) < 0)
		return;
	for (size_t i = 0; i < r->nform; i++) {
		no_controls(r->form[i].name);
		no_controls(r->form[i].value);
		/* RFC 6749 forbids repeated parameters: the first is the only one. */
		for (size_t j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(r->form[i].name, r->form[j].name) != 0);
		FUZZ_ASSERT(req_form(r, r->form[i].name) == r->form[i].value);
	}
	check_oauth(r);
}

/* Occurrences of the HTML-special characters in s. */
static void count_special(const char *s, size_t counts[4])
{
	for (int i = 0; i < 4; i++)
		counts[i] = 0;
	for (; *s; s++)
		for (int i = 0; i < 4; i++)
			counts[i] += *s == "<>\"'"[i];
}

/*
 * The landing page shows the link token (from the query string) in its form: escaped, it
 * cannot add a single markup character to the page, so their counts are the template's.
 */
static void check_page(const char *token)
{
	char *page = api_link_page_html("Sign in", token, token, token);
	char *plain = api_link_page_html("Sign in", "x", "y", "y");
	size_t a[4], b[4];

	FUZZ_ASSERT(page != NULL && plain != NULL);
	count_special(page, a);
	count_special(plain, b);
	FUZZ_ASSERT(memcmp(a, b, sizeof(a)) == 0);
	free(page);
	free(plain);
}

static void check_credentials(struct req *r)
{
	const char *bearer = req_bearer(r);
	char *user = NULL, *pass = NULL, *q;
	int rc;

	if (bearer != NULL) {
		FUZZ_ASSERT(r->authorization != NULL && bearer > r->authorization &&
			    strcmp(r->authorization + strlen(r->authorization) - strlen(bearer),
				   bearer) == 0);
		FUZZ_ASSERT(bearer[0] != '\0' && strpbrk(bearer, " \t\r\n\",;") == NULL);
	}
	rc = req_basic(r, &user, &pass);
	FUZZ_ASSERT(rc >= -1 && rc <= 1);
	if (rc == 1) {
		FUZZ_ASSERT(user != NULL && pass != NULL);
		no_controls(user);
		no_controls(pass);
		free(user);
		crypto_free_str(pass);
	} else {
		FUZZ_ASSERT(user == NULL && pass == NULL);
	}
	FUZZ_ASSERT(bearer == NULL || rc == 0);
	/* A cookie's value is a piece of the header, without the separator. */
	q = req_cookie(r, "otlogin-link");
	FUZZ_ASSERT(q == NULL || (strstr(r->cookie, q) != NULL && strchr(q, ';') == NULL));
	free(q);
	for (const char *const *n = (const char *const[]){"t", "code", "state", NULL}; *n; n++) {
		q = req_query_param(r, *n);
		no_controls(q);
		if (q != NULL && strcmp(*n, "t") == 0)
			check_page(q);
		free(q);
	}
}

/* Route's front line for the request's own method and path, as route_dispatch runs it. */
static void check_route(struct req *r)
{
	char *params[2] = {NULL, NULL};
	int known;
	const struct route *rt = route_find(r->method, r->path, params, &known);
	enum resp_dialect dialect = DIALECT_PLAIN;
	struct resp resp;
	struct api_call call = {.req = r, .resp = &resp};

	resp_init(&resp);
	if (rt != NULL) {
		dialect = route_dialect(rt);
		no_controls(params[0]);
		no_controls(params[1]);
		free(params[0]);
		free(params[1]);
		resp.dialect = dialect;
		if (route_check_body(&call, rt) < 0) {
			FUZZ_ASSERT(resp.status == 400 || resp.status == 415);
			/* A malformed form is answered in OAuth's shape, not the contract's. */
			if (is_oauth_error_shape(&resp))
				check_resp(&resp);
			else
				check_error(&resp);
		}
	} else if (known) {
		route_answer_405(&call);
		FUZZ_ASSERT(resp.status == 405 && resp.headers != NULL &&
			    strncmp(resp.headers, "Allow: ", 7) == 0);
		check_error(&resp);
	}
	resp_free(&resp);
	FUZZ_ASSERT(params[0] == NULL || rt != NULL);
	check_json(r, dialect);
	check_form(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	struct req r;
	enum req_status st;

	parse_input(data, size, &in);
	st = req_read(&r, env, body_read, &in, MAX_BODY);
	if (st == REQ_OK) {
		/* PATH_INFO is passed on as given (web servers start it with '/'). */
		FUZZ_ASSERT(r.method != NULL && r.path != NULL && r.path[0] != '\0');
		FUZZ_ASSERT(r.body != NULL && r.body[r.body_len] == '\0');
		FUZZ_ASSERT(r.body_len <= MAX_BODY && r.body_len <= in.body_len);
		req_content_type_is(&r, "application/json");
		req_content_type_is(&r, "application/x-www-form-urlencoded");
		check_credentials(&r);
		check_route(&r);
	} else {
		/* main.c's front-line answer. */
		struct resp resp;
		resp_init(&resp);
		resp_error(&resp, st == REQ_TOO_LARGE ? ERR_TOO_LARGE : ERR_INVALID_INPUT,
			   st == REQ_BAD_LENGTH ? "Malformed Content-Length or short body" : NULL);
		check_error(&resp);
		resp_free(&resp);
	}
	req_free(&r);
	for (int i = 0; i < NVARS; i++)
		free(in.values[i]);
	return 0;
}
