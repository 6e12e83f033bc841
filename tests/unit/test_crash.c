/*
 * crash: processes killed (SIGKILL) while they use the store. One killed between Berkeley DB
 * calls with a transaction open is cleaned up by failchk, without a recovery; one killed inside
 * Berkeley DB leads to a recovery that the survivor goes through by reopening, and every
 * transaction the killed one had committed is still there. Also the purge rules, and a copy
 * of the database discarded (moved aside) while a process is still in it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "link.h"
#include "lockout.h"
#include "log.h"
#include "session.h"

struct kv {
	enum store_table tbl;
	const char *key;
	const char *json;
};

static int put_kv(struct store_txn *t, void *arg)
{
	const struct kv *kv = arg;
	json_t *v = json_loads(kv->json, 0, NULL);
	int rc = v == NULL ? STORE_ERR : store_put(t, kv->tbl, kv->key, strlen(kv->key), v);
	json_decref(v);
	return rc;
}

struct probe {
	enum store_table tbl;
	const char *key;
	char value[64];
};

/* Read kv->key: value of its "v" member into p->value; returns 1/0 or a store error. */
static int get_probe(struct store_txn *t, void *arg)
{
	struct probe *p = arg;
	json_t *v;
	int rc = store_get(t, p->tbl, p->key, strlen(p->key), &v, 0);

	p->value[0] = '\0';
	if (rc == STORE_FOUND) {
		snprintf(p->value, sizeof(p->value), "%s",
			 json_string_value(json_object_get(v, "v")) ?: "");
		json_decref(v);
	}
	return rc;
}

static int exists(struct store *s, enum store_table tbl, const char *key)
{
	struct probe p = {tbl, key, ""};
	return store_run(s, get_probe, &p);
}

/*
 * A process that dies between Berkeley DB calls, holding the write lock of a record in an
 * open transaction: the survivor's write of that record goes through (failchk releases the
 * lock and aborts the dead transaction), and no recovery was needed.
 */
static void killed_outside(struct store *s)
{
	struct kv mine = {TBL_USERS, "shared", "{\"v\":\"survivor\"}"};
	struct probe p = {TBL_USERS, "shared", ""};
	int pipefd[2];
	pid_t child;
	char ch;

	check(store_run(s, put_kv, &(struct kv){TBL_USERS, "shared", "{\"v\":\"before\"}"}) == 0);
	check(pipe(pipefd) == 0);
	child = fork();
	if (child == 0) {
		struct store *cs = store_open(fixture_dir, 4, 0);
		struct store_txn *t;
		if (cs == NULL || store_begin(cs, &t) != 0 ||
		    put_kv(t, &(struct kv){TBL_USERS, "shared", "{\"v\":\"dead\"}"}) != 0)
			_exit(1);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	check(read(pipefd[0], &ch, 1) == 1);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);

	check(store_run(s, put_kv, &mine) == 0);
	check(store_run(s, get_probe, &p) == STORE_FOUND && strcmp(p.value, "survivor") == 0);
	check(store_reopens(s) == 0);
	check(store_failed(s) == 0);
}

/*
 * Processes killed at a random moment of a loop of durable commits, most of the time inside
 * Berkeley DB (writing or syncing the log): until one of them forces a recovery, which the
 * survivor goes through by reopening. Every key a killed process reported as committed exists
 * afterwards.
 */
static void killed_inside(struct store *s)
{
	char(*committed)[32] = calloc(20000, sizeof(*committed));
	size_t ncommitted = 0;
	int rounds = 0, missing = 0;

	while (store_reopens(s) == 0 && rounds < 100 && ncommitted < 19000) {
		int pipefd[2];
		pid_t child;
		char buf[32];
		size_t got = 0;
		unsigned wanted, pause;

		rounds++;
		crypto_random(&wanted, sizeof(wanted));
		wanted = 1 + wanted % 25;
		if (pipe(pipefd) != 0)
			break;
		child = fork();
		if (child == 0) {
			struct store *cs = store_open(fixture_dir, 4, 0);
			close(pipefd[0]);
			if (cs == NULL)
				_exit(1);
			/* Writes until the parent kills it. */
			for (int n = 0;; n++) {
				char key[32] = "", json[64]; /* all 32 bytes go to the pipe */
				snprintf(key, sizeof(key), "r%d-%d", rounds, n);
				snprintf(json, sizeof(json), "{\"v\":\"%s\"}", key);
				if (store_run(cs, put_kv, &(struct kv){TBL_CODES, key, json}) != 0)
					_exit(1);
				/* Reported only after the commit returned. */
				if (write(pipefd[1], key, sizeof(key)) != (ssize_t)sizeof(key))
					_exit(1);
			}
			_exit(1);
		}
		close(pipefd[1]);
		while (got < wanted && read(pipefd[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
			memcpy(committed[ncommitted++], buf, sizeof(buf));
			got++;
		}
		/*
		 * The child has just reported a commit and is starting the next one: let it get
		 * a random way into it (on a loaded machine, or under valgrind, a kill sent at
		 * once finds it still between commits, where dying forces no recovery).
		 */
		crypto_random(&pause, sizeof(pause));
		usleep(pause % 2500);
		kill(child, SIGKILL);
		/* What it reported between the last read and the kill counts too. */
		while (ncommitted < 20000 &&
		       read(pipefd[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf))
			memcpy(committed[ncommitted++], buf, sizeof(buf));
		waitpid(child, NULL, 0);
		close(pipefd[0]);
		/* As a worker's maintenance would: notice the dead process. */
		store_failchk(s);
		exists(s, TBL_CODES, committed[0]);
	}
	check_msg(store_reopens(s) > 0, "no recovery after %d killed processes", rounds);
	check(store_failed(s) == 0);
	for (size_t i = 0; i < ncommitted; i++)
		if (exists(s, TBL_CODES, committed[i]) != STORE_FOUND)
			missing++;
	check_msg(missing == 0, "%d of %zu committed records lost", missing, ncommitted);
	printf("# %d processes killed, %zu commits checked, %u recoveries\n", rounds, ncommitted,
	       store_reopens(s));
	free(committed);
}

static int never_dead(struct store_txn *t, const void *key, size_t klen, json_t *val, time_t cutoff)
{
	return 0;
}

/*
 * The purge deletes what store.h says, and only that: by "exp", and by the rules the modules
 * register for their records without it. The pointers, index entries and counters here are
 * what older versions wrote too, so existing databases are purged as before.
 */
static void purge(struct store *s)
{
	time_t now = 1700000000;
	char old[96], recent[96], live[96];
	const time_t long_ago = now - STORE_PURGE_GRACE_S - 10, lately = now - 60;
	struct kv records[] = {
	    {TBL_CODES, "code-old", old},
	    {TBL_CODES, "code-recent", recent},
	    {TBL_CODES, "code-live", live},
	    {TBL_CODES, "ptr-dangling", "{\"link\":\"link-gone\"}"},
	    {TBL_CODES, "ptr-live", "{\"link\":\"code-live\"}"},
	    {TBL_REFRESH, "rt-old", old},
	    {TBL_REFRESH, "rt-live", live},
	    {TBL_SESSIONS, "sess-old", old},
	    {TBL_SESSIONS, "sess-live", live},
	    {TBL_SESSIONS, "u:user-1:sess-old", "{}"},
	    {TBL_SESSIONS, "u:user-1:sess-live", "{}"},
	    {TBL_SESSIONS, "u:user-2:sess-never", "{}"},
	    {TBL_COUNTERS, "lock-over", NULL},
	    {TBL_COUNTERS, "lock-counting", NULL},
	    {TBL_COUNTERS, "window-old", old},
	    {TBL_USERS, "user-with-exp", old},
	};
	const char *by_exp[] = {"code-old", "rt-old", "sess-old", "window-old"};
	/* The failure counters of older versions go whatever they count: nothing reads them. */
	const char *gone[] = {"code-old",  "ptr-dangling",	"rt-old",
			      "sess-old",  "u:user-1:sess-old", "u:user-2:sess-never",
			      "lock-over", "lock-counting",	"window-old"};
	char lock_over[96], lock_counting[96];
	int deleted;

	snprintf(old, sizeof(old), "{\"v\":\"x\",\"exp\":%lld}", (long long)long_ago);
	snprintf(recent, sizeof(recent), "{\"v\":\"x\",\"exp\":%lld}", (long long)lately);
	snprintf(live, sizeof(live), "{\"v\":\"x\",\"exp\":%lld}", (long long)(now + 600));
	snprintf(lock_over, sizeof(lock_over), "{\"failures\":0,\"locked_until\":%lld}",
		 (long long)long_ago);
	snprintf(lock_counting, sizeof(lock_counting), "{\"failures\":2,\"locked_until\":0}");
	records[12].json = lock_over;
	records[13].json = lock_counting;
	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++)
		check(store_run(s, put_kv, &records[i]) == 0);

	/* Without the modules' rules the store knows only "exp". */
	deleted = store_purge(s, now);
	check_msg(deleted == (int)(sizeof(by_exp) / sizeof(by_exp[0])), "deleted %d", deleted);
	check(exists(s, TBL_CODES, "ptr-dangling") == STORE_FOUND);
	check(exists(s, TBL_SESSIONS, "u:user-1:sess-old") == STORE_FOUND);
	check(exists(s, TBL_COUNTERS, "lock-over") == STORE_FOUND);

	check(store_purge_rule(s, TBL_USERS, never_dead) < 0);
	check(store_purge_rule(s, TBL_CODES, never_dead) == 0);
	check(link_purge_rules(s) == 0 && session_purge_rules(s) == 0 &&
	      lockout_purge_rules(s) == 0);
	deleted += store_purge(s, now);
	check_msg(deleted == (int)(sizeof(gone) / sizeof(gone[0])), "deleted %d", deleted);
	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
		int dead = 0;
		for (size_t j = 0; j < sizeof(gone) / sizeof(gone[0]); j++)
			dead |= strcmp(gone[j], records[i].key) == 0;
		check_msg(exists(s, records[i].tbl, records[i].key) ==
			      (dead ? STORE_NOTFOUND : STORE_FOUND),
			  "%s should be %s", records[i].key, dead ? "purged" : "kept");
	}
	/* A second pass finds nothing more. */
	check(store_purge(s, now) == 0);
}

/* Spoil a region file as a process killed while creating it would have left it. */
static void spoil_region(const char *file, off_t size, int zero_header)
{
	char path[128], zeros[4096] = {0};
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, file);
	if (zero_header) {
		f = fopen(path, "r+");
		check(f != NULL && fwrite(zeros, 1, sizeof(zeros), f) == sizeof(zeros));
		if (f != NULL)
			fclose(f);
	}
	if (size >= 0)
		check(truncate(path, size) == 0);
}

/* 0 when a fresh process can open the store and read kv's record; else its wait status. */
static int child_reads(const struct kv *kv)
{
	pid_t child = fork();
	int status;

	if (child == 0) {
		struct store *cs;
		struct probe p = {kv->tbl, kv->key, ""};
		int found;
		/* Die of it, as a worker would, rather than have a sanitizer report it. */
		signal(SIGBUS, SIG_DFL);
		cs = store_open(fixture_dir, 4, 0);
		found = cs != NULL && store_run(cs, get_probe, &p) == STORE_FOUND &&
			strstr(kv->json, p.value) != NULL;
		store_close(cs);
		_exit(found ? 0 : 1);
	}
	if (waitpid(child, &status, 0) != child)
		return -1;
	return status;
}

/*
 * Region files left half made by a process killed as it created them (in a recovery): a
 * header never written makes every join fail (EINVAL or EAGAIN), a file cut short is SIGBUS
 * for whoever maps it. Nobody is registered as having died, so DB_REGISTER would never recover
 * the environment: the store does, and every committed record is still there.
 */
static void half_made_regions(void)
{
	struct kv kv = {TBL_USERS, "half-made", "{\"v\":\"kept\"}"};
	struct store *s = store_open(fixture_dir, 4, 0);
	int status;

	check(s != NULL && store_run(s, put_kv, &kv) == 0);
	store_close(s);

	spoil_region("__db.001", -1, 1);
	check(child_reads(&kv) == 0);

	/* The first opener dies of SIGBUS; the next one finds its marker and recovers. */
	spoil_region("__db.002", 100000, 0);
	status = child_reads(&kv);
	check_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
	check(child_reads(&kv) == 0);
	check(child_reads(&kv) == 0);
}

/*
 * A process that opens the store and waits in it for a signal; ignore_term: it ignores
 * SIGTERM. Its pid, once it is in (it says so on a pipe).
 */
static pid_t child_in_store(int ignore_term)
{
	int p[2];
	char byte;
	pid_t pid;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct store *s;

		close(p[0]);
		if (ignore_term)
			signal(SIGTERM, SIG_IGN);
		s = store_open(fixture_dir, 4, 0);
		if (s == NULL || write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &byte, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return pid;
}

/* Whether dir/name exists. */
static int file_in(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/*
 * store_discard_copy: a process that stays in the environment keeps the files where they
 * are; one that leaves when asked (SIGTERM) lets the tables and the log go into a directory
 * of their own, the regions go, otlogin's own files stay.
 */
static void discard_copy(void)
{
	char kept[512], key[512];
	int status;
	FILE *f;
	pid_t pid;

	snprintf(key, sizeof(key), "%s/server.key", fixture_dir);
	check((f = fopen(key, "w")) != NULL && fputs("key", f) >= 0 && fclose(f) == 0);

	pid = child_in_store(1);
	check(pid > 0);
	check(store_discard_copy(fixture_dir, 4, kept, sizeof(kept)) < 0);
	check(file_in(fixture_dir, "users.db") && file_in(fixture_dir, "log.0000000001"));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/*
	 * It returns once the child left; the bound is for a child under valgrind, whose exit
	 * (its leak check) took over 10 s on a loaded CI machine, still in the environment.
	 */
	pid = child_in_store(0);
	check(pid > 0);
	check(store_discard_copy(fixture_dir, 60, kept, sizeof(kept)) == 0);
	check(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
	      WTERMSIG(status) == SIGTERM);
	check(strncmp(kept, fixture_dir, strlen(fixture_dir)) == 0 &&
	      strstr(kept, "/discarded-") != NULL);
	check(file_in(kept, "users.db") && file_in(kept, "keys.db") &&
	      file_in(kept, "log.0000000001"));
	check(!file_in(fixture_dir, "users.db") && !file_in(fixture_dir, "log.0000000001") &&
	      !file_in(fixture_dir, "__db.001"));
	check(file_in(fixture_dir, "server.key") && !file_in(kept, "server.key"));
	check(!store_discard_pending(fixture_dir));
}

/* A store with its tables in fixture_dir again, closed. */
static int tables_again(void)
{
	struct store *s = store_open(fixture_dir, 4, 1);

	if (s == NULL)
		return -1;
	store_close(s);
	return 0;
}

/*
 * A discard that did not finish (its marker names its directory) is finished by the next
 * one, into that directory; files that are not Berkeley DB's stay; of the discarded copies,
 * the newest two are kept.
 */
static void discard_resumed_and_pruned(void)
{
	char kept[512], first[512], second[512], path[600];
	FILE *f;

	check(tables_again() == 0);
	snprintf(first, sizeof(first), "%s/discarded-20000101T000000Z-manual", fixture_dir);
	snprintf(path, sizeof(path), "%s/otlogin.discard", fixture_dir);
	check(mkdir(first, 0700) == 0 && (f = fopen(path, "w")) != NULL &&
	      fprintf(f, "%s\n", first) > 0 && fclose(f) == 0);
	snprintf(path, sizeof(path), "%s/notes.db", fixture_dir);
	check((f = fopen(path, "w")) != NULL && fclose(f) == 0);
	check(store_discard_pending(fixture_dir));
	check(store_discard_copy(fixture_dir, 10, kept, sizeof(kept)) == 0 &&
	      strcmp(kept, first) == 0);
	check(file_in(first, "users.db") && !file_in(fixture_dir, "users.db"));
	check(file_in(fixture_dir, "notes.db") && !store_discard_pending(fixture_dir));

	check(tables_again() == 0);
	check(store_discard_copy(fixture_dir, 10, second, sizeof(second)) == 0);
	check(strcmp(second, first) != 0 && file_in(second, "users.db"));
	check(tables_again() == 0);
	check(store_discard_copy(fixture_dir, 10, kept, sizeof(kept)) == 0);
	/* The oldest went (the one named for 2000), the newest two stay. */
	check(!file_in(fixture_dir, strrchr(first, '/') + 1));
	check(file_in(fixture_dir, strrchr(second, '/') + 1) &&
	      file_in(fixture_dir, strrchr(kept, '/') + 1));
}

int main(void)
{
	struct store *s;

	/* Berkeley DB's messages about the killed processes are expected here. */
	log_init("test_crash", LOG_LEVEL_ERR);
	s = store_open(fixture_begin("/tmp", "crash"), 4, 1);
	check(s != NULL);
	if (s == NULL)
		return check_done();
	killed_outside(s);
	killed_inside(s);
	purge(s);
	store_close(s);
	half_made_regions();
	discard_copy();
	discard_resumed_and_pruned();
	fixture_remove(fixture_dir);
	return check_done();
}
