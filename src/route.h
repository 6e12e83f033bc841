/*
 * route: method + path -> handler, with the front-line checks each route declares: the body's
 * type and syntax and, for a JSON body, the endpoint's field table (api_parse.h), all before
 * the handler runs.
 */
#ifndef OTLOGIN_ROUTE_H
#define OTLOGIN_ROUTE_H

#include "api.h"

struct route;

/*
 * Answer one request into call->resp: 404 for an unknown path, 405 with Allow for a wrong
 * method, 401 for a missing or bad bearer token, 415 for a wrong content type, 400 for
 * malformed JSON or a body its field table refuses, else the handler's answer.
 */
void route_dispatch(struct api_call *call);

/*
 * The pieces of route_dispatch, for the fuzzers; none touches the store.
 *
 * route_find: the route for method and path, or NULL; *path_known is nonzero when some route
 * has the path (1 + the index of the first such route, for the metrics). On a match params holds
 * the decoded {} segments (new strings, NULL where none).
 */
const struct route *route_find(const char *method, const char *path, char *params[2],
			       int *path_known);
/* The 405 answer, with Allow naming the methods of call->req->path. */
void route_answer_405(struct api_call *call);
/*
 * The body's checks: content type, form or JSON syntax (call->req->json, call->req->form) and
 * route_check_fields. Returns 0, or -1 after answering.
 */
int route_check_body(struct api_call *call, const struct route *rt);
/* call->req->json against the route's field table, if it has one. 0, or -1 after answering. */
int route_check_fields(struct api_call *call, const struct route *rt);
enum resp_dialect route_dialect(const struct route *rt);
/* The route's field table, or NULL. */
const struct jv_field *route_fields(const struct route *rt);

/*
 * For the metrics: the pattern of each route, in table order (out[i] is route i's, static
 * strings), at most max of them. Returns how many.
 */
unsigned route_patterns(const char **out, unsigned max);

#endif
