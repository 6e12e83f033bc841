/* api_session.c compiled into fuzz_req for its tables and checks; see fuzz_api.h. */
#include "api_session.c"

#include "fuzz_api.h"

static int auth_checks(struct api_call *call, char **canonical)
{
	*canonical = NULL;
	return check(call, session_auth_fields);
}

static int refresh_checks(struct api_call *call, char **canonical)
{
	*canonical = NULL;
	return check(call, refresh_fields);
}

static int logout_checks(struct api_call *call, char **canonical)
{
	*canonical = NULL;
	return check(call, logout_fields);
}

const struct fuzz_endpoint fuzz_session_endpoints[3] = {
    {"/v1/auth/session/authenticate", DIALECT_LINK, session_auth_fields, auth_checks},
    {"/v1/auth/token/refresh", DIALECT_PLAIN, refresh_fields, refresh_checks},
    {"/v1/auth/session/logout", DIALECT_LINK, logout_fields, logout_checks},
};
