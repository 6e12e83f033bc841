/*
 * RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): GET or POST
 * /oidc/session/end. A relying party sends the browser here to end its login session at
 * otlogin (the login-session cookie of api_browser.c), and with it the session's refresh
 * tokens.
 *
 * Who may sign a browser out without asking it:
 * - a request with a valid id_token_hint (our signature, our issuer; expired is fine, as the
 *   specification asks, since the relying party's copy is usually old) whose user owns the
 *   browser's session: the relying party holds that user's ID token, so it is that user's
 *   application. The session the hint names by "sid" ends too.
 * - nobody else: without a hint, or with one for another user than the browser's, the
 *   browser gets a confirmation form whose token is bound to its own cookie, so a cross-site
 *   GET (an <img>, a link on another site) cannot sign anybody out, and a cross-site POST
 *   cannot forge the token (nor does it carry the SameSite=Lax cookie).
 *
 * post_logout_redirect_uri must be registered for the client the hint (aud/azp) or client_id
 * names; a missing client, a mismatch or an unregistered URI is an error page, never a
 * redirect, so this endpoint is no open redirector.
 */
#include "audit.h"
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "crypto.h"
#include "html.h"
#include "jwt.h"
#include "keyring.h"
#include "link.h"
#include "log.h"
#include "sbuf.h"

/* Bounds on the parameters, far above what relying parties send. */
#define HINT_MAX 8192
#define PARAM_MAX 1024
#define CSRF_FIELD "csrf"

struct logout_req {
	char *hint;	 /* id_token_hint */
	char *plru;	 /* post_logout_redirect_uri */
	char *client_id; /* client_id */
	char *state;	 /* state */
	char *csrf;	 /* the confirmation form's token (POST only) */
	/* From a valid hint. */
	json_t *claims; /* new reference */
	const char *sub, *sid;
	json_t *client; /* new reference: the client named by the hint or client_id */
	char origin[256];
};

static void logout_req_free(struct logout_req *l)
{
	free(l->hint);
	free(l->plru);
	free(l->client_id);
	free(l->state);
	crypto_free_str(l->csrf);
	json_decref(l->claims);
	json_decref(l->client);
}

/* A parameter of the query (GET) or of the form body (POST), as a new string or NULL. */
static char *param(struct api_call *call, const char *name)
{
	const char *v;

	if (strcmp(call->req->method, "POST") != 0)
		return req_query_param(call->req, name);
	v = req_form(call->req, name);
	return v ? strdup(v) : NULL;
}

static void bad_request(struct api_call *call, const char *text)
{
	api_small_page(call, 400, "Sign-out failed", text, NULL, NULL);
}

/* The client an ID token was issued to: azp when present, else its single audience. */
static const char *hint_client(json_t *claims)
{
	json_t *aud = json_object_get(claims, "aud"), *azp = json_object_get(claims, "azp");

	if (json_is_string(azp))
		return json_string_value(azp);
	if (json_is_string(aud))
		return json_string_value(aud);
	if (json_is_array(aud) && json_array_size(aud) == 1)
		return json_string_value(json_array_get(aud, 0));
	return NULL;
}

/*
 * Whether id_token_hint is an ID token of ours: signed by one of the published keys as an ID
 * token (typ JWT: an access token is no hint), issued by us, with a subject and a client. Its
 * expiry is not checked. 1 with l->claims, l->sub and l->sid set, 0 when not, -1 on an
 * internal error.
 */
static int hint_valid(struct api_call *call, struct logout_req *l)
{
	const struct keyring *kr = call->c->keys;
	const char *iss;
	int rc;

	if (strlen(l->hint) > HINT_MAX)
		return 0;
	rc = jwt_verify(l->hint, kr->published, kr->npublished, "JWT", &l->claims);
	if (rc <= 0)
		return rc;
	iss = json_string_value(json_object_get(l->claims, "iss"));
	l->sub = json_string_value(json_object_get(l->claims, "sub"));
	l->sid = json_string_value(json_object_get(l->claims, "sid"));
	return iss != NULL && strcmp(iss, call->c->conf->issuer) == 0 && l->sub != NULL &&
	       hint_client(l->claims) != NULL;
}

/* Check id_token_hint (hint_valid). 0, or -1 after answering. */
static int check_hint(struct api_call *call, struct logout_req *l)
{
	int rc = hint_valid(call, l);

	if (rc < 0)
		resp_error(call->resp, ERR_INTERNAL, NULL);
	if (rc == 0) {
		log_info("refused a logout: the id_token_hint is not a valid ID token of ours");
		bad_request(call, "The sign-out request is not valid (id_token_hint). Go back to "
				  "the application and sign out again.");
	}
	return rc == 1 ? 0 : -1;
}

/*
 * The client (from the hint, or client_id; both must agree) and post_logout_redirect_uri,
 * which must be registered for it. 0, or -1 after answering with an error page.
 */
static int check_client(struct api_call *call, struct logout_req *l)
{
	const char *id = l->claims ? hint_client(l->claims) : l->client_id;
	int rc;

	if (l->claims != NULL && l->client_id != NULL && strcmp(l->client_id, id) != 0) {
		bad_request(call, "The sign-out request is not valid (client_id does not match the "
				  "id_token_hint).");
		return -1;
	}
	if (l->plru == NULL)
		return 0;
	if (id == NULL) {
		bad_request(call, "The sign-out request is not valid (post_logout_redirect_uri "
				  "needs an id_token_hint or a client_id).");
		return -1;
	}
	rc = client_get(call->c, id, &l->client);
	if (rc < 0) {
		api_fail(call, rc, NULL);
		return -1;
	}
	/* Refused alike whether the client is unknown or the URI unregistered. */
	if (rc == STORE_NOTFOUND ||
	    !client_lists(l->client, "post_logout_redirect_uris", l->plru) ||
	    link_origin(l->plru, l->origin, sizeof(l->origin)) < 0) {
		log_info("refused a logout: post_logout_redirect_uri is not registered");
		bad_request(call, "The sign-out request is not valid (post_logout_redirect_uri is "
				  "not registered for this application).");
		return -1;
	}
	return 0;
}

/* The form token that proves a POST came from the confirmation page this browser was shown. */
static int csrf_token(struct api_call *call, const char *raw_session, char out[KEYRING_TAG_HEX])
{
	return keyring_tag(call->c->keys, out, "logout-form", raw_session, NULL);
}

static void hidden(struct sbuf *b, const char *name, const char *value)
{
	if (value == NULL)
		return;
	sbuf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
	html_add(b, value, HTML_BREAK_SPACE);
	sbuf_puts(b, "\">");
}

/* Ask the browser whose session raw_session is to confirm; its form POSTs back here. */
static void confirm_page(struct api_call *call, const struct logout_req *l, const char *raw)
{
	char tok[KEYRING_TAG_HEX], *form = NULL;
	const char *client_id = l->client ? client_id_of(l->client) : l->client_id;
	struct sbuf b = {0};

	if (csrf_token(call, raw, tok) < 0) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	sbuf_puts(&b, "<form method=\"post\" action=\"");
	html_add(&b, call->c->conf->public_base_url, HTML_BREAK_SPACE);
	sbuf_puts(&b, "/oidc/session/end\">");
	hidden(&b, CSRF_FIELD, tok);
	hidden(&b, "client_id", client_id);
	hidden(&b, "post_logout_redirect_uri", l->plru);
	hidden(&b, "state", l->state);
	sbuf_puts(&b, "<button type=\"submit\">Sign out</button></form>");
	if ((form = sbuf_take(&b)) == NULL) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	api_small_page(
	    call, 200, "Sign out?",
	    "An application asked to sign you out of your account here. Press Sign out to end "
	    "your session.",
	    form, l->plru ? l->origin : NULL);
	free(form);
}

static int unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Signed out: clear the cookie, then go back to the relying party or say so. */
static void signed_out(struct api_call *call, const struct logout_req *l)
{
	struct sbuf b = {0};
	char *loc;

	api_clear_login_cookie(call);
	if (l->plru == NULL) {
		api_small_page(call, 200, "You are signed out",
			       "Your session has ended. You can close this window.", NULL, NULL);
		return;
	}
	sbuf_puts(&b, l->plru);
	if (l->state != NULL) {
		sbuf_puts(&b, strchr(l->plru, '?') ? "&state=" : "?state=");
		for (const unsigned char *p = (const unsigned char *)l->state; *p; p++) {
			if (unreserved(*p))
				sbuf_add(&b, (const char *)p, 1);
			else
				sbuf_printf(&b, "%%%02X", *p);
		}
	}
	loc = sbuf_take(&b);
	if (loc == NULL || strlen(loc) > RESP_HEADER_MAX) {
		/* The session is over all the same: say so rather than redirect cut short. */
		api_small_page(call, 200, "You are signed out",
			       "Your session has ended. You can close this window.", NULL, NULL);
	} else {
		resp_header(call->resp, "Location", "%s", loc);
		resp_header(call->resp, "Referrer-Policy", "no-referrer");
		resp_json(call->resp, 303, NULL);
	}
	free(loc);
}

/* Read the parameters. 0, or -1 after answering (one is too long). */
static int read_params(struct api_call *call, struct logout_req *l)
{
	l->hint = param(call, "id_token_hint");
	l->plru = param(call, "post_logout_redirect_uri");
	l->client_id = param(call, "client_id");
	l->state = param(call, "state");
	if (strcmp(call->req->method, "POST") == 0)
		l->csrf = param(call, CSRF_FIELD);
	/* An empty parameter is an absent one (RFC 6749 3.1). */
	if (l->hint != NULL && l->hint[0] == '\0') {
		free(l->hint);
		l->hint = NULL;
	}
	if (l->client_id != NULL && l->client_id[0] == '\0') {
		free(l->client_id);
		l->client_id = NULL;
	}
	if (l->plru != NULL && l->plru[0] == '\0') {
		free(l->plru);
		l->plru = NULL;
	}
	if ((l->plru && strlen(l->plru) > PARAM_MAX) ||
	    (l->client_id && strlen(l->client_id) > PARAM_MAX) ||
	    (l->state && strlen(l->state) > PARAM_MAX)) {
		bad_request(call, "The sign-out request is not valid (a parameter is too long).");
		return -1;
	}
	return 0;
}

/*
 * GET|POST /oidc/session/end: see the top of this file. Ends the sessions in one transaction
 * (session_end_browser) before answering.
 */
void api_session_end(struct api_call *call)
{
	struct logout_req l = {0};
	char *raw = api_login_cookie(call), want[KEYRING_TAG_HEX];
	int rc, ended = 0, other = 0;

	if (call->resp->head_only) {
		/* A HEAD (a link checker, a prefetch) looks, it never signs anyone out. */
		api_small_page(call, 200, "Sign out", "Sign out of your account here.", NULL, NULL);
		goto out;
	}
	if (read_params(call, &l) < 0 || (l.hint != NULL && check_hint(call, &l) < 0) ||
	    check_client(call, &l) < 0)
		goto out;
	if (l.csrf != NULL) {
		/* The confirmation form's POST: its token must be this browser's. */
		if (raw == NULL || csrf_token(call, raw, want) < 0 ||
		    !crypto_str_equal(l.csrf, want)) {
			log_warn(
			    "refused a logout POST that did not come from its confirmation page");
			api_small_page(
			    call, 403, "Sign-out not confirmed",
			    "This request did not come from the sign-out page, so nothing was "
			    "changed. "
			    "Sign out from the application again.",
			    NULL, NULL);
			goto out;
		}
		rc = session_end_browser(call->c, raw, NULL, NULL, &ended, &other);
	} else if (l.claims != NULL) {
		rc = session_end_browser(call->c, raw, l.sub, l.sid, &ended, &other);
	} else if (raw != NULL) {
		confirm_page(call, &l, raw);
		goto out;
	} else {
		/* No session in this browser: nothing to end, nothing to confirm. */
		rc = ERR_NONE;
	}
	if (rc != ERR_NONE) {
		api_fail(call, rc, NULL);
		goto out;
	}
	log_info("logout: %d session(s) ended", ended);
	audit_logout_browser(l.sub, ended);
	if (other)
		confirm_page(call, &l, raw);
	else
		signed_out(call, &l);
out:
	crypto_free_str(raw);
	logout_req_free(&l);
}
