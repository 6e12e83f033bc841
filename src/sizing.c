#include "sizing.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "metrics.h"

#define MIB (1024.0 * 1024.0)

unsigned sizing_cache_mb(uint64_t data_bytes, unsigned min_mb)
{
	uint64_t mb = (data_bytes * SIZING_HEADROOM_PCT / 100 + (1u << 20) - 1) >> 20;

	if (mb < min_mb)
		mb = min_mb;
	return mb > SIZING_MAX_MB ? SIZING_MAX_MB : (unsigned)mb;
}

struct counts {
	size_t users, refresh;
};

static int count_txn(struct store_txn *t, void *arg)
{
	struct counts *n = arg;
	int rc = store_count(t, TBL_USERS, &n->users);

	return rc < 0 ? rc : store_count(t, TBL_REFRESH, &n->refresh);
}

/* What to do, as a sentence for the operator (a new json_t). */
static json_t *advice(const char *db_dir, uint64_t cache, uint64_t need, unsigned configured,
		      unsigned rec)
{
	char buf[512];

	if (cache >= need)
		return json_string("the cache holds the tables");
	snprintf(buf, sizeof(buf),
		 "%s[server] db_cache_mb = %u, then stop the workers and every otloginctl, run "
		 "db5.3_recover -h %s (the environment keeps the cache size it was made with until "
		 "then) and start them%s",
		 configured >= rec ? "db_cache_mb is set; to apply it: " : "set ", rec, db_dir,
		 need > ((uint64_t)SIZING_MAX_MB << 20)
		     ? "; the tables outgrow the largest cache, so requests will still read some "
		       "pages from the file system's cache"
		     : "");
	return json_string(buf);
}

json_t *sizing_report(struct store *s, const char *db_dir, unsigned configured_mb)
{
	struct metrics_bdb st;
	struct counts n = {0, 0};
	uint64_t data = 0, lookups, need;
	json_t *tables = json_object(), *out = NULL;
	unsigned rec;

	if (tables == NULL)
		return NULL;
	for (int i = 0; i < TBL_COUNT; i++) {
		const char *name = store_table_file((enum store_table)i);
		char path[PATH_MAX];
		struct stat sb;

		if (snprintf(path, sizeof(path), "%s/%s", db_dir, name) >= (int)sizeof(path) ||
		    stat(path, &sb) < 0) {
			log_err("%s/%s: %s", db_dir, name, strerror(errno));
			goto out;
		}
		data += (uint64_t)sb.st_size;
		json_object_set_new(tables, name,
				    json_pack("{s:I}", "bytes", (json_int_t)sb.st_size));
	}
	if (store_stats(s, &st) < 0 || store_run(s, count_txn, &n) < 0) {
		log_err("cannot read the environment's statistics");
		goto out;
	}
	rec = sizing_cache_mb(data, 16);
	need = data * SIZING_HEADROOM_PCT / 100;
	lookups = st.cache_hits + st.cache_misses;
	out = json_pack("{s:O, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:i, s:i, s:f, s:o}", "tables",
			tables, "data_bytes", (json_int_t)data, "users", (json_int_t)n.users,
			"refresh_tokens", (json_int_t)n.refresh, "mib_per_million_users",
			n.users ? (double)data / MIB * 1e6 / (double)n.users : 0.0, "cache_bytes",
			(json_int_t)st.cache_bytes, "cache_pages", (json_int_t)st.cache_pages,
			"cache_evictions", (json_int_t)st.cache_evictions, "cache_mb",
			(int)(st.cache_bytes >> 20), "configured_cache_mb", (int)configured_mb,
			"cache_hit_rate", lookups ? (double)st.cache_hits / (double)lookups : 1.0,
			"advice", advice(db_dir, st.cache_bytes, need, configured_mb, rec));
	if (out != NULL)
		json_object_set_new(out, "recommended_cache_mb", json_integer(rec));
out:
	json_decref(tables);
	return out;
}
