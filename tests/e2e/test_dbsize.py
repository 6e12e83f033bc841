"""otloginctl db size end to end (issue 15, goal 4; otloginctl(8), otlogin.conf(5) db_cache_mb):
the tables' sizes are the files', the counts are the users and refresh tokens made through
the API, the recommendation follows the rule (125 % of the tables, at least the default), and
its advice, when the cache is too small, is what actually gives the running service the
recommended cache: the same stack restarted with that db_cache_mb and db5.3_recover run in
between reports a cache that holds the tables."""

import json
import math
import os
import shutil
import subprocess
import unittest

import time

import harness
from harness import E2ETestCase

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "..", "bench", "gen_users.py")
TABLES = ("clients.db", "users.db", "user_idx.db", "codes.db", "counters.db", "sessions.db",
          "refresh.db", "keys.db")
MIB = 1 << 20


def rule(data_bytes):
    """db_cache_mb for data_bytes of tables, as otloginctl(8) states it."""
    return min(65536, max(16, math.ceil(data_bytes * 1.25 / MIB)))


def wait_gone(pid, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


class DbSize(E2ETestCase):
    def setUp(self):
        # The smallest cache the configuration takes, so that a few thousand users outgrow it.
        self.stack = harness.Stack(name="dbsize", server={"db_cache_mb": 1}).start()
        self.addCleanup(self.stack.stop)

    def size(self):
        return json.loads(self.stack.ctl("db", "size"))

    def check_files(self, r):
        db = self.stack.path("db")
        self.assertEqual(sorted(r["tables"]), sorted(TABLES))
        for name in TABLES:
            self.assertEqual(r["tables"][name]["bytes"], os.stat(os.path.join(db, name)).st_size,
                             name)
        self.assertEqual(r["data_bytes"], sum(v["bytes"] for v in r["tables"].values()))
        self.assertEqual(r["recommended_cache_mb"], rule(r["data_bytes"]))

    def test_counts_rule_and_applying_it(self):
        st = self.stack
        client = st.new_client(permissions=["direct"])
        r = self.size()
        self.check_files(r)
        self.assertEqual((r["users"], r["refresh_tokens"]), (0, 0))
        self.assertEqual(r["configured_cache_mb"], 1)
        # An empty database fits any cache; the recommendation is the default then.
        self.assertEqual(r["recommended_cache_mb"], 16)
        self.assertEqual(r["advice"], "the cache holds the tables")

        # Two logins through the API: two users (open signup) and two refresh tokens.
        for i in range(2):
            addr = "dbsize-%d@example.org" % i
            res = st.otp_authenticate(client["token"], addr,
                                      st.direct_code(client["token"], addr))
            self.assertEqual(res.status, 200, res)
        # 6000 more users by the importer: about 5 MiB of tables, more than the cache.
        users = os.path.join(st.dir, "users.jsonl")
        with open(users, "w") as f:
            subprocess.run(["python3", GEN, "6000", "--tag", "dbs"], stdout=f, check=True)
        st.ctl("user", "import", users)
        r = self.size()
        self.check_files(r)
        self.assertEqual((r["users"], r["refresh_tokens"]), (6002, 2))
        self.assertGreater(r["data_bytes"], r["cache_bytes"])
        self.assertAlmostEqual(r["mib_per_million_users"], r["data_bytes"] / MIB * 1e6 / 6002)
        self.assertGreater(r["cache_hit_rate"], 0)
        self.assertLessEqual(r["cache_hit_rate"], 1)
        rec = r["recommended_cache_mb"]
        self.assertIn("set [server] db_cache_mb = %d" % rec, r["advice"])
        self.assertIn("db5.3_recover -h %s" % st.path("db"), r["advice"])

        # Configured but not applied: the environment keeps its cache over a restart.
        st.sections["server"]["db_cache_mb"] = rec
        st._write_otlogin_conf()
        st.restart()
        r = self.size()
        self.assertEqual(r["configured_cache_mb"], rec)
        self.assertLess(r["cache_bytes"], r["data_bytes"])
        self.assertIn("db_cache_mb is set; to apply it:", r["advice"])

        # Applied as the advice says: stop, db5.3_recover, start.
        recover = shutil.which("db5.3_recover")
        self.assertIsNotNone(recover, "db5.3_recover (db5.3-util) is missing")
        workers = st.worker_pids()
        st._stop_server()
        for pid, _ in workers:
            self.assertTrue(wait_gone(pid), "worker %d did not exit" % pid)
        subprocess.run([recover, "-h", st.path("db")], check=True)
        self.assertTrue(st._start_server())
        r = self.size()
        self.assertGreaterEqual(r["cache_bytes"], rec * MIB)
        self.assertGreaterEqual(r["cache_bytes"], r["data_bytes"] * 1.25)
        self.assertEqual(r["advice"], "the cache holds the tables")
        self.assertEqual((r["users"], r["refresh_tokens"]), (6002, 2))
        # The service still works on the recovered environment.
        addr = "dbsize-0@example.org"
        res = st.otp_authenticate(client["token"], addr, st.direct_code(client["token"], addr))
        self.assertEqual(res.status, 200, res)

    def test_usage(self):
        p = subprocess.run([self.stack.ctl_bin, "-c", self.stack.conf, "db", "bogus"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("db size", p.stderr)


if __name__ == "__main__":
    unittest.main()
