/*
 * What fuzz_req runs of the api layer: each JSON endpoint's real parse step (api_parse.h),
 * under a few clients and configurations, with what must hold of what it accepts. Route's
 * real front line (route.h) comes first, as in the server; only the flows, which need the
 * store, are not run.
 */
#ifndef OTLOGIN_FUZZ_API_H
#define OTLOGIN_FUZZ_API_H

#include "api_parse.h"

struct fuzz_endpoint {
	const char *path; /* POST path: route_find gives its route (field table, dialect) */
	/*
	 * The endpoint's parse step on in: 0 after checking what it accepted (no canonical
	 * identifier carries a control character or a space, and so on), or -1 with *no.
	 */
	int (*parse)(const struct api_input *in, struct api_refusal *no);
};

extern const struct fuzz_endpoint fuzz_endpoints[];
extern const size_t fuzz_nendpoints;

/* The parse steps' inputs but the body: clients and configurations (fuzz_env_init once). */
#define FUZZ_NENV 2
extern struct api_input fuzz_env[FUZZ_NENV];
void fuzz_env_init(void);

#endif
