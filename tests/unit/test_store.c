/*
 * store: the Berkeley DB store: records, refusal without commit, iteration, file modes, and
 * what store_maintain does between requests (the purge pass when it is due, checkpoints that
 * let the log files be removed), and the maintenance owner's lock (one holder per environment,
 * also across processes, free again once its holder is gone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

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

struct kv {
	enum store_table tbl;
	const char *key;
	json_t *val; /* NULL: read into got */
	json_t *got;
};

static int put_kv(struct store_txn *t, void *arg)
{
	struct kv *kv = arg;
	return store_put(t, kv->tbl, kv->key, strlen(kv->key), kv->val);
}

static int get_kv(struct store_txn *t, void *arg)
{
	struct kv *kv = arg;
	return store_get(t, kv->tbl, kv->key, strlen(kv->key), &kv->got, 0);
}

/* 1 when tbl holds key, 0 when not, or a negative store_rc. */
static int has(struct store *s, enum store_table tbl, const char *key)
{
	struct kv kv = {tbl, key, NULL, NULL};
	int rc = store_run(s, get_kv, &kv);
	json_decref(kv.got);
	return rc;
}

/* Put {"exp": exp} under key in tbl. */
static int put_exp(struct store *s, enum store_table tbl, const char *key, time_t exp)
{
	struct kv kv = {tbl, key, json_pack("{s:I}", "exp", (json_int_t)exp), NULL};
	int rc = store_run(s, put_kv, &kv);
	json_decref(kv.val);
	return rc;
}

/* store_maintain does at most one step a second: wait for the next second, then call it. */
static void maintain_next_second(struct store *s)
{
	time_t then = time(NULL);

	while (time(NULL) == then)
		nanosleep(&(struct timespec){0, 10000000}, NULL);
	store_maintain(s);
}

/* Rewrite the same 25 records of 4 KiB in TBL_CLIENTS: some 100 KiB of log or more. */
static int write_log(struct store_txn *t, void *arg)
{
	static char big[4097];
	char key[16];
	int rc = 0;

	memset(big, 'x', sizeof(big) - 1);
	big[0] = (char)('a' + *(unsigned *)arg % 26);
	for (int i = 0; i < 25 && rc == 0; i++) {
		json_t *v = json_pack("{s:s}", "v", big);
		snprintf(key, sizeof(key), "bulk-%d", i);
		rc = store_put(t, TBL_CLIENTS, key, strlen(key), v);
		json_decref(v);
	}
	return rc;
}

/* 1 when the log file of number n is in dir. */
static int log_file(const char *dir, int n)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/log.%010d", dir, n);
	return stat(path, &st) == 0;
}

/* Write log until file n exists (at most 64 MiB of records): 1 when it does. */
static int write_log_until(struct store *s, const char *dir, int n)
{
	for (unsigned i = 0; i < 640 && !log_file(dir, n); i++)
		if (store_run(s, write_log, &i) != 0)
			return 0;
	return log_file(dir, n);
}

/*
 * store_maintain, in a second other than the last call's:
 * - claims the purge pass, which is due in a fresh environment, and runs it: a code expired
 *   longer ago than the grace is deleted, a live one and one within the grace are kept; the
 *   pass is not run again at the next call (it is claimed every ten minutes);
 * - checkpoints once 1 MiB of log was written, so that the log file in use before is removed
 *   at the next switch to a new file. Without a checkpoint, recovery would still need it.
 */
static void maintain(const char *dir)
{
	struct store *s = store_open(dir, 4, 0);
	time_t now = time(NULL);

	check(s != NULL);
	if (s == NULL)
		return;
	check(put_exp(s, TBL_CODES, "expired", now - STORE_PURGE_GRACE_S - 60) == 0);
	check(put_exp(s, TBL_CODES, "in-grace", now - 60) == 0);
	check(put_exp(s, TBL_CODES, "live", now + 600) == 0);
	check(put_exp(s, TBL_SESSIONS, "expired", now - STORE_PURGE_GRACE_S - 60) == 0);
	maintain_next_second(s);
	check(has(s, TBL_CODES, "expired") == STORE_NOTFOUND);
	check(has(s, TBL_SESSIONS, "expired") == STORE_NOTFOUND);
	check(has(s, TBL_CODES, "in-grace") == STORE_FOUND);
	check(has(s, TBL_CODES, "live") == STORE_FOUND);
	check(put_exp(s, TBL_CODES, "expired-later", now - STORE_PURGE_GRACE_S - 60) == 0);
	maintain_next_second(s);
	check(has(s, TBL_CODES, "expired-later") == STORE_FOUND);

	/* Past a file switch, the first log file is still needed: no checkpoint since it. */
	check_msg(write_log_until(s, dir, 2), "no second log file");
	check(log_file(dir, 1));
	maintain_next_second(s);
	check_msg(write_log_until(s, dir, 3), "no third log file");
	check_msg(!log_file(dir, 1), "log file 1 outlived the checkpoint of store_maintain");
	check(store_failed(s) == 0);
	store_close(s);
}
/* store_maintainer_lock: one owner at a time, in this process or another. */
static void owner_lock(const char *dir)
{
	struct store *s = store_open(dir, 4, 0);
	int fd, again, status;
	pid_t pid;

	check(s != NULL);
	fd = store_maintainer_lock(s);
	check(fd >= 0);
	check(store_maintainer_lock(s) == -1);
	pid = fork();
	if (pid == 0)
		_exit(store_maintainer_lock(s) == -1 ? 0 : 1); /* another process is refused */
	check(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
	close(fd);
	again = store_maintainer_lock(s);
	check(again >= 0);
	close(again);
	/* The worker's part says when to look for an owner: at most once a second. */
	store_maintain_worker(s);
	check(store_maintain_worker(s) == 0);
	store_close(s);
}

int main(void)
{
	char path[128];
	const char *dir = fixture_begin("/tmp", "store");
	struct store *s;
	struct store_txn *t;
	struct stat st;
	json_t *v;
	int n;

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
	store_close(s);

	/* Reopening (another process would) sees the committed records. */
	s = store_open(dir, 4, 0);
	check(s != NULL);
	check(store_run(s, count_txn, &n) == 0 && n == 2);
	store_close(s);
	check(store_open("/nonexistent/otlogin", 4, 0) == NULL);
	maintain(dir);
	owner_lock(dir);
	fixture_remove(dir);
	return check_done();
}
