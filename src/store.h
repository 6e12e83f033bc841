/*
 * store: the transactional record store shared by every worker process. Records are JSON
 * objects under byte-string keys in a fixed set of tables. One implementation, store_bdb.c
 * (Berkeley DB 5.3 transactional data store) with store_recover.c, store_discard.c,
 * store_rep.c and store_watchdog.c.
 *
 * Lookups return STORE_FOUND (1), STORE_NOTFOUND (0) or a negative error, and set their
 * out-pointer only when found. STORE_RETRY means the transaction lost a deadlock or timed
 * out on a lock and must be aborted and run again (store_run does that); STORE_FATAL means the
 * environment needs recovery: the handles are dead until store_reopen (store_run reopens and
 * runs the transaction again by itself when the failure came before the commit).
 *
 * Crash safety: a process killed at any point leaves no half-done transaction. When it died
 * outside Berkeley DB, failchk releases its locks and aborts its transaction and the other
 * processes go on; when it died inside (holding a latch), the environment is recovered and
 * every process reopens it (see store_recover.c).
 */
#ifndef OTLOGIN_STORE_H
#define OTLOGIN_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

enum store_table {
	TBL_CLIENTS,  /* client_id -> client record */
	TBL_USERS,    /* user_id -> user record */
	TBL_USER_IDX, /* "email:<addr>" / "phone:<e164>" / "username:<name>" -> {"user_id"} */
	TBL_CODES,    /* hex HMAC of (client, identifier) -> pending passcode */
	TBL_COUNTERS, /* failure counters, lockouts and rate-limit windows (see store_purge) */
	TBL_SESSIONS, /* hex HMAC of session id -> session */
	TBL_REFRESH,  /* hex HMAC of refresh token -> refresh token record */
	TBL_KEYS,     /* kid -> signing key (private, 0600 files only) */
	TBL_COUNT
};

enum store_rc {
	STORE_FOUND = 1,
	STORE_NOTFOUND = 0,
	STORE_ERR = -1,
	STORE_RETRY = -2,
	STORE_FATAL = -3,
	STORE_UNAVAILABLE = -4 /* replication: not a master with a quorum, or the outcome of a
				  commit is unknown (its acknowledgement failed): answer 503 */
};

struct store;
struct store_txn;

/*
 * Open (with create != 0: create, mode 0700 directory / 0600 files) the environment in dir,
 * with recovery when a previous process died. Returns a new handle or NULL (logged).
 */
struct store *store_open(const char *dir, unsigned cache_mb, int create);
/* Close the handles (after STORE_FATAL: only what a panicked environment allows). */
void store_close(struct store *s);

/*
 * After STORE_FATAL: drop the dead handles and open the environment again in this process
 * (the first process to do so after a crash runs the recovery). The store pointer stays the
 * same. Returns 0 (also when there was nothing to do) or STORE_FATAL; after a failure, calls
 * within the next second fail at once.
 */
int store_reopen(struct store *s);

/*
 * A watchdog for worker processes, on SIGALRM (the process must not use SIGALRM or alarm()
 * otherwise): call it before store_open. A process can wait for good on a latch that a killed
 * process held (Debian's Berkeley DB uses plain process-shared pthread mutexes, which do not
 * notice an owner's death). So each transaction, failchk or purge step gets `seconds`, and
 * opening (which may run a recovery) or a checkpoint twice that; past it, or 2 s into it when a
 * recovery has replaced the environment under the process, it exits (status 75) for the web
 * server to start a fresh one. 0 turns it off.
 */
void store_watchdog(unsigned seconds);

/*
 * Release what dead processes hold (failchk: their locks, their transactions) and expire
 * lock waits past their timeout. Returns 0, or STORE_FATAL when a process died inside Berkeley
 * DB and the environment must be recovered (store_reopen does it).
 */
int store_failchk(struct store *s);

/*
 * Replication (store_rep.c). A site of a replication group opens the environment with
 * Berkeley DB's Replication Manager: the settings below go into the environment's DB_CONFIG,
 * where every process (and db5.3_stat) reads the same. One process per site, the replication
 * process (STORE_REP_PROCESS: otloginctl replicate), listens, holds elections, checkpoints
 * and purges, and publishes the site's state; every other process (STORE_REP_SUBORDINATE:
 * workers, otloginctl) joins it and begins a transaction only while the site is a master with
 * a quorum of connected peers, else STORE_UNAVAILABLE. A commit whose quorum acknowledgement
 * failed returns STORE_UNAVAILABLE too: a failover may undo it, so it must not be answered as
 * done.
 */
struct store_rep_conf {
	const char *local; /* this site's host:port */
	const char *peers; /* the other sites' host:port, comma- or space-separated */
	int creator;	   /* this site creates the group (its first start) */
	unsigned priority, ack_timeout_ms, heartbeat_send_ms, heartbeat_monitor_ms, retry_ms;
};

enum store_rep_role { STORE_REP_SUBORDINATE, STORE_REP_PROCESS };

/*
 * Call before store_open: this process opens the environment as a site of a group (rc is
 * copied). Returns 0, or -1 (logged) for an address that is not host:port.
 */
int store_replication(const struct store_rep_conf *rc, enum store_rep_role role);

/* 1 when this process opens the environment replicated (store_replication was called). */
int store_replicated(void);

/*
 * 1 when the replication process's last store_open failed for a reason that another try in
 * this process cannot mend (another process is the site's replication process, or its address
 * cannot be listened on); 0 when it may (a site that joins while another one does waits).
 */
int store_rep_refused(void);

/*
 * Why a replicated site cannot serve now, as one word, or NULL when it can (a master with a
 * live replication process and a quorum): "starting", "no-repd", "client", "no-quorum",
 * "failed". NULL too when replication is off.
 */
const char *store_rep_unavailable(struct store *s);

/* What otloginctl replication status shows (store_rep_status). */
#define STORE_REP_MAX_PEERS 16
struct store_rep_status {
	char role[8];	  /* "master", "client" or "none" */
	char master[96];  /* the master's host:port, "" when none is known */
	int repd_running; /* the replication process publishes its state */
	unsigned nsites;  /* sites in the group, this one included */
	/*
	 * How old the newest master write this site holds is, in ms: the master writes a probe
	 * every second, so a client that keeps up stays under about 1000 (clocks synchronised).
	 * 0 on the master, -1 when not known (no probe copied yet).
	 */
	long long lag_ms;
	unsigned log_file; /* this site's log end (the next record's position) */
	unsigned log_offset;
	unsigned npeers;
	struct {
		char address[96];
		int connected;
	} peers[STORE_REP_MAX_PEERS];
};

/*
 * Fill st with what the replication process of the environment in dir published last (role
 * "none" and repd_running 0 when it does not run): nothing is opened, so that looking writes
 * nothing to the log. Returns 0.
 */
int store_rep_status(const char *dir, struct store_rep_status *st);

/*
 * Remove the site at address ("host:port") from the group, so that it no longer counts
 * towards the group's size, its quorum and its elections. Only on the master (see
 * store_rep_unavailable), for a member that is not this site and is not connected (stopped).
 * 0, or -1 with why in err.
 */
int store_rep_remove(struct store *s, const char *address, char *err, size_t errlen);

/*
 * For a long-lived subordinate (a FastCGI worker), after store_open: a thread that calls
 * orphaned(), once, when the site's replication process stops publishing after it published
 * while this process was in the environment. The process must then leave (end, and be
 * started again): on a master its own connections would go on sending heartbeats, and the
 * other sites would never elect another master while this one's replication process hangs;
 * on a client, a replication process that restarts to discard the site's copy of the
 * database waits for every process to leave. Returns 0 (also when not replicated) or -1.
 */
int store_rep_watch(struct store *s, void (*orphaned)(void));

/*
 * 1 when this process failed to apply a transaction of the master's log because a page of the
 * site's copy of the database did not match the log (Berkeley DB's "Log sequence error"):
 * its Replication Manager, applying it, or a recovery, replaying it from the site's own log.
 * The log position where it failed goes in buf ("FILE/OFFSET"). Each failure is told once;
 * else 0.
 */
int store_rep_apply_failure(char *buf, size_t size);

/*
 * Move Berkeley DB's files out of the environment's directory dir (the tables, the log,
 * replication's files) into a new directory dir/discarded-TIME-XXXXXX (its path in kept),
 * delete the regions, and keep otlogin's files (server.key ...): a site started on dir then
 * copies the group's database from the master, as a new site does, and the copy it had is
 * still there to look at (with the one before it, if any; older ones are removed). Only once
 * no process is in the environment: waits up to wait_s seconds for those in it to leave (a
 * site's workers leave once its replication process stops publishing; those still there
 * after a few seconds are sent SIGTERM) and keeps new ones out meanwhile. 0, or -1 (logged):
 * a discard that did not finish leaves a marker, and store_discard_pending says so.
 */
int store_discard_copy(const char *dir, unsigned wait_s, char *kept, size_t size);

/* 1 when a store_discard_copy of dir began and did not finish: it must be done again. */
int store_discard_pending(const char *dir);

/* 1 when Berkeley DB says this site is the master now, else 0. */
int store_rep_master(struct store *s);

/*
 * For the replication process (repd.h), about every 50 ms: publish the site's state for the
 * other processes; ready: the server key was checked against the group's (until then the
 * workers answer "starting"); acked: a quorum acknowledged a commit of this master lately
 * (a master cut off from its peers still sees them connected until TCP gives up; until then
 * the workers answer "no-quorum"); probe_at_ms: the wall-clock time the newest master probe
 * this site holds was written (0: none; see lag_ms). Returns 0 or a negative store_rc.
 * store_rep_unpublish, when it stops, makes the state stale at once.
 */
int store_rep_publish(struct store *s, int ready, int acked, long long probe_at_ms);
void store_rep_unpublish(struct store *s);

/* Begin a transaction. Returns 0 or a negative store_rc. */
int store_begin(struct store *s, struct store_txn **t);
/* Commit durably (synchronous log flush). Returns 0 or a negative store_rc. The txn is gone. */
int store_commit(struct store_txn *t);
/* Abort; the txn is gone. NULL is fine. */
void store_abort(struct store_txn *t);

/*
 * Get the record under key. for_update != 0 takes a write lock at once (DB_RMW) so that a
 * read-modify-write cannot deadlock on lock upgrade. On STORE_FOUND *out is a new reference.
 */
int store_get(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t **out,
	      int for_update);
/* Insert or replace. Returns 0 or a negative store_rc. */
int store_put(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t *val);
/* Delete. Returns STORE_FOUND, STORE_NOTFOUND or a negative store_rc. */
int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen);

/*
 * Call fn(key, klen, val (borrowed), arg) for each record of tbl in key order, starting at
 * the first key >= start (NULL: from the beginning). fn returns 0 to go on, 1 to stop, or a
 * negative store_rc to fail. Returns 0 or the negative store_rc.
 */
int store_each(struct store_txn *t, enum store_table tbl, const void *start, size_t startlen,
	       int (*fn)(const void *key, size_t klen, json_t *val, void *arg), void *arg);

/*
 * Count the records of tbl into *n, reading each page at read-committed isolation (its
 * locks are let go as the count moves on, so a big table does not fill the lock table; the
 * count may include or miss records that change meanwhile). Returns 0 or a negative store_rc.
 */
int store_count(struct store_txn *t, enum store_table tbl, size_t *n);

/*
 * Run fn(txn, arg) in a transaction: commit when it returns >= 0, abort otherwise, and run it
 * again (a bounded number of times) when it or the commit returned STORE_RETRY. fn must
 * not have side effects outside the store, since it may run more than once.
 * Returns fn's result after a successful commit, or a negative store_rc.
 */
int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg);

/*
 * A transaction function that refuses (an outcome the caller reports, not a store error) but
 * must not commit what it wrote returns STORE_REFUSE(outcome); store_run aborts and returns it
 * unchanged, and store_refused() recovers the outcome (or -1 when rc is not a refusal).
 */
#define STORE_REFUSE(outcome) (-1000 - (outcome))
static inline int store_refused(int rc)
{
	return rc <= -1000 ? -(rc + 1000) : -1;
}

/*
 * The outcome of a store_run whose function returns outcomes (>= 0) or refusals: the
 * refusal's outcome, `failed` (the caller's "try again") when the store failed, else rc.
 */
static inline int store_outcome(int rc, int failed)
{
	if (store_refused(rc) >= 0)
		return store_refused(rc);
	return rc < 0 ? failed : rc;
}

/*
 * Maintenance is split in two so that the slow part stays out of the request path. Every
 * worker, between requests, runs store_maintain_worker: cheap. One process per environment,
 * the maintenance owner (the holder of store_maintainer_lock: the maintainer process that a
 * worker starts), calls store_maintain_owner about once a second: failchk, checkpoints (a
 * checkpoint writes the cache's dirty pages: tens of milliseconds under load) and the purge.
 * On a replicated site the replication process does that part (rep_maintains), and its
 * workers call store_maintain as before.
 */

/*
 * Between requests, in every worker: reopen a failed environment, run failchk when a lock
 * wait timed out. Returns 1 at most once a second (the time to see whether an owner is
 * there: store_maintainer_lock), else 0.
 */
int store_maintain_worker(struct store *s);

/*
 * The owner's step (cheap when nothing is due, at most one a second): reopen a failed
 * environment, run failchk every few seconds, checkpoint once 1 MiB of log was written or a
 * minute passed (log files a checkpoint made unneeded are removed at the next file switch),
 * and run a bounded part of the purge pass that one process claims every ten minutes.
 */
void store_maintain_owner(struct store *s);

/*
 * Both of the above in the calling process: for a process that is its own owner (plain CGI,
 * otloginctl, the tests).
 */
void store_maintain(struct store *s);

/*
 * Become the environment's maintenance owner: an exclusive flock on the environment directory
 * itself, held as long as the returned descriptor (close-on-exec) stays open in some process
 * (it may be handed down across fork and exec). Returns it, or -1 when another process holds
 * it (or the directory cannot be opened).
 */
int store_maintainer_lock(struct store *s);

/* Records are purged this long after they expired: an expired code still says so for a day. */
#define STORE_PURGE_GRACE_S (24 * 60 * 60)

/*
 * Delete, in batches of short transactions, the records of TBL_CODES, TBL_REFRESH, TBL_SESSIONS
 * and TBL_COUNTERS that are dead at `now` (seconds): a record with an integer "exp" older than
 * now - STORE_PURGE_GRACE_S (rate-limit windows should carry an "exp" at their end for this);
 * one without "exp" when a rule registered for its table (store_purge_rule) says so.
 * Returns the number of records deleted or a negative store_rc.
 */
int store_purge(struct store *s, time_t now);

/*
 * A purge rule: whether a record of its table that carries no integer "exp" (key, val
 * borrowed) is dead at cutoff (now - STORE_PURGE_GRACE_S). It runs inside the purge's
 * transaction t, may read (store_get, store_dead) but not write, and is asked again, with the
 * record read for update, before the record is deleted. Returns 1 (dead), 0 (keep it) or a
 * negative store_rc.
 */
typedef int (*store_purge_fn)(struct store_txn *t, const void *key, size_t klen, json_t *val,
			      time_t cutoff);

/*
 * Add fn to the rules of tbl (one of the tables store_purge names; a record is dead when any
 * rule says so). The store knows no record shapes: a module that writes records without "exp"
 * registers the rule that ends them, in every process that purges (store_maintain,
 * store_purge), or they stay for good. Returns 0, or -1 for another table or when tbl has
 * STORE_PURGE_RULES rules already.
 */
#define STORE_PURGE_RULES 4
int store_purge_rule(struct store *s, enum store_table tbl, store_purge_fn fn);

/*
 * For rules whose records live as long as another one: inside t, 1 when the record under key
 * is gone or its "exp" is older than cutoff (this purge deletes it too), else 0; or a negative
 * store_rc.
 */
int store_dead(struct store_txn *t, enum store_table tbl, const void *key, size_t klen,
	       time_t cutoff);

/* The file name of tbl's database in the environment directory, or NULL for no table. */
const char *store_table_file(enum store_table tbl);

/* 1 when the environment answers a read, else 0 (for /health). */
int store_ping(struct store *s);

/*
 * 1 when the environment needs recovery under this process's Replication Manager threads:
 * they cannot be stopped in place (closing a panicked handle leaves them running), so
 * store_reopen refuses, and the process must end (or exec itself) to join the group again.
 */
int store_must_restart(const struct store *s);

/* 1 after a STORE_FATAL until a store_reopen succeeded. */
int store_failed(const struct store *s);

/* How often this handle was reopened after a recovery. */
unsigned store_reopens(const struct store *s);

struct metrics_bdb;
/*
 * Berkeley DB's statistics (commits, aborts, lock conflicts, cache, log, checkpoint) into out
 * (metrics.h), with out->valid set. Returns 0, or -1 (out->valid 0) when the environment is
 * not usable.
 */
int store_stats(struct store *s, struct metrics_bdb *out);

#endif
