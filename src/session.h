/*
 * session: login sessions and the step every successful authentication ends with. Session ids
 * are bearer secrets (a backend can mint tokens with one), so the store keys sessions by their
 * keyed hash; tokens carry "sid", a non-secret handle derived from that hash.
 */
#ifndef OTLOGIN_SESSION_H
#define OTLOGIN_SESSION_H

#include <jansson.h>

#include "ctx.h"
#include "resp.h"
#include "store.h"

/* What a login produces, to be turned into the token response after the commit. */
struct login_grant {
	json_t *user;	       /* new reference */
	json_t *session;       /* new reference: the stored session record */
	char *session_id;      /* the raw session id (secret), new */
	char sid[33];	       /* public handle */
	char *refresh_token;   /* raw (secret), new */
	const char *client_id; /* borrowed from the client */
	json_t *extra_claims;  /* new reference or NULL: approval_data, org_id */
};

/* The optional fields every authenticate accepts (borrowed). */
struct login_opts {
	const char *session_id; /* add this factor to an existing session */
	const char *resource;
	json_t *claims;
	const char *org_id;
	const char *device_id;
};

/*
 * Finish a login inside the caller's transaction: record it on the user, open a session or
 * add amr to opts->session_id's (which must be alive and the same user's), and issue a refresh
 * token. Returns ERR_NONE with g filled, ERR_SESSION_NOT_FOUND, or a negative store_rc.
 * On any return the caller releases g with login_grant_free.
 */
int session_login_txn(struct store_txn *t, struct ctx *c, json_t *user, json_t *client,
		      const char *amr, const struct login_opts *opts, struct login_grant *g);

void login_grant_free(struct login_grant *g);

#endif
