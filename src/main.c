/*
 * otlogin.fcgi: the FastCGI responder. Started by the web server (or spawn-fcgi) with a
 * listening socket on fd 0 it serves requests in a loop; started without one, FCGI_Accept
 * serves exactly one CGI request and the loop ends. With -w N it supervises N such workers
 * on its socket (supervise.h), for spawn-fcgi, which starts workers but never restarts one.
 *
 * SIGTERM (how lighttpd and spawn-fcgi stop their workers) ends the loop between requests, so
 * that the database environment is closed cleanly; it is blocked while a request is served.
 * When the database needs recovery (another process died inside Berkeley DB), the worker
 * answers 503 where it must and reopens the environment itself, keeping its socket and the
 * requests queued on it.
 *
 * The environment's slow upkeep (checkpoints, the purge) runs in one process of its own, the
 * maintainer (-M, see maintainer()), so that no request waits behind it: whichever worker
 * finds no maintenance owner starts one, whoever started the workers (a web server, -w,
 * spawn-fcgi).
 */
#include <fcgi_stdio.h>
#include <fcgiapp.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "keyring.h"
#include "log.h"
#include "metrics.h"
#include "purge_rules.h"
#include "route.h"
#include "store.h"
#include "supervise.h"

/*
 * Longest a transaction may take before the worker counts itself stuck on a latch held by a
 * killed process (a durable commit takes about a millisecond; a recovery under a waiting worker
 * ends it sooner: see store_watchdog).
 */
#define WATCHDOG_S 10

/*
 * A worker that cannot reopen the environment for this long exits, so that the web server
 * starts a fresh process: a last resort for whatever keeps this one out (the refusal of its
 * own stale registry slot, the case seen, is now mended in store_recover.c).
 */
#define REOPEN_GIVE_UP_S 30

static volatile sig_atomic_t stopping;

/* The route table's patterns, for the metrics' route label. */
static const char *route_names[METRICS_MAX_ROUTES];

/* fcgi_stdio points environ at each request's parameters, and at nothing between requests. */
extern char **environ;

/*
 * The site's replication process hangs or died: end between requests, as on SIGTERM (the
 * web server or the supervisor starts a fresh worker, which joins the group again once the
 * replication process is back).
 */
static void on_orphaned(void)
{
	log_warn("replication: the replication process stopped: this worker leaves the group");
	kill(getpid(), SIGTERM);
}

static void on_sigterm(int sig)
{
	stopping = 1;
	/* accept() interrupted by this signal then ends FCGI_Accept instead of waiting on... */
	FCGX_ShutdownPending();
	/*
	 * ...and when the signal came just before accept() was entered, the closed listening
	 * socket makes it fail at once. SIGTERM is unblocked only around FCGI_Accept.
	 */
	close(STDIN_FILENO);
}

static const char *env_get(const char *name, void *ctx)
{
	return getenv(name);
}

static size_t body_read(void *buf, size_t len, void *ctx)
{
	return fread(buf, 1, len, stdin);
}

static size_t resp_out(const void *buf, size_t len, void *ctx)
{
	return fwrite((void *)buf, 1, len, stdout);
}

static void front_line_error(struct resp *resp, enum req_status st)
{
	resp_error(resp, st == REQ_TOO_LARGE ? ERR_TOO_LARGE : ERR_INVALID_INPUT,
		   st == REQ_BAD_LENGTH ? "Malformed Content-Length or short body" : NULL);
}

/* Most of an unread body a CGI process reads and drops before it exits (cgi_drain_body). */
#define CGI_DRAIN_MAX (16u << 20)

/*
 * CGI only: read and drop the body of a request answered without reading it (one over
 * max_body, answered 413). Apache's mod_cgid writes the whole body before it reads the
 * answer and drops the answer, and the connection, when that write fails on a process that
 * has exited. FastCGI needs none of this: libfcgi skips what a request left unread.
 */
static void cgi_drain_body(void)
{
	const char *cl = getenv("CONTENT_LENGTH");
	unsigned long long left = cl ? strtoull(cl, NULL, 10) : 0;
	char buf[16384];
	size_t n;

	fflush(stdout); /* a server that reads as it writes has the answer already */
	if (left > CGI_DRAIN_MAX)
		left = CGI_DRAIN_MAX;
	while (left > 0 && (n = fread(buf, 1, left < sizeof(buf) ? left : sizeof(buf), stdin)) > 0)
		left -= n;
}

/* Serve one request. Returns 0, or -1 when the store failed and must be reopened. */
static int serve_one(struct ctx *c)
{
	struct req req;
	struct resp resp;
	struct api_call call = {.c = c, .req = &req, .resp = &resp};
	uint64_t start = metrics_clock_us();
	enum req_status st;
	int fatal;

	resp_init(&resp);
	st = req_read(&req, env_get, body_read, NULL, c->conf->max_body);
	/* The client gets the id its request has in the log, to quote when it reports trouble. */
	log_set_request(req.request_id);
	audit_set_request(req.request_id, req.remote_addr);
	resp_header(&resp, "X-Request-Id", "%s", req.request_id);
	if (st != REQ_OK)
		front_line_error(&resp, st);
	else
		route_dispatch(&call);
	if (resp_write(&resp, resp_out, NULL) < 0)
		log_warn("the client went away before the response was written");
	if (st == REQ_TOO_LARGE && FCGX_IsCGI())
		cgi_drain_body();
	metrics_http(call.route, req.method, resp.status, metrics_clock_us() - start);
	json_decref(call.client);
	fatal = resp.fatal;
	req_free(&req);
	resp_free(&resp);
	log_set_request(NULL);
	log_set_client(NULL);
	audit_set_request(NULL, NULL);
	audit_set_client(NULL);
	return fatal ? -1 : 0;
}

/* The maintainer's end of the owner lock (store_maintainer_lock), handed down by its worker. */
#define MAINTAINER_LOCK_FD 3

/* The maintainer this worker started and has not reaped yet (0: none). */
static pid_t maintainer_pid;

/*
 * Start the maintainer: this program again with -M, holding the owner lock fd (which this
 * process closes after). Nothing else of the worker's goes with it: standard input (the
 * FastCGI socket) is /dev/null there and every other descriptor above the lock is closed.
 * Returns 0, or -1 (logged) when it could not be started.
 */
static int start_maintainer(int lock_fd, const char *prog, const char *conf_file)
{
	posix_spawn_file_actions_t fa;
	char ppid[32];
	char *argv[] = {(char *)prog, "-c", (char *)conf_path(conf_file), "-M", ppid, NULL};
	int rc;

	snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	rc = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (rc == 0 && lock_fd != MAINTAINER_LOCK_FD)
		rc = posix_spawn_file_actions_adddup2(&fa, lock_fd, MAINTAINER_LOCK_FD);
	else if (rc == 0)
		rc = fcntl(lock_fd, F_SETFD, 0) < 0 ? errno : 0; /* dup2 to itself keeps CLOEXEC */
	if (rc == 0)
		rc = posix_spawn_file_actions_addclosefrom_np(&fa, MAINTAINER_LOCK_FD + 1);
	if (rc == 0)
		rc = strchr(prog, '/') != NULL
			 ? posix_spawn(&maintainer_pid, prog, &fa, NULL, argv, environ)
			 : posix_spawn(&maintainer_pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		maintainer_pid = 0;
		log_err("cannot start the maintenance process: %s", strerror(rc));
		return -1;
	}
	return 0;
}

/*
 * Between requests: the worker's cheap share of the upkeep and, once a second, a look at
 * whether some process owns the rest; when none does, start the maintainer or, failing
 * that, do its step here. A plain CGI process, gone after this request, does it all itself;
 * so does a replicated site's worker, whose store_maintain leaves checkpoints and the purge to
 * the site's replication process.
 */
static void maintain(struct ctx *c, const char *prog, const char *conf_file)
{
	int fd;

	if (FCGX_IsCGI() || store_replicated()) {
		store_maintain(c->store);
		return;
	}
	if (store_maintain_worker(c->store) != 1)
		return;
	if (maintainer_pid > 0 && waitpid(maintainer_pid, NULL, WNOHANG) != 0)
		maintainer_pid = 0;
	if ((fd = store_maintainer_lock(c->store)) < 0)
		return; /* owned: by our maintainer, another worker's or a replication process */
	if (start_maintainer(fd, prog, conf_file) < 0)
		store_maintain_owner(c->store);
	close(fd);
}

/*
 * The maintainer (-M PPID): the environment's maintenance owner while its worker PPID lives.
 * It holds the owner lock on MAINTAINER_LOCK_FD and runs store_maintain_owner once a second;
 * SIGTERM, its worker's death (which sends SIGTERM) or a database it cannot reopen for
 * REOPEN_GIVE_UP_S end it, and a worker starts another. Returns the exit status.
 */
static int maintainer(struct conf *conf, const char *ppid_arg)
{
	struct timespec second = {1, 0};
	struct store *s;
	sigset_t termset;
	time_t failing_since = 0;
	long ppid = strtol(ppid_arg, NULL, 10);

	/* Blocked for good: sigtimedwait below is where it is taken, between steps. */
	sigemptyset(&termset);
	sigaddset(&termset, SIGTERM);
	sigprocmask(SIG_BLOCK, &termset, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || (long)getppid() != ppid)
		return 0; /* its worker is gone already */
	if (fcntl(MAINTAINER_LOCK_FD, F_SETFD, FD_CLOEXEC) < 0) {
		log_err("the maintenance process was started without its lock");
		return 1;
	}
	store_watchdog(WATCHDOG_S);
	metrics_open(conf->db_dir, route_names,
		     route_patterns(route_names, METRICS_MAX_ROUTES - 1));
	s = store_open(conf->db_dir, conf->db_cache_mb, 0);
	if (s == NULL)
		return 1;
	if (purge_rules_register(s) < 0) {
		store_close(s);
		return 1;
	}
	log_debug("maintenance process started for worker %ld", ppid);
	for (;;) {
		store_maintain_owner(s);
		if (!store_failed(s))
			failing_since = 0;
		else if (failing_since == 0)
			failing_since = time(NULL);
		else if (time(NULL) - failing_since >= REOPEN_GIVE_UP_S)
			break;
		if (sigtimedwait(&termset, NULL, &second) == SIGTERM || (long)getppid() != ppid)
			break;
	}
	store_close(s);
	return 0;
}

/* Most workers -w starts: far more than two cores' worth, far fewer than a mistake. */
#define MAX_WORKERS 256

/* Through log.c: fcgi_stdio's stderr writes nothing before the first request. */
static _Noreturn void usage(void)
{
	log_err("usage: otlogin.fcgi [-c otlogin.conf] [-w workers]");
	exit(2);
}

static unsigned parse_workers(const char *s)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || n < 1 || n > MAX_WORKERS) {
		log_err("-w takes a number of workers from 1 to %d", MAX_WORKERS);
		usage();
	}
	return (unsigned)n;
}

int main(int argc, char **argv)
{
	const char *conf_file = NULL;
	struct conf conf;
	struct keyring keys;
	struct ctx c = {.conf = &conf, .keys = &keys};
	struct sigaction term = {.sa_handler = on_sigterm};
	sigset_t termset;
	char **startup_environ = environ;
	time_t failing_since = 0;
	unsigned workers = 0;
	const char *maintainer_of = NULL;
	char err[512];
	int opt;

	while ((opt = getopt(argc, argv, "c:w:M:")) != -1) {
		if (opt == 'c')
			conf_file = optarg;
		else if (opt == 'w')
			workers = parse_workers(optarg);
		else if (opt == 'M')
			maintainer_of = optarg; /* internal: see maintainer() */
		else
			usage();
	}
	if (optind < argc)
		usage();
	/* Database, key and mail files are private to the service. */
	umask(077);
	log_init("otlogin", LOG_LEVEL_INFO);
	signal(SIGPIPE, SIG_IGN);
	/* Everything that can fail is set up before the first request is accepted. */
	conf_defaults(&conf);
	if (conf_load(&conf, conf_path(conf_file), err, sizeof(err)) < 0)
		fatal("configuration: %s", err);
	log_init("otlogin", (enum log_level)conf.log_level);
	/* Under a daemonised web server stderr is /dev/null: from here on, [server] log. */
	if (log_open(conf.log, conf.log_facility, err, sizeof(err)) < 0) {
		/* Say why somewhere an admin may look, not only on a stderr that may be nowhere. */
		log_open("syslog", conf.log_facility, NULL, 0);
		fatal("%s", err);
	}
	if (audit_open(conf.audit_log, conf.audit_facility, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (maintainer_of != NULL) {
		int status = maintainer(&conf, maintainer_of);
		conf_free(&conf);
		return status;
	}
	/* The supervisor opens nothing of its own: each worker sets itself up, from here. */
	if (workers > 0) {
		if (FCGX_IsCGI())
			fatal("-w needs a FastCGI listening socket as standard input (spawn-fcgi)");
		supervise(workers);
	}
	if (crypto_init() < 0)
		fatal("libgcrypt could not be initialised");
	c.mail = ctx_mail_conf(&conf);
	store_watchdog(WATCHDOG_S);
	if (keyring_check_private(conf.db_dir) < 0)
		fatal("refusing to start with secrets others can read");
	/* Before the store: a recovery the open runs is counted too. */
	metrics_open(conf.db_dir, route_names, route_patterns(route_names, METRICS_MAX_ROUTES - 1));
	if (ctx_replication(&conf, STORE_REP_SUBORDINATE) < 0)
		fatal("configuration: [replication]");
	c.store = store_open(conf.db_dir, conf.db_cache_mb, 0);
	if (c.store == NULL)
		fatal("cannot open the database environment %s", conf.db_dir);
	if (!FCGX_IsCGI() && store_rep_watch(c.store, on_orphaned) < 0)
		fatal("cannot watch the replication process");
	/* The store purges by "exp"; the flows say when their other records are dead. */
	if (purge_rules_register(c.store) < 0)
		fatal("cannot start without the purge rules");
	/*
	 * A CGI process serves one request, most of which sign nothing (/health, the JWKS, client
	 * tokens): the signing keys' pairwise self-test, an RSA signature each, waits for the
	 * first signature (jwk.h). FastCGI workers test every key here, before serving.
	 */
	if (FCGX_IsCGI())
		jwk_defer_pairwise_test(1);
	if (keyring_load(&keys, c.store, conf.db_dir, conf.key_overlap) < 0)
		fatal("cannot load the keys");
	metrics_count(METRIC_WORKERS_STARTED);
	if (supervise_restarted())
		metrics_count(METRIC_WORKER_RESTARTS);
	/*
	 * Until here SIGTERM simply ends the process (a slow open must not hold up a shutdown);
	 * from here on it ends the loop between requests. No SA_RESTART: it must interrupt
	 * accept().
	 */
	sigemptyset(&term.sa_mask);
	sigaction(SIGTERM, &term, NULL);
	sigemptyset(&termset);
	sigaddset(&termset, SIGTERM);
	sigprocmask(SIG_BLOCK, &termset, NULL);
	/* The line an admin looks for after a (re)start; CGI would repeat it for every request. */
	if (FCGX_IsCGI())
		log_debug("started: configuration %s, database %s", conf_path(conf_file),
			  conf.db_dir);
	else
		log_info("started: configuration %s, database %s", conf_path(conf_file),
			 conf.db_dir);

	for (;;) {
		int rc;

		sigprocmask(SIG_UNBLOCK, &termset, NULL); /* a pending SIGTERM arrives here */
		rc = stopping ? -1 : FCGI_Accept();
		sigprocmask(SIG_BLOCK, &termset, NULL);
		if (rc < 0)
			break;
		/* Heal a recovery seen while idle first: this request gets an answer. */
		if (store_must_restart(c.store)) {
			log_warn("the database was recovered: this worker ends, to join the "
				 "replication group again as a new process");
			break;
		}
		if (store_failed(c.store) && store_reopen(c.store) < 0) {
			if (failing_since == 0)
				failing_since = time(NULL);
			else if (time(NULL) - failing_since >= REOPEN_GIVE_UP_S) {
				log_err("the database cannot be reopened: this worker exits to be "
					"restarted");
				break;
			}
		} else {
			failing_since = 0;
		}
		keyring_refresh(&keys, c.store);
		if (serve_one(&c) < 0)
			log_warn("the database needs recovery: reopening it");
		/* The client has its whole answer before any maintenance starts... */
		FCGI_Finish();
		/* ...which sees the process's own environment (TZ, libfaketime in the tests). */
		environ = startup_environ;
		maintain(&c, argv[0], conf_file);
	}
	keyring_free(&keys);
	store_close(c.store);
	conf_free(&conf);
	return 0;
}
