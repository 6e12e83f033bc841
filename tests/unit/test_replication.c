/*
 * store_rep: [replication]'s addresses, the DB_CONFIG it writes, and a group of one site (its
 * creator) whose replication process becomes master, publishes its state and writes. The
 * failover of three sites is tests/e2e/test_ha.py.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ctx.h"
#include "fixture.h"
#include "store.h"
#include "store_bdb_int.h"

/* A TCP port nobody listens on now (the kernel's pick, released again). */
static unsigned free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static struct store_rep_conf settings(const char *local, const char *peers)
{
	struct store_rep_conf rc = {
	    .local = local,
	    .peers = peers,
	    .creator = 1,
	    .priority = 100,
	    .ack_timeout_ms = 1000,
	    .heartbeat_send_ms = 500,
	    .heartbeat_monitor_ms = 2000,
	    .retry_ms = 1000,
	};
	return rc;
}

static void test_addresses(void)
{
	struct store_rep_conf rc;
	char many[2048] = "";

	rc = settings("127.0.0.1", "127.0.0.1:5502");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings("127.0.0.1:0", "127.0.0.1:5502");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings("127.0.0.1:65536", "127.0.0.1:5502");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings(":5501", "127.0.0.1:5502");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings("127.0.0.1:5501", "127.0.0.1:5502, nohost");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings("127.0.0.1:-1", "127.0.0.1:5502");
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	for (int i = 0; i < STORE_REP_MAX_PEERS + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "10.0.0.%d:5501 ",
			 i + 1);
	rc = settings("127.0.0.1:5501", many);
	check(store_replication(&rc, STORE_REP_PROCESS) < 0);
	rc = settings("[::1]:5501", "127.0.0.1:5502,127.0.0.1:5503\t[::1]:5504");
	check(store_replication(&rc, STORE_REP_PROCESS) == 0);
	check(store_replicated());
}

static int file_has(const char *path, const char *text)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f != NULL)
		fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

static int put_txn(struct store_txn *t, void *arg)
{
	json_t *v = json_pack("{s:s}", "v", (const char *)arg);
	int rc = store_put(t, TBL_USERS, "k", 1, v);
	json_decref(v);
	return rc;
}

static int get_txn(struct store_txn *t, void *arg)
{
	json_t *v;
	int rc = store_get(t, TBL_USERS, "k", 1, &v, 0);

	if (rc == STORE_FOUND) {
		*(int *)arg = strcmp(json_string_value(json_object_get(v, "v")), "written") == 0;
		json_decref(v);
	}
	return rc < 0 ? rc : 0;
}

/* One record of about 4 KiB under key "fill<n>" (*(int *)arg). */
static int fill_txn(struct store_txn *t, void *arg)
{
	char key[32], value[4096];
	json_t *v;
	int rc;

	snprintf(key, sizeof(key), "fill%d", *(int *)arg);
	memset(value, 'x', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	v = json_pack("{s:s}", "v", value);
	rc = store_put(t, TBL_USERS, key, strlen(key), v);
	json_decref(v);
	return rc;
}

static DB_LSN last_ckp(struct store *s)
{
	DB_LSN lsn = {0, 0};
	DB_TXN_STAT *st;

	if (s->env->txn_stat(s->env, &st, 0) == 0) {
		lsn = st->st_last_ckp;
		free(st);
	}
	return lsn;
}

/*
 * A replicated master checkpoints only at a moment without an active transaction
 * (store_bdb.c, checkpoint_safe, says why): with a checkpoint due (over 1 MiB of log since
 * the last one), the owner's step writes none while a transaction is open, and one once it
 * ended.
 */
static void test_checkpoint_waits_for_quiet(struct store *s)
{
	struct store_txn *t;
	DB_LSN before, after;

	for (int i = 0; i < 300; i++)
		check(store_run(s, fill_txn, &i) == 0);
	check(store_begin(s, &t) == 0);
	before = last_ckp(s);
	sleep(1); /* the owner's steps are a second apart */
	store_maintain_owner(s);
	after = last_ckp(s);
	check(log_compare(&after, &before) == 0);
	store_abort(t);
	sleep(1);
	store_maintain_owner(s);
	after = last_ckp(s);
	check(log_compare(&after, &before) > 0);
}

/*
 * A master writes only through table handles opened since it became the master (store_bdb.c,
 * tables_ready, says why): the site steps down to a client and back to the master (elections
 * off, as repmgr_start then allows) in a new generation, and its next transaction reopens the
 * tables that its reads as a client (with no master to catch up with) left open.
 */
static void test_new_master_reopens_tables(struct store *s)
{
	uint32_t epoch = rep_tables_epoch(s);
	int found = 0;

	check((epoch & 1) && s->tables_epoch == epoch);
	check(s->env->rep_set_config(s->env, DB_REPMGR_CONF_ELECTIONS, 0) == 0);
	check(s->env->repmgr_start(s->env, 0, DB_REP_CLIENT) == 0);
	check(!store_rep_master(s) && rep_tables_epoch(s) == 0);
	check(store_run(s, get_txn, &found) == 0 && found);
	check(s->tables_epoch == epoch); /* kept */
	check(s->env->repmgr_start(s->env, 0, DB_REP_MASTER) == 0);
	check(store_rep_master(s) && rep_tables_epoch(s) > epoch);
	check(store_run(s, put_txn, "written again") == 0);
	check(s->tables_epoch == rep_tables_epoch(s));
}

/* The creator of a group of one: master by itself, with DB_CONFIG written from the settings. */
static void test_group_of_one(void)
{
	char local[32], peer[32], path[128];
	struct store_rep_conf rc;
	struct store_rep_status st;
	struct store *s;
	int master = 0, found = 0;

	snprintf(local, sizeof(local), "127.0.0.1:%u", free_port());
	/* A peer that never answers: a bootstrap helper a group of one does not need. */
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", free_port());
	rc = settings(local, peer);
	check(store_replication(&rc, STORE_REP_PROCESS) == 0);
	fixture_begin("/tmp", "replication");
	s = store_open(fixture_dir, 4, 1);
	check(s != NULL);
	if (s == NULL)
		return;
	snprintf(path, sizeof(path), "%s/DB_CONFIG", fixture_dir);
	check(file_has(path, " db_local_site on db_group_creator on\n"));
	check(file_has(path, "db_bootstrap_helper on\n"));
	check(file_has(path, "repmgr_set_ack_policy db_repmgr_acks_quorum\n"));
	check(file_has(path, "rep_set_timeout db_rep_heartbeat_send 500000\n"));
	check(file_has(path, "rep_set_timeout db_rep_heartbeat_monitor 2000000\n"));
	check(file_has(path, "rep_set_timeout db_rep_connection_retry 1000000\n"));
	check(file_has(path, "rep_set_timeout db_rep_checkpoint_delay 0\n"));

	/* Nothing published yet: a look says so. */
	check(store_rep_status(fixture_dir, &st) == 0 && !st.repd_running &&
	      strcmp(st.role, "none") == 0);
	for (int i = 0; i < 200 && !(master = store_rep_master(s)); i++)
		usleep(50 * 1000);
	check(master);
	check(store_rep_publish(s, 1, 1, 0) == 0);
	check(store_rep_status(fixture_dir, &st) == 0 && st.repd_running &&
	      strcmp(st.role, "master") == 0 && strcmp(st.master, local) == 0);
	check(st.lag_ms == 0); /* the master is not behind itself */
	check(st.nsites == 1 && st.npeers == 0 && st.log_file >= 1);
	/* The replication process may write on its master. */
	check(store_rep_unavailable(s) == NULL);
	check(store_run(s, put_txn, "written") == 0);
	check(store_run(s, get_txn, &found) == 0 && found);
	test_checkpoint_waits_for_quiet(s);
	test_new_master_reopens_tables(s);
	store_rep_unpublish(s);
	check(store_rep_status(fixture_dir, &st) == 0 && !st.repd_running);
	store_close(s);
	fixture_remove(fixture_dir);
}

/* The creator's DB_CONFIG line, as ctx_replication settles it for dir's contents. */
static int creator_line(struct conf *cf, const char *dir)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/DB_CONFIG", dir);
	check(ctx_replication(cf, STORE_REP_PROCESS) == 0 && rep_write_config(dir) == 0);
	return file_has(path, "db_group_creator on");
}

static void touch(const char *dir, const char *name)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	check(f != NULL);
	if (f != NULL)
		fclose(f);
}

/*
 * creator = yes founds a group in a new directory and in a single host's (its tables and key
 * there), never in one that holds only the group's server.key: that site is being copied
 * from the group, and a group of its own would be a second master.
 */
static void test_creator_only_without_a_group_to_join(void)
{
	struct conf cf;

	conf_defaults(&cf);
	cf.rep_enabled = 1;
	cf.rep_creator = 1;
	free(cf.rep_local);
	cf.rep_local = strdup("127.0.0.1:5501");
	free(cf.rep_peers);
	cf.rep_peers = strdup("127.0.0.1:5502");
	fixture_begin("/tmp", "creator");
	check(mkdir(fixture_dir, 0700) == 0);
	free(cf.db_dir);
	cf.db_dir = strdup(fixture_dir);
	check(creator_line(&cf, fixture_dir));
	touch(fixture_dir, "server.key");
	check(!creator_line(&cf, fixture_dir));
	touch(fixture_dir, store_table_file(TBL_CLIENTS));
	check(creator_line(&cf, fixture_dir));
	cf.rep_creator = 0;
	check(!creator_line(&cf, fixture_dir));
	conf_free(&cf);
	fixture_remove(fixture_dir);
}

/*
 * A failure to apply the master's log counts (store_rep_apply_failure) only when a page did
 * not match the log: Berkeley DB's words, in the order its applying thread says them.
 */
static void test_apply_failure_words(void)
{
	struct store_rep_conf rc = settings("127.0.0.1:5501", "127.0.0.1:5502");
	char at[32];

	check(store_replication(&rc, STORE_REP_PROCESS) == 0);
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
	/* Another cause (a full disk): a fresh copy would not mend it. */
	rep_note_error("BDB0001 write: 0x7f, 4096: No space left on device");
	rep_note_error("BDB3523 transaction failed at [2][90]");
	rep_note_error("BDB3526 Error processing txn [2][100]");
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
	/* A log sequence error, and then not at once: not this transaction's. */
	rep_note_error("BDB0110 Log sequence error: page LSN 2 5; previous LSN 2 6");
	rep_note_error("BDB0061 PANIC: Invalid argument");
	rep_note_error("BDB3526 Error processing txn [2][100]");
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
	rep_note_error("BDB0110 Log sequence error: page LSN 2 5; previous LSN 2 6");
	rep_note_error("BDB3523 transaction failed at [2][90]");
	rep_note_error("BDB3526 Error processing txn [2][100]");
	check(store_rep_apply_failure(at, sizeof(at)) == 1 && strcmp(at, "2/100") == 0);
	/* Told once. */
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
	/* A recovery that replays the site's own log stops at such a page. */
	rep_note_error("BDB0110 Log sequence error: page LSN 2 5; previous LSN 2 6");
	rep_note_error("BDB1520 Recovery function for LSN 2 80 failed on forward pass");
	check(store_rep_apply_failure(at, sizeof(at)) == 1 && strcmp(at, "2/80") == 0);
	/* The same at the end of an internal init: the pages were the master's own. */
	rep_note_error("BDB0110 Log sequence error: page LSN 2 5; previous LSN 2 6");
	rep_note_error("BDB1520 Recovery function for LSN 2 80 failed on forward pass");
	rep_note_error("BDB3502 Client initialization failed.  Need to manually restore client");
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
	/* A recovery that failed for another cause. */
	rep_note_error("BDB1520 Recovery function for LSN 2 80 failed on forward pass");
	check(store_rep_apply_failure(at, sizeof(at)) == 0);
}

int main(void)
{
	test_addresses();
	test_creator_only_without_a_group_to_join();
	test_group_of_one();
	test_apply_failure_words();
	return check_done();
}
