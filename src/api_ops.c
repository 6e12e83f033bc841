/* Operations endpoints: health. */
#include "api.h"

#include "store.h"

void api_health(struct api_call *call)
{
	if (store_ping(call->c->store))
		resp_json(call->resp, 200, json_pack("{s:s}", "status", "ok"));
	else
		resp_json(call->resp, 503, json_pack("{s:s}", "status", "unavailable"));
}

void api_fail(struct api_call *call, int err, const char *detail)
{
	if (err < 0) {
		/* A store failure: never a half answer. A fatal one also ends this worker. */
		if (err == STORE_FATAL || store_failed(call->c->store))
			call->resp->fatal = 1;
		resp_error(call->resp, ERR_UNAVAILABLE, NULL);
		return;
	}
	if (err == ERR_UNAVAILABLE && store_failed(call->c->store))
		call->resp->fatal = 1;
	resp_error(call->resp, (enum api_err)err, detail);
}
