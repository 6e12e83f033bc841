/*
 * log: one-line messages to stderr (the web server's error log under FastCGI), prefixed with
 * the program name, pid and level. Never pass a secret (code, token, client secret, full
 * address) to these functions: use log_mask_addr for addresses.
 */
#ifndef OTLOGIN_LOG_H
#define OTLOGIN_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Set the program name shown in each line and the most verbose level printed. */
void log_init(const char *progname, enum log_level level);
/* Parse "err", "warn", "info", "debug"; -1 when unknown. */
int log_level_parse(const char *name);

void log_err(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
/* Log at error level and exit(1). Only before the accept loop or in otloginctl. */
void fatal(const char *fmt, ...) __attribute__((format(__printf__, 1, 2), noreturn));

/*
 * Mask an address or phone number for logging into out (size outlen): "jo***@ex***" style,
 * keeping at most two leading characters of each part. Returns out.
 */
char *log_mask_addr(const char *addr, char *out, size_t outlen);

#endif
