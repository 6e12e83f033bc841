/*
 * mail_smtp: delivery to the configured relay with libesmtp 1.x.
 *
 * libesmtp blocks: its connect() and getaddrinfo() have no timeout at all, the TLS handshake
 * none either, and its per-stage timeouts only bound each wait for a reply. So the session runs
 * in a short-lived child process and the worker waits on a pipe with poll() and a deadline,
 * killing the child when it passes -- no alarm(), no signal handler in the worker. The child
 * reports "connected" (from libesmtp's SMTP_EV_CONNECT event) and then the outcome:
 *
 *   name lookup + TCP connect     <= smtp_timeout       (parent's deadline, phase 1)
 *   each SMTP stage               <= smtp_timeout       (libesmtp timeouts, RFC minimums off)
 *   the whole session             <= 2 * smtp_timeout   (parent's deadline, phase 2)
 *
 * The composed message already carries Date, From, To, Message-ID and the MIME headers.
 * libesmtp scans the supplied headers, case-insensitively: a REQUIRE/SHOULD header it finds
 * (Date, From, Message-Id) is passed through and not generated, To is never generated unless
 * asked, MIME-* and Content-* are preserved, and a second copy of a single-instance header is
 * dropped. So no Hdr_OVERRIDE is set (it would replace ours with libesmtp's own values).
 */
#include "mail.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <dlfcn.h>
/* <openssl/ssl.h> first: libesmtp.h declares smtp_starttls_set_ctx only after it. */
#include <openssl/ssl.h>
#include <auth-client.h>
#include <libesmtp.h>

#include "clock.h"
#include "log.h"

#define SMTP_DEFAULT_TIMEOUT 10
#define CHILD_CONNECTED 'C'
#define CHILD_OK '0'
#define CHILD_FAIL 'F'

struct msg_src {
	const char *msg;
	size_t len;
};

struct cb_state {
	int notify_fd;
	unsigned port; /* the relay's */
};

/*
 * TCP_NODELAY on the session's socket, which libesmtp does not hand out: in this child the
 * one connected TCP socket to the relay's port. libesmtp writes a message in 2048-byte
 * pieces; without it the last piece waits for the relay's delayed ACK of the one before
 * (Nagle's algorithm), 40 ms on Linux, every message (bench/README.md, "Sends").
 */
static void smtp_nodelay(unsigned port)
{
	for (int fd = 3; fd < 1024; fd++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer), tlen = sizeof(int);
		int type, one = 1;
		unsigned pport;

		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_STREAM ||
		    getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
			continue;
		if (peer.ss_family == AF_INET)
			pport = ntohs(((struct sockaddr_in *)&peer)->sin_port);
		else if (peer.ss_family == AF_INET6)
			pport = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
		else
			continue;
		if (pport == port)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
}

/*
 * libesmtp's message callback: len == NULL means rewind; otherwise return the next chunk and
 * its length in *len (0 at the end). *ctx is ours, allocated with malloc because libesmtp
 * frees it with free().
 */
static const char *msg_cb(void **ctx, int *len, void *arg)
{
	const struct msg_src *src = arg;
	size_t *off;

	if (*ctx == NULL) {
		*ctx = calloc(1, sizeof(size_t));
		if (*ctx == NULL) {
			if (len != NULL)
				*len = 0;
			return NULL;
		}
	}
	off = *ctx;
	if (len == NULL) {
		*off = 0;
		return NULL;
	}
	size_t n = src->len - *off;
	if (n > 65536)
		n = 65536;
	*len = (int)n;
	*off += n;
	return src->msg + *off - n;
}

/*
 * Copy a server reply into out for logging: controls become spaces, and a word holding '@'
 * (servers like to quote the recipient) is masked, keeping the brackets around it.
 */
static void clean_reply(const char *text, char *out, size_t outlen)
{
	size_t n = 0;
	const char *p = text ? text : "";

	while (*p && n + 1 < outlen) {
		const char *q = p;
		while (*q && *q != ' ')
			q++;
		if (memchr(p, '@', (size_t)(q - p)) != NULL) {
			char tok[256], masked[64];
			const char *a = p, *b = q;
			while (a < b && strchr("<(['\"", *a))
				a++;
			while (b > a && strchr(">)]'\":;,.", b[-1]))
				b--;
			snprintf(tok, sizeof(tok), "%.*s", (int)(b - a), a);
			log_mask_addr(tok, masked, sizeof(masked));
			snprintf(out + n, outlen - n, "%.*s%s%.*s", (int)(a - p), p, masked,
				 (int)(q - b), b);
			n += strlen(out + n);
		} else {
			for (const char *m = p; m < q && n + 1 < outlen; m++)
				out[n++] = ((unsigned char)*m < 0x20 || *m == 0x7f) ? ' ' : *m;
		}
		if (*q == ' ' && n + 1 < outlen)
			out[n++] = ' ';
		p = *q ? q + 1 : q;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/*
 * TLS and protocol events. Events that pass an int *ok ask whether to carry on despite a
 * problem (bad or missing peer certificate, name mismatch, weak cipher, no client key):
 * *ok is left at 0, always, so verification failures end the session.
 */
static void event_cb(smtp_session_t session, int event, void *arg, ...)
{
	struct cb_state *st = arg;
	va_list ap;

	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_CONNECT:
		smtp_nodelay(st->port);
		if (st->notify_fd >= 0) {
			char c = CHILD_CONNECTED;
			if (write(st->notify_fd, &c, 1) != 1)
				log_warn("mail_smtp: cannot notify the parent: %s",
					 strerror(errno));
		}
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE: {
		long vfy = va_arg(ap, long);
		log_err("mail_smtp: STARTTLS: the relay's certificate does not verify "
			"(X509 error %ld)",
			vfy);
		break;
	}
	case SMTP_EV_NO_PEER_CERTIFICATE:
		log_err("mail_smtp: STARTTLS: the relay presented no certificate");
		break;
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		log_err("mail_smtp: STARTTLS: the relay's certificate does not match its name");
		break;
	case SMTP_EV_WEAK_CIPHER:
		log_err("mail_smtp: STARTTLS: cipher too weak");
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		log_err("mail_smtp: STARTTLS required but not offered by the relay");
		break;
	case SMTP_EV_UNUSABLE_CA_LIST:
		log_err("mail_smtp: STARTTLS: unusable CA list (~/.authenticate)");
		break;
	case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
	case SMTP_EV_NO_CLIENT_CERTIFICATE:
		log_err("mail_smtp: STARTTLS: unusable client certificate (~/.authenticate)");
		break;
	case SMTP_EV_STARTTLS_OK: {
		(void)va_arg(ap, void *); /* the SSL * */
		const char *cipher = va_arg(ap, const char *);
		int bits = va_arg(ap, int);
		log_debug("mail_smtp: STARTTLS established, %s (%d bits)", cipher ? cipher : "?",
			  bits);
		break;
	}
	default:
		break;
	}
	va_end(ap);
}

/*
 * An SSL_CTX for STARTTLS limited to TLS 1.2, or NULL (then libesmtp makes its own).
 *
 * Why: with TLS 1.3 the relay sends NewSessionTicket records right after the handshake.
 * libesmtp 1.1 queues EHLO and then polls for read and write at once; when the tickets have
 * already arrived it runs the EHLO reply reader before flushing EHLO, and waits for an answer
 * to a command it never sent until the stage timeout (measured: 7 of 10 sessions against
 * aiosmtpd). TLS 1.2 has no post-handshake records. libesmtp still checks the verification
 * result and the host name against the certificate; this context only trusts the system store
 * (or SSL_CERT_FILE / SSL_CERT_DIR), never anything less.
 *
 * The functions come from the libssl that libesmtp itself loaded, looked up at run time, so
 * the build needs nothing beyond libesmtp.
 */
static SSL_CTX *tls12_ctx(void (**free_fn)(SSL_CTX *))
{
	const SSL_METHOD *(*client_method)(void);
	SSL_CTX *(*ctx_new)(const SSL_METHOD *);
	long (*ctx_ctrl)(SSL_CTX *, int, long, void *);
	int (*verify_paths)(SSL_CTX *);
	SSL_CTX *ctx;
	void *self = dlopen(NULL, RTLD_LAZY);

	if (self == NULL)
		return NULL;
	client_method = (const SSL_METHOD *(*)(void))dlsym(self, "TLS_client_method");
	ctx_new = (SSL_CTX * (*)(const SSL_METHOD *)) dlsym(self, "SSL_CTX_new");
	ctx_ctrl = (long (*)(SSL_CTX *, int, long, void *))dlsym(self, "SSL_CTX_ctrl");
	verify_paths = (int (*)(SSL_CTX *))dlsym(self, "SSL_CTX_set_default_verify_paths");
	*free_fn = (void (*)(SSL_CTX *))dlsym(self, "SSL_CTX_free");
	dlclose(self); /* the library stays loaded: libesmtp needs it */
	if (!client_method || !ctx_new || !ctx_ctrl || !verify_paths || !*free_fn)
		return NULL;
	ctx = ctx_new(client_method());
	if (ctx == NULL)
		return NULL;
	if (ctx_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL) != 1 ||
	    ctx_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_2_VERSION, NULL) != 1 ||
	    verify_paths(ctx) != 1) {
		(*free_fn)(ctx);
		return NULL;
	}
	return ctx;
}

/* SASL interaction: hand over the configured user and password, nothing else. */
static int auth_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
	const struct mail_conf *conf = arg;

	for (int i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = (char *)conf->smtp_user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = (char *)(conf->smtp_password ? conf->smtp_password : "");
		else
			return 0; /* realm or anything else: we have no answer */
	}
	return 1;
}

static int host_ok(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 253)
		return 0;
	/* libesmtp splits "host:port" at the first ':' so IPv6 literals cannot work. */
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' || *h == '_'))
			return 0;
	return 1;
}

/*
 * The reply text with every word that holds an '@' masked (log_mask_addr): relays echo the
 * recipient ("550 <ann@example.com>: unknown user"), and logs never hold a full address.
 */
static void mask_addresses(const char *in, char *out, size_t outlen)
{
	static const char delims[] = " <>()[],;\"'";
	size_t o = 0;

	out[0] = '\0';
	while (*in && o + 1 < outlen) {
		size_t n = strcspn(in, delims);
		char word[256], masked[64];
		const char *piece = in;
		size_t plen = n;

		if (n == 0) {
			out[o++] = *in++;
			out[o] = '\0';
			continue;
		}
		if (memchr(in, '@', n) != NULL && n < sizeof(word)) {
			memcpy(word, in, n);
			word[n] = '\0';
			piece = log_mask_addr(word, masked, sizeof(masked));
			plen = strlen(piece);
		}
		if (plen > outlen - 1 - o)
			plen = outlen - 1 - o;
		memcpy(out + o, piece, plen);
		o += plen;
		out[o] = '\0';
		in += n;
	}
}

static void log_status(const char *what, const smtp_status_t *st)
{
	char text[256], masked[256];
	clean_reply(st ? st->text : NULL, text, sizeof(text));
	mask_addresses(text, masked, sizeof(masked));
	log_err("mail_smtp: %s: SMTP %d %s", what, st ? st->code : 0, masked);
}

/* One SMTP session, run in the child. Returns a mail_error. */
static int smtp_session_run(const struct mail_conf *conf, unsigned timeout, const char *from,
			    const char *to, const char *msg, size_t len, int notify_fd)
{
	static const int stages[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA,
				     Timeout_TRANSFER, Timeout_DATA2};
	struct msg_src src = {msg, len};
	struct cb_state st = {notify_fd, conf->smtp_port ? conf->smtp_port : 25};
	smtp_session_t s = NULL;
	smtp_message_t m;
	smtp_recipient_t rcpt;
	auth_context_t actx = NULL;
	SSL_CTX *tls = NULL;
	void (*tls_free)(SSL_CTX *) = NULL;
	const smtp_status_t *ms, *rs, *ps;
	char hostport[300], err[128];
	int rc = MAIL_EDELIVER, use_auth;

	use_auth = conf->smtp_user != NULL && conf->smtp_user[0] != '\0';
	snprintf(hostport, sizeof(hostport), "%s:%u", conf->smtp_host,
		 conf->smtp_port ? conf->smtp_port : 25);
	s = smtp_create_session();
	if (s == NULL)
		return MAIL_ENOMEM;
	if (!smtp_set_server(s, hostport) || !smtp_set_eventcb(s, event_cb, &st))
		goto fail;
	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
		if (smtp_set_timeout(s, stages[i] | Timeout_OVERRIDE_RFC2822_MINIMUM,
				     (long)timeout * 1000L) == 0)
			goto fail;
	/*
	 * Required when configured (the session ends if the relay does not offer it or its
	 * certificate fails), and otherwise off rather than opportunistic: with "enabled" a relay
	 * offering STARTTLS with a self-signed certificate would make every delivery fail.
	 */
	if (!smtp_starttls_enable(s, conf->smtp_starttls ? Starttls_REQUIRED : Starttls_DISABLED))
		goto fail;
	if (conf->smtp_starttls) {
		tls = tls12_ctx(&tls_free);
		if (tls == NULL)
			log_warn("mail_smtp: no TLS 1.2 context, using libesmtp's default");
		else if (!smtp_starttls_set_ctx(s, tls))
			goto fail;
	}
	if (use_auth) {
		auth_client_init();
		actx = auth_create_context();
		if (actx == NULL) {
			rc = MAIL_ENOMEM;
			goto fail;
		}
		/* Reached only with STARTTLS required (auth_allowed): any mechanism. */
		auth_set_mechanism_flags(actx, AUTH_PLUGIN_PLAIN, 0);
		auth_set_interact_cb(actx, auth_interact, (void *)conf);
		if (!smtp_auth_set_context(s, actx))
			goto fail;
	}

	m = smtp_add_message(s);
	if (m == NULL || !smtp_set_reverse_path(m, from) || !smtp_set_messagecb(m, msg_cb, &src))
		goto fail;
	smtp_size_set_estimate(m, (unsigned long)len);
	rcpt = smtp_add_recipient(m, to);
	if (rcpt == NULL)
		goto fail;

	if (!smtp_start_session(s)) {
		smtp_strerror(smtp_errno(), err, sizeof(err));
		log_err("mail_smtp: session with %s failed: %s", conf->smtp_host, err);
		goto out;
	}
	ps = smtp_reverse_path_status(m);
	rs = smtp_recipient_status(rcpt);
	ms = smtp_message_transfer_status(m);
	if (ps == NULL || ps->code == 0) {
		/* No MAIL reply at all: the greeting, EHLO, STARTTLS or AUTH went wrong. */
		smtp_strerror(smtp_errno(), err, sizeof(err));
		log_err("mail_smtp: %s did not get as far as MAIL FROM: %s", conf->smtp_host, err);
	} else if (ps->code / 100 != 2) {
		log_status("MAIL FROM refused", ps);
	} else if (rs == NULL || rs->code / 100 != 2) {
		log_status("RCPT TO refused", rs);
	} else if (ms == NULL || ms->code / 100 != 2) {
		log_status("message refused", ms);
	} else {
		log_debug("mail_smtp: accepted: SMTP %d", ms->code);
		rc = MAIL_OK;
	}
	goto out;
fail:
	smtp_strerror(smtp_errno(), err, sizeof(err));
	log_err("mail_smtp: cannot set up the session: %s", err);
out:
	smtp_destroy_session(s);
	if (tls != NULL)
		tls_free(tls);
	if (actx != NULL)
		auth_destroy_context(actx);
	if (use_auth)
		auth_client_exit();
	return rc;
}

/*
 * Wait for the child's report. Returns the mail_error: MAIL_OK only when the child said so
 * before the deadlines; on a deadline the child is killed.
 */
static int wait_child(pid_t pid, int fd, unsigned timeout, const char *host)
{
	struct timespec t0;
	long connect_ms = (long)timeout * 1000L, total_ms = 2L * connect_ms;
	int connected = 0, reported = 0, result = MAIL_EDELIVER;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!reported) {
		long left = (connected ? total_ms : connect_ms) - ms_since(&t0);
		struct pollfd pfd = {fd, POLLIN, 0};
		char buf[8];
		ssize_t n;
		int pr;

		if (left <= 0) {
			log_err("mail_smtp: %s to %s timed out after %ld ms, giving up",
				connected ? "session" : "connection", host, ms_since(&t0));
			kill(pid, SIGKILL);
			break;
		}
		pr = poll(&pfd, 1, (int)left);
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			log_err("mail_smtp: poll: %s", strerror(errno));
			kill(pid, SIGKILL);
			break;
		}
		if (pr == 0)
			continue; /* the deadline check above decides */
		n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_err("mail_smtp: reading the child's report: %s", strerror(errno));
			kill(pid, SIGKILL);
			break;
		}
		if (n == 0) {
			log_err("mail_smtp: the delivery process ended without a report");
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == CHILD_CONNECTED) {
				connected = 1;
			} else {
				reported = 1;
				result = buf[i] == CHILD_OK ? MAIL_OK : MAIL_EDELIVER;
			}
		}
	}
	/* Reap it; ECHILD (SIGCHLD ignored by the host program) is fine. */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return result;
}

/*
 * SMTP AUTH only inside TLS: without smtp_starttls the connection is in the clear, and every
 * mechanism would hand the relay's password (PLAIN, LOGIN) or an offline-crackable hash of it
 * (CRAM-MD5) to anyone on the path. Such a delivery is refused before connecting, so the
 * credentials never leave the host. Returns 1 when the session may go ahead.
 */
static int auth_allowed(const struct mail_conf *conf)
{
	if (conf->smtp_user == NULL || conf->smtp_user[0] == '\0' || conf->smtp_starttls)
		return 1;
	log_err("mail_smtp: smtp_user is set but smtp_starttls is not: SMTP AUTH is only sent "
		"inside TLS, so nothing is delivered (set smtp_starttls = yes)");
	return 0;
}

static int smtp_send(const struct mail_conf *conf, const char *from, const char *to,
		     const char *msg, size_t len)
{
	unsigned timeout;
	int fds[2], rc;
	pid_t pid;

	if (conf->smtp_host == NULL || !host_ok(conf->smtp_host)) {
		log_err("mail_smtp: smtp_host is not a host name or IPv4 address");
		return MAIL_EDELIVER;
	}
	if (len > INT32_MAX)
		return MAIL_EINPUT;
	if (!auth_allowed(conf))
		return MAIL_EDELIVER;
	timeout = conf->smtp_timeout ? conf->smtp_timeout : SMTP_DEFAULT_TIMEOUT;
	if (timeout > 3600)
		timeout = 3600;

	if (pipe(fds) < 0) {
		log_err("mail_smtp: pipe: %s", strerror(errno));
		return MAIL_EDELIVER;
	}
	pid = fork();
	if (pid < 0) {
		log_err("mail_smtp: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return MAIL_EDELIVER;
	}
	if (pid == 0) {
		char c;
		close(fds[0]);
#ifdef __linux__
		/* Do not outlive a worker that is killed while we wait for the relay. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		/* A relay closing the connection must fail the write, not kill us silently. */
		signal(SIGPIPE, SIG_IGN);
		rc = smtp_session_run(conf, timeout, from, to, msg, len, fds[1]);
		c = rc == MAIL_OK ? CHILD_OK : CHILD_FAIL;
		if (write(fds[1], &c, 1) != 1)
			log_warn("mail_smtp: cannot report to the parent: %s", strerror(errno));
		/* _exit: the worker's atexit handlers and stdio buffers belong to the worker. */
		_exit(0);
	}
	close(fds[1]);
	rc = wait_child(pid, fds[0], timeout, conf->smtp_host);
	close(fds[0]);
	return rc;
}

const struct mail_backend mail_smtp_backend = {"smtp", smtp_send};
