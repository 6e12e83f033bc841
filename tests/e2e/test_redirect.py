"""Transmit's redirect-based One-Time Login (API-OIDC.md part A) end to end: POST
/v1/auth/otp/email, /v1/auth/otp/sms, their /validation and /v1/auth/links/email; the result
URL followed by a browser with a cookie jar (303 to redirect_uri?code=..&iss=..), the emailed
link's landing page; the code exchanged at /oidc/token (grant_type=authorization_code) and at
the deprecated /v1/token, tokens verified against the JWKS; create_new_user, require_mfa
across two channels in one browser, replayed and expired tickets, tickets opened in another
browser, and /v1/auth/logout."""

import http.cookies
import os
import re
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase, mail_parts, other_code, unique_email
from test_sms import SMSStack, code_in, read_spool_file, unique_phone

REDIRECT = "https://app.example.org/callback"
TICKET_PATH = "/cis/v1/auth/redirect/continue"
LINK_PATH = "/v1/auth/links/email/open"

stack = None


class RedirectStack(ClockStack, SMSStack):
    """SMS through an smstools spool, and a clock the expiry test moves."""


def setUpModule():
    global stack
    stack = RedirectStack(name="redirect", sms={
        "backend": "smstools", "spool_dir": "{dir}/outgoing", "max_segments": 3}).start()
    os.makedirs(stack.path("outgoing"), mode=0o700, exist_ok=True)
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class Browser:
    """A browser's cookie jar for the otlogin host: it sends back what was set (Path
    /cis), and records where each 303 goes without following it off the host."""

    def __init__(self, st):
        self.st = st
        self.cookies = {}

    def _store(self, r):
        for h in r.headers.get_all("Set-Cookie") or []:
            c = http.cookies.SimpleCookie()
            c.load(h)
            for name, m in c.items():
                if m["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = m.value

    def request(self, method, url, headers=None, form=None):
        u = urllib.parse.urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        r = self.st.http(method, path, headers=hdrs, form=form)
        self._store(r)
        return r

    def get(self, url):
        return self.request("GET", url)

    def session_cookie(self):
        return self.cookies.get("otlogin")


def query_of(location):
    u = urllib.parse.urlsplit(location)
    return "%s://%s%s" % (u.scheme, u.netloc, u.path), dict(urllib.parse.parse_qsl(u.query))


class RedirectCase(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT], signup="closed")
        cls.open_client = stack.new_client(redirect_uris=[REDIRECT], signup="open")

    def setUp(self):
        for p in stack.spool_files("outgoing"):
            os.unlink(p)

    # ---- helpers ---------------------------------------------------------------------------

    def post(self, path, body, client=None):
        return stack.http("POST", "/cis" + path, json=body, token=(client or self.client)["token"])

    def assertArrayError(self, r, status=400, contains=None):
        body = self.assertJSON(r, status)
        self.assertIsInstance(body.get("message"), list, "message of %r" % (body,))
        self.assertTrue(body["message"], "message of %r" % (body,))
        self.assertTrue(all(isinstance(m, str) for m in body["message"]))
        self.assertEqual(body.get("error_code"), status)
        if contains is not None:
            self.assertIn(contains, " ".join(body["message"]))
        return body

    def send_email(self, addr, client=None, **extra):
        body = {"email": addr, "redirect_uri": REDIRECT}
        body.update(extra)
        r = self.post("/v1/auth/otp/email", body, client)
        b = self.assertJSON(r, 200)
        self.assertEqual(b.get("message"), "OTP email sent")
        return stack.mail_code(stack.wait_mail(addr))

    def send_sms(self, phone, client=None, **extra):
        body = {"phone_number": phone, "redirect_uri": REDIRECT}
        body.update(extra)
        r = self.post("/v1/auth/otp/sms", body, client)
        b = self.assertJSON(r, 200)
        self.assertEqual(b.get("message"), "SMS sent")
        files = stack.spool_files("outgoing")
        self.assertEqual(len(files), 1, files)
        _, text = read_spool_file(files[0])
        os.unlink(files[0])
        return code_in(text, stack.otp_length)

    def validate(self, kind, ident, code, client=None, **extra):
        key = "email" if kind == "email" else "phone_number"
        body = {key: ident, "passcode": code}
        body.update(extra)
        r = self.post("/v1/auth/otp/%s/validation" % kind, body, client)
        b = self.assertJSON(r, 200)
        self.assertEqual(set(b), {"result"})
        self.assertTrue(b["result"].startswith(stack.base_url + "/v1/auth/redirect/continue?t="),
                        b["result"])
        return b["result"]

    def follow(self, browser, url):
        """GET the result URL: 303 to the app; (redirect base, query params)."""
        r = browser.get(url)
        self.assertEqual(r.status, 303, "%r" % (r,))
        base, q = query_of(r.headers["Location"])
        self.assertEqual(base, REDIRECT)
        self.assertEqual(q.get("iss"), stack.issuer)
        return q

    def exchange(self, code, client=None):
        """The code at /oidc/token (authorization_code): the verified (body, ID token claims)."""
        c = client or self.client
        r = stack.token_request(c["client_id"], c["client_secret"], auth="basic",
                                grant_type="authorization_code", code=code,
                                redirect_uri=REDIRECT)
        body = self.assertJSON(r, 200)
        for k in ("access_token", "id_token", "refresh_token"):
            self.assertIsInstance(body.get(k), str, "%s in %r" % (k, body))
        _, idt = stack.verify_jwt(body["id_token"], "JWT", c["client_id"])
        aud = harness.jwt_parts(body["access_token"])[1].get("aud")
        _, at = stack.verify_jwt(body["access_token"], "at+jwt", aud)
        self.assertEqual(at["sub"], idt["sub"])
        return body, idt

    def email_login(self, browser, addr, client=None, **extra):
        code = self.send_email(addr, client, **extra)
        q = self.follow(browser, self.validate("email", addr, code, client))
        self.assertIn("code", q, q)
        return q["code"]

    # ---- the flows -------------------------------------------------------------------------

    def test_email_otp_flow(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        b = Browser(stack)
        code = self.send_email(addr, approval_data={"order": "42"})
        url = self.validate("email", addr, code, nonce="n-0S6_WzA2Mj")
        q = self.follow(b, url)
        self.assertNotIn("error", q)
        self.assertTrue(b.session_cookie(), "the login-session cookie is set")
        body, idt = self.exchange(q["code"])
        self.assertEqual(idt["sub"], user["user_id"])
        self.assertIn("eotp", idt["amr"])
        self.assertNotIn("mfa", idt["amr"])
        self.assertEqual(idt.get("nonce"), "n-0S6_WzA2Mj")
        self.assertEqual(idt.get("approval_data"), {"order": "42"})
        self.assertNotIn("new_user", idt)
        # The code is single use.
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                grant_type="authorization_code", code=q["code"],
                                redirect_uri=REDIRECT)
        self.assertOAuthError(r, 400, "invalid_grant")

    def test_v1_token(self):
        """The deprecated exchange: {code, client_id, client_secret}, no Authorization."""
        addr = stack.make_user()["email"]["value"]
        code = self.email_login(Browser(stack), addr)
        bad = stack.http("POST", "/cis/v1/token", json={
            "code": code, "client_id": self.client["client_id"], "client_secret": "wrong"})
        self.assertEqual(bad.status, 401, "%r" % (bad,))
        r = stack.http("POST", "/cis/v1/token", json={
            "code": code, "client_id": self.client["client_id"],
            "client_secret": self.client["client_secret"]})
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), {"id_token", "access_token", "refresh_token",
                                     "is_user_created"})
        self.assertIs(body["is_user_created"], False)
        _, idt = stack.verify_jwt(body["id_token"], "JWT", self.client["client_id"])
        self.assertIn("eotp", idt["amr"])
        # A refresh token of a part A code works at /oidc/token.
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                grant_type="refresh_token",
                                refresh_token=body["refresh_token"])
        self.assertJSON(r, 200)
        again = stack.http("POST", "/cis/v1/token", json={
            "code": code, "client_id": self.client["client_id"],
            "client_secret": self.client["client_secret"]})
        self.assertArrayError(again, 400)

    def test_sms_flow(self):
        phone = unique_phone()
        user = stack.make_user(phone=phone)
        code = self.send_sms(phone)
        q = self.follow(Browser(stack), self.validate("sms", phone, code))
        _, idt = self.exchange(q["code"])
        self.assertEqual(idt["sub"], user["user_id"])
        self.assertIn("sms", idt["amr"])

    def test_magic_link_flow(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        r = self.post("/v1/auth/links/email", {"email": addr, "redirect_uri": REDIRECT})
        self.assertEqual(self.assertJSON(r, 200), {"message": "Email sent successfully"})
        text = mail_parts(stack.wait_mail(addr))["text/plain"]
        prefix = stack.base_url + LINK_PATH + "?t="
        links = re.findall(r"%s\S+" % re.escape(prefix), text)
        self.assertEqual(len(links), 1, text)
        b = Browser(stack)
        # Looking consumes nothing (mail scanners): the page has a button, twice.
        for _ in range(2):
            page = b.get(links[0])
            self.assertEqual(page.status, 200)
            self.assertIn(b'<form method="post"', page.body)
        # The backend's landing page knows nothing of this link.
        backend = stack.http("GET", "/cis/v1/auth/link/email/open?" +
                             urllib.parse.urlsplit(links[0]).query)
        self.assertEqual(backend.status, 404)
        r = stack.open_link(links[0])
        self.assertEqual(r.status, 303, "%r" % (r,))
        base, q = query_of(r.headers["Location"])
        self.assertEqual(base, REDIRECT)
        self.assertEqual(q.get("iss"), stack.issuer)
        self.assertTrue(any(h.startswith("otlogin=")
                            for h in r.headers.get_all("Set-Cookie") or []))
        _, idt = self.exchange(q["code"])
        self.assertEqual(idt["sub"], user["user_id"])
        self.assertIn("eml", idt["amr"])
        # Used once: the page says so, no second redirect.
        again = stack.open_link(links[0])
        self.assertNotEqual(again.status, 303)

    def test_options_reach_the_tokens(self):
        """resource becomes the access token's aud, claims asks for ID token claims, org_id
        scopes the tokens (a non-member goes back with access_denied)."""
        api = "https://api.example.org/orders"
        c = stack.new_client(redirect_uris=[REDIRECT], resources=[api])
        user = stack.make_user()
        addr = user["email"]["value"]
        org = stack.ctl("org", "add", "--name", "Org-%s" % user["user_id"][:8], parse=True)
        org_id = org.get("org_id") or org.get("id")
        r = self.post("/v1/auth/otp/email", {"email": addr, "redirect_uri": REDIRECT,
                                             "resource": "https://api.example.org/other"}, c)
        self.assertArrayError(r, 400)
        code = self.email_login(Browser(stack), addr, c, resource=api,
                                claims={"id_token": {"email": None}})
        body, idt = self.exchange(code, c)
        self.assertEqual(idt.get("email"), addr)
        self.assertEqual(harness.jwt_parts(body["access_token"])[1]["aud"], api)
        # Not a member of org_id: back to the app with access_denied.
        mail = self.send_email(addr, c, org_id=org_id)
        q = self.follow(Browser(stack), self.validate("email", addr, mail, c))
        self.assertEqual(q.get("error"), "access_denied", q)
        stack.ctl("org", "member", "add", "--org", org_id, "--user", user["user_id"])
        mail = self.send_email(addr, c, org_id=org_id)
        q = self.follow(Browser(stack), self.validate("email", addr, mail, c))
        _, idt = self.exchange(q["code"], c)
        self.assertEqual(idt.get("org_id"), org_id)

    def test_link_post_from_another_site(self):
        """The landing page's protections are the backend link's: a cross-site POST is
        refused and leaves the link usable for its owner."""
        addr = stack.make_user()["email"]["value"]
        r = self.post("/v1/auth/links/email", {"email": addr, "redirect_uri": REDIRECT})
        self.assertJSON(r, 200)
        text = mail_parts(stack.wait_mail(addr))["text/plain"]
        link = re.search(r"%s\S+" % re.escape(stack.base_url + LINK_PATH + "?t="), text).group(0)
        u = urllib.parse.urlsplit(link)
        r = stack.http("POST", u.path + "?" + u.query, form={},
                       headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
        self.assertEqual(r.status, 403)
        self.assertNotIn("Location", r.headers)
        r = stack.open_link(link)
        self.assertEqual(r.status, 303)
        self.assertIn("code", query_of(r.headers["Location"])[1])

    # ---- refusals --------------------------------------------------------------------------

    def test_bad_input(self):
        addr = stack.make_user()["email"]["value"]
        cases = [
            ("/v1/auth/otp/email", {"redirect_uri": REDIRECT}, "email"),
            ("/v1/auth/otp/email", {"email": addr}, "redirect_uri"),
            ("/v1/auth/otp/email", {"email": addr, "redirect_uri": "https://evil.example/cb"},
             "redirect_uri is not one of the allowed"),
            ("/v1/auth/otp/email", {"email": "not an address", "redirect_uri": REDIRECT}, None),
            ("/v1/auth/otp/email", {"email": addr, "redirect_uri": REDIRECT,
                                    "require_mfa": "yes"}, None),
            ("/v1/auth/otp/sms", {"phone_number": "12345", "redirect_uri": REDIRECT}, None),
            ("/v1/auth/otp/sms", {"phone_number": unique_phone(), "redirect_uri": REDIRECT,
                                  "custom_message": "no code here"}, "{otp}"),
            ("/v1/auth/otp/sms", {"phone_number": unique_phone(), "redirect_uri": REDIRECT,
                                  "sender_id": "far-too-long-sender"}, None),
            ("/v1/auth/links/email", {"email": addr, "redirect_uri": REDIRECT + "/x"},
             "redirect_uri"),
            ("/v1/auth/otp/email/validation", {"email": addr}, "passcode"),
            ("/v1/auth/otp/email/validation", {"email": addr, "passcode": "123456",
                                               "response_type": "token"}, None),
            ("/v1/auth/otp/sms/validation", {"passcode": "123456"}, "phone_number"),
        ]
        for path, body, text in cases:
            with self.subTest(path=path, body=body):
                self.assertArrayError(self.post(path, body), 400, text)
        self.assertEqual(stack.mailbox.pending(addr), [])
        self.assertEqual(stack.spool_files("outgoing"), [])
        r = stack.http("POST", "/cis/v1/auth/otp/email", json={"email": addr,
                                                               "redirect_uri": REDIRECT})
        self.assertEqual(r.status, 401)

    def test_wrong_passcode(self):
        addr = stack.make_user()["email"]["value"]
        code = self.send_email(addr)
        r = self.post("/v1/auth/otp/email/validation", {"email": addr,
                                                        "passcode": other_code(code)})
        self.assertArrayError(r, 400, "auth_invalid_credentials")
        # The right one still works (one failure is below the limit).
        self.assertIn("code", self.follow(Browser(stack), self.validate("email", addr, code)))
        # Consumed: the same passcode again is wrong.
        r = self.post("/v1/auth/otp/email/validation", {"email": addr, "passcode": code})
        self.assertArrayError(r, 400, "auth_invalid_credentials")

    def test_passcode_failures(self):
        """Wrong passcodes are counted: the code dies at max_failures (even the right one
        then fails). Guesses from another client, or where no code is outstanding, do not
        count against the user's code."""
        addr = stack.make_user()["email"]["value"]
        other = stack.new_client(redirect_uris=[REDIRECT])
        code = self.send_email(addr)
        for _ in range(stack.max_failures + 2):
            r = self.post("/v1/auth/otp/email/validation",
                          {"email": addr, "passcode": other_code(code)}, other)
            self.assertArrayError(r, 400, "auth_invalid_credentials")
        self.assertIn("code", self.follow(Browser(stack), self.validate("email", addr, code)))
        code = self.send_email(addr)
        for _ in range(stack.max_failures):
            r = self.post("/v1/auth/otp/email/validation",
                          {"email": addr, "passcode": other_code(code)})
            self.assertIn(r.status, (400, 429), "%r" % (r,))
            self.assertIsInstance(r.json["message"], list)
        r = self.post("/v1/auth/otp/email/validation", {"email": addr, "passcode": code})
        self.assertEqual(r.status, 400, "%r" % (r,))
        self.assertIsInstance(r.json["message"], list)

    def test_flows_do_not_mix(self):
        """A redirect flow's passcode is no passcode for the backend's authenticate (which
        would skip require_mfa and the browser), and a backend code none for validation."""
        addr = stack.make_user()["email"]["value"]
        code = self.send_email(addr, require_mfa=True)
        r = stack.otp_authenticate(self.client["token"], addr, code)
        self.assertEqual(r.status, 400, "%r" % (r,))
        backend = stack.send_and_read_code(self.client["token"], addr)
        r = self.post("/v1/auth/otp/email/validation", {"email": addr, "passcode": backend})
        self.assertArrayError(r, 400, "auth_invalid_credentials")

    def test_unknown_user(self):
        addr = unique_email("nobody")
        phone = unique_phone()
        for path, body in (("/v1/auth/otp/email", {"email": addr}),
                           ("/v1/auth/otp/sms", {"phone_number": phone}),
                           ("/v1/auth/links/email", {"email": addr})):
            body["redirect_uri"] = REDIRECT
            for client in (self.client, self.open_client):
                with self.subTest(path=path, signup=client is self.open_client):
                    r = self.post(path, body, client)
                    self.assertEqual(self.assertJSON(r, 404),
                                     {"message": "User Not Found", "error_code": 404})
        self.assertEqual(stack.mailbox.pending(addr), [])
        self.assertEqual(stack.spool_files("outgoing"), [])

    def test_create_new_user_closed_signup(self):
        addr = unique_email("closed")
        for path, body in (("/v1/auth/otp/email", {"email": addr}),
                           ("/v1/auth/otp/sms", {"phone_number": unique_phone()}),
                           ("/v1/auth/links/email", {"email": addr})):
            with self.subTest(path=path):
                body.update(redirect_uri=REDIRECT, create_new_user=True)
                self.assertError(self.post(path, body), 403)
        self.assertEqual(stack.mailbox.pending(addr), [])

    def test_create_new_user_open_signup(self):
        addr = unique_email("signup")
        code = self.send_email(addr, self.open_client, create_new_user=True)
        # Not created by the send.
        r = self.post("/v1/auth/otp/email", {"email": addr, "redirect_uri": REDIRECT},
                      self.open_client)
        self.assertJSON(r, 404)
        q = self.follow(Browser(stack), self.validate("email", addr, code, self.open_client))
        r = stack.http("POST", "/cis/v1/token", json={
            "code": q["code"], "client_id": self.open_client["client_id"],
            "client_secret": self.open_client["client_secret"]})
        body = self.assertJSON(r, 200)
        self.assertIs(body["is_user_created"], True)
        _, idt = stack.verify_jwt(body["id_token"], "JWT", self.open_client["client_id"])
        self.assertIs(idt.get("new_user"), True)
        # The user exists now: a plain send finds it, and the next login is not new.
        code = self.send_email(addr, self.open_client)
        q = self.follow(Browser(stack), self.validate("email", addr, code, self.open_client))
        _, idt2 = self.exchange(q["code"], self.open_client)
        self.assertEqual(idt2["sub"], idt["sub"])
        self.assertNotIn("new_user", idt2)

    # ---- tickets ---------------------------------------------------------------------------

    def test_replayed_ticket(self):
        addr = stack.make_user()["email"]["value"]
        url = self.validate("email", addr, self.send_email(addr))
        # HEAD consumes nothing.
        u = urllib.parse.urlsplit(url)
        self.assertNotEqual(stack.http("HEAD", u.path + "?" + u.query).status, 303)
        b = Browser(stack)
        first = self.follow(b, url)
        self.assertIn("code", first)
        for browser in (b, Browser(stack)):
            q = self.follow(browser, url)
            self.assertEqual(q.get("error"), "access_denied", q)
            self.assertNotIn("code", q)
            self.assertTrue(q.get("error_description"))
        # A ticket that names nothing has no redirect: a page at otlogin.
        r = stack.http("GET", TICKET_PATH + "?t=" + "A" * 43)
        self.assertEqual(r.status, 400)
        self.assertNotIn("Location", r.headers)

    def test_ticket_once_under_concurrency(self):
        """20 browsers GET one ticket at once across the workers: exactly one code."""
        addr = stack.make_user()["email"]["value"]
        url = self.validate("email", addr, self.send_email(addr))
        browsers = [Browser(stack) for _ in range(20)]
        results = stack.parallel([lambda b=b: b.get(url) for b in browsers], threads=20)
        self.assertTrue(all(r.status == 303 for r in results), [r.status for r in results])
        qs = [query_of(r.headers["Location"])[1] for r in results]
        self.assertEqual(sum("code" in q for q in qs), 1, qs)
        self.assertEqual(sum(q.get("error") == "access_denied" for q in qs), 19, qs)
        # Only the winner got a login-session cookie.
        self.assertEqual(sum(bool(b.session_cookie()) for b in browsers), 1)

    def test_secrets_stay_out_of_the_logs(self):
        addr = stack.make_user()["email"]["value"]
        b = Browser(stack)
        passcode = self.send_email(addr)
        url = self.validate("email", addr, passcode)
        q = self.follow(b, url)
        body, _ = self.exchange(q["code"])
        ticket = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["t"]
        text = stack.log_text()
        for secret in (ticket, q["code"], b.session_cookie(), body["refresh_token"], addr):
            self.assertNotIn(secret, text)

    def test_ticket_in_browser_signed_in_as_another_user(self):
        """A browser whose cookie session is another user's: the ticket's user gets a
        session of their own; the other user's session gains nothing."""
        x = stack.make_user()
        y = stack.make_user()
        b = Browser(stack)
        _, idx = self.exchange(self.email_login(b, x["email"]["value"]))
        cookie_x = b.session_cookie()
        _, idy = self.exchange(self.email_login(b, y["email"]["value"]))
        self.assertEqual(idy["sub"], y["user_id"])
        self.assertNotEqual(idy["sid"], idx["sid"])
        self.assertNotEqual(b.session_cookie(), cookie_x)
        # x's session still holds only x's one factor: a second factor in a browser with
        # x's cookie is x's.
        bx = Browser(stack)
        bx.cookies["otlogin"] = cookie_x
        _, again = self.exchange(self.email_login(bx, x["email"]["value"]))
        self.assertEqual(again["sid"], idx["sid"])
        self.assertEqual(again["sub"], x["user_id"])

    # ---- require_mfa -----------------------------------------------------------------------

    def test_require_mfa_email_then_sms(self):
        phone = unique_phone()
        user = stack.make_user(email=unique_email("mfa"), phone=phone)
        addr = user["email"]["value"]
        b = Browser(stack)
        code = self.send_email(addr, require_mfa=True)
        q = self.follow(b, self.validate("email", addr, code))
        self.assertEqual(q.get("error"), "mfa_required", q)
        self.assertEqual(q.get("error_description"), "A second factor is required: sms")
        self.assertNotIn("code", q)
        self.assertTrue(b.session_cookie())
        q = self.follow(b, self.validate("sms", phone, self.send_sms(phone, require_mfa=True)))
        self.assertIn("code", q, q)
        _, idt = self.exchange(q["code"])
        self.assertEqual(idt["sub"], user["user_id"])
        for amr in ("eotp", "sms", "mfa"):
            self.assertIn(amr, idt["amr"])
        self.assertEqual(idt.get("acr"), "mfa")

    def test_require_mfa_sms_first_lists_email_methods(self):
        phone = unique_phone()
        user = stack.make_user(email=unique_email("mfa2"), phone=phone)
        b = Browser(stack)
        q = self.follow(b, self.validate("sms", phone, self.send_sms(phone, require_mfa=True)))
        self.assertEqual(q.get("error"), "mfa_required")
        self.assertEqual(q.get("error_description"),
                         "A second factor is required: email,email-otp")
        # The same channel again is no second factor.
        q = self.follow(b, self.validate("sms", phone, self.send_sms(phone, require_mfa=True)))
        self.assertEqual(q.get("error"), "mfa_required")
        # The link over email in the same browser completes it.
        addr = user["email"]["value"]
        r = self.post("/v1/auth/links/email", {"email": addr, "redirect_uri": REDIRECT,
                                               "require_mfa": True})
        self.assertJSON(r, 200)
        text = mail_parts(stack.wait_mail(addr))["text/plain"]
        link = re.search(r"%s\S+" % re.escape(stack.base_url + LINK_PATH + "?t="), text).group(0)
        path, fields, cookie = stack.landing_form(link)
        b.cookies.update(dict(c.split("=", 1) for c in cookie.split("; ") if c))
        r = b.request("POST", path, form=fields)
        self.assertEqual(r.status, 303, "%r" % (r,))
        _, q = query_of(r.headers["Location"])
        _, idt = self.exchange(q["code"])
        for amr in ("sms", "eml", "mfa"):
            self.assertIn(amr, idt["amr"])
        self.assertEqual(idt.get("acr"), "mfa")

    def test_require_mfa_second_factor_in_another_browser(self):
        """The cookie ties the factors: the second one in another browser starts over."""
        phone = unique_phone()
        user = stack.make_user(email=unique_email("mfa3"), phone=phone)
        addr = user["email"]["value"]
        a, b = Browser(stack), Browser(stack)
        q = self.follow(a, self.validate("email", addr, self.send_email(addr, require_mfa=True)))
        self.assertEqual(q.get("error"), "mfa_required")
        q = self.follow(b, self.validate("sms", phone, self.send_sms(phone, require_mfa=True)))
        self.assertEqual(q.get("error"), "mfa_required", q)
        self.assertEqual(q.get("error_description"),
                         "A second factor is required: email,email-otp")
        self.assertNotEqual(a.session_cookie(), b.session_cookie())

    # ---- logout ----------------------------------------------------------------------------

    def test_logout(self):
        addr = stack.make_user()["email"]["value"]
        tokens = [self.exchange(self.email_login(Browser(stack), addr))[0] for _ in range(2)]
        r = stack.http("POST", "/cis/v1/auth/logout", headers={
            "Authorization": "Bearer " + tokens[0]["access_token"]})
        self.assertEqual(self.assertJSON(r, 200),
                         {"sessions_count": 2, "result": {"sessions_count": 2}})
        for t in tokens:
            r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                    grant_type="refresh_token", refresh_token=t["refresh_token"])
            self.assertOAuthError(r, 400, "invalid_grant")
        r = stack.http("POST", "/cis/v1/auth/logout", headers={
            "Authorization": "Bearer " + tokens[0]["access_token"]})
        self.assertEqual(self.assertJSON(r, 200)["sessions_count"], 0)

    def test_logout_refuses_other_tokens(self):
        addr = stack.make_user()["email"]["value"]
        body, _ = self.exchange(self.email_login(Browser(stack), addr))
        at = body["access_token"]
        h, p, s = at.split(".")
        forged = "%s.%s.%s" % (h, p, s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB"))
        for token in (None, "garbage", forged, body["id_token"], self.client["token"]):
            with self.subTest(token=token and token[:12]):
                hdrs = {"Authorization": "Bearer " + token} if token else {}
                r = stack.http("POST", "/cis/v1/auth/logout", headers=hdrs)
                self.assertEqual(r.status, 401, "%r" % (r,))
        # Nothing ended: the refresh token still works.
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                grant_type="refresh_token", refresh_token=body["refresh_token"])
        self.assertJSON(r, 200)


class Clocked(E2ETestCase):
    """Ticket lifetime and the account throttle (their own stack: the moved clock would upset
    the others)."""

    @classmethod
    def setUpClass(cls):
        cls.clock = ClockStack(name="redirect-clock", otp={"lockout_minutes": 2}).start()
        cls.client = cls.clock.new_client(redirect_uris=[REDIRECT], permissions=["direct"])

    def test_throttled_account_keeps_its_link(self):
        """A link opened while the account waits out its throttle (lockout.h) goes back to
        the app with temporarily_unavailable and stays usable: the user comes back with it
        once the delay is over."""
        st = self.clock
        if st.faketime is None:
            self.skipTest("libfaketime not installed (Debian package faketime)")
        addr = st.make_user()["email"]["value"]
        r = st.http("POST", "/cis/v1/auth/links/email", token=self.client["token"],
                    json={"email": addr, "redirect_uri": REDIRECT})
        self.assertJSON(r, 200)
        text = mail_parts(st.wait_mail(addr))["text/plain"]
        link = re.search(r"%s\S+" % re.escape(st.base_url + LINK_PATH + "?t="), text).group(0)
        # Ten wrong passcodes (the built-in account_failures) throttle the account.
        for _ in range(4):
            code = st.direct_code(self.client["token"], addr)
            for _ in range(st.max_failures):
                st.otp_authenticate(self.client["token"], addr, other_code(code))
        r = st.open_link(link)
        self.assertEqual(r.status, 303, "%r" % (r,))
        q = query_of(r.headers["Location"])[1]
        self.assertEqual(q.get("error"), "temporarily_unavailable", q)
        self.assertNotIn("code", q)
        st.advance(130)
        self.client["token"] = st.client_token(self.client["client_id"],
                                               self.client["client_secret"])
        r = st.open_link(link)
        self.assertEqual(r.status, 303, "%r" % (r,))
        self.assertIn("code", query_of(r.headers["Location"])[1])

    @classmethod
    def tearDownClass(cls):
        cls.clock.stop()

    def test_expired_ticket(self):
        st = self.clock
        if st.faketime is None:
            self.skipTest("libfaketime not installed (Debian package faketime)")
        addr = st.make_user()["email"]["value"]
        urls = []
        for _ in range(2):
            r = st.http("POST", "/cis/v1/auth/otp/email", token=self.client["token"],
                        json={"email": addr, "redirect_uri": REDIRECT})
            self.assertJSON(r, 200)
            code = st.mail_code(st.wait_mail(addr))
            r = st.http("POST", "/cis/v1/auth/otp/email/validation",
                        token=self.client["token"], json={"email": addr, "passcode": code})
            urls.append(self.assertJSON(r, 200)["result"])
        b = Browser(st)
        st.advance(250)
        self.client["token"] = st.client_token(self.client["client_id"],
                                               self.client["client_secret"])
        self.assertIn("code", query_of(b.get(urls[0]).headers["Location"])[1])
        st.advance(60)
        r = b.get(urls[1])
        self.assertEqual(r.status, 303)
        q = query_of(r.headers["Location"])[1]
        self.assertEqual(q.get("error"), "access_denied")
        self.assertNotIn("code", q)
