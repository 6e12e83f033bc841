/*
 * store_watchdog: the watchdog of the store's worker processes (see store_watchdog in store.h).
 * A process can wait for good on a latch that a killed process held; past its deadline, or
 * once a recovery has replaced the environment under it, the watchdog ends it for the web
 * server to start a fresh one.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

#include "store_bdb_int.h"

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

int region_id_differs(const char *path, const struct region_id *then)
{
	struct region_id now;

	if (then->ino == 0)
		return 0;
	return region_id_of(path, &now) != 0 || now.ino != then->ino || now.dev != then->dev ||
	       now.btime_s != then->btime_s || now.btime_ns != then->btime_ns;
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

void watchdog_note_region(struct store *s)
{
	wd.id.ino = s->region_id.ino = 0;
	if (s->region == NULL && asprintf(&s->region, "%s/__db.001", s->dir) < 0)
		s->region = NULL;
	if (s->region == NULL || region_id_of(s->region, &s->region_id) != 0)
		return;
	if (snprintf(wd.region, sizeof(wd.region), "%s", s->region) < (int)sizeof(wd.region))
		wd.id = s->region_id;
}

void watchdog_arm(unsigned factor)
{
	struct itimerval it = {{1, 0}, {1, 0}};

	if (wd.seconds == 0 || wd.depth++ > 0)
		return;
	wd.elapsed = 0;
	wd.limit_s = wd.seconds * factor;
	setitimer(ITIMER_REAL, &it, NULL);
}

void watchdog_disarm(void)
{
	struct itimerval it = {{0, 0}, {0, 0}};

	if (wd.seconds == 0 || --wd.depth > 0)
		return;
	setitimer(ITIMER_REAL, &it, NULL);
}

void watchdog_forget_region(void)
{
	wd.id.ino = 0;
}
