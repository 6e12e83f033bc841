/*
 * redirect: Transmit's redirect-based One-Time Login (API-OIDC.md part A), three login kinds
 * over the passcode and magic link kinds (otp.h, link.h) that end in the browser instead of
 * in tokens for the backend. A send stores its options (redirect_uri, create_new_user,
 * require_mfa, claims, approval_data, org_id, resource) with the passcode or link, keyed by
 * client and identifier like the backend's (a new send replaces the old one). A passcode's
 * validation turns the proof into a single-use ticket (REDIRECT_TICKET_TTL seconds) behind a
 * URL under public_base_url; the browser's arrival there (or the POST of a link's landing
 * page) opens or joins the browser's login session (the login-session cookie ties the
 * factors of require_mfa together) and answers with redirect_uri?code=..&iss=.. for an
 * authorization code (authcode.h), or redirect_uri?error=..&error_description=..&iss=..
 *
 * The user of create_new_user is created when the browser arrives, not at the exchange: a
 * code names a login session and a session names its user, so the user must exist before
 * the code does (see the commit that added this module).
 */
#ifndef OTLOGIN_REDIRECT_H
#define OTLOGIN_REDIRECT_H

#include <jansson.h>

#include "ctx.h"
#include "link.h"
#include "mail.h"
#include "user.h"

#define REDIRECT_TICKET_TTL 300
/* Where the browser goes with a ticket, and where the emailed links open (under the mount). */
#define REDIRECT_TICKET_PATH "/v1/auth/redirect/continue"
#define REDIRECT_LINK_PATH "/v1/auth/links/email/open"

enum redirect_kind { REDIRECT_EMAIL_OTP, REDIRECT_SMS_OTP, REDIRECT_EMAIL_LINK };

/* A send (all borrowed; the caller checked redirect_uri and resource against the client). */
struct redirect_send_req {
	json_t *client;
	enum redirect_kind kind;
	enum user_idtype idtype;
	const char *identifier;		    /* canonical form */
	const struct mail_content *content; /* NULL: the default template */
	const char *sms_template;	    /* NULL: the configured one (sms_template_valid) */
	const char *sender_id;		    /* NULL: the configured one (sms_sender_valid) */
	const char *redirect_uri;
	int create_new_user;
	int require_mfa;
	const char *resource; /* the access token's audience, or NULL for the default */
	const char *org_id;
	json_t *claims;
	json_t *approval_data;
};

/*
 * Send a passcode or a link. ERR_NONE; ERR_USER_NOT_FOUND when the identifier is unknown and
 * create_new_user is false; ERR_FORBIDDEN when create_new_user is true and the client's signup
 * policy does not let this identifier sign up; else what otp_send / link_send answer
 * (ERR_RATE_LIMITED with *retry_after: nothing stored or sent).
 */
int redirect_send(struct ctx *c, const struct redirect_send_req *r, unsigned *retry_after);

struct redirect_validate_req {
	json_t *client; /* borrowed */
	enum user_idtype idtype;
	const char *identifier; /* canonical form */
	const char *passcode;
	const char *nonce; /* echoed in the ID token, or NULL */
	const char *ip;	   /* the end user's address for [limits] ip_attempts, or NULL */
};

/*
 * Check a passcode sent by redirect_send (counted, throttled and single use exactly as
 * otp_authenticate does) and turn it into a ticket. ERR_NONE with *url (new: the ticket's URL
 * under public_base_url), or otp_authenticate's errors (ERR_RATE_LIMITED and ERR_LOCKED with
 * *retry_after).
 */
int redirect_validate(struct ctx *c, const struct redirect_validate_req *r, char **url,
		      unsigned *retry_after);

/* A browser arriving with a ticket or at a link's landing page. */
struct redirect_landing {
	const char *cookie; /* in: the raw session id of its login-session cookie, or NULL */
	char *location;	    /* out (new): where the browser goes next (303) */
	char *session_id;   /* out (new) or NULL: the login-session cookie to set */
};

#define REDIRECT_UNKNOWN 1

/*
 * Consume a ticket. 0 with L->location: redirect_uri with a code, or with an error
 * (access_denied for a used or expired ticket or a refused login, mfa_required); then
 * L->session_id is the cookie to set when a login session was opened or joined.
 * REDIRECT_UNKNOWN for a ticket that names nothing (no redirect_uri to go to), or a negative
 * store_rc.
 */
int redirect_ticket(struct ctx *c, const char *ticket, struct redirect_landing *L);

/*
 * Look at (consume 0) or open (consume 1) a link sent by redirect_send, as link.h's landing
 * page does: 0 with v filled; a valid link's open also fills L as redirect_ticket does (and
 * v->redirect, a copy of L->location). A negative store_rc.
 */
int redirect_link(struct ctx *c, const char *token, int consume, struct link_view *v,
		  struct redirect_landing *L);

void redirect_landing_free(struct redirect_landing *L);

/*
 * End the sessions with its client of the user a user access token (at+jwt, signed by one of
 * the published keys, this issuer, not expired) names. ERR_NONE with *count (the sessions
 * ended), ERR_INVALID_TOKEN, or ERR_UNAVAILABLE.
 */
int redirect_logout(struct ctx *c, const char *access_token, size_t *count);

#endif
