#include "repd.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctx.h"
#include "keyring.h"
#include "log.h"
#include "purge_rules.h"
#include "store.h"

/* How often the state is published: a role change reaches the workers within this. */
#define TICK_US (50 * 1000)
/*
 * The master's probe: a small commit every PROBE_MS whose quorum acknowledgement says the
 * site still reaches a majority; without one for PROBE_STALE_MS the workers stop serving.
 */
#define PROBE_MS 1000
#define PROBE_STALE_MS 3000
#define PROBE_KEY "repd:probe"
#define PROBE_EXP_S 60
/* How often a client looks at the newest probe it holds, for its lag. */
#define PROBE_READ_MS 500
/*
 * What the process hands itself across the exec of a restart (repd.h): where its last
 * failure to apply the master's log was, and that its copy of the database must go.
 */
#define FAILED_AT_ENV "OTLOGIN_REPD_APPLY_FAILED_AT"
#define DISCARD_ENV "OTLOGIN_REPD_DISCARD_COPY"
/* How long a discard waits for the site's workers to leave the environment. */
#define DISCARD_WAIT_S 30

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/*
 * Whether the site's server key is the group's, once it can tell: 1 (yes, or nothing to
 * compare with yet), 0 (not yet: no key file, or the store cannot answer now), -1 (it
 * differs: the site must not run).
 */
static int key_checked(struct keyring *kr, int *loaded, struct store *s, const char *dir, int *said)
{
	struct store_rep_status st;
	int rc;

	if (!*loaded) {
		/* otloginctl init writes it on the first site; the others get a copy. */
		if (!keyring_server_key_exists(dir) || keyring_load(kr, s, dir, 0) < 0) {
			if (!*said)
				log_warn(
				    "replication: waiting for the server key (otloginctl init on "
				    "the first site, a copy of its server.key on the others)");
			*said = 1;
			return 0;
		}
		*loaded = 1;
	}
	/* The first master records its key; a client compares once it has the group's data. */
	if (store_rep_status(dir, &st) < 0 || strcmp(st.role, "none") == 0)
		return 0;
	rc = keyring_check_group(kr, s, strcmp(st.role, "master") == 0);
	if (rc == 0) {
		log_err("replication: this site's server.key is not the group's: copy the group's "
			"server.key here (otloginctl replication join on a site of the group)");
		return -1;
	}
	return rc == 1;
}

/*
 * The publisher: the site's state every TICK_US, in a thread of its own, so that a long
 * checkpoint or a blocked transaction of the main loop never makes the workers think this
 * process is dead.
 */
struct publisher {
	struct store *s;
	int ready;	       /* atomic: the server key was checked */
	uint64_t acked_ms;     /* atomic: when a quorum last acknowledged the probe */
	long long probe_at_ms; /* atomic: when the newest probe this site holds was written */
	int stop;	       /* atomic */
};

static void *publish_loop(void *arg)
{
	struct publisher *p = arg;

	while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		uint64_t acked = __atomic_load_n(&p->acked_ms, __ATOMIC_ACQUIRE);
		store_rep_publish(p->s, __atomic_load_n(&p->ready, __ATOMIC_ACQUIRE),
				  acked != 0 && clock_mono_ms() - acked < PROBE_STALE_MS,
				  __atomic_load_n(&p->probe_at_ms, __ATOMIC_ACQUIRE));
		usleep(TICK_US);
	}
	return NULL;
}

/* The probe: a record that expires, with when it was written (*(long long *)arg) for clients. */
static int probe_txn(struct store_txn *t, void *arg)
{
	json_t *v = json_pack("{s:I, s:I}", "exp", (json_int_t)time(NULL) + PROBE_EXP_S, "at_ms",
			      (json_int_t) * (long long *)arg);
	int rc =
	    v == NULL ? STORE_ERR : store_put(t, TBL_COUNTERS, PROBE_KEY, strlen(PROBE_KEY), v);

	json_decref(v);
	return rc;
}

/* The newest probe's time into *(long long *)arg (left alone when there is none). */
static int probe_read_txn(struct store_txn *t, void *arg)
{
	json_t *v;
	int rc = store_get(t, TBL_COUNTERS, PROBE_KEY, strlen(PROBE_KEY), &v, 0);

	if (rc == STORE_FOUND) {
		*(long long *)arg = json_integer_value(json_object_get(v, "at_ms"));
		json_decref(v);
	}
	return rc < 0 ? rc : 0;
}

/*
 * On a client, every PROBE_READ_MS: when the newest master probe it holds was written, which
 * says how far behind the master it is (a read: a client writes nothing).
 */
static void read_probe(struct publisher *p, uint64_t *last)
{
	uint64_t now = clock_mono_ms();
	long long at = 0;

	if (now - *last < PROBE_READ_MS)
		return;
	*last = now;
	if (store_run(p->s, probe_read_txn, &at) == 0 && at > 0)
		__atomic_store_n(&p->probe_at_ms, at, __ATOMIC_RELEASE);
}

/*
 * On the master, once a PROBE_MS (at once after an election, and when the group grew or
 * shrank): is a quorum still there? An acknowledgement a group of one did not need says
 * nothing about the two sites that just joined and are still copying the database.
 */
static void probe(struct publisher *p, const struct store_rep_status *st, uint64_t *last,
		  unsigned *nsites)
{
	uint64_t now = clock_mono_ms();
	long long at;

	int master = store_rep_master(p->s);

	if (!master || st->nsites != *nsites) {
		__atomic_store_n(&p->acked_ms, 0, __ATOMIC_RELEASE);
		*nsites = st->nsites;
	}
	if (!master) {
		read_probe(p, last);
		return;
	}
	if (__atomic_load_n(&p->acked_ms, __ATOMIC_ACQUIRE) != 0 && now - *last < PROBE_MS)
		return;
	*last = now;
	at = clock_now_ms();
	if (store_run(p->s, probe_txn, &at) == 0) {
		__atomic_store_n(&p->acked_ms, clock_mono_ms(), __ATOMIC_RELEASE);
		__atomic_store_n(&p->probe_at_ms, at, __ATOMIC_RELEASE);
	}
}

/*
 * A line in the log each time the site's role or master changes, as published: from any site's
 * log an admin sees when a failover happened, when it ended and which site won the election.
 */
static void say_role(const char *site, const struct store_rep_status *st, char *said, size_t size)
{
	char now[sizeof(st->role) + sizeof(st->master) + 1];

	snprintf(now, sizeof(now), "%s %s", st->role, st->master);
	if (strcmp(now, said) == 0)
		return;
	snprintf(said, size, "%s", now);
	if (strcmp(st->role, "master") == 0)
		log_info("replication: site %s is the master", site);
	else if (strcmp(st->role, "client") == 0)
		log_info("replication: site %s is a client, up to date with the master %s", site,
			 st->master);
	else if (st->master[0] != '\0')
		log_info("replication: site %s is catching up with the master %s", site,
			 st->master);
	else
		log_info("replication: site %s knows no master: waiting for an election", site);
}

/*
 * Whether this process just failed, for the second time in a row, to apply the same
 * transaction of the master's log, with a recovery of its own in between (the last failure's
 * position crosses the exec of a restart in FAILED_AT_ENV). Then the site's copy of the
 * database does not match the group's log (a page older than the log says): Berkeley DB fails
 * at that transaction after every recovery, so the site would never serve again. It discards
 * its copy at the next start and copies the master's, as a new site does. The copy it discards
 * holds nothing the master lacks: the master sends its log, and the site could not apply it.
 */
static int failed_twice(const struct conf *conf)
{
	const char *before = getenv(FAILED_AT_ENV);
	char at[32];

	if (!store_rep_apply_failure(at, sizeof(at))) {
		unsetenv(FAILED_AT_ENV);
		return 0;
	}
	if (before == NULL || strcmp(before, at) != 0) {
		setenv(FAILED_AT_ENV, at, 1);
		return 0;
	}
	log_err("replication: site %s failed twice to apply the master's transaction at %s: its "
		"copy of the database does not match the group's log; discarding it to copy the "
		"master's",
		conf->rep_local, at);
	unsetenv(FAILED_AT_ENV);
	setenv(DISCARD_ENV, "1", 1);
	return 1;
}

/*
 * Open the environment as the site's replication process, again every second until it works,
 * a signal says stop, or it cannot work (store_rep_refused): a site that joins while another
 * one does is told to try later. NULL also when the copy must go (failed_twice): a recovery
 * that replays the site's own log stops at a transaction that the copy cannot take, at every
 * attempt.
 */
static struct store *open_site(const struct conf *conf)
{
	for (unsigned attempt = 0; !stop; attempt++) {
		struct store *s = store_open(conf->db_dir, conf->db_cache_mb, 1);
		if (s != NULL || store_rep_refused() || failed_twice(conf))
			return s;
		if (attempt % 10 == 0)
			log_warn("replication: site %s cannot start yet; retrying every second",
				 conf->rep_local);
		sleep(1);
	}
	return NULL;
}

/*
 * At a start that failed_twice asked for, or after a discard that did not finish: the
 * site's database goes; the master's comes. 0, or -1 when the process must stop (a copy half
 * moved must not be opened: the next start, by the service manager, finishes the move).
 */
static int discard_copy(const struct conf *conf)
{
	char kept[4096];

	unsetenv(DISCARD_ENV);
	if (store_discard_copy(conf->db_dir, DISCARD_WAIT_S, kept, sizeof(kept)) < 0) {
		log_err("replication: site %s could not discard its copy of the database",
			conf->rep_local);
		return -1;
	}
	log_warn("replication: site %s discarded its copy of the database (moved to %s: delete "
		 "it when it is no longer needed); copying the master's",
		 conf->rep_local, kept);
	return 0;
}

int repd_run(const struct conf *conf)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct publisher pub = {0};
	struct keyring keys;
	pthread_t thread;
	int loaded = 0, said = 0, status = 1, checked;
	uint64_t last_probe = 0;
	unsigned nsites = 0;
	struct store_rep_status st;
	char role_said[sizeof(st.role) + sizeof(st.master) + 1] = "";

	if (!conf->rep_enabled) {
		log_err("replication is not enabled in the configuration ([replication] enabled)");
		return 1;
	}
	/* First: with its tables gone, the site no longer founds a group (ctx_replication). */
	if ((getenv(DISCARD_ENV) != NULL || store_discard_pending(conf->db_dir)) &&
	    discard_copy(conf) < 0)
		return 1;
	if (ctx_replication(conf, STORE_REP_PROCESS) < 0)
		return 1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* A copy to discard: at the start of a new image, as the creator rule needs (above). */
	if ((pub.s = open_site(conf)) == NULL)
		return getenv(DISCARD_ENV) != NULL ? REPD_RESTART : stop ? 0 : 1;
	if (purge_rules_register(pub.s) < 0 ||
	    pthread_create(&thread, NULL, publish_loop, &pub) != 0) {
		store_close(pub.s);
		return 1;
	}
	log_info("replication: site %s started", conf->rep_local);
	while (!stop) {
		if (store_must_restart(pub.s)) {
			status = REPD_RESTART;
			break;
		}
		if (!pub.ready &&
		    (checked = key_checked(&keys, &loaded, pub.s, conf->db_dir, &said)) != 0) {
			if (checked < 0)
				break;
			__atomic_store_n(&pub.ready, 1, __ATOMIC_RELEASE);
			log_info("replication: site %s ready", conf->rep_local);
		}
		store_rep_status(conf->db_dir, &st);
		say_role(conf->rep_local, &st, role_said, sizeof(role_said));
		if (pub.ready)
			probe(&pub, &st, &last_probe, &nsites);
		store_maintain(pub.s);
		usleep(TICK_US);
	}
	if (status == REPD_RESTART)
		failed_twice(conf);
	else
		status = stop ? 0 : 1;
	log_info("replication: site %s %s", conf->rep_local,
		 status != REPD_RESTART	       ? "stopping"
		 : getenv(DISCARD_ENV) != NULL ? "restarting to discard its copy"
					       : "restarting after a recovery");
	__atomic_store_n(&pub.stop, 1, __ATOMIC_RELEASE);
	pthread_join(thread, NULL);
	store_rep_unpublish(pub.s);
	/*
	 * A panicked handle's threads would outlive a close, and a discard needs a new image
	 * (above): the caller execs this program anew.
	 */
	if (status == REPD_RESTART)
		return status;
	if (loaded)
		keyring_free(&keys);
	store_close(pub.s);
	return status;
}
