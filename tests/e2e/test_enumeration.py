"""Enumeration (DESIGN security rule 14, issue 6 part 3): a client registered with
"otloginctl client add --existence hide" gets the same answer (status, body, every header but
Date) to a send for an identifier that can receive it and for one that cannot (unknown under
closed signup, unknown username or user_id, disabled, without the address or number), and
nothing is delivered to the latter; an authenticate for an identifier that has no code
answers like a wrong passcode; "expired" is told only to the right code. A client with the
default policy ("reveal") keeps the contract's 404s.

Timing is made alike by doing the same work on both paths (the same limits, composing and
writes, and a pause as long as recent deliveries took). It is asserted against a delay the
test itself puts into the SMTP sink (Timing, ColdWorker), in proportion to deliveries
measured in the same run, never against a wall-clock threshold of the machine's."""

import asyncio
import os
import statistics
import time
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase, other_code, unique_email

REDIRECT = "https://app.example/callback"
LINK_SEND = "/cis/v1/auth/link/email/send"
_phone_n = [0]

stack = None


def unique_phone():
    _phone_n[0] += 1
    return "+49172%03d%04d" % (os.getpid() % 1000, _phone_n[0])


class EnumStack(ClockStack):
    """A clock stack with an smstools [sms] backend writing to <dir>/outgoing."""

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        with open(self.conf, "a") as f:
            f.write("\n[sms]\nbackend = smstools\nspool_dir = %s\n" % self.path("outgoing"))

    def start(self):
        super().start()
        os.makedirs(self.path("outgoing"), mode=0o700, exist_ok=True)
        return self

    def sms_to(self, phone):
        """Spool files addressed to phone."""
        out = []
        for n in os.listdir(self.path("outgoing")):
            with open(self.path("outgoing", n), "rb") as f:
                if ("To: %s\n" % phone[1:]).encode() in f.read():
                    out.append(n)
        return out


def client_with(existence=None, signup=None, permissions=("direct",)):
    args = ["client", "add", "--name", "enum-%s-%s" % (existence, signup),
            "--redirect-uri", REDIRECT]
    for p in permissions:
        args += ["--permission", p]
    if existence:
        args += ["--existence", existence]
    if signup:
        args += ["--signup", signup]
    c = stack.ctl(*args, parse=True)
    c["token"] = stack.client_token(c["client_id"], c["client_secret"])
    return c


def setUpModule():
    global stack
    stack = EnumStack(name="enumeration", limits={"send_cooldown": 30}).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def headers_but_date(r):
    """The headers two answers must share: all but Date and X-Request-Id (every request's own
    random id, drawn alike whether the user exists or not)."""
    return sorted((k.lower(), v) for k, v in r.headers.items()
                  if k.lower() not in ("date", "x-request-id"))


class Enumeration(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.hide = client_with("hide", "closed")
        cls.hide_open = client_with("hide")
        cls.reveal = client_with(None, "closed")
        cls.admin = stack.new_client(permissions=["admin"])

    def assertSame(self, known, unknown, status=200):
        """Identical status, body and headers (Date aside)."""
        self.assertEqual(known.status, status, "%r" % (known,))
        self.assertEqual((unknown.status, unknown.body), (known.status, known.body))
        self.assertEqual(headers_but_date(unknown), headers_but_date(known))

    def assertNoMailTo(self, addr):
        """Every mail is handed to SMTP before the answer, so it would be in the sink now."""
        self.assertNotIn(addr.lower(), stack.mailbox.all_recipients())

    def send(self, client, ident, itype="email", channel="email", **extra):
        return stack.otp_send(client["token"], ident, itype, channel, **extra)

    def link_send(self, client, ident, itype="email", **extra):
        body = {"identifier": ident, "identifier_type": itype, "redirect_uri": REDIRECT}
        body.update(extra)
        return stack.http("POST", LINK_SEND, json=body, token=client["token"])

    def disable(self, user):
        r = stack.http("PUT", "/cis/v1/users/%s" % user["user_id"], token=self.admin["token"],
                       json={"status": "Disabled"})
        self.assertEqual(r.status, 200, "%r" % (r,))

    def test_otp_send_known_and_unknown_email(self):
        known = stack.make_user()["email"]["value"]
        unknown = unique_email("nobody")
        a, b = self.send(self.hide, known), self.send(self.hide, unknown)
        self.assertSame(a, b)
        self.assertEqual(a.json, {"message": "OTP sent"})
        stack.wait_mail(known)
        self.assertNoMailTo(unknown)
        # The default policy tells them apart, as the contract says.
        r = self.send(self.reveal, unique_email("nobody"))
        self.assertError(r, 404, "user_not_found")

    def test_otp_send_every_kind_of_undeliverable(self):
        """Unknown username and user_id, a disabled user, a user without an email address
        (asked for by phone number): each answers as a deliverable one does."""
        user = stack.make_user(username="u%s" % os.urandom(5).hex())
        disabled = stack.make_user()
        self.disable(disabled)
        phone_only = stack.make_user(phone=unique_phone())
        reference = self.send(self.hide, user["username"], "username")
        stack.wait_mail(user["email"]["value"])
        cases = [
            ("unknown username", "nobody%s" % os.urandom(5).hex(), "username"),
            ("unknown user_id", os.urandom(16).hex(), "user_id"),
            ("disabled user", disabled["email"]["value"], "email"),
            ("no email address", phone_only["phone_number"]["value"], "phone_number"),
        ]
        for what, ident, itype in cases:
            with self.subTest(what):
                self.assertSame(reference, self.send(self.hide, ident, itype))
        self.assertNoMailTo(disabled["email"]["value"])
        self.assertEqual(stack.mailbox.pending(), [])

    def test_otp_send_by_sms(self):
        known = stack.make_user(phone=unique_phone())["phone_number"]["value"]
        unknown = unique_phone()
        a = self.send(self.hide, known, "phone_number", "sms")
        b = self.send(self.hide, unknown, "phone_number", "sms")
        self.assertSame(a, b)
        self.assertEqual(len(stack.sms_to(known)), 1)
        self.assertEqual(stack.sms_to(unknown), [])

    def test_open_signup_still_signs_up(self):
        """With open signup an unknown address can log in: it gets its code (the answer is
        the same either way); an unknown username cannot, and gets nothing."""
        addr = unique_email("newcomer")
        r = self.send(self.hide_open, addr)
        self.assertEqual(r.status, 200)
        code = stack.mail_code(stack.wait_mail(addr))
        self.assertTokenResponse(stack.otp_authenticate(self.hide_open["token"], addr, code))
        self.assertSame(r, self.send(self.hide_open, "nobody%s" % os.urandom(5).hex(),
                                     "username"))

    def test_link_send_known_and_unknown(self):
        known = stack.make_user()["email"]["value"]
        unknown = unique_email("nobody")
        a, b = self.link_send(self.hide, known), self.link_send(self.hide, unknown)
        self.assertSame(a, b)
        self.assertEqual(a.json, {"message": "Email sent successfully"})
        stack.wait_mail(known)
        self.assertNoMailTo(unknown)
        r = self.link_send(self.reveal, unique_email("nobody"))
        self.assertError(r, 404, "404")

    def test_direct_link_for_unknown_is_dead(self):
        """On the direct channel the unknown identifier's link comes back like any other,
        and opens as an unknown link."""
        known = stack.make_user()["email"]["value"]
        a = self.link_send(self.hide, known, channel="direct")
        b = self.link_send(self.hide, unique_email("nobody"), channel="direct")
        self.assertEqual((a.status, sorted(a.json)), (b.status, sorted(b.json)))
        self.assertEqual(len(a.json["link"]), len(b.json["link"]))
        for link, status in ((a.json["link"], 200), (b.json["link"], 404)):
            u = urllib.parse.urlsplit(link)
            r = stack.http("GET", u.path + "?" + u.query)
            self.assertEqual(r.status, status, "%r" % (r,))

    def test_authenticate_unknown_like_wrong_code(self):
        known = stack.make_user()["email"]["value"]
        code = stack.direct_code(self.hide["token"], known)
        wrong = stack.otp_authenticate(self.hide["token"], known, other_code(code))
        for unknown in (unique_email("nobody"), known.replace("@", "x@")):
            self.assertSame(wrong, stack.otp_authenticate(self.hide["token"], unknown, code),
                            400)
        # After a (hidden) send, too; and a direct send hands out a code that never works.
        unknown = unique_email("nobody")
        self.assertEqual(self.send(self.hide, unknown).status, 200)
        for c in (code, "000000"):
            self.assertSame(wrong, stack.otp_authenticate(self.hide["token"], unknown, c), 400)
        ghost = unique_email("ghost")
        dead = stack.direct_code(self.hide["token"], ghost)
        self.assertRegex(dead, r"^[0-9]{6}$")
        self.assertSame(wrong, stack.otp_authenticate(self.hide["token"], ghost, dead), 400)

    def test_rate_limited_alike(self):
        """The cool-down (30 s here) refuses a second send for both, in the same words."""
        known = stack.make_user()["email"]["value"]
        unknown = unique_email("nobody")
        self.assertSame(self.send(self.hide, known), self.send(self.hide, unknown))
        stack.wait_mail(known)
        a, b = self.send(self.hide, known), self.send(self.hide, unknown)
        self.assertEqual((a.status, a.body), (429, b.body))
        self.assertEqual([h for h in headers_but_date(a) if h[0] != "retry-after"],
                         [h for h in headers_but_date(b) if h[0] != "retry-after"])
        self.assertLessEqual(abs(int(a.headers["Retry-After"]) - int(b.headers["Retry-After"])),
                             1)
        self.assertEqual(stack.mailbox.pending(), [])

    def test_expired_told_only_to_the_right_code(self):
        if stack.faketime is None:
            self.skipTest("libfaketime is not installed")
        hidden_user = stack.make_user()["email"]["value"]
        shown_user = stack.make_user()["email"]["value"]
        hidden = stack.direct_code(self.hide["token"], hidden_user, expires_in=1)
        shown = stack.direct_code(self.reveal["token"], shown_user, expires_in=1)
        stack.advance(90)
        wrong = stack.otp_authenticate(self.hide["token"], hidden_user, other_code(hidden))
        self.assertError(wrong, 400, "auth_invalid_credentials")
        self.assertSame(wrong, stack.otp_authenticate(self.hide["token"],
                                                      unique_email("nobody"), hidden), 400)
        r = stack.otp_authenticate(self.hide["token"], hidden_user, hidden)
        self.assertError(r, 400, "auth_otp_passcode_expired")
        r = stack.otp_authenticate(self.reveal["token"], shown_user, other_code(shown))
        self.assertError(r, 400, "auth_otp_passcode_expired")

    def test_existence_option_checked(self):
        with self.assertRaises(harness.HarnessError):
            stack.ctl("client", "add", "--name", "bad", "--existence", "maybe")
        listed = [c for c in stack.ctl("client", "list", parse=True)
                  if c["client_id"] in (self.hide["client_id"], self.reveal["client_id"])]
        self.assertEqual(sorted(c["existence"] for c in listed), ["hide", "reveal"])


class CrossChannel(E2ETestCase):
    """Audit item 4: the limits that answer 429 to a hiding client are keyed by what the
    request says (channel, identifier type, identifier, custom destination), never by where
    the account's code would really go. Otherwise a send by SMS for an email identifier counts
    against the user's phone when there is one and against the identifier when there is none,
    and the email send that follows answers 200 or 429 accordingly (and likewise phone and
    email, username and email). The real destination's own limits still hold, silently: a send
    over them is answered as one and delivers nothing.

    Each sequence is run for users with an email address and a phone number, with only one of
    them, and for unknown identifiers; every answer of every subject must be the same as the
    first subject's (Date aside, Retry-After within a second). Each ends by repeating its first
    request, which the cool-down (30 s) refuses alike for all."""

    OTP, LINK = "otp", "link"
    SEQUENCES = {
        "email id: sms, email": [(OTP, "email", "sms"), (OTP, "email", "email")],
        "phone id: email, sms": [(OTP, "phone_number", "email"),
                                 (OTP, "phone_number", "sms")],
        "username: email, sms": [(OTP, "username", "email"), (OTP, "username", "sms")],
        "username: sms, email": [(OTP, "username", "sms"), (OTP, "username", "email")],
        "username then email id": [(OTP, "username", "email"), (OTP, "email", "email")],
        "email id then username": [(OTP, "email", "email"), (OTP, "username", "email")],
        "phone id then username, sms": [(OTP, "phone_number", "sms"),
                                        (OTP, "username", "sms")],
        "email id by sms then phone id": [(OTP, "email", "sms"),
                                          (OTP, "phone_number", "sms")],
        "email id: sms, link": [(OTP, "email", "sms"), (LINK, "email", "email")],
        "link: username then email id": [(LINK, "username", "email"),
                                          (LINK, "email", "email")],
        "link then passcode, username and email id": [(LINK, "username", "email"),
                                                      (OTP, "email", "email")],
    }

    @classmethod
    def setUpClass(cls):
        cls.hide = client_with("hide", "closed")
        cls.reveal = client_with(None, "closed")

    def tearDown(self):
        # What the sequences delivered is not looked at: take it, for the next tests.
        for m in stack.mailbox.pending():
            m["taken"] = True

    def subjects(self):
        """(what, identifiers by type, the user's own address and number or None): a user
        with both, with only an email address, with only a phone number, and nobody."""
        out = []
        for what, has_email, has_phone in (("both", True, True), ("email only", True, False),
                                           ("phone only", False, True),
                                           ("unknown", False, False)):
            ids = {"email": unique_email("x"), "phone_number": unique_phone(),
                   "username": "u%s" % os.urandom(6).hex()}
            if has_email or has_phone:
                stack.make_user(email=ids["email"] if has_email else None,
                                phone=ids["phone_number"] if has_phone else None,
                                username=ids["username"])
            out.append((what, ids))
        return out

    def request(self, client, kind, itype, channel, ids):
        if kind == self.LINK:
            return stack.http("POST", LINK_SEND, token=client["token"],
                              json={"identifier": ids[itype], "identifier_type": itype,
                                    "redirect_uri": REDIRECT})
        return stack.otp_send(client["token"], ids[itype], itype, channel)

    def answers(self, seq, ids):
        steps = self.SEQUENCES[seq]
        return [self.request(self.hide, kind, itype, channel, ids)
                for kind, itype, channel in steps + steps[:1]]

    def assertAlike(self, ref, other, what):
        for i, (a, b) in enumerate(zip(ref, other)):
            msg = "%s, request %d: %r vs %r" % (what, i + 1, a, b)
            self.assertEqual((b.status, b.body), (a.status, a.body), msg)
            self.assertEqual([h for h in headers_but_date(b) if h[0] != "retry-after"],
                             [h for h in headers_but_date(a) if h[0] != "retry-after"], msg)
            if a.status == 429:
                self.assertLessEqual(abs(int(a.headers["Retry-After"])
                                         - int(b.headers["Retry-After"])), 1, msg)

    def test_sequences_answer_alike(self):
        for seq in self.SEQUENCES:
            with self.subTest(seq):
                results = [(what, self.answers(seq, ids)) for what, ids in self.subjects()]
                ref = results[0][1]
                for what, answers in results[1:]:
                    self.assertAlike(ref, answers, "%s, %s" % (seq, what))
                self.assertEqual([r.status for r in ref], [200, 200, 429], "%s: %r" % (seq, ref))

    def test_destination_limit_holds_silently(self):
        """A user's address gets one message per cool-down however it is asked for; the
        second request is answered as sent, delivers nothing, and says so in the log with
        the address masked."""
        user = stack.make_user(username="u%s" % os.urandom(6).hex())
        addr = user["email"]["value"]
        a = self.request(self.hide, self.OTP, "username", "email", {"username": user["username"]})
        code = stack.mail_code(stack.wait_mail(addr))
        b = self.request(self.hide, self.OTP, "email", "email", {"email": addr})
        c = self.request(self.hide, self.LINK, "user_id", "email",
                         {"user_id": user["user_id"]})
        self.assertEqual([r.status for r in (a, b, c)], [200, 200, 200])
        self.assertEqual((a.body, b.body), (a.body, a.body))
        time.sleep(0.5)
        self.assertEqual(stack.mailbox.pending(addr), [])
        log = stack.log_text()
        self.assertIn("not sent: the recipient's send limit is reached", log)
        self.assertNotIn(addr, log)
        # The code that did go out still works.
        self.assertTokenResponse(stack.otp_authenticate(self.hide["token"], user["username"],
                                                        code, "username"))

    def test_reveal_keeps_the_recipient_limit(self):
        """A revealing client is answered as before: the address's cool-down refuses a send
        for it by any identifier."""
        user = stack.make_user(username="u%s" % os.urandom(6).hex())
        addr = user["email"]["value"]
        a = stack.otp_send(self.reveal["token"], user["username"], "username", "email")
        self.assertEqual(a.status, 200, "%r" % (a,))
        stack.wait_mail(addr)
        b = stack.otp_send(self.reveal["token"], addr, "email", "email")
        self.assertError(b, 429)
        self.assertIn("Retry-After", b.headers)


# How long the SMTP sink of the SlowSinkCase stacks takes to accept a message (seconds).
SLOW_SINK = 0.5


class SlowMailbox(harness.Mailbox):
    """The sink, taking SLOW_SINK seconds over each message: every real delivery takes at
    least that long, which a send that delivers nothing cannot without padding."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(SLOW_SINK)
        return await super().handle_DATA(server, session, envelope)


class SlowSinkCase(E2ETestCase):
    """A stack of the class's own, with two workers, whose sink takes SLOW_SINK s per message,
    and a hiding client (closed signup). A real delivery takes at least SLOW_SINK; a hidden
    send does no I/O, so only its padding can make it take nearly as long."""

    NAME = "slow-sink"

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(name=cls.NAME, workers=2)
        cls.stack.mailbox = SlowMailbox()
        cls.stack.start()
        c = cls.stack.ctl("client", "add", "--name", "cold", "--existence", "hide", "--signup",
                          "closed", "--redirect-uri", REDIRECT, parse=True)
        cls.client = dict(c, token=cls.stack.client_token(c["client_id"], c["client_secret"]))

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def timed(self, call):
        t0 = time.monotonic()
        r = call()
        return r, time.monotonic() - t0


class Timing(SlowSinkCase):
    NAME = "timing"

    def test_hidden_sends_take_as_long_as_deliveries(self):
        """Sends for deliverable and undeliverable identifiers, alternating, on workers that
        have delivered: every hidden send takes at least half the median delivery measured
        in this run (unpadded, it takes a small fraction of it)."""
        s, token = self.stack, self.client["token"]
        known_t, unknown_t = [], []
        users = [s.make_user()["email"]["value"] for _ in range(6)]
        for addr in users:
            for ident, out in ((addr, known_t), (unique_email("nobody"), unknown_t)):
                r, took = self.timed(lambda: s.otp_send(token, ident))
                self.assertEqual(r.status, 200, "%r" % (r,))
                out.append(took)
        for addr in users:
            s.wait_mail(addr)
        harness.note("send ms, median (min-max): deliverable %.0f (%.0f-%.0f), "
                     "undeliverable %.0f (%.0f-%.0f)"
                     % tuple(1000 * v for t in (known_t, unknown_t)
                             for v in (statistics.median(t), min(t), max(t))))
        self.assertGreaterEqual(min(known_t), SLOW_SINK, "the sink is not slow")
        real = statistics.median(known_t)
        self.assertGreaterEqual(min(unknown_t), 0.5 * real,
                                "a hidden send took %.0f ms, a delivery %.0f ms"
                                % (1000 * min(unknown_t), 1000 * real))
        self.assertEqual(s.mailbox.pending(), [])


class ColdWorker(SlowSinkCase):
    """Audit item 5: the pause that makes a hidden send take as long as a delivery starts, in
    a worker that has delivered nothing yet (just started, or started again after an idle
    reaper such as mod_fcgid's), from the estimate shared in the database, so that its first
    answer for an unknown identifier is not the fast one."""

    NAME = "cold-worker"

    def restart(self):
        workers = self.stack.worker_pids()
        self.stack.restart()
        self.assertFalse(set(workers) & set(self.stack.worker_pids()), "the workers are not new")

    def test_fresh_worker_pads_hidden_sends(self):
        s, token = self.stack, self.client["token"]
        addr = s.make_user()["email"]["value"]
        r, real = self.timed(lambda: s.otp_send(token, addr))
        self.assertEqual(r.status, 200, "%r" % (r,))
        s.wait_mail(addr)
        self.assertGreaterEqual(real, SLOW_SINK)
        cases = [
            ("passcode", lambda: s.otp_send(token, unique_email("nobody"))),
            ("magic link", lambda: s.http("POST", LINK_SEND, token=token,
                                          json={"identifier": unique_email("nobody"),
                                                "identifier_type": "email",
                                                "redirect_uri": REDIRECT})),
        ]
        for what, call in cases:
            with self.subTest(what):
                self.restart()
                # Both workers are new: whichever answers has delivered nothing.
                times = []
                for _ in range(3):
                    r, took = self.timed(call)
                    self.assertEqual(r.status, 200, "%r" % (r,))
                    times.append(took)
                harness.note("%s: real delivery %.0f ms, hidden sends on fresh workers %s ms"
                             % (what, 1000 * real, ", ".join("%.0f" % (1000 * t)
                                                              for t in times)))
                self.assertGreaterEqual(min(times), 0.8 * SLOW_SINK,
                                        "a fresh worker answered a hidden send in %.0f ms"
                                        % (1000 * min(times)))
        self.assertEqual(s.mailbox.pending(), [])
