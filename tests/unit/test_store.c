/* store: the Berkeley DB store: records, refusal without commit, iteration, file modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "crypto.h"
#include "store.h"

static int put_then_refuse(struct store_txn *t, void *arg)
{
	json_t *v = json_pack("{s:i}", "n", 2);
	int rc = store_put(t, TBL_USERS, "k", 1, v);
	json_decref(v);
	return rc < 0 ? rc : STORE_REFUSE(7);
}

static int put_one(struct store_txn *t, void *arg)
{
	json_t *v = json_pack("{s:s}", "v", (const char *)arg);
	int rc = store_put(t, TBL_USERS, arg, strlen(arg), v);
	json_decref(v);
	return rc < 0 ? rc : 5;
}

static int count_cb(const void *k, size_t klen, json_t *val, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int count_txn(struct store_txn *t, void *arg)
{
	*(int *)arg = 0;
	return store_each(t, TBL_USERS, "b", 1, count_cb, arg);
}

int main(void)
{
	char dir[64], path[128];
	struct store *s;
	struct store_txn *t;
	struct stat st;
	json_t *v;
	int n;

	crypto_init();
	snprintf(dir, sizeof(dir), "/tmp/otlogin-test-store-%d", (int)getpid());
	umask(077);
	s = store_open(dir, 4, 1);
	check(s != NULL);
	check(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/codes.db", dir);
	check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

	check(store_run(s, put_one, "a") == 5);
	check(store_run(s, put_one, "b") == 5);
	check(store_run(s, put_one, "c") == 5);
	check(store_begin(s, &t) == 0);
	check(store_get(t, TBL_USERS, "b", 1, &v, 0) == STORE_FOUND);
	check(strcmp(json_string_value(json_object_get(v, "v")), "b") == 0);
	json_decref(v);
	v = NULL;
	check(store_get(t, TBL_USERS, "zz", 2, &v, 1) == STORE_NOTFOUND && v == NULL);
	check(store_del(t, TBL_USERS, "a", 1) == STORE_FOUND);
	check(store_del(t, TBL_USERS, "a", 1) == STORE_NOTFOUND);
	store_abort(t); /* the delete is undone */
	check(store_begin(s, &t) == 0);
	check(store_get(t, TBL_USERS, "a", 1, &v, 0) == STORE_FOUND);
	json_decref(v);
	check(store_commit(t) == 0);

	/* A refusal aborts: what the function wrote is not committed. */
	n = store_run(s, put_then_refuse, NULL);
	check(store_refused(n) == 7);
	check(store_refused(STORE_ERR) == -1);
	check(store_begin(s, &t) == 0);
	check(store_get(t, TBL_USERS, "k", 1, &v, 0) == STORE_NOTFOUND);
	store_abort(t);

	check(store_run(s, count_txn, &n) == 0 && n == 2); /* from "b": b, c */
	check(store_ping(s) == 1);
	check(store_failed(s) == 0);
	store_maintain(s);
	store_close(s);

	/* Reopening (another process would) sees the committed records. */
	s = store_open(dir, 4, 0);
	check(s != NULL);
	check(store_run(s, count_txn, &n) == 0 && n == 2);
	store_close(s);
	check(store_open("/nonexistent/otlogin", 4, 0) == NULL);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	check(system(path) == 0);
	return check_done();
}
