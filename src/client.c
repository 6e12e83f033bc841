#include "client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64url.h"
#include "conf.h"
#include "crypto.h"
#include "jwt.h"
#include "log.h"
#include "ratelimit.h"

#define CLIENT_ID_BYTES 16
#define CLIENT_SECRET_BYTES 32

static int is_string_array(json_t *a)
{
	size_t i;
	json_t *v;
	if (!json_is_array(a))
		return 0;
	json_array_foreach(a, i, v) if (!json_is_string(v)) return 0;
	return 1;
}

static int valid_permissions(json_t *perms)
{
	size_t i;
	json_t *v;
	json_array_foreach(perms, i, v)
	{
		const char *p = json_string_value(v);
		if (strcmp(p, "direct") != 0 && strcmp(p, "admin") != 0)
			return 0;
	}
	return 1;
}

/*
 * Whether the http:// URI u (scheme included) points at this machine's loopback: its
 * authority, without userinfo (an "@" makes it not loopback: http://127.0.0.1@evil.example/
 * goes to evil.example), is a loopback host with an optional port. RFC 8252 section 7.3.
 */
static int http_uri_is_loopback(const char *u)
{
	const char *host = u + 7, *end = host + strcspn(host, "/?#"), *colon;

	if (memchr(host, '@', (size_t)(end - host)) != NULL || end == host)
		return 0;
	if (host[0] == '[') {
		const char *close = memchr(host, ']', (size_t)(end - host));
		if (close == NULL)
			return 0;
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon != NULL && *colon != ':')
			return 0;
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
	}
	if (colon != NULL)
		for (const char *p = colon + 1; p < end; p++)
			if (*p < '0' || *p > '9')
				return 0;
	return conf_host_is_loopback(host, (size_t)((colon ? colon : end) - host));
}

/*
 * Absolute https:// URIs with a host, without fragment or controls; http:// ones only on
 * loopback (a native app's local listener, RFC 8252 section 7.3) unless allow_http: elsewhere
 * the redirect's code would cross the network in clear. No empty authority: browsers read
 * https:///x.example/cb as https://x.example/cb.
 */
static int valid_redirect_uris(json_t *uris, int allow_http)
{
	size_t i;
	json_t *v;
	json_array_foreach(uris, i, v)
	{
		const char *u = json_string_value(v);
		if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
			return 0;
		if (strcspn(strstr(u, "://") + 3, "/?#") == 0)
			return 0;
		if (strchr(u, '#') != NULL)
			return 0; /* RFC 6749 3.1.2: no fragment */
		for (const char *p = u; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == 0x7f)
				return 0;
		if (strncmp(u, "http://", 7) == 0 && !allow_http && !http_uri_is_loopback(u))
			return 0;
	}
	return 1;
}

/* The members a client spec may hold: a client's id and secret are never among them. */
static const char *const spec_members[] = {
    "name",	     "redirect_uris",	    "resources", "permissions", "signup",
    "existence",     "allow_http_redirect", "type",	 "pkce",	"post_logout_redirect_uris",
    "login_methods", "display_name",	    "logo",	 "color",	NULL};

/* The members a client may lack: null in a spec removes them (allow_http_redirect: false too). */
static const char *const optional_members[] = {"display_name", "logo", "color",
					       "allow_http_redirect", NULL};

static const char *const login_methods[] = {"email_otp", "magic_link", "sms_otp", NULL};

/* Whether s is one of the strings of the NULL-terminated list. */
static int one_of(const char *s, const char *const *list)
{
	for (; s != NULL && *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/*
 * The length of the UTF-8 sequence at p with its code point in *cp; 0 when malformed (Jansson
 * keeps strings valid UTF-8: this only guards against reading past the end).
 */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
		*cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
		return 2;
	}
	if ((p[0] & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
		*cp = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
		return 3;
	}
	if ((p[0] & 0xf8) == 0xf0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
	    (p[3] & 0xc0) == 0x80) {
		*cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
		      (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
		return 4;
	}
	return 0;
}

/*
 * A display name is shown on the hosted login page: 1 to CLIENT_DISPLAY_NAME_MAX characters,
 * none of them a control, an invisible format character or a bidirectional override (with
 * those a name could display as another client's, or break the page's text).
 */
static int valid_display_name(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0, len;
	uint32_t cp;

	if (*p == '\0')
		return 0;
	for (; *p != '\0'; p += len, n++) {
		len = utf8_next(p, &cp);
		if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
		    (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
		    (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff ||
		    (cp >= 0xfff9 && cp <= 0xfffb))
			return 0;
	}
	return n <= CLIENT_DISPLAY_NAME_MAX;
}

/* "#RRGGBB" in hexadecimal digits of either case. */
static int valid_color(const char *s)
{
	return strlen(s) == 7 && s[0] == '#' && strspn(s + 1, "0123456789abcdefABCDEF") == 6;
}

/* Whether the len bytes at p contain needle (lower case ASCII), ignoring ASCII case. */
static int contains_nocase(const unsigned char *p, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++) {
		size_t j = 0;
		while (j < n && (p[i + j] | 0x20) == (unsigned char)needle[j])
			j++;
		if (j == n)
			return 1;
	}
	return 0;
}

/*
 * A logo is an http(s) URL of at most CLIENT_LOGO_URL_MAX characters with a host, made only of
 * visible ASCII without quotes, angle brackets or backslashes (it ends up in an HTML
 * attribute), or a base64 data: URI of a PNG, JPEG or SVG image of at most CLIENT_LOGO_DATA_MAX
 * characters whose content is what its type says. An SVG must not hold a script: the page shows
 * it through <img>, where none runs, but nothing should depend on every later use doing so.
 */
static int valid_logo(const char *s)
{
	static const struct {
		const char *prefix, *magic;
		size_t magic_len;
	} types[] = {
	    {"data:image/png;base64,", "\x89PNG\r\n\x1a\n", 8},
	    {"data:image/jpeg;base64,", "\xff\xd8\xff", 3},
	    {"data:image/svg+xml;base64,", NULL, 0},
	};
	size_t len = strlen(s), outlen = 0;
	unsigned char *img = NULL;
	int ok = 0;

	if (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) {
		if (len > CLIENT_LOGO_URL_MAX || strcspn(strstr(s, "://") + 3, "/?#") == 0)
			return 0;
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
			    strchr("\"'<>\\`", *p) != NULL)
				return 0;
		return 1;
	}
	if (len > CLIENT_LOGO_DATA_MAX)
		return 0;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t plen = strlen(types[i].prefix);
		if (strncmp(s, types[i].prefix, plen) != 0)
			continue;
		if (b64_decode(s + plen, len - plen, &img, &outlen) < 0)
			return 0;
		if (types[i].magic != NULL)
			ok = outlen >= types[i].magic_len &&
			     memcmp(img, types[i].magic, types[i].magic_len) == 0;
		else
			ok = contains_nocase(img, outlen, "<svg") &&
			     !contains_nocase(img, outlen, "<script");
		free(img);
		return ok;
	}
	return 0;
}

/* login_methods: a non-empty array of known methods, each at most once. */
static int valid_login_methods(json_t *methods)
{
	size_t i, j;
	json_t *v;

	if (!is_string_array(methods) || json_array_size(methods) == 0)
		return 0;
	json_array_foreach(methods, i, v)
	{
		if (!one_of(json_string_value(v), login_methods))
			return 0;
		for (j = 0; j < i; j++)
			if (json_equal(json_array_get(methods, j), v))
				return 0;
	}
	return 1;
}

/* Whether member of rec is absent or a string that valid() takes. */
static int optional_string(json_t *rec, const char *member, int (*valid)(const char *))
{
	json_t *v = json_object_get(rec, member);
	return v == NULL || (json_is_string(v) && valid(json_string_value(v)));
}

/*
 * Check a whole client record (a new one with its defaults, or a stored one with an update
 * applied): the one set of rules for create and update. Returns 0, or -1 with a message that
 * names the command-line option, since otloginctl is where specs come from.
 */
static int check_record(json_t *rec, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(rec, "name"));
	const char *type = json_string_value(json_object_get(rec, "type"));
	const char *pkce = json_string_value(json_object_get(rec, "pkce"));
	json_t *allow = json_object_get(rec, "allow_http_redirect");
	json_t *uris = json_object_get(rec, "redirect_uris");
	json_t *logout_uris = json_object_get(rec, "post_logout_redirect_uris");
	const char *msg = NULL;

	if (name == NULL || name[0] == '\0' || strlen(name) > 100)
		msg = "a client needs a name of at most 100 characters";
	else if (!one_of(json_string_value(json_object_get(rec, "signup")),
			 (const char *const[]){"open", "closed", NULL}))
		msg = "signup must be open or closed";
	else if (!one_of(json_string_value(json_object_get(rec, "existence")),
			 (const char *const[]){"reveal", "hide", NULL}))
		msg = "existence must be reveal or hide";
	else if (allow != NULL && !json_is_boolean(allow))
		msg = "allow_http_redirect must be a boolean";
	else if (!is_string_array(uris) || !valid_redirect_uris(uris, json_is_true(allow)))
		msg = "redirect URIs must be absolute https URIs without fragment (http only "
		      "for localhost, 127.0.0.1 or [::1], unless allowed with "
		      "--allow-http-redirect)";
	else if (!is_string_array(logout_uris) ||
		 !valid_redirect_uris(logout_uris, json_is_true(allow)))
		msg = "post-logout redirect URIs must be absolute https URIs without fragment "
		      "(http only for localhost, 127.0.0.1 or [::1], unless allowed with "
		      "--allow-http-redirect)";
	else if (!is_string_array(json_object_get(rec, "permissions")) ||
		 !valid_permissions(json_object_get(rec, "permissions")))
		msg = "permissions are direct and admin";
	else if (!is_string_array(json_object_get(rec, "resources")))
		msg = "resources must be strings";
	else if (!one_of(type, (const char *const[]){"confidential", "public", NULL}))
		msg = "type must be confidential or public";
	else if (!one_of(pkce, (const char *const[]){"allow", "require", NULL}))
		msg = "pkce must be allow or require";
	else if (strcmp(type, "public") == 0 && strcmp(pkce, "require") != 0)
		msg = "a public client always requires PKCE (--pkce require)";
	else if (!valid_login_methods(json_object_get(rec, "login_methods")))
		msg = "login methods are one or more of email_otp, magic_link and sms_otp, each "
		      "once";
	else if (!optional_string(rec, "display_name", valid_display_name))
		msg = "a display name has 1 to 64 printable characters";
	else if (!optional_string(rec, "logo", valid_logo))
		msg = "a logo is an https:// or http:// URL, or a PNG, JPEG or SVG file (without "
		      "scripts) of at most 48 KiB";
	else if (!optional_string(rec, "color", valid_color))
		msg = "a color is #RRGGBB in hexadecimal";
	if (msg == NULL)
		return 0;
	snprintf(err, errlen, "%s", msg);
	return -1;
}

/*
 * Apply spec (borrowed) to rec: each member replaces rec's, null (and allow_http_redirect
 * false) removes an optional one. A public client requires PKCE whatever rec said before, so
 * its pkce becomes require unless spec itself asks for allow (which check_record refuses).
 * Returns 0, or -1 with a message for a member no spec may hold.
 */
static int apply_spec(json_t *rec, json_t *spec, char *err, size_t errlen)
{
	const char *key, *pkce = json_string_value(json_object_get(spec, "pkce"));
	json_t *v;

	if (!json_is_object(spec)) {
		snprintf(err, errlen, "a client spec is a JSON object");
		return -1;
	}
	json_object_foreach(spec, key, v)
	{
		if (!one_of(key, spec_members)) {
			if (one_of(key, (const char *const[]){"client_id", "secret",
							      "client_secret", NULL}))
				snprintf(err, errlen, "a client's id and secret never change");
			else
				snprintf(err, errlen, "unknown client field %.64s", key);
			return -1;
		}
		if (json_is_null(v) ||
		    (strcmp(key, "allow_http_redirect") == 0 && json_is_false(v))) {
			if (!one_of(key, optional_members)) {
				snprintf(err, errlen, "%s cannot be removed", key);
				return -1;
			}
			json_object_del(rec, key);
		} else if (json_object_set_new(rec, key, json_deep_copy(v)) != 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (client_is_public(rec) && pkce == NULL &&
	    json_object_set_new(rec, "pkce", json_string("require")) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

struct put_arg {
	const char *id;
	json_t *rec;
};

static int put_client_txn(struct store_txn *t, void *argp)
{
	struct put_arg *arg = argp;
	return store_put(t, TBL_CLIENTS, arg->id, strlen(arg->id), arg->rec);
}

int client_create(struct ctx *c, json_t *spec, json_t **out, char *err, size_t errlen)
{
	unsigned char raw[CLIENT_ID_BYTES];
	char id[2 * CLIENT_ID_BYTES + 1], tag[KEYRING_TAG_HEX], *secret = NULL;
	struct put_arg arg = {id, NULL};
	int rc = -1;

	crypto_random(raw, sizeof(raw));
	crypto_hex(raw, sizeof(raw), id);
	/* Every member a reader looks for is stored, defaults included, so that list shows them. */
	arg.rec = json_pack("{s:s, s:s, s:s, s:s, s:[], s:[], s:[], s:[], s:s, s:s, s:[s, s], s:I}",
			    "client_id", id, "name", "", "signup", "open", "existence", "reveal",
			    "redirect_uris", "post_logout_redirect_uris", "resources",
			    "permissions", "type", "confidential", "pkce", "allow", "login_methods",
			    "email_otp", "magic_link", "created_at", (json_int_t)time(NULL));
	if (arg.rec == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (apply_spec(arg.rec, spec, err, errlen) < 0 || check_record(arg.rec, err, errlen) < 0)
		goto out;
	/* A public client (a browser or native app) could not keep a secret: it gets none. */
	if (!client_is_public(arg.rec)) {
		secret = crypto_random_token(CLIENT_SECRET_BYTES);
		if (secret == NULL ||
		    keyring_tag(c->keys, tag, "client-secret", id, secret, NULL) < 0 ||
		    json_object_set_new(arg.rec, "secret", json_string(tag)) != 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (store_run(c->store, put_client_txn, &arg) < 0) {
		snprintf(err, errlen, "could not store the client");
		goto out;
	}
	*out = secret ? json_pack("{s:s, s:s}", "client_id", id, "client_secret", secret)
		      : json_pack("{s:s}", "client_id", id);
	rc = *out ? 0 : -1;
out:
	json_decref(arg.rec);
	crypto_free_str(secret);
	return rc;
}

struct get_arg {
	const char *id;
	json_t *client;
};

/*
 * store_get of the client record under id, which must be an object naming that client_id:
 * every flow takes the client's id from it. Anything else is a damaged record (STORE_ERR,
 * logged), never a client.
 */
static int get_client_record(struct store_txn *t, const char *id, json_t **client)
{
	json_t *rec = NULL;
	const char *stored;
	int rc = store_get(t, TBL_CLIENTS, id, strlen(id), &rec, 0);

	if (rc != STORE_FOUND)
		return rc;
	stored = json_string_value(json_object_get(rec, "client_id"));
	if (!json_is_object(rec) || stored == NULL || strcmp(stored, id) != 0) {
		log_err("clients: the record of %.64s is damaged", id);
		json_decref(rec);
		return STORE_ERR;
	}
	*client = rec;
	return STORE_FOUND;
}

static int get_client_txn(struct store_txn *t, void *argp)
{
	struct get_arg *arg = argp;
	return get_client_record(t, arg->id, &arg->client);
}

int client_get(struct ctx *c, const char *client_id, json_t **client)
{
	struct get_arg arg = {client_id, NULL};
	int rc;

	if (client_id == NULL || strlen(client_id) > 128)
		return STORE_NOTFOUND;
	rc = store_run(c->store, get_client_txn, &arg);
	if (rc == STORE_FOUND)
		*client = arg.client;
	return rc;
}

/* client_update's outcomes inside its transaction. */
enum { UPDATE_DONE, UPDATE_UNKNOWN, UPDATE_INVALID };

struct update_arg {
	const char *id;
	json_t *spec;
	char *err;
	size_t errlen;
};

/*
 * Read the client, apply the spec, check the result as create would and write it back, all in
 * one transaction: two admins updating at once each see the other's change, never half of it.
 */
static int update_txn(struct store_txn *t, void *argp)
{
	struct update_arg *a = argp;
	json_t *rec = NULL;
	int rc = get_client_record(t, a->id, &rec);

	if (rc == STORE_NOTFOUND) {
		snprintf(a->err, a->errlen, "no client %.64s", a->id);
		return UPDATE_UNKNOWN;
	}
	if (rc < 0)
		return rc;
	/* A client made before these members existed gets their defaults first. */
	if (json_object_get(rec, "type") == NULL)
		json_object_set_new(rec, "type", json_string("confidential"));
	if (json_object_get(rec, "pkce") == NULL)
		json_object_set_new(rec, "pkce", json_string("allow"));
	if (json_object_get(rec, "post_logout_redirect_uris") == NULL)
		json_object_set_new(rec, "post_logout_redirect_uris", json_array());
	if (json_object_get(rec, "login_methods") == NULL)
		json_object_set_new(rec, "login_methods",
				    json_pack("[s, s]", "email_otp", "magic_link"));
	if (apply_spec(rec, a->spec, a->err, a->errlen) < 0 ||
	    check_record(rec, a->err, a->errlen) < 0) {
		rc = UPDATE_INVALID;
	} else if (!client_is_public(rec) && json_object_get(rec, "secret") == NULL) {
		/* The secret is shown once, at create: a client without one cannot get one. */
		snprintf(a->err, a->errlen,
			 "a public client has no secret, so it cannot become confidential: add a "
			 "new client");
		rc = UPDATE_INVALID;
	} else {
		/*
		 * A client turned public loses its secret for good: a copy kept somewhere must not
		 * start working again if it is turned back.
		 */
		if (client_is_public(rec))
			json_object_del(rec, "secret");
		json_object_set_new(rec, "updated_at", json_integer((json_int_t)time(NULL)));
		rc = store_put(t, TBL_CLIENTS, a->id, strlen(a->id), rec);
		if (rc == 0)
			rc = UPDATE_DONE;
	}
	json_decref(rec);
	return rc;
}

int client_update(struct ctx *c, const char *client_id, json_t *spec, char *err, size_t errlen)
{
	struct update_arg a = {client_id, spec, err, errlen};
	int rc;

	if (client_id == NULL || strlen(client_id) > 128) {
		snprintf(err, errlen, "no such client");
		return CLIENT_UNKNOWN;
	}
	rc = store_run(c->store, update_txn, &a);
	if (rc == UPDATE_DONE)
		return 0;
	if (rc == UPDATE_UNKNOWN)
		return CLIENT_UNKNOWN;
	if (rc < 0)
		snprintf(err, errlen, "could not update the client");
	return -1;
}

struct secret_arg {
	struct ctx *c;
	const char *id;
	const char *secret;
	const char *addr; /* the rate-limit subject of the caller's address */
	json_t *client;
	unsigned wait;
};

static int check_secret_txn(struct store_txn *t, void *argp)
{
	struct secret_arg *a = argp;
	const struct conf *conf = a->c->conf;
	const struct rl_backoff delays = {conf->client_secret_failures.limit,
					  conf->client_secret_failures.period,
					  conf->client_secret_delay, conf->client_secret_max_delay};
	char tag[KEYRING_TAG_HEX];
	const char *stored;
	int rc, ok;

	json_decref(a->client);
	a->client = NULL;
	a->wait = 0;
	rc = get_client_record(t, a->id, &a->client);
	if (rc < 0)
		return rc;
	/*
	 * The secret is checked before anything else: the right one is accepted whatever wrong
	 * ones anybody sent, so that guessing cannot lock the backend out. The hash is computed
	 * whether or not the client exists, so timing tells nothing.
	 */
	if (keyring_tag(a->c->keys, tag, "client-secret", a->id, a->secret, NULL) < 0)
		return STORE_ERR;
	/* A public client has no secret: nothing it is sent is right, and nothing is counted. */
	if (a->client != NULL && client_is_public(a->client))
		return 0;
	stored = a->client ? json_string_value(json_object_get(a->client, "secret")) : NULL;
	ok = crypto_str_equal(tag, stored ? stored : "");
	if (ok && a->client != NULL)
		return 1;
	/*
	 * Wrong secrets are throttled per client and caller address, with growing delays. Only
	 * known clients are counted: a guessed client_id never authenticates anyway, and counting
	 * every id a caller makes up would let it fill the table.
	 */
	if (a->client == NULL)
		return 0;
	rc = ratelimit_backoff_txn(t, a->c->keys, &delays, &a->wait, "client-secret-delay", a->id,
				   a->addr);
	if (rc != 0)
		return rc < 0 ? rc : CLIENT_THROTTLED;
	return 0;
}

int client_check_secret(struct ctx *c, const char *client_id, const char *secret, const char *addr,
			json_t **client, unsigned *retry_after)
{
	char subject[96];
	struct secret_arg a = {c, client_id, secret, subject, NULL, 0};
	int rc;

	if (client_id == NULL || secret == NULL || strlen(client_id) > 128 || strlen(secret) > 256)
		return 0;
	ratelimit_ip_subject(addr ? addr : "", subject, sizeof(subject));
	rc = store_run(c->store, check_secret_txn, &a);
	if (rc == 1)
		*client = a.client;
	else
		json_decref(a.client);
	if (rc == CLIENT_THROTTLED)
		*retry_after = a.wait;
	return rc;
}

int client_hides_existence(json_t *client)
{
	const char *policy = json_string_value(json_object_get(client, "existence"));
	return policy != NULL && strcmp(policy, "hide") == 0;
}

int client_is_public(json_t *client)
{
	const char *type = json_string_value(json_object_get(client, "type"));
	return type != NULL && strcmp(type, "public") == 0;
}

int client_requires_pkce(json_t *client)
{
	const char *pkce = json_string_value(json_object_get(client, "pkce"));
	return client_is_public(client) || (pkce != NULL && strcmp(pkce, "require") == 0);
}

int client_allows_login_method(json_t *client, const char *method)
{
	if (json_object_get(client, "login_methods") == NULL)
		return strcmp(method, "email_otp") == 0 || strcmp(method, "magic_link") == 0;
	return client_lists(client, "login_methods", method);
}

int client_has_permission(json_t *client, const char *perm)
{
	return client_lists(client, "permissions", perm);
}

int client_lists(json_t *client, const char *list, const char *value)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(client, list), i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
			return 1;
	}
	return 0;
}

char *client_token_issue(struct ctx *c, json_t *client, const char *aud)
{
	const char *id = json_string_value(json_object_get(client, "client_id"));
	time_t now = time(NULL);
	char *jti = crypto_random_token(16), *token = NULL;
	json_t *claims;

	if (jti == NULL)
		return NULL;
	claims =
	    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", c->conf->issuer, "sub", id,
		      "aud", aud, "client_id", id, "iat", (json_int_t)now, "exp",
		      (json_int_t)(now + (time_t)c->conf->access_ttl), "jti", jti, "scope", "");
	if (claims != NULL)
		token = jwt_sign_hs256(c->keys->client_token_mac, c->keys->client_token_kid,
				       "at+jwt", claims);
	json_decref(claims);
	free(jti);
	return token;
}

/*
 * Seconds iat and nbf may lie ahead: every worker reads the same host clock, so this only
 * absorbs the clock being stepped back a little after a token was issued.
 */
#define CLIENT_TOKEN_LEEWAY 60

/* 1 when aud (a string, or an array of strings: RFC 7519 4.1.3) names want. */
static int audience_has(json_t *aud, const char *want)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	json_array_foreach(aud, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return 1;
	}
	return 0;
}

/*
 * The claims of a correctly signed client token: issued by this otlogin for itself (aud is the
 * issuer: a token asked for with resource is for that resource, not for this API), already
 * valid (iat, and nbf when present, not ahead of now) and not yet expired.
 */
static int client_claims_valid(struct ctx *c, json_t *claims, time_t now)
{
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	json_t *iat = json_object_get(claims, "iat"), *exp = json_object_get(claims, "exp");
	json_t *nbf = json_object_get(claims, "nbf");
	json_int_t soon = (json_int_t)now + CLIENT_TOKEN_LEEWAY;

	if (iss == NULL || strcmp(iss, c->conf->issuer) != 0 ||
	    !audience_has(json_object_get(claims, "aud"), c->conf->issuer))
		return 0;
	if (!json_is_integer(iat) || !json_is_integer(exp) || json_integer_value(iat) > soon ||
	    json_integer_value(exp) <= (json_int_t)now ||
	    json_integer_value(exp) <= json_integer_value(iat))
		return 0;
	return nbf == NULL || (json_is_integer(nbf) && json_integer_value(nbf) <= soon);
}

/*
 * The claims of token when it is correctly signed (1), 0 when it is not, -1 on an error. A
 * client sends the same token with every request until it expires, so the last one that
 * verified is kept with its claims (in the keyring, next to the key that signed it): the same
 * text again is the same signature over the same claims. The comparison takes constant time,
 * and the claims' times are checked by the caller on every request.
 */
static int verified_claims(struct keyring *kr, const char *token, json_t **claims)
{
	const char *seen = kr->client_token_seen;
	int rc;

	if (seen != NULL && crypto_str_equal(seen, token)) {
		*claims = json_incref(kr->client_token_claims);
		return 1;
	}
	rc = jwt_verify_hs256(token, kr->client_token_mac, "at+jwt", claims);
	if (rc == 1) {
		char *copy = strdup(token);

		if (copy != NULL) {
			crypto_free_str(kr->client_token_seen);
			json_decref(kr->client_token_claims);
			kr->client_token_seen = copy;
			kr->client_token_claims = json_incref(*claims);
		}
	}
	return rc;
}

int client_token_verify(struct ctx *c, const char *token, json_t **client)
{
	json_t *claims = NULL;
	const char *id;
	int rc;

	if (strlen(token) > 4096)
		return 0;
	rc = verified_claims(c->keys, token, &claims);
	if (rc != 1)
		return rc < 0 ? STORE_ERR : 0;
	id = json_string_value(json_object_get(claims, "client_id"));
	if (id == NULL || !client_claims_valid(c, claims, time(NULL))) {
		rc = 0;
		goto out;
	}
	rc = client_get(c, id, client);
	if (rc == STORE_NOTFOUND)
		rc = 0;
out:
	json_decref(claims);
	return rc;
}

static int list_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	json_object_del(val, "secret");
	return json_array_append(arg, val) < 0 ? STORE_ERR : 0;
}

static int list_txn(struct store_txn *t, void *arg)
{
	json_array_clear(arg);
	return store_each(t, TBL_CLIENTS, NULL, 0, list_cb, arg);
}

json_t *client_list(struct ctx *c)
{
	json_t *list = json_array();
	if (list != NULL && store_run(c->store, list_txn, list) < 0) {
		json_decref(list);
		return NULL;
	}
	return list;
}

const char *client_id_of(json_t *client)
{
	return json_string_value(json_object_get(client, "client_id"));
}
