#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "sbuf.h"

#define REGION_FILE "otlogin.metrics"
/* "otlmetr" and the layout's version: bump it when struct region changes. */
#define REGION_MAGIC 0x6f746c6d65747201ull

/* The HTTP series by route, method and status: an open-addressing table (see http_slot). */
#define HTTP_SLOTS 4096
#define METHODS 8

static const char *const method_names[METHODS] = {"GET",    "HEAD",    "POST",	"PUT",
						  "DELETE", "OPTIONS", "PATCH", "other"};

/* Upper bounds in microseconds and as the le label; the last bucket is +Inf. */
static const uint64_t bucket_us[METRICS_BUCKETS - 1] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[METRICS_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};

static const char *const channel_names[METRICS_CHANNELS] = {"email", "sms"};

/* ratelimit's kinds (and lockout) and their labels: the last is "other". */
static const char *const rule_kinds[METRICS_RULES - 1] = {
    "cooldown",	  "recipient",	     "client-sends",	    "ip",
    "identifier", "client-attempts", "client-secret-delay", "lockout"};
static const char *const rule_names[METRICS_RULES] = {
    "cooldown",	       "recipient",	"client_sends", "ip_attempts", "identifier_attempts",
    "client_attempts", "client_secret", "lockout",	"other"};

static const char *const login_method_names[METRICS_LOGIN_METHODS] = {"otp", "magic_link",
								      "session"};
enum login_outcome {
	LO_SUCCESS,
	LO_BAD_CREDENTIALS,
	LO_EXPIRED,
	LO_LOCKED,
	LO_RATE_LIMITED,
	LO_REFUSED,
	LO_INVALID,
	LO_ERROR
};
static const char *const outcome_names[METRICS_LOGIN_OUTCOMES] = {
    "success",	    "bad_credentials", "expired", "locked",
    "rate_limited", "refused",	       "invalid", "error"};

struct hist {
	uint64_t bucket[METRICS_BUCKETS]; /* not cumulative: rendering adds them up */
	uint64_t sum_us;
};

/* key 0: free; else 1 + (route * METHODS + method) * 1024 + status. */
struct http_slot {
	uint64_t key;
	uint64_t n;
};

/* The shared region: only atomic reads and adds touch it once it is mapped. */
struct region {
	uint64_t magic;
	uint64_t layout;
	uint64_t created; /* unix time */
	uint64_t counters[METRIC_COUNTERS];
	uint64_t logins[METRICS_LOGIN_METHODS][METRICS_LOGIN_OUTCOMES];
	uint64_t throttled[METRICS_RULES];
	uint64_t messages[METRICS_CHANNELS][2]; /* [failed, sent] */
	struct hist delivery[METRICS_CHANNELS];
	struct hist http_time[METRICS_MAX_ROUTES];
	uint64_t http_dropped; /* the series table was full (never seen: a safety net) */
	struct http_slot http[HTTP_SLOTS];
};

static struct region *region;
/* The route table: slot r (1 + index) is named names[r - 1]; canon[r] is the first slot of
 * the same pattern, under which its requests are counted. */
static const char *const *names;
static unsigned nnames;
static unsigned char canon[METRICS_MAX_ROUTES];

/* What the running transaction attempt noted (store_run: metrics_txn_begin/end). */
static int in_txn;
static uint64_t pend_counters[METRIC_COUNTERS];
static uint64_t pend_throttled[METRICS_RULES];

static void add(uint64_t *p, uint64_t n)
{
	__atomic_fetch_add(p, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* FNV-1a over s and its NUL, into h. */
static uint64_t fnv(uint64_t h, const char *s)
{
	do
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	while (*s++ != '\0');
	return h;
}

/* The identity of a layout: the route table's patterns in order and this build's shape. */
static uint64_t layout_id(const char *const *routes, unsigned n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ sizeof(struct region);

	for (unsigned i = 0; i < n; i++)
		h = fnv(h, routes[i]);
	return h;
}

/* Fresh counters: under the file's lock, before anyone else maps it. */
static void region_reset(struct region *r, uint64_t layout)
{
	memset(r, 0, sizeof(*r));
	r->layout = layout;
	r->created = (uint64_t)time(NULL);
	__atomic_store_n(&r->magic, REGION_MAGIC, __ATOMIC_RELEASE);
}

/*
 * path opened (created 0600 when absent) and locked: one opener at a time decides whether the
 * file is fresh, ours or to be replaced. Also checked to be still the file at path, since a
 * replacement may have been renamed over it while this process waited. fd, or -1.
 */
static int open_locked(const char *path)
{
	for (int tries = 0; tries < 10; tries++) {
		struct stat held, now;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return -1;
		while (flock(fd, LOCK_EX) < 0)
			if (errno != EINTR) {
				close(fd);
				return -1;
			}
		if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev &&
		    held.st_ino == now.st_ino)
			return fd;
		close(fd); /* not mapped: closing releases the lock */
	}
	errno = EAGAIN;
	return -1;
}

/* fd's file sized for a region, its blocks reserved, and mapped; NULL on failure (errno). */
static struct region *map_file(int fd)
{
	void *map;

	if (ftruncate(fd, sizeof(struct region)) < 0)
		return NULL;
	/* Blocks reserved now: a write to a hole on a full disk would be SIGBUS later. */
	if ((errno = posix_fallocate(fd, 0, sizeof(struct region))) != 0 && errno != EOPNOTSUPP)
		return NULL;
	map = mmap(NULL, sizeof(struct region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return map == MAP_FAILED ? NULL : map;
}

/*
 * A fresh region renamed over path. Never reset or resized in place: a process that still
 * maps the old file (a worker of the previous binary, until it is restarted) would count into
 * counters that now mean something else, or fault (SIGBUS) on a mapping that shrank. It goes
 * on with the old file, which nobody reads any more. NULL on failure (errno).
 */
static struct region *replace(const char *path, uint64_t layout)
{
	char tmp[PATH_MAX];
	struct region *r = NULL;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	unlink(tmp); /* left by a process of this pid that died here */
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return NULL;
	r = map_file(fd);
	if (r != NULL) {
		region_reset(r, layout);
		if (rename(tmp, path) < 0) {
			munmap(r, sizeof(*r));
			r = NULL;
		}
	}
	if (r == NULL)
		unlink(tmp);
	close(fd);
	return r;
}

int metrics_open(const char *dir, const char *const *routes, unsigned nroutes)
{
	char path[PATH_MAX];
	struct stat st;
	struct region *map = NULL;
	uint64_t layout;
	int fd = -1, rc = -1;

	if (region != NULL)
		return 0;
	if (nroutes >= METRICS_MAX_ROUTES)
		nroutes = METRICS_MAX_ROUTES - 1;
	layout = layout_id(routes, nroutes);
	for (unsigned r = 0; r <= nroutes; r++) {
		canon[r] = (unsigned char)r;
		for (unsigned q = 1; r > 0 && q < r; q++)
			if (strcmp(routes[q - 1], routes[r - 1]) == 0) {
				canon[r] = (unsigned char)q;
				break;
			}
	}
	names = routes;
	nnames = nroutes;
	if (snprintf(path, sizeof(path), "%s/" REGION_FILE, dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		goto out;
	}
	/* The counters are not secret, but like everything in the directory they are private. */
	if ((fd = open_locked(path)) < 0 || fstat(fd, &st) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto out;
	}
	if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) < 0)
		goto out;
	if (st.st_size == 0) {
		/* Just created (with the environment, or after it was removed): nobody maps it. */
		if ((map = map_file(fd)) == NULL)
			goto out;
		region_reset(map, layout);
	} else if (st.st_size != (off_t)sizeof(struct region) || (map = map_file(fd)) == NULL ||
		   map->magic != REGION_MAGIC || map->layout != layout) {
		if (map != NULL)
			munmap(map, sizeof(*map));
		log_info("metrics: %s has another layout: the counters start again", path);
		if ((map = replace(path, layout)) == NULL)
			goto out;
	}
	region = map;
	rc = 0;
out:
	if (rc < 0)
		log_warn("metrics: cannot map %s (%s): nothing is counted", path, strerror(errno));
	/*
	 * Unlocked explicitly: the mapping keeps the open file description, which holds the
	 * lock, alive after close (the other workers would wait for good).
	 */
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
	return rc;
}

void metrics_close(void)
{
	if (region != NULL)
		munmap(region, sizeof(struct region));
	region = NULL;
}

int metrics_enabled(void)
{
	return region != NULL;
}

void metrics_count(enum metrics_counter which)
{
	if (region == NULL || (unsigned)which >= METRIC_COUNTERS)
		return;
	if (in_txn)
		pend_counters[which]++;
	else
		add(&region->counters[which], 1);
}

static unsigned method_index(const char *method)
{
	for (unsigned i = 0; method != NULL && i < METHODS - 1; i++)
		if (strcmp(method, method_names[i]) == 0)
			return i;
	return METHODS - 1;
}

static unsigned bucket_of(uint64_t usec)
{
	unsigned i = 0;

	while (i < METRICS_BUCKETS - 1 && usec > bucket_us[i])
		i++;
	return i;
}

static void observe(struct hist *h, uint64_t usec)
{
	add(&h->bucket[bucket_of(usec)], 1);
	add(&h->sum_us, usec);
}

/* The slot of key, claimed when new; NULL when the table is full. */
static struct http_slot *http_slot(uint64_t key)
{
	/* Fibonacci hashing: neighbouring keys spread over the table. */
	unsigned i = (unsigned)((key * 0x9e3779b97f4a7c15ull) >> 52) % HTTP_SLOTS;

	for (unsigned probes = 0; probes < HTTP_SLOTS; probes++, i = (i + 1) % HTTP_SLOTS) {
		uint64_t k = __atomic_load_n(&region->http[i].key, __ATOMIC_ACQUIRE), zero = 0;

		if (k == key)
			return &region->http[i];
		if (k != 0)
			continue;
		/* Another process may claim it first, for this key or another. */
		if (__atomic_compare_exchange_n(&region->http[i].key, &zero, key, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
		    zero == key)
			return &region->http[i];
	}
	return NULL;
}

void metrics_http(unsigned route, const char *method, int status, uint64_t usec)
{
	struct http_slot *slot;

	if (region == NULL)
		return;
	route = route <= nnames ? canon[route] : 0;
	if (status < 100 || status > 999)
		status = 0;
	slot = http_slot(1 + ((uint64_t)route * METHODS + method_index(method)) * 1024 +
			 (uint64_t)status);
	if (slot != NULL)
		add(&slot->n, 1);
	else
		add(&region->http_dropped, 1);
	observe(&region->http_time[route], usec);
}

static enum login_outcome outcome_of(int rc)
{
	switch (rc) {
	case ERR_NONE:
		return LO_SUCCESS;
	case ERR_BAD_CREDENTIALS:
		return LO_BAD_CREDENTIALS;
	case ERR_CODE_EXPIRED:
		return LO_EXPIRED;
	case ERR_LOCKED:
		return LO_LOCKED;
	case ERR_RATE_LIMITED:
		return LO_RATE_LIMITED;
	case ERR_USER_NOT_FOUND:
	case ERR_USER_NOT_ACTIVE:
	case ERR_SESSION_NOT_FOUND:
	case ERR_ORG_NOT_MEMBER:
	case ERR_FORBIDDEN:
		return LO_REFUSED;
	case ERR_INVALID_INPUT:
	case ERR_INVALID_TOKEN:
	case ERR_NOT_FOUND:
		return LO_INVALID;
	default:
		return LO_ERROR; /* ERR_UNAVAILABLE, ERR_INTERNAL, a store_rc */
	}
}

int metrics_login(enum metrics_login_method method, int rc)
{
	if (region != NULL && (unsigned)method < METRICS_LOGIN_METHODS)
		add(&region->logins[method][outcome_of(rc)], 1);
	return rc;
}

void metrics_throttled(const char *kind)
{
	unsigned i = 0;

	if (region == NULL)
		return;
	while (i < METRICS_RULES - 1 && (kind == NULL || strcmp(kind, rule_kinds[i]) != 0))
		i++;
	/* A transaction refused by several rules counts each once, even when it ran twice. */
	if (in_txn)
		pend_throttled[i] = 1;
	else
		add(&region->throttled[i], 1);
}

uint64_t metrics_clock_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void metrics_delivery(const char *channel, int ok, uint64_t start_us)
{
	uint64_t now = metrics_clock_us();
	unsigned ch;

	if (region == NULL || channel == NULL)
		return;
	for (ch = 0; ch < METRICS_CHANNELS && strcmp(channel, channel_names[ch]) != 0; ch++)
		;
	if (ch == METRICS_CHANNELS)
		return;
	add(&region->messages[ch][ok ? 1 : 0], 1);
	observe(&region->delivery[ch], now > start_us ? now - start_us : 0);
}

void metrics_txn_begin(void)
{
	memset(pend_counters, 0, sizeof(pend_counters));
	memset(pend_throttled, 0, sizeof(pend_throttled));
	in_txn = 1;
}

void metrics_txn_end(int committed, int refused)
{
	in_txn = 0;
	if (region == NULL)
		return;
	for (unsigned i = 0; committed && i < METRIC_COUNTERS; i++)
		if (pend_counters[i])
			add(&region->counters[i], pend_counters[i]);
	for (unsigned i = 0; (committed || refused) && i < METRICS_RULES; i++)
		if (pend_throttled[i])
			add(&region->throttled[i], pend_throttled[i]);
}

/* ---- the exposition ---------------------------------------------------------------------- */

static void family(struct sbuf *out, const char *name, const char *type, const char *help)
{
	sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void simple(struct sbuf *out, const char *name, const char *type, const char *help,
		   uint64_t value)
{
	family(out, name, type, help);
	sbuf_printf(out, "%s %llu\n", name, (unsigned long long)value);
}

/* Histogram samples of h under labels ("route=\"/x\"", no braces; never empty here). */
static void hist_samples(struct sbuf *out, const char *name, const char *labels,
			 const struct hist *h)
{
	uint64_t cum = 0, sum = get(&h->sum_us);

	for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
		cum += get(&h->bucket[i]);
		sbuf_printf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, bucket_le[i],
			    (unsigned long long)cum);
	}
	/* The count is the buckets' sum, so that it always equals the +Inf bucket. */
	sbuf_printf(out, "%s_sum{%s} %llu.%06llu\n", name, labels,
		    (unsigned long long)(sum / 1000000u), (unsigned long long)(sum % 1000000u));
	sbuf_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

static uint64_t hist_total(const struct hist *h)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < METRICS_BUCKETS; i++)
		n += get(&h->bucket[i]);
	return n;
}

/*
 * A route pattern as a label value: the table's patterns hold no quote, backslash or newline,
 * but a label must never be broken by one, so such a byte is replaced.
 */
static void route_label(char *buf, size_t len, unsigned r)
{
	const char *name = r == 0 || r > nnames ? "unmatched" : names[r - 1];

	snprintf(buf, len, "%s", name);
	for (char *p = buf; *p; p++)
		if (*p == '"' || *p == '\\' || *p == '\n')
			*p = '_';
}

static int key_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void render_http(struct sbuf *out)
{
	/* Key and count pairs, sorted by key: a stable order for people reading it. */
	uint64_t(*series)[2] = calloc(HTTP_SLOTS, sizeof(*series));
	size_t ns = 0;
	char route[256], labels[320];

	family(out, "otlogin_http_requests_total", "counter",
	       "HTTP requests answered, by route pattern, method and status.");
	for (unsigned i = 0; series != NULL && i < HTTP_SLOTS; i++) {
		uint64_t key = __atomic_load_n(&region->http[i].key, __ATOMIC_ACQUIRE);
		if (key != 0) {
			series[ns][0] = key;
			series[ns++][1] = get(&region->http[i].n);
		}
	}
	if (series == NULL)
		out->oom = 1;
	qsort(series, ns, sizeof(*series), key_cmp);
	for (size_t i = 0; i < ns; i++) {
		uint64_t k = series[i][0] - 1;
		unsigned status = (unsigned)(k % 1024), mr = (unsigned)(k / 1024);
		route_label(route, sizeof(route), mr / METHODS);
		sbuf_printf(out,
			    "otlogin_http_requests_total{route=\"%s\",method=\"%s\",status=\"%u\"} "
			    "%llu\n",
			    route, method_names[mr % METHODS], status,
			    (unsigned long long)series[i][1]);
	}
	free(series);
	simple(out, "otlogin_http_requests_unlabelled_total", "counter",
	       "HTTP requests counted without labels: the series table was full.",
	       get(&region->http_dropped));
	family(out, "otlogin_http_request_duration_seconds", "histogram",
	       "Time from reading a request to writing its answer, by route pattern.");
	for (unsigned r = 0; r <= nnames; r++) {
		if (canon[r] != r || hist_total(&region->http_time[r]) == 0)
			continue;
		route_label(route, sizeof(route), r);
		snprintf(labels, sizeof(labels), "route=\"%s\"", route);
		hist_samples(out, "otlogin_http_request_duration_seconds", labels,
			     &region->http_time[r]);
	}
}

static void render_flows(struct sbuf *out)
{
	char labels[128];

	family(out, "otlogin_messages_sent_total", "counter",
	       "Login messages handed to the mail relay or SMS backend, by channel and outcome.");
	for (unsigned ch = 0; ch < METRICS_CHANNELS; ch++)
		for (unsigned ok = 0; ok < 2; ok++)
			sbuf_printf(out,
				    "otlogin_messages_sent_total{channel=\"%s\",outcome=\"%s\"} "
				    "%llu\n",
				    channel_names[ch], ok ? "sent" : "failed",
				    (unsigned long long)get(&region->messages[ch][ok]));
	family(out, "otlogin_message_delivery_duration_seconds", "histogram",
	       "Time the mail relay or SMS backend took to take a message, by channel.");
	for (unsigned ch = 0; ch < METRICS_CHANNELS; ch++) {
		snprintf(labels, sizeof(labels), "channel=\"%s\"", channel_names[ch]);
		hist_samples(out, "otlogin_message_delivery_duration_seconds", labels,
			     &region->delivery[ch]);
	}
	family(out, "otlogin_logins_total", "counter",
	       "Authenticate attempts, by login method and outcome.");
	for (unsigned m = 0; m < METRICS_LOGIN_METHODS; m++)
		for (unsigned o = 0; o < METRICS_LOGIN_OUTCOMES; o++)
			sbuf_printf(out,
				    "otlogin_logins_total{method=\"%s\",outcome=\"%s\"} %llu\n",
				    login_method_names[m], outcome_names[o],
				    (unsigned long long)get(&region->logins[m][o]));
	family(out, "otlogin_throttled_total", "counter",
	       "Requests a rate limit or an account lockout held back, by rule.");
	for (unsigned i = 0; i < METRICS_RULES; i++)
		sbuf_printf(out, "otlogin_throttled_total{rule=\"%s\"} %llu\n", rule_names[i],
			    (unsigned long long)get(&region->throttled[i]));
	simple(out, "otlogin_refresh_rotations_total", "counter", "Refresh tokens rotated.",
	       get(&region->counters[METRIC_REFRESH_ROTATIONS]));
	simple(out, "otlogin_refresh_reuse_detected_total", "counter",
	       "Rotated refresh tokens presented again (their family and session revoked).",
	       get(&region->counters[METRIC_REFRESH_REUSE]));
	simple(out, "otlogin_sessions_created_total", "counter", "Login sessions created.",
	       get(&region->counters[METRIC_SESSIONS_CREATED]));
	simple(out, "otlogin_sessions_ended_total", "counter",
	       "Login sessions ended by logout or revocation (not by expiry).",
	       get(&region->counters[METRIC_SESSIONS_ENDED]));
}

static void render_bdb(struct sbuf *out, const struct metrics_bdb *b)
{
	if (region != NULL) {
		simple(out, "otlogin_store_retries_total", "counter",
		       "Transactions run again after a lock conflict.",
		       get(&region->counters[METRIC_STORE_RETRIES]));
		simple(out, "otlogin_bdb_checkpoints_total", "counter",
		       "Berkeley DB checkpoints written by otlogin.",
		       get(&region->counters[METRIC_CHECKPOINTS]));
		simple(out, "otlogin_bdb_recoveries_total", "counter",
		       "Recoveries of the Berkeley DB environment run by otlogin.",
		       get(&region->counters[METRIC_RECOVERIES]));
		simple(
		    out, "otlogin_workers_started_total", "counter",
		    "Worker processes that opened the database to serve (plain CGI: each request).",
		    get(&region->counters[METRIC_WORKERS_STARTED]));
		simple(out, "otlogin_worker_restarts_total", "counter",
		       "Workers otlogin.fcgi -w started in place of one that ended.",
		       get(&region->counters[METRIC_WORKER_RESTARTS]));
	}
	if (b == NULL || !b->valid)
		return;
	/* Berkeley DB's own statistics live in its regions: a recovery starts them again. */
	simple(out, "otlogin_bdb_commits_total", "counter",
	       "Berkeley DB transactions committed (since the environment was last recovered).",
	       b->commits);
	simple(out, "otlogin_bdb_aborts_total", "counter",
	       "Berkeley DB transactions aborted (since the environment was last recovered).",
	       b->aborts);
	simple(out, "otlogin_bdb_lock_conflicts_total", "counter",
	       "Berkeley DB lock requests not granted at once (since the last recovery).",
	       b->lock_conflicts);
	simple(out, "otlogin_bdb_deadlocks_total", "counter",
	       "Berkeley DB deadlocks (since the last recovery).", b->deadlocks);
	simple(out, "otlogin_bdb_lock_timeouts_total", "counter",
	       "Berkeley DB lock and transaction timeouts (since the last recovery).",
	       b->lock_timeouts);
	simple(out, "otlogin_bdb_cache_hits_total", "counter",
	       "Berkeley DB pages found in the cache (since the last recovery).", b->cache_hits);
	simple(out, "otlogin_bdb_cache_misses_total", "counter",
	       "Berkeley DB pages read into the cache (since the last recovery).", b->cache_misses);
	simple(out, "otlogin_bdb_log_written_bytes_total", "counter",
	       "Bytes written to the Berkeley DB log (since the last recovery).", b->log_bytes);
	simple(out, "otlogin_bdb_last_checkpoint_timestamp_seconds", "gauge",
	       "Unix time of the last Berkeley DB checkpoint (0: none since the last recovery).",
	       b->last_checkpoint);
	if (!b->replicated)
		return;
	simple(out, "otlogin_replication_master", "gauge",
	       "1 when this site is the master of its replication group, else 0.", b->rep_master);
	simple(out, "otlogin_replication_sites", "gauge",
	       "Sites in the replication group, this one included.", b->rep_sites);
	simple(out, "otlogin_replication_connected_peers", "gauge",
	       "Other sites the replication process is connected to.", b->rep_connected);
	simple(out, "otlogin_replication_unacknowledged_commits_total", "counter",
	       "Commits a quorum did not acknowledge in time, answered 503 (since the last "
	       "recovery).",
	       b->rep_unacknowledged);
	if (b->rep_lag_ms < 0)
		return;
	family(out, "otlogin_replication_lag_seconds", "gauge",
	       "Age of the newest master write this site holds (0 on the master; the master "
	       "writes one every second).");
	sbuf_printf(out, "otlogin_replication_lag_seconds %lld.%03lld\n", b->rep_lag_ms / 1000,
		    b->rep_lag_ms % 1000);
}

void metrics_render(struct sbuf *out, const struct metrics_bdb *bdb)
{
	if (region != NULL) {
		simple(out, "otlogin_metrics_created_timestamp_seconds", "gauge",
		       "Unix time when these counters started (the environment was created).",
		       get(&region->created));
		render_http(out);
		render_flows(out);
	}
	render_bdb(out, bdb);
}

/* ---- access by address --------------------------------------------------------------------- */

/* addr as 16 bytes (IPv4 as ::ffff:a.b.c.d) and *v4 when it was IPv4 (or mapped). */
static int parse_addr(const char *s, unsigned char out[16], int *v4)
{
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		*v4 = 1;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out) != 1)
		return -1;
	*v4 = IN6_IS_ADDR_V4MAPPED((struct in6_addr *)out);
	return 0;
}

/* One "addr[/bits]" of len bytes: 0 with the network and its bits (out of 128), or -1. */
static int parse_cidr(const char *s, size_t len, unsigned char net[16], unsigned *bits)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long n;
	int v4;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (parse_addr(buf, net, &v4) < 0)
		return -1;
	/* Only what was written as IPv4 takes IPv4 prefix lengths. */
	v4 = strchr(buf, ':') == NULL;
	*bits = 128;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		errno = 0;
		n = strtoul(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || n > (v4 ? 32u : 128u))
			return -1;
		*bits = (unsigned)n + (v4 ? 96u : 0u);
	}
	return 0;
}

static int prefix_equal(const unsigned char a[16], const unsigned char b[16], unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return 0;
	return rest == 0 || ((a[whole] ^ b[whole]) & (0xff00u >> rest) & 0xff) == 0;
}

int metrics_cidr_match(const char *list, const char *addr)
{
	static const char sep[] = ", \t";
	unsigned char client[16], net[16];
	unsigned bits;
	int v4, match = 0, have_client;

	have_client = addr != NULL && parse_addr(addr, client, &v4) == 0;
	for (const char *p = list + strspn(list, sep); *p; p += strspn(p, sep)) {
		size_t len = strcspn(p, sep);
		if (parse_cidr(p, len, net, &bits) < 0)
			return -1;
		if (have_client && prefix_equal(net, client, bits))
			match = 1;
		p += len;
	}
	return match;
}

int metrics_cidr_list_valid(const char *list)
{
	return metrics_cidr_match(list, NULL) == 0;
}
