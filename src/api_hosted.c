/*
 * The hosted login page: GET/POST {public_base_url}/oidc/login and the magic link's landing
 * page GET/POST {public_base_url}/oidc/login/link?t=<token>. Plain HTML forms; the one script
 * (the code page's status check, allowed by its hash) is not needed to sign in.
 *
 * Stable markup for browser-driven tests (selenium, the Apache mod_auth_openidc tests); keep
 * these names when changing the pages:
 *   every page     <main id="page" data-step="email|code|error|link|elsewhere|...">, its
 *                  heading <h1 id="title">, a notice <p id="notice">, an error
 *                  <p id="error" role="alert">.
 *   address step   <form id="email-form" method="post" action="{base}/oidc/login"> with
 *                  hidden "csrf" and "step"="email", <input id="email" name="email"
 *                  type="email" autocomplete="email">, <button id="email-submit">.
 *   phone          where the client's login_methods allow sms_otp, beside (or instead of) the
 *                  address form: <form id="phone-form"> ("step"="phone", hidden "csrf") with
 *                  <input id="phone" name="phone" type="tel" autocomplete="tel">,
 *                  <button id="phone-submit">.
 *   second factor  acr_values=mfa after the first: data-step="mfa", <form id="mfa-form">
 *                  ("step"="mfa", hidden "csrf") with <button id="mfa-submit">: sends the
 *                  SMS; then the code step again (its code-form takes the SMS code).
 *   code step      <form id="code-form" ...> with hidden "csrf" and "step"="code",
 *                  <input id="code" name="code" inputmode="numeric"
 *                  autocomplete="one-time-code">, <button id="code-submit">; and
 *                  <form id="restart-form"> ("step"="restart", hidden "csrf") with
 *                  <button id="restart-submit">. The code page never reloads itself
 *                  (that would wipe a code being typed): its script asks ?status=1 (JSON
 *                  {"confirmed": bool}) every 3 seconds and reloads once a link opened on
 *                  another device confirmed the flow; without JavaScript, <noscript> shows
 *                  <a id="wait-link"> to the waiting page (?wait=1), data-step="code" with no
 *                  code-form, which reloads itself every 3 seconds (<meta http-equiv=
 *                  "refresh" content="3">) and links back with <a id="code-link">.
 *   link landing   <form id="link-form" method="post" action="?t=..."> with hidden "f" (the
 *                  form proof of api_form.c), <button id="link-submit">.
 *   other device   data-step="elsewhere": "You are signed in on your other device".
 * URLs: /oidc/auth answers 303 to {public_base_url}/oidc/login?f=<handle>, the page of that
 * flow (16 hex digits; a browser may sign in in several tabs at once), and every form posts
 * back to its own flow's page.
 * Cookies: the flow cookie "otlogin-flow" ("__Secure-otlogin-flow" over https; Path = the
 * mount point, HttpOnly, SameSite=Lax) holds the ids of the browser's flows (at most 4, "."
 * between them) and ties each flow to the browser that asked; a form's CSRF token is a keyed
 * hash of its flow's id. The login session cookie is api_browser.c's.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "b64url.h"
#include "client.h"
#include "crypto.h"
#include "html.h"
#include "hosted.h"
#include "keyring.h"
#include "link.h"
#include "log.h"
#include "mail.h"
#include "page.h"
#include "sbuf.h"
#include "user.h"

#define REFRESH_SECONDS 3

/*
 * The code page's check for a link opened on another device, where JavaScript runs: it asks
 * the flow's status every 3 seconds without touching the page, so a code being typed is never
 * wiped, and reloads the page (whose GET then finishes the login) once it is confirmed.
 * Without JavaScript the waiting page (?wait=1) reloads itself instead (meta refresh); it
 * has no field to type in. Allowed by its hash in the Content-Security-Policy (poll_csp).
 */
#define POLL_SCRIPT                                                                                \
	"(function(){var u=new URL(location.href);u.searchParams.set('status','1');"               \
	"u.searchParams.delete('wait');setInterval(function(){fetch(u,{cache:'no-store'})"         \
	".then(function(r){return r.json()}).then(function(j){if(j.confirmed)"                     \
	"location.reload()}).catch(function(){})},3000)})();"

/* "script-src 'sha256-...'; connect-src 'self'; " for POLL_SCRIPT (computed once). */
static const char *poll_csp(void)
{
	static char csp[160];
	unsigned char hash[CRYPTO_HASH_LEN];
	char *b64;

	if (csp[0] == '\0') {
		crypto_sha256(POLL_SCRIPT, strlen(POLL_SCRIPT), hash);
		b64 = b64_encode(hash, sizeof(hash));
		snprintf(csp, sizeof(csp), "script-src 'sha256-%s'; connect-src 'self'; ",
			 b64 ? b64 : "");
		free(b64);
	}
	return csp;
}

/* ---- cookies and CSRF ----------------------------------------------------------------------- */

static const char *flow_cookie_name(struct ctx *c)
{
	return api_is_https(c) ? "__Secure-otlogin-flow" : "otlogin-flow";
}

/*
 * The flow cookie holds the ids of the browser's flows, newest first, "." between them: one
 * per tab that is signing in, at most FLOWS_MAX (an older tab's flow is dropped first). The
 * page's URL names its flow's handle (?f=, authz.h), which picks the id.
 */
#define FLOWS_MAX 4
#define FLOW_ID_MAX 128

static int flow_id_ok(const char *v, size_t n)
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;

	if (n == 0 || n > FLOW_ID_MAX)
		return 0;
	for (i = 0; i < n && strchr(b64url, v[i]) != NULL && v[i] != '\0'; i++)
		;
	return i == n;
}

/* The cookie's well-formed ids (new strings) into ids; their number. */
static size_t cookie_flows(const struct api_call *call, char *ids[FLOWS_MAX])
{
	char *v = req_cookie(call->req, flow_cookie_name(call->c));
	size_t n = 0;

	for (const char *p = v; p != NULL && *p && n < FLOWS_MAX;) {
		size_t len = strcspn(p, ".");
		if (flow_id_ok(p, len) && (ids[n] = strndup(p, len)) != NULL)
			n++;
		p += len;
		p += *p == '.';
	}
	crypto_free_str(v);
	return n;
}

static void free_flows(char *ids[], size_t n)
{
	for (size_t i = 0; i < n; i++)
		crypto_free_str(ids[i]);
}

/* The id among the cookie's whose handle is handle (NULL: the newest), new string, or NULL. */
static char *flow_with_handle(const struct api_call *call, const char *handle)
{
	char *ids[FLOWS_MAX], h[AUTHZ_FLOW_HANDLE + 1], *found = NULL;
	size_t n = cookie_flows(call, ids);

	for (size_t i = 0; i < n && found == NULL; i++) {
		if (handle == NULL ||
		    (authz_flow_handle(call->c, ids[i], h) == 0 && strcmp(h, handle) == 0)) {
			found = ids[i];
			ids[i] = NULL;
		}
	}
	free_flows(ids, n);
	return found;
}

char *api_flow_cookie(const struct api_call *call)
{
	char *handle = req_query_param(call->req, "f");
	char *id = flow_with_handle(call, handle);

	free(handle);
	return id;
}

/* Set the cookie to first (NULL: none) and the cookie's other ids except drop (NULL: none). */
static void write_flows(struct api_call *call, const char *first, const char *drop)
{
	char *ids[FLOWS_MAX], value[FLOWS_MAX * (FLOW_ID_MAX + 1) + 1] = "";
	size_t n = cookie_flows(call, ids), kept = 0;

	if (first != NULL) {
		strcat(value, first);
		kept++;
	}
	for (size_t i = 0; i < n && kept < FLOWS_MAX; i++) {
		if ((first && strcmp(ids[i], first) == 0) || (drop && strcmp(ids[i], drop) == 0))
			continue;
		if (kept++)
			strcat(value, ".");
		strcat(value, ids[i]);
	}
	free_flows(ids, n);
	resp_header(call->resp, "Set-Cookie",
		    "%s=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Lax%s",
		    flow_cookie_name(call->c), value, api_mount_path(call->c),
		    kept ? AUTHZ_FLOW_TTL : 0, api_is_https(call->c) ? "; Secure" : "");
	crypto_wipe(value, sizeof(value));
}

void api_set_flow_cookie(struct api_call *call, const char *flow_id)
{
	write_flows(call, flow_id, NULL);
}

/* The flow is over: the cookie keeps the browser's other flows (or goes). */
static void drop_flow(struct api_call *call, const char *flow_id)
{
	write_flows(call, NULL, flow_id);
}

void api_see_flow(struct api_call *call, const char *flow_id)
{
	char h[AUTHZ_FLOW_HANDLE + 1] = "";

	authz_flow_handle(call->c, flow_id, h);
	resp_header(call->resp, "Location", "%s/oidc/login?f=%s", call->c->conf->public_base_url,
		    h);
	resp_json(call->resp, 303, NULL);
}

/* The CSRF token of a flow: only the browser holding the flow cookie can know it. */
static int csrf_token(struct api_call *call, const char *flow_id, char out[KEYRING_TAG_HEX])
{
	return keyring_tag(call->c->keys, out, "hosted-csrf", flow_id, NULL);
}

static int csrf_ok(struct api_call *call, const char *flow_id)
{
	char want[KEYRING_TAG_HEX];
	const char *got = req_form(call->req, "csrf");

	return got != NULL && csrf_token(call, flow_id, want) == 0 && crypto_str_equal(got, want);
}

/* ---- pages ---------------------------------------------------------------------------------- */

struct page {
	struct api_call *call;
	struct page_texts tx;
	json_t *client; /* borrowed, may be NULL */
	json_t *params; /* borrowed, may be NULL */
	json_t *vars;	/* {app}, {address}, {seconds}, {reason} */
	struct sbuf body;
	const char *step;
	int refresh; /* reload itself every REFRESH_SECONDS (the page has no field to type in) */
	int poll;    /* with JavaScript, ask the flow's status and reload once it is confirmed */
};

static void page_begin(struct page *p, struct api_call *call, json_t *client, json_t *params,
		       const char *step)
{
	const char *dir = call->c->conf->templates_dir;
	const char *name = json_string_value(json_object_get(client, "display_name"));
	char locale[PAGE_LOCALE_MAX];

	memset(p, 0, sizeof(*p));
	p->call = call;
	p->client = client;
	p->params = params;
	p->step = step;
	page_pick_locale(dir, json_string_value(json_object_get(params, "ui_locales")), locale);
	page_texts_load(&p->tx, dir, locale);
	p->vars = json_object();
	if (name == NULL)
		name = json_string_value(json_object_get(client, "name"));
	json_object_set_new(p->vars, "app", json_string(name ? name : "otlogin"));
}

static void page_var(struct page *p, const char *name, const char *value)
{
	json_object_set_new(p->vars, name, json_string(value));
}

/* A paragraph of the text key, with id (NULL: none) and the error role when id is "error". */
static void para(struct page *p, const char *id, const char *key)
{
	if (id != NULL)
		sbuf_printf(&p->body, "<p id=\"%s\"%s>", id,
			    strcmp(id, "error") == 0 ? " role=\"alert\" class=\"error\"" : "");
	else
		sbuf_puts(&p->body, "<p>");
	page_add(&p->body, page_text(&p->tx, key), p->vars);
	sbuf_puts(&p->body, "</p>");
}

/* The origin of a URL for a CSP source list ("'none'" when it has none). */
static void origin_of(const char *url, char *out, size_t outlen)
{
	if (link_origin(url ? url : "", out, outlen) < 0 || strchr(out, ' ') || strchr(out, ';'))
		snprintf(out, outlen, "'none'");
}

/* The client's logo when it is an http(s) or data:image URL fit for an attribute, else NULL. */
static const char *logo_of(json_t *client)
{
	const char *logo = json_string_value(json_object_get(client, "logo"));

	if (logo == NULL || strlen(logo) > 100000 || strpbrk(logo, " \"'<>\r\n") != NULL)
		return NULL;
	if (strncmp(logo, "https://", 8) == 0 || strncmp(logo, "http://", 7) == 0 ||
	    strncmp(logo, "data:image/", 11) == 0)
		return logo;
	return NULL;
}

/* Answer the page: the layout around p->body, its headers, and release p. */
static void page_send(struct page *p, int status, const char *title_key)
{
	const char *color = json_string_value(json_object_get(p->client, "color"));
	const char *logo = logo_of(p->client);
	const char *redirect = json_string_value(json_object_get(p->params, "redirect_uri"));
	struct sbuf style = {0}, html = {0};
	unsigned char hash[CRYPTO_HASH_LEN];
	char form_origin[300], img[300], *style_s, *hash_b64 = NULL, *out;

	if (color == NULL || !mail_color_valid(color))
		color = "#6981FF";
	/* sbuf_printf takes a line of at most 1023 characters: the sheet goes in parts. */
	sbuf_puts(&style,
		  "body{font-family:system-ui,sans-serif;background:#f4f5f9;margin:0;color:#1d2433}"
		  "main{max-width:26rem;margin:10vh auto;background:#fff;padding:2rem;"
		  "border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);");
	sbuf_printf(&style, "border-top:6px solid %s}", color);
	sbuf_puts(&style, "h1{font-size:1.4rem;margin:0 0 1rem}p{line-height:1.5}"
			  "label{display:block;font-weight:600;margin:1rem 0 .4rem}"
			  "input{width:100%;box-sizing:border-box;font-size:1.1rem;padding:.6rem;"
			  "border:1px solid #9aa0b0;border-radius:8px}");
	sbuf_printf(&style, "button{background:%s;", color);
	sbuf_puts(
	    &style,
	    "color:#fff;border:0;border-radius:8px;font-size:1rem;"
	    "padding:.8rem 2rem;margin-top:1rem;cursor:pointer}"
	    "button.secondary{background:none;color:#1d2433;text-decoration:underline;padding:0}"
	    ".error{color:#b00020;font-weight:600}"
	    "img.logo{display:block;max-height:48px;max-width:240px;margin:0 auto 1rem}");
	style_s = sbuf_take(&style);
	if (style_s != NULL) {
		crypto_sha256(style_s, strlen(style_s), hash);
		hash_b64 = b64_encode(hash, sizeof(hash));
	}
	sbuf_printf(&html, "<!doctype html><html lang=\"%s\"><head><meta charset=\"utf-8\">",
		    p->tx.locale);
	sbuf_puts(&html, "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
			 "<meta name=\"robots\" content=\"noindex\">");
	if (p->refresh)
		sbuf_printf(&html, "<meta http-equiv=\"refresh\" content=\"%d\">", REFRESH_SECONDS);
	if (p->poll)
		sbuf_printf(&html, "<script>%s</script>", POLL_SCRIPT);
	sbuf_puts(&html, "<title>");
	page_add(&html, page_text(&p->tx, title_key), p->vars);
	sbuf_puts(&html, "</title><style>");
	sbuf_puts(&html, style_s ? style_s : "");
	sbuf_printf(&html, "</style></head><body><main id=\"page\" data-step=\"%s\">", p->step);
	if (logo != NULL) {
		sbuf_puts(&html, "<img class=\"logo\" alt=\"\" src=\"");
		html_add(&html, logo, HTML_BREAK_SPACE);
		sbuf_puts(&html, "\">");
	}
	sbuf_puts(&html, "<h1 id=\"title\">");
	page_add(&html, page_text(&p->tx, title_key), p->vars);
	sbuf_puts(&html, "</h1>");
	if (p->body.p != NULL)
		sbuf_puts(&html, p->body.p);
	sbuf_puts(&html, "</main></body></html>");

	/* The POST of a form ends in a redirect to the client: form-action must allow it. */
	origin_of(redirect, form_origin, sizeof(form_origin));
	if (logo != NULL && strncmp(logo, "data:", 5) == 0)
		snprintf(img, sizeof(img), "data:");
	else
		origin_of(logo, img, sizeof(img));
	resp_header(
	    p->call->resp, "Content-Security-Policy",
	    "default-src 'none'; style-src 'sha256-%s'; %simg-src %s; form-action 'self'%s%s; "
	    "frame-ancestors 'none'; base-uri 'none'",
	    hash_b64 ? hash_b64 : "", p->poll ? poll_csp() : "", logo ? img : "'none'",
	    redirect && strcmp(form_origin, "'none'") != 0 ? " " : "",
	    redirect && strcmp(form_origin, "'none'") != 0 ? form_origin : "");
	resp_header(p->call->resp, "X-Frame-Options", "DENY");
	resp_header(p->call->resp, "Referrer-Policy", "no-referrer");
	out = sbuf_take(&html);
	if (out != NULL)
		resp_html(p->call->resp, status, out);
	else
		resp_error(p->call->resp, ERR_INTERNAL, NULL);
	free(out);
	free(style_s);
	free(hash_b64);
	sbuf_free(&p->body);
	json_decref(p->vars);
	page_texts_free(&p->tx);
}

void api_hosted_error_page(struct api_call *call, int status, json_t *client, json_t *params,
			   const char *reason)
{
	struct page p;

	page_begin(&p, call, client, params, "error");
	if (reason != NULL) {
		page_var(&p, "reason", reason);
		para(&p, "error", "error_text");
	} else {
		para(&p, "error", "gone_text");
	}
	page_send(&p, status, "error_title");
}

/* The hidden fields every form of the flow carries. */
static void hidden(struct page *p, const char *flow_id, const char *step)
{
	char csrf[KEYRING_TAG_HEX] = "";

	csrf_token(p->call, flow_id, csrf);
	sbuf_printf(&p->body,
		    "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
		    "<input type=\"hidden\" name=\"step\" value=\"%s\">",
		    csrf, step);
}

/* A form of flow_id's page: it posts back to the page of that flow. */
static void form_open(struct page *p, const char *id, const char *flow_id)
{
	char h[AUTHZ_FLOW_HANDLE + 1] = "";

	authz_flow_handle(p->call->c, flow_id, h);
	sbuf_printf(&p->body, "<form id=\"%s\" method=\"post\" action=\"", id);
	html_add(&p->body, p->call->c->conf->public_base_url, HTML_BREAK_SPACE);
	sbuf_printf(&p->body, "/oidc/login?f=%s\">", h);
}

/* The address step; error_key (NULL: none) and notice_key (NULL: none) above the form. */
static void email_page(struct api_call *call, int status, const char *flow_id,
		       const struct hosted_view *v, const char *value, const char *notice_key,
		       const char *error_key, unsigned seconds)
{
	struct page p;
	char secs[16];

	page_begin(&p, call, v->client, v->params, "email");
	snprintf(secs, sizeof(secs), "%u", seconds);
	page_var(&p, "seconds", secs);
	if (notice_key != NULL)
		para(&p, "notice", notice_key);
	if (error_key != NULL)
		para(&p, "error", error_key);
	/* The forms of the methods the client's login_methods allow. */
	if (client_allows_login_method(v->client, "email_otp") ||
	    client_allows_login_method(v->client, "magic_link")) {
		para(&p, NULL, "email_intro");
		form_open(&p, "email-form", flow_id);
		hidden(&p, flow_id, "email");
		sbuf_puts(&p.body, "<label for=\"email\">");
		page_add(&p.body, page_text(&p.tx, "email_label"), p.vars);
		sbuf_puts(&p.body, "</label><input id=\"email\" name=\"email\" type=\"email\" "
				   "autocomplete=\"email\" required maxlength=\"320\" value=\"");
		html_add(&p.body, value && value[0] != '+' ? value : "", HTML_BREAK_SPACE);
		sbuf_puts(&p.body, "\"><button id=\"email-submit\" type=\"submit\">");
		page_add(&p.body, page_text(&p.tx, "email_submit"), p.vars);
		sbuf_puts(&p.body, "</button></form>");
	}
	if (client_allows_login_method(v->client, "sms_otp")) {
		para(&p, NULL, "phone_intro");
		form_open(&p, "phone-form", flow_id);
		hidden(&p, flow_id, "phone");
		sbuf_puts(&p.body, "<label for=\"phone\">");
		page_add(&p.body, page_text(&p.tx, "phone_label"), p.vars);
		sbuf_puts(&p.body, "</label><input id=\"phone\" name=\"phone\" type=\"tel\" "
				   "autocomplete=\"tel\" required maxlength=\"32\" value=\"");
		html_add(&p.body, value && value[0] == '+' ? value : "", HTML_BREAK_SPACE);
		sbuf_puts(&p.body, "\"><button id=\"phone-submit\" type=\"submit\">");
		page_add(&p.body, page_text(&p.tx, "phone_submit"), p.vars);
		sbuf_puts(&p.body, "</button></form>");
	}
	if (seconds)
		resp_header(call->resp, "Retry-After", "%u", seconds);
	page_send(&p, status, "email_title");
}

/* A paragraph with a link to the flow's page plus query (such as "&wait=1"), text key. */
static void flow_link(struct page *p, const char *flow_id, const char *id, const char *query,
		      const char *key)
{
	char h[AUTHZ_FLOW_HANDLE + 1] = "";

	authz_flow_handle(p->call->c, flow_id, h);
	sbuf_printf(&p->body, "<p><a id=\"%s\" href=\"", id);
	html_add(&p->body, p->call->c->conf->public_base_url, HTML_BREAK_SPACE);
	sbuf_printf(&p->body, "/oidc/login?f=%s%s\">", h, query);
	page_add(&p->body, page_text(&p->tx, key), p->vars);
	sbuf_puts(&p->body, "</a></p>");
}

/* Without JavaScript nothing checks back on the code page: a link to the waiting page. */
static void noscript_wait_link(struct page *p, const char *flow_id)
{
	sbuf_puts(&p->body, "<noscript>");
	flow_link(p, flow_id, "wait-link", "&amp;wait=1", "wait_link");
	sbuf_puts(&p->body, "</noscript>");
}

static void code_page(struct api_call *call, int status, const char *flow_id,
		      const struct hosted_view *v, const char *error_key, unsigned seconds)
{
	struct page p;
	char secs[16],
	    *w = strcmp(call->req->method, "POST") != 0 ? req_query_param(call->req, "wait") : NULL;
	int wait = w != NULL && strcmp(w, "1") == 0, waiting;

	free(w);

	page_begin(&p, call, v->client, v->params, "code");
	snprintf(secs, sizeof(secs), "%u", seconds);
	page_var(&p, "seconds", secs);
	page_var(&p, "address", v->masked);
	if (v->code_dead && error_key == NULL)
		error_key = "code_dead";
	if (error_key != NULL)
		para(&p, "error", error_key);
	para(&p, NULL,
	     v->code_off   ? "link_only_intro"
	     : v->link_off ? "code_only_intro"
			   : "code_intro");
	/*
	 * Checks back for a link opened on another device: by script on this page, or (without
	 * JavaScript, whose reloads would wipe a code being typed) on the waiting page, which has
	 * no field to type in. A mail with only a link leaves nothing to type: it reloads.
	 */
	waiting = !v->link_off && (v->code_off || wait);
	p.refresh = error_key == NULL && waiting;
	p.poll = error_key == NULL && !v->link_off && !waiting;
	if (!v->code_dead && !v->code_off && !waiting) {
		form_open(&p, "code-form", flow_id);
		hidden(&p, flow_id, "code");
		sbuf_puts(&p.body, "<label for=\"code\">");
		page_add(&p.body, page_text(&p.tx, "code_label"), p.vars);
		sbuf_printf(&p.body,
			    "</label><input id=\"code\" name=\"code\" type=\"text\" "
			    "inputmode=\"numeric\" autocomplete=\"one-time-code\" "
			    "pattern=\"[0-9]*\" maxlength=\"%u\" required autofocus>"
			    "<button id=\"code-submit\" type=\"submit\">",
			    call->c->conf->otp_length);
		page_add(&p.body, page_text(&p.tx, "code_submit"), p.vars);
		sbuf_puts(&p.body, "</button></form>");
	}
	if (p.refresh)
		para(&p, NULL, "code_waiting");
	if (waiting && !v->code_off)
		flow_link(&p, flow_id, "code-link", "", "wait_back");
	else if (p.poll)
		noscript_wait_link(&p, flow_id);
	form_open(&p, "restart-form", flow_id);
	hidden(&p, flow_id, "restart");
	sbuf_printf(&p.body, "<button id=\"restart-submit\" type=\"submit\" class=\"%s\">",
		    v->code_dead ? "" : "secondary");
	page_add(&p.body, page_text(&p.tx, "code_other"), p.vars);
	sbuf_puts(&p.body, "</button></form>");
	if (seconds)
		resp_header(call->resp, "Retry-After", "%u", seconds);
	page_send(&p, status, "code_title");
}

/* ---- answers -------------------------------------------------------------------------------- */

/* The second factor's step: a button that sends the code by SMS (a GET sends nothing). */
static void mfa_page(struct api_call *call, int status, const char *flow_id,
		     const struct hosted_view *v, const char *error_key, unsigned seconds)
{
	struct page p;
	char secs[16];

	page_begin(&p, call, v->client, v->params, "mfa");
	snprintf(secs, sizeof(secs), "%u", seconds);
	page_var(&p, "seconds", secs);
	page_var(&p, "phone", v->masked);
	if (error_key != NULL)
		para(&p, "error", error_key);
	para(&p, NULL, "mfa_intro");
	form_open(&p, "mfa-form", flow_id);
	hidden(&p, flow_id, "mfa");
	sbuf_puts(&p.body, "<button id=\"mfa-submit\" type=\"submit\">");
	page_add(&p.body, page_text(&p.tx, "mfa_submit"), p.vars);
	sbuf_puts(&p.body, "</button></form>");
	if (seconds)
		resp_header(call->resp, "Retry-After", "%u", seconds);
	page_send(&p, status, "mfa_title");
}

/*
 * The login is done: the session cookie, the flow cookie gone, the redirect with the code. Or
 * the first of two factors is: the session cookie, and the page again for the second one.
 */
static void done(struct api_call *call, const char *flow_id, const struct hosted_done *d)
{
	api_set_login_cookie(call, d->session_id, d->session_max_age);
	if (d->location == NULL) {
		api_see_flow(call, flow_id);
		return;
	}
	drop_flow(call, flow_id);
	api_authz_respond(call, d->params, d->location);
}

/* An expired flow starts again from its request: a new flow, the address page. */
static void restart(struct api_call *call, const char *old, struct hosted_view *v)
{
	char *flow_id = NULL;
	const char *hint = json_string_value(json_object_get(v->params, "login_hint"));
	unsigned retry_after = 0;
	int rc =
	    authz_flow_start(call->c, v->params, call->req->remote_addr, &flow_id, &retry_after);

	if (rc == ERR_RATE_LIMITED) {
		resp_header(call->resp, "Retry-After", "%u", retry_after);
		api_hosted_error_page(call, 429, v->client, v->params,
				      "too many sign-ins were started from this address; try again "
				      "later");
		return;
	}
	if (rc != ERR_NONE) {
		api_hosted_error_page(call, 503, v->client, v->params, NULL);
		return;
	}
	write_flows(call, flow_id, old); /* the new flow replaces the expired one */
	email_page(call, 200, flow_id, v, v->identifier[0] ? v->identifier : hint, "restarted",
		   NULL, 0);
	crypto_free_str(flow_id);
}

/* The page of a flow as it stands (GET). */
static void show(struct api_call *call, const char *flow_id, struct hosted_view *v)
{
	struct hosted_done d;
	char *session = NULL;
	int rc;

	switch (v->step) {
	case HOSTED_GONE:
		api_hosted_error_page(call, 400, NULL, NULL, NULL);
		break;
	case HOSTED_EXPIRED:
		restart(call, flow_id, v);
		break;
	case HOSTED_EMAIL:
		email_page(call, 200, flow_id, v,
			   v->identifier[0]
			       ? v->identifier
			       : json_string_value(json_object_get(v->params, "login_hint")),
			   NULL, NULL, 0);
		break;
	case HOSTED_CODE:
		code_page(call, 200, flow_id, v, NULL, 0);
		break;
	case HOSTED_MFA:
		mfa_page(call, 200, flow_id, v, NULL, 0);
		break;
	case HOSTED_CONFIRMED:
		/* A HEAD only looks: the waiting browser's GET finishes the login. */
		if (strcmp(call->req->method, "HEAD") == 0) {
			code_page(call, 200, flow_id, v, NULL, 0);
			break;
		}
		session = api_login_cookie(call);
		rc = hosted_poll(call->c, flow_id, call->req->remote_addr, session, &d);
		if (rc == ERR_NONE)
			done(call, flow_id, &d);
		else if (rc == ERR_LOCKED || rc == ERR_RATE_LIMITED)
			code_page(call, 429, flow_id, v, "locked", d.retry_after);
		else if (rc == ERR_USER_NOT_ACTIVE)
			code_page(call, 403, flow_id, v, "user_disabled", 0);
		else
			api_hosted_error_page(call, rc == ERR_NOT_FOUND ? 400 : 503, v->client,
					      v->params, NULL);
		hosted_done_free(&d);
		crypto_free_str(session);
		break;
	}
}

/*
 * Answer a send of the address (or phone) step: rc from hosted_send or hosted_send_phone,
 * given as typed; invalid and failed are the text keys of a bad value and a failed delivery.
 */
static void answer_send(struct api_call *call, const char *flow_id, struct hosted_view *v,
			const char *given, int rc, unsigned retry_after, const char *invalid,
			const char *failed)
{
	if (rc == ERR_NONE)
		api_see_flow(call, flow_id);
	else if (rc == ERR_RATE_LIMITED)
		email_page(call, 429, flow_id, v, given, NULL, "rate_limited",
			   retry_after ? retry_after : 1);
	else if (rc == ERR_USER_NOT_FOUND || rc == ERR_EMAIL_MISSING || rc == ERR_PHONE_MISSING)
		email_page(call, 400, flow_id, v, given, NULL, "user_not_found", 0);
	else if (rc == ERR_USER_NOT_ACTIVE)
		email_page(call, 403, flow_id, v, given, NULL, "user_disabled", 0);
	else if (rc == ERR_INVALID_INPUT)
		email_page(call, 400, flow_id, v, given, NULL, invalid, 0);
	else if (rc == ERR_FORBIDDEN)
		email_page(call, 403, flow_id, v, given, NULL, "method_unavailable", 0);
	else if (rc == ERR_DELIVERY)
		email_page(call, 502, flow_id, v, given, NULL, failed, 0);
	else if (rc == ERR_NOT_FOUND)
		restart(call, flow_id, v);
	else
		api_hosted_error_page(call, 503, v->client, v->params, NULL);
}

/* The address (or phone) step's POST: the field of idtype, sent by send. */
static void post_identifier(struct api_call *call, const char *flow_id, struct hosted_view *v,
			    enum user_idtype idtype)
{
	int phone = idtype == ID_PHONE;
	const char *given = req_form(call->req, phone ? "phone" : "email");
	const char *invalid = phone ? "phone_invalid" : "email_invalid";
	struct api_refusal no;
	unsigned retry_after = 0;
	char *canonical = given ? api_canonical(idtype, given, &no) : NULL;
	int rc;

	if (canonical == NULL) {
		email_page(call, 400, flow_id, v, given, NULL, invalid, 0);
		return;
	}
	rc = phone ? hosted_send_phone(call->c, v->client, flow_id, canonical, &retry_after)
		   : hosted_send(call->c, v->client, flow_id, canonical, &retry_after);
	answer_send(call, flow_id, v, given, rc, retry_after, invalid,
		    phone ? "sms_failed" : "send_failed");
	free(canonical);
}

static void post_mfa(struct api_call *call, const char *flow_id, struct hosted_view *v)
{
	unsigned retry_after = 0;
	int rc = hosted_send_mfa(call->c, v->client, flow_id, &retry_after);

	if (rc == ERR_NONE)
		api_see_flow(call, flow_id);
	else if (rc == ERR_RATE_LIMITED)
		mfa_page(call, 429, flow_id, v, "rate_limited", retry_after ? retry_after : 1);
	else if (rc == ERR_DELIVERY || rc == ERR_INVALID_INPUT || rc == ERR_PHONE_MISSING)
		mfa_page(call, 502, flow_id, v, "sms_failed", 0);
	else if (rc == ERR_NOT_FOUND)
		restart(call, flow_id, v);
	else
		api_hosted_error_page(call, 503, v->client, v->params, NULL);
}

static void post_code(struct api_call *call, const char *flow_id, struct hosted_view *v)
{
	const char *code = req_form(call->req, "code");
	char *session = api_login_cookie(call);
	struct hosted_done d;
	struct hosted_view after;
	int rc;

	rc = hosted_code(call->c, flow_id, code ? code : "", call->req->remote_addr, session, &d);
	if (rc == ERR_NONE) {
		done(call, flow_id, &d);
	} else if (rc == ERR_BAD_CREDENTIALS) {
		/* The code may have died with this guess: show the page as it is now. */
		if (hosted_view(call->c, flow_id, &after) == 0 && after.step == HOSTED_CODE)
			code_page(call, 400, flow_id, &after, after.code_dead ? NULL : "code_wrong",
				  0);
		else
			code_page(call, 400, flow_id, v, "code_wrong", 0);
		hosted_view_free(&after);
	} else if (rc == ERR_CODE_EXPIRED) {
		code_page(call, 400, flow_id, v, "code_expired", 0);
	} else if (rc == ERR_LOCKED || rc == ERR_RATE_LIMITED) {
		code_page(call, 429, flow_id, v, "locked", d.retry_after);
	} else if (rc == ERR_USER_NOT_FOUND) {
		code_page(call, 400, flow_id, v, "user_not_found", 0);
	} else if (rc == ERR_USER_NOT_ACTIVE) {
		code_page(call, 403, flow_id, v, "user_disabled", 0);
	} else if (rc == ERR_NOT_FOUND) {
		restart(call, flow_id, v);
	} else if (rc == ERR_SESSION_NOT_FOUND) {
		/* A second factor without the first one's session (its cookie is gone). */
		api_hosted_error_page(call, 400, v->client, v->params, NULL);
	} else {
		api_hosted_error_page(call, 503, v->client, v->params, NULL);
	}
	hosted_done_free(&d);
	crypto_free_str(session);
}

/*
 * GET/POST {public_base_url}/oidc/login[?f=<handle>]: the page of the browser's flow as it
 * stands (GET, HEAD), or one of its forms (POST: "step" email, phone, code, restart or mfa,
 * with the flow's "csrf"). Without a live flow of this browser: a 400 page.
 */
/* 1 when a GET asks only where its flow stands (?status=1: the code page's script). */
static int status_asked(struct api_call *call)
{
	char *s = req_query_param(call->req, "status");
	int asked = s != NULL && strcmp(s, "1") == 0;

	free(s);
	return asked;
}

void api_hosted_login(struct api_call *call)
{
	char *flow_id = api_flow_cookie(call);
	struct hosted_view v;
	const char *step;
	int rc;

	memset(&v, 0, sizeof(v));
	if (flow_id == NULL) {
		api_hosted_error_page(call, 400, NULL, NULL, NULL);
		return;
	}
	if ((rc = hosted_view(call->c, flow_id, &v)) < 0) {
		api_fail(call, rc, NULL);
		goto out;
	}
	if (strcmp(call->req->method, "POST") != 0) {
		if (status_asked(call))
			resp_json(call->resp, 200,
				  json_pack("{s:b}", "confirmed", v.step == HOSTED_CONFIRMED));
		else
			show(call, flow_id, &v);
		goto out;
	}
	if (!req_content_type_is(call->req, "application/x-www-form-urlencoded") ||
	    req_parse_form(call->req) < 0 || !csrf_ok(call, flow_id)) {
		struct page p;
		log_warn("hosted login: a POST without its flow's CSRF token was refused");
		page_begin(&p, call, v.client, v.params, "error");
		para(&p, "error", "csrf_text");
		page_send(&p, 403, "error_title");
		goto out;
	}
	step = req_form(call->req, "step");
	if (v.step == HOSTED_GONE || v.step == HOSTED_EXPIRED || v.step == HOSTED_CONFIRMED)
		show(call, flow_id, &v);
	else if (step != NULL && strcmp(step, "mfa") == 0 && v.step == HOSTED_MFA)
		post_mfa(call, flow_id, &v);
	else if (v.step == HOSTED_MFA)
		show(call, flow_id, &v); /* the address step is over */
	else if (step != NULL && strcmp(step, "email") == 0)
		post_identifier(call, flow_id, &v, ID_EMAIL);
	else if (step != NULL && strcmp(step, "phone") == 0)
		post_identifier(call, flow_id, &v, ID_PHONE);
	else if (step != NULL && strcmp(step, "code") == 0 && v.step == HOSTED_CODE)
		post_code(call, flow_id, &v);
	else if (step != NULL && strcmp(step, "restart") == 0 &&
		 hosted_restart_email(call->c, flow_id) == ERR_NONE)
		api_see_flow(call, flow_id);
	else
		api_see_flow(call, flow_id);
out:
	hosted_view_free(&v);
	crypto_free_str(flow_id);
}

/* ---- the magic link ------------------------------------------------------------------------- */

static void link_state_page(struct api_call *call, enum hosted_link_state state)
{
	struct page p;
	const char *title = "link_unknown_title", *text = "link_unknown_text";
	int status = 404;

	if (state == HOSTED_LINK_USED) {
		title = "link_used_title";
		text = "link_used_text";
		status = 410;
	} else if (state == HOSTED_LINK_EXPIRED) {
		title = "link_expired_title";
		text = "link_expired_text";
		status = 410;
	}
	page_begin(&p, call, NULL, NULL, "link-state");
	para(&p, "error", text);
	page_send(&p, status, title);
}

static void link_landing(struct api_call *call, const char *token, const struct hosted_link *l)
{
	char proof[KEYRING_TAG_HEX], *nonce = api_form_nonce(call);
	struct page p;

	if (nonce == NULL || api_form_proof(call, token, nonce, proof) < 0) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		free(nonce);
		return;
	}
	api_form_set_nonce_cookie(call, nonce);
	/* Its POST may end in the redirect to the client: form-action names its origin. */
	page_begin(&p, call, NULL, l->params, "link");
	page_var(&p, "address", l->masked);
	para(&p, NULL, "link_intro");
	sbuf_puts(&p.body, "<form id=\"link-form\" method=\"post\" action=\"?t=");
	html_add(&p.body, token, HTML_BREAK_SPACE);
	sbuf_printf(&p.body,
		    "\"><input type=\"hidden\" name=\"" API_FORM_FIELD "\" value=\"%s\">"
		    "<button id=\"link-submit\" type=\"submit\">",
		    proof);
	page_add(&p.body, page_text(&p.tx, "link_submit"), p.vars);
	sbuf_puts(&p.body, "</button></form>");
	page_send(&p, 200, "link_title");
	free(nonce);
}

/*
 * GET/POST {public_base_url}/oidc/login/link?t=<token>: the mailed link's landing page. GET
 * and HEAD show a button and consume nothing; its POST (api_post_from_page's proof) finishes
 * the login in the browser holding the link's flow, or confirms that flow from any other.
 */
void api_hosted_link(struct api_call *call)
{
	char *token = req_query_param(call->req, "t"), *flow_id = NULL, *session = NULL;
	struct hosted_link l;
	struct page p;
	int rc;

	memset(&l, 0, sizeof(l));
	if (token == NULL) {
		link_state_page(call, HOSTED_LINK_UNKNOWN);
		return;
	}
	if (strcmp(call->req->method, "POST") != 0) {
		/* GET and HEAD only show the page: mail scanners fetch links. */
		if ((rc = hosted_link_peek(call->c, token, &l)) < 0)
			api_fail(call, rc, NULL);
		else if (l.state != HOSTED_LINK_VALID)
			link_state_page(call, l.state);
		else
			link_landing(call, token, &l);
		goto out;
	}
	if (!api_post_from_page(call, token)) {
		page_begin(&p, call, NULL, NULL, "link-state");
		para(&p, "error", "link_refused_text");
		page_send(&p, 403, "link_title");
		goto out;
	}
	/* The browser's flow that the link belongs to, if it holds it (a look consumes nothing). */
	if ((rc = hosted_link_peek(call->c, token, &l)) < 0) {
		api_fail(call, rc, NULL);
		goto out;
	}
	if (l.flow_handle[0] != '\0')
		flow_id = flow_with_handle(call, l.flow_handle);
	hosted_link_free(&l);
	session = api_login_cookie(call);
	rc = hosted_link_open(call->c, token, flow_id, call->req->remote_addr, session, &l);
	if (rc == ERR_NONE && l.state != HOSTED_LINK_VALID) {
		link_state_page(call, l.state);
	} else if (rc == ERR_NONE && l.here) {
		done(call, flow_id, &l.d);
	} else if (rc == ERR_NONE) {
		page_begin(&p, call, NULL, NULL, "elsewhere");
		para(&p, NULL, "elsewhere_text");
		page_send(&p, 200, "elsewhere_title");
	} else if (rc == ERR_LOCKED || rc == ERR_RATE_LIMITED) {
		char secs[16];
		snprintf(secs, sizeof(secs), "%u", l.d.retry_after);
		page_begin(&p, call, NULL, NULL, "link-state");
		page_var(&p, "seconds", secs);
		para(&p, "error", "locked");
		resp_header(call->resp, "Retry-After", "%u", l.d.retry_after ? l.d.retry_after : 1);
		page_send(&p, 429, "link_title");
	} else if (rc == ERR_USER_NOT_ACTIVE || rc == ERR_USER_NOT_FOUND) {
		page_begin(&p, call, NULL, NULL, "link-state");
		para(&p, "error", rc == ERR_USER_NOT_ACTIVE ? "user_disabled" : "user_not_found");
		page_send(&p, 403, "link_title");
	} else {
		api_fail(call, rc, NULL);
	}
out:
	hosted_link_free(&l);
	crypto_free_str(session);
	crypto_free_str(flow_id);
	crypto_free_str(token);
}
