#include "hosted.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "authz.h"
#include "client.h"
#include "crypto.h"
#include "err.h"
#include "jsonio.h"
#include "lockout.h"
#include "log.h"
#include "login.h"
#include "mail.h"
#include "user.h"

#define LINK_TOKEN_BYTES 32
#define LINK_PATH "/oidc/login/link?t="

static int load_flow(struct store_txn *t, struct ctx *c, const char *flow_id,
		     char key[KEYRING_TAG_HEX], json_t **flow, int rmw)
{
	if (authz_flow_key(c, flow_id, key) < 0)
		return STORE_NOTFOUND;
	return store_get(t, TBL_CODES, key, strlen(key), flow, rmw);
}

static int flow_expired(json_t *flow)
{
	return json_integer_value(json_object_get(flow, "exp")) <= (json_int_t)time(NULL);
}

/* ---- looking at a flow --------------------------------------------------------------------- */

struct view_state {
	struct ctx *c;
	const char *flow_id;
	struct hosted_view *v;
};

static int view_txn(struct store_txn *t, void *arg)
{
	struct view_state *s = arg;
	struct hosted_view *v = s->v;
	char key[KEYRING_TAG_HEX];
	json_t *flow;
	int rc = load_flow(t, s->c, s->flow_id, key, &flow, 0);

	json_decref(v->params);
	v->params = NULL;
	v->step = HOSTED_GONE;
	if (rc <= 0)
		return rc;
	v->params = json_incref(json_object_get(flow, "params"));
	snprintf(v->identifier, sizeof(v->identifier), "%s", jsonio_str(flow, "identifier") ?: "");
	if (flow_expired(flow))
		v->step = HOSTED_EXPIRED;
	else if (jsonio_str(flow, "confirmed") != NULL)
		v->step = HOSTED_CONFIRMED;
	else if (jsonio_str(flow, "code") != NULL)
		v->step = HOSTED_CODE;
	else if (json_is_true(json_object_get(flow, "mfa")))
		v->step = HOSTED_MFA;
	else
		v->step = HOSTED_EMAIL;
	log_mask_addr(v->identifier, v->masked, sizeof(v->masked));
	v->code_dead = json_is_true(json_object_get(flow, "code_dead"));
	v->code_off = json_is_true(json_object_get(flow, "code_off"));
	v->link_off = json_is_true(json_object_get(flow, "link_off"));
	json_decref(flow);
	return 0;
}

int hosted_view(struct ctx *c, const char *flow_id, struct hosted_view *v)
{
	struct view_state s = {c, flow_id, v};
	const char *client_id;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = store_run(c->store, view_txn, &s);
	if (rc < 0)
		return rc;
	client_id = json_string_value(json_object_get(v->params, "client_id"));
	if (v->step != HOSTED_GONE) {
		rc = client_get(c, client_id, &v->client);
		if (rc < 0)
			return rc;
		/* A client deleted meanwhile: nothing to log in to. */
		if (rc == STORE_NOTFOUND)
			v->step = HOSTED_GONE;
	}
	return 0;
}

void hosted_view_free(struct hosted_view *v)
{
	json_decref(v->params);
	json_decref(v->client);
	v->params = v->client = NULL;
}

void hosted_done_free(struct hosted_done *d)
{
	free(d->location);
	crypto_free_str(d->session_id);
	json_decref(d->params);
	d->location = d->session_id = NULL;
	d->params = NULL;
}

/* ---- sending ------------------------------------------------------------------------------- */

struct send_state {
	const char *flow_id;
	char code[16];
	char *token; /* the link token (new) */
	char *url;   /* the link (new) */
	char link_key[KEYRING_TAG_HEX];
};

static struct send_state *send_of(struct login_send *s)
{
	return s->state;
}

/* The account's address, or for an unknown user that may sign up the address itself. */
static int destination(struct login_send *s, json_t *user)
{
	const char *to = user ? user_email(user) : s->identifier;

	if (to == NULL)
		return ERR_EMAIL_MISSING;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

/*
 * The phone of the account (a second factor goes to the number the user record holds), or for
 * an unknown user that may sign up by phone the number itself.
 */
static int sms_destination(struct login_send *s, json_t *user)
{
	const char *to = user ? user_phone(user) : s->identifier;

	if (to == NULL)
		return ERR_PHONE_MISSING;
	if (!sms_number_valid(to))
		return ERR_INVALID_INPUT;
	snprintf(s->to, sizeof(s->to), "%s", to);
	return ERR_NONE;
}

static int is_sms(const struct login_send *s)
{
	return strcmp(s->channel, "sms") == 0;
}

static int compose_sms(struct login_send *s)
{
	struct sms_compose_req m = {
	    .tmpl = s->c->conf->sms_default_message,
	    .app = json_string_value(json_object_get(s->client, "display_name"))
		       ?: json_string_value(json_object_get(s->client, "name")),
	    .code = send_of(s)->code,
	    .max_segments = s->c->conf->sms_max_segments,
	};
	char err[160];

	crypto_free_str(s->message);
	s->message = NULL;
	if (sms_compose(&m, &s->message, err, sizeof(err)) < 0) {
		log_warn("hosted: cannot build the SMS: %s", err);
		return ERR_INVALID_INPUT;
	}
	s->message_len = strlen(s->message);
	return ERR_NONE;
}

static int compose(struct login_send *s, unsigned minutes)
{
	struct send_state *h = send_of(s);
	const char *name = json_string_value(json_object_get(s->client, "display_name"));
	int code = client_allows_login_method(s->client, "email_otp"),
	    link = client_allows_login_method(s->client, "magic_link");
	struct mail_request m = {
	    .kind = code && link ? MAIL_OTP_LINK
		    : code	 ? MAIL_OTP
				 : MAIL_LINK,
	    .from_addr = s->c->conf->mail_from,
	    .from_name = s->c->conf->mail_from_name,
	    .to_addr = s->to,
	    .app_name = name ? name : json_string_value(json_object_get(s->client, "name")),
	    .code = code ? h->code : NULL,
	    .url = link ? h->url : NULL,
	    .minutes = minutes,
	};
	const char *color = json_string_value(json_object_get(s->client, "color"));
	int rc;

	if (is_sms(s))
		return compose_sms(s);
	if (color != NULL && mail_color_valid(color))
		m.content.primary_color = color;
	if (s->message != NULL) {
		crypto_wipe(s->message, s->message_len);
		free(s->message);
		s->message = NULL;
	}
	rc = mail_compose(&m, &s->message, &s->message_len);
	if (rc == MAIL_EADDR || rc == MAIL_EINPUT)
		return ERR_INVALID_INPUT;
	return rc == MAIL_OK ? ERR_NONE : ERR_INTERNAL;
}

static int issue(struct login_send *s, struct store_txn *t, const char *rid_tag, json_t *limit_keys)
{
	struct send_state *h = send_of(s);
	unsigned minutes = s->c->conf->otp_ttl_minutes;
	/* An SMS holds the code only; a mail what the client's login_methods allow. */
	int code_ok = is_sms(s) || client_allows_login_method(s->client, "email_otp");
	int link_ok = !is_sms(s) && client_allows_login_method(s->client, "magic_link");
	char flow_key[KEYRING_TAG_HEX], code_tag[KEYRING_TAG_HEX];
	time_t now = time(NULL);
	const char *old;
	json_t *flow = NULL, *link = NULL;
	int rc;

	if (minutes > AUTHZ_FLOW_TTL / 60)
		minutes = AUTHZ_FLOW_TTL / 60;
	rc = load_flow(t, s->c, h->flow_id, flow_key, &flow, 1);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_NOT_FOUND;
	if (flow_expired(flow)) {
		rc = ERR_NOT_FOUND;
		goto out;
	}
	crypto_free_str(h->token);
	free(h->url);
	h->url = NULL;
	h->token = crypto_random_token(LINK_TOKEN_BYTES);
	rc = STORE_ERR;
	if (h->token == NULL || crypto_random_digits(h->code, s->c->conf->otp_length) < 0 ||
	    asprintf(&h->url, "%s" LINK_PATH "%s", s->c->conf->public_base_url, h->token) < 0 ||
	    keyring_tag(s->c->keys, h->link_key, "hosted-link", h->token, NULL) < 0 ||
	    keyring_tag(s->c->keys, code_tag, "hosted-code", flow_key, h->code, NULL) < 0)
		goto out;
	if ((rc = compose(s, minutes)) != ERR_NONE)
		goto out;
	/* A new send replaces the previous code and link of this flow. */
	if ((old = jsonio_str(flow, "link")) != NULL &&
	    (rc = store_del(t, TBL_CODES, old, strlen(old))) < 0)
		goto out;
	json_object_del(flow, "link");
	json_object_del(flow, "code_dead");
	json_object_del(flow, "confirmed");
	json_object_set_new(flow, "idtype", json_string(user_idtype_name(s->idtype)));
	json_object_set_new(flow, "identifier", json_string(s->identifier));
	/* A shadow send stores a code that never matches and no link at all. */
	json_object_set_new(flow, "code", json_string(s->shadow || !code_ok ? "" : code_tag));
	json_object_set_new(flow, "code_off", json_boolean(!code_ok));
	json_object_set_new(flow, "link_off", json_boolean(!link_ok));
	json_object_set_new(flow, "code_exp", json_integer((json_int_t)(now + minutes * 60)));
	json_object_set_new(flow, "failures", json_integer(0));
	json_object_set_new(flow, "exp", json_integer((json_int_t)(now + AUTHZ_FLOW_TTL)));
	if (limit_keys != NULL)
		json_object_set(flow, "limits", limit_keys);
	else
		json_object_del(flow, "limits");
	if (!s->shadow && link_ok) {
		link = json_pack("{s:s, s:I}", "flow", flow_key, "exp",
				 (json_int_t)(now + minutes * 60));
		if (link == NULL ||
		    (rc = store_put(t, TBL_CODES, h->link_key, strlen(h->link_key), link)) < 0)
			goto out;
		json_object_set_new(flow, "link", json_string(h->link_key));
	}
	rc = store_put(t, TBL_CODES, flow_key, strlen(flow_key), flow);
	rc = rc < 0 ? rc : ERR_NONE;
out:
	json_decref(link);
	json_decref(flow);
	return rc;
}

static int deliver(struct login_send *s)
{
	if (is_sms(s)) {
		struct sms_conf sc = ctx_sms_conf(s->c->conf, &s->c->mail);
		struct sms_message m = {
		    s->to, s->c->conf->sms_sender_id[0] ? s->c->conf->sms_sender_id : NULL,
		    s->message};
		int rc = sms_send(&sc, &m);
		return rc == SMS_OK	  ? ERR_NONE
		       : rc == SMS_EINPUT ? ERR_INVALID_INPUT
					  : ERR_DELIVERY;
	}
	return mail_send(&s->c->mail, s->c->conf->mail_from, s->to, s->message, s->message_len) ==
		       MAIL_OK
		   ? ERR_NONE
		   : ERR_DELIVERY;
}

/* A code and link that were never delivered must not stay usable. */
static int withdraw(struct login_send *s, struct store_txn *t)
{
	struct send_state *h = send_of(s);
	char flow_key[KEYRING_TAG_HEX];
	json_t *flow;
	int rc = h->link_key[0] ? store_del(t, TBL_CODES, h->link_key, strlen(h->link_key)) : 0;

	if (rc < 0 || (rc = load_flow(t, s->c, h->flow_id, flow_key, &flow, 1)) <= 0)
		return rc;
	json_object_set_new(flow, "code", json_string(""));
	json_object_del(flow, "link");
	rc = store_put(t, TBL_CODES, flow_key, strlen(flow_key), flow);
	json_decref(flow);
	return rc;
}

static const struct login_kind hosted_kind = {
    "hosted login code and link", "code and link", destination, issue, deliver, withdraw};
static const struct login_kind hosted_sms_kind = {
    "hosted login second-factor code", "code", sms_destination, issue, deliver, withdraw};

int hosted_send(struct ctx *c, json_t *client, const char *flow_id, const char *email,
		unsigned *retry_after)
{
	struct send_state h = {.flow_id = flow_id};
	struct login_send s = {.c = c,
			       .kind = &hosted_kind,
			       .client = client,
			       .idtype = ID_EMAIL,
			       .identifier = email,
			       .channel = "email",
			       .state = &h};
	int rc;

	*retry_after = 0;
	/* The page asks for an address only for what the client allows to go there. */
	if (!client_allows_login_method(client, "email_otp") &&
	    !client_allows_login_method(client, "magic_link"))
		return ERR_FORBIDDEN;
	rc = login_send(&s);
	*retry_after = s.retry_after;
	crypto_wipe(h.code, sizeof(h.code));
	crypto_free_str(h.token);
	crypto_free_str(h.url);
	login_send_done(&s);
	return rc;
}

/* The second factor's phone number of a flow waiting for it, into phone; 0, or -1. */
struct mfa_state {
	struct ctx *c;
	const char *flow_id;
	char phone[64];
};

static int mfa_phone_txn(struct store_txn *t, void *arg)
{
	struct mfa_state *m = arg;
	char key[KEYRING_TAG_HEX];
	json_t *flow;
	int rc = load_flow(t, m->c, m->flow_id, key, &flow, 0);

	m->phone[0] = '\0';
	if (rc <= 0)
		return rc;
	if (json_is_true(json_object_get(flow, "mfa")) &&
	    strcmp(jsonio_str(flow, "idtype") ?: "", "phone_number") == 0 && !flow_expired(flow))
		snprintf(m->phone, sizeof(m->phone), "%s", jsonio_str(flow, "identifier") ?: "");
	json_decref(flow);
	return 0;
}

int hosted_send_phone(struct ctx *c, json_t *client, const char *flow_id, const char *phone,
		      unsigned *retry_after)
{
	struct sms_conf sc = ctx_sms_conf(c->conf, &c->mail);
	struct send_state h = {.flow_id = flow_id};
	struct login_send s = {.c = c,
			       .kind = &hosted_sms_kind,
			       .client = client,
			       .idtype = ID_PHONE,
			       .identifier = phone,
			       .channel = "sms",
			       .state = &h};
	int rc;

	*retry_after = 0;
	if (!client_allows_login_method(client, "sms_otp"))
		return ERR_FORBIDDEN;
	/* No backend: refuse before a code exists. */
	if (sms_backend_for(&sc) == NULL)
		return ERR_DELIVERY;
	rc = login_send(&s);
	*retry_after = s.retry_after;
	crypto_wipe(h.code, sizeof(h.code));
	crypto_free_str(h.token);
	crypto_free_str(h.url);
	login_send_done(&s);
	return rc;
}

int hosted_send_mfa(struct ctx *c, json_t *client, const char *flow_id, unsigned *retry_after)
{
	struct mfa_state m = {c, flow_id, ""};
	struct send_state h = {.flow_id = flow_id};
	struct login_send s = {.c = c,
			       .kind = &hosted_sms_kind,
			       .client = client,
			       .idtype = ID_PHONE,
			       .identifier = m.phone,
			       .channel = "sms",
			       .state = &h};
	int rc;

	*retry_after = 0;
	if (store_run(c->store, mfa_phone_txn, &m) < 0)
		return ERR_UNAVAILABLE;
	if (m.phone[0] == '\0')
		return ERR_NOT_FOUND;
	rc = login_send(&s);
	*retry_after = s.retry_after;
	crypto_wipe(h.code, sizeof(h.code));
	crypto_free_str(h.token);
	crypto_free_str(h.url);
	login_send_done(&s);
	return rc;
}

static int restart_txn(struct store_txn *t, void *arg)
{
	struct view_state *s = arg;
	char key[KEYRING_TAG_HEX];
	const char *link;
	json_t *flow;
	int rc = load_flow(t, s->c, s->flow_id, key, &flow, 1);

	if (rc <= 0)
		return rc < 0 ? rc : STORE_REFUSE(ERR_NOT_FOUND);
	if ((link = jsonio_str(flow, "link")) != NULL)
		rc = store_del(t, TBL_CODES, link, strlen(link));
	json_object_del(flow, "link");
	json_object_del(flow, "code");
	json_object_del(flow, "confirmed");
	if (rc >= 0)
		rc = store_put(t, TBL_CODES, key, strlen(key), flow);
	json_decref(flow);
	return rc;
}

int hosted_restart_email(struct ctx *c, const char *flow_id)
{
	struct view_state s = {c, flow_id, NULL};
	return store_outcome(store_run(c->store, restart_txn, &s), ERR_UNAVAILABLE);
}

/* ---- finishing ----------------------------------------------------------------------------- */

struct finish_state {
	struct ctx *c;
	json_t *client;
	const char *flow_id;
	const char *code;  /* hosted_code */
	const char *token; /* hosted_link_open */
	const char *cookie_session;
	struct hosted_done *d;
	struct hosted_link *l;
	struct login_attempt a;
	char idtype[16], identifier[256];
};

/*
 * The login of flow (under flow_key) is proven by amr: the session (joining the browser's own
 * when it is the same user's with this client), the code, and the end of the flow and its link.
 */
/*
 * When the request asks for acr "mfa" and the session has one factor only: 1 when a second one
 * can follow (the client allows sms_otp, the user has a phone, an SMS backend is configured,
 * and the first factor was not the phone already), else 0 (the code is issued without acr).
 */
static int second_factor_possible(struct finish_state *x, json_t *flow)
{
	struct sms_conf sc = ctx_sms_conf(x->c->conf, &x->c->mail);
	long max_age;
	int want_mfa;

	authz_params_options(json_object_get(flow, "params"), &max_age, &want_mfa);
	return want_mfa && !json_is_true(json_object_get(flow, "mfa")) &&
	       !authz_session_fits(x->a.grant.session, -1, 1, 0) &&
	       client_allows_login_method(x->client, "sms_otp") &&
	       user_phone(x->a.grant.user) != NULL && sms_backend_for(&sc) != NULL &&
	       strcmp(x->idtype, "phone_number") != 0;
}

/*
 * The first factor is proven and a second one was asked for: the flow waits for it, with the
 * user's phone as the identifier the next code proves; the browser gets the session cookie now
 * so that the second factor joins this session (d->location NULL).
 */
static int park_for_mfa(struct store_txn *t, struct finish_state *x, const char *flow_key,
			json_t *flow)
{
	const char *link = jsonio_str(flow, "link");
	int rc;

	if (link != NULL && (rc = store_del(t, TBL_CODES, link, strlen(link))) < 0)
		return rc;
	for (const char *const *k = (const char *const[]){"link", "code", "code_off", "link_off",
							  "code_dead", "confirmed", "limits", NULL};
	     *k != NULL; k++)
		json_object_del(flow, *k);
	json_object_set_new(flow, "mfa", json_true());
	json_object_set_new(flow, "idtype", json_string("phone_number"));
	json_object_set_new(flow, "identifier", json_string(user_phone(x->a.grant.user)));
	if ((rc = store_put(t, TBL_CODES, flow_key, strlen(flow_key), flow)) < 0)
		return rc;
	if ((x->d->session_id = strdup(x->a.grant.session_id)) == NULL)
		return STORE_ERR;
	x->d->session_max_age = x->c->conf->session_ttl;
	return ERR_NONE;
}

static int finish(struct store_txn *t, struct finish_state *x, const char *flow_key, json_t *flow,
		  const char *amr)
{
	struct login_opts opts = {.session_id = x->cookie_session};
	const char *link = jsonio_str(flow, "link");
	int phone = strcmp(x->idtype, "phone_number") == 0;
	const char *channel = phone ? "phone" : "email",
		   *verifies = phone ? "phone_number" : "email";
	int rc;

	if (phone)
		amr = "sms";
	if (json_is_true(json_object_get(flow, "mfa")) && opts.session_id == NULL)
		return ERR_SESSION_NOT_FOUND; /* a second factor needs the first one's session */
	rc = login_session_txn(t, &x->a, amr, channel, verifies, json_object_get(flow, "limits"),
			       &opts);
	/*
	 * The browser's session is another user's or another client's: a new one; but a second
	 * factor belongs to the session of the first, which this browser must still hold.
	 */
	if (rc == ERR_SESSION_NOT_FOUND && opts.session_id != NULL &&
	    !json_is_true(json_object_get(flow, "mfa"))) {
		opts.session_id = NULL;
		rc = login_session_txn(t, &x->a, amr, channel, verifies,
				       json_object_get(flow, "limits"), &opts);
	}
	if (rc != ERR_NONE)
		return rc;
	hosted_done_free(x->d);
	if (second_factor_possible(x, flow))
		return park_for_mfa(t, x, flow_key, flow);
	if (authz_user_fits(json_object_get(flow, "params"), x->a.grant.user)) {
		rc = authz_issue_txn(t, x->c, json_object_get(flow, "params"),
				     x->a.grant.session_key, x->a.grant.session, &x->d->location);
	} else {
		/* Signed in, but not into this organization: the client hears access_denied. */
		x->d->location =
		    authz_error_location(x->c, json_object_get(flow, "params"), "access_denied",
					 "The user is not a member of the organization");
		rc = x->d->location ? 0 : STORE_ERR;
	}
	if (rc < 0)
		return rc;
	if ((x->d->session_id = strdup(x->a.grant.session_id)) == NULL)
		return STORE_ERR;
	x->d->params = json_incref(json_object_get(flow, "params"));
	x->d->session_max_age = x->c->conf->session_ttl;
	/* Single use: the flow and its link end with the login. */
	if (link != NULL && (rc = store_del(t, TBL_CODES, link, strlen(link))) < 0)
		return rc;
	rc = store_del(t, TBL_CODES, flow_key, strlen(flow_key));
	return rc < 0 ? rc : ERR_NONE;
}

/* Take the flow's identifier into the attempt. */
static void attempt_of(struct finish_state *x, json_t *flow)
{
	snprintf(x->idtype, sizeof(x->idtype), "%s", jsonio_str(flow, "idtype") ?: "email");
	snprintf(x->identifier, sizeof(x->identifier), "%s", jsonio_str(flow, "identifier") ?: "");
	x->a.idtype = x->idtype;
	x->a.identifier = x->identifier;
}

/* A wrong code for a live one: it dies at the max_failures'th; the account counts it. */
static int wrong_code(struct store_txn *t, struct finish_state *x, const char *key, json_t *flow,
		      struct lockout *l)
{
	json_int_t n = json_integer_value(json_object_get(flow, "failures")) + 1;
	int rc;

	json_object_set_new(flow, "failures", json_integer(n));
	if (n >= (json_int_t)x->c->conf->otp_max_failures) {
		json_object_set_new(flow, "code", json_string(""));
		json_object_set_new(flow, "code_dead", json_true());
	}
	if ((rc = store_put(t, TBL_CODES, key, strlen(key), flow)) < 0 ||
	    (rc = lockout_fail_txn(t, x->c, l)) < 0)
		return rc;
	return login_failed_txn(t, &x->a);
}

static int code_txn(struct store_txn *t, void *arg)
{
	struct finish_state *x = arg;
	char key[KEYRING_TAG_HEX], tag[KEYRING_TAG_HEX];
	struct lockout l = {.rec = NULL};
	json_t *flow = NULL;
	int rc;

	x->a.retry_after = 0;
	x->a.idtype = x->a.identifier = NULL;
	rc = load_flow(t, x->c, x->flow_id, key, &flow, 1);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_NOT_FOUND;
	attempt_of(x, flow);
	if (flow_expired(flow)) {
		rc = ERR_NOT_FOUND;
	} else if (jsonio_str(flow, "code") == NULL ||
		   json_is_true(json_object_get(flow, "code_off"))) {
		/* No code was sent: nothing to guess, nobody to count against. */
		rc = ERR_BAD_CREDENTIALS;
	} else if (json_is_true(json_object_get(flow, "code_dead"))) {
		/* As for the API's deleted code: the request limits count it, not the account. */
		rc = login_failed_txn(t, &x->a);
	} else if (json_integer_value(json_object_get(flow, "code_exp")) <=
		   (json_int_t)time(NULL)) {
		rc = ERR_CODE_EXPIRED;
	} else if ((rc = login_throttle_txn(t, &x->a, &l)) != ERR_NONE) {
		/* ERR_LOCKED, or a store error */
	} else if (strlen(x->code) > 16 ||
		   keyring_tag(x->c->keys, tag, "hosted-code", key, x->code, NULL) < 0) {
		rc = wrong_code(t, x, key, flow, &l);
	} else if (!crypto_str_equal(tag, jsonio_str(flow, "code"))) {
		rc = wrong_code(t, x, key, flow, &l);
	} else {
		rc = finish(t, x, key, flow, "eotp");
	}
	lockout_done(&l);
	json_decref(flow);
	return login_txn_end(rc);
}

/* The client of a flow (new reference) for the attempt. ERR_NONE, ERR_NOT_FOUND or err. */
static int flow_client(struct ctx *c, const char *flow_id, json_t **client)
{
	struct hosted_view v;
	int rc = hosted_view(c, flow_id, &v);

	*client = NULL;
	if (rc < 0) {
		hosted_view_free(&v);
		return ERR_UNAVAILABLE;
	}
	if (v.step == HOSTED_GONE) {
		hosted_view_free(&v);
		return ERR_NOT_FOUND;
	}
	*client = json_incref(v.client);
	hosted_view_free(&v);
	return ERR_NONE;
}

static int run_finish(struct finish_state *x, int (*txn)(struct store_txn *, void *))
{
	int rc = flow_client(x->c, x->flow_id, &x->client);

	x->a.c = x->c;
	x->a.client = x->client;
	if (rc == ERR_NONE)
		rc = store_outcome(store_run(x->c->store, txn, x), ERR_UNAVAILABLE);
	audit_login(txn == code_txn ? "hosted_code" : "hosted_link", rc,
		    jsonio_str(x->client, "client_id"),
		    json_string_value(json_object_get(x->a.grant.user, "user_id")), NULL, x->a.ip);
	if (rc != ERR_NONE)
		hosted_done_free(x->d);
	if (rc == ERR_LOCKED || rc == ERR_RATE_LIMITED)
		x->d->retry_after = x->a.retry_after ? x->a.retry_after : 1;
	login_grant_free(&x->a.grant);
	json_decref(x->client);
	return rc;
}

int hosted_code(struct ctx *c, const char *flow_id, const char *code, const char *ip,
		const char *cookie_session, struct hosted_done *d)
{
	struct finish_state x = {.c = c,
				 .flow_id = flow_id,
				 .code = code,
				 .cookie_session = cookie_session,
				 .d = d,
				 .a = {.ip = ip}};

	memset(d, 0, sizeof(*d));
	return run_finish(&x, code_txn);
}

static int poll_txn(struct store_txn *t, void *arg)
{
	struct finish_state *x = arg;
	char key[KEYRING_TAG_HEX];
	struct lockout l = {.rec = NULL};
	json_t *flow = NULL;
	int rc;

	x->a.retry_after = 0;
	rc = load_flow(t, x->c, x->flow_id, key, &flow, 1);
	if (rc <= 0)
		return rc < 0 ? rc : ERR_NOT_FOUND;
	attempt_of(x, flow);
	if (flow_expired(flow) || jsonio_str(flow, "confirmed") == NULL)
		rc = ERR_NOT_FOUND;
	else if ((rc = login_throttle_txn(t, &x->a, &l)) == ERR_NONE)
		rc = finish(t, x, key, flow, jsonio_str(flow, "confirmed"));
	lockout_done(&l);
	json_decref(flow);
	return login_txn_end(rc);
}

int hosted_poll(struct ctx *c, const char *flow_id, const char *ip, const char *cookie_session,
		struct hosted_done *d)
{
	struct finish_state x = {
	    .c = c, .flow_id = flow_id, .cookie_session = cookie_session, .d = d, .a = {.ip = ip}};

	memset(d, 0, sizeof(*d));
	return run_finish(&x, poll_txn);
}

/* ---- the link ------------------------------------------------------------------------------ */

/*
 * Inside t, the link of x->token and its flow: l->state and masked set; with consume, a valid
 * link is used up and finishes (here) or confirms (elsewhere) its flow.
 */
static int link_txn_do(struct store_txn *t, struct finish_state *x, int consume)
{
	struct hosted_link *l = x->l;
	char key[KEYRING_TAG_HEX], mine[KEYRING_TAG_HEX];
	struct lockout lk = {.rec = NULL};
	json_t *link = NULL, *flow = NULL;
	const char *flow_key;
	int rc;

	l->state = HOSTED_LINK_UNKNOWN;
	l->here = 0;
	if (strlen(x->token) > 128 ||
	    keyring_tag(x->c->keys, key, "hosted-link", x->token, NULL) < 0)
		return 0;
	rc = store_get(t, TBL_CODES, key, strlen(key), &link, consume);
	if (rc <= 0)
		return rc;
	flow_key = jsonio_str(link, "flow") ?: "";
	rc = store_get(t, TBL_CODES, flow_key, strlen(flow_key), &flow, consume);
	if (rc <= 0 || !crypto_str_equal(jsonio_str(flow, "link") ?: "", key))
		goto out; /* the flow ended, or a newer send replaced this link */
	attempt_of(x, flow);
	log_mask_addr(x->identifier, l->masked, sizeof(l->masked));
	json_decref(l->params);
	l->params = json_incref(json_object_get(flow, "params"));
	snprintf(l->flow_handle, sizeof(l->flow_handle), "%.*s", AUTHZ_FLOW_HANDLE, flow_key);
	if (json_is_true(json_object_get(link, "used")) || jsonio_str(flow, "confirmed") != NULL)
		l->state = HOSTED_LINK_USED;
	else if (json_integer_value(json_object_get(link, "exp")) <= (json_int_t)time(NULL) ||
		 flow_expired(flow))
		l->state = HOSTED_LINK_EXPIRED;
	else
		l->state = HOSTED_LINK_VALID;
	rc = 0;
	if (!consume || l->state != HOSTED_LINK_VALID)
		goto out;
	/* The link proves the mailbox: it waits out the account's throttle like the code. */
	if ((rc = login_throttle_txn(t, &x->a, &lk)) != ERR_NONE)
		goto out;
	if (x->flow_id != NULL && authz_flow_key(x->c, x->flow_id, mine) == 0 &&
	    strcmp(mine, flow_key) == 0) {
		l->here = 1;
		rc = finish(t, x, flow_key, flow, "eml");
		goto out;
	}
	/* Another browser: the waiting one finishes the login (hosted_poll). */
	json_object_set_new(link, "used", json_true());
	json_object_set_new(flow, "confirmed", json_string("eml"));
	if ((rc = store_put(t, TBL_CODES, key, strlen(key), link)) >= 0)
		rc = store_put(t, TBL_CODES, flow_key, strlen(flow_key), flow);
out:
	lockout_done(&lk);
	json_decref(flow);
	json_decref(link);
	return rc;
}

static int link_peek_txn(struct store_txn *t, void *arg)
{
	return link_txn_do(t, arg, 0);
}

static int link_open_txn(struct store_txn *t, void *arg)
{
	int rc = link_txn_do(t, arg, 1);
	return rc == ERR_LOCKED ? STORE_REFUSE(ERR_LOCKED) : login_txn_end(rc);
}

int hosted_link_peek(struct ctx *c, const char *token, struct hosted_link *l)
{
	struct finish_state x = {.c = c, .token = token, .l = l, .d = &l->d};
	int rc;

	memset(l, 0, sizeof(*l));
	x.a.c = c;
	rc = store_run(c->store, link_peek_txn, &x);
	return rc < 0 ? rc : 0;
}

void hosted_link_free(struct hosted_link *l)
{
	hosted_done_free(&l->d);
	json_decref(l->params);
	l->params = NULL;
}

/* The client_id of a link's flow, to load the client before the transaction that opens it. */
struct client_of_link {
	struct ctx *c;
	const char *token;
	char client_id[160];
};

static int client_of_link_txn(struct store_txn *t, void *arg)
{
	struct client_of_link *s = arg;
	char key[KEYRING_TAG_HEX];
	json_t *link = NULL, *flow = NULL;
	const char *flow_key;
	int rc;

	s->client_id[0] = '\0';
	if (strlen(s->token) > 128 ||
	    keyring_tag(s->c->keys, key, "hosted-link", s->token, NULL) < 0)
		return 0;
	rc = store_get(t, TBL_CODES, key, strlen(key), &link, 0);
	if (rc <= 0)
		return rc;
	flow_key = jsonio_str(link, "flow") ?: "";
	rc = store_get(t, TBL_CODES, flow_key, strlen(flow_key), &flow, 0);
	if (rc == STORE_FOUND)
		snprintf(s->client_id, sizeof(s->client_id), "%s",
			 jsonio_str(flow, "client_id") ?: "");
	json_decref(flow);
	json_decref(link);
	return rc < 0 ? rc : 0;
}

int hosted_link_open(struct ctx *c, const char *token, const char *flow_id, const char *ip,
		     const char *cookie_session, struct hosted_link *l)
{
	struct client_of_link q = {c, token, ""};
	struct finish_state x = {.c = c,
				 .flow_id = flow_id,
				 .token = token,
				 .cookie_session = cookie_session,
				 .l = l,
				 .d = &l->d,
				 .a = {.c = c, .ip = ip}};
	int rc;

	memset(l, 0, sizeof(*l));
	rc = store_run(c->store, client_of_link_txn, &q);
	if (rc < 0)
		return ERR_UNAVAILABLE;
	if (q.client_id[0] == '\0') {
		l->state = HOSTED_LINK_UNKNOWN;
		return ERR_NONE;
	}
	rc = client_get(c, q.client_id, &x.client);
	if (rc <= 0) {
		l->state = HOSTED_LINK_UNKNOWN;
		return rc < 0 ? ERR_UNAVAILABLE : ERR_NONE;
	}
	x.a.client = x.client;
	rc = store_outcome(store_run(c->store, link_open_txn, &x), ERR_UNAVAILABLE);
	audit_login("hosted_link", rc, q.client_id,
		    json_string_value(json_object_get(x.a.grant.user, "user_id")), NULL, ip);
	if (rc != ERR_NONE)
		hosted_done_free(&l->d);
	if (rc == ERR_LOCKED || rc == ERR_RATE_LIMITED)
		l->d.retry_after = x.a.retry_after ? x.a.retry_after : 1;
	login_grant_free(&x.a.grant);
	json_decref(x.client);
	return rc;
}
