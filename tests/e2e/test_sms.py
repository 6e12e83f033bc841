"""SMS one-time passcodes end to end (API.md "Seed operation 3", issue 4): POST
/v1/auth/otp/send with channel "sms" through lighttpd and 4 workers, delivered by each backend
for real -- an smstools3 spool directory, a command that records what it is given, an
email-to-SMS gateway through the SMTP sink -- then POST /v1/auth/otp/authenticate with the
delivered code (amr "sms", phone_number_verified). Also the clear 400s for bad numbers, messages
and sender ids, a command backend that fails or hangs, custom_email, and test mode."""

import os
import re
import stat
import time

import harness
from harness import E2ETestCase, mail_parts, unique_email

_phone_n = [0]


def unique_phone():
    """An E.164 number no other test uses (+49 170 + 7 digits from pid and a counter)."""
    _phone_n[0] += 1
    return "+49170%03d%04d" % (os.getpid() % 1000, _phone_n[0])


class SMSStack(harness.Stack):
    """A harness Stack with an [sms] section; "{dir}" in a value becomes the stack's directory.
    The harness writes only the sections it knows, so ours is appended to its file."""

    def __init__(self, sms=None, **kw):
        super().__init__(**kw)
        self.sms = dict(sms or {})

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        lines = ["", "[sms]"]
        lines += ["%s = %s" % (k, str(v).replace("{dir}", self.dir)) for k, v in self.sms.items()]
        with open(self.conf, "a") as f:
            f.write("\n".join(lines) + "\n")

    def spool_files(self, spool):
        """Complete message files in a spool directory (lock/temp names excluded), oldest
        first."""
        d = self.path(spool)
        names = [n for n in os.listdir(d) if not n.endswith(".LOCK")]
        return sorted((os.path.join(d, n) for n in names), key=os.path.getmtime)


def read_spool_file(path):
    """(headers dict, text) of an smstools3 message file; the text decoded per Alphabet."""
    with open(path, "rb") as f:
        raw = f.read()
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        raise harness.HarnessError("no blank line after the headers: %r" % raw[:200])
    headers = {}
    for line in head.decode("ascii").split("\n"):
        k, _, v = line.partition(": ")
        headers[k] = v
    alphabet = headers.get("Alphabet", "ISO")
    text = body.decode("utf-16-be") if alphabet.startswith("UCS") else body.decode("latin-1")
    return headers, text


def code_in(text, length=6):
    return harness.extract_code(text, length)


class SMSCase(E2ETestCase):
    def assertSent(self, r):
        body = self.assertJSON(r, 200)
        self.assertEqual(body.get("message"), "OTP sent")
        self.assertNotIn("code", body)
        return body

    def assertSMSLogin(self, client, phone, code, user_id=None, identifier=None,
                       identifier_type="phone_number"):
        """Authenticate with code; amr holds "sms" and the phone is verified afterwards."""
        s = self.stack
        r = s.otp_authenticate(client["token"], identifier or phone, code,
                               identifier_type=identifier_type,
                               claims={"id_token": {"phone_number": None,
                                                    "phone_number_verified": None}})
        body = self.assertTokenResponse(r)
        _, idc = s.verify_jwt(body["id_token"], "JWT", client["client_id"])
        self.assertIn("sms", idc["amr"])
        if user_id is not None:
            self.assertEqual(idc["sub"], user_id)
        self.assertEqual(idc.get("phone_number"), phone)
        self.assertIs(idc.get("phone_number_verified"), True)
        return idc


# ---- smstools ----------------------------------------------------------------------------------


class Smstools(SMSCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = SMSStack(name="sms-smstools", sms={
            "backend": "smstools", "spool_dir": "{dir}/outgoing", "max_segments": 3}).start()
        os.makedirs(cls.stack.path("outgoing"), mode=0o700, exist_ok=True)
        cls.client = cls.stack.new_client(name="Shop")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def setUp(self):
        for p in self.stack.spool_files("outgoing"):
            os.unlink(p)

    def one_message(self):
        files = self.stack.spool_files("outgoing")
        self.assertEqual(len(files), 1, files)
        return files[0]

    def test_default_message_and_login(self):
        phone = unique_phone()
        user = self.stack.make_user(phone=phone)
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms")
        self.assertSent(r)
        path = self.one_message()
        # 0640: smsd (another user, same group) must read it; nobody else may.
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        self.assertFalse([n for n in os.listdir(self.stack.path("outgoing"))
                          if n.endswith(".LOCK")], "a temporary file was left behind")
        headers, text = read_spool_file(path)
        self.assertEqual(headers, {"To": phone[1:], "Alphabet": "ISO"})
        code = code_in(text)
        self.assertEqual(text, "%s is your Shop code" % code)
        self.assertNotIn(code.encode(), r.body)
        self.assertSMSLogin(self.client, phone, code, user["user_id"])
        # Single use.
        r = self.stack.otp_authenticate(self.client["token"], phone, code, "phone_number")
        self.assertError(r, 400, "auth_invalid_credentials")

    def test_custom_message_sender_and_approval(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        approval = {"amount": "10 EUR", "payee": "Bob"}
        r = self.stack.otp_send(
            self.client["token"], phone, "phone_number", "sms", approval_data=approval,
            custom_sms_input={"custom_message": "{app}: use {otp} to approve", "sender_id":
                              "Shop 24"})
        self.assertEqual(self.assertSent(r).get("approval_data"), approval)
        headers, text = read_spool_file(self.one_message())
        self.assertEqual(headers.get("From"), "Shop 24")
        code = code_in(text)
        self.assertEqual(text, "Shop: use %s to approve\namount: 10 EUR\npayee: Bob" % code)
        idc = self.assertSMSLogin(self.client, phone, code)
        self.assertEqual(idc.get("approval_data"), approval)

    def test_ucs2_message(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms",
                                custom_sms_input={"custom_message": "Код {otp} для {app}"})
        self.assertSent(r)
        headers, text = read_spool_file(self.one_message())
        self.assertEqual(headers.get("Alphabet"), "UCS2")
        code = code_in(text)
        self.assertEqual(text, "Код %s для Shop" % code)

    def test_custom_phone_number(self):
        user = self.stack.make_user(email=unique_email())
        other = unique_phone()
        r = self.stack.otp_send(self.client["token"], user["email"]["value"], "email", "sms",
                                custom_phone_number=other)
        self.assertSent(r)
        headers, text = read_spool_file(self.one_message())
        self.assertEqual(headers["To"], other[1:])
        r = self.stack.otp_authenticate(self.client["token"], user["email"]["value"],
                                        code_in(text), "email")
        body = self.assertTokenResponse(r)
        _, idc = self.stack.verify_jwt(body["id_token"], "JWT", self.client["client_id"])
        # The number was never verified as the user's: a one-time code, no phone channel,
        # so an emailed code into the same session is one channel, not "mfa".
        self.assertEqual(idc["amr"], ["otp"])
        addr = user["email"]["value"]
        code = self.stack.send_and_read_code(self.client["token"], addr)
        r = self.stack.otp_authenticate(self.client["token"], addr, code,
                                        session_id=body["session_id"])
        _, idc = self.stack.verify_jwt(self.assertTokenResponse(r)["id_token"], "JWT",
                                       self.client["client_id"])
        self.assertEqual(sorted(idc["amr"]), ["eotp", "otp"])

    def test_user_without_phone(self):
        user = self.stack.make_user(email=unique_email())
        r = self.stack.otp_send(self.client["token"], user["email"]["value"], "email", "sms")
        self.assertError(r, 404, "user_phone_number_missing")
        self.assertEqual(self.stack.spool_files("outgoing"), [])

    def test_open_signup_by_phone(self):
        client = self.stack.new_client(name="Open", signup="open")
        phone = unique_phone()
        self.assertSent(self.stack.otp_send(client["token"], phone, "phone_number", "sms"))
        headers, text = read_spool_file(self.one_message())
        self.assertEqual(headers["To"], phone[1:])
        self.assertSMSLogin(client, phone, code_in(text))

    def test_closed_signup_unknown_phone(self):
        client = self.stack.new_client(name="Closed", signup="closed")
        r = self.stack.otp_send(client["token"], unique_phone(), "phone_number", "sms")
        self.assertError(r, 404, "user_not_found")
        self.assertEqual(self.stack.spool_files("outgoing"), [])

    def test_bad_input(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        long_value = "x" * 1000
        cases = {
            "number without +": {"custom_phone_number": "491701234567"},
            "number with leading 0": {"custom_phone_number": "+0491701234567"},
            "number too short": {"custom_phone_number": "+123456"},
            "number with a space": {"custom_phone_number": "+49 1701234567"},
            "number with letters": {"custom_phone_number": "+4917012345ab"},
            "message without {otp}": {"custom_sms_input": {"custom_message": "hello {app}"}},
            "message of 141 characters": {"custom_sms_input": {
                "custom_message": "{otp}" + "a" * 136}},
            "message of 141 non-ASCII characters": {"custom_sms_input": {
                "custom_message": "{otp}" + "ж" * 136}},
            "empty message": {"custom_sms_input": {"custom_message": ""}},
            "sender id of 12 characters": {"custom_sms_input": {"sender_id": "A" * 12}},
            "sender id with punctuation": {"custom_sms_input": {"sender_id": "Shop!"}},
            "sender id with a leading space": {"custom_sms_input": {"sender_id": " Shop"}},
            "sender id not a string": {"custom_sms_input": {"sender_id": 12}},
            "too many segments": {"approval_data": {"a": long_value, "b": long_value}},
        }
        for name, extra in cases.items():
            with self.subTest(name):
                r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms",
                                        **extra)
                body = self.assertError(r, 400, "system_invalid_input")
                self.assertTrue(body["message"] and body["message"] != "Invalid input",
                                "the 400 does not say what is wrong: %r" % body)
        self.assertEqual(self.stack.spool_files("outgoing"), [])
        # The segment limit names the count.
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms",
                                approval_data={"a": long_value})
        self.assertRegex(self.assertError(r, 400)["message"], r"segments")
        # 140 characters is fine.
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms",
                                custom_sms_input={"custom_message": "{otp}" + "ж" * 135})
        self.assertSent(r)


# ---- command -----------------------------------------------------------------------------------

RECORDER = """#!/bin/sh
# Records its arguments, stdin and environment; "fail" or "hang" in ./mode change its answer.
dir=%(dir)s
n=$(date +%%s%%N)
cat >"$dir/out/$n.text"
printf '%%s\\n' "$#" "$1" "$2" >"$dir/out/$n.args"
env >"$dir/out/$n.env"
case "$(cat "$dir/mode" 2>/dev/null)" in
fail) echo "recorder: the provider refused" >&2; exit 1 ;;
hang) sleep 60 & sleep 60 ;;
esac
exit 0
"""


class Command(SMSCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = SMSStack(name="sms-command", sms={
            "backend": "command", "command": "{dir}/recorder", "command_timeout": 2,
            "sender_id": "Otlogin"})
        s = cls.stack
        # The program must exist before the workers start: write it from _write_otlogin_conf.
        orig = s._write_otlogin_conf

        def write():
            orig()
            os.makedirs(s.path("out"), exist_ok=True)
            with open(s.path("recorder"), "w") as f:
                f.write(RECORDER % {"dir": s.dir})
            os.chmod(s.path("recorder"), 0o700)
        s._write_otlogin_conf = write
        s.start()
        cls.client = s.new_client(name="Cmd")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def set_mode(self, mode):
        with open(self.stack.path("mode"), "w") as f:
            f.write(mode)

    def setUp(self):
        self.set_mode("ok")
        for n in os.listdir(self.stack.path("out")):
            os.unlink(self.stack.path("out", n))

    def last_record(self):
        names = sorted(os.listdir(self.stack.path("out")))
        stems = sorted({n.rsplit(".", 1)[0] for n in names})
        self.assertTrue(stems, "the command was not run")
        stem = self.stack.path("out", stems[-1])
        with open(stem + ".args") as f:
            args = f.read().split("\n")
        with open(stem + ".text", encoding="utf-8") as f:
            text = f.read()
        with open(stem + ".env") as f:
            env = f.read()
        return args, text, env

    def extra_processes(self):
        """Processes below lighttpd's workers (delivery children, a killed command's
        children) that are still alive."""
        workers = set(self.stack.worker_pids())
        # Not the maintainer (otlogin.fcgi -M, a worker's child for good: test_maintenance).
        return [p for p in self.stack.worker_pids(descendants=True)
                if p not in workers and b"-M" not in harness._cmdline(p[0])]

    def test_login_with_recorded_message(self):
        phone = unique_phone()
        user = self.stack.make_user(phone=phone)
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number",
                                            "sms"))
        args, text, env = self.last_record()
        self.assertEqual(args[:3], ["2", phone, "Otlogin"])
        self.assertNotIn("HTTP_AUTHORIZATION", env, "the request's headers reached the program")
        self.assertNotIn(self.client["token"], env)
        self.assertSMSLogin(self.client, phone, code_in(text), user["user_id"])

    def test_request_sender_id_wins(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number", "sms",
                                            custom_sms_input={"sender_id": "Other"}))
        self.assertEqual(self.last_record()[0][:3], ["2", phone, "Other"])

    def test_failing_command(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        self.set_mode("fail")
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms")
        self.assertError(r, 502, "external_provider_configuration_error")
        self.assertNotIn(b"OTP sent", r.body)
        # The program saw the code before it failed: that code must not work.
        _, text, _ = self.last_record()
        r = self.stack.otp_authenticate(self.client["token"], phone, code_in(text),
                                        "phone_number")
        self.assertError(r, 400, "auth_invalid_credentials")
        self.assertIn("exit status 1", self.stack.log_text())
        self.assertNotIn(code_in(text), self.stack.log_text())
        # Nothing is stuck: the next send works.
        self.set_mode("ok")
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number",
                                            "sms"))

    def test_hanging_command(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        self.set_mode("hang")
        t0 = time.monotonic()
        r = self.stack.otp_send(self.client["token"], phone, "phone_number", "sms")
        elapsed = time.monotonic() - t0
        self.assertError(r, 502, "external_provider_configuration_error")
        # command_timeout is 2 s. The bound here only tells a kill from a hang (the HTTP
        # client gives up at 30 s), so it is generous on purpose: no timing is asserted.
        self.assertLess(elapsed, 25)
        self.assertIn("did not finish within 2 s", self.stack.log_text())
        _, text, _ = self.last_record()
        r = self.stack.otp_authenticate(self.client["token"], phone, code_in(text),
                                        "phone_number")
        self.assertError(r, 400, "auth_invalid_credentials")
        # The program and the child it started in the background are gone.
        deadline = time.monotonic() + 10
        while self.extra_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.extra_processes(), [])
        self.set_mode("ok")
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number",
                                            "sms"))


# ---- email gateway -----------------------------------------------------------------------------


class EmailGateway(SMSCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = SMSStack(name="sms-email", sms={
            "backend": "email", "email_gateway": "{number}@sms.example.net"}).start()
        cls.client = cls.stack.new_client(name="Mailer")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_gateway_mail_and_login(self):
        phone = unique_phone()
        user = self.stack.make_user(phone=phone)
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number",
                                            "sms"))
        m = self.stack.mailbox.wait("%s@sms.example.net" % phone[1:])
        self.assertEqual(m["mail_from"], "otlogin@localhost")
        parts = mail_parts(m["msg"])
        self.assertEqual(list(parts), ["text/plain"])
        code = code_in(parts["text/plain"])
        self.assertEqual(parts["text/plain"].strip(), "%s is your Mailer code" % code)
        self.assertSMSLogin(self.client, phone, code, user["user_id"])

    def test_custom_email(self):
        user = self.stack.make_user(email=unique_email())
        other = unique_email("custom")
        r = self.stack.otp_send(self.client["token"], user["email"]["value"],
                                custom_email=other)
        self.assertSent(r)
        code = self.stack.mail_code(self.stack.wait_mail(other))
        self.assertEqual(self.stack.mailbox.pending(user["email"]["value"]), [])
        r = self.stack.otp_authenticate(self.client["token"], user["email"]["value"], code)
        self.assertTokenResponse(r)
        for bad in ("no-at-sign", "a@b@example.org", "a b@example.org", "a@example.org\r\nBcc: x@y",
                    "<a@example.org>", "a@", "@example.org"):
            with self.subTest(bad):
                r = self.stack.otp_send(self.client["token"], user["email"]["value"],
                                        custom_email=bad)
                self.assertError(r, 400, "system_invalid_input")


# ---- test mode ---------------------------------------------------------------------------------


class TestMode(SMSCase):
    """[server] test_mode = yes: mail to the Maildir, SMS to the test spool, whatever else is
    configured (here an SMTP relay and a command backend), and it is impossible to miss."""

    @classmethod
    def setUpClass(cls):
        cls.stack = SMSStack(name="sms-testmode", server={"test_mode": "yes"}, sms={
            "backend": "command", "command": "/bin/false",
            "test_spool_dir": "{dir}/sms"}).start()
        cls.client = cls.stack.new_client(name="Demo")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_health_and_log_say_so(self):
        r = self.stack.http("GET", "/cis/health")
        self.assertEqual(self.assertJSON(r, 200), {"status": "ok", "test_mode": True})
        self.assertRegex(self.stack.log_text(), r"TEST MODE")

    def test_sms_land_in_the_test_spool(self):
        phone = unique_phone()
        self.stack.make_user(phone=phone)
        self.assertSent(self.stack.otp_send(self.client["token"], phone, "phone_number",
                                            "sms"))
        files = self.stack.spool_files("sms")
        self.assertEqual(len(files), 1)
        headers, text = read_spool_file(files[0])
        self.assertEqual(headers["To"], phone[1:])
        self.assertSMSLogin(self.client, phone, code_in(text))

    def test_mail_lands_in_the_maildir(self):
        addr = unique_email()
        self.stack.make_user(email=addr)
        self.assertSent(self.stack.otp_send(self.client["token"], addr))
        new = self.stack.path("maildir", "new")
        names = [n for n in os.listdir(new)
                 if addr.encode() in open(os.path.join(new, n), "rb").read()]
        self.assertEqual(len(names), 1)
        self.assertEqual(self.stack.mailbox.pending(addr), [], "test mode mail left the host")
