/*
 * authcode: the single-use authorization code every redirect flow ends with (the OpenID
 * Provider's /oidc/auth and hosted login page, Transmit's redirect-based One-Time Login). A
 * code is bound to a client, its redirect_uri, a login session (session.h; the session names
 * the user), a PKCE challenge, a nonce and what was granted. It lives AUTHCODE_TTL seconds,
 * is stored only as a keyed hash, and is exchanged once at /oidc/token: a second exchange
 * fails and revokes the refresh tokens and access the first one issued (RFC 6749 4.1.2).
 */
#ifndef OTLOGIN_AUTHCODE_H
#define OTLOGIN_AUTHCODE_H

#include <jansson.h>

#include "ctx.h"
#include "store.h"

#define AUTHCODE_TTL 60

/* What a code grants (all borrowed; NULL or 0 for absent). */
struct authcode_grant {
	const char *client_id;
	const char *redirect_uri;   /* exactly as the authorization request named it */
	const char *session_key;    /* the store key of the login session (session.h) */
	const char *code_challenge; /* PKCE S256 challenge, or NULL */
	const char *nonce;	    /* echoed in the ID token exactly when set */
	const char *scope;	    /* granted scopes, space-separated ("openid email ...") */
	const char *acr;	    /* "mfa" when acr_values asked for it and the login met it */
	const char *resource;	    /* the access token's audience, or NULL for the default */
	const char *org_id;
	json_t *claims;	      /* the OIDC claims request, or NULL */
	json_t *extra_claims; /* added to the ID token (approval_data, new_user), or NULL */
	int refresh;	      /* issue a refresh token (offline_access; always for part A codes) */
};

/*
 * Inside t, store a new code for g. Returns 0 with *code (the raw code, new string: the
 * caller puts it in the redirect and frees it), or a negative store_rc.
 */
int authcode_issue_txn(struct store_txn *t, struct ctx *c, const struct authcode_grant *g,
		       char **code);

/* A token request with grant_type=authorization_code, after client authentication. */
struct authcode_exchange {
	json_t *client;		   /* the authenticated (or public) client, borrowed */
	const char *code;	   /* as presented */
	const char *redirect_uri;  /* as presented (NULL: absent) */
	const char *code_verifier; /* as presented (NULL: absent) */
};

/*
 * Exchange a code. ERR_NONE with *tokens (new reference: access_token, id_token, token_type,
 * expires_in, scope, and refresh_token when granted); ERR_BAD_CREDENTIALS (invalid_grant) for
 * an unknown, expired, used (which also revokes what its first exchange issued) or another
 * client's code, a redirect_uri that differs from the authorization request's, or a PKCE
 * verifier that is missing, unexpected or wrong, with *why a short public reason; also
 * ERR_USER_NOT_ACTIVE, ERR_SESSION_NOT_FOUND (the login session ended meanwhile),
 * ERR_UNAVAILABLE, ERR_INTERNAL.
 */
int authcode_exchange(struct ctx *c, const struct authcode_exchange *x, json_t **tokens,
		      const char **why);

#endif
