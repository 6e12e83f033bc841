/*
 * sms_smstools: one message file in the outgoing spool directory of smstools3 (Debian's
 * "smstools" package, smsd), which sends it through its GSM modem.
 *
 * The file format (smstools3 "SMS file format"): header lines, an empty line, the text.
 *
 *   To: 491721234567          the number in international format without the "+"
 *   From: Example             informational only: smsd cannot set a sender id via a modem
 *   Alphabet: ISO             or UCS2, with the text in UTF-16 big endian
 *
 *   123456 is your code.
 *
 * Atomically: smsd picks up any file in the directory that is not a lock, and only guards
 * against half-written files by waiting a second for the size to settle. So the file is
 * written under a name ending in ".LOCK" (smsd skips those: they are its own lock files),
 * fsynced, and renamed to its final name, which smsd then sees complete or not at all.
 *
 * Mode 0640, not 0600: smsd runs as its own user (smsd on Debian), so it must be able to read
 * the file through the group; make the spool directory setgid to smsd's group (or put the
 * otlogin user in it). Nobody else can read the code. smsd cannot write a file it does not own
 * and 0640 does not let it, which it handles by copying the file into one of its own.
 */
#include "sms.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"

#define SPOOL_FILE_MODE 0640

/*
 * The text in the form smsd takes: "ISO" when every character is in the GSM alphabet and in
 * the part of Latin-1 that Latin-9 shares (smsd converts those to GSM-7 itself), otherwise
 * UTF-16BE for "UCS2". Returns a new buffer with its length in *len, or NULL.
 */
static char *encode_text(const char *text, int *ucs2, size_t *len)
{
	struct sms_size size;
	const char *p = text;
	char *out, *o;
	long cp;
	int latin = 1;

	if (sms_measure(text, &size) < 0)
		return NULL;
	while (*p && (cp = sms_utf8_next(&p)) >= 0)
		if (cp > 0xff || cp == 0xa4)
			latin = 0;
	*ucs2 = size.ucs2 || !latin;
	out = malloc(strlen(text) * 2 + 2);
	if (out == NULL)
		return NULL;
	o = out;
	for (p = text; *p && (cp = sms_utf8_next(&p)) >= 0;) {
		if (!*ucs2) {
			*o++ = (char)cp;
		} else if (cp > 0xffff) {
			long v = cp - 0x10000, hi = 0xd800 + (v >> 10), lo = 0xdc00 + (v & 0x3ff);
			*o++ = (char)(hi >> 8), *o++ = (char)(hi & 0xff);
			*o++ = (char)(lo >> 8), *o++ = (char)(lo & 0xff);
		} else {
			*o++ = (char)(cp >> 8), *o++ = (char)(cp & 0xff);
		}
	}
	*len = (size_t)(o - out);
	return out;
}

static int smstools_send(const struct sms_conf *conf, const struct sms_message *msg)
{
	char path[4096], tmp[4200], name[128], rnd[17], head[128];
	unsigned char r[8];
	struct timeval tv;
	char *body = NULL;
	size_t body_len = 0, head_len;
	int ucs2 = 0, fd = -1, dfd, rc = SMS_EDELIVER;

	if (conf->spool_dir == NULL || conf->spool_dir[0] == '\0') {
		log_err("sms_smstools: no spool_dir configured");
		return SMS_ECONFIG;
	}
	/* The development spool may be created here; a production one belongs to smsd. */
	if (conf->test_mode && mkdir(conf->spool_dir, 0700) < 0 && errno != EEXIST) {
		log_err("sms_smstools: cannot create %s: %s", conf->spool_dir, strerror(errno));
		return SMS_EDELIVER;
	}
	body = encode_text(msg->text, &ucs2, &body_len);
	if (body == NULL)
		return SMS_ENOMEM;
	head_len =
	    (size_t)snprintf(head, sizeof(head), "To: %s\n%s%s%sAlphabet: %s\n\n", msg->to + 1,
			     msg->sender ? "From: " : "", msg->sender ? msg->sender : "",
			     msg->sender ? "\n" : "", ucs2 ? "UCS2" : "ISO");

	gettimeofday(&tv, NULL);
	crypto_random(r, sizeof(r));
	crypto_hex(r, sizeof(r), rnd);
	snprintf(name, sizeof(name), "otlogin.%lld.%06ld.%ld.%s", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)getpid(), rnd);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", conf->spool_dir, name) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.LOCK", path) >= sizeof(tmp)) {
		log_err("sms_smstools: spool_dir path too long");
		rc = SMS_ECONFIG;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, SPOOL_FILE_MODE);
	if (fd < 0) {
		log_err("sms_smstools: cannot create a file in %s: %s", conf->spool_dir,
			strerror(errno));
		goto out;
	}
	/* Exactly this mode whatever the umask (otlogin.fcgi runs with 077). */
	if (fchmod(fd, SPOOL_FILE_MODE) < 0 || sms_write_all(fd, head, head_len) < 0 ||
	    sms_write_all(fd, body, body_len) < 0 || fsync(fd) < 0) {
		log_err("sms_smstools: cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		log_err("sms_smstools: cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		log_err("sms_smstools: cannot rename into %s: %s", conf->spool_dir,
			strerror(errno));
		goto fail;
	}
	/* Make the rename durable; failing that is not worth failing a queued message. */
	dfd = open(conf->spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			log_warn("sms_smstools: fsync of %s: %s", conf->spool_dir, strerror(errno));
		close(dfd);
	}
	rc = SMS_OK;
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	if (body != NULL) {
		crypto_wipe(body, body_len);
		free(body);
	}
	return rc;
}

const struct sms_backend sms_smstools_backend = {"smstools", smstools_send};
