/*
 * The proof that a POST came from one of otlogin's own pages (the magic link landing pages of
 * the backend API and of the hosted login): shared by api_link.c and api_hosted.c.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"
#include "link.h"
#include "log.h"

/*
 * Cross-site POSTs. The landing page's POST consumes the link, so a third-party page must not
 * be able to make a browser send it (logging the victim in as whoever the link belongs to, or
 * spending the victim's link). A POST is taken as the page's own when the browser says so:
 * Sec-Fetch-Site (which pages cannot set) is same-origin, else Origin, when it is not "null",
 * is public_base_url's. A browser that sends neither (or only Origin: null: the page's
 * no-referrer policy makes some send that) must present the form proof: an HMAC of the link
 * token and a random nonce that the GET set as a SameSite=Strict cookie. Another site can
 * fetch the page itself, but not with this browser's cookie, and cannot read the cookie.
 */
/* __Host- (Secure, Path=/, no Domain) keeps sibling hosts from setting it, where https. */
const char *api_form_nonce_cookie(struct ctx *c)
{
	return api_is_https(c) ? "__Host-otlogin-link" : "otlogin-link";
}

/* The browser's nonce (new string): its cookie's when usable, so tabs share it, else new. */
char *api_form_nonce(struct api_call *call)
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *nonce = req_cookie(call->req, api_form_nonce_cookie(call->c));
	size_t n = nonce ? strlen(nonce) : 0;

	if (n < 22 || n > 64 || strspn(nonce, b64url) != n) {
		free(nonce);
		nonce = crypto_random_token(16);
	}
	return nonce;
}

/* out = the form proof of a link token for a nonce. Returns 0 or -1. */
int api_form_proof(struct api_call *call, const char *token, const char *nonce,
		   char out[KEYRING_TAG_HEX])
{
	return keyring_tag(call->c->keys, out, "link-form", token, nonce, NULL);
}

/* The form proof and the POST's cookie agree. */
static int proof_ok(struct api_call *call, const char *token)
{
	char want[KEYRING_TAG_HEX], *nonce = req_cookie(call->req, api_form_nonce_cookie(call->c));
	const char *got;
	int ok = 0;

	if (req_content_type_is(call->req, "application/x-www-form-urlencoded") &&
	    req_parse_form(call->req) == 0 && (got = req_form(call->req, API_FORM_FIELD)) != NULL &&
	    nonce != NULL && api_form_proof(call, token, nonce, want) == 0)
		ok = crypto_str_equal(got, want);
	free(nonce);
	return ok;
}

/* 1 when the POST came from the landing page itself (see above), else 0 (logged). */
int api_post_from_page(struct api_call *call, const char *token)
{
	const char *site = call->req->sec_fetch_site, *origin = call->req->origin, *why;
	char ours[256];

	if (site != NULL) {
		if (strcmp(site, "same-origin") == 0)
			return 1;
		why = "Sec-Fetch-Site is not same-origin";
	} else if (origin != NULL && strcmp(origin, "null") != 0) {
		if (link_origin(call->c->conf->public_base_url, ours, sizeof(ours)) == 0 &&
		    strcasecmp(origin, ours) == 0)
			return 1;
		why = "Origin is not public_base_url's";
	} else if (proof_ok(call, token)) {
		return 1;
	} else {
		why = "no Sec-Fetch-Site or Origin, and no valid form proof with its cookie";
	}
	log_warn("refused a sign-in link POST that did not come from its page: %s", why);
	return 0;
}

void api_form_set_nonce_cookie(struct api_call *call, const char *nonce)
{
	/* A session cookie, HttpOnly, sent back only from this site (SameSite=Strict). */
	resp_header(call->resp, "Set-Cookie", "%s=%s; Path=/; HttpOnly; SameSite=Strict%s",
		    api_form_nonce_cookie(call->c), nonce, api_is_https(call->c) ? "; Secure" : "");
}
