/*
 * sms_command: hands the message to a program the administrator configured, for SMS
 * providers reached over HTTP (see etc/sms-command-example) or anything else.
 *
 * The contract with the program:
 *   argv    [program, number, sender]: the number in E.164 ("+" and digits), the sender id
 *           or "" when the request gave none. No shell is involved: nothing in the request
 *           can become a shell word or an option of another program.
 *   stdin   the message text, UTF-8, without a trailing newline; then end of file.
 *   stdout  discarded. stderr: the service's own stderr, i.e. the server's error log (never a
 *           response). Do not print the message there: it holds the passcode.
 *   env     only PATH and LANG: the worker's environment under FastCGI holds the request's
 *           headers (the caller's bearer token among them), so none of it is passed on.
 *   exit    0 means the provider accepted the message; anything else is a failed delivery.
 *   time    command_timeout seconds, then the program's whole process group gets SIGKILL.
 *
 * The worker waits with waitpid(WNOHANG) and short sleeps rather than SIGCHLD or alarm(),
 * so no signal handler runs inside a FastCGI worker.
 */
#include "sms.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "log.h"

#define COMMAND_DEFAULT_TIMEOUT 10

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(deadline->tv_sec - now.tv_sec) * 1000L +
	       (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

/* In the child: set up fds, signals and the process group, then exec. Never returns. */
static void run_child(const char *program, const struct sms_message *msg, int in_fd)
{
	char *const argv[] = {(char *)program, (char *)msg->to,
			      (char *)(msg->sender ? msg->sender : ""), NULL};
	char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", NULL};
	sigset_t none;
	int null_fd;

	/* Its own process group, so a timeout also kills what a script started (curl). */
	setpgid(0, 0);
#ifdef __linux__
	/* Do not outlive a worker that is killed while it waits. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
	null_fd = open("/dev/null", O_WRONLY);
	if (dup2(in_fd, 0) < 0 || null_fd < 0 || dup2(null_fd, 1) < 0)
		_exit(126);
	/* Nothing else of the worker's (the FastCGI socket, the database) reaches the program. */
	if (close_range(3, ~0U, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	/* Ignored signals stay ignored across execve: give the program the defaults. */
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(program, argv, envp);
	_exit(127);
}

/*
 * Feed text to the program's stdin without blocking past the deadline. A program that exits
 * without reading it is not an error here: its exit status decides.
 */
static void feed(int fd, const char *text, const struct timespec *deadline)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		struct pollfd pfd = {fd, POLLOUT, 0};
		long left = ms_left(deadline);
		ssize_t n;
		int pr;

		if (left <= 0)
			return;
		pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return;
		n = write(fd, text + off, len - off);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno != EPIPE)
				log_warn("sms_command: writing the message: %s", strerror(errno));
			return;
		}
		off += (size_t)n;
	}
}

static int command_send(const struct sms_conf *conf, const struct sms_message *msg)
{
	unsigned timeout = conf->command_timeout ? conf->command_timeout : COMMAND_DEFAULT_TIMEOUT;
	struct sigaction dfl = {.sa_handler = SIG_DFL}, old_chld;
	struct timespec deadline;
	int in[2], status = 0, rc = SMS_EDELIVER, waited = 0;
	long step = 1;
	pid_t pid;

	if (conf->command == NULL || conf->command[0] != '/') {
		log_err("sms_command: command must be an absolute path");
		return SMS_ECONFIG;
	}
	if (pipe2(in, O_CLOEXEC) < 0) {
		log_err("sms_command: pipe: %s", strerror(errno));
		return SMS_EDELIVER;
	}
	/* An ignored SIGCHLD would make the exit status unobtainable (children auto-reaped). */
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, &old_chld);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout;
	pid = fork();
	if (pid < 0) {
		log_err("sms_command: fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		goto out;
	}
	if (pid == 0)
		run_child(conf->command, msg, in[0]);
	close(in[0]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	feed(in[1], msg->text, &deadline);
	close(in[1]);

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		long left;

		if (w == pid) {
			waited = 1;
			break;
		}
		if (w < 0 && errno != EINTR) {
			log_err("sms_command: waitpid: %s", strerror(errno));
			break;
		}
		left = ms_left(&deadline);
		if (left <= 0)
			break;
		/* Short sleeps first: a provider API answers in tens of milliseconds. */
		poll(NULL, 0, (int)(step < left ? step : left));
		if (step < 50)
			step *= 2;
	}
	if (!waited) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		log_err("sms_command: %s did not finish within %u s and was killed", conf->command,
			timeout);
		goto out;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		rc = SMS_OK;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		log_err("sms_command: %s could not be executed (exit status 127)", conf->command);
	} else if (WIFEXITED(status)) {
		log_err("sms_command: %s refused the message: exit status %d", conf->command,
			WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		log_err("sms_command: %s was killed by signal %d", conf->command, WTERMSIG(status));
	}
out:
	sigaction(SIGCHLD, &old_chld, NULL);
	return rc;
}

const struct sms_backend sms_command_backend = {"command", command_send};
