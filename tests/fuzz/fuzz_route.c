/* route.c compiled into fuzz_req for its static matching code; see fuzz_api.h. */
#include "route.c"

#include "fuzz_api.h"

int fuzz_route_find(const char *method, const char *path, char *params[2], int *known)
{
	*known = 0;
	for (size_t i = 0; i < NROUTES; i++) {
		if (!path_matches(routes[i].path, path, params))
			continue;
		*known = 1;
		if (method_matches(routes[i].method, method))
			return (int)i;
		free_params(params);
	}
	return -1;
}

int fuzz_route_body(int i)
{
	return routes[i].body == BODY_JSON ? 1 : routes[i].body == BODY_FORM ? 2 : 0;
}

enum resp_dialect fuzz_route_dialect(int i)
{
	return routes[i].dialect;
}

void fuzz_answer_405(struct api_call *call)
{
	answer_405(call);
}
