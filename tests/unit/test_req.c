/* req: the front line: CGI variables, bounded bodies, forms, bearer and Basic credentials. */
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "check.h"
#include "crypto.h"
#include "req.h"

struct fake {
	const char *const *env; /* name, value, ..., NULL */
	const char *body;
	size_t pos;
};

static const char *fake_env(const char *name, void *ctx)
{
	struct fake *f = ctx;
	for (const char *const *e = f->env; *e; e += 2)
		if (strcmp(*e, name) == 0)
			return e[1];
	return NULL;
}

/* Hands out the body three bytes at a time, as a slow client would. */
static size_t fake_read(void *buf, size_t len, void *ctx)
{
	struct fake *f = ctx;
	size_t left = strlen(f->body) - f->pos, n = len < 3 ? len : 3;
	if (n > left)
		n = left;
	memcpy(buf, f->body + f->pos, n);
	f->pos += n;
	return n;
}

static enum req_status read_req(struct req *r, const char *const *env, const char *body, size_t max)
{
	struct fake f = {env, body, 0};
	return req_read(r, fake_env, fake_read, &f, max);
}

int main(void)
{
	struct req r;
	char *user, *pass, *b64, *q;

	crypto_init();
	{
		const char *env[] = {"REQUEST_METHOD",
				     "POST",
				     "PATH_INFO",
				     "/cis/v1/auth/otp/send",
				     "CONTENT_LENGTH",
				     "11",
				     "CONTENT_TYPE",
				     "Application/JSON; charset=utf-8",
				     NULL};
		check(read_req(&r, env, "{\"a\":\"bc\"}x", 100) == REQ_OK);
		check(strcmp(r.path, "/v1/auth/otp/send") == 0);
		check(r.body_len == 11 && strcmp(r.body, "{\"a\":\"bc\"}x") == 0);
		check(req_content_type_is(&r, "application/json"));
		check(!req_content_type_is(&r, "application/x-www-form-urlencoded"));
		req_free(&r);
	}
	{
		const char *env[] = {
		    "REQUEST_METHOD",	 "POST",	   "PATH_INFO", "/x", "CONTENT_TYPE",
		    "application/jsonx", "CONTENT_LENGTH", "101",	NULL};
		check(read_req(&r, env, "", 100) == REQ_TOO_LARGE);
		check(!req_content_type_is(&r, "application/json"));
		req_free(&r);
	}
	{
		const char *const bad[] = {"-1", "1x",	 " 1",
					   "+1", "0x10", "99999999999999999999999"};
		for (int i = 0; i < 6; i++) {
			const char *env[] = {"REQUEST_METHOD", "POST", "CONTENT_LENGTH", bad[i],
					     NULL};
			enum req_status st = read_req(&r, env, "a", 100);
			check_msg(st == REQ_BAD_LENGTH || (i == 5 && st == REQ_TOO_LARGE), "%s",
				  bad[i]);
			req_free(&r);
		}
	}
	{
		/* A body shorter than announced. */
		const char *env[] = {"REQUEST_METHOD", "POST", "CONTENT_LENGTH", "10", NULL};
		check(read_req(&r, env, "short", 100) == REQ_BAD_LENGTH);
		req_free(&r);
	}
	{
		const char *env[] = {"REQUEST_METHOD", "GET", NULL};
		check(read_req(&r, env, "", 100) == REQ_OK);
		check(strcmp(r.path, "/") == 0 && r.body_len == 0);
		req_free(&r);
		const char *env2[] = {"PATH_INFO", "/health", NULL};
		check(read_req(&r, env2, "", 100) == REQ_NO_METHOD);
		req_free(&r);
		const char *env3[] = {"REQUEST_METHOD", "GET", "PATH_INFO", "/cisco", NULL};
		check(read_req(&r, env3, "", 100) == REQ_OK && strcmp(r.path, "/cisco") == 0);
		req_free(&r);
	}
	{
		const char *body =
		    "grant_type=client_credentials&client_id=a%2Bb&x=&client_secret=s+t";
		char len[24];
		snprintf(len, sizeof(len), "%zu", strlen(body));
		const char *env[] = {"REQUEST_METHOD", "POST", "CONTENT_LENGTH", len, NULL};
		check(read_req(&r, env, body, 1000) == REQ_OK);
		check(req_parse_form(&r) == 0);
		check(strcmp(req_form(&r, "grant_type"), "client_credentials") == 0);
		check(strcmp(req_form(&r, "client_id"), "a+b") == 0);
		check(strcmp(req_form(&r, "client_secret"), "s t") == 0);
		check(strcmp(req_form(&r, "x"), "") == 0);
		check(req_form(&r, "nope") == NULL);
		req_free(&r);
	}
	{
		const char *const bad[] = {"a=1&a=2", "a=%zz", "a=%4", "a=%00", "a=%0a"};
		for (int i = 0; i < 5; i++) {
			char len[24];
			snprintf(len, sizeof(len), "%zu", strlen(bad[i]));
			const char *env[] = {"REQUEST_METHOD", "POST", "CONTENT_LENGTH", len, NULL};
			check(read_req(&r, env, bad[i], 100) == REQ_OK);
			check_msg(req_parse_form(&r) < 0, "%s", bad[i]);
			req_free(&r);
		}
	}
	{
		const char *const good[] = {"Bearer abc.def-_~+/=", "bearer x"};
		const char *const bad[] = {"Bearer",	"Bearer ",   "Bearer a b",
					   "Bearer  a", "Basic abc", "Bearer a\"b"};
		for (int i = 0; i < 2; i++) {
			const char *env[] = {"REQUEST_METHOD", "GET", "HTTP_AUTHORIZATION", good[i],
					     NULL};
			read_req(&r, env, "", 10);
			check_msg(req_bearer(&r) != NULL, "%s", good[i]);
			req_free(&r);
		}
		for (int i = 0; i < 6; i++) {
			const char *env[] = {"REQUEST_METHOD", "GET", "HTTP_AUTHORIZATION", bad[i],
					     NULL};
			read_req(&r, env, "", 10);
			check_msg(req_bearer(&r) == NULL, "%s", bad[i]);
			req_free(&r);
		}
	}
	{
		char header[128];
		b64 = NULL;
		/* RFC 6749 2.3.1: both parts are form-urlencoded before base64. */
		const char *raw = "my%3Aclient:p%40ss+word";
		unsigned char *dec;
		size_t declen;
		/* Encode with standard base64 by hand via b64url and character swaps. */
		b64 = b64url_encode(raw, strlen(raw));
		for (char *p = b64; *p; p++)
			*p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
		snprintf(header, sizeof(header), "Basic %s%s", b64,
			 strlen(b64) % 4 == 2	? "=="
			 : strlen(b64) % 4 == 3 ? "="
						: "");
		check(b64_decode(header + 6, strlen(header + 6), &dec, &declen) == 0 &&
		      declen == strlen(raw));
		free(dec);
		const char *env[] = {"REQUEST_METHOD", "POST", "HTTP_AUTHORIZATION", header, NULL};
		read_req(&r, env, "", 10);
		check(req_basic(&r, &user, &pass) == 1);
		check(strcmp(user, "my:client") == 0 && strcmp(pass, "p@ss word") == 0);
		free(user);
		free(pass);
		req_free(&r);
		free(b64);
		const char *env2[] = {"REQUEST_METHOD", "POST", "HTTP_AUTHORIZATION", "Basic !!!",
				      NULL};
		read_req(&r, env2, "", 10);
		check(req_basic(&r, &user, &pass) == -1);
		req_free(&r);
		const char *env3[] = {"REQUEST_METHOD", "POST", "HTTP_AUTHORIZATION",
				      "Basic bm9jb2xvbg==", NULL}; /* "nocolon" */
		read_req(&r, env3, "", 10);
		check(req_basic(&r, &user, &pass) == -1);
		req_free(&r);
	}
	{
		const char *env[] = {"REQUEST_METHOD", "GET", "QUERY_STRING", "a=1&t=x%2By&tt=2",
				     NULL};
		read_req(&r, env, "", 10);
		q = req_query_param(&r, "t");
		check(q != NULL && strcmp(q, "x+y") == 0);
		free(q);
		check(req_query_param(&r, "b") == NULL);
		req_free(&r);
	}
	/* Cookie, Origin and Sec-Fetch-Site reach the request (the landing page's POST check). */
	{
		const char *env[] = {"REQUEST_METHOD",
				     "POST",
				     "HTTP_COOKIE",
				     "a=1; otlogin-link=abc ;x-otlogin-link=no; b",
				     "HTTP_ORIGIN",
				     "https://id.example",
				     "HTTP_SEC_FETCH_SITE",
				     "same-origin",
				     NULL};
		read_req(&r, env, "", 10);
		check(strcmp(r.origin, "https://id.example") == 0);
		check(strcmp(r.sec_fetch_site, "same-origin") == 0);
		q = req_cookie(&r, "otlogin-link");
		check(q != NULL && strcmp(q, "abc") == 0);
		free(q);
		q = req_cookie(&r, "a");
		check(q != NULL && strcmp(q, "1") == 0);
		free(q);
		check(req_cookie(&r, "b") == NULL);
		check(req_cookie(&r, "otlogin") == NULL);
		req_free(&r);
	}
	{
		/* Twice (one may come from a sibling host): neither is trusted. */
		const char *env[] = {"REQUEST_METHOD", "POST", "HTTP_COOKIE", "n=1; n=2", NULL};
		read_req(&r, env, "", 10);
		check(req_cookie(&r, "n") == NULL);
		check(r.origin == NULL && r.sec_fetch_site == NULL);
		req_free(&r);
	}
	return check_done();
}
