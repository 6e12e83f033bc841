"""The authorization endpoint /oidc/auth (API-OIDC.md B, "Authorization endpoint"): what is
refused with a page and never redirected, what is refused with an error redirect (state and
iss always echoed), single sign-on from the login session cookie across clients, prompt,
max_age and acr_values, and the flow cookie that ties a waiting request to its browser."""

import base64
import hashlib
import html
import re
import urllib.parse

import harness
from clock import ClockStack
from harness import E2ETestCase
from hosted_browser import (LOGIN_PAGE, REDIRECT, Browser, auth_params, exchange, pkce_pair,
                            query_of)

stack = None


def setUpModule():
    global stack
    stack = ClockStack(name="authz").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class Base(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.make_client(redirect_uris=[REDIRECT, "https://app.example/cb?x=1"],
                                       resources=["https://api.example/"])
        cls.other = stack.make_client(redirect_uris=["https://other.example/cb"])

    def assertPage(self, r, status):
        """An HTML page at otlogin, never a redirect."""
        self.assertEqual(r.status_code, status, r.text[:400])
        self.assertNotIn("Location", r.headers)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
        return r.text

    def assertErrorRedirect(self, r, error, params, uri=REDIRECT):
        self.assertEqual(r.status_code, 303, r.text[:400])
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith(uri + ("&" if "?" in uri else "?")), loc)
        q = query_of(loc)
        self.assertEqual(q.get("error"), error, loc)
        self.assertIn("error_description", q)
        self.assertEqual(q.get("iss"), stack.issuer)
        self.assertNotIn("code", q)
        if "state" in params:
            self.assertEqual(q.get("state"), params["state"])
        else:
            self.assertNotIn("state", q)
        return q


class NeverRedirect(Base):
    """No trustworthy redirect_uri: a 400 page, never a redirect (RFC 6749 4.1.2.1)."""

    def test_unknown_client(self):
        p = auth_params(self.client, client_id="no-such-client")
        self.assertIn("not known", self.assertPage(Browser(stack).authorize(p), 400))

    def test_missing_client_id(self):
        p = auth_params(self.client, client_id=None)
        self.assertPage(Browser(stack).authorize(p), 400)

    def test_missing_redirect_uri(self):
        p = auth_params(self.client, redirect_uri=None)
        self.assertPage(Browser(stack).authorize(p), 400)

    def test_unregistered_redirect_uris(self):
        for uri in ("https://evil.example/cb", REDIRECT + "/", REDIRECT + "?x=2",
                    "https://APP.example/cb", "https://app.example/c", REDIRECT + "#f",
                    "https://other.example/cb", REDIRECT.replace("https", "http")):
            with self.subTest(uri=uri):
                # Even with other errors present the page wins: the redirect is not trusted.
                p = auth_params(self.client, redirect_uri=uri, response_type="token",
                                prompt="none")
                self.assertPage(Browser(stack).authorize(p), 400)

    def test_repeated_parameter(self):
        q = urllib.parse.urlencode(auth_params(self.client)) + "&redirect_uri=" + \
            urllib.parse.quote("https://evil.example/cb", safe="")
        self.assertPage(Browser(stack).get("/cis/oidc/auth?" + q), 400)

    def test_error_page_is_escaped_and_protected(self):
        r = Browser(stack).authorize(auth_params(self.client, client_id="<script>x</script>"))
        body = self.assertPage(r, 400)
        self.assertNotIn("<script>", body)
        self.assertIn("default-src 'none'", r.headers["Content-Security-Policy"])
        self.assertEqual(r.headers["X-Frame-Options"], "DENY")
        self.assertEqual(r.headers["Referrer-Policy"], "no-referrer")
        self.assertEqual(r.headers["Cache-Control"], "no-store")


class ErrorRedirects(Base):
    """Every other error: 303 to redirect_uri with error, error_description, state, iss."""

    def check(self, error, method="GET", uri=REDIRECT, **over):
        p = auth_params(self.client, redirect_uri=uri, **over)
        return self.assertErrorRedirect(Browser(stack).authorize(p, method), error, p, uri)

    def test_response_type(self):
        self.check("unsupported_response_type", response_type="token")
        self.check("unsupported_response_type", response_type="code id_token")
        self.check("invalid_request", response_type=None)

    def test_scope_without_openid(self):
        self.check("invalid_scope", scope="email profile")
        self.check("invalid_scope", scope=None)
        self.check("invalid_scope", scope="openidx")

    def test_pkce(self):
        _, challenge = pkce_pair()
        self.check("invalid_request", code_challenge=challenge)
        self.check("invalid_request", code_challenge=challenge, code_challenge_method="plain")
        self.check("invalid_request", code_challenge="short", code_challenge_method="S256")
        self.check("invalid_request", code_challenge_method="S256")

    def test_prompt_max_age_claims_resource_mode(self):
        self.check("invalid_request", prompt="none login")
        self.check("invalid_request", prompt="sometimes")
        self.check("invalid_request", max_age="-1")
        self.check("invalid_request", max_age="ten")
        self.check("invalid_request", claims="{not json")
        self.check("invalid_request", claims="[1]")
        self.check("invalid_target", resource="https://elsewhere.example/")
        self.check("invalid_request", response_mode="fragment")

    def test_prompt_none_without_session(self):
        q = self.check("login_required", prompt="none")
        self.assertEqual(q["error_description"], "The user is not signed in")

    def test_state_absent_is_not_invented(self):
        self.check("login_required", prompt="none", state=None)

    def test_state_with_special_characters_round_trips(self):
        self.check("login_required", prompt="none", state="a b&c=d/é?#")

    def test_registered_uri_with_query_keeps_it(self):
        q = self.check("login_required", prompt="none", uri="https://app.example/cb?x=1")
        self.assertEqual(q["x"], "1")

    def test_post_form_is_the_same(self):
        self.check("login_required", method="POST", prompt="none")
        self.check("invalid_scope", method="POST", scope="email")


class Flow(Base):
    def test_valid_request_goes_to_the_login_page_with_a_flow_cookie(self):
        b = Browser(stack)
        r = b.authorize(auth_params(self.client))
        self.assertEqual(r.status_code, 303)
        self.assertRegex(r.headers["Location"], LOGIN_PAGE)
        cookie = r.set_cookies()[0]
        self.assertRegex(cookie, r"^otlogin-flow=[A-Za-z0-9_-]{43}; ")
        for attr in ("Path=/cis;", "HttpOnly", "SameSite=Lax"):
            self.assertIn(attr, cookie)
        page = b.get(r.headers["Location"])
        self.assertEqual(page.status_code, 200)
        self.assertIsNotNone(b.form(page, "email-form"))

    def test_login_hint_prefills_the_address(self):
        b = Browser(stack)
        page = b.start(auth_params(self.client, login_hint='a"b@example.com'))
        self.assertIn('value="a&quot;b@example.com"', page.text)

    def test_login_page_without_flow_cookie(self):
        r = Browser(stack).get("/cis/oidc/login")
        self.assertPage(r, 400)
        self.assertIsNone(Browser.form(r, "email-form"))

    def test_forged_flow_cookie(self):
        b = Browser(stack)
        b.cookies.set("otlogin-flow", "A" * 43, path="/cis")
        self.assertPage(b.get("/cis/oidc/login"), 400)


class SingleSignOn(Base):
    """A browser with a live login session gets its code at once, across clients."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.email = harness.unique_email("sso")
        cls.user = stack.make_user(email=cls.email)
        cls.browser = Browser(stack)
        cls.first = cls.browser.login(auth_params(cls.client), cls.email)

    def assertCode(self, r, params, uri=REDIRECT):
        self.assertEqual(r.status_code, 303, r.text[:400])
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith(uri + "?"), loc)
        q = query_of(loc)
        self.assertIn("code", q)
        self.assertEqual(q.get("state"), params.get("state"))
        self.assertEqual(q.get("iss"), stack.issuer)
        return q["code"]

    def test_first_login_sets_the_session_cookie(self):
        self.assertEqual(self.first.status_code, 303)
        self.assertIsNotNone(self.browser.cookie("otlogin"))
        cookie = [c for c in self.first.set_cookies() if c.startswith("otlogin=")][0]
        for attr in ("Path=/cis;", "HttpOnly", "SameSite=Lax"):
            self.assertIn(attr, cookie)
        # The flow ends with the login: its cookie is dropped.
        self.assertTrue(any(c.startswith("otlogin-flow=;") for c in self.first.set_cookies()))

    def test_same_client_again_gets_a_code_at_once(self):
        p = auth_params(self.client)
        code = self.assertCode(self.browser.authorize(p), p)
        r = exchange(stack, self.client, code)
        self.assertEqual(r.status, 200, r.body)
        tokens = r.json
        _, claims = harness.jwt_parts(tokens["id_token"])
        self.assertEqual(claims["nonce"], p["nonce"])
        self.assertEqual(claims["sub"], self.user["user_id"])
        me = stack.http("GET", "/cis/oidc/me", token=tokens["access_token"])
        self.assertEqual(me.status, 200, me.body)
        self.assertEqual(me.json["email"], self.email)

    def test_other_client_single_sign_on(self):
        p = auth_params(self.other, redirect_uri="https://other.example/cb")
        code = self.assertCode(self.browser.authorize(p), p, "https://other.example/cb")
        r = exchange(stack, self.other, code, redirect_uri="https://other.example/cb")
        self.assertEqual(r.status, 200, r.body)
        _, claims = harness.jwt_parts(r.json["id_token"])
        self.assertEqual(claims["sub"], self.user["user_id"])
        self.assertEqual(claims["aud"], self.other["client_id"])

    def test_prompt_none_with_session(self):
        p = auth_params(self.client, prompt="none")
        self.assertCode(self.browser.authorize(p), p)

    def test_prompt_login_forces_the_login_page(self):
        r = self.browser.authorize(auth_params(self.client, prompt="login"))
        self.assertRegex(r.headers["Location"], LOGIN_PAGE)

    def test_max_age(self):
        stack.let_pass(30)
        p = auth_params(self.client, max_age="3600")
        self.assertCode(self.browser.authorize(p), p)
        r = self.browser.authorize(auth_params(self.client, max_age="10"))
        self.assertRegex(r.headers["Location"], LOGIN_PAGE)
        p = auth_params(self.client, max_age="10", prompt="none")
        self.assertErrorRedirect(self.browser.authorize(p), "login_required", p)
        r = self.browser.authorize(auth_params(self.client, max_age="0"))
        self.assertRegex(r.headers["Location"], LOGIN_PAGE)

    def test_acr_mfa_needs_a_second_factor(self):
        # An email-only session does not satisfy acr_values=mfa.
        p = auth_params(self.client, acr_values="mfa", prompt="none")
        self.assertErrorRedirect(self.browser.authorize(p), "login_required", p)

    def test_another_browser_has_no_session(self):
        p = auth_params(self.client, prompt="none")
        self.assertErrorRedirect(Browser(stack).authorize(p), "login_required", p)

    def test_a_stolen_flow_cookie_is_not_a_session(self):
        b = Browser(stack)
        b.cookies.set("otlogin", "A" * 43, path="/cis")
        p = auth_params(self.client, prompt="none")
        self.assertErrorRedirect(b.authorize(p), "login_required", p)


class Pkce(Base):
    def test_challenge_is_bound_to_the_code(self):
        email = harness.unique_email("pkce")
        stack.make_user(email=email)
        verifier, challenge = pkce_pair()
        b = Browser(stack)
        r = b.login(auth_params(self.client, code_challenge=challenge,
                                code_challenge_method="S256"), email)
        code = query_of(r.headers["Location"])["code"]
        bad = exchange(stack, self.client, code, code_verifier=pkce_pair()[0])
        self.assertEqual(bad.status, 400)
        good = exchange(stack, self.client, code, code_verifier=verifier)
        self.assertEqual(good.status, 200, good.body)


class Exchange(Base):
    """The code exchange's refusals with codes of real logins (tests/unit/test_authcode holds
    the same rules below HTTP): each refused presentation leaves the code to its client."""

    def code(self, client=None, **params):
        client = client or self.client
        email = harness.unique_email("exchange")
        stack.make_user(email=email)
        p = auth_params(client, **params)
        r = Browser(stack).login(p, email)
        self.assertEqual(r.status_code, 303, r.text[:400])
        return query_of(r.headers["Location"])["code"], p

    def assertInvalidGrant(self, r):
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "invalid_grant")

    def test_pkce_downgrade_refused(self):
        """A challenge was sent: an exchange without the verifier fails, with it succeeds."""
        verifier, challenge = pkce_pair()
        code, _ = self.code(code_challenge=challenge, code_challenge_method="S256")
        self.assertInvalidGrant(exchange(stack, self.client, code))
        self.assertEqual(exchange(stack, self.client, code, code_verifier=verifier).status, 200)

    def test_verifier_without_challenge_refused(self):
        code, _ = self.code()
        self.assertInvalidGrant(exchange(stack, self.client, code,
                                         code_verifier=pkce_pair()[0]))
        self.assertEqual(exchange(stack, self.client, code).status, 200)

    def test_other_client_and_other_redirect_refused(self):
        code, _ = self.code()
        self.assertInvalidGrant(exchange(stack, self.other, code,
                                         redirect_uri="https://other.example/cb"))
        self.assertInvalidGrant(exchange(stack, self.client, code,
                                         redirect_uri="https://app.example/cb?x=1"))
        r = stack.token_request(self.client["client_id"], self.client["client_secret"], "basic",
                                grant_type="authorization_code", code=code)
        self.assertInvalidGrant(r)  # redirect_uri missing
        self.assertEqual(exchange(stack, self.client, code).status, 200)

    def test_replay_revokes_what_the_first_exchange_issued(self):
        code, _ = self.code(scope="openid email offline_access")
        first = exchange(stack, self.client, code)
        self.assertEqual(first.status, 200, first.body)
        refresh = first.json["refresh_token"]
        self.assertInvalidGrant(exchange(stack, self.client, code))
        r = stack.token_request(self.client["client_id"], self.client["client_secret"], "basic",
                                grant_type="refresh_token", refresh_token=refresh)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "invalid_grant")

    def test_refresh_token_only_with_offline_access(self):
        code, _ = self.code(scope="openid email")
        r = exchange(stack, self.client, code)
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("refresh_token", r.json)
        self.assertEqual(r.json["scope"], "openid email")
        self.assertEqual(r.headers.get("cache-control"), "no-store")

    def test_nonce_only_when_sent(self):
        code, _ = self.code(nonce=None)
        r = exchange(stack, self.client, code)
        self.assertEqual(r.status, 200, r.body)
        _, claims = harness.jwt_parts(r.json["id_token"])
        self.assertNotIn("nonce", claims)
        self.assertIn("at_hash", claims)

    def test_public_client(self):
        """A public client: PKCE required at /oidc/auth, its client_id alone at the token
        endpoint, and no client_credentials."""
        public = stack.ctl("client", "add", "--name", "SPA", "--type", "public",
                           "--redirect-uri", REDIRECT, parse=True)
        p = auth_params(public)
        r = Browser(stack).authorize(p)
        self.assertErrorRedirect(r, "invalid_request", p)
        verifier, challenge = pkce_pair()
        code, _ = self.code(public, code_challenge=challenge, code_challenge_method="S256")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": public["client_id"], "code_verifier": verifier}
        r = stack.http("POST", "/cis/oidc/token", form=form)
        self.assertEqual(r.status, 200, r.body)
        r = stack.http("POST", "/cis/oidc/token",
                       form={"grant_type": "client_credentials",
                             "client_id": public["client_id"]})
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "unauthorized_client")


class FormPost(Base):
    """response_mode=form_post: a page that posts the response to the redirect URI."""

    def fields(self, r):
        self.assertEqual(r.status_code, 200, r.text[:400])
        self.assertNotIn("Location", r.headers)
        form = re.search(r'<form method="post" action="([^"]*)">', r.text)
        self.assertEqual(html.unescape(form.group(1)), REDIRECT)
        csp = r.headers["Content-Security-Policy"]
        self.assertIn("form-action https://app.example", csp)
        script = re.search(r"<script>(.*?)</script>", r.text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        self.assertIn("script-src 'sha256-%s'" % digest, csp)
        return {html.unescape(n): html.unescape(v) for n, v in
                re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', r.text)}

    def test_error_is_posted(self):
        p = auth_params(self.client, prompt="none", response_mode="form_post", state="a\"<b>")
        f = self.fields(Browser(stack).authorize(p))
        self.assertEqual(f["error"], "login_required")
        self.assertEqual(f["state"], p["state"])
        self.assertEqual(f["iss"], stack.issuer)
        self.assertNotIn("code", f)

    def test_code_is_posted(self):
        email = harness.unique_email("formpost")
        stack.make_user(email=email)
        b = Browser(stack)
        p = auth_params(self.client, response_mode="form_post")
        f = self.fields(b.login(p, email))
        self.assertEqual(f["state"], p["state"])
        self.assertEqual(exchange(stack, self.client, f["code"]).status, 200)
        # And again from the session, still as a form.
        p = auth_params(self.client, response_mode="form_post")
        f = self.fields(b.authorize(p))
        self.assertEqual(exchange(stack, self.client, f["code"]).status, 200)


def push(client, fields, auth="basic"):
    """POST /oidc/request with the client's secret (Basic or form fields)."""
    form, headers = dict(fields), {}
    if auth == "basic":
        cred = "%s:%s" % (urllib.parse.quote(client["client_id"], safe=""),
                          urllib.parse.quote(client["client_secret"], safe=""))
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    else:
        form["client_secret"] = client["client_secret"]
    return stack.http("POST", "/cis/oidc/request", form=form, headers=headers)


class Pushed(Base):
    """POST /oidc/request (RFC 9126) and /oidc/auth?request_uri=."""

    def push(self, client=None, auth="basic", **params):
        client = client or self.client
        fields = auth_params(client, **params)
        return push(client, fields, auth), fields

    def use(self, browser, client, request_uri):
        return browser.authorize({"client_id": client["client_id"], "request_uri": request_uri})

    def test_push_then_authorize(self):
        r, fields = self.push(prompt="none")
        self.assertEqual(r.status, 201, r.body)
        body = r.json
        self.assertEqual(body["expires_in"], 60)
        self.assertTrue(body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:"))
        b = Browser(stack)
        got = self.use(b, self.client, body["request_uri"])
        # The pushed parameters count (prompt=none, its state), not the query's.
        self.assertErrorRedirect(got, "login_required", fields)
        # Single use.
        self.assertPage(self.use(b, self.client, body["request_uri"]), 400)

    def test_client_secret_post_works_too(self):
        r, _ = self.push(auth="post")
        self.assertEqual(r.status, 201, r.body)

    def test_bound_to_its_client(self):
        r, _ = self.push()
        uri = r.json["request_uri"]
        self.assertPage(self.use(Browser(stack), self.other, uri), 400)
        # Another client's attempt did not spend it.
        got = self.use(Browser(stack), self.client, uri)
        self.assertEqual(got.status_code, 303)
        self.assertRegex(got.headers["Location"], LOGIN_PAGE)

    def test_expires(self):
        r, _ = self.push()
        stack.let_pass(61)
        self.assertPage(self.use(Browser(stack), self.client, r.json["request_uri"]), 400)

    def test_refusals(self):
        r = push(dict(self.client, client_secret="wrong"), auth_params(self.client))
        self.assertEqual(r.status, 401)
        r, _ = self.push(redirect_uri="https://evil.example/cb")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["error"], "invalid_request")
        r, _ = self.push(scope="email")
        self.assertEqual(r.json["error"], "invalid_scope")
        r, _ = self.push(client_id=self.other["client_id"])
        self.assertEqual(r.status, 400)
        r, _ = self.push(request_uri="urn:ietf:params:oauth:request_uri:x")
        self.assertEqual(r.status, 400)
        self.assertPage(self.use(Browser(stack), self.client,
                                 "urn:ietf:params:oauth:request_uri:nope"), 400)


class FlowLimit(E2ETestCase):
    """A flow is a record any page can make a browser write: [limits] authorization_flows
    bounds them per end-user address (429 page with Retry-After, no flow cookie); single
    sign-on writes no flow and is not held back."""

    @classmethod
    def setUpClass(cls):
        cls.st = harness.Stack(name="authz-flows", limits={"authorization_flows": "2/10m"})
        cls.st.start()
        cls.client = cls.st.make_client(redirect_uris=[REDIRECT])

    @classmethod
    def tearDownClass(cls):
        cls.st.stop()

    def test_flows_per_address(self):
        for _ in range(2):
            r = Browser(self.st).authorize(auth_params(self.client))
            self.assertEqual(r.status_code, 303)
        r = Browser(self.st).authorize(auth_params(self.client))
        self.assertEqual(r.status_code, 429, r.text[:300])
        self.assertGreater(int(r.headers["Retry-After"]), 0)
        self.assertNotIn("Location", r.headers)
        self.assertEqual(r.set_cookies(), [])
        # prompt=none needs no flow: still answered by redirect.
        p = auth_params(self.client, prompt="none")
        r = Browser(self.st).authorize(p)
        self.assertEqual(r.status_code, 303)
        self.assertEqual(query_of(r.headers["Location"])["error"], "login_required")


class Organizations(Base):
    """org_id: a member gets the code; anyone else access_denied, after a login too."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.org = "org-%d" % id(cls)
        stack.ctl("org", "add", "--name", "Org", "--id", cls.org)
        cls.member_email = harness.unique_email("member")
        member = stack.make_user(email=cls.member_email)
        stack.ctl("org", "member", "add", "--org", cls.org, "--user", member["user_id"],
                  "--role", "admin")
        cls.outsider_email = harness.unique_email("outsider")
        stack.make_user(email=cls.outsider_email)

    def test_member(self):
        p = auth_params(self.client, org_id=self.org)
        r = Browser(stack).login(p, self.member_email)
        self.assertEqual(r.status_code, 303)
        q = query_of(r.headers["Location"])
        t = exchange(stack, self.client, q["code"])
        self.assertEqual(t.status, 200, t.body)

    def test_outsider(self):
        b = Browser(stack)
        p = auth_params(self.client, org_id=self.org)
        self.assertErrorRedirect(b.login(p, self.outsider_email), "access_denied", p)
        # Signed in all the same: without org_id the session answers at once; with it, not.
        p = auth_params(self.client, prompt="none")
        self.assertIn("code", query_of(b.authorize(p).headers["Location"]))
        p = auth_params(self.client, org_id=self.org, prompt="none")
        self.assertErrorRedirect(b.authorize(p), "access_denied", p)
