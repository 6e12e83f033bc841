#include "req.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64url.h"
#include "crypto.h"

/* A checked, bounded CONTENT_LENGTH conversion: digits only, no sign, no overflow. */
static int parse_length(const char *s, size_t max, size_t *out)
{
	size_t n = 0;

	if (s == NULL || *s == '\0') {
		*out = 0;
		return 0;
	}
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (n > (max + 1) / 10 + 1)
			return 1; /* certainly above max */
		n = n * 10 + (size_t)(*s - '0');
	}
	*out = n;
	return n > max ? 1 : 0;
}

static char *strip_mount(const char *path_info)
{
	if (path_info == NULL || *path_info == '\0')
		return strdup("/");
	/* Transmit clients call {host}/cis/v1/...: accept that prefix wherever we are mounted. */
	if (strncmp(path_info, "/cis/", 5) == 0)
		path_info += 4;
	else if (strcmp(path_info, "/cis") == 0)
		path_info = "/";
	return strdup(path_info);
}

/* 1 when id may be a request id: 1 to REQ_ID_MAX characters that no log line can misread. */
static int request_id_ok(const char *id)
{
	size_t n = 0;

	if (id == NULL)
		return 0;
	for (; id[n] != '\0'; n++)
		if (n == REQ_ID_MAX ||
		    !(isalnum((unsigned char)id[n]) || strchr("-._:@+/=", id[n])))
			return 0;
	return n > 0;
}

/*
 * The web server's id for the request (mod_unique_id's, which no client can choose, before
 * a header that a proxy in front may set), or a new random one.
 */
static void set_request_id(struct req *r, req_env_fn env, void *ctx)
{
	const char *given = env("UNIQUE_ID", ctx);
	unsigned char raw[8];

	if (!request_id_ok(given))
		given = env("HTTP_X_REQUEST_ID", ctx);
	if (request_id_ok(given)) {
		strcpy(r->request_id, given);
		return;
	}
	crypto_random(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(r->request_id + 2 * i, 3, "%02x", raw[i]);
}

enum req_status req_read(struct req *r, req_env_fn env, req_read_fn read, void *ctx,
			 size_t max_body)
{
	size_t want, got = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	set_request_id(r, env, ctx);
	r->method = env("REQUEST_METHOD", ctx);
	r->content_type = env("CONTENT_TYPE", ctx);
	r->authorization = env("HTTP_AUTHORIZATION", ctx);
	r->query = env("QUERY_STRING", ctx);
	r->remote_addr = env("REMOTE_ADDR", ctx);
	r->origin = env("HTTP_ORIGIN", ctx);
	r->sec_fetch_site = env("HTTP_SEC_FETCH_SITE", ctx);
	r->cookie = env("HTTP_COOKIE", ctx);
	r->path = strip_mount(env("PATH_INFO", ctx));
	if (r->path == NULL || r->method == NULL)
		return REQ_NO_METHOD;

	rc = parse_length(env("CONTENT_LENGTH", ctx), max_body, &want);
	if (rc < 0)
		return REQ_BAD_LENGTH;
	if (rc > 0)
		return REQ_TOO_LARGE;
	r->body = malloc(want + 1);
	if (r->body == NULL)
		return REQ_TOO_LARGE;
	while (got < want) {
		size_t n = read(r->body + got, want - got, ctx);
		if (n == 0)
			break;
		got += n;
	}
	r->body[got] = '\0';
	r->body_len = got;
	return got == want ? REQ_OK : REQ_BAD_LENGTH;
}

int req_content_type_is(const struct req *r, const char *type)
{
	size_t n = strlen(type);
	const char *ct = r->content_type;

	if (ct == NULL || strncasecmp(ct, type, n) != 0)
		return 0;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *req_percent_decode(const char *s, size_t len, int plus_is_space)
{
	char *out = malloc(len + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '+' && plus_is_space) {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;
			if (i + 2 >= len)
				goto bad;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			goto bad;
		*o++ = (char)c;
	}
	*o = '\0';
	return out;
bad:
	crypto_wipe(out, len + 1);
	free(out);
	return NULL;
}

/* Decode len bytes of form-urlencoded text into a new string; NULL when malformed. */
static char *form_decode(const char *s, size_t len)
{
	return req_percent_decode(s, len, 1);
}

int req_parse_form(struct req *r)
{
	const char *p = r->body, *end = r->body + r->body_len;

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end, *eq;
		struct req_form_pair *grown, pair;

		if (stop == p) {
			p++;
			continue;
		}
		eq = memchr(p, '=', (size_t)(stop - p));
		pair.name = form_decode(p, (size_t)((eq ? eq : stop) - p));
		pair.value = eq ? form_decode(eq + 1, (size_t)(stop - eq - 1)) : strdup("");
		if (pair.name == NULL || pair.value == NULL || req_form(r, pair.name) != NULL) {
			free(pair.name);
			crypto_free_str(pair.value);
			return -1;
		}
		grown = realloc(r->form, (r->nform + 1) * sizeof(*grown));
		if (grown == NULL) {
			free(pair.name);
			crypto_free_str(pair.value);
			return -1;
		}
		r->form = grown;
		r->form[r->nform++] = pair;
		p = stop + 1;
	}
	return 0;
}

const char *req_form(const struct req *r, const char *name)
{
	for (size_t i = 0; i < r->nform; i++)
		if (strcmp(r->form[i].name, name) == 0)
			return r->form[i].value;
	return NULL;
}

static int is_token68(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || strchr("-._~+/=", *s)))
			return 0;
	return 1;
}

const char *req_bearer(const struct req *r)
{
	const char *a = r->authorization;
	if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0)
		return NULL;
	a += 7;
	return is_token68(a) ? a : NULL;
}

int req_basic(const struct req *r, char **user, char **pass)
{
	const char *a = r->authorization;
	unsigned char *raw = NULL;
	size_t rawlen;
	char *colon;
	int rc = -1;

	if (a == NULL || strncasecmp(a, "Basic ", 6) != 0)
		return 0;
	a += 6;
	if (!is_token68(a) || b64_decode(a, strlen(a), &raw, &rawlen) < 0)
		return -1;
	if (memchr(raw, '\0', rawlen) != NULL)
		goto out;
	colon = strchr((char *)raw, ':');
	if (colon == NULL)
		goto out;
	*user = form_decode((char *)raw, (size_t)(colon - (char *)raw));
	*pass = form_decode(colon + 1, strlen(colon + 1));
	if (*user == NULL || *pass == NULL) {
		free(*user);
		crypto_free_str(*pass);
		*user = *pass = NULL;
		goto out;
	}
	rc = 1;
out:
	crypto_wipe(raw, rawlen);
	free(raw);
	return rc;
}

char *req_query_param(const struct req *r, const char *name)
{
	const char *p = r->query;
	size_t nlen = strlen(name);

	while (p != NULL && *p) {
		const char *amp = strchr(p, '&');
		size_t seglen = amp ? (size_t)(amp - p) : strlen(p);
		if (seglen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
			return form_decode(p + nlen + 1, seglen - nlen - 1);
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

char *req_cookie(const struct req *r, const char *name)
{
	const char *p = r->cookie, *found = NULL;
	size_t nlen = strlen(name), found_len = 0;

	while (p != NULL && *p) {
		size_t seglen;
		p += strspn(p, " \t");
		seglen = strcspn(p, ";");
		if (seglen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			if (found != NULL)
				return NULL;
			found = p + nlen + 1;
			found_len = seglen - nlen - 1;
		}
		p = p[seglen] == ';' ? p + seglen + 1 : NULL;
	}
	while (found_len > 0 && (found[found_len - 1] == ' ' || found[found_len - 1] == '\t'))
		found_len--;
	return found ? strndup(found, found_len) : NULL;
}

void req_free(struct req *r)
{
	free(r->path);
	if (r->body != NULL) {
		crypto_wipe(r->body, r->body_len);
		free(r->body);
	}
	for (size_t i = 0; i < r->nform; i++) {
		free(r->form[i].name);
		crypto_free_str(r->form[i].value);
	}
	free(r->form);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}
