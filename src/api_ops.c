/* Operations endpoints: health. */
#include "api.h"

#include "store.h"

void api_health(struct api_call *call)
{
	int up = store_ping(call->c->store);
	json_t *out = json_pack("{s:s}", "status", up ? "ok" : "unavailable");

	/* Test mode keeps every code on this host: a monitor must be able to see it is on. */
	if (out != NULL && conf_test_mode(call->c->conf))
		json_object_set_new(out, "test_mode", json_true());
	resp_json(call->resp, up ? 200 : 503, out);
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
