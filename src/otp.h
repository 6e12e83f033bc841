/*
 * otp: one-time passcodes. A send stores the passcode's keyed hash under (client, identifier),
 * replacing any earlier one, then delivers it; an authenticate checks it in one transaction
 * with the per-identifier failure counter, so that parallel guesses cannot exceed the limit
 * and a code succeeds at most once.
 */
#ifndef OTLOGIN_OTP_H
#define OTLOGIN_OTP_H

#include <jansson.h>

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
};

struct otp_send_res {
	char *code;	  /* channel direct only: the passcode (new; wipe and free) */
	char *request_id; /* when asked (new) */
};

/*
 * Send a passcode. The code record is committed first, then delivered (email: mail module, sms:
 * sms module); a failed delivery deletes the record again and answers ERR_DELIVERY, so no
 * usable code is left behind. Returns ERR_NONE with res filled (release with
 * otp_send_res_free), an api_err for the caller to answer (ERR_EMAIL_MISSING,
 * ERR_PHONE_MISSING, ERR_INVALID_INPUT for an SMS that cannot be built or sent from this
 * configuration, ERR_DELIVERY), or ERR_UNAVAILABLE / ERR_INTERNAL on store failures.
 */
int otp_send(struct ctx *c, const struct otp_send_req *r, struct otp_send_res *res);
void otp_send_res_free(struct otp_send_res *res);

struct otp_auth_req {
	json_t *client;
	enum user_idtype idtype;
	const char *identifier; /* canonical form */
	const char *passcode;
	const char *request_id; /* NULL when not given */
	struct login_opts opts;
};

/*
 * Check a passcode and log the user in. Returns ERR_NONE with *tokens (new reference), or
 * ERR_BAD_CREDENTIALS, ERR_CODE_EXPIRED, ERR_LOCKED, ERR_USER_NOT_FOUND, ERR_USER_NOT_ACTIVE,
 * ERR_SESSION_NOT_FOUND, ERR_UNAVAILABLE, ERR_INTERNAL.
 */
int otp_authenticate(struct ctx *c, const struct otp_auth_req *r, const char *aud, json_t **tokens);

/* Map a negative store_rc to ERR_UNAVAILABLE (and mark a fatal one in *fatal when not NULL). */
int otp_store_error(int rc);

#endif
