"""Crash safety of the storage (DESIGN "Storage rules"; issue 6, crash safety).

- A crash loop: under parallel logins, kill -9 a random worker every 200-500 ms.
- Everything at once: kill -9 lighttpd and every worker under load, start lighttpd again.
- A full disk (the environment on a small tmpfs): 503s, no 200 whose effect was not stored,
  and service again once there is space.
- The log directory stays bounded under load (5000 logins).
- A worker stopped by lighttpd (SIGTERM) closes the environment: its registry slot is empty.
- With the workers' clock moved a day past every expiry, the maintainer purges the records.

The assertions do not depend on timing: every answer a client was given is checked afterwards.
A code answered as sent can still be used once, a code answered as consumed cannot be used
again, a session answered as created can be used; then the service must answer on every worker
without anyone running recovery, and db_verify must accept every table (after the stack is
stopped). The crash loop lasts CRASH_SECONDS, a minute as the issue asks (about 150 kills):
25 s passed in most runs while a worker killed during a recovery could still leave the
environment unopenable for good.

The signing key is EdDSA here: these tests are about the store, and RS256 signing would make
each login four times as expensive.
"""

import collections
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
from clock import ClockStack, faketime_library
from harness import E2ETestCase

CRASH_SECONDS = 60
KILL_PAUSE = (0.2, 0.5)
LOAD_THREADS = 8
BOUNDED_LOGINS = 5000
VERIFY = shutil.which("db5.3_verify") or shutil.which("db_verify")


class CrashStack(harness.Stack):
    """A Stack with an EdDSA signing key and, if asked, the database somewhere else."""

    def __init__(self, db_dir=None, **kw):
        super().__init__(**kw)
        self.db_dir = db_dir

    @property
    def db(self):
        return self.db_dir or self.path("db")

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        with open(self.conf) as f:
            text = f.read()
        if self.db_dir:
            text = text.replace("db_dir = %s\n" % self.path("db"), "db_dir = %s\n" % self.db_dir)
        with open(self.conf, "w") as f:
            f.write(text + "\n[keys]\nalgorithm = EdDSA\n")

    def dump_count(self, table):
        """How many records a table holds (db5.3_dump; the stack must be stopped)."""
        dump = shutil.which("db5.3_dump") or shutil.which("db_dump")
        r = subprocess.run([dump, "-h", self.db, table], capture_output=True, text=True,
                           timeout=harness.CTL_TIMEOUT, check=True)
        body = r.stdout.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0]
        return len(body.splitlines()) // 2

    def server_log(self, pattern):
        """How many lines of the server log match pattern."""
        return len(re.findall(pattern, self.log_text()))


def answer(r):
    if r is None:
        return "no answer"
    return "%d %s" % (r.status, r.content_type.split(";")[0] or "-")


class Logins:
    """Logins in LOAD_THREADS threads until finish(), each with a new address (signup open), so
    that a code is sent once and only its own authenticate can consume it. Every third login
    stops after the send: its code must still work afterwards."""

    def __init__(self, stack, token):
        self.stack = stack
        self.token = token
        self.lock = threading.Lock()
        self.sent = []  # (address, code): send answered 200, never authenticated
        self.consumed = []  # (address, code, body): authenticate answered 200
        self.answers = collections.Counter()
        self.odd_bodies = []  # the first few 4xx answers, for the failure message
        self.n = 0
        self.done = threading.Event()
        self.threads = []

    def _request(self, what, call):
        try:
            r = call()
        except (OSError, http.client.HTTPException):
            r = None
        with self.lock:
            self.answers["%s %s" % (what, answer(r))] += 1
            if r is not None and 400 <= r.status < 500 and len(self.odd_bodies) < 5:
                self.odd_bodies.append("%s %d %s" % (what, r.status, r.body[:200]))
        return r

    def one(self):
        with self.lock:
            self.n += 1
            n = self.n
        addr = "crash-%d-%s@example.org" % (n, os.urandom(4).hex())
        r = self._request("send", lambda: self.stack.otp_send(self.token, addr, channel="direct"))
        if r is None or r.status != 200:
            return
        code = r.json["code"]
        if n % 3 == 0:
            with self.lock:
                self.sent.append((addr, code))
            return
        a = self._request("authenticate",
                          lambda: self.stack.otp_authenticate(self.token, addr, code))
        if a is not None and a.status == 200:
            with self.lock:
                self.consumed.append((addr, code, a.json))

    def _run(self):
        while not self.done.is_set():
            self.one()

    def start(self, threads=LOAD_THREADS):
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=harness.HTTP_TIMEOUT * 2)
            if t.is_alive():
                raise harness.HarnessError("a load thread did not finish")

    def summary(self):
        return ", ".join("%s: %d" % kv for kv in sorted(self.answers.items()))


class CrashCase(E2ETestCase):

    def start_stack(self, **kw):
        stack = CrashStack(**kw).start()
        self.addCleanup(stack.stop)
        client = stack.new_client(permissions=["direct"], signup="open")
        return stack, client

    def wait_resumed(self, stack):
        """Service resumed by itself: bursts of health probes until three bursts in a row are
        all 200 and lighttpd has all its workers (bounded by attempts)."""
        good = 0
        for _ in range(120):
            burst = stack.parallel([lambda: stack.http("GET", "/cis/health")] * 16, threads=16)
            ok = all(r.status == 200 for r in burst) and len(stack.worker_pids()) == stack.workers
            good = good + 1 if ok else 0
            if good == 3:
                self.assertEqual(burst[0].json, {"status": "ok"})
                return
            time.sleep(0.25)
        self.fail("the service did not come back: last burst %r, workers %r"
                  % (collections.Counter(answer(r) for r in burst), stack.worker_pids()))

    def check_answers(self, stack, load):
        """During the load every answer was a 200, the contract's 503 (an interrupted commit)
        or the web server's error for a killed worker; and what every client was told still
        holds."""
        odd = {k: n for k, n in load.answers.items()
               if not re.fullmatch(r"\w+ (200 application/json|503 application/json|5\d\d "
                                   r"text/html|no answer)", k)}
        self.assertEqual(odd, {}, "answers during the load: %s; %s"
                         % (load.summary(), load.odd_bodies))
        token = load.token
        reuse = stack.parallel([lambda i=i: stack.otp_authenticate(token, i[0], i[1])
                                for i in load.consumed], threads=16)
        for item, r in zip(load.consumed, reuse):
            self.assertError(r, 400)  # consumed before: not a second time
        sessions = stack.parallel(
            [lambda i=i: stack.http("POST", "/cis/v1/auth/session/authenticate",
                                    json={"session_id": i[2]["session_id"]}, token=token)
             for i in load.consumed], threads=16)
        for item, r in zip(load.consumed, sessions):
            self.assertJSON(r, 200)  # the session answered as created exists
        refresh = stack.parallel(
            [lambda i=i: stack.http("POST", "/cis/v1/auth/token/refresh",
                                    json={"refresh_token": i[2]["refresh_token"]}, token=token)
             for i in load.consumed[::10]], threads=16)
        for r in refresh:
            self.assertJSON(r, 200)
        pending = stack.parallel([lambda i=i: stack.otp_authenticate(token, i[0], i[1])
                                  for i in load.sent], threads=16)
        for item, r in zip(load.sent, pending):
            self.assertTokenResponse(r)  # answered as sent: it was stored
        # And a new login works.
        addr = harness.unique_email("after")
        self.assertTokenResponse(stack.otp_authenticate(token, addr,
                                                        stack.direct_code(token, addr)))

    def stop_and_verify(self, stack):
        """Stop lighttpd (it sends SIGTERM, the workers close the environment), then every
        table passes db_verify and every DB_REGISTER slot is empty."""
        workers = stack.worker_pids(descendants=True)
        stack.proc.terminate()
        stack.proc.wait(timeout=30)
        stack.proc = None
        for pid, _ in workers:
            for _ in range(200):
                if harness._proc_stat(pid) is None or harness._proc_stat(pid)[0] in "ZX":
                    break
                time.sleep(0.05)
            else:
                self.fail("worker %d did not stop" % pid)
        with open(os.path.join(stack.db, "__db.register")) as f:
            slots = f.read().splitlines()
        self.assertTrue(all(s.startswith("X") for s in slots),
                        "registry slots left by a worker stopped with SIGTERM: %r" % slots)
        if VERIFY is None:
            harness.note("db5.3_verify not installed: tables not verified")
            return
        tables = sorted(f for f in os.listdir(stack.db) if f.endswith(".db"))
        self.assertGreaterEqual(len(tables), 8)
        for name in tables:
            r = subprocess.run([VERIFY, "-h", stack.db, name], capture_output=True, text=True,
                               timeout=harness.CTL_TIMEOUT)
            self.assertEqual(r.returncode, 0, "db_verify %s: %s%s" % (name, r.stdout, r.stderr))

    def recovery_notes(self, stack):
        """Note what happened (deaths, recoveries); the log must show no damage."""
        text = stack.log_text()
        damage = re.findall(r".*(?:past end of log|Log file corrupt|invalid log record).*", text)
        self.assertEqual(damage[:3], [], "the log was damaged")
        times = [int(t) for t in re.findall(r"reopened after a recovery in (\d+) ms", text)]
        harness.note("deaths inside Berkeley DB: %d; reopens after a recovery: %d%s; watchdog "
                     "exits: %d" % (len(re.findall(r"Thread died in Berkeley DB library", text)),
                                    len(times),
                                    " (%d-%d ms)" % (min(times), max(times)) if times else "",
                                    len(re.findall(r"this worker exits to be restarted", text))))


class CrashLoop(CrashCase):

    # Before processes opened the environment one at a time (store_recover.c, bdb_open_all),
    # about 2 runs in 8 lost a write answered 200 (a consumed code worked again, a created
    # session was "not found"); since then it has passed every one of more than 80 runs (issue
    # 6's note).
    def test_crash_loop(self):
        stack, client = self.start_stack(name="crashloop")
        load = Logins(stack, client["token"]).start()
        rnd = random.Random()
        kills = 0
        deadline = time.monotonic() + CRASH_SECONDS
        try:
            while time.monotonic() < deadline:
                time.sleep(rnd.uniform(*KILL_PAUSE))
                pids = stack.worker_pids()
                if pids:
                    try:
                        os.kill(rnd.choice(pids)[0], signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
        finally:
            load.finish()
        harness.note("%d workers killed in %d s; %s" % (kills, CRASH_SECONDS, load.summary()))
        self.assertGreater(kills, 20)
        self.assertGreater(len(load.consumed), 0, load.summary())
        self.wait_resumed(stack)
        self.check_answers(stack, load)
        self.recovery_notes(stack)
        self.stop_and_verify(stack)

    def test_kill_everything_at_once(self):
        """kill -9 lighttpd and every worker together, under load; start lighttpd again."""
        stack, client = self.start_stack(name="killall")
        load = Logins(stack, client["token"]).start()
        try:
            time.sleep(3)
            victims = [stack.proc.pid] + [p for p, _ in stack.worker_pids(descendants=True)]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            stack.proc.wait(timeout=30)
            time.sleep(1)
            self.assertTrue(stack._start_server(), "lighttpd did not start again")
            time.sleep(3)
        finally:
            load.finish()
        harness.note(load.summary())
        self.assertGreater(load.answers["authenticate 200 application/json"], 0)
        self.wait_resumed(stack)
        self.check_answers(stack, load)
        self.recovery_notes(stack)
        self.stop_and_verify(stack)


class DiskFull(CrashCase):
    """The environment on a 40 MiB tmpfs, filled up while the service runs."""

    SIZE = "40m"

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        self.mnt = tempfile.mkdtemp(prefix="otlogin-e2e-tmpfs-")
        self.addCleanup(os.rmdir, self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % self.SIZE,
                            "otlogin-e2e", self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], capture_output=True)

    def fill(self):
        """Write a file until the file system is full; returns its path."""
        path = os.path.join(self.mnt, "filler")
        with open(path, "wb", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError as e:
                    if e.errno != 28:  # ENOSPC
                        raise
        return path

    def test_disk_full(self):
        stack, client = self.start_stack(name="diskfull", db_dir=os.path.join(self.mnt, "db"),
                                         server={"log_level": "debug", "db_cache_mb": 4})
        token = client["token"]
        before = []  # codes sent before the disk filled up: they must outlive it
        for _ in range(5):
            addr = harness.unique_email("before")
            before.append((addr, stack.direct_code(token, addr)))
        filler = self.fill()

        # On a full disk every answer is a 200 whose effect was stored (the allocated tail of
        # the log file can still take a commit) or the contract's 503.
        stored, refused, logins = [], 0, []
        for i in range(60):
            addr = harness.unique_email("full")
            r = stack.otp_send(token, addr, channel="direct")
            if r.status == 200:
                stored.append((addr, r.json["code"]))
            else:
                self.assertError(r, 503)
                refused += 1
            if refused >= 10:
                break
        harness.note("on the full disk: %d sends stored, %d refused" % (len(stored), refused))
        self.assertGreater(refused, 0, "the disk never looked full")
        health = stack.http("GET", "/cis/health")
        self.assertIn(health.status, (200, 503), "%r" % (health,))

        os.unlink(filler)
        self.wait_resumed(stack)
        # Every 200 was stored: each code works (once).
        for addr, code in before + stored:
            self.assertTokenResponse(stack.otp_authenticate(token, addr, code))
        addr = harness.unique_email("after")
        self.assertTokenResponse(stack.otp_authenticate(token, addr,
                                                        stack.direct_code(token, addr)))
        self.recovery_notes(stack)
        self.stop_and_verify(stack)


class LogBounded(CrashCase):

    def test_log_directory_stays_bounded(self):
        """5000 logins write about 25 MB of log; checkpoints and DB_LOG_AUTO_REMOVE keep the
        directory at the files since the last checkpoint (4 MiB files)."""
        stack, client = self.start_stack(name="logs", server={"log_level": "info"})
        token = client["token"]

        def login(i):
            addr = "log-%d-%s@example.org" % (i, os.urandom(3).hex())
            r = stack.otp_send(token, addr, channel="direct")
            if r.status != 200:
                return r
            return stack.otp_authenticate(token, addr, r.json["code"])

        results = stack.parallel([lambda i=i: login(i) for i in range(BOUNDED_LOGINS)],
                                 threads=LOAD_THREADS)
        statuses = collections.Counter(r.status for r in results)
        self.assertEqual(statuses, {200: BOUNDED_LOGINS})
        logs = sorted(f for f in os.listdir(stack.db) if re.fullmatch(r"log\.\d{10}", f))
        newest = int(logs[-1][4:])
        size = sum(os.path.getsize(os.path.join(stack.db, f)) for f in logs)
        harness.note("%d logins: log file number %d, %d files kept (%d bytes)"
                     % (BOUNDED_LOGINS, newest, len(logs), size))
        self.assertGreaterEqual(newest, 4, "the load wrote less log than expected")
        self.assertLessEqual(len(logs), 3, "log files kept: %r" % logs)


class Stop(CrashCase):

    def registered(self, stack):
        """The processes with a live DB_REGISTER slot (an ended one's line starts with X)."""
        with open(os.path.join(stack.db, "__db.register")) as f:
            return [s for s in f.read().splitlines() if not s.startswith("X")]

    def test_sigterm_closes_the_environment(self):
        """lighttpd stops its workers with SIGTERM: each closes the environment (its
        DB_REGISTER slot is emptied), so the next start needs neither failchk nor recovery."""
        stack, client = self.start_stack(name="sigterm")
        addr = harness.unique_email()
        self.assertTokenResponse(stack.otp_authenticate(
            client["token"], addr, stack.direct_code(client["token"], addr)))
        # Every worker opens the environment as it starts, but lighttpd starts them one after
        # the other, and one may still be opening when the first answer comes back. The
        # maintainer (test_maintenance) opens it too, started by a worker between requests.
        deadline = time.monotonic() + 20
        while len(self.registered(stack)) < stack.workers + 1 and time.monotonic() < deadline:
            stack.http("GET", "/cis/health")
            time.sleep(0.1)
        self.assertEqual(len(self.registered(stack)), stack.workers + 1,
                         "registered workers and the maintainer")
        self.stop_and_verify(stack)
        self.assertEqual(stack.server_log(r"Thread died|Freeing|recovery"), 0, stack.log_tail(10))


class ClockedStack(ClockStack, CrashStack):
    """A CrashStack whose workers run on a clock the test moves (clock.ClockStack)."""


class Purge(CrashCase):

    def test_expired_records_are_purged(self):
        """Pending codes, sessions (with their user index entries) and refresh tokens, all
        expired more than a day ago by the workers' clock: the periodic purge of the
        maintainer (which a worker starts, on the same clock) deletes them all, while the
        service goes on."""
        if faketime_library() is None:
            self.skipTest("libfaketime (Debian package faketime) is not installed")
        stack = ClockedStack(name="purge", server={"log_level": "info"},
                             tokens={"session_ttl": 3600, "refresh_ttl": 3600})
        stack.start()
        self.addCleanup(stack.stop)
        client = stack.new_client(permissions=["direct"], signup="open")
        token = client["token"]
        for i in range(10):
            addr = harness.unique_email("purge")
            self.assertTokenResponse(stack.otp_authenticate(token, addr,
                                                            stack.direct_code(token, addr)))
            stack.direct_code(token, harness.unique_email("pending"))
        stack.advance(2 * 86400)
        # The maintainer looks once a second; a pass is claimed at most once a minute.
        # Bounded by attempts.
        for _ in range(60):
            stack.parallel([lambda: stack.http("GET", "/cis/health")] * 8, threads=8)
            if stack.server_log(r"purge: \d+ expired records removed"):
                break
            time.sleep(0.5)
        removed = [int(n) for n in re.findall(r"purge: (\d+) expired records removed",
                                              stack.log_text())]
        harness.note("purged: %r" % removed)
        # 10 pending codes, 10 sessions, their 10 index entries, 10 refresh tokens.
        self.assertEqual(sum(removed), 40)
        token = stack.client_token(client["client_id"], client["client_secret"])
        addr = harness.unique_email("after")
        self.assertTokenResponse(stack.otp_authenticate(token, addr,
                                                        stack.direct_code(token, addr)))
        self.stop_and_verify(stack)
        self.assertEqual(stack.dump_count("codes.db"), 0)
        self.assertEqual(stack.dump_count("refresh.db"), 1)  # the last login's
