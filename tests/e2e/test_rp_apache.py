"""A stock relying party in front of otlogin: Apache 2.4 + mod_auth_openidc (Debian 12 ships
2.4.12), configured by discovery alone, protecting two sites (two virtual hosts on two ports,
two otlogin clients) of one private Apache (rp_apache.py).

The scenario, once without PKCE (mod_auth_openidc 2.4.12's default) and once with
OIDCPKCEMethod S256:
1. a scripted browser opens site 1's /private/ and lands on otlogin's hosted login page (the
   authorization request carries mod_auth_openidc's random nonce, and a S256 challenge
   exactly when configured);
2. it gives the address, reads the code from otlogin's Maildir, types it in, and comes back
   to /private/, where the CGI sees the user's email and sub (OIDC_CLAIM_*);
3. site 2's /private/ lets it in with no new mail and no form: mod_auth_openidc goes to
   otlogin's /oidc/auth, which answers with a code at once (single sign-on through otlogin's
   login-session cookie);
4. site 1's logout URL (OIDCRedirectURI?logout=...) sends the browser to otlogin's
   end_session_endpoint with id_token_hint and post_logout_redirect_uri only, otlogin ends the
   session, clears its cookie and sends the browser back to site 1's logged-out page;
5. the next visit to site 1 asks for a code again (and a new code gets in), even with
   otlogin's old cookie put back; site 2 keeps its own mod_auth_openidc session (otlogin has
   no back-channel logout), and once that is gone asks for a code too.

The otlogin stack runs with [server] test_mode = yes, so its mail lands in its Maildir.
Missing Apache modules fail this module (rp_apache.missing_rp_tools); nothing is skipped."""

import urllib.parse

import harness
import rp_apache
from harness import E2ETestCase
from rp_apache import ApacheRP, Browser, Maildir

st = None


def setUpModule():
    global st
    why = rp_apache.missing_rp_tools()
    if why:
        raise harness.HarnessError("; ".join(why))
    st = harness.Stack(name="rp-apache", server={"test_mode": "yes"}).start()


def tearDownModule():
    if st is not None:
        st.stop()


class ApacheOpenIDC(E2ETestCase):
    PKCE = None

    @classmethod
    def setUpClass(cls):
        cls.stack = st
        cls.maildir = Maildir(st)
        cls.rp = ApacheRP(st, sites=2, pkce=cls.PKCE,
                          name="pkce" if cls.PKCE else "nopkce").start()

    @classmethod
    def tearDownClass(cls):
        cls.rp.stop()

    def on_otlogin(self, page):
        return page.url.startswith(st.base_url)

    def assertAuthRequest(self, b, since, site):
        reqs = rp_apache.authorization_requests(b, st, since)
        self.assertEqual(len(reqs), 1, "authorization requests: %r" % (b.history[since:],))
        q = reqs[0]
        self.assertEqual(q.get("client_id"), site.client["client_id"])
        self.assertEqual(q.get("redirect_uri"), site.redirect_uri)
        self.assertEqual(q.get("response_type"), "code")
        self.assertIn("openid", q.get("scope", "").split())
        # mod_auth_openidc always sends a random nonce (and checks it in the ID token).
        self.assertGreaterEqual(len(q.get("nonce", "")), 22, q)
        if self.PKCE:
            self.assertEqual(q.get("code_challenge_method"), "S256", q)
            self.assertRegex(q.get("code_challenge", ""), r"^[A-Za-z0-9_-]{43}$")
        else:
            self.assertNotIn("code_challenge", q)
        return q

    def assertInside(self, page, site, user):
        self.assertEqual(page.status, 200, "step 'back on %s/private/': %r" % (site.name, page))
        self.assertTrue(page.url.startswith(site.url("/private/")), page.url)
        claims = rp_apache.claims_of_page(page)
        self.assertEqual(claims.get("site"), site.name, page.text)
        self.assertEqual(claims.get("email"), user["email"]["value"], page.text)
        self.assertEqual(claims.get("sub"), user["user_id"], page.text)
        # etc/apache2/otlogin-openidc.conf: OIDCRemoteUserClaim sub
        self.assertEqual(claims.get("remote_user"), user["user_id"], page.text)
        self.assertEqual(claims.get("iss"), st.issuer, page.text)
        return claims

    def test_login_sso_logout(self):
        s1, s2 = self.rp.sites
        user = st.make_user()
        addr = user["email"]["value"]
        b = Browser()

        # 1. Site 1 sends the browser to otlogin's hosted login page.
        page = b.get(s1.url("/private/"))
        self.assertTrue(self.on_otlogin(page) and page.status == 200,
                        "step 'site 1 redirects to the hosted login page': %r\nhops: %r"
                        % (page, b.history))
        self.assertAuthRequest(b, 0, s1)

        # 2. The code from the Maildir gets the browser back into site 1.
        page = rp_apache.hosted_login(b, page, st, self.maildir, addr)
        self.assertInside(page, s1, user)
        self.assertEqual(len(rp_apache.code_callbacks(b, s1)), 1, b.history)
        self.assertIn("otlogin", b.cookies(), "otlogin set no login-session cookie")

        # 3. Site 2: single sign-on, no mail, no form.
        mark = len(b.history)
        page = b.get(s2.url("/private/"))
        self.assertInside(page, s2, user)
        self.assertAuthRequest(b, mark, s2)
        self.assertEqual(len(rp_apache.code_callbacks(b, s2, mark)), 1, b.history[mark:])
        self.assertEqual(self.maildir.pending(addr), [], "single sign-on sent a mail")

        # 4. Logout through mod_auth_openidc ends the session at otlogin.
        saved = [c for c in b.jar if c.name == "otlogin"]
        mark = len(b.history)
        page = b.get(s1.logout_url())
        ends = [urllib.parse.urlsplit(u) for u in b.visited(mark)
                if u.startswith(st.base_url) and "/oidc/session/end" in u]
        self.assertEqual(len(ends), 1, "step 'logout goes to end_session_endpoint': %r"
                         % (b.history[mark:],))
        q = dict(urllib.parse.parse_qsl(ends[0].query))
        self.assertIn("id_token_hint", q)
        self.assertEqual(q.get("post_logout_redirect_uri"), s1.logged_out_url)
        self.assertEqual(page.status, 200, "step 'back on the logged-out page': %r" % (page,))
        self.assertTrue(page.url.startswith(s1.logged_out_url), page.url)
        self.assertIn("logged out of site1", page.text)
        self.assertNotIn("otlogin", b.cookies(), "otlogin's cookie survived the logout")

        # 5. The next visit to site 1 asks for a code again, even from a browser that kept
        # otlogin's old cookie: the session behind it is over, not only the cookie.
        for c in saved:
            b.jar.set_cookie(c)
        # Site 2 keeps its own mod_auth_openidc session (no back-channel logout: README)...
        self.assertInside(b.get(s2.url("/private/")), s2, user)
        # ...and once that is gone it cannot get back in without a code either.
        for c in [c for c in b.jar if c.name == "rp_site2_session"]:
            b.jar.clear(c.domain, c.path, c.name)
        page = b.get(s2.url("/private/"))
        self.assertTrue(self.on_otlogin(page) and rp_apache.login_forms(page)[0] is not None,
                        "step 'after logout, site 2 asks for a code again': %r" % (page,))
        mark = len(b.history)
        page = b.get(s1.url("/private/"))
        self.assertTrue(self.on_otlogin(page) and rp_apache.login_forms(page)[0] is not None,
                        "step 'after logout, site 1 asks for a code again': %r" % (page,))
        page = rp_apache.hosted_login(b, page, st, self.maildir, addr)
        self.assertInside(page, s1, user)

    def test_logout_leaves_other_browsers_signed_in(self):
        """A second user on another browser is untouched by the first one's logout."""
        s1, _ = self.rp.sites
        u1, u2 = st.make_user(), st.make_user()
        b1, b2 = Browser(), Browser()
        for b, u in ((b1, u1), (b2, u2)):
            page = b.get(s1.url("/private/"))
            self.assertTrue(self.on_otlogin(page), "%r" % (page,))
            self.assertInside(rp_apache.hosted_login(b, page, st, self.maildir,
                                                     u["email"]["value"]), s1, u)
        page = b1.get(s1.logout_url())
        self.assertIn("logged out of site1", page.text)
        # b2's otlogin session is alive: a fresh relying-party session gets in without a code.
        for c in [c for c in b2.jar if c.name == "rp_site1_session"]:
            b2.jar.clear(c.domain, c.path, c.name)
        page = b2.get(s1.url("/private/"))
        self.assertInside(page, s1, u2)
        self.assertEqual(self.maildir.pending(u2["email"]["value"]), [])


class ApacheOpenIDCWithPKCE(ApacheOpenIDC):
    PKCE = "S256"
