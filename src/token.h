/*
 * token: refresh tokens (opaque, stored only as keyed hashes, bound to client and session) and
 * the token response every authenticate answers with (user access token + ID token, signed
 * with the current signing key).
 */
#ifndef OTLOGIN_TOKEN_H
#define OTLOGIN_TOKEN_H

#include <jansson.h>

#include "ctx.h"
#include "session.h"
#include "store.h"

#define REFRESH_TOKEN_BYTES 32

/*
 * Issue a new refresh token for the session stored under session_key inside t, in family
 * (NULL: a new family). Sets g->refresh_token. Returns 0 or a negative store_rc.
 */
int token_refresh_create_txn(struct store_txn *t, struct ctx *c, const char *session_key,
			     struct login_grant *g, const char *family);

/*
 * The token response for a finished login: {access_token, id_token, refresh_token, token_type,
 * expires_in, session_id}. aud is the access token's audience. New reference, NULL on error.
 */
json_t *token_response(struct ctx *c, const struct login_grant *g, const struct login_opts *o,
		       const char *aud);

#endif
