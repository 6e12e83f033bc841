/*
 * link: email magic links. A send stores the link token's keyed hash (replacing the
 * identifier's previous link for that client) and mails {public_base_url}/v1/auth/link/email/
 * open?t=<token>. Looking at a link consumes nothing (mail scanners fetch links); opening it
 * (POST) consumes it and yields a short-lived single-use code for the client's redirect URI,
 * which the backend exchanges for tokens.
 */
#ifndef OTLOGIN_LINK_H
#define OTLOGIN_LINK_H

#include <jansson.h>

#include "ctx.h"
#include "mail.h"
#include "session.h"
#include "user.h"

struct link_send_req {
	json_t *client;
	enum user_idtype idtype;
	const char *identifier;		    /* canonical form */
	const char *redirect_uri;	    /* registered for the client (checked by the caller) */
	const char *state;		    /* NULL when absent */
	const struct mail_content *content; /* NULL: the default template */
	unsigned minutes;		    /* 0: the configured default */
	int direct;			    /* return the link instead of mailing it */
	int want_request_id;
	/*
	 * The redirect flow's (redirect.h): its options, kept in the link's record as
	 * "redirect" (NULL for the backend API; borrowed), and the path under public_base_url
	 * its links open at, ending in "?t=" (NULL: the backend's landing page).
	 */
	json_t *redirect;
	const char *open_path;
};

struct link_send_res {
	char *link;	      /* direct only (new) */
	char *request_id;     /* when asked (new) */
	unsigned retry_after; /* ERR_RATE_LIMITED: seconds until a send would be allowed */
};

/*
 * Send a link. Returns ERR_NONE with res filled (free with link_send_res_free) or an api_err
 * (ERR_RATE_LIMITED with res->retry_after: nothing stored or sent). Mailed links count
 * against the [limits] of the recipient and the client like passcodes. When the client hides
 * existence, an identifier that cannot receive the link answers ERR_NONE after the same work,
 * but no usable link is stored or mailed (a direct send returns a link that is not valid).
 */
int link_send(struct ctx *c, const struct link_send_req *r, struct link_send_res *res);
void link_send_res_free(struct link_send_res *res);

/*
 * scheme://authority of a URI (the landing page's form-action policy names the redirect's;
 * a POST's Origin is compared with public_base_url's). Returns 0, or -1 when it does not fit
 * outlen: out is then 'none', as for a URI without "://" (a cut origin would name another
 * site).
 */
int link_origin(const char *uri, char *out, size_t outlen);

/*
 * 1 when a link to redirect_uri with state (NULL: none) can redirect: the Location, with the
 * code and state percent-encoded, fits RESP_HEADER_MAX, and the page can name the URI's
 * origin. Checked at send time, so that no link is sent whose redirect would be cut short.
 */
int link_redirect_fits(const char *redirect_uri, const char *state);

enum link_state { LINK_VALID, LINK_EXPIRED, LINK_USED, LINK_UNKNOWN };

struct link_view {
	enum link_state state;
	char masked[64];	   /* the account's masked address */
	char redirect_origin[256]; /* scheme://host[:port] of the redirect URI */
	char *redirect;		   /* link_open, LINK_VALID: where to send the browser (new) */
};

/* Look at a link without consuming it. Returns 0 with v filled, or a negative store_rc. */
int link_peek(struct ctx *c, const char *token, struct link_view *v);

/*
 * Consume a link: on LINK_VALID v->redirect is redirect_uri?code=..&state=.. for a fresh
 * single-use code. Returns 0 with v filled, or a negative store_rc.
 */
int link_open(struct ctx *c, const char *token, struct link_view *v);

void link_view_free(struct link_view *v);

/*
 * The redirect flow's end of a link (redirect.h): inside t, after the link record rec
 * (borrowed) was marked used, fill v->redirect (new). Returns 0, STORE_REFUSE(err) with
 * v->redirect set (nothing the transaction wrote is kept), or a negative store_rc.
 */
struct link_finish {
	int (*fn)(struct store_txn *t, json_t *rec, struct link_view *v, void *arg);
	void *arg;
};

/*
 * link_peek (consume 0) or link_open (consume 1) of a link sent with link_send_req.redirect,
 * which f finishes instead of issuing a backend code. Links of the backend API are unknown
 * here, and these links are unknown to link_peek and link_open. Returns 0 with v filled, a
 * refusal of f (v->redirect set), or a negative store_rc.
 */
int link_open_redirect(struct ctx *c, const char *token, struct link_view *v,
		       const struct link_finish *f, int consume);

struct link_auth_req {
	json_t *client;
	const char *code;
	const char *request_id;
	struct login_opts opts;
	const char *ip;	       /* the end user's address for [limits] ip_attempts, or NULL */
	unsigned *retry_after; /* out, ERR_RATE_LIMITED, ERR_LOCKED: seconds (NULL: not wanted) */
};

/*
 * Exchange a code for tokens. ERR_NONE with *tokens (new reference), ERR_BAD_CREDENTIALS for
 * an unknown, used, expired or foreign code, ERR_LOCKED while the account waits out a delay
 * of its throttle (lockout.h; the code stays usable, *retry_after), ERR_RATE_LIMITED (an
 * unknown code past an attempt limit), ERR_USER_NOT_FOUND, ERR_USER_NOT_ACTIVE,
 * ERR_SESSION_NOT_FOUND, ERR_UNAVAILABLE or ERR_INTERNAL. A success ends the count of the
 * identifier's failed attempts, as a passcode's does.
 */
int link_authenticate(struct ctx *c, const struct link_auth_req *r, const char *aud,
		      json_t **tokens);

/* Register the purge rule of this module's records without "exp" (store_purge_rule). 0 or -1. */
int link_purge_rules(struct store *s);

#endif
