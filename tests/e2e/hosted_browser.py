"""A scripted browser for the authorization endpoint and the hosted login page
(test_authz.py, test_hosted.py): its own cookie jar (name, path, value; enough for one host
on loopback), requests that never follow redirects by themselves, and helpers that fill the
page's forms by their stable ids (documented at the top of src/api_hosted.c)."""

import base64
import hashlib
import html
import re
import secrets
import urllib.parse

import harness

REDIRECT = "https://app.example/cb"
# The hosted login page of one flow: /oidc/login?f=<the flow's handle>.
LOGIN_PAGE = re.compile(r"^http://[^/]+/cis/oidc/login\?f=[0-9a-f]{16}$")


def pkce_pair():
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(location):
    """The query parameters of a redirect's Location, as a dict of single values."""
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query, keep_blank_values=True)
    return {k: v[0] for k, v in q.items()}


def mail_code_and_link(stack, msg):
    """The passcode and the magic link of a hosted login mail (its text/plain part)."""
    text = harness.mail_parts(msg)["text/plain"].replace("\r\n", "\n")
    code = re.search(r"^    ([0-9]{%d})$" % stack.otp_length, text, re.M)
    link = re.search(r"(http://\S+/oidc/login/link\?t=[A-Za-z0-9_-]+)", text)
    if code is None or link is None:
        raise harness.HarnessError("no code or link in the hosted login mail: %r" % text[:800])
    return code.group(1), link.group(1)


class Page:
    """One response, as a browser sees it."""

    def __init__(self, r, url):
        self.status_code = r.status
        self.headers = r.headers
        self.text = r.body.decode("utf-8", "replace")
        self.url = url

    def set_cookies(self):
        return self.headers.get_all("Set-Cookie") or []


class CookieJar:
    def __init__(self):
        self.cookies = {}  # (name, path) -> value

    def set(self, name, value, path="/"):
        self.cookies[(name, path)] = value

    def get(self, name):
        for (n, _), v in self.cookies.items():
            if n == name:
                return v
        return None

    def take(self, page):
        for line in page.set_cookies():
            parts = [p.strip() for p in line.split(";")]
            name, _, value = parts[0].partition("=")
            attrs = {a.partition("=")[0].lower(): a.partition("=")[2] for a in parts[1:]}
            path = attrs.get("path", "/")
            if attrs.get("max-age") == "0":
                self.cookies.pop((name, path), None)
            else:
                self.cookies[(name, path)] = value

    def header(self, path):
        sent = ["%s=%s" % (n, v) for (n, p), v in self.cookies.items()
                if path == p or path.startswith(p.rstrip("/") + "/") or p == "/"]
        return "; ".join(sent) or None


class Browser:
    def __init__(self, stack):
        self.stack = stack
        self.cookies = CookieJar()

    def url(self, path_or_url):
        if path_or_url.startswith("http"):
            return path_or_url
        return "http://127.0.0.1:%d%s" % (self.stack.port, path_or_url)

    def request(self, method, path_or_url, params=None, data=None, headers=None):
        u = urllib.parse.urlsplit(self.url(path_or_url))
        if u.port != self.stack.port:
            raise harness.HarnessError("the browser only talks to otlogin: %s" % path_or_url)
        target = u.path + ("?" + u.query if u.query else "")
        if params:
            target += ("&" if "?" in target else "?") + urllib.parse.urlencode(params)
        hdrs = {"Cookie": self.cookies.header(u.path)}
        hdrs.update(headers or {})
        r = self.stack.http(method, target, form=data if data is not None else None,
                            headers=hdrs)
        page = Page(r, self.url(target))
        self.cookies.take(page)
        return page

    def get(self, path, params=None, headers=None):
        return self.request("GET", path, params=params, headers=headers)

    def post(self, path, data=None, headers=None):
        return self.request("POST", path, data=data or {}, headers=headers)

    def cookie(self, name):
        return self.cookies.get(name)

    def authorize(self, params, method="GET"):
        if method == "GET":
            return self.get("/cis/oidc/auth", params=params)
        return self.post("/cis/oidc/auth", data=params)

    @staticmethod
    def form(r, form_id):
        """(action, {name: value}) of the form with this id on the page r, or None."""
        m = re.search(r'<form id="%s" method="post" action="([^"]*)">(.*?)</form>'
                      % re.escape(form_id), r.text, re.S)
        if m is None:
            return None
        fields = {html.unescape(n): html.unescape(v) for n, v in
                  re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', m.group(2))}
        return html.unescape(m.group(1)), fields

    def submit(self, r, form_id, **values):
        found = self.form(r, form_id)
        if found is None:
            raise harness.HarnessError("no form %s on the page (%d): %s"
                                       % (form_id, r.status_code, r.text[:600]))
        action, fields = found
        fields.update(values)
        if action.startswith("?"):
            action = urllib.parse.urlsplit(r.url).path + action
        return self.post(action, data=fields)

    def start(self, params):
        """The authorization request of a browser without a session: the email page."""
        r = self.authorize(params)
        if r.status_code != 303 or not LOGIN_PAGE.match(r.headers["Location"]):
            raise harness.HarnessError("authorize did not lead to the login page: %d %s %s"
                                       % (r.status_code, r.headers.get("Location"), r.text[:300]))
        return self.get(r.headers["Location"])

    def send_email(self, page, email):
        """Submit the address; the code page that follows."""
        r = self.submit(page, "email-form", email=email)
        if r.status_code != 303:
            raise harness.HarnessError("email step: %d %s" % (r.status_code, r.text[:600]))
        return self.get(r.headers["Location"])

    def login(self, params, email):
        """Log in through the hosted page with the mailed code: the 303 to the client."""
        page = self.send_email(self.start(params), email)
        code, _ = mail_code_and_link(self.stack, self.stack.wait_mail(email))
        return self.submit(page, "code-form", code=code)


def auth_params(client, **over):
    p = {"client_id": client["client_id"], "redirect_uri": REDIRECT, "response_type": "code",
         "scope": "openid email", "state": "st-" + secrets.token_hex(4),
         "nonce": "n-" + secrets.token_hex(8)}
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


def exchange(stack, client, code, redirect_uri=REDIRECT, **extra):
    """POST /oidc/token with grant_type=authorization_code (client_secret_basic)."""
    return stack.token_request(client["client_id"], client["client_secret"], "basic",
                               grant_type="authorization_code", code=code,
                               redirect_uri=redirect_uri, **extra)
