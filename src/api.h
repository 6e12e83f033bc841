/*
 * api: the endpoint handlers. The only code besides route and main that knows HTTP status
 * codes and the API's JSON field names. A handler runs after route has checked the method,
 * content type, body size, JSON syntax and (where required) the client's bearer token.
 */
#ifndef OTLOGIN_API_H
#define OTLOGIN_API_H

#include <jansson.h>

#include "ctx.h"
#include "jsonio.h"
#include "mail.h"
#include "req.h"
#include "resp.h"
#include "session.h"

struct api_call {
	struct ctx *c;
	struct req *req;
	struct resp *resp;
	json_t *client;	 /* the authenticated client (borrowed), for AUTH_CLIENT routes */
	char *params[2]; /* the path's {} segments, decoded (owned by route) */
};

typedef void (*api_handler)(struct api_call *call);

/* api_oidc.c */
void api_token(struct api_call *call);
void api_revocation(struct api_call *call);
void api_jwks(struct api_call *call);
void api_discovery(struct api_call *call);
/* api_otp.c */
void api_otp_send(struct api_call *call);
void api_otp_authenticate(struct api_call *call);
/* api_link.c */
void api_link_send(struct api_call *call);
void api_link_authenticate(struct api_call *call);
void api_link_open(struct api_call *call);
/* api_session.c */
void api_session_authenticate(struct api_call *call);
void api_token_refresh(struct api_call *call);
void api_session_logout(struct api_call *call);
void api_user_sessions(struct api_call *call);
/* api_users.c */
void api_users_create(struct api_call *call);
void api_users_list(struct api_call *call);
void api_users_get(struct api_call *call);
void api_users_by_email(struct api_call *call);
void api_users_by_username(struct api_call *call);
void api_users_by_phone(struct api_call *call);
void api_users_update(struct api_call *call);
void api_users_delete(struct api_call *call);
/* api_ops.c */
void api_health(struct api_call *call);

/* api_common.c: shared by the handlers. */

/* The members of email_content and client_attributes, for the endpoints' field tables. */
extern const struct jv_field api_email_content_fields[];
extern const struct jv_field api_client_attribute_fields[];

/*
 * Read a validated request's email_content into m (strings borrowed from the request).
 * Returns 0 when absent, 1 when read, -1 after answering 400 (a bad primaryColor).
 */
int api_email_content(struct api_call *call, struct mail_content *m);

/* Shared by handlers: answer a flow's result (an api_err) or a store failure. */
void api_fail(struct api_call *call, int err, const char *detail);

/*
 * Validate the shared authenticate options (resource registered for the client, org_id) and
 * fill aud. Returns 0, or -1 after answering.
 */
int api_audience(struct api_call *call, const char *resource, const char **aud);

/* The optional authenticate fields shared by every authenticate (borrowed from body). */
void api_login_opts(json_t *body, struct login_opts *opts);

/* Answer 429 with Retry-After: seconds (at least 1). */
void api_rate_limited(struct api_call *call, unsigned retry_after);
/* Answer err (ERR_RATE_LIMITED, ERR_LOCKED) with Retry-After: seconds (at least 1). */
void api_retry_later(struct api_call *call, int err, unsigned retry_after);

/*
 * The end user's address for the per-address limits: client_attributes.ip_address of the
 * body (validated as an IP address by the field table), or NULL when the backend reports none.
 */
const char *api_end_user_ip(struct api_call *call);

#endif
