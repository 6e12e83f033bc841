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
