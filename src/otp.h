/*
 * otp: one-time passcodes, three login kinds over login.h (by email, by SMS, or direct: handed
 * to the backend). A send stores the passcode's keyed hash under (client, identifier),
 * replacing any earlier one, then delivers it; an authenticate checks it in one transaction
 * with the code's own failure count and the account's throttle (lockout.h), so that parallel
 * guesses cannot exceed either and a code succeeds at most once.
 */
#ifndef OTLOGIN_OTP_H
#define OTLOGIN_OTP_H

#include <jansson.h>
#include <time.h>

#include "ctx.h"
#include "mail.h"
#include "session.h"
#include "sms.h"
#include "user.h"

struct otp_send_req {
	json_t *client;	     /* borrowed */
	const char *channel; /* "email", "sms", "direct" */
	enum user_idtype idtype;
	const char *identifier;		    /* canonical form */
	const struct mail_content *content; /* NULL: the default template */
	json_t *approval_data;		    /* borrowed or NULL */
	const char *custom_email;	    /* NULL or a validated address */
	const char *custom_phone;	    /* NULL or a validated E.164 number */
	const char *sms_template; /* NULL: [sms] default_message; else sms_template_valid */
	const char *sender_id;	  /* NULL: [sms] sender_id; else sms_sender_valid */
	unsigned minutes;	  /* lifetime; 0: the configured default */
	int want_request_id;
	/*
	 * The redirect flow's options (redirect.h), kept in the code's record as "redirect";
	 * NULL for the backend API. Borrowed.
	 */
	json_t *redirect;
};

struct otp_send_res {
	char *code;	      /* channel direct only: the passcode (new; wipe and free) */
	char *request_id;     /* when asked (new) */
	unsigned retry_after; /* ERR_RATE_LIMITED: seconds until a send would be allowed */
};

/*
 * Send a passcode. The code record is committed first, then delivered (email: mail module, sms:
 * sms module); a failed delivery deletes the record again and answers ERR_DELIVERY, so no
 * usable code is left behind. Returns ERR_NONE with res filled (release with
 * otp_send_res_free), an api_err for the caller to answer (ERR_EMAIL_MISSING,
 * ERR_PHONE_MISSING, ERR_INVALID_INPUT for an SMS that cannot be built or sent from this
 * configuration, ERR_DELIVERY, ERR_RATE_LIMITED with res->retry_after: nothing was stored or
 * sent), or ERR_UNAVAILABLE / ERR_INTERNAL on store failures.
 *
 * Email and SMS sends count against the [limits] of the recipient and the client; direct
 * sends deliver nothing and are not limited. When the client hides existence, an identifier
 * that cannot receive the code (unknown under closed signup, disabled, without the address or
 * number) gets the same ERR_NONE after the same work, but its code is never stored usable
 * nor delivered (a direct send returns a code that never works).
 */
int otp_send(struct ctx *c, const struct otp_send_req *r, struct otp_send_res *res);
void otp_send_res_free(struct otp_send_res *res);

struct login_attempt;

struct otp_auth_req {
	json_t *client;
	enum user_idtype idtype;
	const char *identifier; /* canonical form */
	const char *passcode;
	const char *request_id; /* NULL when not given */
	struct login_opts opts;
	const char *ip;	       /* the end user's address for [limits] ip_attempts, or NULL */
	unsigned *retry_after; /* out, ERR_RATE_LIMITED, ERR_LOCKED: seconds (NULL: not wanted) */
	/*
	 * NULL for the backend API. Else the redirect flow (redirect.h) ends a right passcode
	 * here instead of in tokens: inside t, after the code's record rec (borrowed) was
	 * consumed, with a's client and identifier; it returns what login_finish_txn would.
	 * Only codes sent with otp_send_req.redirect are checked then, and only codes sent
	 * without it otherwise (a code of one flow is no code for the other).
	 */
	int (*finish)(struct store_txn *t, struct login_attempt *a, json_t *rec, void *arg);
	void *finish_arg;
};

/*
 * Check a passcode and log the user in. Returns ERR_NONE with *tokens (new reference), or
 * ERR_BAD_CREDENTIALS, ERR_CODE_EXPIRED, ERR_LOCKED (the account is throttled: nothing was
 * checked; *retry_after), ERR_RATE_LIMITED (a wrong passcode past an attempt limit; counted
 * like any wrong one; *retry_after), ERR_USER_NOT_FOUND, ERR_USER_NOT_ACTIVE,
 * ERR_SESSION_NOT_FOUND, ERR_UNAVAILABLE, ERR_INTERNAL. When the client hides existence, a wrong
 * passcode for an expired code is ERR_BAD_CREDENTIALS like any wrong passcode (only the right one
 * learns it expired).
 */
int otp_authenticate(struct ctx *c, const struct otp_auth_req *r, const char *aud, json_t **tokens);
/* (With r->finish, ERR_NONE leaves *tokens NULL: the finish made the outcome.) */

#endif
