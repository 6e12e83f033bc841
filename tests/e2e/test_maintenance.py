"""The environment's upkeep in one process of its own (issue 15, "Tails").

Checkpoints and the purge used to run in every worker between requests, and a request queued
behind a checkpoint waited tens of milliseconds. Now the first worker that finds no
maintenance owner starts the maintainer (otlogin.fcgi -M, a child of that worker, holding an
flock on the environment directory), and only the maintainer checkpoints and purges:

- under lighttpd there is exactly one maintainer, a child of one of the workers, and it
  checkpoints (otlogin_bdb_checkpoints_total grows once a megabyte of log was written);
- a maintainer that dies is replaced, by a worker, with exactly one new one;
- a worker that dies takes its maintainer with it (PR_SET_PDEATHSIG), and another worker
  starts a new one;
- with otlogin.fcgi -w under spawn-fcgi (test_servers.NginxStack) the same holds.
(The purge itself, now done by the maintainer, is tested in test_crash.Purge.)

Every wait is bounded by attempts; nothing depends on how fast the machine is.
"""

import os
import signal
import time

import harness
import test_metrics
import test_servers
from harness import E2ETestCase

TOKEN = "maintenance-test-token-0123456789abcdef"
# Attempts of 0.1 s each (with a request each, which is when a worker looks for the owner).
ATTEMPTS = 300


class NginxMetricsStack(test_metrics.MetricsConf, test_servers.NginxStack):
    """nginx and otlogin.fcgi -w under spawn-fcgi, with [metrics]."""


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


class Maintainer(E2ETestCase):

    def start(self, cls=test_metrics.MetricsStack, **kw):
        st = cls(name="maint", metrics={"allow": "127.0.0.1/32", "token": TOKEN},
                 server={"log_level": "info"}, **kw).start()
        self.addCleanup(st.stop)
        return st

    def maintainers(self, st):
        """[(pid, parent pid)] of the stack's processes started with -M."""
        return [(p, parent(p)) for p, _ in st.worker_pids(descendants=True)
                if b"-M" in cmdline(p)]

    def workers(self, st):
        """The workers: the web server's (or the supervisor's) children."""
        return [p for p, _ in st.worker_pids() if b"-M" not in cmdline(p)]

    def one_maintainer(self, st, not_pid=None):
        """Make requests until exactly one maintainer (other than not_pid) runs; return it."""
        found = []
        for _ in range(ATTEMPTS):
            st.parallel([lambda: st.http("GET", "/cis/health")] * 4, threads=4)
            found = self.maintainers(st)
            if len(found) == 1 and found[0][0] != not_pid:
                break
            time.sleep(0.1)
        self.assertEqual(len(found), 1, "maintainers: %r" % (found,))
        self.assertNotEqual(found[0][0], not_pid)
        return found[0]

    def checkpoints(self, st):
        r = st.http("GET", "/cis/metrics")
        self.assertEqual(r.status, 200, "%r" % (r,))
        return test_metrics.value(test_metrics.parse(r.body.decode()),
                                  "otlogin_bdb_checkpoints_total")

    def write_log(self, st, n=300):
        """n logins: over a megabyte of log, a checkpoint's trigger."""
        client = st.new_client(permissions=["direct"])
        token = client["token"]

        def login(i):
            addr = "maint-%d-%s@example.org" % (i, os.urandom(3).hex())
            return st.otp_authenticate(token, addr, st.direct_code(token, addr)).status

        self.assertEqual(set(st.parallel([lambda i=i: login(i) for i in range(n)],
                                         threads=8)), {200})

    def test_one_maintainer_checkpoints(self):
        st = self.start()
        pid, ppid = self.one_maintainer(st)
        self.assertIn(ppid, self.workers(st), "the maintainer is a worker's child")
        before = self.checkpoints(st)
        self.write_log(st)
        for _ in range(ATTEMPTS):
            if self.checkpoints(st) > before:
                break
            time.sleep(0.1)
        self.assertGreater(self.checkpoints(st), before)
        # Still the same one: the workers saw it and started no other.
        self.assertEqual(self.maintainers(st), [(pid, ppid)])

    def test_a_dead_maintainer_is_replaced(self):
        st = self.start()
        pid, _ = self.one_maintainer(st)
        os.kill(pid, signal.SIGKILL)
        new, ppid = self.one_maintainer(st, not_pid=pid)
        self.assertIn(ppid, self.workers(st))
        # The environment is fine after the kill (failchk cleans up after it).
        self.write_log(st, 20)

    def test_a_dead_worker_takes_its_maintainer_along(self):
        st = self.start()
        pid, ppid = self.one_maintainer(st)
        os.kill(ppid, signal.SIGKILL)
        new, new_ppid = self.one_maintainer(st, not_pid=pid)
        self.assertNotEqual(new_ppid, ppid)
        self.assertFalse(os.path.exists("/proc/%d" % pid) and b"-M" in cmdline(pid),
                         "the old maintainer outlived its worker")

    def test_supervised_workers_have_one_maintainer(self):
        missing = harness.missing_server_tools("nginx")
        if missing:
            self.skipTest("; ".join(missing))
        st = self.start(cls=NginxMetricsStack, workers=2)
        pid, ppid = self.one_maintainer(st)
        self.assertIn(ppid, self.workers(st))
        before = self.checkpoints(st)
        self.write_log(st)
        for _ in range(ATTEMPTS):
            if self.checkpoints(st) > before:
                break
            time.sleep(0.1)
        self.assertGreater(self.checkpoints(st), before)


if __name__ == "__main__":
    import unittest
    unittest.main()
