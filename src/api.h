/*
 * api: the endpoint handlers. The only code besides route and main that knows HTTP status
 * codes and the API's JSON field names. A handler runs after route has checked the method,
 * content type, body size, JSON syntax, the body's field table (api_parse.h) and (where
 * required) the client's bearer token. A handler with a JSON body parses it (api_parse.h: pure)
 * and then acts: runs the flow and answers.
 */
#ifndef OTLOGIN_API_H
#define OTLOGIN_API_H

#include <jansson.h>

#include "api_parse.h"
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
	unsigned route;	 /* route_dispatch: 1 + its index (route_patterns), 0: none */
};

typedef void (*api_handler)(struct api_call *call);

/* api_oidc.c */
void api_token(struct api_call *call);
void api_revocation(struct api_call *call);
void api_jwks(struct api_call *call);
void api_discovery(struct api_call *call);
void api_userinfo(struct api_call *call);
/* api_logout.c: RP-initiated logout (GET|POST /oidc/session/end). */
void api_session_end(struct api_call *call);
/* api_otp.c */
void api_otp_send(struct api_call *call);
void api_otp_authenticate(struct api_call *call);
/* api_link.c */
void api_link_send(struct api_call *call);
void api_link_authenticate(struct api_call *call);
void api_link_open(struct api_call *call);
/*
 * The landing page of a link (GET shows it, the button's POST consumes it) over the link
 * flow ops: each returns 0 with v filled (a valid link's open: v->redirect, where the browser
 * goes with a 303) or a negative store_rc. Used by the backend's and the redirect flow's links.
 */
struct api_link_ops {
	int (*peek)(struct api_call *call, const char *token, struct link_view *v);
	int (*open)(struct api_call *call, const char *token, struct link_view *v);
};
void api_link_landing(struct api_call *call, const struct api_link_ops *ops);
/* api_redirect.c: the redirect-based One-Time Login (API-OIDC.md part A) */
void api_redirect_otp_email(struct api_call *call);
void api_redirect_otp_sms(struct api_call *call);
void api_redirect_otp_validate(struct api_call *call);
void api_redirect_link_email(struct api_call *call);
void api_redirect_link_open(struct api_call *call);
void api_redirect_ticket(struct api_call *call);
void api_redirect_token(struct api_call *call);
void api_redirect_logout(struct api_call *call);
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
/*
 * api_oidc.c, for every endpoint with OAuth client authentication: the credentials of a form
 * request (0, or -1 with *no; release with api_client_auth_free), and their check (1 with
 * *client, a new reference, or 0 after answering 401/429).
 */
int api_parse_client_auth(const struct req *req, struct api_client_auth *a, struct api_refusal *no);
int api_authenticate_client(struct api_call *call, const struct api_client_auth *a,
			    json_t **client);
/* api_authz.c */
void api_authorize(struct api_call *call);
void api_par(struct api_call *call);
/*
 * Answer an authorization request params (borrowed) with location, its redirect (a code or an
 * error): a 303, or with response_mode=form_post a page that posts the parameters there.
 */
void api_authz_respond(struct api_call *call, json_t *params, const char *location);
/* api_hosted.c */
void api_hosted_login(struct api_call *call);
void api_hosted_link(struct api_call *call);
/*
 * The hosted pages' error page: status, the client's branding (NULL: none), the request's
 * params (NULL: none) and a public reason (NULL: "this sign-in is no longer valid").
 */
void api_hosted_error_page(struct api_call *call, int status, json_t *client, json_t *params,
			   const char *reason);
/*
 * The flow of this page in the browser's flow cookie (a flow id, new string): the one whose
 * handle the query's "f" names, else the newest; NULL when there is none.
 */
char *api_flow_cookie(const struct api_call *call);
/*
 * Add flow_id to the flow cookie, as the newest of the browser's flows (Path = the mount
 * point, HttpOnly, SameSite=Lax, Secure on https).
 */
void api_set_flow_cookie(struct api_call *call, const char *flow_id);
/* Answer 303 to the login page of flow_id ({public_base_url}/oidc/login?f=<handle>). */
void api_see_flow(struct api_call *call, const char *flow_id);
/* api_ops.c */
void api_health(struct api_call *call);
void api_metrics(struct api_call *call);

/* api_common.c: shared by the handlers (the parse steps' helpers are pure, see api_parse.h). */

/* An identifier of type in canonical form (new string), or NULL with *no. */
char *api_canonical(enum user_idtype type, const char *value, struct api_refusal *no);

/*
 * Read a checked body's email_content into m (strings borrowed from the body). Returns 0 when
 * absent, 1 when read, -1 with *no (a bad primaryColor).
 */
int api_email_content(json_t *body, struct mail_content *m, struct api_refusal *no);

/*
 * The audience of an authenticate's tokens: resource (NULL: absent) when it is registered for
 * the client, else the configured default or the client_id. Returns 0, or -1 with *no.
 */
int api_audience(const struct api_input *in, const char *resource, const char **aud,
		 struct api_refusal *no);

/* The optional authenticate fields shared by every authenticate (borrowed from body). */
void api_login_opts(json_t *body, struct login_opts *opts);

/*
 * The end user's address for the per-address limits: client_attributes.ip_address of the
 * body (validated as an IP address by the field table), or NULL when the backend reports none.
 */
const char *api_end_user_ip(json_t *body);

/* Refuse with err and a public message (printf format). Returns -1. */
int api_refuse(struct api_refusal *no, enum err err, const char *fmt, ...)
    __attribute__((format(__printf__, 3, 4)));

/* Refuse in OAuth's shape: status, error and description (NULL: none). Returns -1. */
int api_refuse_oauth(struct api_refusal *no, int status, const char *error,
		     const char *description);

/* The parse step's input for this call: its body, client and configuration. */
struct api_input api_input_of(struct api_call *call);

/* Answer a parse step's refusal. */
void api_refused(struct api_call *call, const struct api_refusal *no);

/* Shared by handlers: answer a flow's result (an api_err) or a store failure. */
void api_fail(struct api_call *call, int err, const char *detail);

/* Answer 429 with Retry-After: seconds (at least 1). */
void api_rate_limited(struct api_call *call, unsigned retry_after);
/* Answer err (ERR_RATE_LIMITED, ERR_LOCKED) with Retry-After: seconds (at least 1). */
void api_retry_later(struct api_call *call, int err, unsigned retry_after);

/*
 * Answer a send flow's outcome rc: ERR_RATE_LIMITED as 429 with Retry-After (retry_after
 * seconds), another error through api_fail, ERR_NONE as 200 with {"message": message} and,
 * each when not NULL, "approval_data", "request_id" and key: value.
 */
void api_sent(struct api_call *call, int rc, unsigned retry_after, const char *message,
	      json_t *approval_data, const char *request_id, const char *key, const char *value);

/*
 * Answer an authenticate flow's outcome rc: ERR_NONE as 200 with tokens (consumed),
 * ERR_RATE_LIMITED and ERR_LOCKED with Retry-After (retry_after seconds), else api_fail.
 */
void api_authenticated(struct api_call *call, int rc, json_t *tokens, unsigned retry_after);

/*
 * api_link.c: answer a small self-contained page (no script, nothing loaded from elsewhere,
 * never framed, no referrer): title and text escaped, form (HTML, or NULL) after them; the
 * Content-Security-Policy's form-action allows form_origin (NULL: only this site) too.
 */
void api_small_page(struct api_call *call, int status, const char *title, const char *text,
		    const char *form, const char *form_origin);

/* api_browser.c: the browser's login session cookie (the provider's single sign-on). */

/* 1 when public_base_url is https. */
int api_is_https(struct ctx *c);
/* "__Secure-otlogin" over https, "otlogin" over http (development). */
const char *api_login_cookie_name(struct ctx *c);
/* The cookie's value, a raw session id (new string), or NULL when absent or malformed. */
char *api_login_cookie(const struct api_call *call);
/* Set the cookie to session_id (Path = the mount point, HttpOnly, SameSite=Lax, Secure on https).
 */
void api_set_login_cookie(struct api_call *call, const char *session_id, unsigned long max_age);
/* Tell the browser to drop the cookie. */
void api_clear_login_cookie(struct api_call *call);
/* The path part of public_base_url ("/cis"), or "/" when it has none: the cookies' Path. */
const char *api_mount_path(struct ctx *c);

/* api_form.c: the proof that a POST came from one of otlogin's pages (a magic link's). */

/* The hidden form field that carries the proof. */
#define API_FORM_FIELD "f"
/* The nonce cookie's name: __Host-otlogin-link over https, otlogin-link over http. */
const char *api_form_nonce_cookie(struct ctx *c);
/* The browser's nonce (new string): its cookie's when usable, so tabs share it, else new. */
char *api_form_nonce(struct api_call *call);
/* Set the nonce cookie (a session cookie, HttpOnly, SameSite=Strict, Path=/). */
void api_form_set_nonce_cookie(struct api_call *call, const char *nonce);
/* out = the form proof of token for nonce. 0 or -1. */
int api_form_proof(struct api_call *call, const char *token, const char *nonce,
		   char out[KEYRING_TAG_HEX]);
/*
 * 1 when the POST came from the page that shows token (Sec-Fetch-Site same-origin, else an
 * Origin equal to public_base_url's, else the form proof with its nonce cookie), else 0 (logged).
 */
int api_post_from_page(struct api_call *call, const char *token);

#endif
