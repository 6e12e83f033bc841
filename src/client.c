#include "client.h"

#include <string.h>
#include <time.h>

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

struct put_arg {
	const char *id;
	json_t *rec;
};

static int put_client_txn(struct store_txn *t, void *argp)
{
	struct put_arg *arg = argp;
	return store_put(t, TBL_CLIENTS, arg->id, strlen(arg->id), arg->rec);
}

static json_t *array_or_empty(json_t *spec, const char *name)
{
	json_t *a = json_object_get(spec, name);
	return a ? json_incref(a) : json_array();
}

int client_create(struct ctx *c, json_t *spec, json_t **out, char *err, size_t errlen)
{
	unsigned char raw[CLIENT_ID_BYTES];
	char id[2 * CLIENT_ID_BYTES + 1], tag[KEYRING_TAG_HEX], *secret = NULL;
	const char *name = json_string_value(json_object_get(spec, "name"));
	const char *signup = json_string_value(json_object_get(spec, "signup"));
	const char *existence = json_string_value(json_object_get(spec, "existence"));
	json_t *uris = array_or_empty(spec, "redirect_uris");
	json_t *resources = array_or_empty(spec, "resources");
	json_t *perms = array_or_empty(spec, "permissions");
	json_t *allow;
	struct put_arg arg = {id, NULL};
	int rc = -1;

	if (name == NULL || name[0] == '\0' || strlen(name) > 100) {
		snprintf(err, errlen, "a client needs a name of at most 100 characters");
		goto out;
	}
	if (signup == NULL)
		signup = "open";
	if (strcmp(signup, "open") != 0 && strcmp(signup, "closed") != 0) {
		snprintf(err, errlen, "signup must be open or closed");
		goto out;
	}
	if (existence == NULL)
		existence = "reveal";
	if (strcmp(existence, "reveal") != 0 && strcmp(existence, "hide") != 0) {
		snprintf(err, errlen, "existence must be reveal or hide");
		goto out;
	}
	allow = json_object_get(spec, "allow_http_redirect");
	if (allow != NULL && !json_is_boolean(allow)) {
		snprintf(err, errlen, "allow_http_redirect must be a boolean");
		goto out;
	}
	if (!is_string_array(uris) || !valid_redirect_uris(uris, json_is_true(allow))) {
		snprintf(err, errlen,
			 "redirect URIs must be absolute https URIs without fragment (http only "
			 "for localhost, 127.0.0.1 or [::1], unless allowed with "
			 "--allow-http-redirect)");
		goto out;
	}
	if (!is_string_array(perms) || !valid_permissions(perms)) {
		snprintf(err, errlen, "permissions are direct and admin");
		goto out;
	}
	if (!is_string_array(resources)) {
		snprintf(err, errlen, "resources must be strings");
		goto out;
	}
	crypto_random(raw, sizeof(raw));
	crypto_hex(raw, sizeof(raw), id);
	secret = crypto_random_token(CLIENT_SECRET_BYTES);
	if (secret == NULL || keyring_tag(c->keys, tag, "client-secret", id, secret, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	arg.rec = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:s, s:s, s:I}", "client_id", id,
			    "name", name, "secret", tag, "redirect_uris", uris, "resources",
			    resources, "permissions", perms, "signup", signup, "existence",
			    existence, "created_at", (json_int_t)time(NULL));
	if (arg.rec != NULL && json_is_true(allow) &&
	    json_object_set_new(arg.rec, "allow_http_redirect", json_true()) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (arg.rec == NULL || store_run(c->store, put_client_txn, &arg) < 0) {
		snprintf(err, errlen, "could not store the client");
		goto out;
	}
	*out = json_pack("{s:s, s:s}", "client_id", id, "client_secret", secret);
	rc = *out ? 0 : -1;
out:
	json_decref(arg.rec);
	json_decref(uris);
	json_decref(resources);
	json_decref(perms);
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
	return strcmp(json_string_value(json_object_get(client, "type")) ?: "", "public") == 0;
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

int client_token_verify(struct ctx *c, const char *token, json_t **client)
{
	json_t *claims = NULL;
	const char *id;
	int rc;

	if (strlen(token) > 4096)
		return 0;
	rc = jwt_verify_hs256(token, c->keys->client_token_mac, "at+jwt", &claims);
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
