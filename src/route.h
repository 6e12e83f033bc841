/* route: method + path -> handler, with the front-line checks each route declares. */
#ifndef OTLOGIN_ROUTE_H
#define OTLOGIN_ROUTE_H

#include "api.h"

/*
 * Answer one request into call->resp: 404 for an unknown path, 405 with Allow for a wrong
 * method, 415 for a wrong content type, 400 for malformed JSON, 401 for a missing or bad
 * bearer token, else the handler's answer.
 */
void route_dispatch(struct api_call *call);

#endif
