/*
 * client: the backends and apps allowed to call otlogin (OAuth clients). A client has a name, a
 * secret stored only as a keyed hash (none when it is public), registered redirect URIs and
 * resources, permissions ("direct", "admin"), a signup policy ("open" or "closed") and an
 * existence policy ("reveal" or "hide": whether its answers may tell that an identifier has no
 * account); as an OpenID Connect client also a type, a PKCE mode, post-logout redirect URIs, the
 * login methods its users may use and the branding of the hosted login page. Its access tokens
 * are HS256 JWTs under a server-held key that is never published: only otlogin verifies them.
 */
#ifndef OTLOGIN_CLIENT_H
#define OTLOGIN_CLIENT_H

#include <jansson.h>

#include "ctx.h"

/* The longest display name, in characters (code points). */
#define CLIENT_DISPLAY_NAME_MAX 64
/* The longest logo: an http(s) URL, or a data: URI (about 48 KiB of image once base64). */
#define CLIENT_LOGO_URL_MAX 2048
#define CLIENT_LOGO_DATA_MAX 65536

/*
 * Create a client. spec (borrowed) is an object that holds "name" (1 to 100 bytes) and
 * optionally:
 * - "redirect_uris", "post_logout_redirect_uris": arrays of absolute https URIs without
 *   fragment (http only on loopback, or anywhere with "allow_http_redirect": true);
 * - "resources": array of strings; "permissions": array of "direct", "admin";
 * - "signup": "open" (default) or "closed"; "existence": "reveal" (default) or "hide";
 * - "type": "confidential" (default) or "public" (a browser or native app: no secret);
 * - "pkce": "allow" (default) or "require"; a public client always requires it;
 * - "login_methods": a non-empty array of distinct "email_otp", "magic_link", "sms_otp"
 *   (default email_otp and magic_link);
 * - "display_name" (1 to 64 printable characters), "logo" (an http(s) URL of at most
 *   CLIENT_LOGO_URL_MAX bytes, or a base64 data: URI of a PNG, JPEG or script-free SVG of at
 *   most CLIENT_LOGO_DATA_MAX bytes), "color" ("#RRGGBB").
 * Any other member is refused. The record stores every member above, defaults included (the
 * three optional ones only when given). On 0, *out is a new object {"client_id",
 * "client_secret"}, the only time the secret exists outside the caller; a public client's is
 * {"client_id"} alone. Returns 0, or -1 on a bad spec (message in err) or a store error.
 */
int client_create(struct ctx *c, json_t *spec, json_t **out, char *err, size_t errlen);

/* client_update's answer for a client_id that names no client (err says so too). */
#define CLIENT_UNKNOWN 3

/*
 * Change a client: each member of spec (borrowed; the members client_create takes) replaces
 * the stored one (arrays as a whole); null removes "display_name", "logo" or "color", and
 * "allow_http_redirect": false removes that flag. The id and the secret never change: a spec
 * naming them is refused. The result must pass client_create's checks, or nothing changes;
 * all of it happens in one transaction. A client turned public loses its secret for good, and
 * its pkce becomes require; a public client cannot turn confidential (it has no secret).
 * Returns 0, CLIENT_UNKNOWN, or -1 on a bad spec (message in err) or a store error.
 */
int client_update(struct ctx *c, const char *client_id, json_t *spec, char *err, size_t errlen);

/* Look a client up. STORE_FOUND with *client a new reference, STORE_NOTFOUND, or < 0. */
int client_get(struct ctx *c, const char *client_id, json_t **client);

/* The client_id of a client record (borrowed). */
const char *client_id_of(json_t *client);

/* client_check_secret's answer for a wrong secret sent while its address must wait. */
#define CLIENT_THROTTLED 2

/*
 * Check a client's secret in constant time (the hash is computed for unknown ids as well).
 * The right secret is always accepted. Wrong secrets of a known client are throttled per
 * (client, caller address addr): [limits] client_secret_failures are free, each further one
 * makes that address wait client_secret_delay seconds, doubling up to client_secret_max_delay;
 * a wrong secret sent during the wait is refused without being counted. A public client has no
 * secret: every one is wrong for it, and none is counted. 1 with *client (new
 * reference) when right, 0 when wrong or unknown, CLIENT_THROTTLED with *retry_after
 * (seconds) for a wrong secret sent during a wait, < 0 on store errors.
 */
int client_check_secret(struct ctx *c, const char *client_id, const char *secret, const char *addr,
			json_t **client, unsigned *retry_after);

/*
 * 1 when the client (borrowed) hides whether an identifier exists: its sends answer alike for
 * every identifier and deliver only to those that can log in.
 */
int client_hides_existence(json_t *client);

/* 1 when the client (borrowed) is public: it has no secret and must use PKCE. */
int client_is_public(json_t *client);

/* 1 when the client (borrowed) needs PKCE on every authorization (public, or pkce require). */
int client_requires_pkce(json_t *client);

/*
 * 1 when the client (borrowed) lets its users log in with method ("email_otp", "magic_link",
 * "sms_otp"); a client without "login_methods" allows email_otp and magic_link.
 */
int client_allows_login_method(json_t *client, const char *method);

/* 1 when the client (borrowed) holds permission perm. */
int client_has_permission(json_t *client, const char *perm);

/*
 * 1 when value is one of the strings of the client's array member list ("redirect_uris",
 * "post_logout_redirect_uris", "resources", ...).
 */
int client_lists(json_t *client, const char *list, const char *value);

/* A new client access token (caller frees) for client with audience aud; NULL on error. */
char *client_token_issue(struct ctx *c, json_t *client, const char *aud);

/*
 * Verify a client access token: signature (HS256 only), typ at+jwt, iss, aud (the issuer),
 * iat and nbf (not ahead of now), exp, and that the client still exists. 1 with *client (new
 * reference), 0 when invalid, < 0 on store errors.
 */
int client_token_verify(struct ctx *c, const char *token, json_t **client);

/* All clients without secrets, as a new array. NULL on error. */
json_t *client_list(struct ctx *c);

#endif
