/* Operations endpoints: health and metrics. */
#include "api.h"

#include <stdlib.h>

#include "crypto.h"
#include "metrics.h"
#include "sbuf.h"
#include "store.h"

/*
 * 200 only when this site can serve: its store answers and, replicated, it is a master with a
 * live replication process and a quorum of peers (a load balancer routes on it); else 503
 * with a one-word reason.
 */
void api_health(struct api_call *call)
{
	const char *why = store_rep_unavailable(call->c->store);
	int up = why == NULL && store_ping(call->c->store);
	json_t *out = json_pack("{s:s}", "status", up ? "ok" : "unavailable");

	if (out != NULL && store_replicated())
		json_object_set_new(out, up ? "role" : "reason",
				    json_string(up	      ? "master"
						: why != NULL ? why
							      : "failed"));

	/* Test mode keeps every code on this host: a monitor must be able to see it is on. */
	if (out != NULL && conf_test_mode(call->c->conf))
		json_object_set_new(out, "test_mode", json_true());
	resp_json(call->resp, up ? 200 : 503, out);
}

/*
 * 1 when the caller may read the metrics: its address (REMOTE_ADDR, set by the web server)
 * is in [metrics] allow, or it sent [metrics] token as its bearer token. Else 0 after
 * answering: 401 asking for the token when one is configured and none was sent, else 403.
 */
static int metrics_caller_ok(struct api_call *call)
{
	const struct conf *conf = call->c->conf;
	const char *token = req_bearer(call->req);

	if (conf->metrics_allow[0] != '\0' &&
	    metrics_cidr_match(conf->metrics_allow, call->req->remote_addr) == 1)
		return 1;
	/* Constant time: the comparison must not tell a guesser how much of it was right. */
	if (conf->metrics_token[0] != '\0' && token != NULL &&
	    crypto_str_equal(token, conf->metrics_token))
		return 1;
	if (conf->metrics_token[0] != '\0' && token == NULL)
		resp_error(call->resp, ERR_INVALID_TOKEN, NULL); /* with WWW-Authenticate */
	else
		resp_error(call->resp, ERR_FORBIDDEN, "Not allowed to read the metrics");
	return 0;
}

void api_metrics(struct api_call *call)
{
	const struct conf *conf = call->c->conf;
	struct metrics_bdb bdb;
	struct sbuf out = {0};
	char *text;

	/* Off unless configured: then there is nothing here at all. */
	if (conf->metrics_allow[0] == '\0' && conf->metrics_token[0] == '\0') {
		resp_error(call->resp, ERR_NOT_FOUND, NULL);
		return;
	}
	if (!metrics_caller_ok(call))
		return;
	store_stats(call->c->store, &bdb);
	metrics_render(&out, &bdb);
	text = sbuf_take(&out);
	if (text == NULL) {
		resp_error(call->resp, ERR_INTERNAL, NULL);
		return;
	}
	resp_html(call->resp, 200, text);
	free(text);
	if (call->resp->status == 200)
		call->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	resp_header(call->resp, "Cache-Control", "no-store");
}
