#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_prog = "otlogin";
static enum log_level log_max = LOG_LEVEL_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

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

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (level > log_max)
		return;
	n = snprintf(line, sizeof(line), "%s[%ld]: %s: ", log_prog, (long)getpid(),
		     level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* One write per line so lines of concurrent workers do not interleave. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s\n", line);
	fflush(stderr);
}

#define LOG_FN(name, level)                                                                        \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vwrite(level, fmt, ap);                                                        \
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
	log_vwrite(LOG_LEVEL_ERR, fmt, ap);
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
