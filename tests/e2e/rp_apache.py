"""A real relying party in front of otlogin: Apache 2.4 with mod_auth_openidc (Debian
libapache2-mod-auth-openidc), and a scripted browser to walk through it.

    rp = ApacheRP(stack, sites=2, pkce="S256").start()   # one Apache, two virtual hosts
    b = Browser()
    page = b.get(rp.sites[0].url("/private/"))           # -> otlogin's hosted login page
    rp.stop()

Each site is a <VirtualHost> on its own free 127.0.0.1 port with its own otlogin client
(registered with otloginctl: redirect URI = the site's OIDCRedirectURI, post-logout redirect
URI = the site's /loggedout page) and its own session cookie name (cookies ignore ports, so two
sites on 127.0.0.1 with the default name would read each other's). /private/ is protected with
AuthType openid-connect and runs a tiny CGI that prints the claims mod_auth_openidc hands it
(OIDC_CLAIM_*). Each virtual host includes the shipped example, etc/apache2/otlogin-openidc.conf,
with its Defines: the provider comes from discovery alone (OIDCProviderMetadataURL =
{issuer}/.well-known/openid-configuration, over plain http on loopback).

Everything lives in a temporary directory (ServerRoot, config, logs, pid, CGI); run as root
(as CI does) Apache's children run as www-data, which must read the CGI and the config.
"""

import email
import email.policy
import html.parser
import http.cookiejar
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import harness

APACHE_MODULES = harness.APACHE_MODULES
OPENIDC_MODULE = os.path.join(APACHE_MODULES, "mod_auth_openidc.so")
# The example configuration the sites include, as an administrator would.
OPENIDC_SNIPPET = os.path.join(harness.TOP_SRCDIR, "etc", "apache2", "otlogin-openidc.conf")
SERVICE_USER = "www-data"
# prefork + mod_cgi: the simplest MPM for a CGI; mod_auth_openidc's shm cache works with it.
# (Debian compiles mod_unixd, for User and Group, into apache2.)
MODULES = ("mpm_prefork", "authz_core", "authn_core", "authz_user", "alias", "cgi", "env")

CLAIMS_CGI = """#!/bin/sh
# Print what mod_auth_openidc passes the application about the user.
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'site=%s\\n' "$RP_SITE"
printf 'remote_user=%s\\n' "$REMOTE_USER"
printf 'email=%s\\n' "$OIDC_CLAIM_email"
printf 'sub=%s\\n' "$OIDC_CLAIM_sub"
printf 'sid=%s\\n' "$OIDC_CLAIM_sid"
printf 'iss=%s\\n' "$OIDC_CLAIM_iss"
"""

LOGGEDOUT_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'logged out of %s\\n' "$RP_SITE"
printf 'query=%s\\n' "$QUERY_STRING"
"""


def missing_rp_tools():
    """Reasons the Apache relying party cannot run here (empty: it can). A test module calls
    this and fails, not skips, when something is missing."""
    why = []
    if not os.access(harness.APACHE2, os.X_OK):
        why.append("apache2 not installed")
    for m in MODULES:
        if not os.path.exists(os.path.join(APACHE_MODULES, "mod_%s.so" % m)):
            why.append("mod_%s missing" % m)
    if not os.path.exists(OPENIDC_MODULE):
        why.append("mod_auth_openidc not installed (libapache2-mod-auth-openidc)")
    return why


class Site:
    """One protected virtual host: its port, its otlogin client, its URLs."""

    def __init__(self, name, port, client):
        self.name = name
        self.port = port
        self.client = client

    @property
    def origin(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.origin + path

    @property
    def redirect_uri(self):
        """mod_auth_openidc's own URL (OIDCRedirectURI): inside the protected path."""
        return self.url("/private/redirect_uri")

    @property
    def logged_out_url(self):
        return self.url("/loggedout")

    def logout_url(self, return_to=None):
        """mod_auth_openidc's logout: its redirect URI with ?logout=<where to go after>."""
        return self.redirect_uri + "?" + urllib.parse.urlencode(
            {"logout": return_to or self.logged_out_url})


class ApacheRP:
    """One private Apache with mod_auth_openidc protecting `sites` virtual hosts, each with
    its own client of `stack` (a started harness.Stack). pkce: None or "S256"
    (OIDCPKCEMethod)."""

    def __init__(self, stack, sites=2, pkce=None, name="rp"):
        self.stack = stack
        self.nsites = sites
        self.pkce = pkce
        self.name = name
        self.dir = None
        self.proc = None
        self.sites = []
        self._out = None

    def path(self, *p):
        return os.path.join(self.dir, *p)

    @property
    def metadata_url(self):
        return self.stack.issuer + "/.well-known/openid-configuration"

    def _register(self, i, port):
        site = Site("site%d" % (i + 1), port, None)
        args = ["client", "add", "--name", "apache-rp-%s-%s" % (self.name, site.name),
                "--redirect-uri", site.redirect_uri,
                "--post-logout-redirect-uri", site.logged_out_url]
        site.client = self.stack.ctl(*args, parse=True)
        return site

    def _write_files(self):
        for d in ("cgi", "logs", "run", "www"):
            os.makedirs(self.path(d), exist_ok=True)
        for name, text in (("claims.cgi", CLAIMS_CGI), ("loggedout.cgi", LOGGEDOUT_CGI)):
            with open(self.path("cgi", name), "w") as f:
                f.write(text)
            os.chmod(self.path("cgi", name), 0o755)
        # Apache's children (www-data when run as root) read the CGI scripts.
        os.chmod(self.dir, 0o755)
        os.chmod(self.path("cgi"), 0o755)
        q = lambda v: '"%s"' % v
        conf = ["# written by tests/e2e/rp_apache.py", "ServerRoot %s" % q(self.dir)]
        conf += ["LoadModule %s_module %s" % (m, q(os.path.join(APACHE_MODULES, "mod_%s.so" % m)))
                 for m in MODULES]
        conf.append("LoadModule auth_openidc_module %s" % q(OPENIDC_MODULE))
        if os.geteuid() == 0:
            conf += ["User %s" % SERVICE_USER, "Group %s" % SERVICE_USER]
        conf += ["Listen 127.0.0.1:%d" % s.port for s in self.sites]
        conf += [
            "ServerName 127.0.0.1",
            "PidFile %s" % q(self.path("run", "apache2.pid")),
            "ErrorLog %s" % q(self.path("logs", "error.log")),
            "LogLevel warn auth_openidc:debug",
            "DefaultRuntimeDir %s" % q(self.path("run")),
            "DocumentRoot %s" % q(self.path("www")),
            "StartServers 2",
            "<Directory />", "  Require all denied", "  AllowOverride None", "</Directory>",
            "<Directory %s>" % q(self.path("cgi")), "  Require all granted", "</Directory>",
        ]
        if not self.pkce:
            conf.append("Define OTLOGIN_NO_PKCE")
        for s in self.sites:
            conf += [
                "<VirtualHost 127.0.0.1:%d>" % s.port,
                "  ServerName 127.0.0.1:%d" % s.port,
                "  SetEnv RP_SITE %s" % s.name,
                # What etc/apache2/otlogin-openidc.conf asks for, as its header shows.
                "  Define OTLOGIN_ISSUER %s" % self.stack.issuer,
                "  Define OTLOGIN_CLIENT_ID %s" % s.client["client_id"],
                "  Define OTLOGIN_CLIENT_SECRET %s" % s.client["client_secret"],
                "  Define OTLOGIN_SITE %s" % s.origin,
                "  Define OTLOGIN_PROTECT /private/",
                "  Define OTLOGIN_PASSPHRASE %s" % os.urandom(16).hex(),
                "  Include %s" % q(OPENIDC_SNIPPET),
                # Both sites are on 127.0.0.1, and cookies ignore ports.
                "  OIDCCookie %s" % q("rp_%s_session" % s.name),
                "  ScriptAliasMatch ^/private/ %s" % q(self.path("cgi", "claims.cgi")),
                "  ScriptAlias /loggedout %s" % q(self.path("cgi", "loggedout.cgi")),
                "</VirtualHost>",
            ]
        conf.append("")
        self.conf = self.path("apache2.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf))

    def start(self):
        why = missing_rp_tools()
        if why:
            raise harness.HarnessError("; ".join(why))
        self.dir = tempfile.mkdtemp(prefix="otlogin-e2e-rp-")
        # The runner shows the log tail of what is running under a failure (and stops it).
        harness.RUNNING.append(self)
        try:
            ports = [harness.free_port() for _ in range(self.nsites)]
            self.sites = [self._register(i, p) for i, p in enumerate(ports)]
            for attempt in range(3):
                self._write_files()
                r = subprocess.run([harness.APACHE2, "-t", "-f", self.conf],
                                   capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)
                if r.returncode != 0:
                    raise harness.HarnessError("apache2 -t: %s%s" % (r.stdout, r.stderr))
                if self._start():
                    return self
                # A port was taken meanwhile: new ports (the clients' URIs follow).
                ports = [harness.free_port() for _ in range(self.nsites)]
                self.sites = [self._register(i, p) for i, p in enumerate(ports)]
            raise harness.HarnessError("the relying party's Apache did not start")
        except BaseException:
            self.stop()
            raise

    def _start(self):
        if self._out is not None:
            self._out.close()
        self._out = open(self.path("logs", "apache2.out"), "ab")
        # Its own session: the prefork MPM ends its children by signalling its whole process
        # group on shutdown, which would otherwise be the test runner's.
        self.proc = subprocess.Popen([harness.APACHE2, "-DFOREGROUND", "-f", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True)
        deadline = time.monotonic() + harness.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                harness.log("relying party apache exited: %s" % self.log_tail(10))
                self.proc = None
                return False
            try:
                ok = all(_status(s.url("/loggedout")) == 200 for s in self.sites)
                if ok:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        raise harness.HarnessError("the relying party's Apache did not answer:\n%s"
                                   % self.log_tail(30))

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None
        if self in harness.RUNNING:
            harness.RUNNING.remove(self)
        if self.dir is not None:
            if os.environ.get("E2E_KEEP"):
                harness.log("kept %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_text(self):
        out = []
        for name in ("error.log", "apache2.out"):
            try:
                with open(self.path("logs", name), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except (OSError, TypeError):
                pass
        return "\n".join(out)

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])


def _status(url):
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


# ---- the scripted browser ------------------------------------------------------------------

class Page:
    """A response the browser ended on: its URL, status, headers and text."""

    def __init__(self, url, status, headers, body):
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def forms(self):
        p = _FormParser()
        p.feed(self.text)
        for f in p.forms:
            f.action = urllib.parse.urljoin(self.url, f.action or self.url)
        return p.forms

    def __repr__(self):
        return "<Page %d %s %r>" % (self.status, self.url, self.text[:300])


class Form:
    def __init__(self, action, method):
        self.action = action
        self.method = (method or "get").upper()
        self.inputs = []  # dicts of the input's attributes

    def fields(self):
        """The values a browser submits without the user typing anything."""
        out = {}
        for i in self.inputs:
            if i.get("name") and i.get("type", "text") not in ("submit", "button", "image",
                                                                "checkbox", "radio"):
                out[i["name"]] = i.get("value", "")
        return out

    def find(self, pred):
        """The name of the first input for which pred(attributes) holds, or None."""
        for i in self.inputs:
            if i.get("name") and pred(i):
                return i["name"]
        return None

    def __repr__(self):
        return "<Form %s %s %r>" % (self.method, self.action, self.inputs)


class _FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._form = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action"), a.get("method"))
            self.forms.append(self._form)
        elif tag in ("input", "button") and self._form is not None:
            if tag == "button":
                a.setdefault("type", "submit")
            self._form.inputs.append(a)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Browser:
    """A scripted browser: one cookie jar (RFC 6265: cookies ignore ports, as real browsers
    do), redirects followed by hand so that every hop is recorded in `history` as
    (method, url, status)."""

    MAX_HOPS = 20

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar),
            _NoRedirect())
        self.history = []

    def _one(self, method, url, data=None):
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        # What a browser sends on a top-level navigation.
        req.add_header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        req.add_header("User-Agent", "otlogin-e2e-browser")
        try:
            with self.opener.open(req, timeout=harness.HTTP_TIMEOUT) as r:
                page = Page(url, r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            page = Page(url, e.code, e.headers, e.read())
        self.history.append((method, url, page.status))
        return page

    def request(self, method, url, fields=None):
        """Open url (POST: fields as a form) and follow redirects; the final Page."""
        data = urllib.parse.urlencode(fields or {}).encode() if method == "POST" else None
        if method == "GET" and fields:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(fields)
        page = self._one(method, url, data)
        for _ in range(self.MAX_HOPS):
            if page.status not in (301, 302, 303, 307, 308):
                return page
            loc = urllib.parse.urljoin(page.url, page.headers["Location"])
            if page.status in (307, 308) and method == "POST":
                page = self._one("POST", loc, data)
            else:
                method, data = "GET", None
                page = self._one("GET", loc)
        raise harness.HarnessError("more than %d redirects: %r" % (self.MAX_HOPS,
                                                                   self.history[-5:]))

    def get(self, url):
        return self.request("GET", url)

    def submit(self, form, **values):
        """Submit a form with its hidden/prefilled values, updated with values."""
        fields = form.fields()
        fields.update(values)
        return self.request(form.method, form.action, fields)

    def cookies(self, port=None):
        """{name: value} of the jar (all ports: cookies do not know them)."""
        return {c.name: c.value for c in self.jar}

    def visited(self, since=0):
        """The URLs requested since history index `since`."""
        return [u for _, u, _ in self.history[since:]]


def claims_of_page(page):
    """The CGI's key=value lines as a dict."""
    return dict(l.split("=", 1) for l in page.text.splitlines() if "=" in l)


def login_forms(page):
    """(form, email field) of a page asking for an email address, or (None, None)."""
    for f in page.forms():
        name = f.find(lambda a: a.get("type") == "email" or a.get("autocomplete") == "email"
                      or "email" in a.get("name", ""))
        if name:
            return f, name
    return None, None


def code_form(page):
    """(form, code field) of a page asking for the emailed code, or (None, None)."""
    for f in page.forms():
        name = f.find(lambda a: a.get("autocomplete") == "one-time-code"
                      or a.get("name") in ("code", "otp", "passcode"))
        if name:
            return f, name
    return None, None


class Maildir:
    """otlogin's development mailbox (a stack with [server] test_mode = yes writes every mail
    to <dir>/maildir/new instead of relaying it): each message is handed out once."""

    def __init__(self, stack):
        self.dir = stack.path("maildir", "new")
        self.taken = set()

    def _messages(self):
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n in self.taken:
                continue
            with open(os.path.join(self.dir, n), "rb") as f:
                msg = email.message_from_bytes(f.read(), policy=email.policy.default)
            out.append((n, msg))
        return out

    def pending(self, to):
        return [m for n, m in self._messages() if to.lower() in str(m["To"]).lower()]

    def wait(self, to, timeout=harness.MAIL_TIMEOUT):
        """The oldest message to `to` not handed out yet."""
        deadline = time.monotonic() + timeout
        while True:
            for n, m in self._messages():
                if to.lower() in str(m["To"]).lower():
                    self.taken.add(n)
                    return m
            if time.monotonic() > deadline:
                raise harness.HarnessError("no mail to %s in %s within %ss"
                                           % (to, self.dir, timeout))
            time.sleep(0.1)


def hosted_login(browser, page, stack, maildir, addr):
    """On otlogin's hosted login page: give the address, read the code from the mail that
    arrives in otlogin's Maildir, type it in. The Page the browser ends on (after following
    the redirects back to the relying party). Raises HarnessError naming the step that did
    not work."""
    form, field = login_forms(page)
    if form is None:
        raise harness.HarnessError("step 'hosted login page asks for the email address': no "
                                   "email form on %r" % (page,))
    page = browser.submit(form, **{field: addr})
    msg = maildir.wait(addr)
    code = stack.mail_code(msg)
    form, field = code_form(page)
    if form is None:
        raise harness.HarnessError("step 'hosted login page asks for the code': no code form "
                                   "on %r" % (page,))
    return browser.submit(form, **{field: code})


def authorization_requests(browser, stack, since=0):
    """The authorization requests (URLs on otlogin's /oidc/auth) the browser made since
    history index `since`, parsed: [{param: value}]."""
    out = []
    for u in browser.visited(since):
        s = urllib.parse.urlsplit(u)
        if u.startswith(stack.base_url) and s.path.endswith("/oidc/auth"):
            out.append(dict(urllib.parse.parse_qsl(s.query)))
    return out


def code_callbacks(browser, site, since=0):
    """The parameters of each hop back to site's redirect URI with a code."""
    out = []
    for u in browser.visited(since):
        s = urllib.parse.urlsplit(u)
        q = dict(urllib.parse.parse_qsl(s.query))
        if u.startswith(site.redirect_uri) and "code" in q:
            out.append(q)
    return out


def find_auth_path(text):
    """Where a relying party's page points at otlogin, for messages."""
    m = re.search(r"https?://[^\s\"'<>]+/oidc/auth[^\s\"'<>]*", text)
    return m.group(0) if m else None
