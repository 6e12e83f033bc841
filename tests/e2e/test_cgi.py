"""otlogin as a plain CGI program, the shared-hosting case (cgi-bin/README.md): Apache runs
cgi-bin/otlogin.cgi -- the wrapper as shipped, with its two paths adjusted as its comment
says -- from a cgi-bin directory, once per request, and the wrapper runs otlogin.fcgi, which
finds no FastCGI listener, serves that one request and exits. The Authorization header
reaches it only through CGIPassAuth, which the directory's .htaccess turns on, as a hosting
customer would (AllowOverride AuthConfig is what hosts usually allow).

Two Apaches: the event MPM with mod_cgid (what Debian's "a2enmod cgi" gives under a threaded
MPM) and the prefork MPM with mod_cgi. Each gets a whole login through CGI (client
credentials with HTTP Basic, a direct passcode, its exchange for tokens, both refresh
endpoints), the discovery document under the CGI's own URL, request bodies read from the
CGI's standard input, and the check that a directory without CGIPassAuth withholds the client
secret. The application lives at /cgi-bin/otlogin.cgi (public_base_url says so); the stack
maps the harness's /cis/... paths there. Run as root, Apache runs the CGI as www-data (see
test_servers.py); nothing is skipped when Apache is missing: the module fails."""

import os
import re

import harness
from harness import E2ETestCase
from test_servers import ApacheStack

PREFIX = "/cgi-bin/otlogin.cgi"
# The same program in a directory without .htaccess: Apache's default, no CGIPassAuth.
NOPASS_PREFIX = "/cgi-nopass/otlogin.cgi"


class ApacheCGIStack(ApacheStack):
    """Apache serving otlogin.cgi from two cgi-bin directories (ScriptAlias), one with an
    .htaccess that says CGIPassAuth On. MPM and CGI module are the subclass's."""

    MPM = "event"
    CGI_MODULE = "cgid"

    @property
    def MODULES(self):
        return ("mpm_" + self.MPM, "authz_core", "alias", "env", self.CGI_MODULE)

    @property
    def base_url(self):
        return "http://127.0.0.1:%d%s" % (self.port, PREFIX)

    def http(self, method, path, *args, **kw):
        """The harness's paths (/cis/..., and /oidc/..., /.well-known/... at the root, which a
        FastCGI setup rewrites to the application) go to the CGI; others as they are."""
        for root, strip in (("/cis", True), ("/oidc/", False), ("/.well-known/", False)):
            if path == root or path.startswith(root + ("" if root.endswith("/") else "/")) \
                    or path.startswith(root + "?"):
                path = PREFIX + (path[len(root):] if strip else path)
                break
        return super().http(method, path, *args, **kw)

    def _prepare_dir(self):
        super()._prepare_dir()  # as root: copies the programs into bin/, for www-data
        with open(os.path.join(harness.TOP_SRCDIR, "cgi-bin", "otlogin.cgi")) as f:
            wrapper = f.read()
        # "adjust the two paths", as the wrapper's comment tells whoever installs it
        for default, ours in (("/etc/otlogin.conf", self.conf),
                              ("/usr/lib/cgi-bin/otlogin.fcgi", self.app)):
            if default not in wrapper:
                raise harness.HarnessError("cgi-bin/otlogin.cgi no longer names %s" % default)
            wrapper = wrapper.replace(default, ours)
        for d, htaccess in (("cgi-bin", "CGIPassAuth On\n"), ("cgi-nopass", None)):
            os.makedirs(self.path(d), exist_ok=True)
            with open(self.path(d, "otlogin.cgi"), "w") as f:
                f.write(wrapper)
            os.chmod(self.path(d, "otlogin.cgi"), 0o755)
            if htaccess:
                with open(self.path(d, ".htaccess"), "w") as f:
                    f.write(htaccess)
            if self.run_as:
                for name in (d, os.path.join(d, "otlogin.cgi"), os.path.join(d, ".htaccess")):
                    if os.path.exists(self.path(name)):
                        os.chown(self.path(name), *self.run_as)

    def _write_server_conf(self):
        d = self.dir
        q = lambda v: '"%s"' % v
        conf = ["# written by tests/e2e/test_cgi.py", "ServerRoot %s" % q(d)]
        conf += ["LoadModule %s_module %s" % (m, q(os.path.join(harness.APACHE_MODULES,
                                                                 "mod_%s.so" % m)))
                 for m in self.MODULES]
        if self.user:
            conf += ["User %s" % self.user, "Group %s" % self.user]
        conf += [
            "Listen 127.0.0.1:%d" % self.port,
            "ServerName 127.0.0.1",
            "PidFile %s" % q(self.path("apache2.pid")),
            "ErrorLog %s" % q(self.path("apache2-error.log")),
            "LogLevel info",
            "DefaultRuntimeDir %s" % q(self.path("tmp")),
            "DocumentRoot %s" % q(self.path("www")),
            "<Directory />", "  Require all denied", "  AllowOverride None", "</Directory>",
            "<Directory %s>" % q(self.path("www")), "  Require all granted", "</Directory>",
        ]
        if self.CGI_MODULE == "cgid":
            conf.append("ScriptSock %s" % q(self.path("tmp", "cgid.sock")))
        conf += ["<VirtualHost 127.0.0.1:%d>" % self.port]
        # Apache hands a CGI program none of its own environment: the sanitizer options of a
        # make check build go through mod_env.
        conf += ["  SetEnv %s %s" % (k, q(v)) for k, v in self.worker_env().items()]
        for url, d, override in (("/cgi-bin/", "cgi-bin", "AuthConfig"),
                                 ("/cgi-nopass/", "cgi-nopass", "None")):
            conf += [
                "  ScriptAlias %s %s" % (url, q(self.path(d) + "/")),
                "  <Directory %s>" % q(self.path(d)),
                "    AllowOverride %s" % override,
                "    Require all granted",
                "  </Directory>",
            ]
        conf += ["</VirtualHost>", ""]
        self.apache_conf = self.path("apache2.conf")
        with open(self.apache_conf, "w") as f:
            f.write("\n".join(conf))

    def _server_argv(self):
        """In a session of its own: the prefork MPM ends by sending SIGTERM to its whole
        process group, which in the foreground is the test runner's."""
        return ["setsid"] + super()._server_argv()

    def runs_app(self, pid):
        """otlogin.fcgi, or the wrapper shell on its way to exec it."""
        return super().runs_app(pid) or any(os.path.basename(a) == b"otlogin.cgi"
                                            for a in harness._cmdline(pid)[:2])


class CGIChecks:
    """The checks both Apaches get; a subclass names the stack class in `stack_class`."""

    stack_class = None

    @classmethod
    def setUpClass(cls):
        cls.stack = cls.stack_class(name="cgi-%s" % cls.stack_class.CGI_MODULE).start()

    @classmethod
    def tearDownClass(cls):
        """No CGI process outlives its request: stop() fails when one had to be killed."""
        cls.stack.stop()

    def request_pids(self, since):
        """The pids in the log lines the CGI processes wrote (to stderr, which Apache puts in
        its error log) after offset `since` of log_text()."""
        return set(re.findall(r"otlogin\[(\d+)\]", self.stack.log_text()[since:]))

    def test_login_through_cgi(self):
        """Client credentials (Basic, through CGIPassAuth), a direct passcode, its exchange,
        the refresh token at both endpoints: each request a process of its own."""
        st = self.stack
        mark = len(st.log_text())
        client = st.make_client(permissions=["direct"])
        r = st.token_request(client["client_id"], client["client_secret"])
        token = self.assertJSON(r, 200)["access_token"]
        user = st.make_user()
        addr = user["email"]["value"]
        code = st.direct_code(token, addr)
        body = self.assertTokenResponse(st.otp_authenticate(token, addr, code))
        _, claims = st.verify_jwt(body["id_token"], "JWT", client["client_id"])
        self.assertEqual(claims["sub"], user["user_id"])
        self.assertEqual(claims["iss"], "http://127.0.0.1:%d%s" % (st.port, PREFIX))
        # the code was consumed in the database, not in a process that is gone
        self.assertError(st.otp_authenticate(token, addr, code), 400,
                         "auth_invalid_credentials")

        r = st.http("POST", PREFIX + "/v1/auth/token/refresh",
                    json={"refresh_token": body["refresh_token"]}, token=token)
        refreshed = self.assertJSON(r, 200)
        self.assertNotEqual(refreshed["refresh_token"], body["refresh_token"])
        _, claims2 = st.verify_jwt(refreshed["id_token"], "JWT", client["client_id"])
        self.assertEqual(claims2["sub"], user["user_id"])

        r = st.token_request(client["client_id"], client["client_secret"],
                             path=PREFIX + "/oidc/token", grant_type="refresh_token",
                             refresh_token=refreshed["refresh_token"])
        again = self.assertJSON(r, 200)
        self.assertNotEqual(again["refresh_token"], refreshed["refresh_token"])
        _, claims3 = st.verify_jwt(again["id_token"], "JWT", client["client_id"])
        self.assertEqual(claims3["sub"], user["user_id"])
        # one process per request: the six requests above (at least; the JWKS may be cached)
        # logged from six pids, which no pool of four FastCGI workers could
        self.assertGreaterEqual(len(self.request_pids(mark)), 6, st.log_tail(40))

    def test_discovery_under_the_cgi_url(self):
        """SCRIPT_NAME and PATH_INFO as CGI sets them: the endpoints sit under the CGI's
        URL, and the JWKS they name serves the signing key."""
        st = self.stack
        disc = self.assertJSON(st.http("GET", PREFIX + "/.well-known/openid-configuration"),
                               200)
        self.assertEqual(disc["issuer"], st.base_url)
        self.assertTrue(disc["token_endpoint"].startswith(st.base_url + "/"), disc)
        jwks_path = disc["jwks_uri"][len("http://127.0.0.1:%d" % st.port):]
        self.assertTrue(self.assertJSON(st.http("GET", jwks_path), 200).get("keys"))
        self.assertJSON(st.http("GET", PREFIX + "/health"), 200)
        self.assertEqual(st.http("GET", PREFIX + "/no/such/endpoint").status, 404)

    def test_bodies_from_standard_input(self):
        """CGI hands the body on standard input with CONTENT_LENGTH: a bad one gets otlogin's
        JSON 400, one over max_body its 413, a good one is read whole."""
        st = self.stack
        client = st.new_client(permissions=["direct"])
        r = st.http("POST", PREFIX + "/v1/auth/otp/send", body=b"{not json",
                    headers={"Content-Type": "application/json"}, token=client["token"])
        self.assertAnyError(r, 400)
        big = b'{"channel":"direct","identifier_type":"email","identifier":"' + \
            b"a" * (70 * 1024) + b'@example.org"}'
        r = st.http("POST", PREFIX + "/v1/auth/otp/send", body=big,
                    headers={"Content-Type": "application/json"}, token=client["token"])
        self.assertAnyError(r, 413)
        addr = st.make_user()["email"]["value"]
        # padded with spaces to well over a pipe's worth of bytes, still under max_body
        body = ('{"channel":"direct","identifier_type":"email","identifier":"%s"%s}'
                % (addr, " " * 60000)).encode()
        r = st.http("POST", PREFIX + "/v1/auth/otp/send", body=body,
                    headers={"Content-Type": "application/json"}, token=client["token"])
        self.assertIn("code", self.assertJSON(r, 200))

    def test_without_cgipassauth_the_secret_never_arrives(self):
        """The same program where the directory does not turn on CGIPassAuth: Apache keeps
        the Authorization header, so HTTP Basic client authentication fails there, while
        the secret in the form body (which CGI does pass) works: the header, not the
        program, is what CGIPassAuth is for."""
        st = self.stack
        client = st.make_client()
        r = st.token_request(client["client_id"], client["client_secret"],
                             path=NOPASS_PREFIX + "/oidc/token")
        self.assertOAuthError(r, 401, "invalid_client")
        r = st.token_request(client["client_id"], client["client_secret"], auth="post",
                             path=NOPASS_PREFIX + "/oidc/token")
        self.assertEqual(self.assertJSON(r, 200).get("token_type"), "Bearer")
        # and with it, the header does arrive
        r = st.token_request(client["client_id"], client["client_secret"],
                             path=PREFIX + "/oidc/token")
        self.assertEqual(self.assertJSON(r, 200).get("token_type"), "Bearer")


class ApacheCGIDStack(ApacheCGIStack):
    MPM = "event"
    CGI_MODULE = "cgid"


class ApachePreforkCGIStack(ApacheCGIStack):
    MPM = "prefork"
    CGI_MODULE = "cgi"


class CGID(CGIChecks, E2ETestCase):
    stack_class = ApacheCGIDStack


class CGI(CGIChecks, E2ETestCase):
    stack_class = ApachePreforkCGIStack


if __name__ == "__main__":
    import unittest

    unittest.main()
