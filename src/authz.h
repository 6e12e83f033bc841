/*
 * authz: the OpenID Connect authorization request (/oidc/auth). It validates a request's
 * parameters against the client's registration, answers it at once from a live login session
 * (single sign-on) or parks it as a "flow" record that the hosted login page (hosted.h)
 * completes, and turns a login session into the authorization code redirect (authcode.h).
 *
 * A flow lives AUTHZ_FLOW_TTL seconds in TBL_CODES under the keyed hash of its random id; the
 * id itself lives only in the browser's flow cookie, so only that browser can finish it.
 */
#ifndef OTLOGIN_AUTHZ_H
#define OTLOGIN_AUTHZ_H

#include <jansson.h>

#include "ctx.h"
#include "keyring.h"
#include "store.h"

#define AUTHZ_FLOW_TTL 900

/* The authorization request parameters otlogin reads (all others are ignored). */
extern const char *const authz_param_names[];

/* How a request was judged. */
enum authz_verdict {
	AUTHZ_OK,	     /* valid */
	AUTHZ_ERROR_PAGE,    /* no trustworthy redirect: answer with a 400 page, never a redirect */
	AUTHZ_ERROR_REDIRECT /* redirect_uri?error=..&error_description=..&state=..&iss=.. */
};

struct authz_req {
	json_t *params; /* the request's parameters (strings; new reference) */
	json_t *client; /* the client record (new reference), NULL when unknown */
	enum authz_verdict verdict;
	const char *error; /* the OAuth error code when not AUTHZ_OK */
	char description[256];
	/* The parsed options (valid when AUTHZ_OK). */
	int prompt_none, prompt_login;
	long max_age; /* -1: none */
	int want_mfa; /* acr_values holds "mfa" */
};

/*
 * Judge the parameters params (borrowed; the caller checked each is a string and none is
 * repeated) of an authorization request: r filled; release it with authz_req_free. Returns 0,
 * or a negative store_rc when the client could not be read.
 */
int authz_check(struct ctx *c, json_t *params, struct authz_req *r);
void authz_req_free(struct authz_req *r);

/*
 * The redirect of an error for request params (borrowed): redirect_uri with error,
 * error_description (NULL: none), state and iss, percent-encoded (new string), or NULL when it
 * would not fit a Location header.
 */
char *authz_error_location(struct ctx *c, json_t *params, const char *error,
			   const char *description);

/*
 * Single sign-on: when the raw login session id session_id (NULL: none) names a live session
 * whose user is active and whose login satisfies r's max_age, prompt and acr_values, issue the
 * code for it. ERR_NONE with *location (new string: the redirect), ERR_SESSION_NOT_FOUND when
 * a login is needed, ERR_ORG_NOT_MEMBER when the session's user is not in the request's
 * org_id, or ERR_UNAVAILABLE / ERR_INTERNAL.
 */
int authz_sso(struct ctx *c, const struct authz_req *r, const char *session_id, char **location);

/*
 * Park the valid request params (borrowed) as a new flow for the end user at address ip (NULL:
 * unknown). A flow is a record that anyone can make a browser write, so they are limited per
 * address ([limits] authorization_flows). ERR_NONE with *flow_id (new string: the cookie's
 * value, a secret), ERR_RATE_LIMITED with *retry_after, or ERR_UNAVAILABLE.
 */
int authz_flow_start(struct ctx *c, json_t *params, const char *ip, char **flow_id,
		     unsigned *retry_after);

#define AUTHZ_PAR_TTL 60
#define AUTHZ_PAR_PREFIX "urn:ietf:params:oauth:request_uri:"

/*
 * Store the checked request params (borrowed) of a pushed authorization request (RFC 9126)
 * for AUTHZ_PAR_TTL seconds. ERR_NONE with *request_uri (new string), or ERR_UNAVAILABLE.
 */
int authz_par_store(struct ctx *c, json_t *params, char **request_uri);

/*
 * Take (single use) the pushed request request_uri of client_id. ERR_NONE with *params (new
 * reference), ERR_NOT_FOUND for an unknown, used, expired or another client's one, or
 * ERR_UNAVAILABLE.
 */
int authz_par_take(struct ctx *c, const char *client_id, const char *request_uri, json_t **params);

/* The store key of a flow id. 0, or -1 for a malformed id. */
int authz_flow_key(struct ctx *c, const char *flow_id, char key[KEYRING_TAG_HEX]);

/*
 * A flow's handle: the first AUTHZ_FLOW_HANDLE characters of its store key, not a secret. The
 * login page's URL names it (?f=), so that a browser with several flows (tabs) shows each
 * its own. 0, or -1 for a malformed id.
 */
#define AUTHZ_FLOW_HANDLE 16
int authz_flow_handle(struct ctx *c, const char *flow_id, char out[AUTHZ_FLOW_HANDLE + 1]);

/*
 * Inside t, issue the code of the flow's request params (borrowed) for the session stored
 * under session_key, whose record is session: *location (new string) is the success redirect.
 * 0, or a negative store_rc.
 */
int authz_issue_txn(struct store_txn *t, struct ctx *c, json_t *params, const char *session_key,
		    json_t *session, char **location);

/*
 * 1 when the session record (borrowed) satisfies the request's max_age (-1: none; else the
 * login must be younger than max_age seconds) and mfa (want_mfa: its amr holds "mfa") at now.
 */
int authz_session_fits(json_t *session, long max_age, int want_mfa, long now);

/*
 * 1 when user (borrowed) may have a code for params (borrowed): a member of its org_id, when
 * it names one; else 0 (the answer is the error redirect access_denied).
 */
int authz_user_fits(json_t *params, json_t *user);

/* The options of a flow's stored params: max_age (-1: none) and mfa. */
void authz_params_options(json_t *params, long *max_age, int *want_mfa);

#endif
