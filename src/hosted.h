/*
 * hosted: the login kind of the hosted login page, over login.h. A flow (authz.h) waiting for
 * a login gets one email holding both a passcode, for the tab that asked, and a magic link,
 * for any device. The code is checked in one transaction with its own failure count and the
 * account's throttle (lockout.h), as the API's passcodes are. The link, opened in the browser
 * that holds the flow, finishes the login there; opened anywhere else it marks the flow
 * confirmed, and the waiting browser finishes it when it next looks (hosted_poll). Either way
 * only the browser holding the flow cookie receives the session and the code.
 */
#ifndef OTLOGIN_HOSTED_H
#define OTLOGIN_HOSTED_H

#include <jansson.h>

#include "authz.h"
#include "ctx.h"

/* Where a flow stands. */
enum hosted_step {
	HOSTED_GONE,	  /* no such flow (never, finished, or purged) */
	HOSTED_EXPIRED,	  /* the flow outlived AUTHZ_FLOW_TTL; its request can be restarted */
	HOSTED_EMAIL,	  /* asks for the address */
	HOSTED_CODE,	  /* a code was sent: asks for it */
	HOSTED_CONFIRMED, /* its link was opened on another device: hosted_poll finishes it */
	HOSTED_MFA,	  /* the first factor is done; acr_values=mfa asks for an SMS code */
};

struct hosted_view {
	enum hosted_step step;
	json_t *params;		/* the authorization request (new reference) */
	json_t *client;		/* the client record (new reference; NULL when gone) */
	char masked[64];	/* HOSTED_CODE: the masked address the code went to */
	char identifier[256];	/* the address last asked for ("" none), to prefill the form */
	int code_dead;		/* HOSTED_CODE: too many wrong codes: a new one must be sent */
	int code_off, link_off; /* HOSTED_CODE: the mail held no code, no link (login_methods) */
};

/* Look at a flow. 0 with v filled (release with hosted_view_free), or a negative store_rc. */
int hosted_view(struct ctx *c, const char *flow_id, struct hosted_view *v);
void hosted_view_free(struct hosted_view *v);

/*
 * Send the code and link of flow_id to the canonical address email, for client (borrowed).
 * ERR_NONE (also for an address that cannot log in when the client hides existence),
 * ERR_RATE_LIMITED with *retry_after, ERR_USER_NOT_FOUND, ERR_USER_NOT_ACTIVE, ERR_DELIVERY,
 * ERR_NOT_FOUND (the flow is gone or expired), ERR_FORBIDDEN (the client's login_methods
 * allow neither email_otp nor magic_link), ERR_UNAVAILABLE, ERR_INTERNAL. The mail holds the
 * code, the link, or both, as the client's login_methods allow.
 */
int hosted_send(struct ctx *c, json_t *client, const char *flow_id, const char *email,
		unsigned *retry_after);

/*
 * Send a code by SMS for flow_id to the canonical E.164 number phone (a login by phone: the
 * client allows sms_otp). Returns as hosted_send does; ERR_FORBIDDEN when the client does not
 * allow sms_otp, ERR_DELIVERY when no SMS backend is configured.
 */
int hosted_send_phone(struct ctx *c, json_t *client, const char *flow_id, const char *phone,
		      unsigned *retry_after);

/*
 * Send the second factor's code by SMS to the phone of the user of flow_id (HOSTED_MFA).
 * Returns as hosted_send does; ERR_NOT_FOUND when the flow waits for no second factor.
 */
int hosted_send_mfa(struct ctx *c, json_t *client, const char *flow_id, unsigned *retry_after);

/* Forget the flow's address and code: the page asks for an address again. ERR_NONE or err. */
int hosted_restart_email(struct ctx *c, const char *flow_id);

/* A finished login: what the browser gets. */
struct hosted_done {
	/*
	 * redirect_uri?code=..&state=..&iss=.. (new), or its error=access_denied when the user is
	 * not in the request's org_id; NULL: the first factor is done and the page asks for the
	 * second one (acr_values=mfa).
	 */
	char *location;
	json_t *params;		       /* the authorization request answered (new reference) */
	char *session_id;	       /* the raw login session id for the cookie (new, secret) */
	unsigned long session_max_age; /* seconds the cookie should live */
	unsigned retry_after;	       /* ERR_LOCKED, ERR_RATE_LIMITED */
};
void hosted_done_free(struct hosted_done *d);

/*
 * Check the code typed into flow_id's page (ip: the end user's address; cookie_session: the
 * browser's login session id or NULL, joined when it is the same user's with this client).
 * ERR_NONE with d filled, ERR_BAD_CREDENTIALS (wrong, or dead after [otp] max_failures wrong
 * ones), ERR_CODE_EXPIRED, ERR_LOCKED / ERR_RATE_LIMITED (d->retry_after), ERR_NOT_FOUND (the
 * flow is gone), ERR_USER_NOT_FOUND, ERR_USER_NOT_ACTIVE, ERR_UNAVAILABLE, ERR_INTERNAL.
 */
int hosted_code(struct ctx *c, const char *flow_id, const char *code, const char *ip,
		const char *cookie_session, struct hosted_done *d);

/*
 * Finish flow_id when its link was opened elsewhere (HOSTED_CONFIRMED). Returns as
 * hosted_code does (no ERR_BAD_CREDENTIALS).
 */
int hosted_poll(struct ctx *c, const char *flow_id, const char *ip, const char *cookie_session,
		struct hosted_done *d);

enum hosted_link_state {
	HOSTED_LINK_VALID,
	HOSTED_LINK_USED,
	HOSTED_LINK_EXPIRED,
	HOSTED_LINK_UNKNOWN
};

/* What opening a link did. */
struct hosted_link {
	enum hosted_link_state state;
	char masked[64];
	json_t *params; /* the flow's authorization request (new reference), when known */
	char flow_handle[AUTHZ_FLOW_HANDLE + 1]; /* its flow's handle (authz.h), "" unknown */
	int here;				 /* the browser held the link's flow: d is filled */
	struct hosted_done d;
};

/*
 * Look at a link without consuming it. 0 with l filled (release with hosted_link_free), or a
 * negative store_rc.
 */
int hosted_link_peek(struct ctx *c, const char *token, struct hosted_link *l);
void hosted_link_free(struct hosted_link *l);

/*
 * Open (consume) a link: in the browser holding its flow (flow_id), finish the login there
 * (l->here, l->d); elsewhere confirm the waiting flow. Returns ERR_NONE with l->state,
 * ERR_LOCKED (the account's throttle; the link stays usable), another finishing err, or
 * ERR_UNAVAILABLE.
 */
int hosted_link_open(struct ctx *c, const char *token, const char *flow_id, const char *ip,
		     const char *cookie_session, struct hosted_link *l);

#endif
