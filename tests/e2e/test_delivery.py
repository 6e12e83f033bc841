"""Delivery you can rely on (issue 4): an SMTP relay that refuses connections, accepts and never
answers, or answers 4xx / 5xx at each stage of the session. Every otp/send answers within the
configured bound with 502 external_provider_configuration_error, the reply code is in the
server log, no usable code is left behind, and no worker stays stuck (a normal send works
right after, and no delivery process survives). The relay is a small SMTP server written here
whose every answer a test can script; smtp_timeout is 2 s in this stack."""

import email
import email.policy
import re
import socketserver
import threading
import time

import harness
from harness import E2ETestCase, unique_email
from test_enumeration import headers_but_date
from test_sms import SMSStack, unique_phone

SMTP_TIMEOUT = 2
# The bound of one delivery is 2 * smtp_timeout (connect, then the whole session). Requests
# are only asserted to end well inside the HTTP client's 30 s: a generous limit whose sole job
# is to tell a bounded failure from a hang on a loaded machine. No timing is asserted beyond.
HANG_LIMIT = 25
REDIRECT = "https://app.example/callback"
LINK_SEND = "/cis/v1/auth/link/email/send"


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60  # a connection the client abandoned must not keep a thread forever

    def reply(self, stage, normal):
        """Send the scripted answer for stage (or the normal one). False: the script says
        this connection goes silent or closes here."""
        act = self.server.fake.plan.get(stage)
        if act == "silent":
            # A black hole: read (and ignore) until the client gives up.
            try:
                while self.rfile.readline():
                    pass
            except OSError:
                pass
            return False
        if act == "close":
            return False
        self.wfile.write(((act or normal) + "\r\n").encode())
        self.wfile.flush()
        return True

    def handle(self):
        fake = self.server.fake
        fake.connections += 1
        if not self.reply("greeting", "220 fake.example ESMTP"):
            return
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("ascii", "replace").strip().upper()
            if cmd.startswith(("EHLO", "HELO")):
                ok = self.reply("ehlo", "250 fake.example")
            elif cmd.startswith("MAIL FROM"):
                ok = self.reply("mail", "250 sender ok")
            elif cmd.startswith("RCPT TO"):
                ok = self.reply("rcpt", "250 recipient ok")
            elif cmd == "DATA":
                act = fake.plan.get("data")
                ok = self.reply("data", "354 go ahead")
                if ok and not act:
                    data = []
                    while True:
                        part = self.rfile.readline()
                        if not part or part in (b".\r\n", b".\n"):
                            break
                        data.append(part)
                    fake.messages.append(b"".join(data))
                    ok = self.reply("eom", "250 queued")
            elif cmd == "QUIT":
                self.reply("quit", "221 bye")
                return
            elif cmd in ("RSET", "NOOP"):
                ok = self.reply("rset", "250 ok")
            else:
                ok = self.reply("other", "502 not implemented")
            if not ok:
                return


class FakeSMTP:
    """A scriptable SMTP server on 127.0.0.1: plan maps a stage (greeting, ehlo, mail, rcpt,
    data, eom) to a reply line, "silent" or "close"; unscripted stages answer normally."""

    def __init__(self):
        self.plan = {}
        self.messages = []
        self.connections = 0
        self.port = harness.free_port()
        self.server = None

    def start(self):
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Close the listener: connections are refused until start() again."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


fake = None
stack = None


def code_of(raw):
    """The code in the text/plain part of a message the relay received, or None (a relay
    that refused every recipient may still be sent an empty DATA)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = harness.mail_parts(msg).get("text/plain", "")
    found = re.findall(r"(?<![0-9])[0-9]{%d}(?![0-9])" % stack.otp_length, text)
    return found[0] if found else None


def setUpModule():
    global fake, stack
    fake = FakeSMTP()
    fake.start()
    # The email-to-SMS gateway backend too, so SMS failures are covered by the same relay.
    stack = SMSStack(name="delivery", mail={"smtp_port": fake.port, "smtp_timeout": SMTP_TIMEOUT},
                     sms={"backend": "email", "email_gateway": "{number}@sms.example.net"})
    stack.start()
    E2ETestCase.stack = stack


def tearDownModule():
    try:
        stack.stop()
    finally:
        fake.stop()


class RelayCase(E2ETestCase):
    """Each test starts with a relay that answers normally and leaves one behind."""

    def setUp(self):
        fake.plan = {}
        del fake.messages[:]

    def tearDown(self):
        fake.plan = {}
        if fake.server is None:
            fake.start()


class Delivery(RelayCase):
    @classmethod
    def setUpClass(cls):
        fake.plan = {}
        cls.client = stack.new_client(name="Delivery")

    def extra_processes(self):
        workers = set(stack.worker_pids())
        # Not the maintainer (otlogin.fcgi -M, a worker's child for good: test_maintenance).
        return [p for p in stack.worker_pids(descendants=True)
                if p not in workers and b"-M" not in harness._cmdline(p[0])]

    def assertFailsCleanly(self, channel="email", log_has=None):
        """One send against the scripted relay: 502 within the bound, the reason logged, no
        usable code; then a normal send works and no delivery process is left."""
        if channel == "email":
            ident, idtype = unique_email("fail"), "email"
            stack.make_user(email=ident)
        else:
            ident, idtype = unique_phone(), "phone_number"
            stack.make_user(phone=ident)
        t0 = time.monotonic()
        r = stack.otp_send(self.client["token"], ident, idtype, channel)
        elapsed = time.monotonic() - t0
        self.assertError(r, 502, "external_provider_configuration_error")
        self.assertNotIn(b"OTP sent", r.body)
        self.assertLess(elapsed, HANG_LIMIT)
        if log_has:
            self.assertIn(log_has, stack.log_text())
        # The relay may have seen the whole message (refused at the end): that code is dead.
        # Otherwise no code was ever shown, and there is none to use either.
        code = code_of(fake.messages[-1]) if fake.messages else None
        code = code or "0" * stack.otp_length
        r = stack.otp_authenticate(self.client["token"], ident, code, idtype)
        self.assertError(r, 400, "auth_invalid_credentials")
        # Nothing is stuck: the relay recovers, and so does every worker (4 sends for 4).
        fake.plan = {}
        if fake.server is None:
            fake.start()
        others = [unique_email("after") for _ in range(4)]
        for r in stack.parallel([lambda a=a: stack.otp_send(self.client["token"], a)
                                 for a in others], threads=4):
            self.assertEqual(self.assertJSON(r, 200).get("message"), "OTP sent")
        del fake.messages[:]
        r = stack.otp_send(self.client["token"], ident, idtype, channel)
        self.assertEqual(self.assertJSON(r, 200).get("message"), "OTP sent")
        code = code_of(fake.messages[-1])
        r = stack.otp_authenticate(self.client["token"], ident, code, idtype)
        self.assertTokenResponse(r)
        deadline = time.monotonic() + 10
        while self.extra_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.extra_processes(), [], "a delivery process survived")

    def test_connection_refused(self):
        fake.stop()
        self.assertFailsCleanly(log_has="mail_smtp: session with 127.0.0.1 failed")

    def test_black_hole(self):
        fake.plan = {"greeting": "silent"}
        self.assertFailsCleanly(log_has="did not get as far as MAIL FROM")

    def test_closed_after_connect(self):
        fake.plan = {"greeting": "close"}
        self.assertFailsCleanly()

    def test_greeting_refused(self):
        for reply in ("421 busy", "554 go away"):
            with self.subTest(reply):
                fake.plan = {"greeting": reply}
                self.assertFailsCleanly()

    def test_ehlo_refused(self):
        for reply in ("421 closing", "550 who are you"):
            with self.subTest(reply):
                fake.plan = {"ehlo": reply}
                self.assertFailsCleanly()

    def test_mail_from_refused(self):
        for reply, code in (("451 try later", "SMTP 451"), ("550 sender refused", "SMTP 550")):
            with self.subTest(reply):
                fake.plan = {"mail": reply}
                self.assertFailsCleanly(log_has="MAIL FROM refused: " + code)

    def test_rcpt_refused(self):
        for reply, code in (("450 mailbox busy", "SMTP 450"), ("550 no such user", "SMTP 550")):
            with self.subTest(reply):
                fake.plan = {"rcpt": reply}
                self.assertFailsCleanly(log_has="RCPT TO refused: " + code)

    def test_relay_reply_address_is_masked(self):
        """A relay that echoes the recipient in its refusal: the log keeps the reply, never
        the full address (DESIGN: logs hold no full address)."""
        ident = unique_email("echoed")
        stack.make_user(email=ident)
        fake.plan = {"rcpt": "550 5.1.1 <%s>: Recipient address rejected" % ident}
        r = stack.otp_send(self.client["token"], ident, "email", "email")
        self.assertError(r, 502, "external_provider_configuration_error")
        log = stack.log_text()
        self.assertIn("Recipient address rejected", log)
        self.assertNotIn(ident, log)
        fake.plan = {}

    def test_data_refused(self):
        for reply, code in (("451 local error", "SMTP 451"), ("554 no valid recipients",
                                                             "SMTP 554")):
            with self.subTest(reply):
                fake.plan = {"data": reply}
                self.assertFailsCleanly(log_has="message refused: " + code)

    def test_message_refused_after_data(self):
        for reply, code in (("452 no space", "SMTP 452"), ("554 content rejected",
                                                          "SMTP 554")):
            with self.subTest(reply):
                fake.plan = {"eom": reply}
                self.assertFailsCleanly(log_has="message refused: " + code)

    def test_silent_after_data(self):
        fake.plan = {"eom": "silent"}
        self.assertFailsCleanly(log_has="the code is withdrawn")

    def test_sms_gateway_refused(self):
        fake.plan = {"rcpt": "550 unknown subscriber"}
        self.assertFailsCleanly(channel="sms", log_has="RCPT TO refused: SMTP 550")
        self.assertIn("sms_email: the gateway mail", stack.log_text())

    def test_all_workers_busy_with_a_black_hole(self):
        """More sends than workers against a relay that never answers: each one ends with the
        documented error, none waits forever behind another."""
        fake.plan = {"greeting": "silent"}
        addr = unique_email("many")
        stack.make_user(email=addr)
        t0 = time.monotonic()
        results = stack.parallel([lambda: stack.otp_send(self.client["token"], addr)] * 8,
                                 threads=8)
        # 8 sends on 4 workers, 2 * smtp_timeout each: about 8 s; the limit is for hangs only.
        self.assertLess(time.monotonic() - t0, 2 * HANG_LIMIT)
        for r in results:
            self.assertError(r, 502, "external_provider_configuration_error")
        fake.plan = {}
        r = stack.otp_send(self.client["token"], addr)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})


class HiddenExistence(RelayCase):
    """A client that hides existence (DESIGN security rule 14) against a failing relay. A
    send for an identifier that cannot receive never reaches the relay, so a 502 for one that
    can would tell the two apart: both answer the same 200, the failure is logged and the code
    or link withdrawn. A revealing client keeps its 502 (Delivery above)."""

    @classmethod
    def setUpClass(cls):
        c = stack.ctl("client", "add", "--name", "Hider", "--existence", "hide", "--signup",
                      "closed", "--redirect-uri", REDIRECT, parse=True)
        cls.client = dict(c, token=stack.client_token(c["client_id"], c["client_secret"]))

    def assertSame(self, known, unknown):
        self.assertEqual(known.status, 200, "%r" % (known,))
        self.assertEqual((unknown.status, unknown.body), (known.status, known.body))
        self.assertEqual(headers_but_date(unknown), headers_but_date(known))

    def fail_relay(self, how):
        if how == "down":
            fake.stop()
        else:
            fake.plan = how

    def test_passcode_send(self):
        for how in ("down", {"greeting": "554 go away"}, {"rcpt": "550 no such user"},
                    {"eom": "554 content rejected"}):
            with self.subTest(how):
                known, unknown = unique_email("hidden"), unique_email("nobody")
                stack.make_user(email=known)
                del fake.messages[:]
                self.fail_relay(how)
                a = stack.otp_send(self.client["token"], known)
                b = stack.otp_send(self.client["token"], unknown)
                self.assertSame(a, b)
                self.assertEqual(a.json, {"message": "OTP sent"})
                self.assertIn("no passcode went out by email", stack.log_text())
                self.assertIn("answered as sent: the client hides existence", stack.log_text())
                # A relay that refused only at the end saw the code: it was withdrawn.
                code = code_of(fake.messages[-1]) if fake.messages else None
                r = stack.otp_authenticate(self.client["token"], known,
                                           code or "0" * stack.otp_length)
                self.assertError(r, 400, "auth_invalid_credentials")
                self.tearDown()  # the next subtest starts with a working relay

    def test_link_send(self):
        for how in ("down", {"rcpt": "550 no such user"}):
            with self.subTest(how):
                known, unknown = unique_email("hidden"), unique_email("nobody")
                stack.make_user(email=known)
                self.fail_relay(how)
                a, b = [stack.http("POST", LINK_SEND, token=self.client["token"],
                                   json={"identifier": i, "identifier_type": "email",
                                         "redirect_uri": REDIRECT}) for i in (known, unknown)]
                self.assertSame(a, b)
                self.assertIn("no magic link went out", stack.log_text())
                self.tearDown()  # the next subtest starts with a working relay


class NoSMSBackend(E2ETestCase):
    """[sms] backend = none (the default): the sms channel answers a clear 400 and no code is
    made; the other channels are not affected."""

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(name="no-sms").start()
        cls.client = cls.stack.new_client()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_sms_not_configured(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms")
        body = self.assertError(r, 400, "system_invalid_input")
        self.assertIn("not configured", body["message"])
        r = self.stack.otp_authenticate(self.client["token"], phone, "0" * 6, "phone_number")
        self.assertError(r, 400, "auth_invalid_credentials")
        self.assertNotIn("test_mode", self.stack.http("GET", "/cis/health").json)


class _RecordingSMTP:
    """An aiosmtpd relay on loopback that offers AUTH PLAIN and LOGIN in the clear (no
    STARTTLS) and accepts mail without authentication: it records every AUTH command and
    every credential it is handed, and the messages."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP, AuthResult

        relay = self
        self.auth_commands = []
        self.credentials = []
        self.mailbox = harness.Mailbox()

        def authenticator(server, session, envelope, mechanism, auth_data):
            relay.credentials.append((mechanism, auth_data))
            return AuthResult(success=True)

        class Recording(SMTP):
            async def smtp_AUTH(self, arg):
                relay.auth_commands.append(arg)
                return await super().smtp_AUTH(arg)

        class RecordingController(Controller):
            def factory(self):
                return Recording(self.handler, auth_require_tls=False, auth_required=False,
                                 authenticator=authenticator)

        self.port = harness.free_port()
        self.controller = RecordingController(self.mailbox, hostname="127.0.0.1",
                                              port=self.port)

    def start(self):
        self.controller.start()

    def stop(self):
        self.controller.stop()


class SMTPAuthNeedsTLS(E2ETestCase):
    """smtp_user is set and the relay offers AUTH PLAIN without STARTTLS: otlogin never sends
    the credentials over the clear connection. The delivery fails (502) and the log says
    why; the password is neither on the wire nor in the log."""

    PASSWORD = "relay-pw-" + "7f3a9c21e5"

    @classmethod
    def setUpClass(cls):
        cls.relay = _RecordingSMTP()
        cls.relay.start()
        cls.stack = harness.Stack(name="smtp-auth", mail={
            "smtp_port": cls.relay.port, "smtp_user": "otlogin",
            "smtp_password": cls.PASSWORD, "smtp_timeout": SMTP_TIMEOUT})
        try:
            cls.stack.start()
        except BaseException:
            cls.relay.stop()
            raise
        cls.client = cls.stack.new_client(name="SMTP AUTH")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.stack.stop()
        finally:
            cls.relay.stop()

    def test_no_auth_in_the_clear(self):
        addr = unique_email("auth")
        self.stack.make_user(email=addr)
        r = self.stack.otp_send(self.client["token"], addr)
        self.assertError(r, 502, "external_provider_configuration_error")
        self.assertEqual(self.relay.auth_commands, [], "AUTH sent without TLS")
        self.assertEqual(self.relay.credentials, [], "credentials sent without TLS")
        self.assertEqual(self.relay.mailbox.pending(), [], "mail sent unauthenticated")
        log = self.stack.log_text()
        self.assertIn("smtp_starttls", log)
        self.assertNotIn(self.PASSWORD, log)
