/*
 * token: refresh tokens (opaque, stored only as keyed hashes, bound to a client and a session,
 * rotated on every use) and the token response every authenticate answers with (user access
 * token + ID token, signed with the current signing key).
 */
#ifndef OTLOGIN_TOKEN_H
#define OTLOGIN_TOKEN_H

#include <jansson.h>

#include "ctx.h"
#include "session.h"
#include "store.h"

#define REFRESH_TOKEN_BYTES 32

/*
 * Issue a new refresh token for g's session (g->session_key) in family (NULL: a new family),
 * for audience aud (copied into g->aud). Sets g->refresh_token. Returns 0 or a negative
 * store_rc.
 */
int token_refresh_create_txn(struct store_txn *t, struct ctx *c, struct login_grant *g,
			     const char *aud, const char *family);

/*
 * Rotate a refresh token presented by client. Returns ERR_NONE with *tokens (new reference:
 * access_token, id_token, refresh_token, token_type, expires_in), ERR_BAD_CREDENTIALS when the
 * token is unknown, expired, revoked, another client's, or an already rotated one (which
 * also revokes its session: every token of the family dies), or ERR_UNAVAILABLE /
 * ERR_INTERNAL. Within the grace window a retry of the immediate predecessor gets the same
 * successor.
 */
int token_refresh(struct ctx *c, json_t *client, const char *refresh_token, json_t **tokens);

/*
 * Revoke (RFC 7009) a refresh token of client: its session ends, and with it every refresh
 * token of the session. Unknown or foreign tokens are ignored. ERR_NONE or ERR_UNAVAILABLE.
 */
int token_revoke(struct ctx *c, json_t *client, const char *refresh_token);

/*
 * The token response for a finished login: {access_token, id_token, refresh_token, token_type,
 * expires_in} plus session_id when g has the raw one. New reference, NULL on error.
 */
json_t *token_response(struct ctx *c, const struct login_grant *g, const struct login_opts *o);

/*
 * Verify a user access token (typ at+jwt) issued here: signature by a published key, iss,
 * exp, iat not ahead of now. 1 with *claims (new reference), 0 when invalid.
 */
int token_verify_access(struct ctx *c, const char *token, json_t **claims);

/*
 * The OpenID UserInfo claims of the user named by an access token's claims (at): sub, plus
 * per scope of the token email/email_verified ("email"), phone_number/phone_number_verified
 * ("phone"), name, given_name, family_name, preferred_username ("profile"). ERR_NONE with
 * *out (new reference), ERR_BAD_CREDENTIALS when the user is gone or not active or the token
 * lacks the openid scope, ERR_UNAVAILABLE.
 */
int token_userinfo(struct ctx *c, json_t *at, json_t **out);

#endif
