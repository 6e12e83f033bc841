#include "supervise.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "clock.h"
#include "log.h"

/* A slot restarts at most once a second, so a worker that cannot start does not spin. */
#define RESTART_MS 1000
/* Workers get this long to finish the request they serve after SIGTERM, then SIGKILL. */
#define STOP_GRACE_S 30

struct worker {
	pid_t pid; /* 0: none running in this slot */
	struct timespec started;
	int ever_started;
};

static volatile sig_atomic_t stop_requested;
/* In a worker: it replaces one that ended (supervise_restarted). */
static int restarted;

static void on_stop(int sig)
{
	stop_requested = sig;
}

/* SIGCHLD and SIGALRM only have to end sigsuspend(). */
static void on_wake(int sig)
{
	(void)sig;
}

#define NSIGNALS 4
static const int handled[NSIGNALS] = {SIGTERM, SIGINT, SIGCHLD, SIGALRM};

/* What the caller had, for the workers. */
struct callers {
	sigset_t mask;
	struct sigaction act[NSIGNALS];
};

/* Fork a worker into w. Returns 1 in the worker, 0 in the supervisor. */
static int start(struct worker *w, const struct callers *c, pid_t supervisor)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_err("supervise: fork: %s", strerror(errno));
		return 0;
	}
	if (pid == 0) {
		restarted = w->ever_started;
		for (int i = 0; i < NSIGNALS; i++)
			sigaction(handled[i], &c->act[i], NULL);
		sigprocmask(SIG_SETMASK, &c->mask, NULL);
#ifdef __linux__
		/* A worker outlives a killed supervisor by one request at most. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != supervisor)
			_exit(0);
#endif
		return 1;
	}
	w->pid = pid;
	w->ever_started = 1;
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	return 0;
}

static void reap(struct worker *w, unsigned n)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			if (w[i].pid != pid)
				continue;
			w[i].pid = 0;
			if (stop_requested)
				break;
			if (WIFSIGNALED(status))
				log_err("worker %ld was killed by signal %d: starting another",
					(long)pid, WTERMSIG(status));
			else
				log_warn("worker %ld exited with status %d: starting another",
					 (long)pid, WEXITSTATUS(status));
		}
	}
}

static unsigned running(const struct worker *w, unsigned n)
{
	unsigned r = 0;
	for (unsigned i = 0; i < n; i++)
		r += w[i].pid != 0;
	return r;
}

static void signal_all(const struct worker *w, unsigned n, int sig)
{
	for (unsigned i = 0; i < n; i++)
		if (w[i].pid != 0)
			kill(w[i].pid, sig);
}

/* SIGTERM to every worker, SIGKILL to those still there after the grace time; then exit. */
static _Noreturn void stop_all(struct worker *w, unsigned n, const sigset_t *wait_mask)
{
	struct timespec t0;
	int killed = 0;

	log_info("supervise: signal %d, stopping %u workers", (int)stop_requested, running(w, n));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	signal_all(w, n, SIGTERM);
	alarm(STOP_GRACE_S);
	while (running(w, n) > 0) {
		sigsuspend(wait_mask);
		reap(w, n);
		if (!killed && ms_since(&t0) >= STOP_GRACE_S * 1000L) {
			log_err("supervise: %u workers did not stop in %d s: killing them",
				running(w, n), STOP_GRACE_S);
			signal_all(w, n, SIGKILL);
			killed = 1;
		}
	}
	free(w);
	exit(0);
}

void supervise(unsigned n)
{
	struct worker *w = calloc(n, sizeof(*w));
	struct callers callers;
	sigset_t block, wait_mask;
	pid_t self = getpid();

	if (w == NULL)
		fatal("supervise: out of memory");
	/* The handled signals arrive only inside sigsuspend(): no wake-up can be missed. */
	sigemptyset(&block);
	for (int i = 0; i < NSIGNALS; i++)
		sigaddset(&block, handled[i]);
	sigprocmask(SIG_BLOCK, &block, &callers.mask);
	wait_mask = callers.mask;
	for (int i = 0; i < NSIGNALS; i++) {
		int stops = handled[i] == SIGTERM || handled[i] == SIGINT;
		struct sigaction sa = {.sa_handler = stops ? on_stop : on_wake};
		sigemptyset(&sa.sa_mask);
		sigaction(handled[i], &sa, &callers.act[i]);
		sigdelset(&wait_mask, handled[i]);
	}
	log_info("supervise: keeping %u workers", n);
	while (!stop_requested) {
		int later = 0;

		for (unsigned i = 0; i < n; i++) {
			if (w[i].pid != 0)
				continue;
			if (w[i].ever_started && ms_since(&w[i].started) < RESTART_MS) {
				later = 1;
				continue;
			}
			if (start(&w[i], &callers, self)) {
				free(w);
				return;
			}
			later |= w[i].pid == 0; /* fork failed: try again */
		}
		if (later)
			alarm(1);
		sigsuspend(&wait_mask);
		reap(w, n);
	}
	stop_all(w, n, &wait_mask);
}

int supervise_restarted(void)
{
	return restarted;
}
