"""GET /metrics end to end (issue 13, "Metrics"): the Prometheus text format checked by
`promtool check metrics` (Debian package prometheus), counters summed over every worker (the
requests made through lighttpd's 4 workers are counted exactly), the label set bounded (the
route is the table's pattern, never the raw path), the flows' counters (deliveries, logins,
throttles, refresh rotation and reuse, sessions), access control ([metrics] allow by client
address, [metrics] token as a bearer token, neither: no endpoint), and no secret in the output.

Two stacks: "metrics" with allow = 127.0.0.1/32 and a token (requests from 127.0.0.2 are
another client address) and the recipient cool-down on; "metrics-off" with no [metrics]
section at all.
"""

import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
import uuid

import harness
import test_servers
from harness import E2ETestCase

stack = None
off = None

TOKEN = secrets.token_urlsafe(32)
METRICS = "/cis/metrics"
PROMTOOL = shutil.which("promtool")

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class MetricsConf:
    """A Stack mixin: otlogin.conf also gets a [metrics] section (the harness writes five)."""

    def __init__(self, metrics=None, **kw):
        super().__init__(**kw)
        self.metrics = metrics or {}

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        if self.metrics:
            with open(self.conf, "a") as f:
                f.write("\n[metrics]\n" +
                        "".join("%s = %s\n" % kv for kv in self.metrics.items()))


class MetricsStack(MetricsConf, harness.Stack):
    """lighttpd and its 4 workers, with [metrics]."""


class NginxMetricsStack(MetricsConf, test_servers.NginxStack):
    """nginx and otlogin.fcgi -w under spawn-fcgi, with [metrics]."""


def setUpModule():
    global stack, off
    stack = MetricsStack(name="metrics", limits={"send_cooldown": 60},
                         metrics={"allow": "127.0.0.1/32, ::1/128", "token": TOKEN}).start()
    try:
        off = harness.Stack(name="metrics-off", workers=1).start()
    except BaseException:
        stack.stop()
        raise
    E2ETestCase.stack = stack


def tearDownModule():
    try:
        off.stop()
    finally:
        stack.stop()


def parse(text):
    """{(name, ((label, value), ...)): float} of an exposition; raises on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m is None:
            raise AssertionError("malformed sample line %r" % line)
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        if key in out:
            raise AssertionError("duplicate series %r" % line)
        out[key] = float(m.group(3))
    return out


def read_bytes(pid):
    """The bytes process pid has read (/proc/PID/io rchar): grows with every request."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/%d/io" % pid)


def value(samples, name, **labels):
    """The sample's value, 0 when the series does not exist (yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Metrics(E2ETestCase):

    def scrape(self, st=None, **kw):
        r = (st or stack).http("GET", METRICS, **kw)
        self.assertEqual(r.status, 200, "%r" % (r,))
        self.assertTrue(r.content_type.startswith("text/plain; version=0.0.4"),
                        r.content_type)
        return r.body.decode()

    def samples(self):
        return parse(self.scrape())

    # ---- the format ------------------------------------------------------------------

    def test_promtool_accepts_the_output(self):
        """promtool check metrics: the text format and the naming conventions (it prints
        lint problems and exits 1 on any)."""
        if PROMTOOL is None:
            self.fail("promtool is not installed (Debian package prometheus): "
                      "./quickstart test installs it")
        stack.http("GET", "/cis/health")
        stack.http("GET", "/cis/no/such/path")
        text = self.scrape()
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, "promtool: %s%s\n%s" % (r.stdout, r.stderr, text))
        # Every family says what it is.
        families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        names = {n for n, _ in families}
        for n in ("otlogin_http_requests_total", "otlogin_http_request_duration_seconds",
                  "otlogin_messages_sent_total", "otlogin_message_delivery_duration_seconds",
                  "otlogin_logins_total", "otlogin_throttled_total",
                  "otlogin_refresh_rotations_total", "otlogin_refresh_reuse_detected_total",
                  "otlogin_sessions_created_total", "otlogin_sessions_ended_total",
                  "otlogin_bdb_commits_total", "otlogin_bdb_aborts_total",
                  "otlogin_bdb_lock_conflicts_total", "otlogin_bdb_deadlocks_total",
                  "otlogin_store_retries_total", "otlogin_bdb_cache_hits_total",
                  "otlogin_bdb_cache_misses_total", "otlogin_bdb_log_written_bytes_total",
                  "otlogin_bdb_checkpoints_total", "otlogin_bdb_recoveries_total",
                  "otlogin_workers_started_total", "otlogin_worker_restarts_total"):
            self.assertIn(n, names, text)
            self.assertIn("# HELP %s " % n, text)
        self.assertIn(("otlogin_http_request_duration_seconds", "histogram"), families)
        # Berkeley DB's numbers are read from the environment: some transactions committed.
        s = parse(text)
        self.assertGreater(value(s, "otlogin_bdb_commits_total"), 0)
        self.assertGreater(value(s, "otlogin_bdb_cache_hits_total"), 0)
        self.assertGreater(value(s, "otlogin_bdb_log_written_bytes_total"), 0)

    def test_the_region_file_is_private(self):
        """The shared counters live in the environment directory, 0600 like the rest."""
        st = os.stat(stack.path("db", "otlogin.metrics"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    # ---- counting across workers -------------------------------------------------------

    def test_requests_are_counted_exactly_across_workers(self):
        """200 requests spread by lighttpd over its 4 workers move the counter by exactly
        200: each worker adds to the one shared region (a worker's own count would show
        about a quarter). The latency histogram of the route moves by as many."""
        workers = [pid for pid, _ in stack.worker_pids()]
        self.assertEqual(len(workers), 4)
        before = self.samples()
        read_before = {pid: read_bytes(pid) for pid in workers}
        labels = {"route": "/health", "method": "GET", "status": "200"}
        rs = stack.parallel([lambda: stack.http("GET", "/cis/health")] * 200, threads=16)
        self.assertEqual([r.status for r in rs], [200] * 200)
        # More than one worker answered (each read requests from its socket): otherwise
        # this would say nothing about summing over workers.
        served = [pid for pid in workers if read_bytes(pid) > read_before[pid]]
        self.assertGreaterEqual(len(served), 2, "workers that served: %r" % served)
        after = self.samples()
        self.assertEqual(value(after, "otlogin_http_requests_total", **labels) -
                         value(before, "otlogin_http_requests_total", **labels), 200)
        self.assertEqual(
            value(after, "otlogin_http_request_duration_seconds_count", route="/health") -
            value(before, "otlogin_http_request_duration_seconds_count", route="/health"), 200)
        # Every worker that served counted itself as started, in the same region.
        self.assertGreaterEqual(value(after, "otlogin_workers_started_total"), 4)

    def test_unknown_paths_share_one_label(self):
        """Requests for paths no route has are counted under route="unmatched": a scanner's
        random paths never become series of their own, nor appear in the output."""
        before = self.samples()
        paths = ["/cis/probe-%s/%s" % (uuid.uuid4().hex, i) for i in range(30)]
        rs = stack.parallel([lambda p=p: stack.http("GET", p) for p in paths], threads=10)
        self.assertEqual({r.status for r in rs}, {404})
        text = self.scrape()
        after = parse(text)
        labels = {"route": "unmatched", "method": "GET", "status": "404"}
        self.assertEqual(value(after, "otlogin_http_requests_total", **labels) -
                         value(before, "otlogin_http_requests_total", **labels), 30)
        self.assertNotIn("probe-", text)
        # A user id in a path is a {} segment: the pattern is the label.
        admin = stack.new_client(permissions=["admin"])
        r = stack.http("GET", "/cis/v1/users/%s" % uuid.uuid4().hex, token=admin["token"])
        self.assertEqual(r.status, 404)
        s = self.samples()
        self.assertEqual(value(s, "otlogin_http_requests_total", route="/v1/users/{}",
                               method="GET", status="404"), 1)
        # A method no route of a known path takes: that path's pattern, status 405.
        r = stack.http("DELETE", "/cis/health")
        self.assertEqual(r.status, 405)
        s = self.samples()
        self.assertEqual(value(s, "otlogin_http_requests_total", route="/health",
                               method="DELETE", status="405"), 1)
        # An unusual method is "other", not a label value of the client's choosing.
        r = stack.http("BREW", "/cis/health")
        self.assertIn(r.status, (400, 405, 501))
        text = self.scrape()
        self.assertNotIn("BREW", text)

    def test_counters_survive_a_restart_and_count_a_recovery(self):
        """Every worker stopped and started again: the counters go on (they are the
        environment's, not a process's). The restart finds the trace of an open that never
        finished (a pid left in otlogin.lock, as a worker killed while opening leaves it), so
        the first worker recovers the environment: recoveries_total moves by exactly 1, and
        the new workers count themselves as started."""
        before = self.samples()
        labels = {"route": "/health", "method": "GET", "status": "200"}
        self.assertGreater(value(before, "otlogin_http_requests_total", **labels), 0)
        workers = stack.worker_pids()
        stack.proc.terminate()
        stack.proc.wait(timeout=15)
        stack.proc = None
        for pid, _ in workers:
            for _ in range(300):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.05)
        with open(stack.path("db", "otlogin.lock"), "w") as f:
            f.write("999999999\n")
        self.assertTrue(stack._start_server(), "lighttpd did not start again")
        after = self.samples()
        self.assertGreaterEqual(value(after, "otlogin_http_requests_total", **labels),
                                value(before, "otlogin_http_requests_total", **labels) + 1)
        self.assertEqual(value(after, "otlogin_bdb_recoveries_total") -
                         value(before, "otlogin_bdb_recoveries_total"), 1)
        self.assertGreaterEqual(value(after, "otlogin_workers_started_total") -
                                value(before, "otlogin_workers_started_total"), 1)
        self.assertIn("recovering the environment", stack.log_text())

    # ---- the flows' counters -----------------------------------------------------------

    def test_login_flow_counters(self):
        """An emailed passcode: one message sent; a wrong passcode and the right one: one
        bad_credentials and one success; a session created. Then a refresh rotates; the old
        token again is reuse (its session ends). A second send to the same address within
        the cool-down is throttled by rule "cooldown"."""
        client = stack.new_client()
        user = stack.make_user()
        addr = user["email"]["value"]
        before = self.samples()
        code = stack.send_and_read_code(client["token"], addr)
        r = stack.otp_send(client["token"], addr)
        self.assertEqual(r.status, 429, "%r" % (r,))
        r = stack.otp_authenticate(client["token"], addr, harness.other_code(code))
        self.assertNotEqual(r.status, 200)
        body = self.assertTokenResponse(stack.otp_authenticate(client["token"], addr, code))
        rt = body["refresh_token"]
        r = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                       token=client["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        new_rt = r.json["refresh_token"]
        # The grace window (10 s) answers a retry of the old token with its successor: the
        # reuse is the successor's predecessor presented after the successor rotated.
        r = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": new_rt},
                       token=client["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        reuse = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                           token=client["token"])
        self.assertNotEqual(reuse.status, 200, "%r" % (reuse,))
        text = self.scrape()
        after = parse(text)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(delta("otlogin_messages_sent_total", channel="email", outcome="sent"),
                         1)
        self.assertEqual(delta("otlogin_messages_sent_total", channel="email",
                               outcome="failed"), 0)
        self.assertEqual(delta("otlogin_message_delivery_duration_seconds_count",
                               channel="email"), 1)
        self.assertEqual(delta("otlogin_throttled_total", rule="cooldown"), 1)
        self.assertEqual(delta("otlogin_http_requests_total", route="/v1/auth/otp/send",
                               method="POST", status="429"), 1)
        self.assertEqual(delta("otlogin_logins_total", method="otp", outcome="success"), 1)
        self.assertEqual(delta("otlogin_logins_total", method="otp",
                               outcome="bad_credentials"), 1)
        self.assertEqual(delta("otlogin_sessions_created_total"), 1)
        self.assertEqual(delta("otlogin_refresh_rotations_total"), 2)
        self.assertEqual(delta("otlogin_refresh_reuse_detected_total"), 1)
        self.assertEqual(delta("otlogin_sessions_ended_total"), 1)
        # Nothing of the login is in the output: not the address, the code or the tokens.
        for secret in (addr, addr.split("@")[0], code, rt, new_rt, body["access_token"],
                       body["session_id"], client["token"], client["client_secret"]):
            self.assertNotIn(secret, text)

    # ---- access ------------------------------------------------------------------------

    def test_allowed_address(self):
        """127.0.0.1 is in allow: no token needed."""
        self.scrape()

    def test_other_address_needs_the_token(self):
        """From 127.0.0.2 (not in allow): 401 without a token, 403 with a wrong one (even one
        that differs only in its last character, or is its prefix), 200 with the token."""
        r = stack.http("GET", METRICS, source="127.0.0.2")
        self.assertInvalidToken(r)
        self.assertNotIn(b"otlogin_", r.body)
        for wrong in (TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B"), TOKEN[:-1],
                      TOKEN + "x", "x" * 43):
            r = stack.http("GET", METRICS, source="127.0.0.2", token=wrong)
            self.assertError(r, 403)
            self.assertNotIn(b"otlogin_", r.body)
        self.scrape(source="127.0.0.2", token=TOKEN)

    def test_token_does_not_leak(self):
        """The configured token never appears in the output, whoever asks."""
        self.assertNotIn(TOKEN, self.scrape())
        self.assertNotIn(TOKEN, self.scrape(source="127.0.0.2", token=TOKEN))

    def test_off_without_configuration(self):
        """No [metrics] allow or token: the endpoint does not exist (404), from any address
        and with any token; the rest of the service is unaffected."""
        for kw in ({}, {"source": "127.0.0.2"}, {"token": TOKEN}):
            r = off.http("GET", METRICS, **kw)
            self.assertError(r, 404)
            self.assertNotIn(b"otlogin_", r.body)
        self.assertEqual(off.http("GET", "/cis/health").status, 200)

    def test_a_token_cannot_be_passed_in_the_query(self):
        """Only the Authorization header carries it: ?token= or access_token= is ignored."""
        for q in ("token", "access_token"):
            r = stack.http("GET", "%s?%s=%s" % (METRICS, q, TOKEN), source="127.0.0.2")
            self.assertEqual(r.status, 401, "%r" % (r,))


class SupervisedWorkers(E2ETestCase):
    """otlogin.fcgi -w (nginx + spawn-fcgi): a worker killed and replaced by the supervisor
    counts as one restart (and one more start); the scrape goes through nginx as well."""

    def test_worker_restart_is_counted(self):
        st = NginxMetricsStack(name="metrics-nginx", workers=2,
                               metrics={"allow": "127.0.0.1/32"}).start()
        self.addCleanup(st.stop)

        def scrape():
            r = st.http("GET", METRICS)
            self.assertEqual(r.status, 200, "%r" % (r,))
            return parse(r.body.decode())

        def workers():
            return sorted(p for p, _ in st.worker_pids())

        old = workers()
        self.assertEqual(len(old), 2)
        # Both workers have opened the store once they are serving: wait for the count.
        for _ in range(300):
            if value(scrape(), "otlogin_workers_started_total") >= 2:
                break
            time.sleep(0.1)
        before = scrape()
        self.assertEqual(value(before, "otlogin_workers_started_total"), 2)
        self.assertEqual(value(before, "otlogin_worker_restarts_total"), 0)
        os.kill(old[0], signal.SIGKILL)
        for _ in range(300):
            now = workers()
            if len(now) == 2 and old[0] not in now and \
                    value(scrape(), "otlogin_workers_started_total") == 3:
                break
            time.sleep(0.1)
        after = scrape()
        self.assertEqual(value(after, "otlogin_workers_started_total"), 3)
        self.assertEqual(value(after, "otlogin_worker_restarts_total"), 1)
