"""Guessing limits that nobody can turn against a user (DESIGN security rules 3 and 15,
otlogin.conf(5) [otp]): wrong passcodes count against the live code they were aimed at (it
dies at max_failures) and against the account's throttle, and nothing else. Guesses where no
code is outstanding, from another client, or without the request_id a code was sent with,
stop nobody. The account (every identifier of one user) is throttled from its 10th failure in
an hour on: a delay of 30 s doubling per failure up to lockout_minutes, during which every
attempt, magic links included, gets 403 auth_locked with Retry-After; it is never a wall.

The clock is moved with libfaketime (the workers only); quickstart installs it."""

import os
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase, other_code

MAX_FAILURES = 3
LOCKOUT_MINUTES = 15
ACCOUNT_FAILURES = 10  # the built-in [otp] account_failures = 10/1h
BACKOFF = 30  # the built-in [otp] backoff_seconds
REDIRECT = "https://app.example/callback"
LOCKED = {"message": "Too many failed attempts", "error_code": "auth_locked"}
BAD = {"message": "Invalid passcode", "error_code": "auth_invalid_credentials"}

stack = None


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
        if stack.faketime is None:
            raise harness.HarnessError("libfaketime is not installed (./quickstart test "
                                       "installs it)")
        cls.client = stack.make_client(permissions=["direct"], redirect_uris=[REDIRECT])
        cls.other = stack.make_client(permissions=["direct"])

    def setUp(self):
        self.advance(0)

    def advance(self, seconds):
        """Move the workers' clock; fresh client tokens, since it moves by hours."""
        stack.advance(seconds)
        for c in (self.client, self.other):
            c["token"] = stack.client_token(c["client_id"], c["client_secret"])

    def code(self, ident, client=None, identifier_type="email", **extra):
        return stack.direct_code((client or self.client)["token"], ident, identifier_type,
                                 **extra)

    def auth(self, ident, code, client=None, identifier_type="email", **extra):
        return stack.otp_authenticate((client or self.client)["token"], ident, code,
                                      identifier_type, **extra)

    def assertWrong(self, r):
        self.assertEqual(self.assertJSON(r, 400), BAD)

    def assertLocked(self, r, longest, body=LOCKED):
        """403 auth_locked with a Retry-After of 1..longest seconds; returns it."""
        self.assertEqual(self.assertJSON(r, 403), body)
        retry = int(r.headers.get("Retry-After", "0"))
        self.assertTrue(1 <= retry <= longest, "Retry-After %d of %r" % (retry, r))
        return retry

    def fail_against_live_codes(self, ident, n, identifier_type="email"):
        """n wrong passcodes, each against a live code (a new one every MAX_FAILURES)."""
        for i in range(n):
            if i % MAX_FAILURES == 0:
                code = self.code(ident, identifier_type=identifier_type)
            self.assertWrong(self.auth(ident, other_code(code), identifier_type=identifier_type))

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

    def test_guesses_at_no_code_stop_nobody(self):
        """Before: three wrong passcodes for the victim's address, from any client, with no
        code outstanding, locked the victim out. Now 20 of them change nothing: the victim's
        code (with its request_id) and magic link work."""
        addr = stack.make_user()["email"]["value"]
        for _ in range(20):
            self.assertWrong(self.auth(addr, "000000", self.other))
        r = stack.otp_send(self.client["token"], addr, channel="direct",
                           generate_request_id=True)
        body = self.assertJSON(r, 200)
        self.assertTokenResponse(self.auth(addr, body["code"], request_id=body["request_id"]))
        self.assertTokenResponse(self.link_auth(self.link_code(addr)))

    def test_guesses_from_another_client_stop_nobody(self):
        """The victim's code is live in one client; an attacker's client guesses at the same
        address: those guesses are aimed at no code of theirs and count nowhere."""
        addr = stack.make_user()["email"]["value"]
        code = self.code(addr)
        for _ in range(3 * MAX_FAILURES):
            self.assertWrong(self.auth(addr, other_code(code), self.other))
        self.assertTokenResponse(self.auth(addr, code))

    def test_a_code_dies_after_max_failures(self):
        """The third wrong passcode kills the code (the right one then fails too); the user
        asks for a new one, which works: the account is not locked."""
        addr = stack.make_user()["email"]["value"]
        code = self.code(addr)
        for _ in range(MAX_FAILURES):
            self.assertWrong(self.auth(addr, other_code(code)))
        self.assertWrong(self.auth(addr, code))
        self.assertTokenResponse(self.auth(addr, self.code(addr)))

    def test_request_id_binds_the_guesses(self):
        """A code sent with a request_id is burnt only by callers that present it: guesses
        without it or with another one leave it alive."""
        addr = stack.make_user()["email"]["value"]
        body = self.assertJSON(stack.otp_send(self.client["token"], addr, channel="direct",
                                              generate_request_id=True), 200)
        wrong = other_code(body["code"])
        for _ in range(2 * MAX_FAILURES):
            self.assertWrong(self.auth(addr, wrong))
            self.assertWrong(self.auth(addr, wrong, request_id="not-" + body["request_id"]))
        self.assertWrong(self.auth(addr, body["code"]))
        self.assertTokenResponse(self.auth(addr, body["code"], request_id=body["request_id"]))

    def test_account_throttle_spans_identifiers(self):
        """Failures against the email's and the phone's and the username's codes of one user
        add up; the tenth starts a delay in which every identifier of the account waits,
        the right code included; after it the right code works."""
        user = stack.make_user(email=harness.unique_email(),
                               phone="+1500555%04d" % (int.from_bytes(os.urandom(2), "big")
                                                       % 10000),
                               username="throttled-%s" % os.urandom(3).hex())
        email, phone = user["email"]["value"], user["phone_number"]["value"]
        username = user["username"]
        self.fail_against_live_codes(email, 4)
        self.fail_against_live_codes(phone, 3, "phone_number")
        self.fail_against_live_codes(username, ACCOUNT_FAILURES - 7, "username")
        code = self.code(email)
        retry = self.assertLocked(self.auth(email, code), BACKOFF)
        self.assertLocked(self.auth(phone, self.code(phone, identifier_type="phone_number"),
                                    identifier_type="phone_number"), BACKOFF)
        self.advance(retry + 1)
        self.assertTokenResponse(self.auth(email, code))
        # Another user is not touched by any of it.
        other = stack.make_user()["email"]["value"]
        self.assertTokenResponse(self.auth(other, self.code(other)))

    def test_brute_force_is_bounded(self):
        """A greedy attacker with an endless supply of live codes, guessing whenever allowed
        for one hour: 17 guesses are checked (10, then delays of 30, 60, 120, 240, 480, 900,
        900 s), the number the README states; no delay is longer than lockout_minutes, and
        the owner gets in once the current delay is over."""
        addr = stack.make_user()["email"]["value"]
        elapsed, checked, code, fails_on_code = 0, 0, None, MAX_FAILURES
        while True:
            if fails_on_code == MAX_FAILURES:
                code, fails_on_code = self.code(addr), 0
            r = self.auth(addr, other_code(code))
            if r.status == 403:
                retry = self.assertLocked(r, LOCKOUT_MINUTES * 60)
                if elapsed + retry >= 3600:
                    break
                self.advance(retry)
                elapsed += retry
                fails_on_code = MAX_FAILURES  # the old code may have expired meanwhile
                continue
            self.assertWrong(r)
            checked += 1
            fails_on_code += 1
        self.assertEqual(checked, ACCOUNT_FAILURES + 7)
        self.advance(LOCKOUT_MINUTES * 60)
        self.assertTokenResponse(self.auth(addr, self.code(addr)))

    def test_parallel_wrong_guesses(self):
        """100 wrong guesses at once against one code, from every worker: the code takes
        exactly MAX_FAILURES of them and dies, the account counts only those (so a new code
        works at once), and the right code of the dead one fails."""
        addr = stack.make_user()["email"]["value"]
        code = self.code(addr)
        wrong = ["%06d" % ((int(code) + 1 + i) % 10 ** 6) for i in range(100)]
        results = stack.parallel([lambda w=w: self.auth(addr, w) for w in wrong], threads=50)
        self.assertEqual([(r.status, r.json) for r in results], [(400, BAD)] * 100)
        self.assertWrong(self.auth(addr, code))
        self.fail_against_live_codes(addr, ACCOUNT_FAILURES - MAX_FAILURES - 1)
        self.assertTokenResponse(self.auth(addr, self.code(addr)))

    def test_magic_link_waits_out_the_delay(self):
        """A throttled account gets no tokens by a magic link either, but its code is not used
        up: after the delay the same code logs in."""
        addr = stack.make_user()["email"]["value"]
        code = self.link_code(addr)
        self.fail_against_live_codes(addr, ACCOUNT_FAILURES)
        retry = self.assertLocked(self.link_auth(code), BACKOFF,
                                  {"message": "Too many failed attempts", "error_code": "403"})
        self.advance(retry + 1)
        self.assertTokenResponse(self.link_auth(code))

    def test_existing_session_is_not_locked_out(self):
        """The throttle stops guessing; a session established before it goes on working."""
        addr = stack.make_user()["email"]["value"]
        tokens = self.assertTokenResponse(self.auth(addr, self.code(addr)))
        self.fail_against_live_codes(addr, ACCOUNT_FAILURES)
        r = stack.http("POST", "/cis/v1/auth/session/authenticate", token=self.client["token"],
                       json={"session_id": tokens["session_id"]})
        self.assertTokenResponse(r)
