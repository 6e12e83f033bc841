/*
 * metrics: counters shared by every worker process, for GET /metrics (Prometheus text format).
 *
 * Behind a web server that spreads requests over N workers, one worker's own numbers say
 * nothing, and a transaction per request to count would cost a durable commit. So the
 * counters live in a small file in the database environment directory ("otlogin.metrics",
 * 0600), mapped shared by every process and updated with atomic adds. They are reset only
 * when the environment is created anew (the file goes with the directory) or when a binary
 * with another counter layout or route table maps it (the numbers would mean something else).
 *
 * Every label has a fixed, small set of values (enums and tables below; the route is the
 * route table's pattern, never the raw path), so the output stays bounded whatever the
 * requests are. Nothing here knows HTTP routes or the store: route.c names the routes and
 * store_bdb.c gives Berkeley DB's own statistics at render time.
 *
 * Counting functions may be called from anywhere, in any process: before metrics_open (or
 * when it failed: otloginctl, the unit tests of other modules) they do nothing.
 *
 * Inside a store transaction (between metrics_txn_begin and metrics_txn_end, which store_run
 * calls) counts wait for the transaction's end: a transaction run again after a lock conflict
 * counts once, and what an aborted one did (a session it created) is not counted. Throttles
 * are the exception that a refusal keeps: a refused transaction is aborted by design.
 */
#ifndef OTLOGIN_METRICS_H
#define OTLOGIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* sbuf.h, declared only: main.c includes this after fcgi_stdio.h, which redefines printf. */
struct sbuf;

/* Plain counters, without labels. */
enum metrics_counter {
	METRIC_REFRESH_ROTATIONS, /* a refresh token was rotated */
	METRIC_REFRESH_REUSE,	  /* a rotated refresh token came back: its family revoked */
	METRIC_SESSIONS_CREATED,
	METRIC_SESSIONS_ENDED, /* logout, revocation, end-all (not expiry) */
	METRIC_STORE_RETRIES,  /* a transaction run again after a lock conflict */
	METRIC_CHECKPOINTS,    /* checkpoints this service wrote */
	METRIC_RECOVERIES,     /* recoveries of the environment run by a worker */
	METRIC_WORKERS_STARTED,
	METRIC_WORKER_RESTARTS, /* workers -w started in place of one that died */
	METRIC_COUNTERS
};

/* How a login ended (logins_total's "method" label). */
enum metrics_login_method {
	METRICS_LOGIN_OTP,	  /* a passcode (email or SMS) */
	METRICS_LOGIN_MAGIC_LINK, /* a magic link */
	METRICS_LOGIN_SESSION,	  /* silent sign-in with a session */
	METRICS_LOGIN_METHODS
};

/* The delivery channels: "email", "sms". */
#define METRICS_CHANNELS 2
/* Throttle rules: see metrics.c (rule_names); an unknown kind counts as "other". */
#define METRICS_RULES 9
/* Login outcomes: see metrics.c (outcome_of). */
#define METRICS_LOGIN_OUTCOMES 8
/* Routes a region has room for (slot 0 is "unmatched"); route.c's table is far smaller. */
#define METRICS_MAX_ROUTES 64
/* Histogram buckets (upper bounds, seconds), the last being +Inf. */
#define METRICS_BUCKETS 12

/*
 * Map (creating it 0600 when absent) the region in dir, for the route table whose patterns
 * are routes[0 .. nroutes-1] (route_patterns; borrowed, they must outlive the region): a
 * region made for another table is reset. Routes that share a pattern share their series.
 * Returns 0, or -1 (logged) when it cannot: the service then runs without counting.
 */
int metrics_open(const char *dir, const char *const *routes, unsigned nroutes);

/* Unmap the region (counting stops). */
void metrics_close(void);

/* 1 when a region is mapped. */
int metrics_enabled(void);

/* Count one event. */
void metrics_count(enum metrics_counter which);

/*
 * One request: route slot (0: matched none; 1 + the index in metrics_open's routes), its
 * method (any string: an unknown one counts as "other"; NULL too), status and how long it
 * took in microseconds.
 */
void metrics_http(unsigned route, const char *method, int status, uint64_t usec);

/* A login's outcome rc (an err, or a negative store_rc). Returns rc, for a caller's return. */
int metrics_login(enum metrics_login_method method, int rc);

/*
 * A throttle refused: kind is ratelimit's rule name ("cooldown", "recipient", "ip", ...) or
 * "lockout" (an account throttled after wrong passcodes).
 */
void metrics_throttled(const char *kind);

/* A monotonic clock in microseconds: the start of what metrics_delivery times. */
uint64_t metrics_clock_us(void);

/* A message by channel ("email" or "sms"; else ignored): ok or not, started at start_us. */
void metrics_delivery(const char *channel, int ok, uint64_t start_us);

/* store_run: a transaction attempt begins... */
void metrics_txn_begin(void);
/*
 * ...and ends: committed != 0 counts what it noted; else refused != 0 counts only its
 * throttles; else (retried, failed) nothing.
 */
void metrics_txn_end(int committed, int refused);

/* Berkeley DB's statistics, read at render time (store_stats fills it). */
struct metrics_bdb {
	int valid; /* 0: the environment is not available: the section is left out */
	uint64_t commits, aborts;
	uint64_t lock_conflicts, deadlocks, lock_timeouts;
	uint64_t cache_hits, cache_misses;
	uint64_t cache_bytes; /* the cache's size, fixed when the regions were created */
	uint64_t cache_pages, cache_evictions; /* pages in the cache now; pages evicted */
	uint64_t log_bytes;
	uint64_t last_checkpoint; /* unix time, 0: none yet */
	/* A site of a replication group (replicated 0: the section is left out). */
	int replicated;
	uint64_t rep_master, rep_sites, rep_connected, rep_unacknowledged;
	long long rep_lag_ms; /* see store_rep_status; -1: not known (the family is left out) */
};

/*
 * Append the exposition (Prometheus text format 0.0.4) to out: every family with HELP and
 * TYPE, the region's counters (none when no region is mapped) and bdb's (when valid). The
 * route label is the route's pattern, "unmatched" for paths no route has.
 */
void metrics_render(struct sbuf *out, const struct metrics_bdb *bdb);

/*
 * 1 when addr (an IPv4 or IPv6 address in text) is in the comma- or space-separated list of
 * CIDRs (a bare address is /32 or /128; an IPv4-mapped IPv6 address matches as IPv4), 0 when
 * not, -1 when the list is malformed.
 */
int metrics_cidr_match(const char *list, const char *addr);

/* 1 when list is a valid CIDR list for metrics_cidr_match (empty: valid), else 0. */
int metrics_cidr_list_valid(const char *list);

#endif
