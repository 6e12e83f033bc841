"""otlogin behind the other servers it ships configurations for: nginx with its workers started
by spawn-fcgi (etc/nginx/otlogin.conf) and Apache with mod_fcgid (etc/apache2/otlogin.conf).
Each runs the real otlogin.fcgi on a free 127.0.0.1 port with everything under the stack's
temporary directory, and gets the same checks: the /cis mount and its PATH_INFO, the root
rewrites, Authorization reaching the application, a whole email passcode login through the
SMTP sink, bodies (bad, chunked, over max_body, over the server's own limit), concurrent
logins across the workers, and no worker left behind once the server stops.

Run as root (as CI does), the workers run as www-data: Apache refuses to serve as root, and a
real installation runs them unprivileged. The stack's directory then belongs to www-data and
otloginctl runs as www-data too, so that the database files stay the workers'. A missing
server fails this module (harness.missing_server_tools), it is not skipped."""

import base64
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import harness
from harness import E2ETestCase

SERVICE_USER = "www-data"


def _environ(pid):
    return harness._proc_strings(pid, "environ")


class ServerStack(harness.Stack):
    """What the nginx and Apache stacks share: the service account, the per-stack directories,
    the environment of the workers and the check that none survives."""

    @property
    def uid(self):
        """The uid the workers run as."""
        return self.run_as[0] if self.run_as else os.geteuid()

    def __init__(self, **kw):
        super().__init__(**kw)
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SERVICE_USER)
            self.user = SERVICE_USER
            self.run_as = (pw.pw_uid, pw.pw_gid)

    def start(self):
        why = harness.missing_server_tools(self.server)
        if why:
            raise harness.HarnessError("; ".join(why))
        return super().start()

    def _prepare_dir(self):
        for d in ("www", "sock", "tmp", "san"):
            os.makedirs(self.path(d), mode=0o700, exist_ok=True)
        if self.run_as is None:
            return
        # The service account may not reach the build tree (a clone under /root, mode 0700):
        # it runs copies of the two programs, kept in the stack's directory.
        os.makedirs(self.path("bin"), exist_ok=True)
        self.app = shutil.copy2(self.app, self.path("bin"))
        self.ctl_bin = shutil.copy2(self.ctl_bin, self.path("bin"))
        # The workers and otloginctl run as the service account: the stack's directory (the
        # database, the sockets, the sanitizer reports) is its. Root, running the tests and
        # the servers' master processes, writes there all the same.
        for root, dirs, files in os.walk(self.dir):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, *self.run_as)

    def worker_env(self):
        """The workers' environment besides OTLOGIN_CONF: make check's sanitizer options, with
        the reports written under the stack's directory. The service account cannot write
        the build tree's tests/sanitizer-logs, and Apache does not hand its own environment
        to its FastCGI programs; _after_stop moves the reports there. Each variable is
        include=FILE: mod_fcgid cuts FcgidInitialEnv values at 127 characters."""
        env = {}
        logdir = os.environ.get("SANITIZER_LOG_DIR")
        for var, tag in (("ASAN_OPTIONS", "asan"), ("LSAN_OPTIONS", None),
                         ("UBSAN_OPTIONS", "ubsan")):
            if var in os.environ:
                opts = os.environ[var]
                if tag and logdir:
                    opts += ":log_path=%s" % self.path("san", tag)
                with open(self.path("tmp", var), "w") as f:
                    f.write(opts + "\n")
                env[var] = "include=%s" % self.path("tmp", var)
        return env

    def stray_workers(self):
        """Live processes of the application that run with this stack's OTLOGIN_CONF, however
        they were started."""
        mark = ("OTLOGIN_CONF=%s" % self.conf).encode()
        return [pid for pid in harness._all_procs()
                if mark in _environ(pid) and self.runs_app(pid)]

    def _after_stop(self):
        leaked = self.stray_workers()
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        logdir = os.environ.get("SANITIZER_LOG_DIR")
        if logdir and os.path.isdir(self.path("san")):
            for name in os.listdir(self.path("san")):
                shutil.move(self.path("san", name),
                            os.path.join(logdir, "%s.%s" % (name, self.server)))
        return leaked


class NginxStack(ServerStack):
    """nginx (one worker process) with etc/nginx/otlogin.conf in its server block, and
    otlogin.fcgi -w `workers` started by spawn-fcgi on a Unix socket: one supervisor that
    keeps that many workers running."""

    server = "nginx"
    log_files = ("nginx-error.log", "nginx.out", "spawn-fcgi.out")

    def __init__(self, **kw):
        super().__init__(**kw)
        self.supervisor = None  # spawn-fcgi -n, which becomes otlogin.fcgi -w N
        self._fcgi_out = None

    @property
    def socket(self):
        return self.path("sock", "otlogin.sock")

    def _write_server_conf(self):
        d = self.dir
        conf = [
            "# written by tests/e2e/test_servers.py",
            "user %s;" % self.user if self.user else "",
            "worker_processes 1;",
            "pid %s/nginx.pid;" % d,
            "error_log %s/nginx-error.log warn;" % d,
            "events { worker_connections 256; }",
            "http {",
            "  access_log %s/nginx-access.log;" % d,
            "  client_body_temp_path %s/tmp/body;" % d,
            "  fastcgi_temp_path %s/tmp/fastcgi;" % d,
            "  proxy_temp_path %s/tmp/proxy;" % d,
            "  uwsgi_temp_path %s/tmp/uwsgi;" % d,
            "  scgi_temp_path %s/tmp/scgi;" % d,
            "  upstream otlogin { server unix:%s; }" % self.socket,
            "  server {",
            "    listen 127.0.0.1:%d;" % self.port,
            "    server_name localhost;",
            "    root %s/www;" % d,
            "    include %s;" % harness.NGINX_SNIPPET,
            "  }",
            "}",
            "",
        ]
        self.nginx_conf = self.path("nginx.conf")
        with open(self.nginx_conf, "w") as f:
            f.write("\n".join(conf))

    def _nginx_argv(self, *extra):
        return [harness.NGINX, "-p", self.dir, "-c", self.nginx_conf,
                "-e", self.path("nginx-error.log")] + list(extra)

    def _server_check_argv(self):
        return self._nginx_argv("-t", "-q")

    def _server_argv(self):
        return self._nginx_argv("-g", "daemon off;")

    def _spawn_workers(self):
        """spawn-fcgi -n binds the socket and becomes otlogin.fcgi -w N, as under a service
        manager: the supervisor and its workers write their log to our file. (Forking, as
        without -n, spawn-fcgi would send their stderr to /dev/null.)"""
        argv = [harness.SPAWN_FCGI, "-n", "-s", self.socket, "-M", "0600"]
        if self.user:
            argv += ["-u", self.user, "-g", self.user, "-U", self.user, "-G", self.user]
        argv += ["--", self.app, "-w", str(self.workers)]
        env = dict(os.environ, OTLOGIN_CONF=self.conf, **self.worker_env())
        self._fcgi_out = open(self.path("spawn-fcgi.out"), "ab")
        self.supervisor = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                           stdout=self._fcgi_out, stderr=subprocess.STDOUT,
                                           cwd=self.dir)
        deadline = time.monotonic() + harness.CTL_TIMEOUT
        while not os.path.exists(self.socket):
            if self.supervisor.poll() is not None or time.monotonic() > deadline:
                raise harness.HarnessError("spawn-fcgi did not bind %s:\n%s"
                                           % (self.socket, self.log_tail(10)))
            time.sleep(0.05)

    def _start_server(self):
        if self.supervisor is None:  # once: a retry on another port keeps the workers
            self._spawn_workers()
        return super()._start_server()

    def _after_stop(self):
        if self.supervisor is not None:
            if self.supervisor.poll() is None:  # stop() has counted it as leaked
                self.supervisor.kill()
            self.supervisor.wait()
        if self._fcgi_out is not None:
            self._fcgi_out.close()
            self._fcgi_out = None
        return super()._after_stop()

    def supervisor_pid(self):
        """The supervisor's pid while it runs, else None."""
        if self.supervisor is None or self.supervisor.poll() is not None:
            return None
        return self.supervisor.pid

    def worker_pids(self, descendants=False):
        """The supervisor's children (with descendants=True also whatever they forked, and
        the supervisor itself, so that stop() waits for it too)."""
        procs = harness._all_procs()
        sup = self.supervisor_pid()
        if sup not in procs:
            return []
        out = [pid for pid, st in procs.items() if st[1] == sup]
        if descendants:
            out += harness._descendants(out, procs) + [sup]
        return [(pid, procs[pid][2]) for pid in out if pid in procs]

    def _stop_server(self):
        """nginx first (no new requests), then SIGTERM to the supervisor, as an admin would
        (kill $(cat PIDFILE)): it stops its workers and waits for them."""
        super()._stop_server()
        sup = self.supervisor_pid()
        if sup is not None:
            try:
                os.kill(sup, signal.SIGTERM)
            except OSError:
                pass


class ApacheStack(ServerStack):
    """Apache (event MPM) with etc/apache2/otlogin.conf in a virtual host; mod_fcgid starts
    up to `workers` otlogin.fcgi processes on demand."""

    server = "apache2"
    log_files = ("apache2-error.log", "apache2.out")
    MODULES = ("mpm_event", "authz_core", "alias", "rewrite", "fcgid")

    def _write_server_conf(self):
        d = self.dir
        q = lambda v: '"%s"' % v
        conf = ["# written by tests/e2e/test_servers.py", "ServerRoot %s" % q(d)]
        conf += ["LoadModule %s_module %s" % (m, q(os.path.join(harness.APACHE_MODULES,
                                                                 "mod_%s.so" % m)))
                 for m in self.MODULES]
        if self.user:
            conf += ["User %s" % self.user, "Group %s" % self.user]
        conf += [
            "Listen 127.0.0.1:%d" % self.port,
            "ServerName 127.0.0.1",
            "PidFile %s" % q(self.path("apache2.pid")),
            "ErrorLog %s" % q(self.path("apache2-error.log")),
            "LogLevel info",
            "DefaultRuntimeDir %s" % q(self.path("tmp")),
            "FcgidIPCDir %s" % q(self.path("sock")),
            "FcgidProcessTableFile %s" % q(self.path("tmp", "fcgid-shm")),
            "DocumentRoot %s" % q(self.path("www")),
            # as a distribution's apache2.conf does: nothing outside the document root
            "<Directory />", "  Require all denied", "  AllowOverride None", "</Directory>",
            "<Directory %s>" % q(self.path("www")), "  Require all granted", "</Directory>",
        ]
        conf += [
            "Define OTLOGIN_BIN %s" % self.app,
            "Define OTLOGIN_CONF %s" % self.conf,
            "Define OTLOGIN_WORKERS %d" % self.workers,
            "<VirtualHost 127.0.0.1:%d>" % self.port,
        ]
        conf += ["  FcgidInitialEnv %s %s" % (k, q(v)) for k, v in self.worker_env().items()]
        conf += [
            "  Include %s" % q(harness.APACHE_SNIPPET),
            "</VirtualHost>",
            "",
        ]
        self.apache_conf = self.path("apache2.conf")
        with open(self.apache_conf, "w") as f:
            f.write("\n".join(conf))

    def _server_check_argv(self):
        return [harness.APACHE2, "-t", "-f", self.apache_conf]

    def _server_argv(self):
        return [harness.APACHE2, "-DFOREGROUND", "-f", self.apache_conf]

    def worker_pids(self, descendants=False):
        """The application processes below Apache (mod_fcgid's process manager, a child of
        Apache's main process, forks them), with descendants=True also what they forked."""
        if self.proc is None:
            return []
        procs = harness._all_procs()
        # Not a worker's maintainer (otlogin.fcgi -M, a worker's child: test_maintenance).
        out = [pid for pid in harness._descendants([self.proc.pid], procs)
               if self.runs_app(pid) and b"-M" not in harness._cmdline(pid)]
        if descendants:
            out += harness._descendants(out, procs)
        return [(pid, procs[pid][2]) for pid in out if pid in procs]


class ServerChecks:
    """The checks every server gets; a subclass names the stack class in `stack_class`."""

    stack_class = None

    @classmethod
    def setUpClass(cls):
        cls.stack = cls.stack_class(name="servers-%s" % cls.stack_class.server).start()

    @classmethod
    def tearDownClass(cls):
        """Stopping the server leaves no worker behind: stop() fails when one had to be killed
        (it checks both the pids it knew and any process running with this stack's
        OTLOGIN_CONF)."""
        cls.stack.stop()

    def test_health(self):
        body = self.assertJSON(self.stack.http("GET", "/cis/health"), 200)
        self.assertIsInstance(body, dict)

    def test_discovery_and_jwks_at_the_root(self):
        """/.well-known/ and /oidc/ at the host root are rewritten to the application."""
        disc = self.assertJSON(self.stack.http("GET", "/.well-known/openid-configuration"), 200)
        self.assertEqual(disc.get("issuer"), self.stack.issuer)
        self.assertEqual(
            self.assertJSON(self.stack.http("GET", "/cis/.well-known/openid-configuration"),
                            200), disc)
        keys = self.assertJSON(self.stack.http("GET", "/oidc/jwks?x=1"), 200)
        self.assertTrue(keys.get("keys"), keys)

    def test_client_credentials_with_basic_auth(self):
        """The client secret travels only in the Authorization header here: a 200 proves the
        server passes it to the application, at the root and under /cis."""
        c = self.stack.make_client()
        for path in ("/oidc/token", "/cis/oidc/token"):
            with self.subTest(path=path):
                r = self.stack.token_request(c["client_id"], c["client_secret"], path=path)
                body = self.assertJSON(r, 200)
                self.assertEqual(body.get("token_type"), "Bearer")
                self.assertTrue(body.get("access_token"))
        r = self.stack.token_request(c["client_id"], c["client_secret"] + "x")
        self.assertOAuthError(r, 401, "invalid_client")

    def test_email_passcode_login(self):
        """The whole flow: bearer token in Authorization, mail through the real SMTP sink, the
        code from the mail exchanged for tokens that verify against the JWKS."""
        st = self.stack
        client = st.new_client()
        user = st.make_user()
        addr = user["email"]["value"]
        code = st.send_and_read_code(client["token"], addr)
        body = self.assertTokenResponse(st.otp_authenticate(client["token"], addr, code))
        _, claims = st.verify_jwt(body["id_token"], "JWT", client["client_id"])
        self.assertEqual(claims["sub"], user["user_id"])
        # single use, whichever worker gets the second try
        self.assertError(st.otp_authenticate(client["token"], addr, code), 400,
                         "auth_invalid_credentials")

    def test_magic_link_landing_headers(self):
        """The landing page judges a POST by Cookie, Sec-Fetch-Site and Origin: the server
        passes all three on. A cross-site POST is refused (403) and leaves the link usable;
        the page's own form, with its cookie, opens it (303)."""
        redirect = "https://app.example/callback"
        c = self.stack.new_client(redirect_uris=[redirect], permissions=["direct"])
        r = self.stack.http("POST", "/cis/v1/auth/link/email/send", token=c["token"],
                            json={"email": harness.unique_email(), "redirect_uri": redirect,
                                  "channel": "direct"})
        link = self.assertJSON(r, 200)["link"]
        u = urllib.parse.urlsplit(link)
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            with self.subTest(headers=headers):
                r = self.stack.http("POST", u.path + "?" + u.query, form={}, headers=headers)
                self.assertEqual(r.status, 403, "%r" % (r,))
        r = self.stack.open_link(link)
        self.assertEqual(r.status, 303, "%r" % (r,))
        self.assertTrue(r.headers.get("Location", "").startswith(redirect + "?code="))

    def test_only_cis_is_the_application(self):
        """The server itself answers outside /cis (not JSON); the application answers any path
        under it, an unknown one with its JSON 404."""
        for path in ("/cisco", "/cisco/health", "/ci", "/x/cis/health", "/oidcx/token",
                     "/x/oidc/token"):
            with self.subTest(path=path):
                r = self.stack.http("GET", path)
                self.assertIn(r.status, (403, 404), "%s: %r" % (path, r))
                self.assertFalse(r.content_type.startswith("application/json"),
                                 "%s reached the application: %r" % (path, r))
        for path in ("/cis/no/such/endpoint", "/cis/", "/cis", "/cis/v1/auth/otp"):
            with self.subTest(path=path):
                self.assertError(self.stack.http("GET", path), 404)

    def test_bad_body(self):
        token = self.stack.new_client()["token"]
        r = self.stack.http("POST", "/cis/v1/auth/otp/send", body=b'{"channel": "email",',
                            headers={"Content-Type": "application/json"}, token=token)
        self.assertError(r, 400, "system_invalid_input")

    def test_body_limits(self):
        """A body over otlogin's max_body (64 KiB) reaches it and gets its JSON 413: the
        server's own limit is above it. One far beyond is refused by the server itself."""
        token = self.stack.new_client()["token"]
        r = self.stack.http("POST", "/cis/v1/auth/otp/send", body=self.padded(100000),
                            headers={"Content-Type": "application/json"}, token=token)
        self.assertError(r, 413)
        r = self.huge_body(token)
        self.assertEqual(r.status, self.server_refusal, "%r" % (r,))
        self.assertFalse(r.content_type.startswith("application/json"),
                         "the application answered: %r" % (r,))

    @staticmethod
    def padded(n):
        return b'{"channel": "email", "pad": "' + b"x" * n + b'"}'

    def test_chunked_body(self):
        """A chunked body (no Content-Length from the client) reaches the application whole."""
        import http.client

        c = self.stack.make_client()
        cred = base64.b64encode(("%s:%s" % (c["client_id"], c["client_secret"])).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port,
                                          timeout=harness.HTTP_TIMEOUT)
        try:
            conn.request("POST", "/oidc/token", body=iter([b"grant_type=", b"client_credentials"]),
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  "Authorization": "Basic " + cred.decode()},
                         encode_chunked=True)
            resp = conn.getresponse()
            r = harness.Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        self.assertTrue(self.assertJSON(r, 200).get("access_token"), r)

    def test_concurrent_logins(self):
        """Passcode logins of several users at once, spread over the workers: each code sent by
        one worker is accepted by whichever worker gets the authenticate."""
        st = self.stack
        client = st.new_client()
        users = [st.make_user() for _ in range(8)]
        addrs = [u["email"]["value"] for u in users]
        sent = st.parallel([lambda a=a: st.otp_send(client["token"], a) for a in addrs],
                           threads=8)
        for r in sent:
            self.assertJSON(r, 200)
        codes = [st.mail_code(st.wait_mail(a)) for a in addrs]
        done = st.parallel([lambda a=a, c=c: st.otp_authenticate(client["token"], a, c)
                            for a, c in zip(addrs, codes)], threads=8)
        for u, r in zip(users, done):
            body = self.assertTokenResponse(r)
            _, claims = st.verify_jwt(body["id_token"], "JWT", client["client_id"])
            self.assertEqual(claims["sub"], u["user_id"])
        for r in st.parallel([lambda: st.http("GET", "/cis/health")] * 40, threads=8):
            self.assertJSON(r, 200)
        pids = st.worker_pids()
        harness.note("%s workers: %d" % (st.server, len(pids)))
        self.check_worker_count(len(pids))


class Nginx(ServerChecks, E2ETestCase):
    stack_class = NginxStack
    server_refusal = 413  # client_max_body_size

    def huge_body(self, token):
        """nginx refuses on the Content-Length alone, before it reads the body."""
        return self.stack.http("POST", "/cis/v1/auth/otp/send", body=b"{}",
                               headers={"Content-Type": "application/json",
                                        "Content-Length": "10000000"}, token=token)

    def check_worker_count(self, n):
        """The supervisor keeps exactly `workers`, and every one is still serving."""
        self.assertEqual(n, self.stack.workers)

    def test_workers_run_as_the_service_account(self):
        """spawn-fcgi -u: www-data when the tests run as root (else the tests' own user)."""
        pids = [p for p, _ in self.stack.worker_pids()]
        self.assertEqual(len(pids), self.stack.workers)
        for pid in pids + [self.stack.supervisor_pid()]:
            self.assertEqual(os.stat("/proc/%d" % pid).st_uid, self.stack.uid)

    def wait_workers(self, gone=()):
        """The supervisor's workers once there are `workers` of them and none of `gone`; a
        bound only for a supervisor that never replaces one."""
        deadline = time.monotonic() + 30
        while True:
            pids = [p for p, _ in self.stack.worker_pids()]
            if len(pids) == self.stack.workers and not set(pids) & set(gone):
                return pids
            if time.monotonic() > deadline:
                self.fail("workers %r, %r gone: not replaced" % (pids, list(gone)))
            time.sleep(0.1)

    def test_killed_worker_is_replaced(self):
        """kill -9 two workers: the supervisor starts two others, the database needs no hand
        (test_crash kills them under load), and the logins that follow all succeed."""
        st = self.stack
        client = st.new_client()
        before = self.wait_workers()
        victims = before[:2]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        after = self.wait_workers(gone=victims)
        self.assertIn("was killed by signal 9: starting another", st.log_text())
        addrs = [st.make_user()["email"]["value"] for _ in range(8)]
        for r in st.parallel([lambda a=a: st.otp_send(client["token"], a) for a in addrs],
                             threads=8):
            self.assertJSON(r, 200)
        for a in addrs:
            code = st.mail_code(st.wait_mail(a))
            self.assertTokenResponse(st.otp_authenticate(client["token"], a, code))
        self.assertEqual(sorted(after), sorted(p for p, _ in st.worker_pids()))


class SupervisorOption(E2ETestCase):
    """otlogin.fcgi -w: a count from 1 to 256, and only with a listening socket to share."""

    def run_fcgi(self, *args):
        return subprocess.run([harness.FCGI_BIN] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)

    def test_bad_counts(self):
        for arg in ("0", "257", "-1", "4x", "", "99999999999999999999"):
            with self.subTest(arg=arg):
                r = self.run_fcgi("-w", arg)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("-w takes a number of workers from 1 to 256", r.stderr)

    def test_needs_a_socket(self):
        """Standard input is not a socket (CGI): refused at start, not at the first request."""
        d = tempfile.mkdtemp(prefix="otlogin-e2e-")
        self.addCleanup(shutil.rmtree, d)
        conf = os.path.join(d, "otlogin.conf")
        with open(conf, "w") as f:
            f.write("[server]\ndb_dir = %s\n" % os.path.dirname(conf))
        r = self.run_fcgi("-c", conf, "-w", "2")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("-w needs a FastCGI listening socket", r.stderr)


class NginxSupervisorKilled(E2ETestCase):
    """The supervisor itself killed (kill -9): its workers end with it (PR_SET_PDEATHSIG),
    none is left holding the socket, and the database is clean for the next start."""

    def test_workers_end_with_the_supervisor(self):
        st = NginxStack(name="servers-nginx-supervisor").start()
        try:
            sup = st.supervisor_pid()
            workers = [p for p, _ in st.worker_pids()]
            self.assertEqual(len(workers), st.workers)
            os.kill(sup, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while st.stray_workers() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(st.stray_workers(), [])
        finally:
            st.stop()


class Apache(ServerChecks, E2ETestCase):
    stack_class = ApacheStack
    server_refusal = 500  # what mod_fcgid answers past FcgidMaxRequestLen

    def huge_body(self, token):
        """mod_fcgid counts what it reads, so the body must really be there."""
        return self.stack.http("POST", "/cis/v1/auth/otp/send", body=self.padded(300000),
                               headers={"Content-Type": "application/json"}, token=token)

    def check_worker_count(self, n):
        """mod_fcgid starts workers on demand: at least one, never more than MaxProcesses."""
        self.assertGreaterEqual(n, 1)
        self.assertLessEqual(n, self.stack.workers)

    def test_workers_get_the_configuration(self):
        """FcgidInitialEnv hands OTLOGIN_CONF to the workers, which run as Apache's User."""
        self.assertJSON(self.stack.http("GET", "/cis/health"), 200)
        pids = [p for p, _ in self.stack.worker_pids()]
        self.assertTrue(pids)
        workers = [p for p in self.stack.stray_workers() if b"-M" not in harness._cmdline(p)]
        self.assertEqual(sorted(workers), sorted(pids))
        for pid in pids:
            self.assertEqual(os.stat("/proc/%d" % pid).st_uid, self.stack.uid)
