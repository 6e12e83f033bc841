/*
 * Magic links: POST /v1/auth/link/email/send and /authenticate (Transmit's seed operations 1
 * and 2; each a pure parse step, api_parse.h, and an action step) and the landing page GET/POST
 * /v1/auth/link/email/open in between.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "crypto.h"
#include "html.h"
#include "jsonio.h"
#include "link.h"
#include "log.h"
#include "mail.h"
#include "user.h"

/* The landing page's form: the hidden field with the form proof, and the nonce's size. */
#define FORM_FIELD API_FORM_FIELD

static const char *const channels[] = {"email", "direct", NULL};
static const char *const idtypes[] = {"email", "phone_number", "user_id", "username", NULL};

const struct jv_field api_link_send_fields[] = {
    JV_F_STRING("email", 0, 320),
    JV_F_STRING("identifier", 0, 320),
    JV_F_ENUM("identifier_type", 0, idtypes),
    JV_F_STRING("redirect_uri", 1, 2048),
    JV_F_OBJECT("email_content", 0, api_email_content_fields),
    JV_F_STRING("state", 0, 512),
    JV_F_INT("email_expiration", 0, 1, 10080),
    JV_F_ENUM("channel", 0, channels),
    JV_F_OBJECT("client_attributes", 0, api_client_attribute_fields),
    JV_F_STRING("device_id", 0, 80),
    JV_F_BOOL("generate_request_id", 0),
    JV_END,
};

const struct jv_field api_link_auth_fields[] = {
    JV_F_STRING("code", 1, 128),
    JV_F_INCLUDE(api_login_fields),
    JV_END,
};

/* The identifier of either request form, canonical (new), or NULL with *no. */
static char *send_identifier(json_t *body, enum user_idtype *type, struct api_refusal *no)
{
	const char *email = jsonio_str(body, "email");
	const char *ident = jsonio_str(body, "identifier");
	const char *itype = jsonio_str(body, "identifier_type");

	if (email != NULL && (ident != NULL || itype != NULL)) {
		api_refuse(no, ERR_INVALID_INPUT,
			   "Use either email or identifier with identifier_type");
		return NULL;
	}
	if (email == NULL && (ident == NULL || itype == NULL)) {
		api_refuse(no, ERR_INVALID_INPUT,
			   "email, or identifier with identifier_type, is required");
		return NULL;
	}
	*type = email != NULL ? ID_EMAIL : user_idtype_parse(itype);
	return api_canonical(*type, email != NULL ? email : ident, no);
}

int api_link_send_parse(const struct api_input *in, struct api_link_send *out,
			struct api_refusal *no)
{
	json_t *body = in->body;
	struct link_send_req *r = &out->r;
	const char *channel;
	int rc;

	memset(out, 0, sizeof(*out));
	r->client = in->client;
	r->redirect_uri = jsonio_str(body, "redirect_uri");
	/* Exact match only: no case folding, no prefix, no extra query or fragment. */
	if (!client_lists(in->client, "redirect_uris", r->redirect_uri))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "redirect_uri is not one of the allowed redirect URIs configured "
				  "for this app");
	r->state = jsonio_str(body, "state");
	if (!link_redirect_fits(r->redirect_uri, r->state))
		return api_refuse(no, ERR_INVALID_INPUT,
				  "redirect_uri and state are too long for the redirect: with the "
				  "code and state percent-encoded they must fit %d bytes",
				  RESP_HEADER_MAX);
	channel = jsonio_str(body, "channel");
	r->direct = channel != NULL && strcmp(channel, "direct") == 0;
	if (r->direct && !client_has_permission(in->client, "direct"))
		return api_refuse(no, ERR_FORBIDDEN,
				  "The client lacks the permission for the direct channel");
	if ((rc = api_email_content(body, &out->content, no)) < 0)
		return -1;
	r->content = rc ? &out->content : NULL;
	if ((out->identifier = send_identifier(body, &r->idtype, no)) == NULL)
		return -1;
	r->identifier = out->identifier;
	r->minutes = (unsigned)jsonio_int(body, "email_expiration", 0);
	r->want_request_id = jsonio_true(body, "generate_request_id");
	return 0;
}

void api_link_send_free(struct api_link_send *s)
{
	free(s->identifier);
	s->identifier = NULL;
}

void api_link_send(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	struct api_link_send s;
	struct api_refusal no;
	struct link_send_res res = {0};
	int rc;

	if (api_link_send_parse(&in, &s, &no) < 0) {
		api_refused(call, &no);
	} else {
		rc = link_send(call->c, &s.r, &res);
		api_sent(call, rc, res.retry_after, "Email sent successfully", NULL, res.request_id,
			 "link", res.link);
		if (rc == ERR_NONE)
			link_send_res_free(&res);
	}
	api_link_send_free(&s);
}

int api_link_auth_parse(const struct api_input *in, struct api_link_auth *out,
			struct api_refusal *no)
{
	json_t *body = in->body;

	memset(out, 0, sizeof(*out));
	out->r.client = in->client;
	if (api_audience(in, jsonio_str(body, "resource"), &out->aud, no) < 0)
		return -1;
	out->r.code = jsonio_str(body, "code");
	out->r.request_id = jsonio_str(body, "request_id");
	api_login_opts(body, &out->r.opts);
	out->r.ip = api_end_user_ip(body);
	return 0;
}

void api_link_authenticate(struct api_call *call)
{
	struct api_input in = api_input_of(call);
	struct api_link_auth a;
	struct api_refusal no;
	json_t *tokens = NULL;
	unsigned retry_after = 0;
	int rc;

	if (api_link_auth_parse(&in, &a, &no) < 0) {
		api_refused(call, &no);
		return;
	}
	a.r.retry_after = &retry_after;
	rc = link_authenticate(call->c, &a.r, a.aud, &tokens);
	if (rc == ERR_BAD_CREDENTIALS)
		resp_error(call->resp, ERR_INVALID_INPUT, "Invalid magic link code");
	else if (rc == ERR_USER_NOT_FOUND)
		resp_error(call->resp, ERR_INVALID_INPUT, "User not found");
	else
		api_authenticated(call, rc, tokens, retry_after);
}

/* The button's form: posts the link token back with the form proof (escaped; new string). */
static char *form_html(const char *form_token, const char *proof)
{
	char *tok = html_escape(form_token), *f = html_escape(proof ? proof : ""), *html = NULL;

	if (tok != NULL && f != NULL &&
	    asprintf(&html,
		     "<form method=\"post\" action=\"?t=%s\"><input type=\"hidden\" "
		     "name=\"" FORM_FIELD "\" value=\"%s\"><button type=\"submit\">Continue"
		     "</button></form>",
		     tok, f) < 0)
		html = NULL;
	free(tok);
	free(f);
	return html;
}

/* The small page around title, text and form (HTML, or NULL): escaped; new string or NULL. */
static char *page_shell(const char *title, const char *text, const char *form)
{
	static const char *const fmt =
	    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
	    "<meta name=\"robots\" content=\"noindex\"><title>%s</title><style>"
	    "body{font-family:system-ui,sans-serif;background:#f4f5f9;margin:0;color:#1d2433}"
	    "main{max-width:26rem;margin:12vh auto;background:#fff;padding:2rem;"
	    "border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);text-align:center}"
	    "h1{font-size:1.4rem;margin:0 0 1rem}p{line-height:1.5}"
	    "button{background:#6981FF;color:#fff;border:0;border-radius:8px;font-size:1rem;"
	    "padding:.8rem 2.4rem;cursor:pointer}</style></head><body><main><h1>%s</h1><p>%s</p>"
	    "%s</main></body></html>";
	char *t = html_escape(title), *x = html_escape(text), *html = NULL;

	if (t != NULL && x != NULL && asprintf(&html, fmt, t, t, x, form ? form : "") < 0)
		html = NULL;
	free(t);
	free(x);
	return html;
}

/*
 * The page's body after the heading: the text, and the button's form when there is one (it
 * posts the link token back, with the form proof in a hidden field).
 */
char *api_link_page_html(const char *title, const char *text, const char *form_token,
			 const char *proof)
{
	char *form = NULL, *html;

	if (form_token != NULL && (form = form_html(form_token, proof)) == NULL)
		return NULL;
	html = page_shell(title, text, form);
	free(form);
	return html;
}

void api_small_page(struct api_call *call, int status, const char *title, const char *text,
		    const char *form, const char *form_origin)
{
	char *html = page_shell(title, text, form);

	resp_header(call->resp, "Referrer-Policy", "no-referrer");
	resp_header(call->resp, "X-Frame-Options", "DENY");
	/* Browsers apply form-action to the redirect that follows the POST too. */
	resp_header(call->resp, "Content-Security-Policy",
		    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s%s; "
		    "frame-ancestors 'none'; base-uri 'none'",
		    form_origin ? " " : "", form_origin ? form_origin : "");
	if (html != NULL)
		resp_html(call->resp, status, html);
	else
		resp_error(call->resp, ERR_INTERNAL, NULL);
	free(html);
}

/* The landing page's own: the button's form of form_token and proof, when form_token is set. */
static void page(struct api_call *call, int status, const char *title, const char *text,
		 const char *form_token, const char *proof, const char *form_origin)
{
	char *form = NULL;

	if (form_token != NULL && (form = form_html(form_token, proof)) == NULL) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	api_small_page(call, status, title, text, form, form_origin);
	free(form);
}

static void state_page(struct api_call *call, const struct link_view *v)
{
	switch (v->state) {
	case LINK_EXPIRED:
		page(call, 410, "This link has expired",
		     "Sign-in links work for a limited time. Go back to the app and ask for a new "
		     "one.",
		     NULL, NULL, NULL);
		break;
	case LINK_USED:
		page(
		    call, 410, "This link was already used",
		    "Each sign-in link works once. Go back to the app and ask for a new one if you "
		    "still need to sign in.",
		    NULL, NULL, NULL);
		break;
	default:
		page(
		    call, 404, "This link is not valid",
		    "The link is incomplete or unknown. Copy the whole link from the email, or ask "
		    "the app for a new one.",
		    NULL, NULL, NULL);
	}
}

/* The landing page of a valid link, with its form, its proof and the nonce cookie. */
static void landing_page(struct api_call *call, const char *token, const struct link_view *v)
{
	char text[160], proof[KEYRING_TAG_HEX], *nonce = api_form_nonce(call);

	if (nonce == NULL || api_form_proof(call, token, nonce, proof) < 0) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		free(nonce);
		return;
	}
	/* A session cookie, HttpOnly, sent back only from this site (SameSite=Strict). */
	api_form_set_nonce_cookie(call, nonce);
	snprintf(text, sizeof(text), "Continue to sign in as %s.", v->masked);
	page(call, 200, "Sign in", text, token, proof, v->redirect_origin);
	free(nonce);
}

/* A POST refused by api_post_from_page: a spent or unknown link still says so (as GET would). */
static void refused_post(struct api_call *call, const char *token, const struct api_link_ops *ops)
{
	struct link_view v;
	int rc = ops->peek(call, token, &v);

	if (rc < 0)
		api_fail(call, rc, NULL);
	else if (v.state != LINK_VALID)
		state_page(call, &v);
	else
		page(call, 403, "Open the link from your email",
		     "This request did not come from the sign-in page, so the link was not used. "
		     "Open the link from your email again and press Continue (cookies must be "
		     "allowed for this site).",
		     NULL, NULL, NULL);
	link_view_free(&v);
}

void api_link_landing(struct api_call *call, const struct api_link_ops *ops)
{
	char *token = req_query_param(call->req, "t");
	struct link_view v;
	int consume = strcmp(call->req->method, "POST") == 0, rc;

	if (token == NULL) {
		v.state = LINK_UNKNOWN;
		state_page(call, &v);
		return;
	}
	if (consume && !api_post_from_page(call, token)) {
		refused_post(call, token, ops);
		crypto_free_str(token);
		return;
	}
	rc = consume ? ops->open(call, token, &v) : ops->peek(call, token, &v);
	if (rc < 0) {
		api_fail(call, rc, NULL);
	} else if (v.state != LINK_VALID) {
		state_page(call, &v);
	} else if (consume) {
		resp_header(call->resp, "Location", "%s", v.redirect);
		resp_header(call->resp, "Referrer-Policy", "no-referrer");
		resp_json(call->resp, 303, NULL);
	} else {
		/* GET and HEAD only show the page: mail scanners may fetch links any number of
		 * times. */
		landing_page(call, token, &v);
	}
	link_view_free(&v);
	crypto_free_str(token);
}

static int backend_peek(struct api_call *call, const char *token, struct link_view *v)
{
	return link_peek(call->c, token, v);
}

static int backend_open(struct api_call *call, const char *token, struct link_view *v)
{
	return link_open(call->c, token, v);
}

void api_link_open(struct api_call *call)
{
	static const struct api_link_ops backend = {backend_peek, backend_open};

	api_link_landing(call, &backend);
}
