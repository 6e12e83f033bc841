#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* Longest line written; a longer message is cut. */
#define LINE_SIZE 2048
/* Lines kept before log_open, for the configured log (the configuration's own warnings). */
#define EARLY_LINES 8
/* A file log is checked for rotation at most this often (milliseconds). */
#define ROTATE_CHECK_MS 1000

enum log_target { TO_STDERR, TO_SYSLOG, TO_FILE };

static const char *log_prog = "otlogin";
static enum log_level log_max = LOG_LEVEL_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

static enum log_target log_to = TO_STDERR;
static int log_opened; /* log_open has run: nothing more is kept for it */
static struct logfile log_file = {.fd = -1};
static char log_req[LOG_ID_MAX + 1], log_client[LOG_ID_MAX + 1];

/* Lines logged before log_open. body: where the part syslog gets (from the level) starts. */
static struct early_line {
	enum log_level level;
	size_t body;
	char text[LINE_SIZE];
} early[EARLY_LINES];
static size_t nearly;

void log_init(const char *progname, enum log_level level)
{
	log_prog = progname;
	log_max = level;
}

int log_level_parse(const char *name)
{
	static const char *const short_names[] = {"err", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcmp(name, short_names[i]) == 0 || strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

int log_facility_parse(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} facilities[] = {
	    {"daemon", LOG_DAEMON},	{"user", LOG_USER},	{"auth", LOG_AUTH},
	    {"authpriv", LOG_AUTHPRIV}, {"mail", LOG_MAIL},	{"local0", LOG_LOCAL0},
	    {"local1", LOG_LOCAL1},	{"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
	    {"local4", LOG_LOCAL4},	{"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},
	    {"local7", LOG_LOCAL7},
	};
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(name, facilities[i].name) == 0)
			return facilities[i].code;
	return -1;
}

/* Copy an id into out (LOG_ID_MAX + 1 bytes), cut and with every unsafe character as '_'. */
static void copy_id(char *out, const char *id)
{
	size_t n = 0;

	for (; id != NULL && id[n] != '\0' && n < LOG_ID_MAX; n++) {
		char ch = id[n];
		int safe = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			   (ch >= '0' && ch <= '9') || (ch != '\0' && strchr("-._:@+/=", ch));
		out[n] = safe ? ch : '_';
	}
	out[n] = '\0';
}

void log_set_request(const char *request_id)
{
	copy_id(log_req, request_id);
}

void log_set_client(const char *client_id)
{
	copy_id(log_client, client_id);
}

/* A file log's descriptor: appending, created 0640 whatever the process's umask. */
static int open_file(const char *path)
{
	mode_t old = umask(027);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	umask(old);
	return fd;
}

/*
 * Follow a rotation: when the path no longer names the open file (renamed or removed), open
 * it anew. A stat a second at most, so that a busy worker does not pay one per line. When the
 * new file cannot be opened the lines keep going to the old one rather than nowhere.
 */
static void reopen_if_rotated(struct logfile *f)
{
	struct stat by_path, by_fd;
	int fd;

	if (ms_since(&f->checked) < ROTATE_CHECK_MS)
		return;
	clock_gettime(CLOCK_MONOTONIC, &f->checked);
	if (stat(f->path, &by_path) == 0 && fstat(f->fd, &by_fd) == 0 &&
	    by_path.st_dev == by_fd.st_dev && by_path.st_ino == by_fd.st_ino)
		return;
	fd = open_file(f->path);
	if (fd < 0)
		return;
	close(f->fd);
	f->fd = fd;
}

/* One write per line so that the lines of concurrent workers never interleave. */
static void write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

int logfile_open(struct logfile *f, const char *path)
{
	int fd = open_file(path);
	char *copy;

	if (fd < 0)
		return -1;
	copy = strdup(path);
	if (copy == NULL) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	logfile_close(f);
	f->fd = fd;
	f->path = copy;
	clock_gettime(CLOCK_MONOTONIC, &f->checked);
	return 0;
}

void logfile_write(struct logfile *f, const char *line, size_t len)
{
	if (f->fd < 0)
		return;
	reopen_if_rotated(f);
	write_all(f->fd, line, len);
}

void logfile_close(struct logfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	f->fd = -1;
	f->path = NULL;
}

/* Send one formatted line (NUL-terminated, room for a newline) to the target. */
static void emit(enum log_level level, char *line, size_t len, size_t body)
{
	if (log_to == TO_SYSLOG) {
		syslog(syslog_prio[level], "%s", line + body);
		return;
	}
	line[len] = '\n';
	if (log_to == TO_FILE) {
		logfile_write(&log_file, line, len + 1);
	} else {
		write_all(STDERR_FILENO, line, len + 1);
	}
	line[len] = '\0';
}

/* Format and send one line; also_stderr: to stderr as well, whatever the target. */
static void log_vwrite(enum log_level level, int also_stderr, const char *fmt, va_list ap)
    __attribute__((format(__printf__, 3, 0)));
static void log_vwrite(enum log_level level, int also_stderr, const char *fmt, va_list ap)
{
	char line[LINE_SIZE], stamp[32];
	struct timespec now;
	struct tm tm;
	size_t body, len;
	int n;

	if (level > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld] ", stamp, now.tv_nsec / 1000000L,
		     log_prog, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	body = (size_t)n;
	n = snprintf(line + body, sizeof(line) - body, "%s req=%s%s%s: ", level_names[level],
		     log_req[0] ? log_req : "-", log_client[0] ? " client=" : "", log_client);
	if (n < 0 || (size_t)n >= sizeof(line) - body)
		return;
	/* One byte stays free for the newline. */
	vsnprintf(line + body + n, sizeof(line) - 1 - body - n, fmt, ap);
	/* A message never makes a second line, nor carries a terminal's control sequences. */
	for (char *p = line + body + n; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	len = strlen(line);
	if (!log_opened && nearly < EARLY_LINES) {
		early[nearly].level = level;
		early[nearly].body = body;
		memcpy(early[nearly].text, line, len + 1);
		nearly++;
	}
	emit(level, line, len, body);
	if (also_stderr && log_to != TO_STDERR) {
		line[len] = '\n';
		write_all(STDERR_FILENO, line, len + 1);
	}
}

int log_open(const char *target, int facility, char *err, size_t errlen)
{
	if (strcmp(target, "stderr") == 0) {
		log_to = TO_STDERR;
	} else if (strcmp(target, "syslog") == 0) {
		struct stat st;
		/* Said while the lines still go to stderr: without a listener syslog drops them. */
		if (stat(_PATH_LOG, &st) < 0)
			log_warn(
			    "syslog: %s: %s: no syslog daemon listens, the log is lost ([server] "
			    "log = FILE or stderr to keep it)",
			    _PATH_LOG, strerror(errno));
		openlog(log_prog, LOG_PID, facility);
		log_to = TO_SYSLOG;
	} else {
		if (logfile_open(&log_file, target) < 0) {
			snprintf(err, errlen, "cannot open the log file %s: %s", target,
				 strerror(errno));
			return -1;
		}
		log_to = TO_FILE;
	}
	/* What stderr already has need not be written there twice. */
	for (size_t i = 0; i < nearly && log_to != TO_STDERR; i++)
		emit(early[i].level, early[i].text, strlen(early[i].text), early[i].body);
	nearly = 0;
	log_opened = 1;
	return 0;
}

#define LOG_FN(name, level)                                                                        \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vwrite(level, 0, fmt, ap);                                                     \
		va_end(ap);                                                                        \
	}

LOG_FN(log_err, LOG_LEVEL_ERR)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	/* Whoever started the program by hand sees why it stopped, whatever the log. */
	log_vwrite(LOG_LEVEL_ERR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

static size_t mask_part(const char *s, size_t len, char *out, size_t room)
{
	size_t keep = len < 2 ? len : 2, n = 0;
	for (size_t i = 0; i < keep && n + 1 < room; i++)
		out[n++] = s[i];
	for (int i = 0; i < 3 && n + 1 < room; i++)
		out[n++] = '*';
	return n;
}

char *log_mask_addr(const char *addr, char *out, size_t outlen)
{
	const char *at;
	size_t n;

	if (outlen == 0)
		return out;
	if (addr == NULL) {
		out[0] = '\0';
		return out;
	}
	at = strchr(addr, '@');
	if (at == NULL) {
		n = mask_part(addr, strlen(addr), out, outlen);
	} else {
		n = mask_part(addr, (size_t)(at - addr), out, outlen);
		if (n + 1 < outlen)
			out[n++] = '@';
		n += mask_part(at + 1, strlen(at + 1), out + n, outlen - n);
	}
	out[n] = '\0';
	return out;
}
