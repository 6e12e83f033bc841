/*
 * store_bdb: the store on a Berkeley DB 5.3 transactional environment shared by all worker
 * processes.
 *
 * Crash safety. Every process opens the environment with DB_REGISTER | DB_FAILCHK |
 * DB_RECOVER and tracks its thread of control (set_thread_count, set_thread_id, set_isalive).
 * When an opening process finds that another one died with the environment open (its
 * DB_REGISTER slot is no longer locked), Berkeley DB runs failchk first: if the dead process
 * was outside the library, its transactions are aborted and its locks released, and nobody
 * else notices. Only when it died inside the library (holding a latch, mid-write) does the
 * environment panic and get recovered; every other process then sees DB_RUNRECOVERY, drops
 * its handles and opens the environment again in-process (store_reopen), so that a worker keeps
 * its FastCGI socket and the requests queued on it.
 *
 * Transactions never wait for locks (DB_TXN_NOWAIT): a conflict is retried here, and after
 * repeated conflicts (and every few seconds) live processes run failchk too, so a dead
 * worker's locks do not wait for the web server to start its replacement. A process that died
 * holding a latch can leave others blocked on it for good (Debian's build uses plain
 * process-shared pthread mutexes, which do not notice an owner's death): the optional watchdog
 * (store_watchdog) ends such a process, and the environment is recovered around it.
 */
#include "store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "log.h"

/* Lock waits and transactions stay well below a request's budget. */
#define LOCK_TIMEOUT_US (2 * 1000 * 1000)
#define TXN_TIMEOUT_US (5 * 1000 * 1000)
/*
 * How long a recovery lets live processes notice the panic (at their next Berkeley DB call)
 * before it starts: one that writes a log record after recovery began corrupts the log
 * ("Recovery function ... failed on forward pass"). 100 ms was too short on a loaded machine.
 */
#define REG_TIMEOUT_US (1000 * 1000)
/*
 * Transactions never wait for a lock (DB_TXN_NOWAIT): a conflict is retried here, with a
 * growing pause, for at most RUN_BUDGET_MS. Waiting inside Berkeley DB is what a killed process
 * must not be doing: failchk then destroys the condition variable it waited on, which glibc
 * (>= 2.25) blocks on for good; and a lone waiter on a dead process's lock is never woken.
 */
#define RUN_BUDGET_MS 8000
#define RUN_MAX_PAUSE_US 20000
/* After this many conflicts in a row, and every RUN_FAILCHK_EVERY after, run failchk. */
#define RUN_FAILCHK_AFTER 8
#define RUN_FAILCHK_EVERY 32
/* A transaction interrupted by a recovery is run again on the reopened environment. */
#define REOPEN_ATTEMPTS 3
/* Thread-of-control slots: the workers, otloginctl runs, and dead ones until reclaimed. */
#define THREAD_COUNT 200
/* A checkpoint once this much log was written, or this many minutes passed. */
#define CHECKPOINT_KB 1024
#define CHECKPOINT_MIN 1
/*
 * Log files of 4 MiB (Berkeley DB's default is 10): files are removed whole, so smaller ones
 * keep the directory closer to what recovery needs (the log since the last checkpoint).
 */
#define LOG_FILE_BYTES (4u * 1024 * 1024)
#define FAILCHK_EVERY_S 5
/* Purge: one pass over the tables every PURGE_EVERY_S (one worker does it), in batches. */
#define PURGE_EVERY_S 600
#define PURGE_CHECK_S 60
#define PURGE_BATCH 200
#define PURGE_BATCHES_PER_CALL 5
#define PURGE_KEY "store:purge"
/* After a failed reopen, requests answer 503 at once until this pause is over. */
#define REOPEN_PAUSE_S 1
/* The watchdog's deadline for opening (which may wait for or run a recovery) and checkpoints. */
#define WD_SLOW_FACTOR 2
/* A slot of DB_REGISTER's registry file, __db.register: a pid in 24 columns and a newline. */
#define REG_SLOT_LEN 25
#define OPEN_FLAGS (DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL)

static const char *const table_files[TBL_COUNT] = {
    [TBL_CLIENTS] = "clients.db", [TBL_USERS] = "users.db",	  [TBL_USER_IDX] = "user_idx.db",
    [TBL_CODES] = "codes.db",	  [TBL_COUNTERS] = "counters.db", [TBL_SESSIONS] = "sessions.db",
    [TBL_REFRESH] = "refresh.db", [TBL_KEYS] = "keys.db",
};

/* The tables whose records expire, in the order a purge pass visits them. */
static const enum store_table purge_tables[] = {TBL_CODES, TBL_REFRESH, TBL_SESSIONS, TBL_COUNTERS};
#define PURGE_TABLES (int)(sizeof(purge_tables) / sizeof(purge_tables[0]))

/*
 * Which file a region file is: a recovery deletes and recreates them, and ext4 may give the new
 * file the old inode number at once, so its birth time counts too.
 */
struct region_id {
	dev_t dev;
	ino_t ino; /* 0: unknown */
	long long btime_s, btime_ns;
};

/* Async-signal-safe: the watchdog's handler calls it. Returns 0, or -1 when path is gone. */
static int region_id_of(const char *path, struct region_id *id)
{
	struct statx sx;

	if (statx(AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &sx) != 0)
		return -1;
	id->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	id->ino = sx.stx_ino;
	id->btime_s = (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_sec : 0;
	id->btime_ns = (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_nsec : 0;
	return 0;
}

static int region_id_differs(const char *path, const struct region_id *then)
{
	struct region_id now;

	if (then->ino == 0)
		return 0;
	return region_id_of(path, &now) != 0 || now.ino != then->ino || now.dev != then->dev ||
	       now.btime_s != then->btime_s || now.btime_ns != then->btime_ns;
}

struct store {
	DB_ENV *env; /* NULL after a reopen failed */
	DB *db[TBL_COUNT];
	char *dir;
	char *realdir; /* absolute: how the region files show in /proc/self/maps */
	unsigned cache_mb;
	int failed;	   /* DB_RUNRECOVERY seen: the handles are dead until store_reopen */
	int lock_timedout; /* a lock wait timed out: run failchk soon */
	unsigned reopens;
	time_t next_reopen, last_maintain, last_failchk, next_purge_check;
	/* Where the running purge pass is: index into purge_tables (-1: none) and last key. */
	char *region; /* the first region file, and its identity at open */
	struct region_id region_id;
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

static void wd_note_region(struct store *s);
static void watchdog_arm(unsigned factor);
static void watchdog_disarm(void);

/* Set when an open failed because the environment has no thread table (an older otlogin). */
static int no_thread_table;

static void bdb_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	if (strncmp(msg, "BDB1505 ", 8) == 0)
		no_thread_table = 1;
	log_err("berkeley db: %s", msg);
}

/* Closing a panicked handle lists every file it still had open: known, and not news. */
static void bdb_quiet(const DB_ENV *env, const char *prefix, const char *msg)
{
}

/* Informational messages (failchk's "Aborting txn ..."): debug level. */
static void bdb_msgcall(const DB_ENV *env, const char *msg)
{
	log_debug("berkeley db: %s", msg);
}

/*
 * The state and start time (clock ticks after boot) of a process from /proc. Returns 0, or -1
 * when the process does not exist (or /proc cannot tell).
 */
static int proc_stat(pid_t pid, char *state, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) S ppid ...": the name may hold spaces, so count from the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return -1;
	*state = p[2];
	for (int i = 0; i < 20 && p != NULL; i++) /* to the space before field 22 */
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu", start) != 1)
		return -1;
	return 0;
}

static pid_t self_pid;
static unsigned long long self_start;

/*
 * Berkeley DB names a thread of control by (pid, tid). No threads here, so the tid slot
 * carries the process start time instead: with it, is_alive tells a dead worker from a new
 * process that was given the same pid (pids wrap at 32768 by default), which would otherwise
 * keep the dead one's locks and transactions alive for good.
 */
static void bdb_thread_id(DB_ENV *env, pid_t *pid, db_threadid_t *tid)
{
	pid_t me = getpid();
	char state;

	if (me != self_pid) {
		self_pid = me;
		if (proc_stat(me, &state, &self_start) < 0)
			self_start = 0;
	}
	if (pid != NULL)
		*pid = me;
	if (tid != NULL)
		*tid = (db_threadid_t)self_start;
}

static int bdb_is_alive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	unsigned long long start;
	char state;

	if (kill(pid, 0) < 0 && errno != EPERM)
		return 0;
	if (proc_stat(pid, &state, &start) < 0)
		return 1; /* no /proc: kill() is all there is */
	/* A zombie holds nothing; a different start time is a different process. */
	if (state == 'Z' || state == 'X')
		return 0;
	return tid == 0 || (db_threadid_t)start == tid;
}

/* Map a Berkeley DB return code to a store_rc, remembering a fatal one. */
static int map_rc(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case 0:
		return 0;
	case DB_NOTFOUND:
		return STORE_NOTFOUND;
	case DB_LOCK_NOTGRANTED:
		/* A timeout of an operation that waited (not a transaction's: they do not). */
		s->lock_timedout = 1;
		return STORE_RETRY;
	case DB_LOCK_DEADLOCK:
		/* With DB_TXN_NOWAIT: the lock is taken (by a live or a dead process). */
		return STORE_RETRY;
	case DB_RUNRECOVERY:
		if (!s->failed)
			log_err("%s: %s: the environment needs recovery", what, db_strerror(rc));
		s->failed = 1;
		return STORE_FATAL;
	default:
		log_err("%s: %s", what, db_strerror(rc));
		return STORE_ERR;
	}
}

/* A configured, unopened environment handle, or NULL (logged). */
static DB_ENV *new_env(const struct store *s)
{
	DB_ENV *env;
	int rc;

	if ((rc = db_env_create(&env, 0)) != 0) {
		log_err("db_env_create: %s", db_strerror(rc));
		return NULL;
	}
	env->set_errcall(env, bdb_errcall);
	env->set_msgcall(env, bdb_msgcall);
	/*
	 * DB_REGION_INIT writes the region files out when they are created, so that a full disk
	 * shows as an error at open instead of SIGBUS when a page of the mapping is first used.
	 */
	if ((rc = env->set_cachesize(env, 0, s->cache_mb * 1024u * 1024u, 1)) != 0 ||
	    (rc = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0 ||
	    (rc = env->set_timeout(env, LOCK_TIMEOUT_US, DB_SET_LOCK_TIMEOUT)) != 0 ||
	    (rc = env->set_timeout(env, TXN_TIMEOUT_US, DB_SET_TXN_TIMEOUT)) != 0 ||
	    (rc = env->set_timeout(env, REG_TIMEOUT_US, DB_SET_REG_TIMEOUT)) != 0 ||
	    (rc = env->set_lk_max_locks(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_objects(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_lockers(env, 5000)) != 0 ||
	    (rc = env->set_lg_max(env, LOG_FILE_BYTES)) != 0 ||
	    (rc = env->set_thread_count(env, THREAD_COUNT)) != 0 ||
	    (rc = env->set_thread_id(env, bdb_thread_id)) != 0 ||
	    (rc = env->set_isalive(env, bdb_is_alive)) != 0 ||
	    (rc = env->set_flags(env, DB_REGION_INIT, 1)) != 0 ||
	    (rc = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0) {
		log_err("configuring the environment: %s", db_strerror(rc));
		env->close(env, 0);
		return NULL;
	}
	return env;
}

/* Why an environment needs a recovery that DB_REGISTER does not run (force_recovery). */
enum stuck {
	NOT_STUCK,
	STUCK_PANICKED,	  /* panicked, and no dead process registered (all saw it and left) */
	STUCK_NO_THREADS, /* created without a thread table (by an older otlogin) */
	STUCK_HALF_MADE,  /* region files half made: their creator was killed making them */
	STUCK_OPEN_DIED,  /* a process died opening it: the region files may be half made */
};

static const char *const stuck_why[] = {
    [NOT_STUCK] = "not stuck",
    [STUCK_PANICKED] = "panicked, and no dead process registered",
    [STUCK_NO_THREADS] = "no thread table",
    [STUCK_HALF_MADE] = "region files half made by a process that died",
    [STUCK_OPEN_DIED] = "a process died opening it",
};

/*
 * What an open's failure says. A region file whose creator died before it was initialised
 * makes every later join fail with EINVAL ("mmap: Invalid argument") or EAGAIN ("unable to
 * join the environment") and, its creator not being registered any more, DB_REGISTER never
 * recovers it.
 */
static enum stuck stuck_by(int rc)
{
	if (rc == DB_RUNRECOVERY)
		return STUCK_PANICKED;
	if (rc == EINVAL && no_thread_table)
		return STUCK_NO_THREADS;
	if (rc == EINVAL || rc == EAGAIN)
		return STUCK_HALF_MADE;
	return NOT_STUCK;
}

/*
 * Whether a live process holds a slot of the registry: DB_REGISTER locks a byte per slot for
 * as long as the process has the environment open. Slots marked empty count too: a recovery
 * marks every slot empty, also those of processes that are still in the old environment and
 * have not noticed its panic yet.
 */
static int registry_in_use(int fd)
{
	char slot[REG_SLOT_LEN];

	for (off_t pos = 0; pread(fd, slot, REG_SLOT_LEN, pos) == REG_SLOT_LEN;
	     pos += REG_SLOT_LEN) {
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = pos, .l_len = 1};
		if (fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type != F_UNLCK)
			return 1;
	}
	return 0;
}

/* Delete the region files (__db.001 ...): what a recovery builds anew, not the data or log. */
static void remove_regions(const struct store *s)
{
	DIR *d = opendir(s->dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (strncmp(e->d_name, "__db.", 5) != 0 ||
		    strspn(e->d_name + 5, "0123456789") != strlen(e->d_name + 5) ||
		    e->d_name[5] == '\0')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
}

/*
 * DB_REGISTER's registry file, open and with its exclusive lock (byte 1), which a process
 * holds while it registers or recovers: a descriptor, or -1 (logged). Closing it releases the
 * lock, and any other lock this process holds on the file, so only a process without the
 * environment open may call this.
 */
static int registry_lock(const struct store *s)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/__db.register", s->dir) >= (int)sizeof(path))
		return -1;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		/* No directory: opening the environment says so, in the words of the caller. */
		if (errno != ENOENT)
			log_err("%s: %s", path, strerror(errno));
		return -1;
	}
	while (fcntl(fd, F_SETLKW, &fl) < 0)
		if (errno != EINTR) {
			log_err("locking %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	return fd;
}

/*
 * Recover the environment in the cases DB_REGISTER does not (enum stuck). It holds the
 * registry's exclusive lock, as DB_REGISTER's own recovery does, and first checks, by joining,
 * that the cause is still there: a recovery under processes that still use the environment
 * would let them write log records that the recovery does not see. Region files that may be
 * half made are deleted first, and only when no live process is registered; after an opener
 * died there is no joining to check (a region file cut short is SIGBUS), only that.
 * Returns 0 when the environment is usable again.
 */
static int force_recovery(struct store *s, enum stuck why)
{
	DB_ENV *env;
	int fd = registry_lock(s), rc = -1;

	if (fd < 0)
		return -1;
	if (why == STUCK_OPEN_DIED) {
		if (registry_in_use(fd)) {
			rc = -1; /* in use: DB_REGISTER recovers it if that open left a dead slot */
			goto out;
		}
	} else {
		no_thread_table = 0;
		if ((env = new_env(s)) == NULL) {
			rc = -1;
			goto out;
		}
		rc = env->open(env, s->dir, OPEN_FLAGS & ~DB_CREATE, 0600);
		env->close(env, 0);
		if (rc == 0)
			goto out;
		if (stuck_by(rc) != why || (why == STUCK_HALF_MADE && registry_in_use(fd))) {
			log_warn("not recovering %s: %s", s->dir, db_strerror(rc));
			rc = -1;
			goto out;
		}
	}
	if (why == STUCK_NO_THREADS && db_env_create(&env, 0) == 0) {
		/* Panic the old environment for the older processes still in it. */
		env->set_errcall(env, bdb_quiet);
		if (env->open(env, s->dir, OPEN_FLAGS & ~DB_CREATE, 0600) == 0)
			env->set_flags(env, DB_PANIC_ENVIRONMENT, 1);
		env->close(env, 0);
	}
	/* Give the processes still in it time to notice, as DB_REGISTER's recovery does. */
	if (why == STUCK_PANICKED || why == STUCK_NO_THREADS)
		usleep(REG_TIMEOUT_US);
	log_warn("running recovery on %s (%s)", s->dir, stuck_why[why]);
	if (why == STUCK_HALF_MADE || why == STUCK_OPEN_DIED)
		remove_regions(s);
	if ((env = new_env(s)) == NULL) {
		rc = -1;
		goto out;
	}
	rc = env->open(env, s->dir, OPEN_FLAGS | DB_RECOVER, 0600);
	if (rc != 0)
		log_err("recovering %s: %s", s->dir, db_strerror(rc));
	env->close(env, 0);
out:
	/* Also releases the lock; this process has no other descriptor of the file open. */
	close(fd);
	return rc == 0 ? 0 : -1;
}

/*
 * DB_REGISTER refuses a process whose pid is in the registry already ("one open DB_ENV handle
 * per environment", EINVAL), dead slot or not. Closing a panicked handle leaves this process's
 * slot filled in (Berkeley DB keeps the slot when a handle ends in failure), so a reopen in
 * place would be refused for as long as no recovery empties the registry. Before it opens, a
 * process that has no handle open empties the slots with its own pid, under the registry's
 * exclusive lock, as a registering process holds it.
 */
static void forget_own_slots(const struct store *s)
{
	static const char empty[REG_SLOT_LEN + 1] = "X                      0\n";
	char mine[REG_SLOT_LEN + 1], slot[REG_SLOT_LEN];
	int fd = registry_lock(s);

	if (fd < 0)
		return;
	snprintf(mine, sizeof(mine), "%24lu\n", (unsigned long)getpid());
	for (off_t pos = 0; pread(fd, slot, REG_SLOT_LEN, pos) == REG_SLOT_LEN; pos += REG_SLOT_LEN)
		if (memcmp(slot, mine, REG_SLOT_LEN) == 0) {
			log_debug("emptying this process's registry slot at %ld", (long)pos);
			if (pwrite(fd, empty, REG_SLOT_LEN, pos) != REG_SLOT_LEN)
				log_err("emptying a registry slot: %s", strerror(errno));
		}
	/* Also releases the lock; this process has no other descriptor of the file open. */
	close(fd);
}

/* Open the environment; opener_died: the previous opener died before it finished (open_all). */
static int open_env(struct store *s, int opener_died)
{
	u_int32_t flags = OPEN_FLAGS | DB_REGISTER | DB_RECOVER | DB_FAILCHK;
	DB_ENV *env = new_env(s);
	enum stuck why;
	int rc;

	if (env == NULL)
		return -1;
	/*
	 * With DB_FAILCHK, an opener that finds a dead process releases what it held instead of
	 * recovering the environment. But when the dead process held the environment region's
	 * latch, Berkeley DB 5.3.28 spins in that failchk for good; and an opener killed while it
	 * created the region files (in a recovery) leaves them half made, which no later join gets
	 * past. So after an opener died, the environment is recovered from scratch if nobody else
	 * is in it, and opened without DB_FAILCHK in any case, so that DB_REGISTER recovers it.
	 */
	if (opener_died) {
		log_warn("an earlier open did not finish: recovering the environment");
		flags &= ~(u_int32_t)DB_FAILCHK;
		force_recovery(s, STUCK_OPEN_DIED);
	}
	forget_own_slots(s);
	no_thread_table = 0;
	rc = env->open(env, s->dir, flags, 0600);
	if ((why = stuck_by(rc)) != NOT_STUCK) {
		env->close(env, 0);
		env = NULL;
		if (force_recovery(s, why) == 0 && (env = new_env(s)) != NULL)
			rc = env->open(env, s->dir, flags, 0600);
	}
	if (env == NULL)
		return -1;
	if (rc != 0) {
		log_err("opening the environment %s: %s", s->dir, db_strerror(rc));
		env->close(env, 0);
		return -1;
	}
	s->env = env;
	return 0;
}

static int open_tables(struct store *s, int create)
{
	for (int i = 0; i < TBL_COUNT; i++) {
		DB *db;
		int rc;

		if ((rc = db_create(&db, s->env, 0)) != 0) {
			log_err("db_create: %s", db_strerror(rc));
			return rc == DB_RUNRECOVERY ? map_rc(s, rc, "db_create") : -1;
		}
		s->db[i] = db;
		if ((rc = db->set_flags(db, DB_CHKSUM)) != 0 ||
		    (rc = db->open(db, NULL, table_files[i], NULL, DB_BTREE,
				   DB_AUTO_COMMIT | (create ? DB_CREATE : 0), 0600)) != 0) {
			log_err("opening %s: %s%s", table_files[i], db_strerror(rc),
				rc == ENOENT ? " (run otloginctl init)" : "");
			if (rc == DB_RUNRECOVERY)
				s->failed = 1;
			return -1;
		}
	}
	return 0;
}

/* One mapping of a region file in this process. */
struct region_map {
	unsigned long lo, hi;
	char path[PATH_MAX];
};

#define MAX_REGION_MAPS 16

/* This process's mappings of the environment's region files (from /proc/self/maps): how many. */
static int region_maps(const struct store *s, struct region_map m[MAX_REGION_MAPS])
{
	char line[PATH_MAX + 256], prefix[PATH_MAX + 16];
	size_t plen;
	int n = 0;
	FILE *f;

	if (s->realdir == NULL)
		return 0;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s/__db.", s->realdir);
	if ((f = fopen("/proc/self/maps", "re")) == NULL)
		return 0;
	while (n < MAX_REGION_MAPS && fgets(line, sizeof(line), f) != NULL) {
		const char *path = strchr(line, '/');
		if (path != NULL && strncmp(path, prefix, plen) == 0 &&
		    sscanf(line, "%lx-%lx", &m[n].lo, &m[n].hi) == 2) {
			snprintf(m[n].path, sizeof(m[n].path), "%.*s", (int)strcspn(path, "\n"),
				 path);
			n++;
		}
	}
	fclose(f);
	return n;
}

/*
 * Unmap what is left of a panicked environment's regions: DB_ENV->close on a panicked handle
 * releases the registry slot and the file descriptors but returns before it detaches the
 * regions, and after a recovery their files are deleted, so each reopen would otherwise keep
 * the cache's size of memory and disk mapped.
 */
static void unmap_regions(const struct store *s)
{
	struct region_map m[MAX_REGION_MAPS];
	int n = region_maps(s, m);

	for (int i = 0; i < n; i++)
		munmap((void *)m[i].lo, m[i].hi - m[i].lo);
}

/*
 * Berkeley DB grows a region, up to the size it maps, by writing the new last byte of its
 * file: the pages in between are holes, and on a full disk the first write to one is SIGBUS
 * (seen on tmpfs, in __env_alloc under __memp_fget). DB_REGION_INIT covers only the size a
 * region is created with. So the blocks of every region's whole mapping are reserved here,
 * without changing the file's size, and a full disk is an error at open instead. Blocks that
 * an earlier opener reserved cost nothing; file systems without fallocate stay as they are.
 */
static int reserve_regions(const struct store *s)
{
	struct region_map m[MAX_REGION_MAPS];
	int n = region_maps(s, m);

	for (int i = 0; i < n; i++) {
		int fd = open(m[i].path, O_RDWR | O_CLOEXEC), rc, err;

		if (fd < 0)
			continue;
		rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)(m[i].hi - m[i].lo));
		err = errno;
		close(fd);
		if (rc == 0 || err == EOPNOTSUPP)
			continue;
		log_err("reserving room for region %s to grow: %s", m[i].path, strerror(err));
		if (err == ENOSPC)
			return -1;
	}
	return 0;
}

/*
 * Open the environment and the tables, one process at a time: an flock on otlogin.lock in the
 * directory, which the kernel drops when its holder dies. Berkeley DB 5.3's deadlock detector,
 * which runs when lock requests block, crashed (SEGV writing past its own buffer, in
 * __lock_detect under __db_open) with eight processes opening the tables at once, and the
 * others then hung on the latch it died holding. Opens are rare and short; transactions never
 * block on locks (DB_TXN_NOWAIT), so opening is where requests blocked.
 *
 * The holder writes its pid into the file and empties it when done, so the next holder that
 * finds a pid there knows an opener died (killed, SIGBUS on a half-made region, or ended by
 * the watchdog) before it finished.
 */
static int open_all(struct store *s, int create)
{
	char path[PATH_MAX], pid[24];
	int fd = -1, died = 0, rc;

	if (snprintf(path, sizeof(path), "%s/otlogin.lock", s->dir) < (int)sizeof(path) &&
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
		while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
			;
		died = pread(fd, pid, 1, 0) == 1;
		snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
			log_warn("%s: %s", path, strerror(errno));
	}
	rc = open_env(s, died) < 0 || reserve_regions(s) < 0 || open_tables(s, create) < 0 ? -1 : 0;
	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0)
			log_warn("%s: %s", path, strerror(errno));
		close(fd);
	}
	return rc;
}

/* Close the handles; after DB_RUNRECOVERY only what a panicked environment allows. */
static void drop_handles(struct store *s)
{
	int panicked = s->failed;

	if (panicked && s->env != NULL) {
		s->env->set_errcall(s->env, bdb_quiet);
		/* Make sure the close below takes the panic path and touches no latch. */
		s->env->set_flags(s->env, DB_PANIC_ENVIRONMENT, 1);
	}
	for (int i = 0; i < TBL_COUNT; i++) {
		if (s->db[i] != NULL && !panicked)
			s->db[i]->close(s->db[i], 0);
		s->db[i] = NULL;
	}
	if (s->env != NULL)
		s->env->close(s->env, 0);
	s->env = NULL;
	if (panicked)
		unmap_regions(s);
}

static void free_store(struct store *s)
{
	free(s->region);
	free(s->dir);
	free(s->realdir);
	free(s->purge_key);
	free(s);
}

struct store *store_open(const char *dir, unsigned cache_mb, int create)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cache_mb = cache_mb;
	s->purge_table = -1;
	if (create) {
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			log_err("mkdir %s: %s", dir, strerror(errno));
			free(s);
			return NULL;
		}
		chmod(dir, 0700);
	}
	s->dir = strdup(dir);
	s->realdir = realpath(dir, NULL);
	watchdog_arm(WD_SLOW_FACTOR);
	if (s->dir == NULL || open_all(s, create) < 0) {
		watchdog_disarm();
		drop_handles(s);
		free_store(s);
		return NULL;
	}
	watchdog_disarm();
	s->last_maintain = s->last_failchk = time(NULL);
	wd_note_region(s);
	return s;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	drop_handles(s);
	free_store(s);
}

/*
 * The watchdog (see store_watchdog). Process-wide, as signal handlers are. The handler only
 * uses async-signal-safe calls.
 */
static struct {
	unsigned seconds;	       /* the deadline of a transaction (0: off) */
	unsigned limit_s;	       /* the deadline of what is running now */
	int depth;		       /* nested arming: only the outermost counts */
	char region[PATH_MAX];	       /* the environment's first region file... */
	struct region_id id;	       /* ...when this process opened it (ino 0 while opening) */
	volatile sig_atomic_t elapsed; /* seconds since the watchdog was armed */
} wd;

static void wd_die(const char *why)
{
	static const char head[] = "otlogin: error: ";
	static const char tail[] = ": this worker exits to be restarted\n";
	ssize_t n = write(STDERR_FILENO, head, sizeof(head) - 1);
	n = write(STDERR_FILENO, why, strlen(why));
	n = write(STDERR_FILENO, tail, sizeof(tail) - 1);
	(void)n;
	_exit(75);
}

static void wd_tick(int sig)
{
	int saved = errno;
	wd.elapsed++;
	/*
	 * A recovery replaced the environment while this process was still in the old one: it is
	 * waiting on a latch of a dead process, and nobody will ever release that.
	 */
	if (wd.elapsed >= 2 && region_id_differs(wd.region, &wd.id))
		wd_die("the database was recovered while this worker was blocked in it");
	if (wd.limit_s != 0 && (unsigned)wd.elapsed >= wd.limit_s)
		wd_die("a database operation is stuck");
	errno = saved;
}

void store_watchdog(unsigned seconds)
{
	/* SA_RESTART: the ticks must not fail Berkeley DB's waits for a registry lock (EINTR). */
	struct sigaction sa = {.sa_handler = wd_tick, .sa_flags = SA_RESTART};

	wd.seconds = seconds;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
}

/* Remember which environment this process has mapped: for store_commit and the watchdog. */
static void wd_note_region(struct store *s)
{
	wd.id.ino = s->region_id.ino = 0;
	if (s->region == NULL && asprintf(&s->region, "%s/__db.001", s->dir) < 0)
		s->region = NULL;
	if (s->region == NULL || region_id_of(s->region, &s->region_id) != 0)
		return;
	if (snprintf(wd.region, sizeof(wd.region), "%s", s->region) < (int)sizeof(wd.region))
		wd.id = s->region_id;
}

static void watchdog_arm(unsigned factor)
{
	struct itimerval it = {{1, 0}, {1, 0}};

	if (wd.seconds == 0 || wd.depth++ > 0)
		return;
	wd.elapsed = 0;
	wd.limit_s = wd.seconds * factor;
	setitimer(ITIMER_REAL, &it, NULL);
}

static void watchdog_disarm(void)
{
	struct itimerval it = {{0, 0}, {0, 0}};

	if (wd.seconds == 0 || --wd.depth > 0)
		return;
	setitimer(ITIMER_REAL, &it, NULL);
}

int store_reopen(struct store *s)
{
	time_t now = time(NULL);
	struct timespec t0;
	int rc;

	if (s->env != NULL && !s->failed)
		return 0;
	if (now < s->next_reopen)
		return STORE_FATAL;
	drop_handles(s);
	s->failed = 1;
	/* Opening may wait for (or run) a recovery: a longer leash than one transaction. */
	wd.id.ino = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	watchdog_arm(WD_SLOW_FACTOR);
	rc = open_all(s, 0);
	watchdog_disarm();
	wd_note_region(s);
	if (rc < 0) {
		drop_handles(s);
		s->failed = 1;
		s->next_reopen = now + REOPEN_PAUSE_S;
		log_err("the database environment could not be reopened; retrying in %d s",
			REOPEN_PAUSE_S);
		return STORE_FATAL;
	}
	s->failed = 0;
	s->lock_timedout = 0;
	s->reopens++;
	log_info("the database environment was reopened after a recovery in %ld ms (%u so far)",
		 ms_since(&t0), s->reopens);
	return 0;
}

int store_begin(struct store *s, struct store_txn **t)
{
	struct store_txn *txn;
	int rc;

	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return STORE_ERR;
	txn->s = s;
	rc = s->env->txn_begin(s->env, NULL, &txn->txn, DB_TXN_NOWAIT);
	if (rc != 0) {
		free(txn);
		return map_rc(s, rc, "txn_begin");
	}
	*t = txn;
	return 0;
}

/*
 * 1 when a recovery has begun replacing the environment this process has open: it removes the
 * region files before it reads the log.
 */
static int region_replaced(const struct store *s)
{
	return s->region != NULL && region_id_differs(s->region, &s->region_id);
}

/*
 * Whether the environment is panicked, that is, whether a recovery has begun: DB_REGISTER's
 * recovery panics it before it waits for live processes and reads the log. Any call that
 * enters the environment answers DB_RUNRECOVERY then; a locker id is about the cheapest.
 */
static int env_panicked(const struct store *s)
{
	u_int32_t id;
	int rc = s->env->lock_id(s->env, &id);

	if (rc == 0)
		s->env->lock_id_free(s->env, id);
	return rc == DB_RUNRECOVERY;
}

int store_commit(struct store_txn *t)
{
	/* Flags 0: a synchronous, durable commit (no no-sync flag anywhere in the environment). */
	int rc = t->txn->commit(t->txn, 0);
	struct store *s = t->s;

	free(t);
	/*
	 * Berkeley DB's DB_REGISTER window: a commit can be written after a recovery (started by
	 * another process) has read the log, and be lost. Such a commit returns after that
	 * recovery panicked the environment (and maybe removed its region files): its outcome is
	 * unknown, and the caller must not answer as if it were stored. A commit that returns
	 * before the panic was flushed before the recovery reads the log.
	 */
	if (rc == 0 && (region_replaced(s) || env_panicked(s))) {
		log_err("commit: the environment was recovered meanwhile; outcome unknown");
		s->failed = 1;
		return STORE_FATAL;
	}
	return map_rc(s, rc, "commit");
}

void store_abort(struct store_txn *t)
{
	if (t == NULL)
		return;
	t->txn->abort(t->txn);
	free(t);
}

static void set_key(DBT *k, const void *key, size_t klen)
{
	memset(k, 0, sizeof(*k));
	k->data = (void *)key;
	k->size = (u_int32_t)klen;
}

int store_get(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t **out,
	      int for_update)
{
	DBT k, d;
	json_t *val;
	int rc;

	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.flags = DB_DBT_MALLOC;
	rc = t->s->db[tbl]->get(t->s->db[tbl], t->txn, &k, &d, for_update ? DB_RMW : 0);
	if (rc != 0)
		return map_rc(t->s, rc, table_files[tbl]);
	val = json_loadb(d.data, d.size, 0, NULL);
	crypto_wipe(d.data, d.size);
	free(d.data);
	if (val == NULL) {
		log_err("%s: a record is not valid JSON", table_files[tbl]);
		return STORE_ERR;
	}
	*out = val;
	return STORE_FOUND;
}

int store_put(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t *val)
{
	DBT k, d;
	char *text = json_dumps(val, JSON_COMPACT);
	int rc;

	if (text == NULL)
		return STORE_ERR;
	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.data = text;
	d.size = (u_int32_t)strlen(text);
	rc = t->s->db[tbl]->put(t->s->db[tbl], t->txn, &k, &d, 0);
	crypto_free_str(text);
	return map_rc(t->s, rc, table_files[tbl]);
}

int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen)
{
	DBT k;
	int rc;

	set_key(&k, key, klen);
	rc = t->s->db[tbl]->del(t->s->db[tbl], t->txn, &k, 0);
	if (rc == 0)
		return STORE_FOUND;
	return map_rc(t->s, rc, table_files[tbl]);
}

int store_each(struct store_txn *t, enum store_table tbl, const void *start, size_t startlen,
	       int (*fn)(const void *key, size_t klen, json_t *val, void *arg), void *arg)
{
	DBC *cur;
	DBT k, d;
	int rc, out = 0;
	u_int32_t flag;

	rc = t->s->db[tbl]->cursor(t->s->db[tbl], t->txn, &cur, 0);
	if (rc != 0)
		return map_rc(t->s, rc, "cursor");
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	if (start != NULL) {
		set_key(&k, start, startlen);
		flag = DB_SET_RANGE;
	} else {
		flag = DB_FIRST;
	}
	while ((rc = cur->get(cur, &k, &d, flag)) == 0) {
		json_t *val = json_loadb(d.data, d.size, 0, NULL);
		flag = DB_NEXT;
		if (val == NULL) {
			log_err("%s: a record is not valid JSON", table_files[tbl]);
			out = STORE_ERR;
			break;
		}
		out = fn(k.data, k.size, val, arg);
		json_decref(val);
		if (out != 0)
			break;
	}
	if (rc != 0 && rc != DB_NOTFOUND)
		out = map_rc(t->s, rc, "cursor get");
	cur->close(cur);
	return out < 0 ? out : 0;
}

/*
 * A random pause before a retry, growing with the attempts, so that the losers of a conflict
 * do not collide again.
 */
static void backoff(int attempt)
{
	unsigned r, cap = 250u << (attempt < 7 ? attempt : 7), us;

	crypto_random(&r, sizeof(r));
	if (cap > RUN_MAX_PAUSE_US)
		cap = RUN_MAX_PAUSE_US;
	us = cap / 2 + r % (cap / 2 + 1);
	usleep(us);
}

/*
 * Release what dead processes hold (their locks, their open transactions). Cheap: it walks
 * the thread table and asks is_alive only about processes that are in it.
 */
static void run_failchk(struct store *s)
{
	int rc;

	s->lock_timedout = 0;
	s->last_failchk = time(NULL);
	if (s->failed || s->env == NULL)
		return;
	/* It spins while a live process holds a latch it needs: bounded like a transaction. */
	watchdog_arm(1);
	rc = s->env->failchk(s->env, 0);
	watchdog_disarm();
	if (rc != 0)
		map_rc(s, rc, "failchk");
}

int store_failchk(struct store *s)
{
	int rc;

	run_failchk(s);
	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	/* A lone waiter's lock timeout is only enforced when some process runs the detector. */
	rc = s->env->lock_detect(s->env, 0, DB_LOCK_EXPIRE, NULL);
	return rc == 0 ? 0 : map_rc(s, rc, "lock_detect");
}

int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg)
{
	struct timespec start;
	int reopens = 0, conflicts = 0;

	/*
	 * The budget is time since the start, not the pauses' sum: when every attempt is slow
	 * (a loaded machine, valgrind), losers that only counted their pauses retried for minutes
	 * and took the CPU from the transaction that held the lock.
	 */
	clock_gettime(CLOCK_MONOTONIC, &start);

	for (int attempt = 0;; attempt++) {
		struct store_txn *t;
		int rc, result = 0, committed = 0;

		watchdog_arm(1);
		rc = store_begin(s, &t);
		if (rc == 0) {
			result = fn(t, arg);
			if (result >= 0) {
				rc = store_commit(t);
				committed = 1;
			} else {
				store_abort(t);
				rc = result;
			}
		}
		watchdog_disarm();
		if (committed && rc == 0)
			return result;
		/*
		 * A recovery interrupted the transaction before its commit: it is as if it had
		 * aborted, so run it again on the reopened environment. A failed commit is not
		 * retried: whether it reached the log is unknown, and the caller answers 503.
		 */
		if (rc == STORE_FATAL && !committed && reopens++ < REOPEN_ATTEMPTS &&
		    store_reopen(s) == 0)
			continue;
		if (rc != STORE_RETRY)
			return rc;
		/* Held that long, a lock may belong to a killed process: release what they hold. */
		conflicts++;
		if (s->lock_timedout || conflicts == RUN_FAILCHK_AFTER ||
		    (conflicts > RUN_FAILCHK_AFTER && conflicts % RUN_FAILCHK_EVERY == 0))
			run_failchk(s);
		if (ms_since(&start) >= RUN_BUDGET_MS)
			break;
		backoff(attempt);
	}
	log_warn("a transaction lost every lock conflict for %d ms", RUN_BUDGET_MS);
	return STORE_RETRY;
}

/* ---- purge -------------------------------------------------------------------------------- */

int store_purge_rule(struct store *s, enum store_table tbl, store_purge_fn fn)
{
	for (int i = 0; i < PURGE_TABLES; i++) {
		if (purge_tables[i] != tbl)
			continue;
		for (int j = 0; j < STORE_PURGE_RULES; j++)
			if (s->purge_rules[tbl][j] == NULL) {
				s->purge_rules[tbl][j] = fn;
				return 0;
			}
	}
	return -1;
}

int store_dead(struct store_txn *t, enum store_table tbl, const void *key, size_t klen,
	       time_t cutoff)
{
	json_t *val, *exp;
	DBT k, d;
	int rc;

	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.flags = DB_DBT_MALLOC;
	rc = t->s->db[tbl]->get(t->s->db[tbl], t->txn, &k, &d, 0);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc != 0)
		return map_rc(t->s, rc, "purge");
	val = json_loadb(d.data, d.size, 0, NULL);
	free(d.data);
	exp = json_object_get(val, "exp");
	rc = json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)cutoff;
	json_decref(val);
	return rc;
}

/*
 * Whether a record is dead (see store_purge): by its "exp", else by the rules of its table.
 * 1 or 0, or a negative store_rc.
 */
static int purge_dead(struct store *s, DB_TXN *txn, enum store_table tbl, const void *key,
		      size_t klen, json_t *val, time_t cutoff)
{
	struct store_txn t = {s, txn};
	json_t *exp = json_object_get(val, "exp");
	int rc = 0;

	if (json_is_integer(exp))
		return json_integer_value(exp) <= (json_int_t)cutoff;
	for (int i = 0; i < STORE_PURGE_RULES && rc == 0 && s->purge_rules[tbl][i] != NULL; i++)
		rc = s->purge_rules[tbl][i](&t, key, klen, val, cutoff);
	return rc > 0 ? 1 : rc;
}

/* Remember key as the place where the running pass goes on. */
static int purge_save_pos(struct store *s, const void *key, size_t klen)
{
	char *copy = malloc(klen ? klen : 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, key, klen);
	free(s->purge_key);
	s->purge_key = copy;
	s->purge_klen = klen;
	return 0;
}

struct purge_victim {
	char *key;
	size_t klen;
};

/*
 * One transaction of the running pass: look at up to PURGE_BATCH records of the current table
 * after the saved position (a read-committed cursor, so that the scan holds no locks on what
 * it passed), then delete those found dead, each read again with a write lock and judged
 * again, since a worker may have replaced it meanwhile. Moves the position on. Returns the
 * number deleted or a negative store_rc.
 */
static int purge_batch(struct store *s, time_t cutoff)
{
	enum store_table tbl = purge_tables[s->purge_table];
	struct purge_victim victims[PURGE_BATCH];
	DB *db = s->db[tbl];
	DB_TXN *txn = NULL;
	DBC *cur = NULL;
	DBT k, d;
	int rc, nvictims = 0, seen = 0, deleted = 0, end = 0, dead = 0;
	u_int32_t flag = DB_FIRST;

	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	if ((rc = s->env->txn_begin(s->env, NULL, &txn, DB_TXN_NOWAIT)) != 0)
		goto out;
	if ((rc = db->cursor(db, txn, &cur, DB_READ_COMMITTED)) != 0)
		goto out;
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	if (s->purge_key != NULL) {
		set_key(&k, s->purge_key, s->purge_klen);
		flag = DB_SET_RANGE;
	}
	while (seen < PURGE_BATCH && (rc = cur->get(cur, &k, &d, flag)) == 0) {
		json_t *val;

		flag = DB_NEXT;
		/* The saved position itself was judged by the previous batch. */
		if (s->purge_key != NULL && k.size == s->purge_klen &&
		    memcmp(k.data, s->purge_key, k.size) == 0)
			continue;
		seen++;
		if (purge_save_pos(s, k.data, k.size) < 0) {
			rc = ENOMEM;
			goto out;
		}
		if (tbl == TBL_COUNTERS && k.size == strlen(PURGE_KEY) &&
		    memcmp(k.data, PURGE_KEY, k.size) == 0)
			continue;
		val = json_loadb(d.data, d.size, 0, NULL);
		if (val == NULL)
			continue; /* not ours to judge */
		dead = purge_dead(s, txn, tbl, k.data, k.size, val, cutoff);
		json_decref(val);
		if (dead < 0)
			goto out;
		if (dead) {
			victims[nvictims].key = malloc(k.size ? k.size : 1);
			if (victims[nvictims].key == NULL) {
				rc = ENOMEM;
				goto out;
			}
			memcpy(victims[nvictims].key, k.data, k.size);
			victims[nvictims++].klen = k.size;
		}
	}
	if (rc == DB_NOTFOUND) {
		end = 1;
		rc = 0;
	}
	cur->close(cur);
	cur = NULL;
	if (rc != 0)
		goto out;
	for (int i = 0; i < nvictims; i++) {
		json_t *val;

		set_key(&k, victims[i].key, victims[i].klen);
		memset(&d, 0, sizeof(d));
		d.flags = DB_DBT_MALLOC;
		rc = db->get(db, txn, &k, &d, DB_RMW);
		if (rc == DB_NOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc != 0)
			goto out;
		val = json_loadb(d.data, d.size, 0, NULL);
		free(d.data);
		dead = val == NULL
			   ? 0
			   : purge_dead(s, txn, tbl, victims[i].key, victims[i].klen, val, cutoff);
		json_decref(val);
		if (dead < 0)
			goto out;
		if (dead && (rc = db->del(db, txn, &k, 0)) != 0 && rc != DB_NOTFOUND)
			goto out;
		rc = 0;
		deleted += dead;
	}
	rc = txn->commit(txn, 0);
	txn = NULL;
	if (rc == 0 && end) {
		free(s->purge_key);
		s->purge_key = NULL;
		if (++s->purge_table >= PURGE_TABLES)
			s->purge_table = -1;
	}
out:
	if (cur != NULL)
		cur->close(cur);
	if (txn != NULL)
		txn->abort(txn);
	for (int i = 0; i < nvictims; i++)
		free(victims[i].key);
	/* A rule's error is a store_rc already. */
	if (dead < 0)
		return dead;
	if (rc != 0)
		return map_rc(s, rc, "purge");
	s->purged += (unsigned)deleted;
	return deleted;
}

/* Claim this period's pass: 1 when this process should run it, 0 when it is not due. */
static int purge_claim_txn(struct store_txn *t, void *arg)
{
	time_t now = *(const time_t *)arg;
	json_t *v;
	int rc = store_get(t, TBL_COUNTERS, PURGE_KEY, strlen(PURGE_KEY), &v, 1);

	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		json_int_t next = json_integer_value(json_object_get(v, "next"));
		json_decref(v);
		/* A clock set back by more than a period must not stop the purge for long. */
		if (next > (json_int_t)now && next <= (json_int_t)now + PURGE_EVERY_S)
			return 0;
	}
	v = json_pack("{s:I}", "next", (json_int_t)(now + PURGE_EVERY_S));
	rc = v == NULL ? STORE_ERR : store_put(t, TBL_COUNTERS, PURGE_KEY, strlen(PURGE_KEY), v);
	json_decref(v);
	return rc < 0 ? rc : 1;
}

int store_purge(struct store *s, time_t now)
{
	int total = 0, rc, failures = 0;

	free(s->purge_key);
	s->purge_key = NULL;
	s->purge_table = 0;
	while (s->purge_table >= 0) {
		rc = purge_batch(s, now - STORE_PURGE_GRACE_S);
		if (rc == STORE_RETRY && failures++ < 200) {
			backoff(failures);
			continue;
		}
		if (rc < 0) {
			s->purge_table = -1;
			return rc;
		}
		total += rc;
	}
	return total;
}

/* A bounded step of the periodic purge: starts a pass when due, then a few batches of it. */
static void purge_step(struct store *s, time_t now)
{
	if (s->purge_table < 0) {
		if (now < s->next_purge_check)
			return;
		s->next_purge_check = now + PURGE_CHECK_S;
		if (store_run(s, purge_claim_txn, &now) != 1)
			return;
		s->purge_table = 0;
		s->purged = 0;
		free(s->purge_key);
		s->purge_key = NULL;
	}
	for (int i = 0; i < PURGE_BATCHES_PER_CALL && s->purge_table >= 0; i++) {
		watchdog_arm(1);
		int rc = purge_batch(s, now - STORE_PURGE_GRACE_S);
		watchdog_disarm();
		if (rc < 0)
			return; /* a deadlock or worse: the next call goes on from here */
	}
	if (s->purge_table < 0 && s->purged > 0)
		log_info("purge: %u expired records removed", s->purged);
}

void store_maintain(struct store *s)
{
	time_t now = time(NULL);
	int rc;

	if (s->failed || s->env == NULL) {
		store_reopen(s);
		return;
	}
	/* At most once a second: each step is cheap when there is nothing to do. */
	if (now == s->last_maintain)
		return;
	s->last_maintain = now;
	if (s->lock_timedout || now - s->last_failchk >= FAILCHK_EVERY_S)
		run_failchk(s);
	/*
	 * A checkpoint once CHECKPOINT_KB of log was written (or a minute passed): it bounds the
	 * work of a recovery, and DB_LOG_AUTO_REMOVE deletes the log files it made unneeded at
	 * the next file switch, so the log directory stays bounded.
	 */
	watchdog_arm(WD_SLOW_FACTOR);
	rc = s->failed ? 0 : s->env->txn_checkpoint(s->env, CHECKPOINT_KB, CHECKPOINT_MIN, 0);
	watchdog_disarm();
	if (rc != 0)
		map_rc(s, rc, "checkpoint");
	if (!s->failed)
		purge_step(s, now);
}

static int ping_fn(struct store_txn *t, void *arg)
{
	json_t *v;
	int rc = store_get(t, TBL_KEYS, "ping", 4, &v, 0);
	if (rc == STORE_FOUND)
		json_decref(v);
	return rc < 0 ? rc : 0;
}

int store_ping(struct store *s)
{
	return store_run(s, ping_fn, NULL) == 0;
}

int store_failed(const struct store *s)
{
	return s->failed;
}

unsigned store_reopens(const struct store *s)
{
	return s->reopens;
}
