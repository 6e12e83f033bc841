"""Rate limits (DESIGN security rules 6 and 13, otlogin.conf(5) [limits]): for each limit the
request just under it succeeds and the one over it gets 429 with Retry-After and the
contract's error body, and nothing happens (no mail, no SMS, no code replaced). The attempt
limits count failed authenticates only and never refuse a right code; without a reported
end-user address there is no per-address limit. A stack on the built-in defaults carries a
busy site's traffic. The limits live in the database: they hold across the four workers hit in
parallel, and across a restart of every worker.

The harness turns every limit off; these stacks turn on the ones they test, with small
counts. Authenticates name a client_attributes.ip_address of their own unless they test the
per-address limit, so that they do not share the budget of 127.0.0.1."""

import itertools
import os
import time

import harness
from harness import E2ETestCase, other_code, unique_email

LIMITED = {"message": "Too many requests", "error_code": 429}
LINK_SEND = "/cis/v1/auth/link/email/send"
LINK_AUTH = "/cis/v1/auth/link/email/authenticate"
REDIRECT = "https://app.example/callback"

stack = None
_ip = itertools.count(1)
_phone = itertools.count(1)


def fresh_ip():
    """A TEST-NET-2 address no other request of this module uses."""
    n = next(_ip)
    return "198.51.%d.%d" % (n // 250, 1 + n % 250)


def attrs(ip=None):
    return {"client_attributes": {"ip_address": ip or fresh_ip()}}


def unique_phone():
    return "+49171%03d%04d" % (os.getpid() % 1000, next(_phone))


class LimitStack(harness.Stack):
    """A Stack with an smstools [sms] backend writing to <dir>/outgoing (the harness writes
    only the sections it knows, so this one is appended)."""

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        with open(self.conf, "a") as f:
            f.write("\n[sms]\nbackend = smstools\nspool_dir = %s\n" % self.path("outgoing"))

    def start(self):
        super().start()
        os.makedirs(self.path("outgoing"), mode=0o700, exist_ok=True)
        return self

    def sms_count(self):
        return len([n for n in os.listdir(self.path("outgoing")) if not n.endswith(".LOCK")])



def setUpModule():
    global stack
    stack = LimitStack(name="ratelimit", otp={"max_failures": 10}, limits={
        "recipient_sends": "3/1h", "client_emails": "5/1h", "client_sms": "2/1h",
        "identifier_attempts": "3/1h", "ip_attempts": "4/1h",
        "client_secret_failures": "3/15m", "client_secret_delay": 600,
        "client_secret_max_delay": 3600}).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class LimitCase(E2ETestCase):
    def assertLimited(self, r, longest):
        """429, the contract's body, and a Retry-After of 1..longest seconds; returns it."""
        self.assertEqual(self.assertJSON(r, 429), LIMITED)
        retry = r.headers.get("Retry-After", "")
        self.assertRegex(retry, r"^[0-9]+$", "Retry-After of %r" % (r,))
        self.assertTrue(1 <= int(retry) <= longest, "Retry-After %s > %d" % (retry, longest))
        return int(retry)

    def assertSlowDown(self, r, longest):
        """429 in the token endpoint's OAuth error shape, with Retry-After 1..longest."""
        body = self.assertJSON(r, 429)
        self.assertEqual(sorted(body), ["error", "error_description"], "body %r" % (body,))
        self.assertEqual(body["error"], "slow_down")
        retry = r.headers.get("Retry-After", "")
        self.assertRegex(retry, r"^[0-9]+$", "Retry-After of %r" % (r,))
        self.assertTrue(1 <= int(retry) <= longest, "Retry-After %s > %d" % (retry, longest))

    def assertNoMail(self, addr=None):
        """The server hands a message to SMTP before it answers, so any mail the request
        sent is in the sink by now."""
        self.assertEqual(self.stack.mailbox.pending(addr), [])

    def send(self, client, addr, **extra):
        return self.stack.otp_send(client["token"], addr, **extra)

    def link_send(self, client, addr):
        return self.stack.http("POST", LINK_SEND, token=client["token"],
                               json={"email": addr, "redirect_uri": REDIRECT})

    def auth(self, client, ident, code, ip=None, **extra):
        extra.update(attrs(ip))
        return self.stack.otp_authenticate(client["token"], ident, code, **extra)


class SendLimits(LimitCase):
    def test_recipient_sends(self):
        """3 messages an hour to one address: the third goes, the fourth is refused and does
        not replace the third's code; a login with that code releases the limit."""
        client = stack.new_client(redirect_uris=[REDIRECT])
        addr = unique_email()
        codes = []
        for _ in range(3):
            self.assertEqual(self.send(client, addr).status, 200)
            codes.append(stack.mail_code(stack.wait_mail(addr)))
        self.assertLimited(self.send(client, addr), 3600 + 60)
        # A magic link is a message to the same recipient.
        self.assertLimited(self.link_send(client, addr), 3600 + 60)
        self.assertNoMail(addr)
        # Other recipients are not affected.
        other = unique_email()
        self.assertEqual(self.send(client, other).status, 200)
        stack.wait_mail(other)
        # Nothing was stored by the refusals: the third code is still the one that works.
        self.assertTokenResponse(self.auth(client, addr, codes[-1]))
        self.assertEqual(self.send(client, addr).status, 200, "released by the login")
        stack.wait_mail(addr)

    def test_client_email_cap(self):
        """5 mails an hour per client, passcodes and links together; other clients and the
        direct channel (nothing is sent) are not affected."""
        client = stack.new_client(permissions=["direct"], redirect_uris=[REDIRECT])
        other = stack.new_client()
        for i in range(5):
            addr = unique_email()
            r = self.send(client, addr) if i % 2 else self.link_send(client, addr)
            self.assertEqual(r.status, 200, "%r" % (r,))
            stack.wait_mail(addr)
        addr = unique_email()
        self.assertLimited(self.send(client, addr), 3600 + 60)
        self.assertLimited(self.link_send(client, addr), 3600 + 60)
        self.assertNoMail()
        self.assertEqual(self.send(other, addr).status, 200)
        stack.wait_mail(addr)
        self.assertEqual(self.send(client, addr, channel="direct").status, 200)

    def test_client_sms_cap(self):
        """2 SMS an hour per client: the third is refused and no spool file appears; the
        client's mail budget is separate."""
        client = stack.new_client()
        before = stack.sms_count()
        for _ in range(2):
            phone = unique_phone()
            r = stack.otp_send(client["token"], phone, "phone_number", "sms")
            self.assertEqual(r.status, 200, "%r" % (r,))
        self.assertEqual(stack.sms_count(), before + 2)
        r = stack.otp_send(client["token"], unique_phone(), "phone_number", "sms")
        self.assertLimited(r, 3600 + 60)
        self.assertEqual(stack.sms_count(), before + 2)
        addr = unique_email()
        self.assertEqual(self.send(client, addr).status, 200)
        stack.wait_mail(addr)

    def test_parallel_sends_across_workers(self):
        """40 sends to one address at once, spread over the 4 workers: exactly 3 go out."""
        self.assertEqual(len(stack.worker_pids()), stack.workers)
        client = stack.new_client()
        addr = unique_email()
        results = stack.parallel([lambda: self.send(client, addr)] * 40, threads=40)
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200] * 3 + [429] * 37)
        for r in results:
            if r.status == 429:
                self.assertLimited(r, 3600 + 60)
        for _ in range(3):
            stack.wait_mail(addr)
        self.assertNoMail(addr)


class AuthLimits(LimitCase):
    def test_identifier_attempts(self):
        """3 failed attempts an hour per identifier: the fourth wrong one is refused, but the
        right code is never refused; a success ends the count; other identifiers are not
        affected."""
        client = stack.new_client(permissions=["direct"])
        addr = stack.make_user()["email"]["value"]
        code = stack.direct_code(client["token"], addr)
        for _ in range(3):
            self.assertError(self.auth(client, addr, other_code(code)), 400,
                             "auth_invalid_credentials")
        self.assertLimited(self.auth(client, addr, other_code(code)), 3600 + 60)
        self.assertTokenResponse(self.auth(client, addr, code))
        code = stack.direct_code(client["token"], addr)
        self.assertError(self.auth(client, addr, other_code(code)), 400,
                         "auth_invalid_credentials")
        self.assertTokenResponse(self.auth(client, addr, code))
        other = unique_email()
        self.assertTokenResponse(
            self.auth(client, other, stack.direct_code(client["token"], other)))

    def test_successes_do_not_count(self):
        """A success is no attempt against the limit: 10 logins of one user in a row."""
        client = stack.new_client(permissions=["direct"])
        addr = stack.make_user()["email"]["value"]
        for _ in range(10):
            self.assertTokenResponse(
                self.auth(client, addr, stack.direct_code(client["token"], addr)))

    def test_ip_attempts(self):
        """4 failed attempts an hour per end-user address, whatever the identifier: the fifth
        is refused, but a right code from that address is not; another address is not
        affected; IPv6 addresses count per /64."""
        client = stack.new_client(permissions=["direct"])
        ip = fresh_ip()
        for _ in range(4):
            addr = unique_email()
            self.assertError(self.auth(client, addr, "000000", ip=ip), 400)
        self.assertLimited(self.auth(client, unique_email(), "000000", ip=ip), 3600 + 60)
        addr = unique_email()
        self.assertTokenResponse(
            self.auth(client, addr, stack.direct_code(client["token"], addr), ip=ip))
        # A magic link's unknown code counts against the address too.
        r = stack.http("POST", LINK_AUTH, token=client["token"],
                       json=dict(code="x" * 43, **attrs(ip)))
        self.assertLimited(r, 3600 + 60)
        for i in range(4):
            r = self.auth(client, unique_email(), "000000", ip="2001:db8:77:1::%x" % (i + 1))
            self.assertError(r, 400)
        self.assertLimited(self.auth(client, unique_email(), "000000", ip="2001:db8:77:1::ff"),
                           3600 + 60)
        self.assertError(self.auth(client, unique_email(), "000000", ip="2001:db8:77:2::1"), 400)

    def test_no_address_reported(self):
        """Without client_attributes.ip_address there is no per-address limit: the backend's
        own address (127.0.0.1, shared by all its users) is never the key."""
        client = stack.new_client()
        for _ in range(10):
            r = stack.otp_authenticate(client["token"], unique_email(), "000000")
            self.assertError(r, 400)
        r = stack.otp_authenticate(client["token"], unique_email(), "000000",
                                   client_attributes={})
        self.assertError(r, 400)

    def test_address_must_be_an_ip_address(self):
        """ip_address is an IPv4 or IPv6 address, or 400: a caller cannot invent buckets."""
        client = stack.new_client()
        for bad in ("backend-1", "1.2.3.4.5", "::g", "198.51.100.1/24", " 198.51.100.1"):
            r = stack.otp_authenticate(client["token"], unique_email(), "000000",
                                       client_attributes={"ip_address": bad})
            self.assertError(r, 400, "system_invalid_input")
            r = self.send(client, unique_email(), client_attributes={"ip_address": bad})
            self.assertError(r, 400, "system_invalid_input")
        r = stack.otp_authenticate(client["token"], unique_email(), "000000",
                                   client_attributes={"ip_address": "::ffff:198.51.100.7"})
        self.assertError(r, 400, "auth_invalid_credentials")

    def test_parallel_attempts_across_workers(self):
        """30 failed attempts from one address at once: exactly 4 are counted, the rest get
        429."""
        client = stack.new_client()
        ip = fresh_ip()
        results = stack.parallel(
            [lambda: self.auth(client, unique_email(), "000000", ip=ip)] * 30, threads=30)
        self.assertEqual(sorted(r.status for r in results), [400] * 4 + [429] * 26)


class BusySite(LimitCase):
    """The built-in defaults on a stack of their own: a busy site's ordinary traffic through
    one backend that reports no end-user address never meets a limit."""

    @classmethod
    def setUpClass(cls):
        cls.stack = LimitStack(name="ratelimit-defaults", workers=4)
        cls.stack.sections["limits"].clear()
        cls.stack.start()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_700_users_through_one_backend(self):
        """700 users, each with one typo and then the right code, all get in (before, the
        backend's address was one bucket of 600 attempts an hour for all of them)."""
        st = self.stack
        client = st.new_client(permissions=["direct"])

        def login(n):
            addr = "busy-%d-%s@example.org" % (n, os.urandom(3).hex())
            code = st.direct_code(client["token"], addr)
            wrong = st.otp_authenticate(client["token"], addr, other_code(code))
            right = st.otp_authenticate(client["token"], addr, code)
            return wrong.status, right.status

        results = st.parallel([lambda n=n: login(n) for n in range(700)], threads=8)
        self.assertEqual(results, [(400, 200)] * 700)

    def test_one_user_logs_in_30_times(self):
        """The quickstart demo's user logs in by mail 30 times within the hour: every send and
        every login succeeds (a login releases the send limits and ends the attempt count)."""
        st = self.stack
        client = st.new_client()
        addr = st.make_user()["email"]["value"]
        for _ in range(30):
            self.assertEqual(self.send(client, addr).status, 200)
            self.assertTokenResponse(
                st.otp_authenticate(client["token"], addr, st.mail_code(st.wait_mail(addr))))


class ClientSecretLimit(LimitCase):
    """DESIGN rules 13 and 15: wrong client secrets are throttled per (client, caller
    address) with growing delays, and the right secret is always accepted, so that nobody who
    knows a client_id (the aud of every ID token) can lock its backend out. Here 3 wrong
    secrets are free, then the address waits 600 s (the growth is in test_ratelimit.c)."""

    def test_wrong_secrets_are_delayed(self):
        """The fourth wrong secret from one address waits, at both endpoints and with either
        authentication method; other clients are not affected; unknown ids are not counted."""
        client, other = stack.make_client(), stack.make_client()
        for _ in range(3):
            r = stack.token_request(client["client_id"], "wrong-secret")
            self.assertOAuthError(r, 401, "invalid_client")
        self.assertSlowDown(stack.token_request(client["client_id"], "wrong-secret"), 600)
        self.assertSlowDown(stack.token_request(client["client_id"], "wrong", auth="post"), 600)
        r = stack.http("POST", "/oidc/token/revocation",
                       form={"token": "x", "client_id": client["client_id"],
                             "client_secret": "wrong"})
        self.assertSlowDown(r, 600)
        r = stack.token_request(other["client_id"], "wrong-secret")
        self.assertOAuthError(r, 401, "invalid_client")
        for _ in range(5):
            r = stack.token_request("0" * 32, "wrong-secret")
            self.assertOAuthError(r, 401, "invalid_client")

    def test_right_secret_always_accepted(self):
        """Wrong secrets from the backend's own address, far past the free ones, do not keep
        the right secret out: token and revocation, Basic and form, all answer."""
        client = stack.make_client()
        statuses = [stack.token_request(client["client_id"], "guess-%d" % i).status
                    for i in range(12)]
        self.assertEqual(statuses, [401] * 3 + [429] * 9)
        for auth in ("basic", "post"):
            r = stack.token_request(client["client_id"], client["client_secret"], auth=auth)
            self.assertEqual(self.assertJSON(r, 200)["token_type"], "Bearer")
        r = stack.http("POST", "/oidc/token/revocation",
                       form={"token": "x", "client_id": client["client_id"],
                             "client_secret": client["client_secret"]})
        self.assertEqual(r.status, 200, "%r" % (r,))
        # The right secret did not lift the delay for the wrong ones.
        self.assertSlowDown(stack.token_request(client["client_id"], "guess"), 600)

    def test_delay_is_per_address(self):
        """Wrong secrets from one address do not delay another address of the same client."""
        client = stack.make_client()
        for _ in range(3):
            r = stack.token_request(client["client_id"], "wrong", source="127.0.0.3")
            self.assertOAuthError(r, 401, "invalid_client")
        self.assertSlowDown(
            stack.token_request(client["client_id"], "wrong", source="127.0.0.3"), 600)
        r = stack.token_request(client["client_id"], "wrong", source="127.0.0.4")
        self.assertOAuthError(r, 401, "invalid_client")
        r = stack.token_request(client["client_id"], client["client_secret"],
                                source="127.0.0.3")
        self.assertJSON(r, 200)

    def test_parallel_wrong_secrets(self):
        """30 wrong secrets at once across the workers: exactly 3 are checked; 10 right ones
        sent among them all get their token."""
        client = stack.make_client()
        wrong = lambda: stack.token_request(client["client_id"], "wrong")
        right = lambda: stack.token_request(client["client_id"], client["client_secret"])
        results = stack.parallel([wrong] * 15 + [right] * 10 + [wrong] * 15, threads=40)
        self.assertEqual([r.status for r in results[15:25]], [200] * 10)
        bad = results[:15] + results[25:]
        self.assertEqual(sorted(r.status for r in bad), [401] * 3 + [429] * 27)
        for r in bad:
            if r.status == 429:
                self.assertSlowDown(r, 600)


class Restart(LimitCase):
    def test_limits_survive_a_restart(self):
        """Every worker and the web server stop and start again on the same database: what
        was counted still counts."""
        client, secret_client = stack.new_client(), stack.make_client()
        addr = unique_email()
        for _ in range(3):
            self.assertEqual(self.send(client, addr).status, 200)
            stack.wait_mail(addr)
        for _ in range(3):
            stack.token_request(secret_client["client_id"], "wrong")
        ip = fresh_ip()
        for _ in range(4):
            self.auth(client, unique_email(), "000000", ip=ip)
        before = set(stack.worker_pids())
        stack.restart()
        self.assertFalse(before & set(stack.worker_pids()), "the workers were not replaced")
        self.assertLimited(self.send(client, addr), 3600 + 60)
        self.assertNoMail(addr)
        self.assertSlowDown(
            stack.token_request(secret_client["client_id"], "wrong"), 600)
        self.assertJSON(stack.token_request(secret_client["client_id"],
                                            secret_client["client_secret"]), 200)
        self.assertLimited(self.auth(client, unique_email(), "000000", ip=ip), 3600 + 60)


class Windows(LimitCase):
    """Short windows on a stack of their own: the cool-down, and a window that slides."""

    @classmethod
    def setUpClass(cls):
        cls.stack = LimitStack(name="ratelimit-short", workers=2, limits={
            "send_cooldown": 2, "recipient_sends": "2/4s"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_cooldown(self):
        st = self.stack
        client = st.new_client(redirect_uris=[REDIRECT])
        addr = unique_email()
        self.assertEqual(self.send(client, addr).status, 200)
        code = st.mail_code(st.wait_mail(addr))
        self.assertLimited(self.send(client, addr), 3)
        self.assertLimited(self.link_send(client, addr), 3)
        self.assertNoMail(addr)
        # The recipient logged in with the code: the next message need not wait.
        self.assertTokenResponse(self.auth(client, addr, code))
        self.assertEqual(self.send(client, addr).status, 200)
        st.wait_mail(addr)

    def test_window_slides(self):
        """After Retry-After seconds the refused send goes through (the clock really runs)."""
        st = self.stack
        client = st.new_client()
        addr = unique_email()
        self.assertEqual(self.send(client, addr).status, 200)
        time.sleep(self.assertLimited(self.send(client, addr), 3))
        self.assertEqual(self.send(client, addr).status, 200)
        for _ in range(2):
            st.wait_mail(addr)
        wait = self.assertLimited(self.send(client, addr), 6)
        self.assertNoMail(addr)
        time.sleep(wait)
        self.assertEqual(self.send(client, addr).status, 200)
        st.wait_mail(addr)
