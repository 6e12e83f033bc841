/*
 * store_bdb_int: what the files of the Berkeley DB store share, and nothing else includes:
 * store_bdb.c (tables, transactions, the purge), store_recover.c (opening the environment
 * whatever a killed process left of it, recovering it, reopening it in place),
 * store_discard.c (moving a replication site's copy aside) and store_watchdog.c (ending a
 * process blocked for good on a dead one's latch).
 */
#ifndef OTLOGIN_STORE_BDB_INT_H
#define OTLOGIN_STORE_BDB_INT_H

#include <db.h>
#include <sys/types.h>
#include <time.h>

#include "store.h"

/* The watchdog's deadline for opening (which may wait for or run a recovery) and checkpoints. */
#define WD_SLOW_FACTOR 2

/*
 * Which file a region file is: a recovery deletes and recreates them, and ext4 may give the new
 * file the old inode number at once, so its birth time counts too.
 */
struct region_id {
	dev_t dev;
	ino_t ino; /* 0: unknown */
	long long btime_s, btime_ns;
};

struct store {
	DB_ENV *env; /* NULL after a reopen failed */
	DB *db[TBL_COUNT];
	char *dir;
	char *realdir; /* absolute: how the region files show in /proc/self/maps */
	unsigned cache_mb;
	int create;	       /* opened by otloginctl init: tables are created when missing */
	int tables_dead;       /* replication replaced them under the handles: reopen the tables */
	uint32_t tables_epoch; /* rep_tables_epoch when they were opened */
	int failed;	       /* DB_RUNRECOVERY seen: the handles are dead until store_reopen */
	int lock_timedout;     /* a lock wait timed out: run failchk soon */
	unsigned reopens;
	time_t next_reopen, last_maintain, last_owner_step, last_failchk, next_purge_check;
	/*
	 * Since when a checkpoint waits for a moment without an open transaction (0: not). Not
	 * the last checkpoint's time: an idle master writes none, and the first busy moment
	 * after would count as a long wait.
	 */
	time_t busy_since;
	char *region; /* the first region file, and its identity at open */
	struct region_id region_id;
	/* Where the running purge pass is: index into purge_tables (-1: none) and last key. */
	int purge_table;
	char *purge_key;
	size_t purge_klen;
	unsigned purged;
	/* What the modules say about their records without "exp" (store_purge_rule). */
	store_purge_fn purge_rules[TBL_COUNT][STORE_PURGE_RULES];
};

struct store_txn {
	struct store *s;
	DB_TXN *txn;
};

/* store_bdb.c: a Berkeley DB return code as a store_rc (remembering a fatal one). */
int bdb_map_rc(struct store *s, int rc, const char *what);

/*
 * store_bdb.c: open every table in s->env (create: create them). 0, STORE_RETRY (a lock lost
 * to a replication sync), or -1 (logged).
 */
int bdb_open_tables(struct store *s, int create);

/*
 * store_recover.c: open the environment and the tables, recovering the environment first when
 * a process died in it (see there). 0, or -1 (logged; bdb_drop_handles cleans up).
 */
int bdb_open_all(struct store *s, int create);
/* store_recover.c: close the handles; after DB_RUNRECOVERY only what a panicked one allows. */
void bdb_drop_handles(struct store *s);
/*
 * store_recover.c, for store_discard.c: DB_REGISTER's registry in dir, open with its exclusive
 * lock (a descriptor, or -1 logged; closing it releases the lock); sig sent to every process
 * that holds a slot of it (0: none), and how many hold one (bdb_registry_in_use: only that);
 * the region files deleted; whether name is prefix and one digit or more (log.N, __db.N).
 */
int bdb_registry_lock(const char *dir);
int bdb_registry_signal(int fd, int sig);
int bdb_registry_in_use(int fd);
void bdb_remove_regions(const char *dir);
int bdb_numbered(const char *name, const char *prefix);

/*
 * store_watchdog.c (see store_watchdog): bound what runs until watchdog_disarm to factor times
 * the configured seconds; nested arming counts once, from the outermost.
 */
void watchdog_arm(unsigned factor);
void watchdog_disarm(void);
/* Remember which environment this process has mapped: for store_commit and the watchdog. */
void watchdog_note_region(struct store *s);
/* While this process opens the environment anew: no region to compare until the next note. */
void watchdog_forget_region(void);
/* 1 when the file at path is no longer the one then (a recovery replaced it), else 0. */
int region_id_differs(const char *path, const struct region_id *then);

/*
 * store_rep.c (see store_replication). The extra open flags (none without replication), the
 * event handler on a new handle, DB_CONFIG written before an open (removed when replication is
 * off), repmgr_start after one (0, or -1 logged), and forgetting it when the handle is dropped.
 */
u_int32_t rep_open_flags(void);
int rep_env_config(DB_ENV *env);
int rep_write_config(const char *dir);
int rep_start(struct store *s);
void rep_forget_start(void);
/* Each of Berkeley DB's error messages, for what store_rep_apply_failure tells. */
void rep_note_error(const char *msg);
/* STORE_UNAVAILABLE when this process must not begin a transaction now, else 0. */
int rep_gate(struct store *s);
/*
 * Which replication state table handles opened now belong to: this site's election generation,
 * and whether it is the master or a client that caught up with one (odd: the master). 0 while
 * it is neither (a client still syncing) and without replication.
 */
uint32_t rep_tables_epoch(struct store *s);
/*
 * 1 when this process may write log records of its own (failchk's aborts): a replicated
 * subordinate only once it joined the group, since a log record written on a master's
 * environment by a process that has not makes Berkeley DB start replication in it by itself.
 */
int rep_log_ok(void);
/* store_rep.c: the replication part of store_stats (nothing when not replicated). 0 or -1. */
struct metrics_bdb;
int rep_stats(struct store *s, struct metrics_bdb *out);
/* 1 when this process checkpoints and purges (one per site when replicated), else 0. */
int rep_maintains(void);
/* Around a commit: whether its quorum acknowledgement failed. */
void rep_commit_begin(void);
int rep_commit_failed(void);

#endif
