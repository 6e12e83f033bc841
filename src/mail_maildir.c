/*
 * mail_maildir: delivery into a local Maildir (development, demos, end-to-end tests).
 *
 * The Maildir protocol: write the message under tmp/ with a unique name, fsync it, then
 * rename it into new/. A reader only ever sees complete messages in new/, and two writers
 * (several FastCGI workers) never collide because the name holds time, pid and randomness.
 */
#include "mail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"

/* mkdir -p with mode 0700 for every directory created. */
static int mkdirs(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The host name part of a Maildir file name: '/' and ':' encoded as the spec asks. */
static void host_part(char *out, size_t outlen)
{
	char host[256];
	size_t n = 0;

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && n + 5 < outlen; p++) {
		if (*p == '/' || *p == ':') {
			snprintf(out + n, outlen - n, "\\%03o", (unsigned char)*p);
			n += 4;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int maildir_send(const struct mail_conf *conf, const char *from, const char *to,
			const char *msg, size_t len)
{
	static const char *const subdirs[] = {"tmp", "new", "cur"};
	char path[4096], tmp[4096], dst[4096], name[512], host[300], rnd[17];
	unsigned char r[8];
	struct timeval tv;
	int fd = -1, dfd;

	if (conf->maildir == NULL || conf->maildir[0] == '\0') {
		log_err("mail_maildir: no maildir configured");
		return MAIL_EDELIVER;
	}
	if (mkdirs(conf->maildir) < 0) {
		log_err("mail_maildir: cannot create %s: %s", conf->maildir, strerror(errno));
		return MAIL_EDELIVER;
	}
	for (size_t i = 0; i < 3; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", conf->maildir, subdirs[i]) >=
		    sizeof(path)) {
			log_err("mail_maildir: maildir path too long");
			return MAIL_EDELIVER;
		}
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			log_err("mail_maildir: cannot create %s: %s", path, strerror(errno));
			return MAIL_EDELIVER;
		}
	}

	/* time.M<usec>P<pid>R<random>.host: the unique name of the Maildir specification. */
	gettimeofday(&tv, NULL);
	crypto_random(r, sizeof(r));
	crypto_hex(r, sizeof(r), rnd);
	host_part(host, sizeof(host));
	snprintf(name, sizeof(name), "%lld.M%ldP%ldR%s.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
		 (long)getpid(), rnd, host);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/tmp/%s", conf->maildir, name) >= sizeof(tmp) ||
	    (size_t)snprintf(dst, sizeof(dst), "%s/new/%s", conf->maildir, name) >= sizeof(dst)) {
		log_err("mail_maildir: maildir path too long");
		return MAIL_EDELIVER;
	}

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_err("mail_maildir: cannot create %s: %s", tmp, strerror(errno));
		return MAIL_EDELIVER;
	}
	/* Exactly 0600 whatever the umask: the message carries a login secret. */
	if (fchmod(fd, 0600) < 0 || write_all(fd, msg, len) < 0 || fsync(fd) < 0) {
		log_err("mail_maildir: cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		log_err("mail_maildir: cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		log_err("mail_maildir: cannot move the message into new/: %s", strerror(errno));
		goto fail;
	}
	/* Make the rename itself durable; a failure here is not worth failing the delivery. */
	snprintf(path, sizeof(path), "%s/new", conf->maildir);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			log_warn("mail_maildir: fsync of new/: %s", strerror(errno));
		close(dfd);
	}
	return MAIL_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return MAIL_EDELIVER;
}

const struct mail_backend mail_maildir_backend = {"maildir", maildir_send};
