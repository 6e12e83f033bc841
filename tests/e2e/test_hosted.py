"""The hosted login page (API-OIDC.md B, "The hosted login page"), driven like a browser with
JavaScript off: the address form, one mail with both a code and a link, the code form (wrong
codes, a dead code, an expired flow), CSRF, the magic link in the same browser and on another
device (two cookie jars), the existence policy, the page headers and markup, translations,
and the exchange of the resulting code at /oidc/token."""

import base64
import html
import json
import hashlib
import os
import re
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase
from hosted_browser import (LOGIN_PAGE, REDIRECT, Browser, auth_params, exchange,
                            mail_code_and_link, pkce_pair, query_of)

stack = None


def setUpModule():
    global stack
    stack = ClockStack(name="hosted").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def make_client(**kw):
    args = ["client", "add", "--name", kw.get("name", "Hosted App"), "--redirect-uri", REDIRECT]
    for opt in ("signup", "existence"):
        if opt in kw:
            args += ["--" + opt, kw[opt]]
    return stack.ctl(*args, parse=True)


class Base(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = make_client(signup="closed", existence="reveal")

    def new_user(self, tag="hosted"):
        email = harness.unique_email(tag)
        return email, stack.make_user(email=email)

    def assertCodeRedirect(self, r, params):
        self.assertEqual(r.status_code, 303, r.text[:600])
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith(REDIRECT + "?"), loc)
        q = query_of(loc)
        self.assertEqual(q.get("state"), params.get("state"))
        self.assertEqual(q.get("iss"), stack.issuer)
        return q["code"]

    def assertTokens(self, code, user, params):
        r = exchange(stack, self.client, code)
        self.assertEqual(r.status, 200, r.body)
        _, claims = harness.jwt_parts(r.json["id_token"])
        self.assertEqual(claims["sub"], user["user_id"])
        self.assertEqual(claims.get("nonce"), params.get("nonce"))
        return claims

    def assertNoMail(self, email):
        self.assertEqual(stack.mailbox.pending(email), [])


class CodeFlow(Base):
    def test_code_login_end_to_end(self):
        email, user = self.new_user()
        p = auth_params(self.client)
        b = Browser(stack)
        page = b.start(p)
        code_page = b.send_email(page, email)
        self.assertEqual(code_page.status_code, 200)
        msg = stack.wait_mail(email)
        self.assertNoMail(email)  # one mail, with both
        code, link = mail_code_and_link(stack, msg)
        self.assertTrue(link.startswith(stack.base_url + "/oidc/login/link?t="))
        r = b.submit(code_page, "code-form", code=code)
        claims = self.assertTokens(self.assertCodeRedirect(r, p), user, p)
        self.assertIn("eotp", claims["amr"])
        self.assertIsNotNone(b.cookie("otlogin"))
        # The flow is spent: the code page is gone, and the code does not work twice.
        self.assertEqual(b.get("/cis/oidc/login").status_code, 400)

    def test_markup_and_headers(self):
        email, _ = self.new_user()
        b = Browser(stack)
        page = b.start(auth_params(self.client))
        code_page = b.send_email(page, email)
        stack.wait_mail(email)
        for r, form, field in ((page, "email-form", "email"), (code_page, "code-form", "code")):
            with self.subTest(form=form):
                self.assertEqual(r.status_code, 200)
                csp = r.headers["Content-Security-Policy"]
                self.assertIn("default-src 'none'", csp)
                self.assertIn("form-action 'self' https://app.example", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertRegex(csp, r"style-src 'sha256-[A-Za-z0-9+/=]{44}'")
                self.assertNotIn("unsafe-inline", csp)
                # Only the code page's status check runs script, allowed by its hash.
                scripts = re.findall(r"<script>(.*?)</script>", r.text, re.S)
                self.assertEqual(len(scripts), 1 if form == "code-form" else 0)
                for s in scripts:
                    digest = base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()
                    self.assertIn("script-src 'sha256-%s'" % digest, csp)
                    self.assertIn("connect-src 'self'", csp)
                self.assertEqual(r.headers["X-Frame-Options"], "DENY")
                self.assertEqual(r.headers["Referrer-Policy"], "no-referrer")
                self.assertEqual(r.headers["Cache-Control"], "no-store")
                self.assertIn('<html lang="en">', r.text)
                self.assertIn('<label for="%s">' % field, r.text)
                self.assertIsNotNone(b.form(r, form)[1].get("csrf"))
        self.assertIn('autocomplete="email"', page.text)
        self.assertIn('type="email"', page.text)
        self.assertIn('inputmode="numeric"', code_page.text)
        self.assertIn('autocomplete="one-time-code"', code_page.text)
        # The code page never reloads under a code being typed: its script asks the flow's
        # status; without script, a link leads to the waiting page, which reloads itself.
        self.assertNotIn('http-equiv="refresh"', code_page.text)
        self.assertIn('<noscript><p><a id="wait-link"', code_page.text)
        self.assertIn("Hosted App", page.text)
        # The style's hash in the policy is the hash of the page's own style element.
        style = re.search(r"<style>(.*?)</style>", page.text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        self.assertIn("'sha256-%s'" % digest, page.headers["Content-Security-Policy"])

    def test_wrong_code_then_right(self):
        email, user = self.new_user()
        p = auth_params(self.client)
        b = Browser(stack)
        code_page = b.send_email(b.start(p), email)
        code, _ = mail_code_and_link(stack, stack.wait_mail(email))
        r = b.submit(code_page, "code-form", code=harness.other_code(code))
        self.assertEqual(r.status_code, 400)
        self.assertIn('id="error" role="alert"', r.text)
        self.assertIsNotNone(b.form(r, "code-form"))
        r = b.submit(r, "code-form", code=code)
        self.assertTokens(self.assertCodeRedirect(r, p), user, p)

    def test_three_wrong_codes_kill_the_code(self):
        email, user = self.new_user()
        p = auth_params(self.client)
        b = Browser(stack)
        r = b.send_email(b.start(p), email)
        code, _ = mail_code_and_link(stack, stack.wait_mail(email))
        for _ in range(stack.max_failures):
            r = b.submit(r, "code-form", code=harness.other_code(code))
            self.assertEqual(r.status_code, 400)
        # Dead: no code form any more, even the right code is refused.
        self.assertIsNone(b.form(r, "code-form"))
        self.assertIn("Too many wrong codes", r.text)
        csrf = b.form(r, "restart-form")[1]["csrf"]
        r2 = b.post("/cis/oidc/login", {"csrf": csrf, "step": "code", "code": code})
        self.assertNotEqual(r2.status_code, 303)
        # Asking again sends a new code, which works.
        r = b.submit(r, "restart-form")
        self.assertEqual(r.status_code, 303)
        page = b.get(r.headers["Location"])
        self.assertIn('value="%s"' % email, page.text)  # the address is kept
        r = b.send_email(page, email)
        code2, _ = mail_code_and_link(stack, stack.wait_mail(email))
        r = b.submit(r, "code-form", code=code2)
        self.assertTokens(self.assertCodeRedirect(r, p), user, p)

    def test_a_code_works_only_in_its_own_flow(self):
        email, _ = self.new_user()
        a, b = Browser(stack), Browser(stack)
        a_page = a.send_email(a.start(auth_params(self.client)), email)
        code_a, _ = mail_code_and_link(stack, stack.wait_mail(email))
        b_page = b.send_email(b.start(auth_params(self.client)), email)
        code_b, _ = mail_code_and_link(stack, stack.wait_mail(email))
        if code_a != code_b:
            r = b.submit(b_page, "code-form", code=code_a)
            self.assertEqual(r.status_code, 400)
        # A second flow did not replace the first one's code.
        r = a.submit(a_page, "code-form", code=code_a)
        self.assertEqual(r.status_code, 303)

    def test_unknown_address_revealed(self):
        b = Browser(stack)
        page = b.start(auth_params(self.client))
        r = b.submit(page, "email-form", email=harness.unique_email("nobody"))
        self.assertEqual(r.status_code, 400)
        self.assertIn("There is no account", r.text)

    def test_invalid_address(self):
        b = Browser(stack)
        r = b.submit(b.start(auth_params(self.client)), "email-form", email="not an address")
        self.assertEqual(r.status_code, 400)
        self.assertIn('id="error"', r.text)
        self.assertIn('value="not an address"', r.text)

    def test_session_is_joined_on_a_second_login(self):
        email, user = self.new_user()
        b = Browser(stack)
        p1 = auth_params(self.client)
        c1 = self.assertTokens(self.assertCodeRedirect(b.login(p1, email), p1), user, p1)
        p2 = auth_params(self.client, prompt="login")
        c2 = self.assertTokens(self.assertCodeRedirect(b.login(p2, email), p2), user, p2)
        self.assertEqual(c1["sid"], c2["sid"])

    def test_another_users_session_is_not_joined(self):
        email1, user1 = self.new_user()
        email2, user2 = self.new_user()
        b = Browser(stack)
        p1 = auth_params(self.client)
        c1 = self.assertTokens(self.assertCodeRedirect(b.login(p1, email1), p1), user1, p1)
        p2 = auth_params(self.client, prompt="login")
        c2 = self.assertTokens(self.assertCodeRedirect(b.login(p2, email2), p2), user2, p2)
        self.assertNotEqual(c1["sid"], c2["sid"])


class Tabs(Base):
    """Two tabs of one browser signing in at once (two apps that both sent the user here):
    each page keeps its own flow, and each ends at its own request's redirect."""

    def test_two_flows_in_one_browser(self):
        email, user = self.new_user("tabs")
        b = Browser(stack)
        p1, p2 = auth_params(self.client), auth_params(self.client)
        tab1 = b.start(p1)
        tab2 = b.start(p2)
        self.assertNotEqual(tab1.url, tab2.url)
        # The first tab's form still belongs to the first flow.
        tab1 = b.send_email(tab1, email)
        code1, _ = mail_code_and_link(stack, stack.wait_mail(email))
        r = b.submit(tab1, "code-form", code=code1)
        self.assertTokens(self.assertCodeRedirect(r, p1), user, p1)
        # The second tab's flow survived the first one's end.
        self.assertIsNotNone(b.cookie("otlogin-flow"))
        tab2 = b.get(tab2.url)
        self.assertIsNotNone(b.form(tab2, "email-form"))
        tab2 = b.send_email(tab2, email)
        code2, _ = mail_code_and_link(stack, stack.wait_mail(email))
        r = b.submit(tab2, "code-form", code=code2)
        self.assertTokens(self.assertCodeRedirect(r, p2), user, p2)
        self.assertIsNone(b.cookie("otlogin-flow"))

    def test_link_finishes_its_own_tab(self):
        email, user = self.new_user("tabs")
        b = Browser(stack)
        p1, p2 = auth_params(self.client), auth_params(self.client)
        tab1 = b.send_email(b.start(p1), email)
        _, link = mail_code_and_link(stack, stack.wait_mail(email))
        b.start(p2)  # a newer flow in the same browser
        r = b.submit(b.get(link), "link-form")
        self.assertTokens(self.assertCodeRedirect(r, p1), user, p1)


class Csrf(Base):
    """Every form carries a token bound to the flow cookie."""

    def setUp(self):
        self.email, _ = self.new_user("csrf")
        self.b = Browser(stack)
        self.page = self.b.start(auth_params(self.client))
        self.csrf = self.b.form(self.page, "email-form")[1]["csrf"]

    def assertRefused(self, r):
        self.assertEqual(r.status_code, 403, r.text[:300])
        self.assertNotIn("Location", r.headers)
        self.assertNoMail(self.email)

    def test_missing_token(self):
        self.assertRefused(self.b.post("/cis/oidc/login", {"step": "email", "email": self.email}))

    def test_wrong_token(self):
        self.assertRefused(self.b.post("/cis/oidc/login", {"step": "email", "email": self.email,
                                                           "csrf": "0" * 64}))

    def test_another_flows_token(self):
        other = Browser(stack)
        other_csrf = other.form(other.start(auth_params(self.client)), "email-form")[1]["csrf"]
        self.assertRefused(self.b.post("/cis/oidc/login", {"step": "email",
                                                           "email": self.email,
                                                           "csrf": other_csrf}))

    def test_token_without_the_flow_cookie(self):
        r = Browser(stack).post("/cis/oidc/login", {"step": "email", "email": self.email,
                                                    "csrf": self.csrf})
        self.assertEqual(r.status_code, 400)
        self.assertNoMail(self.email)

    def test_the_right_token_works(self):
        r = self.b.post("/cis/oidc/login", {"step": "email", "email": self.email,
                                            "csrf": self.csrf})
        self.assertEqual(r.status_code, 303)
        stack.wait_mail(self.email)


class ExpiredFlow(Base):
    def test_expired_flow_restarts_from_the_request(self):
        email, user = self.new_user("expired")
        p = auth_params(self.client)
        b = Browser(stack)
        b.start(p)
        old_flow = b.cookie("otlogin-flow")
        stack.advance(16 * 60)
        page = b.get("/cis/oidc/login")
        self.assertEqual(page.status_code, 200)
        self.assertIn('id="notice"', page.text)
        self.assertNotEqual(b.cookie("otlogin-flow"), old_flow)
        # The restarted flow ends at the original request's redirect, with its state.
        r = b.send_email(page, email)
        code, _ = mail_code_and_link(stack, stack.wait_mail(email))
        r = b.submit(r, "code-form", code=code)
        self.assertTokens(self.assertCodeRedirect(r, p), user, p)

    def test_expired_code_page(self):
        email, _ = self.new_user("expired")
        b = Browser(stack)
        r = b.send_email(b.start(auth_params(self.client)), email)
        code, _ = mail_code_and_link(stack, stack.wait_mail(email))
        stack.advance(11 * 60)  # the code lives [otp] ttl_minutes = 10
        r = b.submit(r, "code-form", code=code)
        self.assertEqual(r.status_code, 400)
        self.assertIn("expired", r.text)


class MagicLink(Base):
    def flow(self, browser, email):
        p = auth_params(self.client)
        code_page = browser.send_email(browser.start(p), email)
        _, link = mail_code_and_link(stack, stack.wait_mail(email))
        return p, code_page, link

    def test_same_browser(self):
        email, user = self.new_user("link")
        b = Browser(stack)
        p, _, link = self.flow(b, email)
        # GET only shows the button (mail scanners), any number of times.
        for _ in range(2):
            landing = b.get(link)
            self.assertEqual(landing.status_code, 200)
            self.assertIsNotNone(b.form(landing, "link-form"))
        # Its POST ends in the redirect to the client, which form-action must allow.
        self.assertIn("form-action 'self' https://app.example;",
                      landing.headers["Content-Security-Policy"])
        r = b.submit(landing, "link-form")
        claims = self.assertTokens(self.assertCodeRedirect(r, p), user, p)
        self.assertIn("eml", claims["amr"])
        self.assertIsNotNone(b.cookie("otlogin"))
        used = b.get(link)
        self.assertIn(used.status_code, (404, 410))

    def test_other_device(self):
        email, user = self.new_user("link")
        waiting, phone = Browser(stack), Browser(stack)
        p, code_page, link = self.flow(waiting, email)
        # Nothing yet: the waiting page stays the code page.
        again = waiting.get("/cis/oidc/login")
        self.assertEqual(again.status_code, 200)
        self.assertIsNotNone(waiting.form(again, "code-form"))
        landing = phone.get(link)
        r = phone.submit(landing, "link-form")
        self.assertEqual(r.status_code, 200, r.text[:400])
        self.assertIn('data-step="elsewhere"', r.text)
        self.assertIn("signed in on your other device", r.text)
        self.assertIsNone(phone.cookie("otlogin"))
        self.assertNotIn("Location", r.headers)
        # A HEAD only looks; the waiting tab's next check continues by itself, and only it
        # gets the code.
        head = waiting.request("HEAD", "/cis/oidc/login")
        self.assertEqual(head.status_code, 200)
        self.assertIsNone(waiting.cookie("otlogin"))
        r = waiting.get("/cis/oidc/login")
        claims = self.assertTokens(self.assertCodeRedirect(r, p), user, p)
        self.assertIn("eml", claims["amr"])
        self.assertIsNotNone(waiting.cookie("otlogin"))
        self.assertEqual(phone.get(link).status_code, 404)

    def test_waiting_page_and_status(self):
        """The code page's script asks ?status=1 (which finishes nothing); without script the
        waiting page (?wait=1) reloads itself and has no field to type in, and continues once
        the link was opened on another device."""
        email, user = self.new_user("link")
        waiting, phone = Browser(stack), Browser(stack)
        p, code_page, link = self.flow(waiting, email)
        wait_url = re.search(r'<a id="wait-link" href="([^"]+)"', code_page.text).group(1)
        wait_url = html.unescape(wait_url)
        self.assertTrue(wait_url.startswith(stack.base_url + "/oidc/login?f="), wait_url)
        page = waiting.get(wait_url)
        self.assertEqual(page.status_code, 200)
        self.assertIn('<meta http-equiv="refresh" content="3">', page.text)
        self.assertIsNone(waiting.form(page, "code-form"))
        self.assertIn('id="code-link"', page.text)
        self.assertNotIn("<script", page.text)
        status_url = wait_url.replace("&wait=1", "&status=1")
        st = waiting.get(status_url)
        self.assertEqual((st.status_code, json.loads(st.text)), (200, {"confirmed": False}))
        self.assertEqual(st.headers["Cache-Control"], "no-store")
        # Another browser has no flow to ask about.
        self.assertEqual(phone.get(status_url).status_code, 400)
        phone.submit(phone.get(link), "link-form")
        for _ in range(2):  # asking does not finish the login
            st = waiting.get(status_url)
            self.assertEqual((st.status_code, json.loads(st.text)), (200, {"confirmed": True}))
        self.assertIsNone(waiting.cookie("otlogin"))
        r = waiting.get(wait_url)
        claims = self.assertTokens(self.assertCodeRedirect(r, p), user, p)
        self.assertIn("eml", claims["amr"])

    def test_other_device_with_its_own_flow_does_not_take_the_code(self):
        email, user = self.new_user("link")
        waiting, other = Browser(stack), Browser(stack)
        p, _, link = self.flow(waiting, email)
        other.start(auth_params(self.client))  # a flow of its own, not the link's
        r = other.submit(other.get(link), "link-form")
        self.assertEqual(r.status_code, 200)
        self.assertIn('data-step="elsewhere"', r.text)
        self.assertIsNone(other.cookie("otlogin"))
        self.assertCodeRedirect(waiting.get("/cis/oidc/login"), p)

    def test_cross_site_post_is_refused_and_the_link_survives(self):
        email, user = self.new_user("link")
        b = Browser(stack)
        p, _, link = self.flow(b, email)
        path = link[link.index("/cis/"):]
        r = b.post(path, {}, headers={"Sec-Fetch-Site": "cross-site"})
        self.assertEqual(r.status_code, 403)
        self.assertNotIn("Location", r.headers)
        r = b.submit(b.get(link), "link-form")
        self.assertCodeRedirect(r, p)

    def test_a_new_send_replaces_the_link(self):
        email, _ = self.new_user("link")
        b = Browser(stack)
        p, code_page, link = self.flow(b, email)
        r = b.submit(code_page, "restart-form")
        b.send_email(b.get(r.headers["Location"]), email)
        mail_code_and_link(stack, stack.wait_mail(email))
        self.assertEqual(b.get(link).status_code, 404)


class HiddenExistence(Base):
    """A client that hides existence shows the same pages for unknown addresses."""

    @classmethod
    def setUpClass(cls):
        cls.client = make_client(signup="closed", existence="hide")

    def shape(self, r):
        text = re.sub(r'value="[0-9a-f]{64}"', 'value="CSRF"', r.text)
        text = re.sub(r"\?f=[0-9a-f]{16}", "?f=FLOW", text)
        return r.status_code, re.sub(r"[a-z0-9]{2}\*\*\*@[a-z0-9]{2}\*\*\*", "ADDR", text)

    def test_unknown_and_known_look_alike(self):
        known, _ = self.new_user("hide")
        unknown = harness.unique_email("hide")
        shapes = []
        for email in (known, unknown):
            b = Browser(stack)
            page = b.start(auth_params(self.client))
            r = b.submit(page, "email-form", email=email)
            self.assertEqual(r.status_code, 303)
            code_page = b.get(r.headers["Location"])
            wrong = b.submit(code_page, "code-form", code="000000")
            shapes.append((self.shape(code_page), self.shape(wrong)))
        self.assertEqual(shapes[0], shapes[1])
        stack.wait_mail(known)
        self.assertNoMail(unknown)


class Translation(Base):
    def test_ui_locales_picks_german(self):
        b = Browser(stack)
        page = b.start(auth_params(self.client, ui_locales="fr-CA de-DE en"))
        self.assertIn('<html lang="de">', page.text)
        self.assertIn("Bei Hosted App anmelden", page.text)

    def test_unknown_locale_falls_back_to_english(self):
        b = Browser(stack)
        page = b.start(auth_params(self.client, ui_locales="xx"))
        self.assertIn('<html lang="en">', page.text)

    def test_client_name_is_escaped(self):
        client = make_client(name='<b>"Evil"</b> & Co')
        b = Browser(stack)
        page = b.start(auth_params(client))
        self.assertNotIn("<b>", page.text)
        self.assertIn("&lt;b&gt;&quot;Evil&quot;&lt;/b&gt; &amp; Co", page.text)


class Limits(E2ETestCase):
    """The API's limits hold on the page: the send cool-down per recipient (429 with
    Retry-After, nothing sent) and the account's throttle after wrong codes, which delays
    but never blocks the right code for good."""

    @classmethod
    def setUpClass(cls):
        cls.st = ClockStack(name="hosted-limits", limits={"send_cooldown": 30},
                            otp={"max_failures": 5, "account_failures": "2/1h",
                                 "backoff_seconds": 30}).start()
        cls.client = cls.st.ctl("client", "add", "--name", "Limits", "--redirect-uri", REDIRECT,
                                parse=True)

    @classmethod
    def tearDownClass(cls):
        cls.st.stop()

    def test_send_cooldown(self):
        email = harness.unique_email("cool")
        self.st.make_user(email=email)
        b = Browser(self.st)
        page = b.start(auth_params(self.client))
        code_page = b.send_email(page, email)
        self.st.wait_mail(email)
        r = b.submit(code_page, "restart-form")
        r = b.submit(b.get(r.headers["Location"]), "email-form", email=email)
        self.assertEqual(r.status_code, 429)
        self.assertGreater(int(r.headers["Retry-After"]), 0)
        self.assertIn('id="error"', r.text)
        self.assertEqual(self.st.mailbox.pending(email), [])
        self.st.advance(31)
        r = b.submit(r, "email-form", email=email)
        self.assertEqual(r.status_code, 303)
        self.st.wait_mail(email)

    def test_account_throttle_delays_the_right_code(self):
        email = harness.unique_email("throttle")
        user = self.st.make_user(email=email)
        b = Browser(self.st)
        p = auth_params(self.client)
        r = b.send_email(b.start(p), email)
        code, _ = mail_code_and_link(self.st, self.st.wait_mail(email))
        for _ in range(2):
            r = b.submit(r, "code-form", code=harness.other_code(code))
            self.assertEqual(r.status_code, 400)
        r = b.submit(r, "code-form", code=code)
        self.assertEqual(r.status_code, 429)
        self.assertGreater(int(r.headers["Retry-After"]), 0)
        self.assertNotIn("Location", r.headers)
        self.st.advance(31)
        r = b.submit(r, "code-form", code=code)
        self.assertEqual(r.status_code, 303, r.text[:400])
        self.assertTrue(r.headers["Location"].startswith(REDIRECT + "?code="))


class RealBrowser(E2ETestCase):
    """Headless Chromium (python3-selenium) through the pages as a user would: the code in one
    browser, the link on a second one while the first waits, and the link in the same
    browser. The client's redirect URI is another origin (localhost, where the pages are on
    127.0.0.1), so the browser enforces each page's form-action; the browser logs must show
    no Content-Security-Policy violation."""

    @classmethod
    def setUpClass(cls):
        from selenium import webdriver

        cls.cb = "http://localhost:%d/cis/health" % stack.port
        cls.client = stack.ctl("client", "add", "--name", "Chromium", "--redirect-uri", cls.cb,
                               "--allow-http-redirect", parse=True)
        opts = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        cls.drivers = []
        for _ in range(2):
            cls.drivers.append(webdriver.Chrome(options=opts))

    @classmethod
    def tearDownClass(cls):
        for d in cls.drivers:
            d.quit()

    def start(self, d, email, state):
        from selenium.webdriver.common.by import By

        # prompt=login: the session of the previous step would sign in at once.
        d.get(stack.base_url + "/oidc/auth?" + urllib.parse.urlencode(
            auth_params(self.client, redirect_uri=self.cb, state=state, prompt="login")))
        self.wait_for_step(d, "email")
        d.find_element(By.ID, "email").send_keys(email)
        d.find_element(By.ID, "email-submit").click()
        self.wait_for_step(d, "code")
        return mail_code_and_link(stack, stack.wait_mail(email))

    def wait_for_step(self, d, step):
        """Until the page shown is the step (a click's navigation may still be under way)."""
        from selenium.common.exceptions import (NoSuchElementException,
                                                StaleElementReferenceException,
                                                WebDriverException)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        # Chromium answers "Node with given id does not belong to the document" (a plain
        # WebDriverException) when the page is replaced under the lookup: not yet, too.
        WebDriverWait(d, 20, ignored_exceptions=(NoSuchElementException,
                                                 StaleElementReferenceException,
                                                 WebDriverException)).until(
            lambda drv: drv.find_element(By.ID, "page").get_attribute("data-step") == step)

    def wait_for_app(self, d, state):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(d, 20).until(lambda drv: drv.current_url.startswith(self.cb))
        q = query_of(d.current_url)
        self.assertEqual(q["state"], state)
        return q["code"]

    def assertNoCspViolation(self):
        for d in self.drivers:
            for entry in d.get_log("browser"):
                self.assertNotIn("Content Security Policy", entry["message"])

    def test_code_and_links(self):
        from selenium.webdriver.common.by import By

        email = harness.unique_email("chromium")
        stack.make_user(email=email)
        d, phone = self.drivers
        code, _ = self.start(d, email, "s-code")
        d.find_element(By.ID, "code").send_keys(code)
        d.find_element(By.ID, "code-submit").click()
        self.assertEqual(exchange(stack, self.client, self.wait_for_app(d, "s-code"),
                                  redirect_uri=self.cb).status, 200)
        # The link on another device; the waiting page continues by itself.
        _, link = self.start(d, email, "s-other")
        phone.get(link)
        phone.find_element(By.ID, "link-submit").click()
        self.wait_for_step(phone, "elsewhere")
        self.wait_for_app(d, "s-other")
        # The link in the same browser.
        _, link = self.start(d, email, "s-same")
        d.get(link)
        d.find_element(By.ID, "link-submit").click()
        self.wait_for_app(d, "s-same")
        self.assertNoCspViolation()


class Branding(Base):
    """The client's display name, logo and colour on the page (otloginctl client add)."""

    def test_display_name_logo_color(self):
        client = stack.ctl("client", "add", "--name", "internal-name", "--redirect-uri",
                           REDIRECT, "--display-name", "Acme <Portal>", "--color", "#12ab9C",
                           "--logo", "https://cdn.example/acme.png", parse=True)
        page = Browser(stack).start(auth_params(client))
        self.assertIn("Sign in to Acme &lt;Portal&gt;", page.text)
        self.assertNotIn("internal-name", page.text)
        self.assertIn('<img class="logo" alt="" src="https://cdn.example/acme.png">', page.text)
        self.assertIn("#12ab9C", re.search(r"<style>(.*?)</style>", page.text, re.S).group(1))
        csp = page.headers["Content-Security-Policy"]
        self.assertIn("img-src https://cdn.example;", csp)

    def test_no_logo_no_images(self):
        page = Browser(stack).start(auth_params(self.client))
        self.assertNotIn("<img", page.text)
        self.assertIn("img-src 'none'", page.headers["Content-Security-Policy"])


class ClientModes(Base):
    """PKCE per client (pkce require, type public) and login_methods on the page."""

    def make(self, *args):
        return stack.ctl("client", "add", "--name", "Modes", "--redirect-uri", REDIRECT, *args,
                         parse=True)

    def test_pkce_required(self):
        for args in (("--pkce", "require"), ("--type", "public")):
            with self.subTest(args=args):
                client = self.make(*args)
                p = auth_params(client)
                r = Browser(stack).authorize(p)
                self.assertEqual(r.status_code, 303)
                q = query_of(r.headers["Location"])
                self.assertEqual(q["error"], "invalid_request")
                self.assertEqual(q["state"], p["state"])
                _, challenge = pkce_pair()
                r = Browser(stack).authorize(auth_params(client, code_challenge=challenge,
                                                         code_challenge_method="S256"))
                self.assertRegex(r.headers["Location"], LOGIN_PAGE)

    def test_link_only(self):
        client = self.make("--login-methods", "magic_link")
        email, user = self.new_user("methods")
        b = Browser(stack)
        p = auth_params(client)
        page = b.send_email(b.start(p), email)
        text = harness.mail_parts(stack.wait_mail(email))["text/plain"]
        self.assertIsNone(re.search(r"^    [0-9]{6}\r?$", text, re.M))
        self.assertIn("/oidc/login/link?t=", text)
        self.assertIsNone(b.form(page, "code-form"))
        self.assertIn('<meta http-equiv="refresh"', page.text)

    def test_code_only(self):
        client = self.make("--login-methods", "email_otp")
        email, _ = self.new_user("methods")
        b = Browser(stack)
        page = b.send_email(b.start(auth_params(client)), email)
        msg = stack.wait_mail(email)
        self.assertNotIn("/oidc/login/link", harness.mail_parts(msg)["text/plain"])
        self.assertIsNotNone(b.form(page, "code-form"))
        self.assertNotIn('<meta http-equiv="refresh"', page.text)

    def test_phone_form_only_where_allowed(self):
        page = Browser(stack).start(auth_params(self.client))
        self.assertIsNone(Browser.form(page, "phone-form"))
        client = self.make("--login-methods", "sms_otp")
        b = Browser(stack)
        page = b.start(auth_params(client))
        self.assertIsNone(b.form(page, "email-form"))
        self.assertIsNotNone(b.form(page, "phone-form"))
        self.assertIn('autocomplete="tel"', page.text)
        # The address step is refused for a client that allows no email method.
        csrf = b.form(page, "phone-form")[1]["csrf"]
        r = b.post("/cis/oidc/login", {"csrf": csrf, "step": "email", "email": "a@example.com"})
        self.assertEqual(r.status_code, 403)


class Sms(E2ETestCase):
    """With an SMS backend: a login by phone where login_methods allow sms_otp, and
    acr_values=mfa: the address's code, then a code by SMS to the user's phone in the same
    session, so that the ID token says acr mfa."""

    @classmethod
    def setUpClass(cls):
        from test_sms import SMSStack

        cls.st = SMSStack(name="hosted-sms", sms={"backend": "smstools",
                                                 "spool_dir": "{dir}/outgoing"}).start()
        os.makedirs(cls.st.path("outgoing"), mode=0o700, exist_ok=True)
        cls.client = cls.st.ctl("client", "add", "--name", "Sms", "--redirect-uri", REDIRECT,
                                "--login-methods", "email_otp,magic_link,sms_otp", parse=True)

    @classmethod
    def tearDownClass(cls):
        cls.st.stop()

    def sms_code(self):
        from test_sms import read_spool_file

        files = self.st.spool_files("outgoing")
        self.assertEqual(len(files), 1, files)
        _, text = read_spool_file(files[0])
        os.unlink(files[0])
        return re.match(r"([0-9]{%d}) " % self.st.otp_length, text).group(1)

    def claims(self, r, p):
        self.assertEqual(r.status_code, 303, r.text[:400])
        q = query_of(r.headers["Location"])
        self.assertEqual(q["state"], p["state"])
        t = exchange(self.st, self.client, q["code"])
        self.assertEqual(t.status, 200, t.body)
        return harness.jwt_parts(t.json["id_token"])[1]

    def test_login_by_phone(self):
        phone = "+4917055501%02d" % (os.getpid() % 100)
        self.st.make_user(email=harness.unique_email("sms"), phone=phone)
        b = Browser(self.st)
        p = auth_params(self.client)
        page = b.start(p)
        r = b.submit(page, "phone-form", phone=phone)
        self.assertEqual(r.status_code, 303, r.text[:400])
        page = b.get(r.headers["Location"])
        self.assertIsNotNone(b.form(page, "code-form"))
        claims = self.claims(b.submit(page, "code-form", code=self.sms_code()), p)
        self.assertEqual(claims["amr"], ["sms"])
        self.assertNotIn("acr", claims)

    def test_mfa(self):
        email, phone = harness.unique_email("mfa"), "+4917055502%02d" % (os.getpid() % 100)
        self.st.make_user(email=email, phone=phone)
        b = Browser(self.st)
        p = auth_params(self.client, acr_values="mfa")
        page = b.send_email(b.start(p), email)
        code, _ = mail_code_and_link(self.st, self.st.wait_mail(email))
        r = b.submit(page, "code-form", code=code)
        # The first factor: the session cookie, and the page again for the second one.
        self.assertEqual(r.status_code, 303)
        self.assertRegex(r.headers["Location"], LOGIN_PAGE)
        self.assertIsNotNone(b.cookie("otlogin"))
        page = b.get(r.headers["Location"])
        self.assertIn('data-step="mfa"', page.text)
        self.assertEqual(self.st.spool_files("outgoing"), [])  # a GET sends nothing
        r = b.submit(page, "mfa-form")
        self.assertEqual(r.status_code, 303)
        page = b.get(r.headers["Location"])
        claims = self.claims(b.submit(page, "code-form", code=self.sms_code()), p)
        self.assertEqual(claims["acr"], "mfa")
        for amr in ("eotp", "sms", "mfa"):
            self.assertIn(amr, claims["amr"])
        # The session now satisfies acr_values=mfa for single sign-on.
        p2 = auth_params(self.client, acr_values="mfa", prompt="none")
        self.assertEqual(self.claims(b.authorize(p2), p2)["acr"], "mfa")
