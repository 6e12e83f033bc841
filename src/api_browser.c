/*
 * The browser's login session cookie (the OpenID Provider's single sign-on): its value is the
 * raw session id of a session.h session, so the store keeps only its keyed hash. Path is the
 * mount point of public_base_url, so an application on the same host never receives it.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int api_is_https(struct ctx *c)
{
	return strncasecmp(c->conf->public_base_url, "https://", 8) == 0;
}

const char *api_login_cookie_name(struct ctx *c)
{
	return api_is_https(c) ? "__Secure-otlogin" : "otlogin";
}

const char *api_mount_path(struct ctx *c)
{
	const char *u = c->conf->public_base_url, *p = strstr(u, "://");

	p = p ? strchr(p + 3, '/') : NULL;
	return p && p[1] ? p : "/";
}

char *api_login_cookie(const struct api_call *call)
{
	char *v = req_cookie(call->req, api_login_cookie_name(call->c));

	/* A session id is a short token68 string: anything else is not ours. */
	if (v != NULL && (v[0] == '\0' || strlen(v) > 128 ||
			  strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				    "0123456789-_") != strlen(v))) {
		free(v);
		v = NULL;
	}
	return v;
}

void api_set_login_cookie(struct api_call *call, const char *session_id, unsigned long max_age)
{
	int https = api_is_https(call->c);

	resp_header(call->resp, "Set-Cookie",
		    "%s=%s; Path=%s; Max-Age=%lu; HttpOnly; SameSite=Lax%s",
		    api_login_cookie_name(call->c), session_id, api_mount_path(call->c), max_age,
		    https ? "; Secure" : "");
}

void api_clear_login_cookie(struct api_call *call)
{
	resp_header(call->resp, "Set-Cookie", "%s=; Path=%s; Max-Age=0; HttpOnly; SameSite=Lax%s",
		    api_login_cookie_name(call->c), api_mount_path(call->c),
		    api_is_https(call->c) ? "; Secure" : "");
}
