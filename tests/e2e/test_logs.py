"""Where otlogin's log goes ([server] log, otlogin.conf(5)), behind every server the suite runs:
lighttpd started as a daemon (as ./quickstart and a distribution start it: its workers' stderr
is /dev/null), nginx with spawn-fcgi, Apache with mod_fcgid. Each writes a log file; the
checks: every worker's startup line and a failed login (with its request id and client_id)
reach it, no secret does, and a rotated file (renamed, as logrotate does) is followed by the
workers by themselves a second later. The request id comes back in X-Request-Id; one from the
server is used when it is sane and replaced when it could forge a field.

Also: the stderr destination (the rest of the suite runs on it), a log file that cannot be
opened (refused at start, on stderr), and syslog, through a
temporary /dev/log listener when this machine has no syslog daemon (else that test says why it
is skipped: it never takes /dev/log from a running daemon)."""

import collections
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import test_servers
from harness import E2ETestCase

# A line of a file or stderr log (log.h): time, program[pid], level, request id, client_id.
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) otlogin\[(\d+)\] "
                  r"(error|warn|info|debug) req=([-A-Za-z0-9._:@+/=]+)"
                  r"(?: client=([-A-Za-z0-9._:@+/=]+))?: (.*)$")
Line = collections.namedtuple("Line", "time pid level req client msg")

# The once-a-second rotation check, and a little more (log.c ROTATE_CHECK_MS).
ROTATE_WAIT = 1.2


def parse_lines(text):
    """[Line] of a log; AssertionError naming the first line not in the format."""
    out = []
    for raw in text.splitlines():
        m = LINE.match(raw)
        if m is None:
            raise AssertionError("not a log line: %r" % raw)
        out.append(Line(m.group(1), int(m.group(2)), m.group(3), m.group(4), m.group(5),
                        m.group(6)))
    return out


class FileLog:
    """A Stack mixin: [server] log = otlogin.log in the stack's directory."""

    log_name = "otlogin.log"

    def _write_otlogin_conf(self):
        self.sections["server"]["log"] = self.path(self.log_name)
        super()._write_otlogin_conf()

    @property
    def log_files(self):
        return super().log_files + (self.log_name,)

    @property
    def log_file(self):
        return self.path(self.log_name)

    def file_log(self):
        """The text of otlogin.log and of what was rotated out of it (otlogin.log.N)."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name == self.log_name or name.startswith(self.log_name + "."):
                with open(self.path(name), encoding="utf-8", errors="replace") as f:
                    out.append(f.read())
        return "".join(out)


class DaemonProc:
    """What the harness uses of a Popen, for a daemon that is not our child (lighttpd without
    -D): its pid, whether it runs, and signals."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        st = harness._proc_stat(self.pid)
        if st is None or st[0] in ("Z", "X"):
            self.returncode = 0
        return self.returncode

    def terminate(self):
        self._signal(15)

    def kill(self):
        self._signal(9)

    def _signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except OSError:
            pass

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout or harness.START_TIMEOUT)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("lighttpd", timeout)
            time.sleep(0.05)
        return self.returncode


class DaemonLighttpdStack(FileLog, harness.Stack):
    """lighttpd started as ./quickstart starts it: `lighttpd -f CONF`, which forks into the
    background (its workers' stderr is /dev/null) and writes its pid file."""

    def _start_server(self):
        pidfile = self.path("lighttpd.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        with open(self.path("lighttpd.out"), "ab") as out:
            r = subprocess.run([harness.LIGHTTPD, "-f", self.lighttpd_conf],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               cwd=self.dir, timeout=harness.START_TIMEOUT)
        if r.returncode != 0:  # it binds before it forks: a port taken ends here
            harness.log("lighttpd -f exited with %d: %s" % (r.returncode, self.log_tail(10)))
            return False
        deadline = time.monotonic() + harness.START_TIMEOUT
        while True:
            try:
                with open(pidfile) as f:
                    self.proc = DaemonProc(int(f.read().strip()))
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise harness.HarnessError("lighttpd wrote no pid file")
                time.sleep(0.05)
        last = None
        while time.monotonic() < deadline:
            try:
                r = self.http("GET", "/cis/health", timeout=5)
                if r.status == 200:
                    return True
                last = r
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise harness.HarnessError("GET /cis/health not 200 within %ss (last: %r)\n%s"
                                   % (harness.START_TIMEOUT, last, self.log_tail(30)))


class NginxFileStack(FileLog, test_servers.NginxStack):
    pass


class ApacheFileStack(FileLog, test_servers.ApacheStack):
    pass


class LogChecks:
    """The checks each server gets; a subclass names the stack class in `stack_class`."""

    stack_class = None

    @classmethod
    def setUpClass(cls):
        cls.stack = cls.stack_class(name="logs-%s" % cls.stack_class.server).start()
        cls.client = cls.stack.new_client()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def lines(self):
        return parse_lines(self.stack.file_log())

    def wait_line(self, pred, what):
        """The first line for which pred holds; a worker writes it before it answers, so it is
        there when the response is: the bound is for a failure only."""
        deadline = time.monotonic() + 10
        while True:
            found = [ln for ln in self.lines() if pred(ln)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                self.fail("no line %s in:\n%s" % (what, self.stack.file_log()[-3000:]))
            time.sleep(0.1)

    def failed_client_auth(self, headers=None):
        """A wrong client secret (logged at info, naming the client); its request id."""
        form = {"grant_type": "client_credentials", "client_id": self.client["client_id"],
                "client_secret": "wrong-secret"}
        r = self.stack.http("POST", "/oidc/token", form=form, headers=headers)
        self.assertOAuthError(r, 401, "invalid_client")
        rid = r.headers.get("X-Request-Id")
        self.assertTrue(rid, "no X-Request-Id in %r" % (r,))
        return rid

    def test_startup_lines(self):
        """Every worker running now said it started, in the file, outside any request."""
        self.assertJSON(self.stack.http("GET", "/cis/health"), 200)
        workers = {pid for pid, _ in self.stack.worker_pids()}
        self.assertTrue(workers)
        for pid in workers:
            ln = self.wait_line(lambda ln: ln.pid == pid and ln.msg.startswith("started: "),
                                "started: from worker %d" % pid)
            self.assertEqual(ln.level, "info")
            self.assertEqual(ln.req, "-")
            self.assertIn("configuration %s" % self.stack.conf, ln.msg)

    def test_failed_login(self):
        """A wrong passcode: a line at info with the request's id and client_id, the address
        masked; neither the address, the codes, the token nor the client secret in the file."""
        st = self.stack
        user = st.make_user()
        addr = user["email"]["value"]
        code = st.send_and_read_code(self.client["token"], addr)
        wrong = harness.other_code(code)
        r = st.otp_authenticate(self.client["token"], addr, wrong)
        self.assertError(r, 400, "auth_invalid_credentials")
        rid = r.headers.get("X-Request-Id")
        self.assertTrue(rid)
        ln = self.wait_line(lambda ln: ln.req == rid and "failed" in ln.msg,
                            "req=%s ... failed" % rid)
        self.assertEqual(ln.level, "info")
        self.assertEqual(ln.client, self.client["client_id"])
        self.assertEqual(ln.msg, "authenticate for %s***@ex*** failed: wrong code" % addr[:2])
        self.assertIn(ln.pid, {pid for pid, _ in st.worker_pids()})
        # the right code logs in still (the failure counted against it, nothing more)
        self.assertTokenResponse(st.otp_authenticate(self.client["token"], addr, code))
        text = st.file_log()
        for secret in (addr, self.client["token"], self.client["client_secret"]):
            self.assertNotIn(secret, text)
        msgs = "\n".join(ln.msg for ln in parse_lines(text))
        for c in (code, wrong):
            self.assertIsNone(re.search(r"(?<![0-9])%s(?![0-9])" % c, msgs), c)

    def test_failed_client_authentication(self):
        """A wrong client secret names the client it was tried on."""
        rid = self.failed_client_auth()
        ln = self.wait_line(lambda ln: ln.req == rid, "req=%s" % rid)
        self.assertEqual((ln.level, ln.client, ln.msg),
                         ("info", self.client["client_id"], "client authentication failed"))

    def test_request_id_from_the_server(self):
        """A sane X-Request-Id (a proxy's) is the request's id in the log and in the answer."""
        given = "e2e-%s.lb:1" % os.urandom(6).hex()
        rid = self.failed_client_auth({"X-Request-Id": given})
        self.assertEqual(rid, given)
        self.wait_line(lambda ln: ln.req == given and ln.client == self.client["client_id"],
                       "req=%s" % given)

    def test_request_id_cannot_forge_a_field(self):
        """One that would add a field (or a line) to the log is replaced by an id of ours: an
        attacker cannot make a line seem to concern another client or request."""
        forged = "x client=victim-%s" % os.urandom(4).hex()
        rid = self.failed_client_auth({"X-Request-Id": forged})
        self.assertRegex(rid, r"^[0-9a-f]{16}$")
        ln = self.wait_line(lambda ln: ln.req == rid, "req=%s" % rid)
        self.assertEqual(ln.client, self.client["client_id"])
        self.assertNotIn("victim", self.stack.file_log())

    def test_rotation(self):
        """Renamed away (logrotate without copytruncate) and more than a second later, the next
        line goes to a new file at the configured path, 0640 and the workers' own; the old file
        keeps what came before. No signal to any worker."""
        st = self.stack
        before = self.failed_client_auth()
        self.wait_line(lambda ln: ln.req == before, "req=%s" % before)
        rotated = st.log_file + ".1"
        os.rename(st.log_file, rotated)
        time.sleep(ROTATE_WAIT)  # the design's once-a-second check, not a race being waited out
        after = self.failed_client_auth()
        self.assertTrue(os.path.exists(st.log_file), "otlogin.log was not opened again")
        with open(st.log_file) as f:
            new = parse_lines(f.read())
        with open(rotated) as f:
            old = parse_lines(f.read())
        self.assertIn(after, [ln.req for ln in new])
        self.assertNotIn(after, [ln.req for ln in old])
        self.assertIn(before, [ln.req for ln in old])
        mode = os.stat(st.log_file)
        self.assertEqual(stat.S_IMODE(mode.st_mode), 0o640)
        self.assertEqual(mode.st_uid, getattr(st, "uid", os.geteuid()))
        # and every worker follows, whichever serves: a few more requests all land there
        rids = [self.failed_client_auth() for _ in range(2 * st.workers)]
        with open(st.log_file) as f:
            new = {ln.req for ln in parse_lines(f.read())}
        self.assertEqual([r for r in rids if r not in new], [])


class LighttpdDaemon(LogChecks, E2ETestCase):
    stack_class = DaemonLighttpdStack

    def test_runs_as_a_daemon(self):
        """The control for this class: lighttpd is not our child, it runs in the background."""
        self.assertIsInstance(self.stack.proc, DaemonProc)
        self.assertNotEqual(harness._proc_stat(self.stack.proc.pid)[1], os.getpid())


class Nginx(LogChecks, E2ETestCase):
    stack_class = NginxFileStack

    def test_supervisor_logs_there_too(self):
        """otlogin.fcgi -w (the supervisor) writes to the same file: a killed worker's
        replacement is logged there, not on spawn-fcgi's stderr only."""
        st = self.stack
        sup = st.supervisor_pid()
        victim = st.worker_pids()[0][0]
        os.kill(victim, 9)
        self.wait_line(lambda ln: ln.pid == sup and "was killed by signal 9" in ln.msg,
                       "from the supervisor about %d" % victim)


class Apache(LogChecks, E2ETestCase):
    stack_class = ApacheFileStack


class Stderr(E2ETestCase):
    """log = stderr (what the rest of the suite runs on): under lighttpd -D the workers' lines
    reach lighttpd's error log, in the same format."""

    def test_startup_line_on_stderr(self):
        st = harness.Stack(name="logs-stderr").start()
        try:
            workers = {pid for pid, _ in st.worker_pids()}
            # the error log has lighttpd's own lines too
            found = [LINE.match(ln) for ln in st.log_text().splitlines()]
            started = {int(m.group(2)) for m in found
                       if m and m.group(6).startswith("started: configuration ")}
            self.assertTrue(workers)
            self.assertEqual(workers - started, set())
        finally:
            st.stop()


class Syslog(E2ETestCase):
    """log = syslog with log_facility = local3, read from a /dev/log this test binds: only
    where no syslog daemon has one (it is removed afterwards). The priority carries the
    facility and the level; the message the level, request id and client_id."""

    DEV_LOG = "/dev/log"

    @classmethod
    def setUpClass(cls):
        cls.sock = cls.stack = None
        if os.path.exists(cls.DEV_LOG):
            raise unittest.SkipTest("a syslog daemon owns %s here: the test does not take it "
                                    "over (run it on a machine without one, as CI is)"
                                    % cls.DEV_LOG)
        if os.geteuid() != 0:
            raise unittest.SkipTest("binding %s takes root (CI runs the suite as root)"
                                    % cls.DEV_LOG)
        cls.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cls.sock.bind(cls.DEV_LOG)
        cls.ino = os.stat(cls.DEV_LOG).st_ino
        os.chmod(cls.DEV_LOG, 0o666)
        cls.received = []
        cls.cond = threading.Condition()
        cls.reader = threading.Thread(target=cls._read, daemon=True)
        cls.reader.start()
        try:
            cls.stack = harness.Stack(name="logs-syslog", server={
                "log": "syslog", "log_facility": "local3", "test_mode": "yes"}).start()
            cls.client = cls.stack.new_client()
        except BaseException:
            cls._release()
            raise

    @classmethod
    def _read(cls):
        while True:
            try:
                data = cls.sock.recv(65536)
            except OSError:
                return
            with cls.cond:
                cls.received.append(data.decode("utf-8", "replace"))
                cls.cond.notify_all()

    @classmethod
    def _release(cls):
        if cls.stack is not None:
            cls.stack.stop()
        if cls.sock is not None:
            try:  # only our own socket: never what someone else put there meanwhile
                if os.stat(cls.DEV_LOG).st_ino == cls.ino:
                    os.unlink(cls.DEV_LOG)
            except OSError:
                pass
            cls.sock.close()

    @classmethod
    def tearDownClass(cls):
        cls._release()
        if cls.sock is not None:
            cls.reader.join(timeout=5)

    def wait_message(self, pattern):
        """The first datagram matching pattern: (pri, pid, message) from "<PRI>TIME
        otlogin[PID]: MESSAGE"."""
        full = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d otlogin\[(\d+)\]: (.*)$")
        deadline = time.monotonic() + 10
        with self.cond:
            while True:
                for d in self.received:
                    m = full.match(d)
                    if m and re.search(pattern, m.group(3)):
                        return int(m.group(1)), int(m.group(2)), m.group(3)
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("no syslog message %r in %r" % (pattern, self.received[-20:]))
                self.cond.wait(left)

    LOCAL3 = 19 << 3

    def test_startup_and_test_mode(self):
        """The startup line at info, and the TEST MODE warning conf_load gives before the log
        is open (kept and sent once it is) at warning."""
        workers = {pid for pid, _ in self.stack.worker_pids()}
        pri, pid, msg = self.wait_message(r"^info req=-: started: configuration ")
        self.assertEqual(pri, self.LOCAL3 | 6)
        self.assertIn(pid, workers | {p for p, _ in self.stack.worker_pids()})
        pri, _, msg = self.wait_message(r"^warn req=-: TEST MODE ")
        self.assertEqual(pri, self.LOCAL3 | 4)

    def test_failed_client_authentication(self):
        form = {"grant_type": "client_credentials", "client_id": self.client["client_id"],
                "client_secret": "wrong"}
        r = self.stack.http("POST", "/oidc/token", form=form)
        self.assertOAuthError(r, 401, "invalid_client")
        rid = r.headers["X-Request-Id"]
        pri, _, msg = self.wait_message(r"^info req=%s " % re.escape(rid))
        self.assertEqual(pri, self.LOCAL3 | 6)
        self.assertEqual(msg, "info req=%s client=%s: client authentication failed"
                         % (rid, self.client["client_id"]))


class UnusableLogFile(E2ETestCase):
    """A log file that cannot be opened stops otlogin.fcgi before it serves anything, saying
    why on stderr (and to syslog, for a server whose workers' stderr is nowhere)."""

    def test_refused_at_start(self):
        d = tempfile.mkdtemp(prefix="otlogin-e2e-")
        self.addCleanup(shutil.rmtree, d)
        conf = os.path.join(d, "otlogin.conf")
        with open(conf, "w") as f:
            f.write("[server]\ndb_dir = %s\nlog = %s\n"
                    % (d, os.path.join(d, "no-such-dir", "otlogin.log")))
        env = dict(os.environ, OTLOGIN_CONF=conf, REQUEST_METHOD="GET", PATH_INFO="/health",
                   GATEWAY_INTERFACE="CGI/1.1")
        r = subprocess.run([harness.FCGI_BIN], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=harness.CTL_TIMEOUT)
        self.assertEqual(r.returncode, 1, r)
        self.assertNotIn("Status: 200", r.stdout)
        self.assertIn("cannot open the log file %s/no-such-dir/otlogin.log: No such file or "
                      "directory" % d, r.stderr)


class Otloginctl(E2ETestCase):
    """otloginctl logs to stderr, whatever [server] log says: an admin at a terminal sees what
    it did, and the service's log file is not touched by another account."""

    def test_stderr_not_the_file(self):
        d = tempfile.mkdtemp(prefix="otlogin-e2e-")
        self.addCleanup(shutil.rmtree, d)
        conf = os.path.join(d, "otlogin.conf")
        with open(conf, "w") as f:
            f.write("[server]\ndb_dir = db\nlog = otlogin.log\n")  # no smtp_host: test mode
        r = subprocess.run([harness.CTL_BIN, "-c", conf, "init"], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=harness.CTL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r)
        warning = [ln for ln in r.stderr.splitlines() if "TEST MODE" in ln]
        self.assertEqual(len(warning), 1, r.stderr)
        self.assertRegex(warning[0], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                                     r"otloginctl\[\d+\] warn req=-: TEST MODE ")
        self.assertFalse(os.path.exists(os.path.join(d, "otlogin.log")))


class ApacheUniqueIdStack(ApacheFileStack):
    MODULES = test_servers.ApacheStack.MODULES + ("unique_id",)


class ApacheUniqueId(E2ETestCase):
    """With mod_unique_id, Apache's UNIQUE_ID is the request's id: the server made it, so it
    wins over an X-Request-Id header any client can send."""

    @classmethod
    def setUpClass(cls):
        cls.stack = ApacheUniqueIdStack(name="logs-apache-unique-id").start()
        cls.client = cls.stack.new_client()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_unique_id_wins(self):
        given = "from-the-client-%s" % os.urandom(4).hex()
        form = {"grant_type": "client_credentials", "client_id": self.client["client_id"],
                "client_secret": "wrong"}
        r = self.stack.http("POST", "/oidc/token", form=form, headers={"X-Request-Id": given})
        self.assertOAuthError(r, 401, "invalid_client")
        rid = r.headers["X-Request-Id"]
        self.assertNotEqual(rid, given)
        self.assertNotRegex(rid, r"^[0-9a-f]{16}$")  # not one of otlogin's own either
        deadline = time.monotonic() + 10
        while True:
            found = [ln for ln in parse_lines(self.stack.file_log()) if ln.req == rid]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual([(ln.client, ln.msg) for ln in found],
                         [(self.client["client_id"], "client authentication failed")])
        self.assertNotIn(given, self.stack.file_log())
