"""etc/lighttpd/otlogin.conf on its own: lighttpd with the shipped snippet runs fcgi_echo.py in
place of otlogin.fcgi, which answers with the FastCGI parameters it received. This pins down
SCRIPT_NAME / PATH_INFO for the /cis mount and the root rewrites, that Authorization and the
query string reach the application, the worker count and OTLOGIN_CONF from the variables,
and that nothing outside /cis is routed to it."""

import os

import harness
from harness import E2ETestCase

stack = None
ECHO = os.path.join(harness.HERE, "fcgi_echo.py")


def setUpModule():
    global stack
    stack = harness.Stack(name="lighttpd-echo", app=ECHO).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


class Snippet(E2ETestCase):
    def echo(self, method, path, **kw):
        r = stack.http(method, path, **kw)
        self.assertEqual(r.status, 200, "%s %s: %r" % (method, path, r))
        self.assertTrue(r.content_type.startswith("application/json"), "%r" % (r,))
        return r.json

    def test_path_info(self):
        cases = {
            "/cis/v1/auth/otp/send": ("/cis", "/v1/auth/otp/send", ""),
            "/cis/oidc/token": ("/cis", "/oidc/token", ""),
            "/oidc/token": ("/cis", "/oidc/token", ""),
            "/oidc/jwks?x=1&y=2": ("/cis", "/oidc/jwks", "x=1&y=2"),
            "/.well-known/openid-configuration": ("/cis", "/.well-known/openid-configuration",
                                                  ""),
            "/cis/health?a=b": ("/cis", "/health", "a=b"),
            "/cis/": ("/cis", "/", ""),
            "/cis": ("/cis", None, ""),
            "/cis/v1/users/u-1/sessions": ("/cis", "/v1/users/u-1/sessions", ""),
        }
        for path, (script, info, query) in cases.items():
            with self.subTest(path=path):
                env = self.echo("GET", path)
                self.assertEqual(env.get("SCRIPT_NAME"), script)
                self.assertEqual(env.get("PATH_INFO") or None, info)
                self.assertEqual(env.get("QUERY_STRING", ""), query)
                self.assertEqual(env.get("REQUEST_METHOD"), "GET")

    def test_request_uri_keeps_what_the_client_asked(self):
        env = self.echo("GET", "/oidc/token")
        self.assertEqual(env.get("REQUEST_URI"), "/oidc/token")

    def test_authorization_and_body_reach_the_app(self):
        env = self.echo("POST", "/cis/v1/auth/otp/send", json={"a": "b" * 70000},
                        headers={"Authorization": "Bearer abc.def.ghi"})
        self.assertEqual(env.get("HTTP_AUTHORIZATION"), "Bearer abc.def.ghi")
        self.assertEqual(env.get("CONTENT_TYPE"), "application/json")
        self.assertEqual(int(env.get("CONTENT_LENGTH")), env["_body_length"])
        self.assertGreater(env["_body_length"], 70000)
        env = self.echo("POST", "/oidc/token", form={"grant_type": "client_credentials"},
                        headers={"Authorization": "Basic YTpi"})
        self.assertEqual(env.get("HTTP_AUTHORIZATION"), "Basic YTpi")
        self.assertEqual(env.get("CONTENT_TYPE"), "application/x-www-form-urlencoded")

    def test_environment_and_workers(self):
        env = self.echo("GET", "/cis/health")
        self.assertEqual(env.get("_OTLOGIN_CONF"), stack.conf)
        pids = [p for p, _ in stack.worker_pids()]
        self.assertEqual(len(pids), stack.workers)
        self.assertIn(env["_pid"], pids)
        # Concurrent requests are answered only by the workers lighttpd started.
        seen = {e.json["_pid"] for e in stack.parallel(
            [lambda: stack.http("GET", "/cis/health")] * 40, threads=20)}
        self.assertTrue(seen <= set(pids))

    def test_outside_cis_not_routed(self):
        """lighttpd refuses these itself, from its empty document root: 404, and 403 for the
        root directory (no index, no listing). Not just any status but 200: a path routed to
        a worker that crashed on it comes back as lighttpd's 500."""
        for path in ("/cisco", "/cisco/v1/auth/otp/send", "/ci", "/", "/v1/auth/otp/send",
                     "/oidcx/token", "/x/oidc/token"):
            with self.subTest(path=path):
                r = stack.http("GET", path)
                self.assertEqual(r.status, 403 if path == "/" else 404, "%s: %r" % (path, r))
                self.assertFalse(r.content_type.startswith("application/json"),
                                 "%s reached the application: %r" % (path, r))
