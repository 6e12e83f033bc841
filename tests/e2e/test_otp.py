"""The OTP seed operations end to end: POST /v1/auth/otp/send and /v1/auth/otp/authenticate
through lighttpd, with the mail read from the SMTP sink and the tokens verified against the
published JWKS (API.md "Seed operation 3/4", "Tokens")."""

import os
import re

import harness
from harness import E2ETestCase, jwt_parts, mail_parts, unique_email

stack = None


def setUpModule():
    global stack
    stack = harness.Stack(name="otp").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class OTPCase(E2ETestCase):
    def check_tokens(self, r, client, user_id=None, amr="eotp", check_sid=False):
        """Verify the token response of an authenticate; returns (body, id_claims, at_claims).
        The sid claims are compared with session_id last, and only when asked, so that one
        mismatch there does not hide everything else."""
        body = self.assertTokenResponse(r)
        _, idc = stack.verify_jwt(body["id_token"], "JWT", client["client_id"])
        _, atc = stack.verify_jwt(body["access_token"], "at+jwt", client["client_id"])
        for claims in (idc, atc):
            self.assertEqual(claims["iss"], stack.issuer)
            if user_id is not None:
                self.assertEqual(claims["sub"], user_id)
            self.assertIsInstance(claims.get("sid"), str)
            self.assertGreater(claims["exp"], claims["iat"])
        self.assertEqual(idc["sub"], atc["sub"])
        self.assertEqual(idc["sid"], atc["sid"])
        self.assertIsInstance(idc.get("amr"), list)
        self.assertIn(amr, idc["amr"])
        self.assertIn("auth_time", idc)
        self.assertEqual(atc.get("client_id"), client["client_id"])
        self.assertIn("jti", atc)
        self.assertNotEqual(body["refresh_token"].count("."), 2, "refresh token looks like a JWT")
        self.assertGreaterEqual(len(body["refresh_token"]), 22, "refresh token < 128 bits")
        if check_sid:
            # session_id is a bearer secret (with client credentials it mints tokens), so the
            # tokens carry sid, a non-secret 32-hex handle of the session: the one the
            # sessions list shows and logout accepts.
            self.assertRegex(idc["sid"], r"^[0-9a-f]{32}$")
            self.assertEqual(atc["sid"], idc["sid"], "access and id token sid differ")
            self.assertNotEqual(idc["sid"], body["session_id"], "sid must not leak session_id")
            r = stack.http("GET", "/cis/v1/auth/users/%s/sessions" % idc["sub"],
                           headers={"Authorization": "Bearer " + client["token"]})
            self.assertEqual(r.status, 200)
            self.assertIn(idc["sid"], [s["session_id"] for s in r.json])
        return body, idc, atc


class EmailFlow(OTPCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client()

    def test_full_email_flow(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(self.client["token"], addr)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})

        msg = stack.wait_mail(addr)
        self.assertIn(addr, msg["To"])
        self.assertIn("otlogin@localhost", msg["From"])
        self.assertTrue(msg["Subject"])
        parts = mail_parts(msg)
        self.assertIn("text/plain", parts)
        self.assertIn("text/html", parts)
        code = stack.mail_code(msg)
        self.assertRegex(code, r"^[0-9]{%d}$" % stack.otp_length)
        self.assertIn(code, parts["text/html"])
        self.assertNotIn(code.encode(), r.body, "the code is echoed by otp/send")

        r = stack.otp_authenticate(self.client["token"], addr, code)
        body, idc, atc = self.check_tokens(r, self.client, user["user_id"], "eotp")
        self.assertNotIn("mfa", idc["amr"])

        # Single use: the same code again fails.
        r2 = stack.otp_authenticate(self.client["token"], addr, code)
        self.assertError(r2, 400, "auth_invalid_credentials")

        # API.md: the tokens' "sid" is the session (session_id of the response).
        self.check_tokens(r, self.client, user["user_id"], "eotp", check_sid=True)

    def test_identifier_types(self):
        """The code goes to the user's address whatever identifier names the user."""
        user = stack.make_user(username="name-" + unique_email("u").split("@")[0])
        addr = user["email"]["value"]
        for itype, ident in (("user_id", user["user_id"]), ("username", user["username"])):
            with self.subTest(identifier_type=itype):
                code = stack.send_and_read_code(self.client["token"], addr, identifier=ident,
                                                identifier_type=itype)
                r = stack.otp_authenticate(self.client["token"], ident, code,
                                           identifier_type=itype)
                self.check_tokens(r, self.client, user["user_id"], "eotp")

    def test_phone_identifier_email_channel(self):
        """identifier_type phone_number with channel email: the code goes to the user's
        address."""
        phone = "+1500555%04d" % (int.from_bytes(os.urandom(2), "big") % 10000)
        user = stack.make_user(email=unique_email(), phone=phone)
        addr = user["email"]["value"]
        code = stack.send_and_read_code(self.client["token"], addr, identifier=phone,
                                        identifier_type="phone_number")
        r = stack.otp_authenticate(self.client["token"], phone, code,
                                   identifier_type="phone_number")
        self.check_tokens(r, self.client, user["user_id"], "eotp")

    def test_custom_email(self):
        """custom_email: delivered there instead of to the user's address."""
        user = stack.make_user()
        addr = user["email"]["value"]
        other = unique_email("custom")
        r = stack.otp_send(self.client["token"], addr, custom_email=other)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        code = stack.mail_code(stack.wait_mail(other))
        self.assertEqual(stack.mailbox.pending(addr), [], "also mailed to the user")
        r = stack.otp_authenticate(self.client["token"], addr, code)
        # The address was never verified as the user's: amr claims a one-time code only.
        _, idc, _ = self.check_tokens(r, self.client, user["user_id"], "otp")
        self.assertEqual(idc["amr"], ["otp"])

    def test_unknown_identifier_authenticate(self):
        """Authenticate for an identifier nobody sent a code to: the same answer as a wrong
        code (no hint whether the user exists)."""
        r = stack.otp_authenticate(self.client["token"], unique_email("ghost"), "123456")
        self.assertError(r, 400, "auth_invalid_credentials")
        user = stack.make_user()
        r2 = stack.otp_authenticate(self.client["token"], user["email"]["value"], "123456")
        self.assertError(r2, 400, "auth_invalid_credentials")
        self.assertEqual(r.json, r2.json)

    def test_email_content(self):
        """email_content replaces the subject; interpolated text is HTML-escaped (rule 9)."""
        user = stack.make_user()
        addr = user["email"]["value"]
        content = {"subject": "Your e2e login code", "headerText": "<b>Hello</b> & <script>",
                   "unknownField": "ignored"}
        r = stack.otp_send(self.client["token"], addr, email_content=content)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        msg = stack.wait_mail(addr)
        self.assertEqual(msg["Subject"], "Your e2e login code")
        html = mail_parts(msg)["text/html"]
        self.assertNotIn("<script>", html)
        self.assertNotIn("<b>Hello</b>", html)
        code = stack.mail_code(msg)
        self.assertIn(code, html)
        r = stack.otp_authenticate(self.client["token"], addr, code)
        self.check_tokens(r, self.client, user["user_id"])

    def test_approval_data(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        approval = {"amount": "10.00", "payee": "Bob", "ref.id-1_x": "42"}
        r = stack.otp_send(self.client["token"], addr, approval_data=approval)
        body = self.assertJSON(r, 200)
        self.assertEqual(body, {"message": "OTP sent", "approval_data": approval})
        code = stack.mail_code(stack.wait_mail(addr))
        r = stack.otp_authenticate(self.client["token"], addr, code)
        _, idc, _ = self.check_tokens(r, self.client, user["user_id"])
        self.assertEqual(idc.get("approval_data"), approval)

    def test_request_id(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(self.client["token"], addr, generate_request_id=True)
        body = self.assertJSON(r, 200)
        self.assertEqual(body.get("message"), "OTP sent")
        self.assertIsInstance(body.get("request_id"), str)
        self.assertTrue(body["request_id"])
        self.assertNotIn("code", body)
        rid = body["request_id"]
        code = stack.mail_code(stack.wait_mail(addr))

        r = stack.otp_authenticate(self.client["token"], addr, code)
        self.assertError(r, 400)
        r = stack.otp_authenticate(self.client["token"], addr, code, request_id=rid + "x")
        self.assertError(r, 400)
        r = stack.otp_authenticate(self.client["token"], addr, code, request_id=rid)
        self.check_tokens(r, self.client, user["user_id"])

    def test_no_request_id_unless_asked(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(self.client["token"], addr, generate_request_id=False)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        code = stack.mail_code(stack.wait_mail(addr))
        self.check_tokens(stack.otp_authenticate(self.client["token"], addr, code),
                          self.client, user["user_id"])

    def test_expires_in_capped(self):
        """A lifetime above max_ttl_minutes (60 here) is capped, not refused; the code works.
        (The server refuses values above a day outright; 1000 minutes stays below that.)"""
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(self.client["token"], addr, expires_in=1000)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        code = stack.mail_code(stack.wait_mail(addr))
        self.check_tokens(stack.otp_authenticate(self.client["token"], addr, code),
                          self.client, user["user_id"])
        r = stack.otp_send(self.client["token"], addr, expires_in=5)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        code = stack.mail_code(stack.wait_mail(addr))
        self.check_tokens(stack.otp_authenticate(self.client["token"], addr, code),
                          self.client, user["user_id"])

    def test_sms_not_supported(self):
        user = stack.make_user(phone="+1500555%04d" % (int.from_bytes(os.urandom(2), "big")
                                                       % 10000))
        r = stack.otp_send(self.client["token"], user["phone_number"]["value"],
                           identifier_type="phone_number", channel="sms")
        self.assertError(r, 400)

    def test_unknown_user_closed_signup(self):
        client = stack.new_client(signup="closed")
        addr = unique_email("nobody")
        r = stack.otp_send(client["token"], addr)
        self.assertError(r, 404, "user_not_found")
        self.assertEqual(stack.mailbox.pending(addr), [], "mail sent to an unknown user")

    def test_unknown_user_open_signup(self):
        client = stack.new_client(signup="open")
        addr = unique_email("newcomer")
        users_before = stack.ctl("user", "list", parse=True)
        self.assertNotIn(addr, repr(users_before))
        r = stack.otp_send(client["token"], addr)
        self.assertEqual(self.assertJSON(r, 200), {"message": "OTP sent"})
        # Never created at send.
        self.assertNotIn(addr, repr(stack.ctl("user", "list", parse=True)))
        code = stack.mail_code(stack.wait_mail(addr))
        r = stack.otp_authenticate(client["token"], addr, code)
        body, idc, _ = self.check_tokens(r, client, None, "eotp")
        users = stack.ctl("user", "list", parse=True)
        mine = [u for u in users if (u.get("email") or {}).get("value") == addr]
        self.assertEqual(len(mine), 1, "user list after signup: %r" % (users,))
        self.assertEqual(mine[0]["user_id"], idc["sub"])
        # The first successful email OTP verifies the address.
        self.assertTrue(mine[0]["email"].get("email_verified"), mine[0])


class RequestOptions(OTPCase):
    def test_resource_becomes_aud(self):
        api = "https://api.example.org/e2e"
        client = stack.new_client(permissions=["direct"], resources=[api])
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_authenticate(client["token"], addr, stack.direct_code(client["token"], addr),
                                   resource=api)
        body = self.assertTokenResponse(r)
        _, atc = stack.verify_jwt(body["access_token"], "at+jwt", api)
        self.assertEqual(atc["sub"], user["user_id"])
        _, idc = stack.verify_jwt(body["id_token"], "JWT", client["client_id"])
        self.assertEqual(idc["sub"], user["user_id"])

    def test_unregistered_resource_refused(self):
        client = stack.new_client(permissions=["direct"])
        addr = stack.make_user()["email"]["value"]
        r = stack.otp_authenticate(client["token"], addr, stack.direct_code(client["token"], addr),
                                   resource="https://api.example.org/not-registered")
        self.assertError(r, 400)

    def test_claims_request(self):
        """claims asks for extra ID token claims among email, email_verified, username, roles."""
        client = stack.new_client(permissions=["direct"])
        uname = "claims-" + unique_email("c").split("@")[0]
        user = stack.make_user(username=uname, roles=["admin", "viewer"])
        addr = user["email"]["value"]
        r = stack.otp_authenticate(client["token"], addr, stack.direct_code(client["token"], addr),
                                   claims={"id_token": {"email": None, "roles": None,
                                                        "username": None,
                                                        "email_verified": None}})
        _, idc, _ = self.check_tokens(r, client, user["user_id"], "otp")
        self.assertEqual(idc.get("email"), addr)
        self.assertEqual(idc.get("username"), uname)
        self.assertEqual(sorted(idc.get("roles") or []), ["admin", "viewer"])
        self.assertIn("email_verified", idc)

    def test_no_extra_claims_unless_asked(self):
        client = stack.new_client(permissions=["direct"])
        user = stack.make_user(username="plain-" + unique_email("p").split("@")[0])
        addr = user["email"]["value"]
        r = stack.otp_authenticate(client["token"], addr, stack.direct_code(client["token"], addr))
        _, idc, _ = self.check_tokens(r, client, user["user_id"], "otp")
        for k in ("email", "username", "phone_number", "custom_data"):
            self.assertNotIn(k, idc)


class DirectChannel(OTPCase):
    def test_direct_needs_permission(self):
        client = stack.new_client()
        user = stack.make_user()
        r = stack.otp_send(client["token"], user["email"]["value"], channel="direct")
        body = self.assertError(r, 403)
        self.assertNotIn("code", body)
        self.assertEqual(stack.mailbox.pending(user["email"]["value"]), [])

    def test_direct_code_authenticates(self):
        client = stack.new_client(permissions=["direct"])
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(client["token"], addr, channel="direct")
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), {"message", "code"})
        self.assertEqual(body["message"], "OTP sent")
        self.assertRegex(body["code"], r"^[0-9]{%d}$" % stack.otp_length)
        self.assertEqual(stack.mailbox.pending(addr), [], "direct also mailed the code")
        r = stack.otp_authenticate(client["token"], addr, body["code"])
        _, idc, _ = self.check_tokens(r, client, user["user_id"], "otp")
        self.assertNotIn("eotp", idc["amr"])

    def test_direct_with_request_id_and_approval(self):
        client = stack.new_client(permissions=["direct"])
        user = stack.make_user()
        addr = user["email"]["value"]
        r = stack.otp_send(client["token"], addr, channel="direct", generate_request_id=True,
                           approval_data={"k": "v"})
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), {"message", "code", "request_id", "approval_data"})
        self.assertEqual(body["approval_data"], {"k": "v"})
        r = stack.otp_authenticate(client["token"], addr, body["code"],
                                   request_id=body["request_id"])
        self.check_tokens(r, client, user["user_id"], "otp")


class Sessions(OTPCase):
    def test_each_login_new_session(self):
        client = stack.new_client(permissions=["direct"])
        user = stack.make_user()
        addr = user["email"]["value"]
        sids = set()
        for _ in range(2):
            code = stack.direct_code(client["token"], addr)
            body, _, _ = self.check_tokens(stack.otp_authenticate(client["token"], addr, code),
                                           client, user["user_id"], "otp")
            sids.add(body["session_id"])
        self.assertEqual(len(sids), 2)
        for sid in sids:
            self.assertGreaterEqual(len(sid), 22, "session id < 128 bits?")
            self.assertTrue(re.match(r"^[A-Za-z0-9_.~-]+$", sid), sid)
