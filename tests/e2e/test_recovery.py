"""A worker dies (SIGKILL, as the OOM killer or a crash would do it): the service comes back on
its own and nothing committed is lost (DESIGN "Storage rules"). The next process to open the
environment (or a worker's periodic failchk) finds the dead one through DB_REGISTER and releases
its locks and transaction; had it died inside Berkeley DB, the environment would be recovered
and every worker would reopen it in place (test_crash covers that).

Bounded by attempt counts, not by timing thresholds: each round is a burst of concurrent
requests (so that every worker gets some) and a short pause, at most ROUNDS of them, which
leaves lighttpd room to notice dead workers and start new ones."""

import os
import signal
import time

import harness
from harness import E2ETestCase

ROUNDS = 60
PAUSE = 0.25
BURST = 16
stack = None


def maps_db(pid):
    """True once the process has the database environment's region files mapped."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return stack.path("db") in f.read()
    except OSError:
        return False


class WorkerCrash(E2ETestCase):
    """Each test has a stack of its own: a crash must not leak into the next test."""

    def setUp(self):
        global stack
        stack = harness.Stack(name="recovery").start()
        self.addCleanup(stack.stop)

    def crash_one_worker(self):
        """SIGKILL a worker, then wait (bounded) for lighttpd's replacement to have opened
        the environment (which is when recovery runs and the other workers' handles die)."""
        before = stack.worker_pids()
        self.assertEqual(len(before), stack.workers)
        pid, start = before[0]
        os.kill(pid, signal.SIGKILL)
        for _ in range(int(30 / 0.05)):
            now = stack.worker_pids()
            new = [p for p, s in now if (p, s) not in before]
            if len(now) == stack.workers and new and all(maps_db(p) for p in new):
                return
            # lighttpd restarts a dead worker when it next looks at the backend: a request
            # makes it look (its answer does not matter here).
            stack.http("GET", "/cis/health")
            time.sleep(0.05)
        self.fail("no replacement worker with the environment open: %r -> %r"
                  % (before, stack.worker_pids()))

    def until_all_ok(self, request, what, rounds_ok=3):
        """Bursts of BURST concurrent request() calls until rounds_ok bursts in a row are all
        200. Returns (the last burst, every non-200 answer seen). Only 5xx answers are
        tolerated on the way (what they look like is test_errors_during_recovery_are_json's
        business)."""
        bad, per_round, good = [], [], 0
        for _ in range(ROUNDS):
            results = stack.parallel([request] * BURST, threads=BURST)
            failed = [r for r in results if r.status != 200]
            for r in failed:
                self.assertIn(r.status, (500, 502, 503), "%s during recovery: %r" % (what, r))
            bad += failed
            per_round.append(len(failed))
            good = good + 1 if not failed else 0
            if good == rounds_ok:
                return results, bad
            time.sleep(PAUSE)
        self.fail("%s keeps failing after %d rounds of %d (failures per round: %r; last: %r)"
                  % (what, ROUNDS, BURST, per_round, bad[-1:]))

    def test_health_recovers_after_a_worker_crash(self):
        """Only health probes after the crash (a load balancer's view): they too must turn 200
        again on every worker, not stay 503 with workers that never exit."""
        self.until_all_ok(lambda: stack.http("GET", "/cis/health"), "health before")
        self.crash_one_worker()
        results, bad = self.until_all_ok(lambda: stack.http("GET", "/cis/health"),
                                         "GET /cis/health")
        harness.note("health probes failed after the crash: %d" % len(bad))
        self.assertEqual(results[0].json, {"status": "ok"})

    def test_logins_survive_a_worker_crash(self):
        client = stack.new_client(permissions=["direct"])
        user = stack.make_user()
        addr = user["email"]["value"]
        token = client["token"]
        self.assertTokenResponse(stack.otp_authenticate(token, addr,
                                                        stack.direct_code(token, addr)))
        self.crash_one_worker()
        send = lambda: stack.otp_send(token, addr, channel="direct")
        _, bad = self.until_all_ok(send, "otp/send")
        harness.note("otp/send failed after the crash: %s" % summary(bad))
        for _ in range(2 * stack.workers):
            r = send()
            self.assertEqual(r.status, 200, "%r" % (r,))
            self.assertTokenResponse(stack.otp_authenticate(token, addr, r.json["code"]))
        # What was committed before the crash is still there.
        self.assertIn(client["client_id"], stack.ctl("client", "list"))
        self.assertIn(user["user_id"], stack.ctl("user", "list"))
        stack.client_token(client["client_id"], client["client_secret"])

    def test_errors_during_recovery_are_json(self):
        """While workers restart, a caller gets the contract's JSON 503, not the web server's
        HTML 500 for a request queued on a worker that exited without answering it."""
        client = stack.new_client(permissions=["direct"])
        addr = stack.make_user()["email"]["value"]
        self.crash_one_worker()
        _, bad = self.until_all_ok(lambda: stack.otp_send(client["token"], addr,
                                                          channel="direct"), "otp/send")
        harness.note("otp/send failed after the crash: %s" % summary(bad))
        for r in bad:
            self.assertError(r, 503)


def summary(responses):
    count = {}
    for r in responses:
        key = "%d %s" % (r.status, r.content_type.split(";")[0])
        count[key] = count.get(key, 0) + 1
    return ", ".join("%dx %s" % (n, k) for k, n in sorted(count.items())) or "none"
