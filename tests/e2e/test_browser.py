"""A real browser through the login pages (API-OIDC.md "What works means"): Debian's headless
chromium, driven by selenium (tests/e2e/browser.py), against the real otlogin behind
lighttpd, every redirect landing on a small recording server on 127.0.0.1
(browser.RedirectTarget) that stands in for the app.

- The fixture itself: JavaScript really is off in the no-JS variant, a CSP violation really
  shows in the console we read, two profiles share nothing, and neither quit() nor a runner
  that dies without it leaves a chromium process behind.
- The backend magic link (API.md "The link and the redirect"): the browser opens the emailed
  link, sees the button page, the click POSTs and lands on the redirect URI with a code that
  the app exchanges; with JavaScript on and off; nothing on the way logs a console error
  (a CSP violation would); an attacker's form on a sibling origin cannot spend the link.
- The hosted login page of the OpenID Provider (API-OIDC.md B): /oidc/auth with state, nonce
  and PKCE -> the hosted page -> the address -> the code from the mail, or its link in the
  same browser, or its link on a second device (another profile) while the first one's
  waiting tab continues on its own by meta refresh; with JavaScript on and off; then the
  code exchanged at /oidc/token and the ID token verified (nonce, at_hash, sub); and
  response_mode=form_post, by its hashed script and by its button.
- The redirect-based One-Time Login (API-OIDC.md A): the passcode's result URL and the
  emailed link's page in the browser, and the login session they leave signing the same
  browser in at /oidc/auth.

No test here is skipped: without chromium, chromium-driver and python3-selenium the module
fails (./quickstart test installs them).
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import browser
import harness
import test_link
from browser import Browser, RedirectTarget

stack = None
target = None


def setUpModule():
    global stack, target
    browser.require_browser()
    target = RedirectTarget()
    try:
        stack = harness.Stack(name="browser").start()
    except BaseException:
        target.stop()
        raise
    harness.E2ETestCase.stack = stack


def tearDownModule():
    try:
        browser.quit_all()
    finally:
        target.stop()
        stack.stop()


class BrowserCase(test_link.LinkCase):
    """LinkCase (the magic-link API steps) with browser assertions."""

    def assertQuietConsole(self, dev, where, status_of=None):
        """Nothing on the pages so far logged an error or a warning to the console (a CSP
        violation, a failed load, a script error). status_of=(url, status): a page that
        answers with an error status on purpose; the browser logs that load as failed."""
        entries = dev.console()
        bad = [e for e in entries if e.get("level") in ("SEVERE", "WARNING")]
        if status_of is not None:
            url, status = status_of
            expected = [e for e in bad if e.get("source") == "network"
                        and e["message"].startswith(url + " - ")
                        and "status of %d " % status in e["message"]]
            self.assertEqual(len(expected), 1, "no %d for %s in %r" % (status, url, entries))
            bad.remove(expected[0])
        self.assertEqual(bad, [], "console of %s (%s): %r" % (dev.name, where, entries))

    def since(self):
        """An index into target.requests: wait()/callbacks() from here on."""
        return len(target.requests)

    def callbacks(self, since):
        return self.callbacks_of("/callback", since)

    def callbacks_of(self, path, since):
        return [r for r in target.requests[since:] if r["path"] == path]


# ---- the fixture -------------------------------------------------------------------------

class Fixture(BrowserCase):
    def test_javascript_off(self):
        """The no-JS variant runs no script; the default one does (the same page)."""
        target.pages["/js"] = ("<!doctype html><html><head><title>before</title></head><body>"
                               "<script>document.title = 'ran';</script></body></html>")
        with Browser() as dev:
            dev.get(target.url("/js"))
            self.assertEqual(dev.title, "ran")
        with Browser(javascript=False) as dev:
            dev.get(target.url("/js"))
            self.assertEqual(dev.title, "before")

    def test_console_shows_csp_violation(self):
        """console() does see a CSP violation, so assertQuietConsole can fail."""
        target.pages["/csp"] = ("<!doctype html><html><head><title>csp</title></head><body>"
                                "<script>document.title = 'ran';</script></body></html>")
        target.headers["/csp"] = {"Content-Security-Policy": "default-src 'none'"}
        with Browser() as dev:
            dev.get(target.url("/csp"))
            self.assertEqual(dev.title, "csp")
            entries = dev.console()
            self.assertTrue([e for e in entries if e["level"] == "SEVERE"
                             and "Content Security Policy" in e["message"]], repr(entries))
            with self.assertRaises(AssertionError):
                dev.get(target.url("/csp"))
                self.assertQuietConsole(dev, "control")

    def test_profiles_are_separate_and_quit_is_clean(self):
        """Two devices share no cookie; quit() leaves no process of either profile."""
        a, b = Browser(name="device-a"), Browser(name="device-b")
        try:
            a.start()
            b.start()
            target.headers["/set"] = {"Set-Cookie": "device=a; Path=/"}
            a.get(target.url("/set"))
            b.get(target.url("/callback"))
            self.assertEqual([c["name"] for c in a.cookies()], ["device"])
            self.assertEqual(b.cookies(), [])
            profiles = [a.profile, b.profile]
            pids = [p for prof in profiles for p in browser.profile_pids(prof)]
            self.assertTrue(pids, "no chromium process carries the profile path")
        finally:
            a.quit()
            b.quit()
        for prof in profiles:
            self.assertEqual(browser.profile_pids(prof), [])
        self.assertEqual([p for p in pids if browser.pid_alive(p)], [])
        self.assertEqual(browser.RUNNING, [])

    def test_dead_runner_leaves_no_browser(self):
        """A runner that dies without quit() (the watchdog's os._exit) takes its chromedriver
        and chromium with it."""
        child = subprocess.run(
            [sys.executable, "-c",
             "import os, sys; sys.dont_write_bytecode = True; sys.path.insert(0, %r)\n"
             "import browser\n"
             "b = browser.Browser().start()\n"
             "b.get('about:blank')\n"
             "print(b.dir, flush=True)\n"
             "os._exit(3)\n" % os.path.dirname(os.path.abspath(browser.__file__))],
            capture_output=True, text=True, timeout=browser.COMMAND_TIMEOUT)
        self.assertEqual(child.returncode, 3, child.stderr)
        bdir = child.stdout.strip()
        self.assertTrue(bdir.startswith(tempfile.gettempdir()), child.stdout)
        try:
            deadline = time.monotonic() + browser.EXIT_TIMEOUT
            while browser.profile_pids(bdir) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = browser.profile_pids(bdir)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            self.assertEqual(left, [], "processes of a dead runner's browser")
        finally:
            shutil.rmtree(bdir, ignore_errors=True)


# ---- the backend magic link ----------------------------------------------------------------

class MagicLink(BrowserCase):
    @classmethod
    def setUpClass(cls):
        cls.redirect = target.url("/callback")
        cls.client = stack.new_client(redirect_uris=[cls.redirect])

    def link_flow(self, javascript):
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        state = "st-" + os.urandom(6).hex()
        link = self.send_and_link(self.client, addr, redirect_uri=self.redirect, state=state)
        since = self.since()
        with Browser(javascript=javascript) as dev:
            dev.get(link)
            self.assertEqual(dev.url, link)
            self.assertEqual(dev.title, "Sign in")
            text = dev.text()
            self.assertIn("Continue to sign in as", text)
            self.assertNotIn(addr.split("@")[0], text, "unmasked address on the page")
            self.assertQuietConsole(dev, "landing page")
            self.assertEqual(self.callbacks(since), [], "opening the link redirected")

            dev.click("form button")
            url = dev.wait_url(self.redirect + "?")
            hit = target.wait(since=since)
            self.assertEqual(hit["method"], "GET")
            self.assertEqual(set(hit["query"]), {"code", "state"}, url)
            self.assertEqual(hit["query"]["state"], state)
            # The link's token must not reach the app in a Referer.
            self.assertNotIn("referer", {k.lower() for k in hit["headers"]}, hit["headers"])
            self.assertQuietConsole(dev, "the button and the redirect")

            # Spent: the same link again shows so, and does not redirect.
            dev.get(link)
            self.assertIn("already used", dev.text().lower())
            self.assertEqual(len(self.callbacks(since)), 1)
            self.assertQuietConsole(dev, "the spent link", status_of=(link, 410))

        r = self.authenticate(self.client, hit["query"]["code"])
        self.check_tokens(r, self.client, uid)
        self.assertBadCode(self.authenticate(self.client, hit["query"]["code"]))

    def test_link_with_javascript(self):
        self.link_flow(javascript=True)

    def test_link_without_javascript(self):
        self.link_flow(javascript=False)

    def test_sibling_origin_cannot_spend_link(self):
        """A page on another origin of the same host (a sibling app: same-site, cross-origin)
        with a form that POSTs the victim's link gets the refusal page, no redirect; the
        victim's own click afterwards still signs in."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        link = self.send_and_link(self.client, addr, redirect_uri=self.redirect)
        target.pages["/attack"] = (
            "<!doctype html><html><head><title>win a prize</title></head><body>"
            "<form method=post action='%s'><button id=go>Claim</button></form></body></html>"
            % link.replace("&", "&amp;").replace("'", "&#39;"))
        since = self.since()
        with Browser() as dev:
            dev.get(target.url("/attack"))
            dev.click("#go")
            dev.wait_until("the refusal page", lambda d: "from your email" in d.text())
            self.assertTrue(dev.url.startswith(stack.base_url), dev.url)
            self.assertEqual(self.callbacks(since), [])

            dev.get(link)
            dev.click("form button")
            dev.wait_url(self.redirect + "?")
            hit = target.wait(since=since)
        self.check_tokens(self.authenticate(self.client, hit["query"]["code"]), self.client,
                          uid)


# ---- the hosted login page of the OpenID Provider ------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# The hosted pages' stable markup (the comment at the top of src/api_hosted.c).
EMAIL_INPUT = "#email-form #email"
CODE_INPUT = "#code-form #code"
LINK_BUTTON = "#link-form #link-submit"


def step(dev):
    """The hosted page's step (data-step of <main id="page">), None elsewhere (or while the
    page is being replaced)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        found = dev.find_all("main#page")
        return found[0].get_attribute("data-step") if found else None
    except StaleElementReferenceException:
        return None


class OIDCSteps(BrowserCase):
    """The steps of an authorization code login for self.client and self.redirect (a path
    of the RedirectTarget): the request, the landing on the app, the exchange."""

    @property
    def cb_path(self):
        return urllib.parse.urlsplit(self.redirect).path

    def authorize(self, **extra):
        """(URL of an authorization request with state, nonce and PKCE S256, its secrets)."""
        req = {"state": "st-" + os.urandom(8).hex(), "nonce": b64url(os.urandom(24)),
               "verifier": b64url(os.urandom(32))}
        params = {"client_id": self.client["client_id"], "redirect_uri": self.redirect,
                  "response_type": "code", "scope": "openid email", "state": req["state"],
                  "nonce": req["nonce"],
                  "code_challenge": b64url(hashlib.sha256(req["verifier"].encode()).digest()),
                  "code_challenge_method": "S256"}
        params.update(extra)
        return stack.base_url + "/oidc/auth?" + urllib.parse.urlencode(params), req

    def hosted_mail(self, addr):
        """(code, link) of the hosted page's mail to addr: one link under public_base_url
        and one 6-digit code (looked for outside the link)."""
        text = harness.mail_parts(stack.wait_mail(addr))["text/plain"]
        url_re = r"%s/\S+" % re.escape(stack.base_url)
        links = set(re.findall(url_re, text))
        self.assertEqual(len(links), 1, "links in the mail: %r\n%s" % (links, text))
        return harness.extract_code(re.sub(url_re, " ", text), 6), links.pop()

    def ask_code(self, dev, addr):
        """On the hosted page: type the address, send; the code page appears, with the
        markup a password manager and a phone keyboard need, and never a self-refresh
        (it would wipe a code being typed: a script asks instead, where it runs)."""
        self.assertEqual(step(dev), "email")
        self.assertEqual(dev.find(EMAIL_INPUT).get_attribute("autocomplete"), "email")
        dev.type(EMAIL_INPUT, addr)
        dev.click("#email-submit")
        code = dev.find(CODE_INPUT)
        self.assertEqual(step(dev), "code")
        self.assertEqual(code.get_attribute("autocomplete"), "one-time-code")
        self.assertEqual(code.get_attribute("inputmode"), "numeric")
        self.assertFalse(dev.find_all('meta[http-equiv="refresh" i]'),
                         "the code page reloads itself")
        self.assertQuietConsole(dev, "the code page")

    def landed(self, dev, req, since, timeout=browser.WAIT_TIMEOUT):
        """The browser reached redirect_uri with code, state (when the request had one) and
        iss (and it alone: one callback); the code."""
        dev.wait_url(self.redirect + "?", timeout)
        hit = target.wait(self.cb_path, since=since)
        want = {"code", "iss"} | ({"state"} if req.get("state") else set())
        self.assertEqual(set(hit["query"]), want, hit["raw_query"])
        self.assertEqual(hit["query"].get("state"), req.get("state"))
        self.assertEqual(hit["query"]["iss"], stack.issuer)
        self.assertNotIn("referer", {k.lower() for k in hit["headers"]}, hit["headers"])
        self.assertEqual(len(self.callbacks_of(self.cb_path, since)), 1)
        return hit["query"]["code"]

    def exchange(self, code, req, uid, addr, replay=True):
        """/oidc/token (client_secret_basic, the PKCE verifier when req has one); the ID
        token verified (nonce exactly when req has one). replay: then present the code
        again, which fails and ends the login session."""
        fields = {"grant_type": "authorization_code", "code": code,
                  "redirect_uri": self.redirect}
        if req.get("verifier"):
            fields["code_verifier"] = req["verifier"]
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                **fields)
        body = self.assertJSON(r, 200)
        self.assertEqual(body.get("token_type"), "Bearer", body)
        self.assertIsInstance(body.get("access_token"), str, body)
        _, idc = stack.verify_jwt(body["id_token"], "JWT", self.client["client_id"])
        self.assertEqual(idc["iss"], stack.issuer)
        self.assertEqual(idc["sub"], uid)
        self.assertEqual(idc.get("nonce"), req.get("nonce"))
        digest = hashlib.sha256(body["access_token"].encode()).digest()
        self.assertEqual(idc.get("at_hash"), b64url(digest[:16]))
        if "email" in idc:
            self.assertEqual(idc["email"], addr)
        self.last_tokens = body
        if not replay:
            return idc
        # Single use: the second exchange fails.
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                **fields)
        self.assertOAuthError(r, 400, "invalid_grant")
        return idc

    def code_flow(self, javascript):
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        url, req = self.authorize()
        since = self.since()
        with Browser(javascript=javascript) as dev:
            dev.get(url)
            self.assertTrue(dev.url.startswith(stack.base_url + "/"), dev.url)
            self.assertQuietConsole(dev, "the hosted page")
            self.ask_code(dev, addr)
            code, _ = self.hosted_mail(addr)
            dev.type_and_enter(CODE_INPUT, code)
            got = self.landed(dev, req, since)
            self.assertQuietConsole(dev, "the code and the redirect")
        self.exchange(got, req, uid, addr)



class HostedLogin(OIDCSteps):
    """/oidc/auth -> the hosted page -> address -> code or link -> redirect_uri?code= ->
    /oidc/token, all in a real browser, the code and link read from the mail."""

    @classmethod
    def setUpClass(cls):
        cls.redirect = target.url("/rp/callback")
        cls.client = stack.make_client(redirect_uris=[cls.redirect])

    def form_post_flow(self, javascript):
        """response_mode=form_post: the page after the code posts the response to the app,
        by its hashed script (the CSP must let exactly that run) or, without JavaScript, by
        its button."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        url, req = self.authorize(response_mode="form_post")
        since = self.since()
        with Browser(javascript=javascript) as dev:
            dev.get(url)
            self.ask_code(dev, addr)
            code, _ = self.hosted_mail(addr)
            dev.type_and_enter(CODE_INPUT, code)
            if not javascript:
                dev.wait_until("the form_post page", lambda d: d.title == "Continue")
                self.assertEqual(self.callbacks_of(self.cb_path, since), [])
                dev.click("form button")
            dev.wait_url(self.redirect)
            hits = self.callbacks_of(self.cb_path, since)
            self.assertEqual([h["method"] for h in hits], ["POST"])
            self.assertEqual(hits[0]["raw_query"], "")
            self.assertEqual(hits[0]["headers"].get("Content-Type"),
                             "application/x-www-form-urlencoded")
            body = urllib.parse.parse_qs(hits[0]["body"].decode(), strict_parsing=True)
            self.assertEqual(sorted(body), ["code", "iss", "state"])
            self.assertEqual(body["state"], [req["state"]])
            self.assertEqual(body["iss"], [stack.issuer])
            self.assertQuietConsole(dev, "the code and the form_post page")
        self.exchange(body["code"][0], req, uid, addr)

    def test_form_post_with_javascript(self):
        self.form_post_flow(javascript=True)

    def test_form_post_without_javascript(self):
        self.form_post_flow(javascript=False)

    def test_code_with_javascript(self):
        self.code_flow(javascript=True)

    def test_code_without_javascript(self):
        self.code_flow(javascript=False)

    def test_code_typed_at_a_persons_pace(self):
        """A person types the six digits about one every 0.7 s, into the field the page
        focuses, then presses Enter: that must sign in. (The code page reloads itself every
        few seconds to notice a link opened elsewhere; a reload under the typing would wipe
        the digits typed so far and submit a wrong code, which counts as a failure.)"""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        url, req = self.authorize()
        since = self.since()
        with Browser(javascript=False) as dev:
            dev.get(url)
            self.ask_code(dev, addr)
            code, _ = self.hosted_mail(addr)
            keys = ActionChains(dev.driver)
            for digit in code:
                keys.send_keys(digit).pause(0.7)
            keys.send_keys(Keys.ENTER).perform()
            dev.wait_until("the page after Enter", lambda d: step(d) != "code" or
                           d.find_all("#error"), timeout=browser.WAIT_TIMEOUT)
            errors = [e.text for e in dev.find_all("#error")]
            self.assertEqual(errors, [], "typing the code at a person's pace into the code "
                             "page, which reloads itself (meta refresh) under the typing, "
                             "ended in an error")
            got = self.landed(dev, req, since)
        self.exchange(got, req, uid, addr)

    def test_two_tabs(self):
        """Two sign-ins at once in two tabs of one browser: each tab's code finishes its own
        request (its state back to it), whichever order they end in."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        (url1, req1), (url2, req2) = self.authorize(), self.authorize()
        with Browser() as dev:
            dev.get(url1)
            self.ask_code(dev, addr)
            code1, _ = self.hosted_mail(addr)
            tab1 = dev.driver.current_window_handle
            dev.driver.switch_to.new_window("tab")
            dev.get(url2)
            self.ask_code(dev, addr)
            code2, _ = self.hosted_mail(addr)
            tab2 = dev.driver.current_window_handle

            since = self.since()
            dev.driver.switch_to.window(tab2)
            dev.type_and_enter(CODE_INPUT, code2)
            got2 = self.landed(dev, req2, since)
            since = self.since()
            dev.driver.switch_to.window(tab1)
            dev.type_and_enter(CODE_INPUT, code1)
            got1 = self.landed(dev, req1, since)
            self.assertQuietConsole(dev, "two tabs")
        first = self.exchange(got1, req1, uid, addr, replay=False)
        second = self.exchange(got2, req2, uid, addr, replay=False)
        self.assertEqual(first["sid"], second["sid"])

    def test_login_hint_prefills(self):
        addr = stack.make_user()["email"]["value"]
        url, _ = self.authorize(login_hint=addr)
        with Browser() as dev:
            dev.get(url)
            self.assertEqual(dev.find(EMAIL_INPUT).get_attribute("value"), addr)
            self.assertQuietConsole(dev, "the hosted page")

    def test_link_same_browser(self):
        """The link opened in the browser that started the flow continues it there."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        url, req = self.authorize()
        since = self.since()
        with Browser() as dev:
            dev.get(url)
            self.ask_code(dev, addr)
            _, link = self.hosted_mail(addr)
            dev.get(link)
            self.assertEqual(step(dev), "link")
            self.assertEqual(self.callbacks_of(self.cb_path, since), [],
                             "opening the link redirected")
            dev.click(LINK_BUTTON)
            got = self.landed(dev, req, since)
            self.assertQuietConsole(dev, "the link and the redirect")
        self.exchange(got, req, uid, addr)

    def cross_device(self, javascript):
        """The link opened on a second device (another profile) confirms the login; the first
        device's waiting tab continues on its own and alone gets the code: by the code page's
        status check with JavaScript, or on the waiting page (meta refresh) without."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        url, req = self.authorize()
        since = self.since()
        with Browser(javascript=javascript, name="laptop") as laptop, \
                Browser(name="phone") as phone:
            laptop.get(url)
            self.ask_code(laptop, addr)
            if not javascript:
                laptop.click("#wait-link")
                laptop.wait_until("the waiting page",
                                  lambda d: d.find_all('meta[http-equiv="refresh" i]'))
                self.assertFalse(laptop.find_all(CODE_INPUT), "the waiting page has a field")
            _, link = self.hosted_mail(addr)
            phone.get(link)
            self.assertEqual(step(phone), "link")
            self.assertQuietConsole(phone, "the link's page")
            phone.click(LINK_BUTTON)
            phone.wait_until("the 'other device' page", lambda d: step(d) == "elsewhere")
            self.assertIn("signed in on your other device", phone.text())
            self.assertTrue(phone.url.startswith(stack.base_url), phone.url)
            self.assertQuietConsole(phone, "the confirmation")
            # "Checks back every few seconds": a few rounds of it.
            got = self.landed(laptop, req, since, timeout=45)
            self.assertTrue(phone.url.startswith(stack.base_url), phone.url)
            idc = self.exchange(got, req, uid, addr, replay=False)

            # The login session is the laptop's alone: a new request signs it in at once
            # (single sign-on), while the phone is asked for an address.
            url, req = self.authorize()
            since = self.since()
            phone.get(url)
            self.assertEqual(step(phone), "email")
            self.assertEqual(self.callbacks_of(self.cb_path, since), [])
            laptop.get(url)
            sso = self.exchange(self.landed(laptop, req, since), req, uid, addr)
            self.assertEqual(sso["sid"], idc["sid"])

            # That exchange's replay ended the session: the laptop is asked again.
            url, req = self.authorize()
            since = self.since()
            laptop.get(url)
            self.assertEqual(step(laptop), "email")
            self.assertEqual(self.callbacks_of(self.cb_path, since), [])

    def test_link_other_device(self):
        self.cross_device(javascript=True)

    def test_link_other_device_without_javascript(self):
        self.cross_device(javascript=False)


# ---- the redirect-based One-Time Login (part A) --------------------------------------------

class RedirectOTL(OIDCSteps):
    """Transmit's redirect-based API (API-OIDC.md A) with the browser parts in a real browser:
    the passcode's result URL, the emailed link's page; then the login session it left behind
    signs the same browser in at /oidc/auth (the cookie's path covers both)."""

    @classmethod
    def setUpClass(cls):
        cls.redirect = target.url("/a/callback")
        cls.client = stack.new_client(redirect_uris=[cls.redirect])

    def api(self, path, body):
        r = stack.http("POST", "/cis" + path, json=body, token=self.client["token"])
        return self.assertJSON(r, 200)

    def test_result_url_then_single_sign_on(self):
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        self.api("/v1/auth/otp/email", {"email": addr, "redirect_uri": self.redirect})
        passcode = stack.mail_code(stack.wait_mail(addr))
        nonce = b64url(os.urandom(16))
        result = self.api("/v1/auth/otp/email/validation",
                          {"email": addr, "passcode": passcode, "nonce": nonce})["result"]
        self.assertTrue(result.startswith(stack.base_url + "/"), result)
        since = self.since()
        with Browser() as dev:
            dev.get(result)
            code = self.landed(dev, {"nonce": nonce}, since)
            self.assertQuietConsole(dev, "the result URL")
            idc = self.exchange(code, {"nonce": nonce}, uid, addr, replay=False)
            self.assertIsInstance(self.last_tokens.get("refresh_token"), str)

            # Used: the same URL again ends in access_denied, not in a code.
            since = self.since()
            dev.get(result)
            dev.wait_url(self.redirect + "?")
            hit = target.wait(self.cb_path, since=since)
            self.assertEqual(hit["query"].get("error"), "access_denied", hit["raw_query"])
            self.assertNotIn("code", hit["query"])

            # The login session cookie reaches the authorization endpoint: single sign-on.
            url, req = self.authorize()
            since = self.since()
            dev.get(url)
            sso = self.exchange(self.landed(dev, req, since), req, uid, addr)
            self.assertEqual(sso["sid"], idc["sid"])

    def link_flow(self, javascript):
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        self.assertEqual(self.api("/v1/auth/links/email",
                                  {"email": addr, "redirect_uri": self.redirect}),
                         {"message": "Email sent successfully"})
        text = harness.mail_parts(stack.wait_mail(addr))["text/plain"]
        links = set(re.findall(r"%s/\S+" % re.escape(stack.base_url), text))
        self.assertEqual(len(links), 1, text)
        link = links.pop()
        since = self.since()
        with Browser(javascript=javascript) as dev:
            dev.get(link)
            self.assertEqual(dev.url, link)
            self.assertQuietConsole(dev, "the link's page")
            self.assertEqual(self.callbacks_of(self.cb_path, since), [],
                             "opening the link redirected")
            dev.click("form button")
            code = self.landed(dev, {}, since)
            self.assertQuietConsole(dev, "the button and the redirect")
        idc = self.exchange(code, {}, uid, addr)
        self.assertIn("eml", idc.get("amr", []))

    def test_link_with_javascript(self):
        self.link_flow(javascript=True)

    def test_link_without_javascript(self):
        self.link_flow(javascript=False)
