"""otloginctl user import end to end (issue 15, goal 5; README "Migrating from Transmit"):
JSON Lines and CSV files and stdin, every skip reason reported with its line number, what an
imported user keeps (user_id, so that tokens' sub stays the same; verification, status,
created_at, name, custom_data, roles, external_account_id), a re-run that creates nothing
twice, records that look like an imported user but are not (never merged into a user who
exists), an importer killed with SIGKILL in the middle of a large file and run again (every
user exactly once), and a 100 000-user file. The real otloginctl works on the database of a
running stack, whose workers serve the users API and logins the checks use."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import harness
from harness import E2ETestCase

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "..", "bench", "gen_users.py")
HOLD_LOCK = os.path.join(harness.TOP_BUILDDIR, "tests", "e2e", "hold_lock")
TBL_USERS = 1  # enum store_table, src/store.h

stack = None


def setUpModule():
    global stack
    stack = harness.Stack(name="import").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def tag(prefix="t"):
    return "%s%s" % (prefix, os.urandom(4).hex())


class ImportCase(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = stack.new_client(permissions=["admin", "direct"])

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="otlogin-import-", dir=stack.dir)

    # ---- running the importer ----

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return path

    def jsonl(self, records, name="users.jsonl"):
        return self.write(name, "".join(
            (r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))

    def run_import(self, *args, stdin=None, timeout=300):
        """otloginctl user import ARGS: (exit status, summary or None, stderr lines)."""
        cmd = [stack.ctl_bin, "-c", stack.conf, "user", "import"] + [str(a) for a in args]
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        try:
            summary = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            self.fail("stdout is not the JSON summary: %r" % r.stdout)
        errs = [l for l in r.stderr.splitlines() if "TEST MODE" not in l]
        return r.returncode, summary, errs

    def imported(self, *args, **kw):
        rc, summary, errs = self.run_import(*args, **kw)
        self.assertEqual(rc, 0, "import failed: %s" % errs)
        return summary, errs

    # ---- the users API ----

    def api(self, method, path, json=None):
        return stack.http(method, "/cis/v1" + path, json=json, token=self.admin["token"])

    def by_email(self, addr):
        r = self.api("GET", "/users/email/" + addr)
        if r.status == 404:
            return None
        return self.assertJSON(r, 200)["result"]

    def by_id(self, user_id):
        r = self.api("GET", "/users/" + user_id)
        if r.status == 404:
            return None
        return self.assertJSON(r, 200)["result"]

    def count_tagged(self, t):
        """Users whose email starts with t (otloginctl user list): {email: count}."""
        seen = {}
        for u in json.loads(stack.ctl("user", "list")):
            addr = (u.get("email") or {}).get("value") or ""
            if addr.startswith(t + "-"):
                seen[addr] = seen.get(addr, 0) + 1
        return seen

    def assertSummary(self, summary, records, created, already=0, **reasons):
        by = {"duplicate": 0, "invalid": 0, "malformed": 0, "unknown_member": 0}
        by.update(reasons)
        self.assertEqual(summary, {"records": records, "created": created,
                                   "already_imported": already,
                                   "skipped": sum(by.values()), "by_reason": by})


class Formats(ImportCase):
    def test_jsonl_keeps_what_the_export_has(self):
        t = tag()
        addr, phone = "%s-a@example.org" % t, "+1555%07d" % (int(t[1:], 16) % 10 ** 7)
        rec = {"user_id": "%s-id" % t,
               "email": {"value": addr.upper(), "email_verified": True,
                         "verified_at": "2024-05-01T10:00:00Z"},
               "phone_number": {"value": phone, "phone_number_verified": False,
                                "verified_at": None},
               "username": "%s-name" % t, "status": "Disabled",
               "status_changed_at": 1, "created_at": 1700000000123, "updated_at": 2,
               "last_auth": "2024-05-02T00:00:00Z",
               "name": {"first_name": "Ada", "last_name": "Lovelace"},
               "custom_data": {"plan": "gold", "n": [1, 2]}, "external_account_id": "x-1",
               "roles": ["admin", "viewer"], "org_ids": []}
        summary, errs = self.imported(self.jsonl([rec]))
        self.assertSummary(summary, 1, 1)
        self.assertEqual(errs, [])
        u = self.by_id("%s-id" % t)
        self.assertIsNotNone(u, "the user_id is kept")
        self.assertEqual(u["email"]["value"], addr, "lowercased as the users API does")
        self.assertTrue(u["email"]["email_verified"])
        self.assertIsNotNone(u["email"]["verified_at"])
        self.assertEqual(u["phone_number"]["value"], phone)
        self.assertFalse(u["phone_number"]["phone_number_verified"])
        self.assertEqual(u["username"], "%s-name" % t)
        self.assertEqual(u["status"], "Disabled")
        self.assertEqual(u["created_at"], 1700000000123)
        self.assertGreater(u["updated_at"], 1700000000123, "set at the import")
        self.assertIsNone(u["last_auth"], "no login happened here")
        self.assertEqual(u["name"], {"first_name": "Ada", "last_name": "Lovelace"})
        self.assertEqual(u["custom_data"], {"plan": "gold", "n": [1, 2]})
        self.assertEqual(u["external_account_id"], "x-1")
        self.assertEqual(u["roles"], ["admin", "viewer"])
        # The indexes are the users API's: found by every identifier.
        self.assertEqual(self.by_email(addr)["user_id"], "%s-id" % t)
        r = self.api("GET", "/users/phone-number/" + urllib.parse.quote(phone, safe=""))
        self.assertEqual(self.assertJSON(r, 200)["result"]["user_id"], "%s-id" % t)
        r = self.api("GET", "/users/username/%s-name" % t)
        self.assertEqual(self.assertJSON(r, 200)["result"]["user_id"], "%s-id" % t)

    def test_imported_user_logs_in_with_the_same_sub(self):
        """The point of keeping user_id: relying parties know the user by sub."""
        t = tag()
        addr = "%s@example.org" % t
        self.imported(self.jsonl([{"user_id": "transmit-%s" % t, "email": {"value": addr}}]))
        code = stack.direct_code(self.admin["token"], addr)
        r = stack.otp_authenticate(self.admin["token"], addr, code)
        body = self.assertJSON(r, 200)
        _, claims = harness.jwt_parts(body["access_token"])
        self.assertEqual(claims["sub"], "transmit-%s" % t)

    def test_a_disabled_user_stays_disabled(self):
        """A user Transmit had disabled cannot log in after the migration either; an active
        one imported beside it can."""
        t = tag()
        recs = [{"email": "%s-off@example.org" % t, "status": "Disabled"},
                {"email": "%s-on@example.org" % t, "status": "Active"}]
        self.imported(self.jsonl(recs))
        self.assertError(stack.otp_send(self.admin["token"], "%s-off@example.org" % t,
                                        channel="direct"), 403, "user_not_active")
        self.assertEqual(stack.otp_send(self.admin["token"], "%s-on@example.org" % t,
                                        channel="direct").status, 200)

    def test_without_user_id_gets_a_new_one(self):
        t = tag()
        summary, _ = self.imported(self.jsonl([{"email": "%s@example.org" % t}]))
        self.assertSummary(summary, 1, 1)
        u = self.by_email("%s@example.org" % t)
        self.assertRegex(u["user_id"], "^[0-9a-f]{32}$")
        self.assertEqual(u["status"], "Active")
        self.assertFalse(u["email"]["email_verified"])

    def test_csv(self):
        t = tag()
        text = ("user_id,email,email_verified,phone_number,username,status,name.first_name,"
                "name.last_name,custom_data,roles,external_account_id,created_at\r\n"
                '%s-1,%s-1@example.org,true,,,Active,"Smith, Jr.","multi\nline",'
                '"{""plan"": ""gold""}",admin; viewer,e-1,1700000000000\r\n'
                "%s-2,%s-2@example.org,false,+15550001234,%s-u2,Pending,,,,"
                '"[""a""]",,\r\n'
                "\r\n"
                "%s-3,%s-3@example.org,,,,,,,,,,\r\n") % (t, t, t, t, t, t, t)
        summary, errs = self.imported(self.write("u.csv", text))
        self.assertEqual(errs, [])
        self.assertSummary(summary, 3, 3)
        u1 = self.by_id("%s-1" % t)
        self.assertEqual(u1["email"]["value"], "%s-1@example.org" % t)
        self.assertTrue(u1["email"]["email_verified"])
        self.assertEqual(u1["name"], {"first_name": "Smith, Jr.", "last_name": "multi\nline"})
        self.assertEqual(u1["custom_data"], {"plan": "gold"})
        self.assertEqual(u1["roles"], ["admin", "viewer"])
        self.assertEqual(u1["external_account_id"], "e-1")
        self.assertEqual(u1["created_at"], 1700000000000)
        self.assertIsNone(u1["phone_number"], "an empty cell is an absent member")
        u2 = self.by_id("%s-2" % t)
        self.assertEqual(u2["phone_number"]["value"], "+15550001234")
        self.assertEqual(u2["status"], "Pending")
        self.assertEqual(u2["roles"], ["a"])
        self.assertEqual(u2["name"], {})
        self.assertIsNotNone(self.by_id("%s-3" % t))

    def test_csv_unknown_or_repeated_column_refused_whole(self):
        t = tag()
        for header in ("email,password", "email,email", "email,phone"):
            path = self.write("bad.csv", "%s\n%s@example.org,x\n" % (header, t))
            rc, summary, errs = self.run_import(path)
            self.assertEqual(rc, 1, header)
            self.assertEqual(summary["records"], 0, header)
            self.assertTrue(any("CSV header" in e for e in errs), errs)
        self.assertIsNone(self.by_email("%s@example.org" % t), "nothing imported")

    def test_stdin_needs_a_format(self):
        t = tag()
        data = json.dumps({"email": "%s@example.org" % t}) + "\n"
        rc, summary, errs = self.run_import("-", stdin=data)
        self.assertEqual(rc, 2, "a usage error")
        self.assertIsNone(summary)
        self.assertTrue(any("--format" in e for e in errs), errs)
        self.assertIsNone(self.by_email("%s@example.org" % t))
        summary, errs = self.imported("--format", "jsonl", "-", stdin=data)
        self.assertSummary(summary, 1, 1)
        self.assertIsNotNone(self.by_email("%s@example.org" % t))
        csv = "email,username\n%s-c@example.org,%s-c\n" % (t, t)
        summary, _ = self.imported("--format", "csv", "-", stdin=csv)
        self.assertSummary(summary, 1, 1)
        self.assertEqual(self.by_email("%s-c@example.org" % t)["username"], "%s-c" % t)

    def test_format_option_wins_over_the_extension(self):
        t = tag()
        path = self.write("users.txt", "email\n%s@example.org\n" % t)
        rc, _, errs = self.run_import(path)
        self.assertEqual(rc, 2, "an unknown extension needs --format")
        for bad in (("--format", "xml"), ("--batch", "0"), ("--batch", "-1"),
                    ("--batch", "100001"), ("--batch", "10x")):
            rc, summary, errs = self.run_import(*(bad + (path,)))
            self.assertEqual((rc, summary), (2, None), bad)
        summary, _ = self.imported("--format", "csv", path)
        self.assertSummary(summary, 1, 1)


class Skips(ImportCase):
    def test_every_reason_with_its_line(self):
        t = tag()
        taken = stack.make_user(email="%s-taken@example.org" % t)
        lines = [
            {"email": "%s-ok1@example.org" % t},                                # 1 created
            "",                                                                # 2 blank
            {"email": "%s-taken@example.org" % t, "external_account_id": "e"},  # 3 duplicate
            {"email": "not an address"},                                       # 4 invalid
            {"phone_number": {"value": "0123", "phone_number_verified": True}},  # 5 invalid
            {"email": "%s-pw@example.org" % t, "password": "hunter2"},          # 6 unknown
            {"email": {"value": "%s-x@example.org" % t, "primary": True}},      # 7 unknown
            "{\"email\": ",                                                     # 8 malformed
            "[\"%s-arr@example.org\"]" % t,                                     # 9 malformed
            {"email": "%s-st@example.org" % t, "status": "Deleted"},            # 10 invalid
            {"username": "%s-noemail" % t},                                     # 11 invalid
            {"user_id": taken["user_id"], "email": "%s-new@example.org" % t},   # 12 duplicate
            {"email": "%s-ok2@example.org" % t},                                # 13 created
            {"email": "%s-ok1@example.org" % t, "username": "%s-other" % t},    # 14 duplicate
            "{\"email\": \"a@example.org\", \"email\": \"b@example.org\"}",     # 15 malformed
        ]
        summary, errs = self.imported(self.jsonl(lines))
        self.assertSummary(summary, 14, 2, duplicate=3, invalid=4, malformed=3,
                           unknown_member=2)
        expect = {3: "duplicate", 4: "invalid", 5: "invalid", 6: "unknown_member",
                  7: "unknown_member", 8: "malformed", 9: "malformed", 10: "invalid",
                  11: "invalid", 12: "duplicate", 14: "duplicate", 15: "malformed"}
        got = {}
        for e in errs:
            head, _, rest = e.partition(": skipped, ")
            self.assertTrue(head.startswith("line "), e)
            got[int(head[5:])] = rest.split(":")[0]
        self.assertEqual(got, expect, "\n".join(errs))
        self.assertIn("password", [e for e in errs if e.startswith("line 6:")][0])
        self.assertIn("email.primary", [e for e in errs if e.startswith("line 7:")][0])
        # No address is written to the report, only the line number and the reason.
        self.assertFalse(any("%s-taken" % t in e for e in errs), errs)
        self.assertIsNotNone(self.by_email("%s-ok1@example.org" % t))
        self.assertIsNotNone(self.by_email("%s-ok2@example.org" % t))
        for skipped in ("pw", "x", "st", "new"):
            self.assertIsNone(self.by_email("%s-%s@example.org" % (t, skipped)), skipped)

    def test_a_refused_record_claims_nothing(self):
        """A record whose username is taken: its new email stays free (no half-claimed
        identifiers in the batch's transaction), and its batch's other users are created."""
        t = tag()
        stack.make_user(email="%s-owner@example.org" % t, username="%s-name" % t)
        recs = [{"email": "%s-a@example.org" % t},
                {"email": "%s-fresh@example.org" % t, "phone_number": "+15557770000",
                 "username": "%s-name" % t},
                {"email": "%s-b@example.org" % t}]
        summary, _ = self.imported(self.jsonl(recs))
        self.assertSummary(summary, 3, 2, duplicate=1)
        self.assertIsNone(self.by_email("%s-fresh@example.org" % t))
        self.assertEqual(self.api("GET", "/users/phone-number/%2B15557770000").status, 404)
        # ... so a later record (or the users API) can still take them.
        summary, _ = self.imported(self.jsonl([{"email": "%s-fresh@example.org" % t}]))
        self.assertSummary(summary, 1, 1)


class Resume(ImportCase):
    def test_rerun_creates_nothing_twice(self):
        t = tag()
        recs = [{"user_id": "%s-1" % t, "email": "%s-1@example.org" % t},
                {"email": "%s-2@example.org" % t, "external_account_id": "e2"},
                {"email": "%s-3@example.org" % t, "username": "%s-3" % t},
                {"email": "%s-3@example.org" % t, "username": "%s-3" % t},  # repeated line
                {"email": "bad"}]
        path = self.jsonl(recs)
        summary, _ = self.imported(path)
        self.assertSummary(summary, 5, 3, already=1, invalid=1)
        before = {u: self.by_email("%s-%d@example.org" % (t, u)) for u in (1, 2, 3)}
        summary, errs = self.imported(path)
        self.assertSummary(summary, 5, 0, already=4, invalid=1)
        self.assertEqual(len(errs), 1, "already imported records are not reported: %s" % errs)
        for u in (1, 2, 3):
            self.assertEqual(self.by_email("%s-%d@example.org" % (t, u)), before[u],
                             "a re-run leaves an imported user as it was")
        self.assertEqual(self.count_tagged(t), {"%s-%d@example.org" % (t, u): 1
                                                for u in (1, 2, 3)})

    def test_lookalike_is_not_merged_into_an_existing_user(self):
        """'Already imported' must not let a file take over a user who exists: a record
        carrying only some of a user's identifiers, another external_account_id or another
        user_id is a duplicate, and the user is left as it was."""
        t = tag()
        owner = stack.make_user(email="%s@example.org" % t, username="%s-u" % t)
        r = self.api("PUT", "/users/" + owner["user_id"],
                     json={"external_account_id": "real"})
        self.assertJSON(r, 200)
        before = self.by_id(owner["user_id"])
        recs = [{"email": "%s@example.org" % t},                              # fewer ids
                {"email": "%s@example.org" % t, "username": "%s-u" % t,
                 "external_account_id": "forged"},                            # other ext
                {"user_id": "%s-forged" % t, "email": "%s@example.org" % t,
                 "username": "%s-u" % t, "external_account_id": "real"},      # other id
                {"email": "%s@example.org" % t, "username": "%s-u" % t,
                 "external_account_id": "real", "custom_data": {"admin": True},
                 "roles": ["admin"]}]                                          # same user
        summary, _ = self.imported(self.jsonl(recs))
        self.assertSummary(summary, 4, 0, already=1, duplicate=3)
        self.assertEqual(self.by_id(owner["user_id"]), before,
                         "an already imported record changes nothing, roles included")
        self.assertIsNone(self.by_id("%s-forged" % t))

    def test_killed_in_the_middle_then_rerun(self):
        t = tag("k")
        n = 20000
        path = os.path.join(self.tmp, "big.jsonl")
        with open(path, "w") as f:
            subprocess.run([sys.executable, GEN, str(n), "--tag", t, "--phone-prefix", "201"],
                           stdout=f, check=True)
        cmd = [stack.ctl_bin, "-c", stack.conf, "user", "import", "--batch", "500",
               "--progress", path]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        committed = 0
        try:
            for line in p.stderr:
                if line.startswith("committed through line "):
                    committed = int(line.split()[-1])
                    if committed >= 2000:
                        break
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            p.stderr.close()
        self.assertEqual(p.returncode, -signal.SIGKILL)
        self.assertGreaterEqual(committed, 2000, "the importer made progress before the kill")
        partial = self.count_tagged(t)
        self.assertGreaterEqual(len(partial), committed)
        self.assertLess(len(partial), n, "killed before the end")
        self.assertEqual(set(partial.values()), {1})
        # The workers still answer (the killed importer's locks were released).
        self.assertEqual(stack.http("GET", "/cis/health").status, 200)
        summary, errs = self.imported(path)
        self.assertEqual(errs, [])
        self.assertSummary(summary, n, n - len(partial), already=len(partial))
        seen = self.count_tagged(t)
        self.assertEqual(len(seen), n, "every user is there")
        self.assertEqual(set(seen.values()), {1}, "and only once")


    def test_a_lock_held_for_long_is_waited_out(self):
        """Another process holds a lock the import needs for longer than one transaction's
        retry budget (8 s): the import goes on in smaller transactions and creates every
        user once the lock is released, instead of failing."""
        t = tag("h")
        owner = stack.make_user(email="%s-owner@example.org" % t)
        recs = [{"email": "%s-%d@example.org" % (t, i)} for i in range(3000)]
        recs[1500] = {"email": "%s-owner@example.org" % t}  # reads the held record
        path = self.jsonl(recs)
        holder = subprocess.Popen([HOLD_LOCK, stack.path("db"), str(TBL_USERS),
                                   owner["user_id"]], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(holder.stdout.readline().strip(), "held found")
            timer = threading.Timer(12, holder.stdin.close)
            timer.start()
            start = time.monotonic()
            rc, summary, errs = self.run_import("--batch", "1000", path)
            took = time.monotonic() - start
            timer.join()
        finally:
            if not holder.stdin.closed:
                holder.stdin.close()
            holder.wait(timeout=60)
        self.assertEqual(rc, 0, errs)
        self.assertGreater(took, 8, "the import did wait for the lock")
        self.assertSummary(summary, 3000, 2999, already=1)
        self.assertTrue(any("records a transaction now" in e for e in errs), errs)
        self.assertEqual(len(self.count_tagged(t)), 3000)


class Scale(ImportCase):
    def test_100k_users(self):
        t = tag("s")
        n = 100000
        path = os.path.join(self.tmp, "100k.jsonl")
        with open(path, "w") as f:
            subprocess.run([sys.executable, GEN, str(n), "--tag", t, "--phone-prefix", "202"],
                           stdout=f, check=True)
        start = time.monotonic()
        summary, errs = self.imported(path, timeout=400)
        took = time.monotonic() - start
        harness.note("imported %d users in %.1f s (%.0f users/s)" % (n, took, n / took))
        self.assertSummary(summary, n, n)
        self.assertEqual(errs, [])
        # The users list pages and counts at this size.
        r = self.api("GET", "/users?page_size=5")
        self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(r.json["total_count"], n)
        self.assertEqual(len(r.json["result"]), 5)
        self.assertTrue(r.json["page_info"]["has_next_page"])
        r = self.api("GET", "/users?page_size=5&cursor=" + r.json["page_info"]["end_cursor"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["result"]), 5)
        # A sample through the users API.
        for i in [0, 1, 2, n // 2, n - 2, n - 1] + [int.from_bytes(os.urandom(3), "big") % n
                                                    for _ in range(20)]:
            u = self.by_email("%s-%d@example.org" % (t, i))
            self.assertIsNotNone(u, i)
            self.assertEqual(u["user_id"], "%s-%08d" % (t, i))
            self.assertEqual(u["external_account_id"], "ext-%s-%d" % (t, i))


if __name__ == "__main__":
    unittest.main()
