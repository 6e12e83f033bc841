/*
 * client: the backends allowed to call otlogin (OAuth clients). A client has a name, a secret
 * stored only as a keyed hash, registered redirect URIs and resources, permissions ("direct",
 * "admin"), a signup policy ("open" or "closed") and an existence policy ("reveal" or "hide":
 * whether its answers may tell that an identifier has no account). Its access tokens are HS256 JWTs
 * under a server-held key that is never published: only otlogin verifies them.
 */
#ifndef OTLOGIN_CLIENT_H
#define OTLOGIN_CLIENT_H

#include <jansson.h>

#include "ctx.h"

/*
 * Create a client. spec (borrowed) holds "name" and optional "redirect_uris", "resources",
 * "permissions" (arrays of strings), "signup" and "existence". On 0, *out is a new object
 * {"client_id", "client_secret"}: the only time the secret exists outside the caller.
 * Returns 0, or -1 on a bad spec (message in err) or a store error.
 */
int client_create(struct ctx *c, json_t *spec, json_t **out, char *err, size_t errlen);

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
 * a wrong secret sent during the wait is refused without being counted. 1 with *client (new
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

/* 1 when the client (borrowed) is public: it has no secret (token_endpoint_auth_method none). */
int client_is_public(json_t *client);

/* 1 when the client (borrowed) holds permission perm. */
int client_has_permission(json_t *client, const char *perm);

/* 1 when value is one of the strings of the client's array member list ("redirect_uris"). */
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
