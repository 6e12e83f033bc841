/*
 * store_rep: the store as a site of a Berkeley DB replication group (see store.h,
 * store_replication). Berkeley DB's Replication Manager ships the log, holds elections and
 * counts acknowledgements; this file configures it, starts it in each process, and decides
 * when a process may begin a transaction.
 *
 * What Berkeley DB 5.3 does not do by itself, and this file does:
 * - Its replication sockets never get TCP_NODELAY, and a master waiting for acknowledgements
 *   then commits a few dozen times a second: every process sets it when a connection is made.
 * - A commit returns 0 even when its quorum acknowledgement failed; only an event says so, in
 *   the committing thread: store_commit turns it into STORE_UNAVAILABLE.
 * - A site without a role accepts writes, which it may roll back once it becomes a client,
 *   and a process connects only to the sites that were members when it started: a subordinate
 *   begins a transaction only when the replication process says the site is a master with a
 *   quorum, and after its own first connection to a peer.
 * - The defaults (no heartbeats, 30 s retries, a 30 s checkpoint delay) make failovers slow
 *   and lose commits: DB_CONFIG sets them from [replication].
 *
 * The replication process publishes the site's state in a small shared file (otlogin.repd in
 * the environment's directory), which the workers read without a system call; its time stamp
 * tells them whether the process is alive.
 */
#include "store.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store_bdb_int.h"

/*
 * The published state is stale (its process dead or hung) after this long: the site's workers
 * then leave the group, and its peers elect another master a heartbeat monitor time later.
 */
#define REP_STALE_MS 2000
/* How often a worker's watcher looks at the replication process's stamp. */
#define REP_WATCH_US (250 * 1000)
/* How long a subordinate waits, once, for its first connection to a peer. */
#define REP_FIRST_PEER_WAIT_MS 2000
#define REP_SHARED_FILE "otlogin.repd"
#define REP_SHARED_MAGIC 0x6f746c72u /* "otlr" */
#define REP_CONFIG_HEAD "# Written by otlogin from [replication] in otlogin.conf"

enum rep_role { ROLE_NONE, ROLE_MASTER, ROLE_CLIENT };

/* What the replication process publishes; one writer, readers take each field as it is. */
struct rep_shared {
	uint32_t magic;
	int32_t pid;
	uint32_t role;	    /* enum rep_role */
	uint32_t nsites;    /* group members, this site included */
	uint32_t connected; /* peers the replication process is connected to */
	uint32_t ready;	    /* 0 until the process checked the server key against the group */
	uint32_t acked;	    /* a quorum acknowledged the master's last probe, lately */
	uint64_t stamp_ms;  /* CLOCK_MONOTONIC of the last update */
	char master[96];
	uint32_t log_file, log_offset; /* the end of this site's log */
	uint32_t npeers;	       /* the replication process's view of each peer */
	struct {
		char address[92];
		uint32_t connected;
	} peers[STORE_REP_MAX_PEERS];
	/* Wall-clock ms of the newest master probe this site holds (0: none); last, for readers of
	 * a smaller file an older program made (see shared_map_dir). */
	int64_t probe_at_ms;
};

#define MAX_SITES (STORE_REP_MAX_PEERS + 1)

static struct {
	int on;
	enum store_rep_role role;
	char host[MAX_SITES][80]; /* [0]: this site */
	unsigned port[MAX_SITES];
	unsigned nsites;
	struct store_rep_conf conf;
	/* This process. */
	int started;   /* repmgr_start succeeded in this environment handle */
	int peer_seen; /* a subordinate saw its first connection to a peer */
	int refused;   /* the replication process's repmgr_start failed for good */
	struct rep_shared *shared;
} rep;

/* Set by the event handler in the thread whose commit was not acknowledged by a quorum. */
static __thread int perm_failed;

/* Parse "host:port" or "[v6]:port" (len bytes at s) into host (hsize bytes) and port. */
static int parse_address(const char *s, size_t len, char *hbuf, size_t hsize, unsigned *pport)
{
	const char *colon = NULL, *host = s;
	size_t hlen, plen;
	char port[8], *end;
	unsigned long p;

	for (size_t j = 0; j < len; j++)
		if (s[j] == ':')
			colon = s + j;
	if (colon == NULL)
		return -1;
	hlen = (size_t)(colon - s);
	plen = len - hlen - 1;
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hsize || plen == 0 || plen >= sizeof(port))
		return -1;
	memcpy(port, colon + 1, plen);
	port[plen] = '\0';
	errno = 0;
	p = strtoul(port, &end, 10);
	if (errno != 0 || *end != '\0' || p == 0 || p > 65535 || port[0] == '-')
		return -1;
	memcpy(hbuf, host, hlen);
	hbuf[hlen] = '\0';
	*pport = (unsigned)p;
	return 0;
}

/* Parse an address (len bytes at s) into site slot i. 0, or -1. */
static int parse_site(const char *s, size_t len, unsigned i)
{
	return parse_address(s, len, rep.host[i], sizeof(rep.host[i]), &rep.port[i]);
}

int store_replication(const struct store_rep_conf *rc, enum store_rep_role role)
{
	const char *p = rc->peers;

	memset(&rep, 0, sizeof(rep));
	if (parse_site(rc->local, strlen(rc->local), 0) < 0) {
		log_err("replication: local = \"%s\" is not host:port", rc->local);
		return -1;
	}
	rep.nsites = 1;
	while (*p != '\0') {
		size_t len;

		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (len == 0)
			break;
		if (rep.nsites == MAX_SITES || parse_site(p, len, rep.nsites) < 0) {
			log_err("replication: peers: \"%.*s\" is not host:port (at most %d peers)",
				(int)len, p, STORE_REP_MAX_PEERS);
			return -1;
		}
		rep.nsites++;
		p += len;
	}
	rep.conf = *rc;
	rep.conf.local = rep.conf.peers = NULL; /* parsed above; the caller's strings may go */
	rep.role = role;
	rep.on = 1;
	return 0;
}

int store_replicated(void)
{
	return rep.on;
}

int store_rep_refused(void)
{
	return rep.refused;
}

u_int32_t rep_open_flags(void)
{
	/* The Replication Manager runs threads in every process: the handle must allow them. */
	return rep.on ? DB_INIT_REP | DB_THREAD : 0;
}

/* ---- DB_CONFIG ------------------------------------------------------------------------ */

/* The DB_CONFIG text for the configured group, in buf. Its length, or -1 when too long. */
static int config_text(char *buf, size_t size)
{
	const struct store_rep_conf *c = &rep.conf;
	size_t n = 0;
	int k;

#define ADD(...)                                                                                   \
	do {                                                                                       \
		k = snprintf(buf + n, size - n, __VA_ARGS__);                                      \
		if (k < 0 || (size_t)k >= size - n)                                                \
			return -1;                                                                 \
		n += (size_t)k;                                                                    \
	} while (0)
	ADD("%s at every start:\n# edit that file, not this one.\n", REP_CONFIG_HEAD);
	ADD("repmgr_site %s %u db_local_site on%s\n", rep.host[0], rep.port[0],
	    c->creator ? " db_group_creator on" : "");
	for (unsigned i = 1; i < rep.nsites; i++)
		ADD("repmgr_site %s %u db_bootstrap_helper on\n", rep.host[i], rep.port[i]);
	ADD("rep_set_priority %u\n", c->priority);
	ADD("repmgr_set_ack_policy db_repmgr_acks_quorum\n");
	ADD("rep_set_timeout db_rep_ack_timeout %u\n", c->ack_timeout_ms * 1000u);
	ADD("rep_set_timeout db_rep_heartbeat_send %u\n", c->heartbeat_send_ms * 1000u);
	ADD("rep_set_timeout db_rep_heartbeat_monitor %u\n", c->heartbeat_monitor_ms * 1000u);
	ADD("rep_set_timeout db_rep_connection_retry %u\n", c->retry_ms * 1000u);
	ADD("rep_set_timeout db_rep_election_retry %u\n", c->retry_ms * 1000u);
	/* A client writes its pages at a checkpoint record at once, not 30 s later. */
	ADD("rep_set_timeout db_rep_checkpoint_delay 0\n");
#undef ADD
	return (int)n;
}

int rep_write_config(const char *dir)
{
	char path[4096], tmp[4200], want[4096], have[4096];
	ssize_t got = -1;
	int fd, len;

	if (snprintf(path, sizeof(path), "%s/DB_CONFIG", dir) >= (int)sizeof(path))
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		got = read(fd, have, sizeof(have) - 1);
		close(fd);
	}
	if (!rep.on) {
		/* A site taken out of its group: our settings would fail a plain open. */
		if (got > 0 && strncmp(have, REP_CONFIG_HEAD, strlen(REP_CONFIG_HEAD)) == 0 &&
		    unlink(path) < 0) {
			log_err("%s: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if ((len = config_text(want, sizeof(want))) < 0)
		return -1;
	if (got == len && memcmp(have, want, (size_t)len) == 0)
		return 0;
	/* Atomically: another process of the site may be opening the environment right now. */
	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, want, (size_t)len) != len || fsync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, path) < 0) {
		log_err("writing %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ---- events and sockets --------------------------------------------------------------- */

/* TCP_NODELAY on every TCP socket of this process: Berkeley DB never sets it. */
static void nodelay_all(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name), domain = 0, type = 0, one = 1;
		socklen_t len = sizeof(domain);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	closedir(d);
}

static void rep_event(DB_ENV *env, u_int32_t event, void *info)
{
	(void)env;
	(void)info;
	if (event == DB_EVENT_REP_PERM_FAILED)
		perm_failed = 1;
	else if (event == DB_EVENT_REP_CONNECT_ESTD)
		nodelay_all();
}

int rep_env_config(DB_ENV *env)
{
	return rep.on ? env->set_event_notify(env, rep_event) : 0;
}

int store_must_restart(const struct store *s)
{
	/* The threads repmgr_start started live on in a panicked handle: only an exit ends them. */
	return s->failed && __atomic_load_n(&rep.started, __ATOMIC_ACQUIRE);
}

/*
 * The log position of the master's transaction that this process failed to apply because a
 * page did not match the log, as file << 32 | offset (0: none). Berkeley DB says it only in
 * words, in the thread that applies, just before it panics the environment: "BDB0110 Log
 * sequence error: page LSN ...; previous LSN ..." and then either "BDB3526 Error processing
 * txn [F][O]" (a client applying the master's log) or "BDB1520 Recovery function for LSN F O
 * failed on forward pass" (a recovery replaying the site's own log, where such a transaction
 * reached the disk before the panic). Other failures to apply (a full disk, no memory) say
 * something else first: a fresh copy would not mend them. Nor would it when the failure came
 * at the end of an internal init ("BDB3502 Client initialization failed"): those pages were
 * the master's own.
 */
static uint64_t apply_failed_at;
static __thread int page_mismatch; /* this thread's last message was a BDB0110 */

void rep_note_error(const char *msg)
{
	unsigned long file, offset;

	if (!rep.on)
		return;
	if (strncmp(msg, "BDB0110 ", 8) == 0) {
		page_mismatch = 1;
		return;
	}
	if (page_mismatch &&
	    (sscanf(msg, "BDB3526 Error processing txn [%lu][%lu]", &file, &offset) == 2 ||
	     sscanf(msg, "BDB1520 Recovery function for LSN %lu %lu failed", &file, &offset) == 2))
		__atomic_store_n(&apply_failed_at, (uint64_t)file << 32 | (uint32_t)offset,
				 __ATOMIC_RELEASE);
	if (strncmp(msg, "BDB3502 ", 8) == 0)
		__atomic_store_n(&apply_failed_at, 0, __ATOMIC_RELEASE);
	/* BDB3523 ("transaction failed at") comes between the two. */
	if (strncmp(msg, "BDB3523 ", 8) != 0)
		page_mismatch = 0;
}

int store_rep_apply_failure(char *buf, size_t size)
{
	uint64_t at = __atomic_exchange_n(&apply_failed_at, 0, __ATOMIC_ACQ_REL);

	if (at == 0)
		return 0;
	snprintf(buf, size, "%lu/%lu", (unsigned long)(at >> 32), (unsigned long)(uint32_t)at);
	return 1;
}

int rep_log_ok(void)
{
	return !rep.on || __atomic_load_n(&rep.started, __ATOMIC_ACQUIRE);
}

int rep_maintains(void)
{
	return !rep.on || (rep.role == STORE_REP_PROCESS && rep.shared != NULL &&
			   rep.shared->role == ROLE_MASTER);
}

void rep_commit_begin(void)
{
	perm_failed = 0;
}

int rep_commit_failed(void)
{
	return perm_failed;
}

/* ---- the shared state ----------------------------------------------------------------- */

/* Map the published state: the replication process creates it, the others read it. */
static struct rep_shared *shared_map_dir(const char *dir)
{
	int writer = rep.role == STORE_REP_PROCESS, fd;
	struct rep_shared *none = NULL;
	char path[4096];
	struct stat st;
	void *m;

	if (rep.shared != NULL)
		return rep.shared;
	if (snprintf(path, sizeof(path), "%s/%s", dir, REP_SHARED_FILE) >= (int)sizeof(path))
		return NULL;
	fd = open(path, (writer ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	if (writer && ftruncate(fd, sizeof(struct rep_shared)) < 0) {
		close(fd);
		return NULL;
	}
	/* A file an older replication process made is shorter: reading past its end faults. */
	if (!writer && (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(struct rep_shared))) {
		close(fd);
		return NULL;
	}
	m = mmap(NULL, sizeof(struct rep_shared), writer ? PROT_READ | PROT_WRITE : PROT_READ,
		 MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return NULL;
	/* A worker's watcher thread may map it at the same time: one mapping stays. */
	if (!__atomic_compare_exchange_n(&rep.shared, &none, (struct rep_shared *)m, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		munmap(m, sizeof(struct rep_shared));
	return rep.shared;
}

static struct rep_shared *shared_map(const struct store *s)
{
	return shared_map_dir(s->dir);
}

static int shared_fresh(const struct rep_shared *sh)
{
	uint64_t stamp = __atomic_load_n(&sh->stamp_ms, __ATOMIC_ACQUIRE);
	return sh->magic == REP_SHARED_MAGIC && stamp != 0 &&
	       clock_mono_ms() - stamp < REP_STALE_MS;
}

/* store_rep_status's lag_ms, from the published state. */
static long long shared_lag_ms(const struct rep_shared *sh)
{
	long long now = clock_now_ms();

	if (sh->role == ROLE_MASTER)
		return 0;
	if (sh->probe_at_ms <= 0)
		return -1;
	return now > sh->probe_at_ms ? now - sh->probe_at_ms : 0;
}

/* Peers a master needs connected: a majority of the group with itself. */
static unsigned quorum_peers(unsigned nsites)
{
	return nsites <= 1 ? 0 : nsites / 2;
}

/*
 * This process's connections and the group's size, from Berkeley DB; with sh, also each
 * peer's address and connection into it. 0 or a Berkeley DB error.
 */
static int site_counts(DB_ENV *env, unsigned *nsites, unsigned *connected, struct rep_shared *sh)
{
	DB_REPMGR_SITE *list = NULL;
	u_int count = 0;
	int rc = env->repmgr_site_list(env, &count, &list);

	if (rc != 0)
		return rc;
	*nsites = 1 + count;
	*connected = 0;
	for (u_int i = 0; i < count; i++) {
		int up = list[i].status == DB_REPMGR_CONNECTED;
		*connected += (unsigned)up;
		if (sh != NULL && i < STORE_REP_MAX_PEERS) {
			snprintf(sh->peers[i].address, sizeof(sh->peers[i].address), "%s:%u",
				 list[i].host, list[i].port);
			sh->peers[i].connected = (uint32_t)up;
		}
	}
	if (sh != NULL)
		sh->npeers = count < STORE_REP_MAX_PEERS ? count : STORE_REP_MAX_PEERS;
	free(list);
	return 0;
}

/*
 * A subordinate's first connection to a peer: its first commits could otherwise go out
 * before it has any, and wait out the acknowledgement timeout.
 */
static int first_peer_seen(struct store *s, unsigned nsites)
{
	unsigned n, connected;
	uint64_t until;

	if (rep.peer_seen || nsites <= 1)
		return 1;
	until = clock_mono_ms() + REP_FIRST_PEER_WAIT_MS;
	do {
		if (site_counts(s->env, &n, &connected, NULL) == 0 && connected > 0) {
			rep.peer_seen = 1;
			return 1;
		}
		usleep(10000);
	} while (clock_mono_ms() < until);
	return 0;
}

/*
 * repmgr_start with every signal blocked: the threads it starts inherit the mask, and a signal
 * meant for the process (SIGTERM between requests, the watchdog's SIGALRM) must reach its main
 * thread.
 */
static int start_threads(DB_ENV *env, int nthreads)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = env->repmgr_start(env, nthreads, DB_REP_ELECTION);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/*
 * Whether this site founds a group is the replication process's own decision
 * (rep.conf.creator, see store_replication), not DB_CONFIG's: every process of the site
 * rewrites that file before it opens the environment, each from what it saw at its own start,
 * and a worker started before the site discarded its tables would say "creator" where the
 * replication process, started after, knows it must copy the group's database.
 */
static int own_creator_flag(DB_ENV *env)
{
	DB_SITE *site;
	int rc = env->repmgr_site(env, rep.host[0], rep.port[0], &site, 0);

	if (rc != 0)
		return rc;
	rc = site->set_config(site, DB_GROUP_CREATOR, rep.conf.creator ? 1 : 0);
	site->close(site);
	return rc;
}

/*
 * Start the Replication Manager in this environment handle: the replication process listens
 * and holds elections; a subordinate joins it, only while it is alive (a subordinate that
 * started first would take the listener's role, which needs threads a worker does not run).
 * 0, or -1 (logged) when it must not go on.
 */
int rep_start(struct store *s)
{
	const struct rep_shared *sh;
	int rc;

	if (!rep.on || rep.started)
		return 0;
	if (rep.role == STORE_REP_PROCESS) {
		rc = own_creator_flag(s->env);
		if (rc == 0)
			rc = start_threads(s->env, 3);
		/*
		 * Only a site that joins while another one does is told to try later; the rest
		 * (another process listens for the site, or its port is taken) stays so, and the
		 * failed listen even keeps the role claimed for this process.
		 */
		rep.refused = rc != 0 && rc != DB_REP_UNAVAIL;
		if (rc == DB_REP_IGNORE) {
			log_err("replication: another process is this site's replication process");
			return -1;
		}
	} else {
		sh = shared_map(s);
		if (sh == NULL || !shared_fresh(sh) || sh->pid == 0 ||
		    (kill(sh->pid, 0) != 0 && errno != EPERM))
			return 0; /* not yet: rep_gate answers "no-repd" meanwhile */
		/*
		 * Nor while the site is neither the master nor a client that caught up with one: a
		 * client syncing may be in a recovery (a rollback, an internal init), and the
		 * transaction repmgr_start runs then panics the environment. A worker serves only
		 * on the master, which starts it there (rep_gate) if not here.
		 */
		if (sh->role == ROLE_NONE)
			return 0;
		rc = start_threads(s->env, 0);
		if (rc == DB_REP_IGNORE)
			rc = 0;
		else if (rc == 0 || rc == EINVAL) {
			/*
			 * The replication process died a moment ago and this process claimed its
			 * role, which it cannot fill: only its exit gives the role back.
			 */
			log_err("replication: the replication process is gone; exiting");
			_exit(75);
		}
	}
	if (rc != 0) {
		log_err("replication: repmgr_start: %s", db_strerror(rc));
		return -1;
	}
	__atomic_store_n(&rep.started, 1, __ATOMIC_RELEASE);
	rep.peer_seen = 0;
	return 0;
}

void rep_forget_start(void)
{
	__atomic_store_n(&rep.started, 0, __ATOMIC_RELEASE);
}

/* What store_rep_watch's thread calls. */
static void (*orphaned_fn)(void);

/*
 * The watcher's thread: see store_rep_watch. A worker on a client never starts replication
 * (it serves nothing) but is in the environment all the same, and a replication process that
 * restarts to discard the site's copy of the database waits for it to leave.
 */
static void *watch_loop(void *arg)
{
	const char *dir = arg; /* the process's for good: the store may be closed meanwhile */
	const struct rep_shared *sh;
	int seen = 0; /* the replication process published while this process was in */

	for (;;) {
		usleep(REP_WATCH_US);
		if ((sh = shared_map_dir(dir)) == NULL)
			continue;
		if (shared_fresh(sh))
			seen = 1;
		else if (seen) {
			orphaned_fn();
			return NULL;
		}
	}
}

int store_rep_watch(struct store *s, void (*orphaned)(void))
{
	sigset_t all, old;
	pthread_t thread;
	char *dir;
	int rc;

	if (!rep.on || rep.role != STORE_REP_SUBORDINATE)
		return 0;
	if ((dir = strdup(s->dir)) == NULL)
		return -1;
	orphaned_fn = orphaned;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&thread, NULL, watch_loop, dir);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(dir);
		return -1;
	}
	pthread_detach(thread);
	return 0;
}

/* Why this process must not begin a transaction now (a word), or NULL. */
static const char *why_not(struct store *s)
{
	const struct rep_shared *sh;

	if (s->failed || s->env == NULL)
		return "failed";
	/* The replication process reads on a client too, and writes only when it is master. */
	if (rep.role == STORE_REP_PROCESS)
		return NULL;
	if ((sh = shared_map(s)) == NULL || !shared_fresh(sh))
		return "no-repd";
	if (!sh->ready)
		return "starting";
	if (sh->role != ROLE_MASTER)
		return sh->role == ROLE_CLIENT ? "client" : "starting";
	if (sh->connected < quorum_peers(sh->nsites) || (sh->nsites > 1 && !sh->acked))
		return "no-quorum";
	if (rep.role == STORE_REP_SUBORDINATE) {
		if (!rep.started && rep_start(s) < 0)
			return "failed";
		if (!rep.started || !first_peer_seen(s, sh->nsites))
			return "starting";
	}
	return NULL;
}

int rep_stats(struct store *s, struct metrics_bdb *out)
{
	const struct rep_shared *sh;
	DB_REPMGR_STAT *st = NULL;

	if (!rep.on)
		return 0;
	if (s->env->repmgr_stat(s->env, &st, 0) != 0)
		return -1;
	out->replicated = 1;
	out->rep_unacknowledged = st->st_perm_failed;
	out->rep_lag_ms = -1;
	free(st);
	/* The replication process's view: a worker's own connections are not the site's. */
	if ((sh = shared_map(s)) != NULL && shared_fresh(sh)) {
		out->rep_master = sh->role == ROLE_MASTER;
		out->rep_sites = sh->nsites;
		out->rep_connected = sh->connected;
		out->rep_lag_ms = shared_lag_ms(sh);
	}
	return 0;
}

int rep_gate(struct store *s)
{
	return rep.on && why_not(s) != NULL ? STORE_UNAVAILABLE : 0;
}

const char *store_rep_unavailable(struct store *s)
{
	return rep.on ? why_not(s) : NULL;
}

int store_rep_publish(struct store *s, int ready, int acked, long long probe_at_ms)
{
	struct rep_shared *sh = shared_map(s);
	DB_REP_STAT *st = NULL;
	unsigned nsites = 1, connected = 0;
	int rc;

	if (sh == NULL)
		return STORE_ERR;
	if (s->failed || s->env == NULL) {
		sh->role = ROLE_NONE;
		rc = STORE_FATAL;
		goto stamp;
	}
	if ((rc = s->env->rep_stat(s->env, &st, 0)) != 0 ||
	    (rc = site_counts(s->env, &nsites, &connected, sh)) != 0) {
		free(st);
		return bdb_map_rc(s, rc, "replication status");
	}
	sh->role = st->st_status == DB_REP_MASTER   ? ROLE_MASTER
		   : st->st_status == DB_REP_CLIENT ? ROLE_CLIENT
						    : ROLE_NONE;
	/* A client that has not caught up yet is no better than none. */
	if (sh->role == ROLE_CLIENT && !st->st_startup_complete)
		sh->role = ROLE_NONE;
	sh->nsites = nsites;
	sh->connected = connected;
	sh->log_file = st->st_next_lsn.file;
	sh->log_offset = st->st_next_lsn.offset;
	sh->master[0] = '\0';
	if (st->st_master != DB_EID_INVALID) {
		DB_SITE *site;
		const char *host;
		u_int port;
		if (st->st_master == st->st_env_id)
			snprintf(sh->master, sizeof(sh->master), "%s:%u", rep.host[0], rep.port[0]);
		else if (s->env->repmgr_site_by_eid(s->env, (int)st->st_master, &site) == 0) {
			if (site->get_address(site, &host, &port) == 0)
				snprintf(sh->master, sizeof(sh->master), "%s:%u", host, port);
			site->close(site);
		}
	}
	free(st);
	rc = 0;
stamp:
	sh->ready = (uint32_t)ready;
	sh->acked = (uint32_t)acked;
	sh->probe_at_ms = probe_at_ms;
	sh->pid = (int32_t)getpid();
	sh->magic = REP_SHARED_MAGIC;
	__atomic_store_n(&sh->stamp_ms, clock_mono_ms(), __ATOMIC_RELEASE);
	return rc;
}

void store_rep_unpublish(struct store *s)
{
	struct rep_shared *sh = shared_map(s);

	if (sh != NULL)
		__atomic_store_n(&sh->stamp_ms, 0, __ATOMIC_RELEASE);
}

uint32_t rep_tables_epoch(struct store *s)
{
	DB_REP_STAT *st = NULL;
	uint32_t epoch = 0;

	if (!rep.on || s->failed || s->env == NULL || s->env->rep_stat(s->env, &st, 0) != 0)
		return 0;
	if (st->st_status == DB_REP_MASTER)
		epoch = st->st_gen << 1 | 1;
	else if (st->st_status == DB_REP_CLIENT && st->st_startup_complete)
		epoch = st->st_gen << 1;
	free(st);
	return epoch;
}

int store_rep_master(struct store *s)
{
	return rep_tables_epoch(s) & 1;
}

/*
 * The published peer at host:port: its index in st, or -1 when the group has no such member.
 * Published addresses are Berkeley DB's "host:port", which is how they are compared.
 */
static int published_peer(const struct store_rep_status *st, const char *host, unsigned port)
{
	char address[sizeof(st->peers[0].address)];

	snprintf(address, sizeof(address), "%s:%u", host, port);
	for (unsigned i = 0; i < st->npeers; i++)
		if (strcmp(st->peers[i].address, address) == 0)
			return (int)i;
	return -1;
}

int store_rep_remove(struct store *s, const char *address, char *err, size_t errlen)
{
	struct store_rep_status st;
	char host[sizeof(rep.host[0])];
	unsigned port;
	int i, rc;
	DB_SITE *site = NULL;

	if (!rep.on) {
		snprintf(err, errlen, "replication is not enabled");
		return -1;
	}
	if (parse_address(address, strlen(address), host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "\"%s\" is not host:port", address);
		return -1;
	}
	if (strcmp(host, rep.host[0]) == 0 && port == rep.port[0]) {
		snprintf(err, errlen,
			 "%s is this site, which cannot remove itself: stop it, then run this "
			 "on the master",
			 address);
		return -1;
	}
	store_rep_status(s->dir, &st);
	if (strcmp(st.role, "master") != 0) {
		snprintf(err, errlen, "this site is not the master (it is %s): run this there",
			 st.role);
		return -1;
	}
	if ((i = published_peer(&st, host, port)) < 0) {
		snprintf(err, errlen, "%s:%u is not a member of the group", host, port);
		return -1;
	}
	/* A running site would go on as if it were a member: it must be stopped first. */
	if (st.peers[i].connected) {
		snprintf(err, errlen, "%s is connected: stop that site first", st.peers[i].address);
		return -1;
	}
	if (!__atomic_load_n(&rep.started, __ATOMIC_ACQUIRE))
		rc = EINVAL; /* store_rep_unavailable starts it: the caller asks that first */
	else if ((rc = s->env->repmgr_site(s->env, host, port, &site, 0)) == 0)
		rc = site->remove(site); /* which frees the handle, whatever it returns */
	if (rc != 0) {
		snprintf(err, errlen, "%s",
			 rc == DB_REP_UNAVAIL ? "the group did not acknowledge the change in time "
						"(too few sites up), or the site is the master"
					      : db_strerror(rc));
		return -1;
	}
	log_info("replication: removed %s:%u from the group", host, port);
	return 0;
}

int store_rep_status(const char *dir, struct store_rep_status *out)
{
	const struct rep_shared *sh = shared_map_dir(dir);

	memset(out, 0, sizeof(*out));
	snprintf(out->role, sizeof(out->role), "none");
	out->lag_ms = -1; /* not known without a replication process */
	/* Only what the replication process published: a look must not write to the log. */
	if (sh == NULL || !shared_fresh(sh))
		return 0;
	out->repd_running = 1;
	snprintf(out->role, sizeof(out->role), "%s",
		 sh->role == ROLE_MASTER   ? "master"
		 : sh->role == ROLE_CLIENT ? "client"
					   : "none");
	snprintf(out->master, sizeof(out->master), "%s", sh->master);
	out->nsites = sh->nsites;
	out->lag_ms = shared_lag_ms(sh);
	out->log_file = sh->log_file;
	out->log_offset = sh->log_offset;
	out->npeers = sh->npeers < STORE_REP_MAX_PEERS ? sh->npeers : STORE_REP_MAX_PEERS;
	for (unsigned i = 0; i < out->npeers; i++) {
		snprintf(out->peers[i].address, sizeof(out->peers[i].address), "%s",
			 sh->peers[i].address);
		out->peers[i].connected = (int)sh->peers[i].connected;
	}
	return 0;
}
