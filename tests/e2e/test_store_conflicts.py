"""Lock conflicts in Berkeley DB (README "Crash safety and storage"): transactions never wait
for a lock (DB_TXN_NOWAIT); store_run retries a conflict for up to 8 s, then the request gets
503. A real conflict: tests/e2e/hold_lock, a second process in the same environment, holds the
write lock on a client's record in an open transaction, as a worker in a long transaction would,
while the client asks /oidc/token for a token (which reads that record)."""

import os
import subprocess
import threading
import time

import harness
from harness import E2ETestCase

HOLD_LOCK = os.path.join(harness.TOP_BUILDDIR, "tests", "e2e", "hold_lock")
TBL_CLIENTS = 0  # enum store_table, src/store.h
GAVE_UP = "a transaction lost every lock conflict"

stack = None


def setUpModule():
    global stack
    if not os.access(HOLD_LOCK, os.X_OK):
        raise harness.HarnessError("not built: %s (make)" % HOLD_LOCK)
    stack = harness.Stack(name="conflicts", workers=2).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class Holder:
    """hold_lock on one record, from start() until release()."""

    def __init__(self, table, key):
        self.argv = [HOLD_LOCK, stack.path("db"), str(table), key]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "held found":
            self.release()
            raise harness.HarnessError("hold_lock: %r %s" % (line, self.proc.stderr.read()))
        return self

    def release(self):
        if self.proc is not None:
            self.proc.stdin.close()
            rc = self.proc.wait(timeout=harness.CTL_TIMEOUT)
            self.proc = None
            if rc != 0:
                raise harness.HarnessError("hold_lock exited %d" % rc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.release()


class LockConflicts(E2ETestCase):
    def token(self, client):
        return stack.token_request(client["client_id"], client["client_secret"])

    def test_held_lock_is_retried_then_503(self):
        """While another process holds the record's lock the request is retried until the
        budget is spent, then answered 503 (and the worker says why); once the lock is
        released the same request succeeds: nothing was left behind."""
        client = stack.make_client()
        with Holder(TBL_CLIENTS, client["client_id"]):
            r = self.token(client)
            self.assertEqual(r.status, 503, "%r" % (r,))
            self.assertIsInstance(r.json, dict)
            self.assertIn(GAVE_UP, stack.log_text())
        self.assertEqual(self.token(client).status, 200)

    def test_lock_released_while_retrying(self):
        """A lock released while the request retries: the request gets its answer (200), not
        an error for the conflicts it met before."""
        client = stack.make_client()
        result = {}
        with Holder(TBL_CLIENTS, client["client_id"]):
            t = threading.Thread(target=lambda: result.update(r=self.token(client)))
            t.start()
            time.sleep(1)  # the request meets the held lock; the budget is 8 s
        t.join(harness.HTTP_TIMEOUT)
        self.assertEqual(result["r"].status, 200, "%r" % (result.get("r"),))
