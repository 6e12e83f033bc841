"""Magic links end to end (API.md "Seed operation 1", "The link and the redirect", "Seed
operation 2"; issue 3): POST /v1/auth/link/email/send through lighttpd, the message read from
the SMTP sink and taken apart with Python's email package, the landing page GET/HEAD (never
consuming) and POST (303 to the client's redirect_uri with code and state), then
POST /v1/auth/link/email/authenticate with the tokens verified by PyJWT against the JWKS.

Expiry needs a clock: the ClockedLinks class runs a second stack whose FastCGI workers see a
time the test moves forward (libfaketime, Debian package "faketime"); without libfaketime the
link-expiry tests are skipped and the code-expiry test waits out a 10-second code lifetime.
"""

import base64
import email.header
import email.utils
import os
import re
import struct
import time
import urllib.parse
import zlib
from html.parser import HTMLParser

import clock
import harness
from harness import E2ETestCase, mail_parts, unique_email

stack = None

SEND = "/cis/v1/auth/link/email/send"
AUTH = "/cis/v1/auth/link/email/authenticate"
OPEN = "/v1/auth/link/email/open"

REDIRECT = "https://app.example/auth/callback"
REDIRECT_QUERY = "https://app.example/cb?tenant=acme"
OTHER_REDIRECT = "http://127.0.0.1:9/landing"

MSG_REDIRECT = "redirect_uri is not one of the allowed redirect URIs configured for this app"
MSG_BAD_CODE = "Invalid magic link code"
DEFAULT_FOOTER = "If you didn't request this email, you can safely ignore it."
DEFAULT_COLOR = "#6981FF"

# Every header a link mail carries, once each (the injection tests compare against it).
MAIL_HEADERS = sorted(["From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                       "Auto-Submitted", "X-Auto-Response-Suppress", "Content-Type"])

# What the HTML part is made of; anything else (script, style, iframe, form...) is a bug.
MAIL_TAGS = {"html", "head", "meta", "title", "body", "table", "tr", "td", "a", "br", "img"}

TOKEN_RE = r"[A-Za-z0-9_-]{22,128}"  # >= 128 bits, base64url


def setUpModule():
    global stack
    stack = harness.Stack(name="link").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


# ---- helpers this module needs and the harness does not have -------------------------------

def make_png(width=8, height=8, rgb=(0x69, 0x81, 0xFF)):
    """A small valid PNG (8-bit RGB, one colour)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


# A 1x1 transparent GIF.
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
       b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def b64(data):
    return base64.b64encode(data).decode()


class HTMLScan(HTMLParser):
    """Tags with their attributes, and the text, of an HTML document."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags = []   # (tag, {attr: value})
        self.chunks = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self):
        return "".join(self.chunks)

    def attrs(self, tag, name):
        return [a.get(name) for t, a in self.tags if t == tag]


def csp_directives(value):
    """{directive: [sources]} of a Content-Security-Policy value."""
    out = {}
    for d in value.split(";"):
        words = d.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


class ClockStack(clock.ClockStack):
    """A clock.ClockStack (the workers on a clock the test moves, when libfaketime is
    installed) with a [link] section."""

    def __init__(self, link, **kw):
        super().__init__(**kw)
        self.link = dict(link)

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        with open(self.conf, "a") as f:
            f.write("[link]\n" + "".join("%s = %s\n" % kv for kv in self.link.items()))


# ---- the test case base --------------------------------------------------------------------

class LinkCase(E2ETestCase):
    """E2ETestCase with the magic-link steps. self.stack is the stack under test."""

    @property
    def st(self):
        return self.stack

    # -- send --

    def send(self, client, email=None, redirect_uri=REDIRECT, **extra):
        body = {"redirect_uri": redirect_uri}
        if email is not None:
            body["email"] = email
        body.update(extra)
        token = client["token"] if isinstance(client, dict) else client
        return self.st.http("POST", SEND, json=body, token=token)

    def send_ok(self, client, email=None, **extra):
        r = self.send(client, email, **extra)
        body = self.assertJSON(r, 200)
        self.assertEqual(body.get("message"), "Email sent successfully", "%r" % (r,))
        return body

    def assertNoMail(self, addr=None):
        """Nothing (more) was delivered. The server hands a message to SMTP before it answers
        send, so a mail that was going to come is already in the sink."""
        pending = self.st.mailbox.pending(addr)
        self.assertEqual(pending, [], "unexpected mail: %r"
                         % [m["raw"][:300] for m in pending])

    def assertRefused(self, r, status=400, error_code="400", message=None, addr=None):
        """An error answer to send, and no mail."""
        body = self.assertError(r, status, error_code)
        if message is not None:
            self.assertEqual(body["message"], message)
        self.assertNotIn("link", body)
        self.assertNoMail(addr)
        return body

    def wait_link_mail(self, addr):
        """(message, raw bytes, link) of the next mail to addr."""
        m = self.st.mailbox.wait(addr)
        return m["msg"], m["raw"], self.link_in(m["msg"])

    def link_in(self, msg):
        """The link of a message, from its decoded text/plain part; checked to be ours."""
        parts = mail_parts(msg)
        self.assertIn("text/plain", parts)
        prefix = self.st.base_url + OPEN + "?t="
        links = set(re.findall(r"(?<!\S)%s\S*" % re.escape(prefix), parts["text/plain"]))
        self.assertEqual(len(links), 1, "links in the text part: %r" % links)
        link = links.pop()
        self.assertRegex(link[len(prefix):], "^%s$" % TOKEN_RE)
        return link

    def send_and_link(self, client, addr, **extra):
        self.send_ok(client, addr, **extra)
        return self.wait_link_mail(addr)[2]

    # -- landing --

    def path_of(self, link):
        u = urllib.parse.urlsplit(link)
        self.assertEqual(u.netloc, "127.0.0.1:%d" % self.st.port)
        return u.path + ("?" + u.query if u.query else "")

    def open(self, link, method="GET", headers=None):
        """One request for the link (a full URL or a path); redirects are not followed."""
        path = self.path_of(link) if "://" in link else link
        return self.st.http(method, path, headers=headers)

    def assertPage(self, r, status, *phrases):
        """A landing page: HTML with the security headers and these phrases in its text."""
        self.assertEqual(r.status, status, "%r" % (r,))
        self.assertTrue(r.content_type.lower().startswith("text/html"), "%r" % (r,))
        self.assertIn("no-store", r.headers.get("Cache-Control", "").lower())
        self.assertEqual(r.headers.get("Referrer-Policy"), "no-referrer")
        csp = csp_directives(r.headers.get("Content-Security-Policy", ""))
        self.assertEqual(csp.get("default-src"), ["'none'"], "CSP %r" % (csp,))
        self.assertIn("form-action", csp)
        self.assertNotIn("Location", r.headers)
        html = r.body.decode("utf-8")
        scan = HTMLScan(html)
        # Self-contained: nothing is loaded from elsewhere, no script.
        for tag, attrs in scan.tags:
            self.assertNotIn(tag, ("script", "img", "link", "iframe", "object", "embed"))
            self.assertFalse([a for a in attrs if a.startswith("on")], "%s %r" % (tag, attrs))
        for p in phrases:
            self.assertIn(p.lower(), scan.text.lower(), "page text: %r" % scan.text)
        return html, scan, csp

    def assertLandingPage(self, r, link, addr, redirect_uri=REDIRECT):
        """GET of a valid link: a page whose button POSTs to the link, a masked address."""
        html, scan, csp = self.assertPage(r, 200, "Continue")
        forms = [a for t, a in scan.tags if t == "form"]
        self.assertEqual(len(forms), 1, html)
        self.assertEqual(forms[0].get("method", "").lower(), "post")
        self.assertEqual(urllib.parse.urljoin(link, forms[0].get("action", "")), link,
                         "the button does not post to the link itself")
        self.assertTrue([a for t, a in scan.tags if t == "button"] or
                        [a for t, a in scan.tags if t == "input" and a.get("type") == "submit"])
        local, domain = addr.split("@")
        self.assertNotIn(addr.lower(), html.lower(), "full address on the page")
        self.assertNotIn(local.lower(), html.lower(), "unmasked local part on the page")
        self.assertRegex(scan.text, r"\S+@\S+", "no (masked) address on the page")
        origin = "%s://%s" % urllib.parse.urlsplit(redirect_uri)[:2]
        self.assertIn(origin, csp["form-action"], "form-action must allow the redirect")
        self.assertEqual(csp.get("frame-ancestors"), ["'none'"])
        return html

    def click(self, link, redirect_uri=REDIRECT, headers=None):
        """POST the link as the page's button does (form proof and cookie); the 303's query
        parameters."""
        r = self.st.open_link(link, headers=headers)
        self.assertEqual(r.status, 303, "%r" % (r,))
        self.assertIn("no-store", r.headers.get("Cache-Control", "").lower())
        self.assertEqual(r.headers.get("Referrer-Policy"), "no-referrer")
        loc = r.headers.get("Location", "")
        # One absolute URI, printable ASCII only (a raw space or '#' would cut the state).
        self.assertRegex(loc, r"^[!-~]+$")
        self.assertNotIn("#", loc)
        sep = "&" if "?" in redirect_uri else "?"
        self.assertTrue(loc.startswith(redirect_uri + sep + "code="),
                        "Location %r for redirect_uri %r" % (loc, redirect_uri))
        query = urllib.parse.urlsplit(loc).query
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True)
        for k, v in params.items():
            self.assertEqual(len(v), 1, "%s repeated in %r" % (k, loc))
        params = {k: v[0] for k, v in params.items()}
        self.assertRegex(params.get("code", ""), "^%s$" % TOKEN_RE)
        return params

    def login_code(self, client, addr, redirect_uri=REDIRECT, **extra):
        link = self.send_and_link(client, addr, redirect_uri=redirect_uri, **extra)
        return self.click(link, redirect_uri)["code"]

    # -- authenticate --

    def authenticate(self, client, code, **extra):
        body = {"code": code}
        body.update(extra)
        token = client["token"] if isinstance(client, dict) else client
        return self.st.http("POST", AUTH, json=body, token=token)

    def assertBadCode(self, r):
        body = self.assertJSON(r, 400)
        self.assertEqual(body, {"error_code": "400", "message": MSG_BAD_CODE})

    def check_tokens(self, r, client, user_id):
        """The token response of a link login, JWTs verified with PyJWT; (body, id claims)."""
        body = self.assertTokenResponse(r)
        self.assertNotIn("code", body)
        _, idc = self.st.verify_jwt(body["id_token"], "JWT", client["client_id"])
        _, atc = self.st.verify_jwt(body["access_token"], "at+jwt", client["client_id"])
        self.assertEqual(idc["iss"], self.st.base_url)
        self.assertEqual(idc["aud"], client["client_id"])
        self.assertEqual(idc["sub"], user_id)
        self.assertEqual(atc["sub"], user_id)
        self.assertIsInstance(idc.get("amr"), list)
        self.assertIn("eml", idc["amr"])
        self.assertIn("auth_time", idc)
        # sid is the session's public handle (not the session_id secret), the same in both.
        self.assertIsInstance(idc.get("sid"), str)
        self.assertEqual(idc["sid"], atc.get("sid"))
        self.assertEqual(atc.get("client_id"), client["client_id"])
        return body, idc

    # -- users --

    def user_record(self, user_id=None, email=None):
        users = self.st.ctl("user", "list", parse=True)
        for u in users:
            if user_id is not None and u.get("user_id") == user_id:
                return u
            if email is not None and (u.get("email") or {}).get("value") == email:
                return u
        return None


# ---- the flow ------------------------------------------------------------------------------

class LinkFlow(LinkCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT, REDIRECT_QUERY])

    def test_full_flow(self):
        """send -> mail -> GET page -> a mail scanner's GETs and HEADs -> POST -> 303 with
        code and state -> authenticate -> verified JWTs; then single use everywhere."""
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        self.assertFalse(user["email"]["email_verified"])
        state = "st-" + os.urandom(6).hex()

        r = self.send(self.client, addr, state=state)
        self.assertEqual(self.assertJSON(r, 200), {"message": "Email sent successfully"})
        msg, raw, link = self.wait_link_mail(addr)
        self.assertNotIn(link.split("?t=")[1].encode(), r.body, "send echoes the link token")

        # The message: default template, multipart/alternative of text and HTML.
        self.assertEqual(sorted(msg.keys()), MAIL_HEADERS)
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        self.assertEqual([p.get_content_type() for p in msg.iter_parts()],
                         ["text/plain", "text/html"])
        self.assertEqual([a.addr_spec for a in msg["To"].addresses], [addr])
        self.assertEqual([a.addr_spec for a in msg["From"].addresses], ["otlogin@localhost"])
        self.assertEqual(msg["Subject"], "Sign in to %s" % self.client_name())
        parts = mail_parts(msg)
        self.assertIn("15 minutes", parts["text/plain"])   # [link] ttl_minutes default
        self.assertIn(DEFAULT_FOOTER, parts["text/plain"])
        scan = HTMLScan(parts["text/html"])
        self.assertEqual(set(scan.attrs("a", "href")), {link})
        self.assertIn(DEFAULT_COLOR, parts["text/html"])
        self.assertIn(DEFAULT_FOOTER, scan.text)
        self.assertEqual(stack.mailbox.all_recipients().count(addr), 1)

        # The landing page, as often as a scanner likes: nothing is consumed.
        r = self.open(link)
        self.assertLandingPage(r, link, addr)
        for _ in range(5):
            self.assertLandingPage(self.open(link), link, addr)
            h = self.open(link, "HEAD")
            self.assertEqual(h.status, 200, "%r" % (h,))
            self.assertEqual(h.body, b"")
            self.assertEqual(h.headers.get("Referrer-Policy"), "no-referrer")
            self.assertIn("no-store", h.headers.get("Cache-Control", ""))

        params = self.click(link)
        self.assertEqual(params, {"code": params["code"], "state": state})
        code = params["code"]

        # The link is spent: the button again, or a late GET, says so (no redirect).
        self.assertPage(self.open(link, "POST"), 410, "already used")
        self.assertPage(self.open(link), 410, "already used")

        r = self.authenticate(self.client, code)
        _, idc = self.check_tokens(r, self.client, uid)
        self.assertNotIn(code.encode(), r.body)

        # The code is single use.
        self.assertBadCode(self.authenticate(self.client, code))

        # Email verified by the login.
        rec = self.user_record(uid)
        self.assertIsNotNone(rec)
        self.assertTrue(rec["email"]["email_verified"], "%r" % (rec,))
        self.assertTrue(rec["email"]["verified_at"])

    def client_name(self):
        for c in stack.ctl("client", "list", parse=True):
            if c.get("client_id") == self.client["client_id"]:
                return c["name"]
        self.fail("client not listed")

    def test_state(self):
        """state comes back exactly, percent-encoded; without state there is none."""
        cases = ["plain", "a b&c=d+e/f?g#h%i", "caf\u00e9 \u2603 \U0001F510", "x" * 512]
        for state in cases:
            with self.subTest(state=state[:40]):
                addr = stack.make_user()["email"]["value"]
                link = self.send_and_link(self.client, addr, state=state)
                params = self.click(link)
                self.assertEqual(params.get("state"), state)
        addr = stack.make_user()["email"]["value"]
        link = self.send_and_link(self.client, addr)
        self.assertEqual(set(self.click(link)), {"code"})

    def test_state_cannot_inject_headers(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        for state in ("a\r\nSet-Cookie: x=1", "a\nLocation: https://evil.example/", "a\rb"):
            with self.subTest(state=state):
                self.assertRefused(self.send(self.client, addr, state=state), addr=addr)

    def test_redirect_uri_with_query(self):
        """A registered redirect URI with a query gets &code=...&state=..."""
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(self.client, addr, redirect_uri=REDIRECT_QUERY, state="s1")
        self.assertLandingPage(self.open(link), link, addr, REDIRECT_QUERY)
        params = self.click(link, REDIRECT_QUERY)
        self.assertEqual(params, {"tenant": "acme", "code": params["code"], "state": "s1"})
        self.check_tokens(self.authenticate(self.client, params["code"]), self.client,
                          user["user_id"])

    def test_browser_form_post(self):
        """The button's POST as a browser sends it: form content type, empty body."""
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(self.client, addr)
        params = self.click(link, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Content-Length": "0",
            "Origin": "http://127.0.0.1:%d" % stack.port, "Referer": link,
        })
        self.check_tokens(self.authenticate(self.client, params["code"]), self.client,
                          user["user_id"])

    def test_identifier_forms(self):
        """The identifier form (email, user_id, username) and an email in another case all
        mail the user's own address, and the login is that user's."""
        user = stack.make_user(username="link-" + os.urandom(5).hex())
        addr, uid = user["email"]["value"], user["user_id"]
        forms = [
            {"identifier": addr, "identifier_type": "email"},
            {"identifier": uid, "identifier_type": "user_id"},
            {"identifier": user["username"], "identifier_type": "username"},
            {"email": addr.upper()},
        ]
        for form in forms:
            with self.subTest(form=form):
                r = self.st.http("POST", SEND, token=self.client["token"],
                                 json=dict(form, redirect_uri=REDIRECT))
                self.assertEqual(self.assertJSON(r, 200), {"message": "Email sent successfully"})
                msg, _, link = self.wait_link_mail(addr)
                self.assertEqual([a.addr_spec for a in msg["To"].addresses], [addr])
                code = self.click(link)["code"]
                self.check_tokens(self.authenticate(self.client, code), self.client, uid)

    def test_email_expiration_shown(self):
        addr = stack.make_user()["email"]["value"]
        self.send_ok(self.client, addr, email_expiration=5)
        msg, _, _ = self.wait_link_mail(addr)
        self.assertIn("5 minutes", mail_parts(msg)["text/plain"])

    def test_claims_email_verified(self):
        """claims asks for email and email_verified: the id token has them, verified."""
        user = stack.make_user()
        addr = user["email"]["value"]
        code = self.login_code(self.client, addr)
        r = self.authenticate(self.client, code,
                              claims={"id_token": {"email": None, "email_verified": None}})
        _, idc = self.check_tokens(r, self.client, user["user_id"])
        self.assertEqual(idc.get("email"), addr)
        self.assertIs(idc.get("email_verified"), True)


class Channels(LinkCase):
    def test_direct_channel(self):
        """direct: the link comes back in the response, nothing is mailed; it works."""
        client = stack.new_client(redirect_uris=[REDIRECT], permissions=["direct"])
        user = stack.make_user()
        addr = user["email"]["value"]
        body = self.send_ok(client, addr, channel="direct", state="d")
        self.assertEqual(set(body), {"message", "link"})
        link = body["link"]
        self.assertTrue(link.startswith(stack.base_url + OPEN + "?t="), link)
        self.assertNoMail(addr)
        self.assertLandingPage(self.open(link), link, addr)
        params = self.click(link)
        self.assertEqual(params["state"], "d")
        self.check_tokens(self.authenticate(client, params["code"]), client, user["user_id"])

    def test_direct_needs_permission(self):
        client = stack.new_client(redirect_uris=[REDIRECT])
        addr = stack.make_user()["email"]["value"]
        self.assertRefused(self.send(client, addr, channel="direct"), 403, "403", addr=addr)
        # channel "email" (explicit) still works for that client.
        self.send_ok(client, addr, channel="email")
        self.wait_link_mail(addr)

    def test_signup_closed(self):
        client = stack.new_client(redirect_uris=[REDIRECT], signup="closed")
        addr = unique_email("nobody")
        self.assertRefused(self.send(client, addr), 404, "404", addr=addr)
        r = self.st.http("POST", SEND, token=client["token"],
                         json={"identifier": addr, "identifier_type": "email",
                               "redirect_uri": REDIRECT})
        self.assertRefused(r, 404, "404", addr=addr)
        # A known user still gets a link from that client.
        user = stack.make_user()
        code = self.login_code(client, user["email"]["value"])
        self.check_tokens(self.authenticate(client, code), client, user["user_id"])

    def test_signup_open(self):
        """open: an unknown address gets a link; the user exists only after authenticate,
        with the address verified."""
        client = stack.new_client(redirect_uris=[REDIRECT], signup="open")
        addr = unique_email("newcomer")
        link = self.send_and_link(client, addr)
        self.assertIsNone(self.user_record(email=addr), "user created at send")
        code = self.click(link)["code"]
        r = self.authenticate(client, code)
        self.assertTokenResponse(r)
        rec = self.user_record(email=addr)
        self.assertIsNotNone(rec, "no user after the first login")
        self.assertTrue(rec["email"]["email_verified"])
        self.check_tokens(r, client, rec["user_id"])


    def test_disabled_user(self):
        """A disabled user gets no link (403), and a link sent before is worth nothing."""
        admin = stack.new_client(redirect_uris=[REDIRECT], permissions=["admin"])
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(admin, addr)
        r = self.st.http("PUT", "/cis/v1/users/" + user["user_id"], json={"status": "Disabled"},
                         token=admin["token"])
        self.assertEqual(self.assertJSON(r, 200)["result"]["status"], "Disabled")
        code = self.click(link)["code"]
        self.assertError(self.authenticate(admin, code), 403)
        self.assertRefused(self.send(admin, addr), 403, "403", addr=addr)

    def test_new_link_replaces_previous(self):
        """(link.c policy, not API.md) A new link for the same user and client makes the
        previous one unknown; 20 concurrent sends leave exactly one usable link."""
        client = stack.new_client(redirect_uris=[REDIRECT])
        other = stack.new_client(redirect_uris=[REDIRECT])
        user = stack.make_user()
        addr = user["email"]["value"]
        first = self.send_and_link(client, addr)
        from_other = self.send_and_link(other, addr)
        second = self.send_and_link(client, addr)
        self.assertPage(self.open(first), 404, "not valid")
        self.assertLandingPage(self.open(from_other), from_other, addr)
        self.assertLandingPage(self.open(second), second, addr)

        results = stack.parallel([lambda: self.send(client, addr) for _ in range(20)],
                                 threads=20)
        self.assertEqual([r.status for r in results], [200] * 20)
        links = [self.wait_link_mail(addr)[2] for _ in range(20)]
        self.assertNoMail(addr)
        statuses = [self.open(link).status for link in links + [second]]
        self.assertEqual(sorted(statuses), [200] + [404] * 20, statuses)
        live = [link for link, status in zip(links, statuses) if status == 200]
        code = self.click(live[0])["code"]
        self.check_tokens(self.authenticate(client, code), client, user["user_id"])


class SendRefusals(LinkCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT, REDIRECT_QUERY],
                                      permissions=["direct"])

    def test_redirect_uri_not_registered(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        bad = [
            "https://APP.EXAMPLE/auth/callback",      # host case
            "https://app.example/Auth/Callback",      # path case
            "HTTPS://app.example/auth/callback",      # scheme case
            REDIRECT + "?x=1",                        # extra query
            REDIRECT + "?",                           # empty query
            REDIRECT + "#frag",                       # fragment
            REDIRECT + "/",                           # trailing slash
            REDIRECT + "/more",                       # longer path
            REDIRECT[:-1],                            # prefix
            REDIRECT + " ",                           # trailing space
            "http://app.example/auth/callback",       # other scheme
            "https://app.example:443/auth/callback",  # explicit port
            "https://app.example.evil.example/auth/callback",
            "https://app.example@evil.example/auth/callback",
            "https://app.example/auth%2Fcallback",
            "https://app.example/auth/./callback",
            "https://app.example/cb",                 # REDIRECT_QUERY without its query
            REDIRECT_QUERY + "&x=1",
            "https://app.example/cb?TENANT=acme",
            OTHER_REDIRECT,                           # another client's
        ]
        for uri in bad:
            for channel in ("email", "direct"):
                with self.subTest(redirect_uri=uri, channel=channel):
                    r = self.send(self.client, addr, redirect_uri=uri, channel=channel)
                    body = self.assertRefused(r, addr=addr)
                    self.assertEqual(body, {"error_code": "400", "message": MSG_REDIRECT})
        # The registered one is fine (the refusals were about the URI, not the user).
        self.send_ok(self.client, addr)
        self.wait_link_mail(addr)
        self.assertNoMail(addr)

    def test_bad_requests(self):
        addr = stack.make_user()["email"]["value"]
        cases = {
            "email and identifier": {"email": addr, "identifier": addr,
                                     "identifier_type": "email"},
            "email and identifier_type": {"email": addr, "identifier_type": "email"},
            "identifier without type": {"identifier": addr},
            "neither": {},
            "no redirect_uri": {"email": addr, "redirect_uri": None},
            "unknown channel": {"email": addr, "channel": "sms"},
            "email_expiration 0": {"email": addr, "email_expiration": 0},
            "email_expiration string": {"email": addr, "email_expiration": "5"},
            "generate_request_id string": {"email": addr, "generate_request_id": "true"},
            "email_content without subject": {"email": addr,
                                              "email_content": {"headerText": "x"}},
            "bad address": {"email": "not an address"},
        }
        for name, fields in cases.items():
            with self.subTest(case=name):
                body = {"redirect_uri": REDIRECT}
                body.update(fields)
                body = {k: v for k, v in body.items() if v is not None}
                r = self.st.http("POST", SEND, json=body, token=self.client["token"])
                self.assertRefused(r, addr=addr)

    def test_bearer_required(self):
        addr = stack.make_user()["email"]["value"]
        body = {"email": addr, "redirect_uri": REDIRECT}
        self.assertInvalidToken(self.st.http("POST", SEND, json=body))
        self.assertInvalidToken(self.st.http("POST", SEND, json=body, token="x.y.z"))
        self.assertInvalidToken(self.st.http("POST", AUTH, json={"code": "abc"}))
        self.assertNoMail(addr)



class RedirectLength(LinkCase):
    """The redirect's Location (redirect_uri, the code, state percent-encoded) is at most 2047
    bytes: otlogin's limit on a header value, well inside what lighttpd, nginx and Apache pass
    on. A redirect_uri plus state that would not fit is refused when the link is sent (400),
    never cut short when it is opened."""

    LIMIT = 2047
    CODE = 43  # 32 random bytes, base64url
    FIXED = len("?code=") + CODE + len("&state=")
    URI_LEN = 1500

    @classmethod
    def setUpClass(cls):
        base = "https://app.example/cb/"
        cls.uri = base + "a" * (cls.URI_LEN - len(base))
        cls.client = stack.new_client(redirect_uris=[cls.uri], permissions=["direct"])

    def test_longest_that_fits(self):
        state = "s" * (self.LIMIT - self.URI_LEN - self.FIXED)
        addr = stack.make_user()["email"]["value"]
        body = self.send_ok(self.client, addr, redirect_uri=self.uri, state=state,
                            channel="direct")
        params = self.click(body["link"], redirect_uri=self.uri)
        self.assertEqual(params.get("state"), state)

    def test_longer_is_refused_at_send(self):
        fits = self.LIMIT - self.URI_LEN - self.FIXED
        states = {
            "one byte more": "s" * (fits + 1),
            # Each byte outside the unreserved set takes three: 2 * 3 * 80 = 480 bytes.
            "percent-encoded": "\u00e9" * 80 + "s" * (fits - 480 + 1),
        }
        addr = stack.make_user()["email"]["value"]
        for name, state in states.items():
            for channel in ("email", "direct"):
                with self.subTest(name, channel=channel):
                    r = self.send(self.client, addr, redirect_uri=self.uri, state=state,
                                  channel=channel)
                    body = self.assertRefused(r, addr=addr)
                    self.assertIn("too long", body["message"])

    def test_origin_too_long_for_the_page(self):
        """The landing page's form-action names the redirect's origin (at most 255 bytes):
        a longer one would be cut short there, so such a link is refused at send too."""
        uri = "https://" + "a" * 250 + ".example/cb"
        client = stack.new_client(redirect_uris=[uri], permissions=["direct"])
        addr = stack.make_user()["email"]["value"]
        r = self.send(client, addr, redirect_uri=uri, channel="direct")
        self.assertIn("too long", self.assertRefused(r, addr=addr)["message"])



class LandingCrossSite(LinkCase):
    """The landing page's POST consumes the link, so another site must not be able to make a
    browser send it: a POST counts only when Sec-Fetch-Site says same-origin, else when Origin
    is otlogin's own, else (a browser sending neither, or Origin: null) with the page's form
    proof and the cookie the page set. A refused POST leaves the link usable."""

    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT], permissions=["direct"])

    def new_link(self):
        addr = stack.make_user()["email"]["value"]
        return self.send_ok(self.client, addr, channel="direct")["link"]

    def post(self, link, headers, form=None):
        return self.st.http("POST", self.path_of(link), form=form or {}, headers=headers)

    def assertRefusedPost(self, r, link):
        self.assertPage(r, 403, "did not come from the sign-in page")
        self.assertNotIn("Location", r.headers)
        # Nothing was spent: a real click still works.
        self.click(link)

    @property
    def origin(self):
        return "http://127.0.0.1:%d" % self.st.port

    def test_cross_site_fetch_metadata_refused(self):
        for site in ("cross-site", "same-site", "none", "CROSS-SITE"):
            with self.subTest(sec_fetch_site=site):
                link = self.new_link()
                r = self.post(link, {"Sec-Fetch-Site": site, "Origin": self.origin})
                self.assertRefusedPost(r, link)

    def test_foreign_origin_refused(self):
        for origin in ("https://evil.example", "http://127.0.0.1", self.origin + ".evil.example",
                       "http://127.0.0.1:%d" % (self.st.port + 1), "https://127.0.0.1:%d"
                       % self.st.port):
            with self.subTest(origin=origin):
                link = self.new_link()
                self.assertRefusedPost(self.post(link, {"Origin": origin}), link)

    def test_without_headers_the_form_proof_is_required(self):
        link = self.new_link()
        action, fields, cookie = self.st.landing_form(link)
        other_action, other_fields, other_cookie = self.st.landing_form(self.new_link())
        cases = {
            "nothing": ({}, {}),
            "Origin null, nothing else": ({"Origin": "null"}, {}),
            "proof without its cookie": ({}, fields),
            "cookie without the proof": ({"Cookie": cookie}, {}),
            "another browser's cookie": ({"Cookie": other_cookie}, fields),
            "another link's proof": ({"Cookie": other_cookie}, other_fields),
            "a wrong proof": ({"Cookie": cookie}, {"f": "0" * 64}),
        }
        for name, (headers, form) in cases.items():
            with self.subTest(name):
                self.assertPage(self.post(link, headers, form), 403,
                                "did not come from the sign-in page")
        self.click(link)

    def test_form_proof_with_its_cookie_works(self):
        """A browser sending neither Sec-Fetch-Site nor a usable Origin (Origin: null, as the
        page's no-referrer policy makes some send) opens the link with the page's form."""
        for headers in ({}, {"Origin": "null"}):
            with self.subTest(headers=headers):
                link = self.new_link()
                r = self.st.open_link(link, headers=headers)
                self.assertEqual(r.status, 303, "%r" % (r,))
                self.assertTrue(r.headers["Location"].startswith(REDIRECT + "?code="))

    def test_pages_share_the_browser_cookie(self):
        """A browser that already has the cookie keeps it: two tabs' forms both work."""
        link = self.new_link()
        _, fields, cookie = self.st.landing_form(link)
        r = self.st.http("GET", self.path_of(link), headers={"Cookie": cookie})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("Set-Cookie", "").split(";")[0], cookie)
        self.assertEqual(self.post(link, {"Cookie": cookie}, fields).status, 303)

    def test_cookie_attributes(self):
        r = self.st.http("GET", self.path_of(self.new_link()))
        attrs = [a.strip().lower() for a in r.headers["Set-Cookie"].split(";")]
        self.assertTrue(attrs[0].startswith("otlogin-link="))
        for a in ("path=/", "httponly", "samesite=strict"):
            self.assertIn(a, attrs)
        self.assertNotIn("secure", attrs)  # http://127.0.0.1: a Secure cookie would be lost

    def test_same_origin_posts_work(self):
        for headers in ({"Sec-Fetch-Site": "same-origin"},
                        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
                        {"Sec-Fetch-Site": "same-origin", "Origin": self.origin},
                        {"Origin": self.origin}):
            with self.subTest(headers=headers):
                link = self.new_link()
                r = self.post(link, headers)
                self.assertEqual(r.status, 303, "%r" % (r,))

    def test_spent_link_says_so_to_any_post(self):
        link = self.new_link()
        self.click(link)
        self.assertPage(self.post(link, {"Sec-Fetch-Site": "cross-site"}), 410, "already used")
        self.assertPage(self.post(link, {}), 410, "already used")


# ---- the mail ------------------------------------------------------------------------------

class RedirectRegistration(LinkCase):
    """otloginctl client add takes http:// redirect URIs only for loopback (RFC 8252 section
    7.3) unless --allow-http-redirect is given: elsewhere the redirect's code would cross the
    network in clear. A refused client is not stored."""

    def add(self, *args):
        """otloginctl client add; (exit status, stdout + stderr)."""
        cmd = [self.st.ctl_bin, "-c", self.st.conf, "client", "add", "--name", "redir"]
        r = harness.subprocess.run(cmd + list(args), capture_output=True, text=True,
                                   timeout=harness.CTL_TIMEOUT)
        return r.returncode, r.stdout + r.stderr

    def client_count(self):
        return len(self.st.ctl("client", "list", parse=True))

    def test_http_only_on_loopback(self):
        refused = [
            "http://app.example/auth/callback",
            "http://10.0.0.1/cb",
            "http://127.0.0.1@evil.example/cb",          # userinfo: the host is evil.example
            "http://localhost@evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://localhost.evil.example/cb",
            "http://[::1]evil.example/cb",
            "http://127.0.0.1:80x/cb",
            "http://0x7f.0.0.1/cb",
            "http://2130706433/cb",
            "http://[::2]/cb",
            "http:///cb",
        ]
        before = self.client_count()
        for uri in refused:
            with self.subTest(redirect_uri=uri):
                rc, out = self.add("--redirect-uri", "https://app.example/ok",
                                   "--redirect-uri", uri)
                self.assertEqual(rc, 1, out)
                self.assertIn("--allow-http-redirect", out)
        self.assertEqual(self.client_count(), before, "a refused client was stored")
        accepted = ["http://127.0.0.1/cb", "http://127.0.0.1:8123/cb?x=1", "http://127.9.8.7",
                    "http://localhost:3000/callback", "http://LOCALHOST/cb",
                    "http://[::1]:9/cb", "http://[::1]/", "https://app.example/auth/callback"]
        for uri in accepted:
            with self.subTest(redirect_uri=uri):
                rc, out = self.add("--redirect-uri", uri)
                self.assertEqual(rc, 0, out)
        self.assertEqual(self.client_count(), before + len(accepted))

    def test_allow_http_redirect_flag(self):
        uri = "http://app.example/auth/callback"
        rc, out = self.add("--redirect-uri", uri, "--allow-http-redirect")
        self.assertEqual(rc, 0, out)
        client = harness.parse_json(out)
        listed = [c for c in self.st.ctl("client", "list", parse=True)
                  if c["client_id"] == client["client_id"]]
        self.assertEqual(len(listed), 1)
        self.assertIs(listed[0].get("allow_http_redirect"), True)
        self.assertEqual(listed[0]["redirect_uris"], [uri])
        # The link flow takes it.
        client["token"] = self.st.client_token(client["client_id"], client["client_secret"])
        addr = self.st.make_user()["email"]["value"]
        self.send_ok(client, addr, redirect_uri=uri)
        self.wait_link_mail(addr)
        # A flag takes no value: what follows it is the next option.
        rc, out = self.add("--allow-http-redirect", "--redirect-uri", uri)
        self.assertEqual(rc, 0, out)


class MailCase(LinkCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT])

    def send_content(self, content, addr=None):
        addr = addr or stack.make_user()["email"]["value"]
        self.send_ok(self.client, addr, email_content=content)
        msg, raw, link = self.wait_link_mail(addr)
        return msg, raw, link

    def assertHeaderSection(self, raw):
        """The header section is 7-bit, lines within 998 octets, each header once."""
        head = raw.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(all(b < 0x80 for b in head), "8-bit header: %r" % head)
        for line in head.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        return head.decode("ascii")

    def assertSafeHTML(self, html, link, logo_cid=None):
        """Only the template's tags, no event handlers, links only to our link, images only
        cid:. Returns the scan."""
        scan = HTMLScan(html)
        for tag, attrs in scan.tags:
            self.assertIn(tag, MAIL_TAGS, "tag <%s %r> in the mail" % (tag, attrs))
            for name, value in attrs.items():
                self.assertFalse(name.startswith("on"), "<%s %s=%r>" % (tag, name, value))
                if value and name == "style":
                    self.assertNotIn("url(", value.lower())
                    self.assertNotIn("expression", value.lower())
        self.assertTrue(scan.attrs("a", "href"))
        self.assertEqual(set(scan.attrs("a", "href")), {link})
        srcs = scan.attrs("img", "src")
        self.assertEqual(srcs, ["cid:" + logo_cid] if logo_cid else [])
        return scan


class MailContent(MailCase):
    def test_full_content_with_logo(self):
        png = make_png(16, 16, (0x12, 0xAB, 0x34))
        content = {
            "subject": "Your Acme sign-in link",
            "senderName": "Acme Support",
            "headerText": "Welcome back",
            "bodyText": "Tap the button to sign in to Acme.",
            "linkText": "Sign in to Acme",
            "infoText": "The link works once, for 15 minutes.",
            "footerText": "Acme Inc., 1 Example Road",
            "primaryColor": "#12AB34",
            "base64logo": b64(png),
            "futureField": "ignored",
        }
        msg, raw, link = self.send_content(content)
        self.assertHeaderSection(raw)
        self.assertEqual(sorted(msg.keys()), MAIL_HEADERS)
        self.assertEqual(msg["Subject"], content["subject"])
        (frm,) = msg["From"].addresses
        self.assertEqual((frm.display_name, frm.addr_spec), ("Acme Support", "otlogin@localhost"))

        # multipart/related { multipart/alternative { text, html }, image/png (inline, cid) }
        self.assertEqual(msg.get_content_type(), "multipart/related")
        self.assertEqual(msg.get_param("type"), "multipart/alternative")
        alt, img = list(msg.iter_parts())
        self.assertEqual(alt.get_content_type(), "multipart/alternative")
        self.assertEqual([p.get_content_type() for p in alt.iter_parts()],
                         ["text/plain", "text/html"])
        self.assertEqual(img.get_content_type(), "image/png")
        self.assertEqual(img.get_content_disposition(), "inline")
        self.assertEqual(img.get_content(), png)
        cid = img["Content-ID"].strip()
        self.assertRegex(cid, r"^<[^<>\s]+@[^<>\s]+>$")
        cid = cid[1:-1]

        parts = mail_parts(msg)
        html, text = parts["text/html"], parts["text/plain"]
        scan = self.assertSafeHTML(html, link, logo_cid=cid)
        self.assertNotIn("data:", html)
        for field in ("headerText", "bodyText", "linkText", "infoText", "footerText"):
            self.assertIn(content[field], scan.text, field)
            self.assertIn(content[field], text, field)
        self.assertIn(content["subject"], scan.text)  # <title>
        self.assertIn("#12AB34", html)
        self.assertNotIn(DEFAULT_COLOR, html)
        self.assertNotIn(DEFAULT_FOOTER, text)
        self.assertNotIn("futureField", html + text)
        # The button's text is the link's text.
        self.assertIn(">%s</a>" % content["linkText"], html)

    def test_gif_logo(self):
        msg, _, link = self.send_content({"subject": "GIF", "base64logo": b64(GIF)})
        self.assertEqual(msg.get_content_type(), "multipart/related")
        img = list(msg.iter_parts())[1]
        self.assertEqual(img.get_content_type(), "image/gif")
        self.assertEqual(img.get_content(), GIF)
        self.assertSafeHTML(mail_parts(msg)["text/html"], link, img["Content-ID"].strip()[1:-1])

    def test_defaults_with_content(self):
        """email_content with only a subject: the other texts are empty, the footer and the
        colour are the defaults, there is no logo."""
        msg, _, link = self.send_content({"subject": "Just a subject"})
        self.assertEqual(msg["Subject"], "Just a subject")
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        parts = mail_parts(msg)
        scan = self.assertSafeHTML(parts["text/html"], link)
        self.assertIn(DEFAULT_FOOTER, parts["text/plain"])
        self.assertIn(DEFAULT_FOOTER, scan.text)
        self.assertIn(DEFAULT_COLOR, parts["text/html"])
        for default_text in ("Click the button", "expires in", "Sign in to"):
            self.assertNotIn(default_text, parts["text/plain"])
            self.assertNotIn(default_text, scan.text)
        (frm,) = msg["From"].addresses
        self.assertEqual((frm.display_name, frm.addr_spec), ("otlogin", "otlogin@localhost"))

    def test_non_ascii_headers(self):
        content = {"subject": "Anmeldung f\u00fcr Caf\u00e9 \u2615 \u2014 \u767b\u5f55 " * 3,
                   "senderName": "\u00c9quipe Caf\u00e9 \u2615",
                   "headerText": "Gr\u00fc\u00dfe, \u4f60\u597d"}
        content["subject"] = content["subject"].strip()
        msg, raw, link = self.send_content(content)
        head = self.assertHeaderSection(raw)
        self.assertIn("=?UTF-8?", head.upper())
        self.assertEqual(msg["Subject"], content["subject"])
        (frm,) = msg["From"].addresses
        self.assertEqual((frm.display_name, frm.addr_spec),
                         (content["senderName"], "otlogin@localhost"))
        self.assertIn(content["headerText"], HTMLScan(mail_parts(msg)["text/html"]).text)
        self.assertIn(content["headerText"], mail_parts(msg)["text/plain"])

    def test_long_non_ascii_sender_name(self):
        """A display name that needs several encoded-words: folded within 78 columns, and
        decoded (RFC 2047 6.2: the space between adjacent encoded-words does not count) it
        is the name. Python's address parser would add spaces there, so decode_header."""
        name = "\u00e9\u2615" * 20   # 100 bytes of UTF-8, the maximum
        msg, raw, _ = self.send_content({"subject": "s", "senderName": name})
        head = self.assertHeaderSection(raw)
        lines = head.split("\r\n")
        start = [i for i, l in enumerate(lines) if l.startswith("From:")]
        self.assertEqual(len(start), 1)
        value = [lines[start[0]][5:]]
        for line in lines[start[0] + 1:]:
            if not line.startswith((" ", "\t")):
                break
            value.append(line)
        for line in [lines[start[0]]] + value[1:]:
            self.assertLessEqual(len(line), 78, line)
        decoded = "".join(b.decode(cs) if cs else (b.decode() if isinstance(b, bytes) else b)
                          for b, cs in email.header.decode_header("".join(value)))
        self.assertEqual(decoded.strip(), name + " <otlogin@localhost>")

    def test_bad_primary_color(self):
        addr = stack.make_user()["email"]["value"]
        for color in ("red", "#12345", "#12345G", "6981FF", "#6981ff ", "#1234567",
                      "#fff;background:url(https://evil.example/x)", ""):
            with self.subTest(color=color):
                r = self.send(self.client, addr,
                              email_content={"subject": "s", "primaryColor": color})
                self.assertRefused(r, addr=addr)
        # Lower-case hex is a valid #RRGGBB.
        msg, _, _ = self.send_content({"subject": "s", "primaryColor": "#a1b2c3"}, addr)
        self.assertIn("#a1b2c3", mail_parts(msg)["text/html"])

    def test_bad_logo(self):
        addr = stack.make_user()["email"]["value"]
        png = make_png()
        logos = {
            "text": b64(b"hello, world, not an image"),
            "not base64": "not base64 at all!!",
            "truncated magic": b64(png[:7]),
            "data uri": "data:image/png;base64," + b64(png),
            "svg": b64(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
            "too long": "A" * 20004,
        }
        for name, logo in logos.items():
            with self.subTest(logo=name):
                r = self.send(self.client, addr,
                              email_content={"subject": "s", "base64logo": logo})
                self.assertRefused(r, addr=addr)


class MailInjection(MailCase):
    FIELDS = ("headerText", "bodyText", "linkText", "infoText", "footerText")

    def test_crlf_in_headers_refused(self):
        """CR/LF (or another control) in subject or senderName: 400 and no mail at all."""
        addr = stack.make_user()["email"]["value"]
        evil = "victim-%s@evil.example" % os.urandom(3).hex()
        payloads = ["Hi\r\nBcc: %s" % evil, "Hi\nBcc: %s" % evil, "Hi\rBcc: %s" % evil,
                    "Hi\r\n\r\n<html>body</html>", "Hi\r\n Bcc: %s" % evil, "Hi\tthere",
                    "Hi\u0000there", "Hi\u0085Bcc: %s" % evil, "Hi\u001b[31m"]
        for field in ("subject", "senderName"):
            for p in payloads:
                with self.subTest(field=field, payload=p):
                    content = {"subject": "ok"}
                    content[field] = p
                    r = self.send(self.client, addr, email_content=content)
                    self.assertRefused(r, addr=addr)
        self.assertNotIn(evil, stack.mailbox.all_recipients())

    def test_html_escaped_everywhere(self):
        """HTML in every text field arrives as inert, literal text."""
        def payload(name):
            return ('<script>alert("%s")</script><img src=x onerror=alert(1)>'
                    '"><a href="https://evil.example/%s">x</a>&amp;\'' % (name, name))

        content = {f: payload(f) for f in self.FIELDS}
        content["subject"] = payload("subject")
        content["senderName"] = '<b>"Sender"</b> & co'
        msg, raw, link = self.send_content(content)
        self.assertEqual(sorted(msg.keys()), MAIL_HEADERS)
        self.assertEqual(msg["Subject"], content["subject"])
        (frm,) = msg["From"].addresses
        self.assertEqual((frm.display_name, frm.addr_spec),
                         (content["senderName"], "otlogin@localhost"))
        parts = mail_parts(msg)
        scan = self.assertSafeHTML(parts["text/html"], link)
        for field in self.FIELDS + ("subject",):
            self.assertIn(content[field], scan.text, field)
            self.assertNotIn("evil.example/%s" % field, "".join(
                v or "" for _, a in scan.tags for v in a.values()))
        for field in self.FIELDS:
            self.assertIn(content[field], parts["text/plain"], field)

    def test_line_breaks_in_body_fields(self):
        """Line breaks are allowed in body texts and stay there: no header, no extra
        recipient, no early end of the SMTP data, no MIME boundary break-out."""
        evil = "victim-%s@evil.example" % os.urandom(3).hex()
        text = ("line one\r\nBcc: %s\r\nContent-Type: text/html\r\n\r\n.\r\n"
                "MAIL FROM:<%s>\r\n--=_alt_00000000000000000000000000000000--\r\n"
                ".\nafter the dot" % (evil, evil))
        content = {"subject": "Line breaks"}
        content.update({f: text for f in self.FIELDS})
        addr = stack.make_user()["email"]["value"]
        msg, raw, link = self.send_content(content, addr)
        self.assertEqual(sorted(msg.keys()), MAIL_HEADERS)
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        self.assertEqual([p.get_content_type() for p in msg.iter_parts()],
                         ["text/plain", "text/html"])
        parts = mail_parts(msg)
        self.assertIn("after the dot", parts["text/plain"])
        self.assertTrue(parts["text/plain"].rstrip().endswith("after the dot"),
                        "the footer (last) did not arrive whole")
        self.assertIn("Bcc: %s" % evil, parts["text/plain"])
        scan = self.assertSafeHTML(parts["text/html"], link)
        self.assertIn("after the dot", scan.text)
        self.assertNotIn(evil, stack.mailbox.all_recipients())
        self.assertNoMail()

    def test_encoded_words_stay_literal(self):
        """Text that looks like RFC 2047 encoded-words is shown as written, not decoded."""
        content = {"subject": "=?UTF-8?B?SGFja2Vk?=", "senderName": "=?UTF-8?Q?Bank?="}
        msg, raw, _ = self.send_content(content)
        self.assertEqual(msg["Subject"], content["subject"])
        (frm,) = msg["From"].addresses
        self.assertEqual(frm.display_name, content["senderName"])
        self.assertEqual(frm.addr_spec, "otlogin@localhost")

    def test_sender_name_cannot_add_addresses(self):
        for name in ('Support <attacker@evil.example>', 'a@evil.example, b@evil.example',
                     '"Bank" <x@evil.example>', 'Eve\\" <x@evil.example>', "Team; group:"):
            with self.subTest(senderName=name):
                msg, raw, _ = self.send_content({"subject": "From test", "senderName": name})
                self.assertEqual(len(msg.get_all("From")), 1)
                (frm,) = msg["From"].addresses
                self.assertEqual((frm.display_name, frm.addr_spec), (name, "otlogin@localhost"))
                parsed = email.utils.getaddresses([str(msg["From"])])
                self.assertEqual([a for _, a in parsed], ["otlogin@localhost"])


# ---- the landing page and the code ---------------------------------------------------------

class LinkRules(LinkCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(redirect_uris=[REDIRECT])
        cls.other = stack.new_client(redirect_uris=[REDIRECT])

    def test_unknown_and_missing_token(self):
        for path in (OPEN, OPEN + "?t=", OPEN + "?t=" + "A" * 43, OPEN + "?x=1",
                     OPEN + "?t=" + "A" * 400, OPEN + "?t=%3Cscript%3Ealert(1)%3C/script%3E"):
            for method in ("GET", "POST"):
                with self.subTest(path=path[:80], method=method):
                    html, _, _ = self.assertPage(self.open("/cis" + path, method), 404,
                                                 "not valid")
                    self.assertNotIn("<script>", html)
        h = self.open("/cis" + OPEN + "?t=" + "B" * 43, "HEAD")
        self.assertEqual((h.status, h.body), (404, b""))

    def test_wrong_methods(self):
        for method in ("PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                r = self.st.http(method, "/cis" + OPEN + "?t=x")
                self.assertEqual(r.status, 405, "%r" % (r,))
                allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
                self.assertEqual(allow, {"GET", "HEAD", "POST"})
        for path in (SEND, AUTH):
            r = self.st.http("GET", path, token=self.client["token"])
            self.assertEqual(r.status, 405, "%r" % (r,))
            self.assertEqual(r.headers.get("Allow"), "POST")

    def test_tampered_token(self):
        """A link with one character changed is unknown, and trying it consumes nothing."""
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(self.client, addr)
        tok = link.split("?t=")[1]
        for i in (0, len(tok) // 2, len(tok) - 1):
            c = tok[i]
            bad = tok[:i] + ("A" if c != "A" else "B") + tok[i + 1:]
            for method in ("GET", "POST"):
                with self.subTest(pos=i, method=method):
                    self.assertPage(self.open(link.replace(tok, bad), method), 404, "not valid")
        for bad in (tok[:-1], tok + "A", tok.upper() if tok.upper() != tok else tok.lower()):
            with self.subTest(variant=bad):
                self.assertPage(self.open(link.replace(tok, bad), "POST"), 404, "not valid")
        code = self.click(link)["code"]
        self.check_tokens(self.authenticate(self.client, code), self.client, user["user_id"])

    def test_code_rules(self):
        """Unknown code, link token as code, another client's code: 400; the owner can
        still use a code another client tried."""
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(self.client, addr)
        tok = link.split("?t=")[1]
        self.assertBadCode(self.authenticate(self.client, tok))
        code = self.click(link)["code"]
        self.assertBadCode(self.authenticate(self.client, "A" * len(code)))
        self.assertBadCode(self.authenticate(self.other, code))
        self.check_tokens(self.authenticate(self.client, code), self.client, user["user_id"])
        self.assertBadCode(self.authenticate(self.client, code))
        self.assertBadCode(self.authenticate(self.other, code))

    def test_request_id(self):
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]

        body = self.send_ok(self.client, addr)
        self.assertNotIn("request_id", body)
        self.click(self.wait_link_mail(addr)[2])
        body = self.send_ok(self.client, addr, generate_request_id=False)
        self.assertNotIn("request_id", body)
        self.click(self.wait_link_mail(addr)[2])

        def with_request_id():
            body = self.send_ok(self.client, addr, generate_request_id=True)
            self.assertEqual(set(body), {"message", "request_id"})
            self.assertRegex(body["request_id"], r"^\S{16,}$")
            return body["request_id"], self.click(self.wait_link_mail(addr)[2])["code"]

        rid1, code = with_request_id()
        self.assertBadCode(self.authenticate(self.client, code))
        # A refused attempt spends the code (one attempt per code).
        self.assertBadCode(self.authenticate(self.client, code, request_id=rid1))

        rid2, code = with_request_id()
        self.assertNotEqual(rid1, rid2)
        self.assertBadCode(self.authenticate(self.client, code, request_id=rid2 + "x"))

        rid3, code = with_request_id()
        self.assertBadCode(self.authenticate(self.client, code, request_id=rid1))

        rid4, code = with_request_id()
        self.check_tokens(self.authenticate(self.client, code, request_id=rid4), self.client,
                          uid)

    def test_session_id_adds_a_factor(self):
        """A link login into an existing session (here: a direct OTP login) joins it."""
        client = stack.new_client(redirect_uris=[REDIRECT], permissions=["direct"])
        user = stack.make_user()
        addr, uid = user["email"]["value"], user["user_id"]
        otp = stack.direct_code(client["token"], addr)
        r = stack.otp_authenticate(client["token"], addr, otp)
        first = self.assertTokenResponse(r)
        sid = first["session_id"]
        handle = harness.jwt_parts(first["id_token"])[1]["sid"]

        code = self.login_code(client, addr)
        r = self.authenticate(client, code, session_id=sid)
        body, idc = self.check_tokens(r, client, uid)
        self.assertEqual(body["session_id"], sid)
        self.assertEqual(idc["sid"], handle)
        self.assertIn("eml", idc["amr"])
        self.assertIn("mfa", idc["amr"])

        code = self.login_code(client, addr)
        r = self.authenticate(client, code, session_id="no-such-session")
        self.assertEqual(self.assertJSON(r, 400),
                         {"error_code": "400", "message": "Session not found"})

    def test_parallel_authenticate(self):
        """200 concurrent exchanges of one code: exactly one succeeds."""
        user = stack.make_user()
        code = self.login_code(self.client, user["email"]["value"])
        calls = [lambda: self.authenticate(self.client, code) for _ in range(200)]
        results = stack.parallel(calls, threads=50)
        ok = [r for r in results if r.status == 200]
        self.assertEqual(len(ok), 1, "statuses: %r" % sorted(r.status for r in results))
        self.check_tokens(ok[0], self.client, user["user_id"])
        for r in results:
            if r.status != 200:
                self.assertBadCode(r)

    def test_parallel_gets_consume_nothing(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        link = self.send_and_link(self.client, addr)
        results = stack.parallel([lambda: self.open(link) for _ in range(20)], threads=20)
        self.assertEqual([r.status for r in results], [200] * 20)
        code = self.click(link)["code"]
        self.check_tokens(self.authenticate(self.client, code), self.client, user["user_id"])

    def test_parallel_posts(self):
        """20 concurrent button presses: one 303, the others are told the link was used."""
        user = stack.make_user()
        link = self.send_and_link(self.client, user["email"]["value"])
        action, fields, cookie = stack.landing_form(link)
        results = stack.parallel([lambda: stack.http("POST", action, form=fields,
                                                     headers={"Cookie": cookie})
                                  for _ in range(20)], threads=20)
        redirects = [r for r in results if r.status == 303]
        self.assertEqual(len(redirects), 1, "statuses: %r" % [r.status for r in results])
        for r in results:
            if r.status != 303:
                self.assertPage(r, 410, "already used")


# ---- expiry --------------------------------------------------------------------------------

class ClockedLinks(LinkCase):
    """A stack with [link] ttl_minutes = 1, max_ttl_minutes = 2, code_ttl = 10 (seconds) and,
    with libfaketime, a clock the tests move forward."""

    CODE_TTL = 10
    clock = None

    @classmethod
    def setUpClass(cls):
        cls.clock = ClockStack(name="link-clock", link={
            "ttl_minutes": 1, "max_ttl_minutes": 2, "code_ttl": cls.CODE_TTL})
        cls.clock.start()
        cls.stack = cls.clock
        cls.client = cls.clock.new_client(redirect_uris=[REDIRECT])

    @classmethod
    def tearDownClass(cls):
        if cls.clock is not None:
            cls.clock.stop()

    def need_clock(self):
        if self.clock.faketime is None:
            self.skipTest("libfaketime not installed (Debian package faketime)")

    def check_clock_moves(self):
        """The workers really see the moved clock (a mail's Date header shows theirs)."""
        addr = self.clock.make_user()["email"]["value"]
        self.send_ok(self.client, addr, channel="email")
        msg, _, link = self.wait_link_mail(addr)
        worker = email.utils.parsedate_to_datetime(msg["Date"]).timestamp()
        self.assertGreaterEqual(worker - time.time(), self.clock.offset - 30,
                                "the workers do not see the fake clock")
        return link

    def test_link_lifetimes(self):
        """Default lifetime (ttl_minutes), email_expiration, and its cap (max_ttl_minutes);
        an expired link gets its own page and no redirect."""
        self.need_clock()
        users = {k: self.clock.make_user()["email"]["value"] for k in ("dflt", "two", "cap")}
        links, texts = {}, {}
        for k, extra in (("dflt", {}), ("two", {"email_expiration": 2}),
                         ("cap", {"email_expiration": 60})):
            self.send_ok(self.client, users[k], **extra)
            msg, _, links[k] = self.wait_link_mail(users[k])
            texts[k] = mail_parts(msg)["text/plain"]
        self.assertIn("1 minute ", texts["dflt"])
        self.assertIn("2 minutes", texts["two"])
        self.assertIn("2 minutes", texts["cap"])   # 60 asked, capped at 2
        for k in links:
            self.assertLandingPage(self.open(links[k]), links[k], users[k])

        self.clock.advance(65)
        self.check_clock_moves()
        for method in ("GET", "POST"):
            self.assertPage(self.open(links["dflt"], method), 410, "expired")
        h = self.open(links["dflt"], "HEAD")
        self.assertEqual((h.status, h.body), (410, b""))
        self.assertLandingPage(self.open(links["two"]), links["two"], users["two"])
        self.assertLandingPage(self.open(links["cap"]), links["cap"], users["cap"])

        self.clock.advance(60)
        for k in ("two", "cap"):
            for method in ("GET", "POST"):
                with self.subTest(link=k, method=method):
                    self.assertPage(self.open(links[k], method), 410, "expired")

    def test_expired_link_after_open_page(self):
        """A page opened in time does not keep the link alive: the button after expiry
        gets the expired page, not a code."""
        self.need_clock()
        addr = self.clock.make_user()["email"]["value"]
        link = self.send_and_link(self.client, addr)
        self.assertLandingPage(self.open(link), link, addr)
        self.clock.advance(61)
        self.assertPage(self.open(link, "POST"), 410, "expired")

    def test_code_expires(self):
        """The code of a redirect lives code_ttl seconds."""
        addr = self.clock.make_user()["email"]["value"]
        code = self.login_code(self.client, addr)
        self.clock.let_pass(self.CODE_TTL + 2)
        self.assertBadCode(self.authenticate(self.client, code))
        # A fresh code right away works (only the body: the JWTs carry the workers' time).
        code = self.login_code(self.client, addr)
        self.assertTokenResponse(self.authenticate(self.client, code))
