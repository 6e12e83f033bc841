/*
 * store_recover: opening the environment of the store (store_bdb.c: the tables and the
 * transactions), with its configuration and the thread tracking that failchk needs;
 * recovering it after a crash; and reopening it in place.
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
 */
#include "store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store_bdb_int.h"

/* Lock waits and transactions stay well below a request's budget. */
#define LOCK_TIMEOUT_US (2 * 1000 * 1000)
#define TXN_TIMEOUT_US (5 * 1000 * 1000)
/*
 * How long a recovery lets live processes notice the panic (at their next Berkeley DB call)
 * before it starts: one that writes a log record after recovery began corrupts the log
 * ("Recovery function ... failed on forward pass"). 100 ms was too short on a loaded machine.
 */
#define REG_TIMEOUT_US (1000 * 1000)
/* Thread-of-control slots: the workers, otloginctl runs, and dead ones until reclaimed. */
#define THREAD_COUNT 200
/*
 * Log files of 4 MiB (Berkeley DB's default is 10): files are removed whole, so smaller ones
 * keep the directory closer to what recovery needs (the log since the last checkpoint).
 */
#define LOG_FILE_BYTES (4u * 1024 * 1024)
/* After a failed reopen, requests answer 503 at once until this pause is over. */
#define REOPEN_PAUSE_S 1
/* A slot of DB_REGISTER's registry file, __db.register: a pid in 24 columns and a newline. */
#define REG_SLOT_LEN 25
#define OPEN_FLAGS                                                                                 \
	(DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | rep_open_flags())

/* Set when an open failed because the environment has no thread table (an older otlogin). */
static int no_thread_table;

/*
 * The files of ours that live beside the tables. A replication client's first sync tries
 * every file in the directory as a table, and says that each of these is none.
 */
static int about_own_file(const char *msg)
{
	static const char *const own[] = {"/server.key", "/otlogin.lock", "/otlogin.repd",
					  "/otlogin.metrics"};

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strstr(msg, own[i]) != NULL)
			return 1;
	/* "Encrypted database", "Encrypted checksum": the same, unnamed (nothing is encrypted). */
	return strncmp(msg, "BDB0178 ", 8) == 0 || strncmp(msg, "BDB0196 ", 8) == 0;
}

static void bdb_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	if (strncmp(msg, "BDB1505 ", 8) == 0)
		no_thread_table = 1;
	rep_note_error(msg);
	if (about_own_file(msg))
		log_debug("berkeley db: %s", msg);
	else
		log_err("berkeley db: %s", msg);
}

/* Closing a panicked handle lists every file it still had open: known, and not news. */
static void bdb_quiet(const DB_ENV *env, const char *prefix, const char *msg)
{
}

/*
 * Informational messages (failchk's "Aborting txn ...", recovery's progress): debug level.
 * The end of a recovery, whether DB_REGISTER or force_recovery ran it, is counted here: only
 * Berkeley DB knows whether an open with DB_RECOVER found anything to recover.
 */
static void bdb_msgcall(const DB_ENV *env, const char *msg)
{
	log_debug("berkeley db: %s", msg);
	if (strstr(msg, "Recovery complete") != NULL) /* "BDB1518 Recovery complete at ..." */
		metrics_count(METRIC_RECOVERIES);
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

static pid_t self_pid; /* 0: not known in this process yet (reset in every forked child) */
static unsigned long long self_start;
/*
 * The threads of a process (the Replication Manager runs some in every process) need ids of
 * their own: the low bits of the tid slot number them, the high bits hold the start time.
 */
#define THREAD_BITS 16
static __thread unsigned self_thread; /* 0: not numbered yet */
static unsigned threads_numbered;

static void forget_self(void)
{
	self_pid = 0;
	self_thread = 0;
	threads_numbered = 0;
}

/*
 * Berkeley DB names a thread of control by (pid, tid). No threads here, so the tid slot
 * carries the process start time instead: with it, is_alive tells a dead worker from a new
 * process that was given the same pid (pids wrap at 32768 by default), which would otherwise
 * keep the dead one's locks and transactions alive for good.
 */
static void bdb_thread_id(DB_ENV *env, pid_t *pid, db_threadid_t *tid)
{
	char state;

	/* Berkeley DB asks on every operation: getpid() is a system call, so only after a fork. */
	if (self_pid == 0) {
		self_pid = getpid();
		if (proc_stat(self_pid, &state, &self_start) < 0)
			self_start = 0;
	}
	if (self_thread == 0)
		self_thread = __atomic_add_fetch(&threads_numbered, 1, __ATOMIC_RELAXED);
	if (pid != NULL)
		*pid = self_pid;
	if (tid != NULL)
		*tid = (db_threadid_t)(self_start << THREAD_BITS |
				       (self_thread & ((1u << THREAD_BITS) - 1)));
}

/* Register forget_self for forked children, once per process image. 0 or an errno. */
static int atfork_once(void)
{
	static int done;

	if (done)
		return 0;
	done = 1;
	return pthread_atfork(NULL, NULL, forget_self);
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
	return tid == 0 || (unsigned long long)tid >> THREAD_BITS == start;
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
	env->set_verbose(env, DB_VERB_RECOVERY, 1);
	/*
	 * DB_REGION_INIT writes the region files out when they are created, so that a full disk
	 * shows as an error at open instead of SIGBUS when a page of the mapping is first used.
	 */
	if ((rc = env->set_cachesize(env, s->cache_mb / 1024, s->cache_mb % 1024 * 1024u * 1024u,
				     1)) != 0 ||
	    (rc = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0 ||
	    (rc = env->set_timeout(env, LOCK_TIMEOUT_US, DB_SET_LOCK_TIMEOUT)) != 0 ||
	    (rc = env->set_timeout(env, TXN_TIMEOUT_US, DB_SET_TXN_TIMEOUT)) != 0 ||
	    (rc = env->set_timeout(env, REG_TIMEOUT_US, DB_SET_REG_TIMEOUT)) != 0 ||
	    (rc = env->set_lk_max_locks(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_objects(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_lockers(env, 5000)) != 0 ||
	    (rc = env->set_lg_max(env, LOG_FILE_BYTES)) != 0 ||
	    (rc = env->set_thread_count(env, THREAD_COUNT)) != 0 || (rc = atfork_once()) != 0 ||
	    (rc = env->set_thread_id(env, bdb_thread_id)) != 0 ||
	    (rc = env->set_isalive(env, bdb_is_alive)) != 0 ||
	    (rc = env->set_flags(env, DB_REGION_INIT, 1)) != 0 ||
	    (rc = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0 ||
	    (rc = rep_env_config(env)) != 0) {
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
 * Send sig to every process that holds a slot of the registry (0: send nothing); how many
 * hold one (an error in looking counts as one).
 */
int bdb_registry_signal(int fd, int sig)
{
	char slot[REG_SLOT_LEN];
	int holders = 0;

	for (off_t pos = 0; pread(fd, slot, REG_SLOT_LEN, pos) == REG_SLOT_LEN;
	     pos += REG_SLOT_LEN) {
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = pos, .l_len = 1};
		if (fcntl(fd, F_GETLK, &fl) != 0) {
			holders++;
		} else if (fl.l_type != F_UNLCK) {
			holders++;
			if (sig != 0 && fl.l_pid > 0)
				kill(fl.l_pid, sig);
		}
	}
	return holders;
}

/*
 * Whether a live process holds a slot of the registry: DB_REGISTER locks a byte per slot for
 * as long as the process has the environment open. Slots marked empty count too: a recovery
 * marks every slot empty, also those of processes that are still in the old environment and
 * have not noticed its panic yet.
 */
int bdb_registry_in_use(int fd)
{
	return bdb_registry_signal(fd, 0);
}

/* Whether name is prefix followed by one digit or more, and nothing else. */
int bdb_numbered(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(name, prefix, n) == 0 && name[n] != '\0' &&
	       strspn(name + n, "0123456789") == strlen(name + n);
}

/* Whether name is a region file (__db.001 ...): what a recovery builds anew. */
static int is_region(const char *name)
{
	return bdb_numbered(name, "__db.");
}

/* Delete the region files of the environment in dir, not the data or log. */
void bdb_remove_regions(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (is_region(e->d_name) &&
		    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
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
int bdb_registry_lock(const char *dir)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/__db.register", dir) >= (int)sizeof(path))
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
	int fd = bdb_registry_lock(s->dir), rc = -1;

	if (fd < 0)
		return -1;
	if (why == STUCK_OPEN_DIED) {
		if (bdb_registry_in_use(fd)) {
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
		if (stuck_by(rc) != why || (why == STUCK_HALF_MADE && bdb_registry_in_use(fd))) {
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
		bdb_remove_regions(s->dir);
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
	int fd = bdb_registry_lock(s->dir);

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
	/*
	 * A replicated site recovers instead: failchk's aborts are log records, and written by an
	 * opener on an environment that still says master (its master was killed), Berkeley DB
	 * 5.3 starts a Replication Manager thread in the opener by itself, which a later
	 * repmgr_start duplicates (the two deadlock) and which closing the handle does not stop
	 * (it crashed). A recovery makes the regions anew, with no role. The cost: a process
	 * killed on a master's site makes a failover.
	 */
	u_int32_t flags =
	    OPEN_FLAGS | DB_REGISTER | DB_RECOVER | (store_replicated() ? 0 : DB_FAILCHK);
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
int bdb_open_all(struct store *s, int create)
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
	rc = rep_write_config(s->dir) < 0 || open_env(s, died) < 0 || reserve_regions(s) < 0 ||
		     /* A replicated site opens its tables once it may serve (store_begin). */
		     (!store_replicated() && bdb_open_tables(s, create) < 0) || rep_start(s) < 0
		 ? -1
		 : 0;
	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0)
			log_warn("%s: %s", path, strerror(errno));
		close(fd);
	}
	return rc;
}

/* Close the handles; after DB_RUNRECOVERY only what a panicked environment allows. */
void bdb_drop_handles(struct store *s)
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
	rep_forget_start();
	if (panicked)
		unmap_regions(s);
}

int store_reopen(struct store *s)
{
	time_t now = time(NULL);
	struct timespec t0;
	int rc;

	if (s->env != NULL && !s->failed)
		return 0;
	if (now < s->next_reopen || store_must_restart(s))
		return STORE_FATAL;
	bdb_drop_handles(s);
	s->failed = 1;
	/* Opening may wait for (or run) a recovery: a longer leash than one transaction. */
	watchdog_forget_region();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	watchdog_arm(WD_SLOW_FACTOR);
	rc = bdb_open_all(s, 0);
	watchdog_disarm();
	watchdog_note_region(s);
	if (rc < 0) {
		bdb_drop_handles(s);
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
