/*
 * What fuzz_req needs from route.c and the api_*.c files: their field tables and the pure
 * part of each handler's validation, which are static there. fuzz_api_*.c and fuzz_route.c
 * compile those sources into the fuzzer (#include of the .c file) instead of making the
 * tables public for tests' sake; a renamed table then breaks this build rather than leaving
 * a fuzzer that checks a stale copy. The handlers themselves need the store and are not run.
 */
#ifndef OTLOGIN_FUZZ_API_H
#define OTLOGIN_FUZZ_API_H

#include "api.h"
#include "jsonio.h"

struct fuzz_endpoint {
	const char *path;
	enum resp_dialect dialect;
	const struct jv_field *fields;
	/*
	 * The handler's checks up to its first use of the store or the client: 0, or -1 after
	 * answering into call->resp. call->c and call->client are NULL. On 0, *canonical is the
	 * identifier the handler would use (new string) or NULL when it takes none.
	 */
	int (*validate)(struct api_call *call, char **canonical);
};

extern const struct fuzz_endpoint fuzz_otp_endpoints[2];
extern const struct fuzz_endpoint fuzz_link_endpoints[2];
extern const struct fuzz_endpoint fuzz_session_endpoints[3];

/* api_link.c's landing page HTML for text and the form's token (new string, or NULL). */
char *fuzz_link_page(const char *text, const char *token);

/*
 * route.c's matching: the index of the route for method and path, or -1; *known is 1 when
 * some route has the path. On a match params holds the decoded {} segments (caller frees).
 */
int fuzz_route_find(const char *method, const char *path, char *params[2], int *known);
/* The body kind (0 none, 1 JSON, 2 form) and dialect of route i. */
int fuzz_route_body(int i);
enum resp_dialect fuzz_route_dialect(int i);
/* route.c's 405 answer (Allow header + error) for call->req->path. */
void fuzz_answer_405(struct api_call *call);

#endif
