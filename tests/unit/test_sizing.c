/*
 * sizing: the cache rule's arithmetic (125 % of the tables in MiB, rounded up, between the
 * default and the largest db_cache_mb) and the report on a real store: each table's file size,
 * their sum, the counts, the cache the environment was made with, the advice.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "sizing.h"

#define MIB ((uint64_t)1 << 20)

static void rule(void)
{
	check(sizing_cache_mb(0, 16) == 16);
	check(sizing_cache_mb(12 * MIB, 16) == 16);
	check(sizing_cache_mb(16 * MIB, 16) == 20);
	/* 125 % rounded up: 100 MiB + 1 byte needs 126 MiB. */
	check(sizing_cache_mb(100 * MIB, 16) == 125);
	check(sizing_cache_mb(100 * MIB + 1, 16) == 126);
	check(sizing_cache_mb(2000 * MIB, 16) == 2500);
	check(sizing_cache_mb(3276 * MIB, 16) == 4095);
	check(sizing_cache_mb(60000 * MIB, 16) == 65536);
	check(sizing_cache_mb(100000 * MIB, 16) == SIZING_MAX_MB);
	check(sizing_cache_mb(MIB, 1) == 2);
}

static void report(void)
{
	json_t *r = sizing_report(c.store, conf.db_dir, 8), *tables;
	uint64_t sum = 0;
	const char *name;
	json_t *v;

	check(r != NULL);
	if (r == NULL)
		return;
	tables = json_object_get(r, "tables");
	check(json_object_size(tables) == TBL_COUNT);
	json_object_foreach(tables, name, v)
	{
		char path[512];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", conf.db_dir, name);
		check(stat(path, &sb) == 0);
		check(json_integer_value(json_object_get(v, "bytes")) == sb.st_size);
		sum += (uint64_t)sb.st_size;
	}
	check(json_integer_value(json_object_get(r, "data_bytes")) == (json_int_t)sum);
	check(json_integer_value(json_object_get(r, "users")) == 2);
	check(json_integer_value(json_object_get(r, "refresh_tokens")) == 0);
	check(json_integer_value(json_object_get(r, "configured_cache_mb")) == 8);
	/* Berkeley DB adds about a quarter to caches under 500 MB: at least what was asked. */
	check(json_integer_value(json_object_get(r, "cache_bytes")) >= (json_int_t)(8 * MIB));
	check(json_integer_value(json_object_get(r, "recommended_cache_mb")) ==
	      sizing_cache_mb(sum, 16));
	check(strcmp(json_string_value(json_object_get(r, "advice")),
		     "the cache holds the tables") == 0);
	check(json_real_value(json_object_get(r, "cache_hit_rate")) > 0);
	json_decref(r);
	/* A directory without the tables: no report. */
	check(sizing_report(c.store, "/nonexistent-otlogin-dir", 8) == NULL);
}

int main(void)
{
	char id[64];

	rule();
	if (fixture_open("/dev/shm", "sizing", 8) < 0)
		return check_done();
	fixture_user("a@example.org", NULL, NULL, id);
	fixture_user("b@example.org", NULL, NULL, id);
	report();
	fixture_close();
	return check_done();
}
