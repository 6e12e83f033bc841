"""Lockout (DESIGN security rule 3, issue 6 part 2): wrong passcodes count per identifier,
across re-sent codes and clients, in the transaction that checks them; at [otp] max_failures
the code dies and the identifier is locked for lockout_minutes (403 auth_locked, even for the
right code of a later send). A success resets the count; the lockout time releases the lock.
Every route that logs an identifier in honours it: a magic link for a locked identifier gets
no tokens either (its code is used up), and a magic-link login resets the count as a passcode
login does. Sessions that already exist are not affected: the lock stops guessing, it does not
log anybody out.

The clock is moved with libfaketime (the workers only) when it is installed; without it the
test that needs the lockout to pass is skipped rather than waiting 15 minutes."""

import glob
import os
import shutil
import tempfile
import urllib.parse

import harness
from harness import E2ETestCase, other_code, unique_email

MAX_FAILURES = 3
LOCKOUT_MINUTES = 15
REDIRECT = "https://app.example/callback"
LOCKED = {"message": "Too many failed attempts", "error_code": "auth_locked"}
BAD = {"message": "Invalid passcode", "error_code": "auth_invalid_credentials"}

stack = None


def faketime_library():
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


class ClockStack(harness.Stack):
    """A Stack whose FastCGI workers run on a clock the test moves (libfaketime preloaded
    for otlogin.fcgi only, its offset read from a file; lighttpd hands the settings to the
    workers as request variables too, since fcgi_stdio swaps environ per request)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.faketime = faketime_library()
        self.offset = 0
        self.clock_dir = None

    def _clock_env(self):
        return {"FAKETIME_TIMESTAMP_FILE": os.path.join(self.clock_dir, "offset"),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DISABLE_SHM": "1"}

    def _write_lighttpd_conf(self):
        super()._write_lighttpd_conf()
        if self.faketime is None:
            return
        with open(self.lighttpd_conf, "a") as f:
            f.write('server.modules += ( "mod_setenv" )\nsetenv.add-environment = ( %s )\n'
                    % ", ".join('"%s" => "%s"' % kv for kv in self._clock_env().items()))

    def start(self):
        if self.faketime is None:
            return super().start()
        self.clock_dir = tempfile.mkdtemp(prefix="otlogin-e2e-clock-")
        self.advance(0)
        saved = dict(os.environ)
        os.environ.update(self._clock_env())
        os.environ.update({"LD_PRELOAD": self.faketime, "FAKETIME_ONLY_CMDS": "otlogin.fcgi"})
        try:
            super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self

    def stop(self):
        try:
            super().stop()
        finally:
            if self.clock_dir is not None:
                shutil.rmtree(self.clock_dir, ignore_errors=True)
                self.clock_dir = None

    def advance(self, seconds):
        self.offset += int(seconds)
        path = os.path.join(self.clock_dir, "offset")
        with open(path + ".tmp", "w") as f:
            f.write("%+d\n" % self.offset)
        os.replace(path + ".tmp", path)


def setUpModule():
    global stack
    stack = ClockStack(name="lockout", otp={"max_failures": MAX_FAILURES,
                                            "lockout_minutes": LOCKOUT_MINUTES}).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class Lockout(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(permissions=["direct"], redirect_uris=[REDIRECT])
        cls.other = stack.new_client(permissions=["direct"])

    def code(self, addr, client=None):
        return stack.direct_code((client or self.client)["token"], addr)

    def auth(self, addr, code, client=None):
        return stack.otp_authenticate((client or self.client)["token"], addr, code)

    def assertWrong(self, r):
        self.assertEqual(self.assertJSON(r, 400), BAD)

    def assertLocked(self, r, body=LOCKED):
        self.assertEqual(self.assertJSON(r, 403), body)

    def lock(self, addr):
        """Lock addr with MAX_FAILURES wrong passcodes, each against a freshly sent code."""
        for _ in range(MAX_FAILURES):
            self.assertWrong(self.auth(addr, other_code(self.code(addr))))

    def link_code(self, addr):
        """A magic link sent on the direct channel, clicked: the code of its redirect."""
        r = stack.http("POST", "/cis/v1/auth/link/email/send", token=self.client["token"],
                       json={"email": addr, "redirect_uri": REDIRECT, "channel": "direct"})
        link = self.assertJSON(r, 200)["link"]
        r = stack.open_link(link)
        self.assertEqual(r.status, 303, "%r" % (r,))
        query = urllib.parse.urlsplit(r.headers["Location"]).query
        return urllib.parse.parse_qs(query)["code"][0]

    def link_auth(self, code):
        return stack.http("POST", "/cis/v1/auth/link/email/authenticate",
                          token=self.client["token"], json={"code": code})

    def test_lockout_across_resent_codes(self):
        """Three wrong passcodes, each against a new code: locked, for the right code of the
        last send, for a code sent after it, and for another client."""
        addr = stack.make_user()["email"]["value"]
        codes = []
        for i in range(MAX_FAILURES):
            codes.append(self.code(addr))
            self.assertWrong(self.auth(addr, other_code(codes[-1])))
        self.assertLocked(self.auth(addr, codes[-1]))
        self.assertLocked(self.auth(addr, self.code(addr)))
        self.assertLocked(self.auth(addr, self.code(addr, self.other), self.other))

    def test_unknown_identifier_locks_alike(self):
        """An identifier without an account locks the same way (nothing to enumerate)."""
        addr = unique_email()
        for _ in range(MAX_FAILURES):
            self.assertWrong(self.auth(addr, "000000"))
        self.assertLocked(self.auth(addr, "000000"))

    def test_success_resets(self):
        addr = stack.make_user()["email"]["value"]
        for _ in range(2):
            code = self.code(addr)
            for _ in range(MAX_FAILURES - 1):
                self.assertWrong(self.auth(addr, other_code(code)))
            self.assertTokenResponse(self.auth(addr, code))

    def test_released_after_the_lockout_time(self):
        if stack.faketime is None:
            self.skipTest("libfaketime is not installed")
        addr = stack.make_user()["email"]["value"]
        self.lock(addr)
        stack.advance(LOCKOUT_MINUTES * 60 - 30)
        self.assertLocked(self.auth(addr, self.code(addr)))
        stack.advance(60)
        self.assertTokenResponse(self.auth(addr, self.code(addr)))
        # Released, the count starts again from nothing.
        code = self.code(addr)
        for _ in range(MAX_FAILURES - 1):
            self.assertWrong(self.auth(addr, other_code(code)))
        self.assertTokenResponse(self.auth(addr, code))

    def test_parallel_wrong_guesses(self):
        """100 wrong guesses at once against one code, from every worker: exactly
        MAX_FAILURES are counted as wrong, the rest find the identifier locked, and the right
        code fails afterwards."""
        addr = stack.make_user()["email"]["value"]
        code = self.code(addr)
        wrong = ["%06d" % ((int(code) + 1 + i) % 10 ** 6) for i in range(100)]
        results = stack.parallel([lambda w=w: self.auth(addr, w) for w in wrong], threads=50)
        bodies = [(r.status, r.json) for r in results]
        self.assertEqual(bodies.count((400, BAD)), MAX_FAILURES, sorted(map(str, bodies)))
        self.assertEqual(bodies.count((403, LOCKED)), 100 - MAX_FAILURES)
        self.assertLocked(self.auth(addr, code))

    def test_magic_link_honours_the_lock(self):
        """A locked identifier gets no tokens by a magic link either; its code is used up."""
        addr = stack.make_user()["email"]["value"]
        self.lock(addr)
        code = self.link_code(addr)
        self.assertLocked(self.link_auth(code), {"message": "Too many failed attempts",
                                                 "error_code": "403"})
        r = self.link_auth(code)
        self.assertEqual(self.assertJSON(r, 400)["message"], "Invalid magic link code")
        if stack.faketime is None:
            return
        stack.advance(LOCKOUT_MINUTES * 60 + 30)
        self.assertTokenResponse(self.link_auth(self.link_code(addr)))

    def test_magic_link_login_resets_the_count(self):
        addr = stack.make_user()["email"]["value"]
        code = self.code(addr)
        for _ in range(MAX_FAILURES - 1):
            self.assertWrong(self.auth(addr, other_code(code)))
        self.assertTokenResponse(self.link_auth(self.link_code(addr)))
        code = self.code(addr)
        for _ in range(MAX_FAILURES - 1):
            self.assertWrong(self.auth(addr, other_code(code)))
        self.assertTokenResponse(self.auth(addr, code))

    def test_existing_session_is_not_locked_out(self):
        """The lock stops guessing; a session established before it goes on working."""
        addr = stack.make_user()["email"]["value"]
        tokens = self.assertTokenResponse(self.auth(addr, self.code(addr)))
        self.lock(addr)
        r = stack.http("POST", "/cis/v1/auth/session/authenticate", token=self.client["token"],
                       json={"session_id": tokens["session_id"]})
        self.assertTokenResponse(r)
