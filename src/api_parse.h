/*
 * api_parse: the first half of each endpoint that takes a body. Route checks a JSON body
 * against the endpoint's field table (below) before the handler runs, as kcgi validates a
 * request's fields before a page runs; the handler then parses (the checked body into the
 * flow's request struct, or a refusal with a public message) and acts (runs the flow and
 * answers). A parse step reads only what it is given: the body, the authenticated client's
 * record and the configuration (the OAuth endpoints: the form and Authorization). No store, no
 * clock, no I/O: tests/fuzz/fuzz_req runs these very functions.
 *
 * Strings in a parsed request are borrowed from the body, except the canonical identifiers and
 * the Basic credentials, which the request owns (release with its _free function, also after a
 * refusal). The structs point into themselves (r.content): parse into the struct that is used.
 */
#ifndef OTLOGIN_API_PARSE_H
#define OTLOGIN_API_PARSE_H

#include <jansson.h>

#include "conf.h"
#include "err.h"
#include "jsonio.h"
#include "link.h"
#include "mail.h"
#include "otp.h"
#include "req.h"
#include "session.h"

/* What a parse step reads (all borrowed). */
struct api_input {
	json_t *body;		 /* the JSON body, already checked against the endpoint's table */
	json_t *client;		 /* the authenticated client's record */
	const struct conf *conf; /* the configuration */
};

/*
 * Why a parse step refused: the error to answer and its public message. The OAuth endpoints
 * answer in RFC 6749's shape instead: oauth_error with status, message the description ("":
 * none).
 */
struct api_refusal {
	enum err err; /* ERR_INVALID_INPUT, or ERR_FORBIDDEN for a permission the client lacks */
	const char *oauth_error; /* NULL, or the OAuth error code ("invalid_request", ...) */
	int status;		 /* with oauth_error: the HTTP status */
	char message[256];
};

/* The members of email_content and client_attributes, shared by the tables below. */
extern const struct jv_field api_email_content_fields[];
extern const struct jv_field api_client_attribute_fields[];
/*
 * The login options every code authenticate takes after its own fields (JV_F_INCLUDE):
 * resource, claims, org_id, client_attributes, session_id, device_id, request_id.
 */
extern const struct jv_field api_login_fields[];

/* POST /v1/auth/otp/send */
extern const struct jv_field api_otp_send_fields[];
struct api_otp_send {
	struct otp_send_req r;	     /* r.identifier is identifier; r.content is &content or NULL */
	struct mail_content content; /* email_content, when given */
	char *identifier;	     /* canonical (owned) */
};
int api_otp_send_parse(const struct api_input *in, struct api_otp_send *out,
		       struct api_refusal *no);
void api_otp_send_free(struct api_otp_send *s);

/* POST /v1/auth/otp/authenticate */
extern const struct jv_field api_otp_auth_fields[];
struct api_otp_auth {
	struct otp_auth_req r; /* r.identifier is identifier; r.retry_after is the caller's */
	const char *aud;       /* the audience of the tokens */
	char *identifier;      /* canonical (owned) */
};
int api_otp_auth_parse(const struct api_input *in, struct api_otp_auth *out,
		       struct api_refusal *no);
void api_otp_auth_free(struct api_otp_auth *a);

/* POST /v1/auth/link/email/send */
extern const struct jv_field api_link_send_fields[];
struct api_link_send {
	struct link_send_req r;	     /* r.identifier is identifier; r.content is &content or NULL */
	struct mail_content content; /* email_content, when given */
	char *identifier;	     /* canonical (owned) */
};
int api_link_send_parse(const struct api_input *in, struct api_link_send *out,
			struct api_refusal *no);
void api_link_send_free(struct api_link_send *s);

/* POST /v1/auth/link/email/authenticate (nothing owned: no _free) */
extern const struct jv_field api_link_auth_fields[];
struct api_link_auth {
	struct link_auth_req r; /* r.retry_after is the caller's */
	const char *aud;	/* the audience of the tokens */
};
int api_link_auth_parse(const struct api_input *in, struct api_link_auth *out,
			struct api_refusal *no);

/*
 * The redirect-based One-Time Login (api_redirect.c; API-OIDC.md part A): POST
 * /v1/auth/otp/email, /v1/auth/otp/sms, /v1/auth/links/email, the two /validation and the
 * deprecated /v1/token.
 */
extern const struct jv_field api_redirect_email_fields[];
extern const struct jv_field api_redirect_sms_fields[];
extern const struct jv_field api_redirect_link_fields[];
extern const struct jv_field api_redirect_email_validation_fields[];
extern const struct jv_field api_redirect_sms_validation_fields[];
extern const struct jv_field api_redirect_token_fields[];

/* POST /v1/auth/session/authenticate (nothing owned) */
extern const struct jv_field api_session_auth_fields[];
struct api_session_auth {
	struct login_opts opts; /* opts.session_id is the session to sign in with */
	const char *aud;	/* the audience of the tokens */
};
int api_session_auth_parse(const struct api_input *in, struct api_session_auth *out,
			   struct api_refusal *no);

/* POST /v1/auth/token/refresh and /v1/auth/session/logout: one string each (borrowed). */
extern const struct jv_field api_token_refresh_fields[];
extern const struct jv_field api_session_logout_fields[];
const char *api_token_refresh_parse(const struct api_input *in);
const char *api_session_logout_parse(const struct api_input *in);

/*
 * The OAuth endpoints' form bodies (route has parsed the form), with the client's credentials:
 * HTTP Basic (client_secret_basic) or the form's (client_secret_post), exactly one of them.
 * Checking the secret needs the store: that is the action's.
 */
struct api_client_auth {
	const char *client_id; /* Basic's user, or the form's client_id */
	const char *secret;    /* Basic's password, or the form's client_secret; NULL: none (a
				* public client names itself with the form's client_id only) */
	char *basic_user;      /* owned */
	char *basic_pass;      /* owned (wiped on release) */
};
void api_client_auth_free(struct api_client_auth *a);

/* POST /oidc/token */
enum api_grant {
	API_GRANT_CLIENT_CREDENTIALS,
	API_GRANT_REFRESH_TOKEN,
	API_GRANT_AUTHORIZATION_CODE
};
struct api_token_req {
	struct api_client_auth auth;
	enum api_grant grant;
	const char *resource;	   /* client_credentials: the form's, or NULL */
	const char *refresh_token; /* refresh_token: the form's, or NULL (refused after auth) */
	/* authorization_code: the form's (NULL when absent; code is refused after auth) */
	const char *code, *redirect_uri, *code_verifier;
};
int api_token_parse(const struct req *req, struct api_token_req *out, struct api_refusal *no);

/* POST /oidc/token/revocation */
struct api_revocation_req {
	struct api_client_auth auth;
	const char *token; /* the form's, or NULL (refused after auth) */
};
int api_revocation_parse(const struct req *req, struct api_revocation_req *out,
			 struct api_refusal *no);

/*
 * The landing page of a magic link (api_link.c): title and text, and the button's form that
 * posts form_token back with the form proof when form_token is not NULL. Everything is HTML
 * escaped. A new string, or NULL when out of memory.
 */
char *api_link_page_html(const char *title, const char *text, const char *form_token,
			 const char *proof);

#endif
