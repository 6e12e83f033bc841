/*
 * log: one-line messages to stderr, syslog or a file ([server] log). Every line carries the
 * time (RFC 3339, UTC), the program name and pid, the level, the id of the request being
 * served ("req=-" outside one) and, once known, the client_id the request acts for:
 *
 *   2026-12-06T06:01:31.123Z otlogin[4242] info req=5f0c3a9e1b2d7c44 client=abc: message
 *
 * (under syslog the daemon adds its own time, ident and pid: the message starts at the level).
 * Until log_open the lines go to stderr and the first few are kept, so that what is logged
 * while the configuration is read (the TEST MODE warning) also reaches the configured log.
 * Never pass a secret (code, token, client secret, full address) to these functions: use
 * log_mask_addr for addresses.
 */
#ifndef OTLOGIN_LOG_H
#define OTLOGIN_LOG_H

#include <stddef.h>
#include <time.h>

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Longest request id or client_id a line shows; longer ones are cut. */
#define LOG_ID_MAX 64

/* Set the program name shown in each line (and the syslog ident) and the most verbose level. */
void log_init(const char *progname, enum log_level level);
/* Parse "err", "warn", "info", "debug"; -1 when unknown. */
int log_level_parse(const char *name);
/*
 * Parse a syslog facility name: "daemon", "user", "auth", "authpriv", "mail" or "local0" to
 * "local7". Returns its <syslog.h> code (LOG_DAEMON, ...), or -1 when unknown.
 */
int log_facility_parse(const char *name);

/*
 * Send the lines from now on to target: "stderr", "syslog" (facility from log_facility_parse)
 * or the path of a file, opened O_APPEND (created 0640) and reopened by the first line written
 * at least a second after the last check that finds the path names another file or none (it
 * was rotated), so that logrotate needs neither copytruncate nor a signal to each process.
 * The lines kept since log_init are written there first. syslog without a listener at
 * /dev/log is said on stderr (its lines would be lost). Returns 0, or -1 with a message in err
 * (size errlen) and the lines still going to stderr; "stderr" and "syslog" never fail.
 */
int log_open(const char *target, int facility, char *err, size_t errlen);

/*
 * The request the following lines belong to (copied; NULL when none). Characters other than
 * letters, digits and "-._:@+/=" show as '_': neither id can forge a field or a line.
 */
void log_set_request(const char *request_id);
/* The client_id the request acts for (copied, as log_set_request; NULL when none). */
void log_set_client(const char *client_id);

void log_err(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
/*
 * Log at error level, to stderr as well when the log is elsewhere (whoever started the program
 * by hand sees why it stopped), and exit(1). Only before the accept loop or in otloginctl.
 */
void fatal(const char *fmt, ...) __attribute__((format(__printf__, 1, 2), noreturn));

/*
 * A file written one line at a time by every process (the log, the audit trail): opened
 * O_APPEND (created 0640), one write(2) per line so that the lines of concurrent processes
 * never interleave, and reopened by the first line written at least a second after the last
 * check that finds the path names another file or none (logrotate moved it away).
 */
struct logfile {
	int fd; /* -1: closed (initialise so) */
	char *path;
	struct timespec checked; /* when the path was last checked for a rotation */
};
/* Open path for f (closing what f had). Returns 0, or -1 with errno and f unchanged. */
int logfile_open(struct logfile *f, const char *path);
/* Append line (len bytes, its newline included) to f's file; nothing when f is closed. */
void logfile_write(struct logfile *f, const char *line, size_t len);
/* Close f's file (f stays usable for logfile_open). */
void logfile_close(struct logfile *f);

/*
 * Mask an address or phone number for logging into out (size outlen): "jo***@ex***" style,
 * keeping at most two leading characters of each part. Returns out.
 */
char *log_mask_addr(const char *addr, char *out, size_t outlen);

#endif
