"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): GET|POST /cis/oidc/session/end.

The browser's login session is the raw session id in the "otlogin" cookie (Path=/cis); a
backend login (email passcode, direct channel) gives one with its ID token, so these tests
play the browser with that cookie. A session counts as alive while the sessions API lists it
and its refresh token still rotates.

What is checked: a valid id_token_hint (even expired) for the browser's user ends the session,
its refresh tokens and the cookie, then 303s to a registered post_logout_redirect_uri with
state, or shows a "signed out" page; an unregistered or mismatched URI is a 400 page and never
a redirect; a forged, foreign or access-token hint ends nothing; without a hint, or with a hint
for another user, the browser is asked first, and the confirmation's POST needs a token bound
to that browser's cookie (a cross-site GET or POST ends nothing). The pages carry the security
headers. RealBrowser does it in headless Chromium, whose form-action enforcement covers the
redirect after the confirmation's POST.

The stack's workers run on a clock the test moves (clock.py; without libfaketime the expired
hint test really waits id_ttl)."""

import base64
import json
import re
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase

ID_TTL = 60
END = "/cis/oidc/session/end"
PLRU = "https://rp.example/signed-out"
PLRU2 = "https://rp.example/bye?from=otlogin"

st = None


def setUpModule():
    global st
    st = ClockStack(name="logout", tokens={"id_ttl": ID_TTL}).start()


def tearDownModule():
    st.stop()


def claims_of(token):
    return json.loads(harness.b64url_decode(token.split(".")[1]))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LogoutCase(E2ETestCase):
    """What both test classes use: clients, backend logins, the session checks."""

    @classmethod
    def setUpClass(cls):
        cls.stack = st

    def client(self, plrus=()):
        """A client that may use the direct channel, with these post_logout_redirect_uris."""
        args = ["client", "add", "--name", "logout-rp", "--permission", "direct"]
        for u in plrus:
            args += ["--post-logout-redirect-uri", u]
        c = st.ctl(*args, parse=True)
        c["token"] = st.client_token(c["client_id"], c["client_secret"])
        return c

    def login(self, client, user=None):
        """A backend login: (user, token response). Its session_id is the browser cookie."""
        client["token"] = st.client_token(client["client_id"], client["client_secret"])
        user = user or st.make_user()
        addr = user["email"]["value"]
        code = st.direct_code(client["token"], addr)
        body = self.assertTokenResponse(st.otp_authenticate(client["token"], addr, code))
        return user, body

    def alive(self, client, user):
        """The public handles of the user's live sessions with this client."""
        client["token"] = st.client_token(client["client_id"], client["client_secret"])
        r = st.http("GET", "/cis/v1/auth/users/%s/sessions" % user["user_id"],
                    token=client["token"])
        return [s["session_id"] for s in self.assertJSON(r, 200)]

    def refreshes(self, client, rt):
        client["token"] = st.client_token(client["client_id"], client["client_secret"])
        r = st.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                    token=client["token"])
        return r.status == 200

    def end(self, method="GET", cookie=None, headers=None, **params):
        hdrs = dict(headers or {})
        if cookie is not None:
            hdrs["Cookie"] = "otlogin=" + cookie
        if method == "GET":
            q = urllib.parse.urlencode(params)
            return st.http("GET", END + ("?" + q if q else ""), headers=hdrs)
        return st.http("POST", END, form=params, headers=hdrs)

    def assertPage(self, r, status):
        """An HTML page with the security headers; its text."""
        self.assertEqual(r.status, status, "%r" % (r,))
        self.assertTrue(r.content_type.startswith("text/html"), r.content_type)
        csp = r.headers.get("Content-Security-Policy", "")
        self.assertIn("default-src 'none'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("script-src", csp)
        self.assertEqual(r.headers.get("X-Frame-Options"), "DENY")
        self.assertEqual(r.headers.get("Referrer-Policy"), "no-referrer")
        self.assertIn("no-store", r.headers.get("Cache-Control", ""))
        self.assertIsNone(r.headers.get("Location"))
        return r.body.decode()

    def assertCleared(self, r):
        cookies = r.headers.get_all("Set-Cookie") or []
        self.assertTrue(any(c.startswith("otlogin=;") and "Max-Age=0" in c and "Path=/cis" in c
                            for c in cookies), cookies)

    def assertNotCleared(self, r):
        self.assertFalse(any(c.startswith("otlogin=") for c in r.headers.get_all("Set-Cookie")
                             or []))

    def form_of(self, html):
        """(action, hidden fields) of the confirmation page's form."""
        m = re.search(r'<form method="post" action="([^"]*)">(.*?)</form>', html, re.S)
        self.assertIsNotNone(m, html)
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                                 m.group(2)))
        return m.group(1), {k: v.replace("&amp;", "&") for k, v in fields.items()}


class Logout(LogoutCase):

    # ---- with an id_token_hint ---------------------------------------------------------

    def test_hint_ends_session_page(self):
        c = self.client()
        user, body = self.login(c)
        sid = claims_of(body["id_token"])["sid"]
        self.assertEqual(self.alive(c, user), [sid])
        r = self.end(cookie=body["session_id"], id_token_hint=body["id_token"])
        self.assertIn("signed out", self.assertPage(r, 200))
        self.assertCleared(r)
        self.assertEqual(self.alive(c, user), [])
        self.assertFalse(self.refreshes(c, body["refresh_token"]),
                         "the session's refresh token outlived the logout")

    def test_hint_redirects_with_state(self):
        c = self.client([PLRU, PLRU2])
        user, body = self.login(c)
        state = "a b&c=d/é"
        r = self.end(cookie=body["session_id"], id_token_hint=body["id_token"],
                     post_logout_redirect_uri=PLRU, state=state)
        self.assertEqual(r.status, 303, r)
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith(PLRU + "?state="), loc)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query),
                         {"state": [state]})
        self.assertCleared(r)
        self.assertEqual(self.alive(c, user), [])
        # A URI with a query keeps it; no state, none added.
        user, body = self.login(c)
        r = self.end(cookie=body["session_id"], id_token_hint=body["id_token"],
                     post_logout_redirect_uri=PLRU2)
        self.assertEqual((r.status, r.headers["Location"]), (303, PLRU2))

    def test_post_with_hint(self):
        """RP-initiated logout may POST its parameters as a form."""
        c = self.client([PLRU])
        user, body = self.login(c)
        r = self.end("POST", cookie=body["session_id"], id_token_hint=body["id_token"],
                     post_logout_redirect_uri=PLRU, state="s1")
        self.assertEqual((r.status, r.headers.get("Location")), (303, PLRU + "?state=s1"))
        self.assertEqual(self.alive(c, user), [])

    def test_hint_without_cookie_ends_its_sid(self):
        """The relying party holds the ID token: the session it names ends even when the
        browser no longer carries the cookie (mod_auth_openidc's logout does exactly this)."""
        c = self.client([PLRU])
        user, body = self.login(c)
        r = self.end(id_token_hint=body["id_token"], post_logout_redirect_uri=PLRU)
        self.assertEqual(r.status, 303, r)
        self.assertEqual(self.alive(c, user), [])
        self.assertFalse(self.refreshes(c, body["refresh_token"]))

    def test_expired_hint_accepted(self):
        c = self.client([PLRU])
        user, body = self.login(c)
        exp = claims_of(body["id_token"])["exp"]
        st.let_pass(ID_TTL + 30)
        r = self.end(cookie=body["session_id"], id_token_hint=body["id_token"],
                     post_logout_redirect_uri=PLRU)
        self.assertEqual(r.status, 303, "hint expired at %s: %r" % (exp, r))
        self.assertEqual(self.alive(c, user), [])

    def test_unregistered_redirect_is_a_page(self):
        """Never a redirect to a URI the client did not register: not an open redirector."""
        c = self.client([PLRU])
        other = self.client(["https://evil.example/"])
        user, body = self.login(c)
        for params in (
                {"post_logout_redirect_uri": "https://evil.example/"},
                {"post_logout_redirect_uri": PLRU + "/x"},
                {"post_logout_redirect_uri": PLRU.upper()},
                # the hint names c: client_id may not switch to a client that lists the URI
                {"post_logout_redirect_uri": "https://evil.example/",
                 "client_id": other["client_id"]},
                {"post_logout_redirect_uri": PLRU, "client_id": other["client_id"]}):
            with self.subTest(params=params):
                r = self.end(cookie=body["session_id"], id_token_hint=body["id_token"],
                             **params)
                self.assertPage(r, 400)
                self.assertNotCleared(r)
        # Without a hint: a client_id alone must list the URI as well.
        r = self.end(cookie=body["session_id"], client_id=c["client_id"],
                     post_logout_redirect_uri="https://evil.example/")
        self.assertPage(r, 400)
        r = self.end(cookie=body["session_id"], client_id="no-such-client",
                     post_logout_redirect_uri=PLRU)
        self.assertPage(r, 400)
        r = self.end(cookie=body["session_id"], post_logout_redirect_uri=PLRU)
        self.assertPage(r, 400)
        self.assertEqual(self.alive(c, user), [claims_of(body["id_token"])["sid"]])

    def test_bad_hints_end_nothing(self):
        """A hint must be an ID token we signed: forged ones, unsigned ones and access tokens
        are refused with a 400 page and end nothing."""
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        c = self.client([PLRU])
        user, body = self.login(c)
        idt = body["id_token"]
        header = jwt.get_unverified_header(idt)
        claims = claims_of(idt)
        mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, mine, algorithm="RS256",
                            headers={"kid": header["kid"], "typ": "JWT"})
        unsigned = "%s.%s." % (b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
                               idt.split(".")[1])
        h, p, s = idt.split(".")
        other_sub = dict(claims, sub="somebody-else")
        tampered = "%s.%s.%s" % (h, b64url(json.dumps(other_sub).encode()), s)
        for name, hint in (("forged", forged), ("alg none", unsigned), ("tampered", tampered),
                           ("access token", body["access_token"]), ("garbage", "x.y.z"),
                           # a form body: web servers cap a GET's request line below this
                           ("huge", "a" * 9000)):
            with self.subTest(hint=name):
                r = self.end("POST" if name == "huge" else "GET", cookie=body["session_id"],
                             id_token_hint=hint, post_logout_redirect_uri=PLRU)
                self.assertPage(r, 400)
                self.assertNotCleared(r)
        self.assertEqual(self.alive(c, user), [claims["sid"]])
        self.assertTrue(self.refreshes(c, body["refresh_token"]))

    def test_hint_of_another_user_asks(self):
        """A site holding its own user's ID token cannot sign out the browser's user (say, by
        an <img> pointing here): that browser's session stays and it is asked instead."""
        c = self.client([PLRU])
        victim, vbody = self.login(c)
        attacker, abody = self.login(c)
        r = self.end(cookie=vbody["session_id"], id_token_hint=abody["id_token"],
                     post_logout_redirect_uri=PLRU)
        html = self.assertPage(r, 200)
        self.assertNotCleared(r)
        self.assertIn("<form", html)
        self.assertEqual(self.alive(c, victim), [claims_of(vbody["id_token"])["sid"]])
        # The session the hint itself names is the attacker's own to end.
        self.assertEqual(self.alive(c, attacker), [])

    # ---- without a hint: the confirmation --------------------------------------------------

    def test_no_hint_asks_then_post_ends(self):
        c = self.client([PLRU])
        user, body = self.login(c)
        sid = claims_of(body["id_token"])["sid"]
        r = self.end(cookie=body["session_id"], client_id=c["client_id"],
                     post_logout_redirect_uri=PLRU, state="xyz")
        html = self.assertPage(r, 200)
        self.assertNotCleared(r)
        self.assertIn("form-action 'self' https://rp.example;",
                      r.headers["Content-Security-Policy"])
        self.assertEqual(self.alive(c, user), [sid], "a GET without a hint signed out")
        action, fields = self.form_of(html)
        self.assertEqual(action, st.base_url + "/oidc/session/end")
        self.assertEqual(fields["client_id"], c["client_id"])
        self.assertEqual(fields["post_logout_redirect_uri"], PLRU)
        self.assertEqual(fields["state"], "xyz")
        self.assertRegex(fields["csrf"], r"^[0-9a-f]{64}$")
        # The form, as the browser submits it.
        r = self.end("POST", cookie=body["session_id"], **fields)
        self.assertEqual((r.status, r.headers.get("Location")), (303, PLRU + "?state=xyz"))
        self.assertCleared(r)
        self.assertEqual(self.alive(c, user), [])
        self.assertFalse(self.refreshes(c, body["refresh_token"]))

    def test_confirmation_without_redirect(self):
        c = self.client()
        user, body = self.login(c)
        r = self.end(cookie=body["session_id"])
        _, fields = self.form_of(self.assertPage(r, 200))
        self.assertEqual(set(fields), {"csrf"})
        r = self.end("POST", cookie=body["session_id"], **fields)
        self.assertIn("signed out", self.assertPage(r, 200))
        self.assertCleared(r)
        self.assertEqual(self.alive(c, user), [])

    def test_cross_site_confirmation_refused(self):
        """The confirmation token is bound to the browser's cookie: a POST without it, with
        another browser's token, or without the cookie (a cross-site POST: SameSite=Lax keeps
        it home) ends nothing."""
        c = self.client()
        user, body = self.login(c)
        other, obody = self.login(c)
        _, mine = self.form_of(self.assertPage(self.end(cookie=body["session_id"]), 200))
        _, theirs = self.form_of(self.assertPage(self.end(cookie=obody["session_id"]), 200))
        self.assertNotEqual(mine["csrf"], theirs["csrf"])
        for name, cookie, fields in (
                ("other browser's token", body["session_id"], theirs),
                ("wrong token", body["session_id"], {"csrf": "0" * 64}),
                ("empty token", body["session_id"], {"csrf": ""}),
                ("no cookie", None, mine)):
            with self.subTest(case=name):
                r = self.end("POST", cookie=cookie, headers={"Origin": "https://evil.example"},
                             **fields)
                self.assertPage(r, 403)
                self.assertNotCleared(r)
        # A POST without the token at all is the no-hint request: it asks.
        r = self.end("POST", cookie=body["session_id"])
        self.assertIn("<form", self.assertPage(r, 200))
        self.assertEqual(self.alive(c, user), [claims_of(body["id_token"])["sid"]])
        self.assertEqual(self.alive(c, other), [claims_of(obody["id_token"])["sid"]])

    def test_no_session_no_question(self):
        """A browser without a session has nothing to lose: it is told it is signed out."""
        r = self.end()
        self.assertIn("signed out", self.assertPage(r, 200))
        self.assertCleared(r)
        c = self.client([PLRU])
        r = self.end(client_id=c["client_id"], post_logout_redirect_uri=PLRU, state="q")
        self.assertEqual((r.status, r.headers.get("Location")), (303, PLRU + "?state=q"))

    def test_head_ends_nothing(self):
        c = self.client()
        user, body = self.login(c)
        q = urllib.parse.urlencode({"id_token_hint": body["id_token"]})
        r = st.http("HEAD", END + "?" + q, headers={"Cookie": "otlogin=" + body["session_id"]})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertNotCleared(r)
        self.assertEqual(self.alive(c, user), [claims_of(body["id_token"])["sid"]])

    def test_hint_ends_both_sessions_of_its_user(self):
        """The browser's session and the one the hint names by sid, both the user's, end."""
        c = self.client()
        user, first = self.login(c)
        _, second = self.login(c, user)
        self.assertEqual(len(self.alive(c, user)), 2)
        r = self.end(cookie=first["session_id"], id_token_hint=second["id_token"])
        self.assertIn("signed out", self.assertPage(r, 200))
        self.assertCleared(r)
        self.assertEqual(self.alive(c, user), [])

    def test_head_and_methods(self):
        r = st.http("PUT", END)
        self.assertEqual(r.status, 405)
        self.assertIn("POST", r.headers.get("Allow", ""))
        r = st.http("POST", END, body="{}", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 415)


class RealBrowser(LogoutCase):
    """Headless Chromium (python3-selenium) signs out as a user would. The post-logout
    redirect URI is another origin (localhost, where otlogin is on 127.0.0.1), so the browser
    enforces the confirmation page's form-action on the redirect that follows its POST; the
    browser log must show no Content-Security-Policy violation."""

    @classmethod
    def setUpClass(cls):
        from selenium import webdriver

        super().setUpClass()
        cls.back = "http://localhost:%d/cis/health" % st.port
        cls.client = st.ctl("client", "add", "--name", "logout-chromium", "--permission",
                            "direct", "--post-logout-redirect-uri", cls.back,
                            "--allow-http-redirect", parse=True)
        opts = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        cls.d = webdriver.Chrome(options=opts)

    @classmethod
    def tearDownClass(cls):
        cls.d.quit()

    def setUp(self):
        self.d.delete_all_cookies()

    def signed_in(self):
        """A backend login whose session the browser holds as otlogin's cookie."""
        user, body = self.login(self.client)
        self.d.get(st.base_url + "/health")
        self.d.add_cookie({"name": "otlogin", "value": body["session_id"], "path": "/cis",
                           "httpOnly": True, "sameSite": "Lax"})
        body["user"] = user
        return body

    def session_alive(self, body):
        """Asked through the sessions API: it changes nothing (a refresh would rotate)."""
        return self.alive(self.client, body["user"]) == [claims_of(body["id_token"])["sid"]]

    def wait_back(self, state):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.d, 20).until(lambda drv: drv.current_url.startswith(self.back))
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.d.current_url).query))
        self.assertEqual(q, {"state": state})

    def assertNoCspViolation(self):
        for entry in self.d.get_log("browser"):
            self.assertNotIn("Content Security Policy", entry["message"])

    def otlogin_cookie(self):
        self.d.get(st.base_url + "/health")
        return [c for c in self.d.get_cookies() if c["name"] == "otlogin"]

    def test_confirm_by_button(self):
        from selenium.webdriver.common.by import By

        body = self.signed_in()
        self.d.get(END.replace("/cis", st.base_url, 1) + "?" + urllib.parse.urlencode(
            {"client_id": self.client["client_id"], "post_logout_redirect_uri": self.back,
             "state": "chromium-1"}))
        self.assertEqual(self.d.title, "Sign out?")
        self.assertTrue(self.session_alive(body), "showing the question signed out")
        self.d.find_element(By.TAG_NAME, "button").click()
        self.wait_back("chromium-1")
        self.assertNoCspViolation()
        self.assertFalse(self.session_alive(body))
        self.assertEqual(self.otlogin_cookie(), [])

    def test_hint_from_another_site(self):
        """What a relying party does: a top-level navigation from its own origin."""
        body = self.signed_in()
        self.d.get(self.back)  # on the relying party's origin first
        self.d.get(END.replace("/cis", st.base_url, 1) + "?" + urllib.parse.urlencode(
            {"id_token_hint": body["id_token"], "post_logout_redirect_uri": self.back,
             "state": "chromium-2"}))
        self.wait_back("chromium-2")
        self.assertFalse(self.session_alive(body))
        self.assertEqual(self.otlogin_cookie(), [])
