"""otloginctl's client registry end to end (API-OIDC.md "Clients"), with the real otloginctl
on the database of a running otlogin: `client add` with every option (type, PKCE mode,
post-logout redirect URIs, login methods, display name, logo from a URL or a file, colour),
`client update` (only what is given; lists replaced; empty values clear; never the id or
secret), `client list` showing every field, and each bad value refused with a message that
says what is wrong while nothing is stored or changed. The running server sees the records:
a public client has no secret that /oidc/token accepts, a client turned public loses the one
it had, and an update's new resource is honoured at once."""

import base64
import os
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import E2ETestCase

stack = None

# The largest logo file whose data: URI fits the 64 KiB a client stores.
PNG_PREFIX = "data:image/png;base64,"
LOGO_FILE_MAX = (65536 - len(PNG_PREFIX)) // 4 * 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="16" '
       b'height="16"><circle cx="8" cy="8" r="7" fill="#1a7f37"/></svg>\n')


def setUpModule():
    global stack
    stack = harness.Stack(name="clients").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def png(size=64):
    """size bytes that start like a PNG (otlogin checks the signature, not the image)."""
    return (PNG_MAGIC + os.urandom(size))[:size]


class ClientsCase(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="otlogin-logos-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def file(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def ctl(self, *args):
        """otloginctl -c CONF args...; (exit status, stdout, stderr)."""
        cmd = [stack.ctl_bin, "-c", stack.conf] + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)
        return r.returncode, r.stdout, r.stderr

    def add(self, *args):
        """A client add that must succeed; its output."""
        rc, out, err = self.ctl("client", "add", *args)
        self.assertEqual(rc, 0, out + err)
        return harness.parse_json(out)

    def update(self, client_id, *args):
        """A client update that must succeed; the client it prints."""
        rc, out, err = self.ctl("client", "update", client_id, *args)
        self.assertEqual(rc, 0, out + err)
        return harness.parse_json(out)

    def clients(self):
        """client list, as {client_id: client}."""
        rc, out, err = self.ctl("client", "list")
        self.assertEqual(rc, 0, out + err)
        listed = harness.parse_json(out)
        for c in listed:
            self.assertNotIn("secret", c)
            self.assertNotIn("client_secret", c)
        return {c["client_id"]: c for c in listed}

    def listed(self, client_id):
        return self.clients()[client_id]

    def assertRefused(self, rc_out_err, *fragments, status=1):
        rc, out, err = rc_out_err
        self.assertEqual(rc, status, "exit status of %r" % (out + err,))
        self.assertEqual(out, "", "a refused command printed %r" % out)
        for f in fragments:
            self.assertIn(f, err)

    def assertSecretWorks(self, client_id, secret, works=True):
        r = stack.token_request(client_id, secret)
        if works:
            self.assertJSON(r, 200)
        else:
            self.assertOAuthError(r, 401, "invalid_client")


class Add(ClientsCase):
    def test_every_option(self):
        logo = png(300)
        path = self.file("logo.png", logo)
        out = self.add("--name", "Everything", "--redirect-uri", "https://app.example/cb",
                       "--redirect-uri", "http://127.0.0.1:8123/cb", "--resource",
                       "https://api.example", "--permission", "direct", "--signup", "closed",
                       "--existence", "hide", "--type", "confidential", "--pkce", "require",
                       "--post-logout-redirect-uri", "https://app.example/bye",
                       "--post-logout-redirect-uri", "https://app.example/bye2",
                       "--login-methods", "email_otp, sms_otp", "--display-name",
                       "Everything \u2713 App", "--logo", path, "--color", "#1A7F37")
        self.assertEqual(set(out), {"client_id", "client_secret"})
        c = self.listed(out["client_id"])
        self.assertEqual(c["name"], "Everything")
        self.assertEqual(c["redirect_uris"],
                         ["https://app.example/cb", "http://127.0.0.1:8123/cb"])
        self.assertEqual(c["resources"], ["https://api.example"])
        self.assertEqual(c["permissions"], ["direct"])
        self.assertEqual((c["signup"], c["existence"]), ("closed", "hide"))
        self.assertEqual((c["type"], c["pkce"]), ("confidential", "require"))
        self.assertEqual(c["post_logout_redirect_uris"],
                         ["https://app.example/bye", "https://app.example/bye2"])
        self.assertEqual(c["login_methods"], ["email_otp", "sms_otp"])
        self.assertEqual(c["display_name"], "Everything \u2713 App")
        self.assertEqual(c["logo"], PNG_PREFIX + base64.b64encode(logo).decode())
        self.assertEqual(c["color"], "#1A7F37")
        # The running server authenticates the secret that add printed.
        self.assertSecretWorks(out["client_id"], out["client_secret"])

    def test_defaults_and_output_unchanged(self):
        out = self.add("--name", "Plain")
        self.assertEqual(set(out), {"client_id", "client_secret"})
        c = self.listed(out["client_id"])
        self.assertEqual((c["type"], c["pkce"]), ("confidential", "allow"))
        self.assertEqual(c["login_methods"], ["email_otp", "magic_link"])
        self.assertEqual(c["post_logout_redirect_uris"], [])
        for absent in ("display_name", "logo", "color", "allow_http_redirect"):
            self.assertNotIn(absent, c)

    def test_logo_kinds(self):
        url = "https://cdn.example/brand/logo.svg?v=3"
        c = self.listed(self.add("--name", "L1", "--logo", url)["client_id"])
        self.assertEqual(c["logo"], url)
        path = self.file("logo.svg", SVG)
        c = self.listed(self.add("--name", "L2", "--logo", path)["client_id"])
        self.assertEqual(c["logo"], "data:image/svg+xml;base64," + base64.b64encode(SVG).decode())
        jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(50)
        path = self.file("photo.JPG", jpeg)
        c = self.listed(self.add("--name", "L3", "--logo", path)["client_id"])
        self.assertEqual(c["logo"], "data:image/jpeg;base64," + base64.b64encode(jpeg).decode())
        # The largest file that fits, and one byte more.
        path = self.file("max.png", png(LOGO_FILE_MAX))
        c = self.listed(self.add("--name", "L4", "--logo", path)["client_id"])
        self.assertTrue(c["logo"].startswith(PNG_PREFIX))
        self.assertLessEqual(len(c["logo"]), 65536)
        before = self.clients()
        path = self.file("big.png", png(LOGO_FILE_MAX + 1))
        self.assertRefused(self.ctl("client", "add", "--name", "L5", "--logo", path),
                           "too big", str(LOGO_FILE_MAX))
        self.assertEqual(self.clients(), before)

    def test_public_client_has_no_secret(self):
        out = self.add("--name", "SPA", "--type", "public", "--redirect-uri",
                       "https://spa.example/cb")
        self.assertEqual(set(out), {"client_id"}, "a public client was given a secret")
        c = self.listed(out["client_id"])
        self.assertEqual((c["type"], c["pkce"]), ("public", "require"))
        # Nothing the token endpoint is sent authenticates it, not even an empty secret,
        # and however many guesses are sent it never answers as if one were close.
        for secret in ("", "x", "guess-" + os.urandom(8).hex(), out["client_id"]):
            for auth in ("basic", "post"):
                r = stack.token_request(out["client_id"], secret, auth=auth)
                self.assertOAuthError(r, 401, "invalid_client")
        # --pkce require is what it has anyway; allow is refused, and nothing is stored.
        c2 = self.add("--name", "SPA2", "--type", "public", "--pkce", "require")
        self.assertEqual(set(c2), {"client_id"})
        before = self.clients()
        self.assertRefused(self.ctl("client", "add", "--name", "SPA3", "--type", "public",
                                    "--pkce", "allow"), "public client always requires PKCE")
        self.assertEqual(self.clients(), before)

    def test_public_client_at_the_token_endpoint(self):
        """The token endpoint takes a public client named by its client_id alone (no
        secret to send), as its record says, and grants it nothing for itself."""
        pub = self.add("--name", "Native", "--type", "public")["client_id"]
        conf = self.add("--name", "Backend")["client_id"]
        code = {"grant_type": "authorization_code", "code": "not-a-code",
                "redirect_uri": "https://n.example/cb", "code_verifier": "v" * 43}
        r = stack.http("POST", "/cis/oidc/token", form=dict(code, client_id=pub))
        self.assertOAuthError(r, 400, "invalid_grant")
        r = stack.http("POST", "/cis/oidc/token",
                       form={"grant_type": "client_credentials", "client_id": pub})
        self.assertOAuthError(r, 400, "unauthorized_client")
        # A confidential client named the same way is not authenticated.
        r = stack.http("POST", "/cis/oidc/token", form=dict(code, client_id=conf))
        self.assertOAuthError(r, 401, "invalid_client")

    def test_bad_values_refused(self):
        text = self.file("notes.png", b"not a picture at all")
        scripted = self.file("evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg">'
                                         b'<script>alert(1)</script></svg>')
        gif = self.file("anim.gif", b"GIF89a" + os.urandom(20))
        cases = [
            (["--type", "trusted"], "type must be confidential or public"),
            (["--type", "Public"], "type must be confidential or public"),
            (["--pkce", "S256"], "pkce must be allow or require"),
            (["--post-logout-redirect-uri", "http://app.example/bye"], "post-logout"),
            (["--post-logout-redirect-uri", "https://app.example/bye#x"], "post-logout"),
            (["--post-logout-redirect-uri", "/bye"], "post-logout"),
            (["--login-methods", "password"], "login methods are"),
            (["--login-methods", ""], "login methods are"),
            (["--login-methods", "email_otp,email_otp"], "each once"),
            (["--login-methods", "email_otp sms_otp"], "login methods are"),
            (["--display-name", "two\nlines"], "display name"),
            (["--display-name", "x" * 65], "display name"),
            (["--display-name", "rev\u202eersed"], "display name"),
            (["--display-name", ""], "display name"),
            (["--color", "red"], "#RRGGBB"),
            (["--color", "#12345"], "#RRGGBB"),
            (["--color", "#12345G"], "#RRGGBB"),
            (["--logo", "javascript:alert(1)"], "--logo javascript:alert(1)"),
            (["--logo", "https://cdn.example/\"onerror=\"x"], "a logo is"),
            (["--logo", "https:///logo.png"], "a logo is"),
            (["--logo", text], "a logo is"),
            (["--logo", scripted], "without scripts"),
            (["--logo", gif], ".png, .svg, .jpg or .jpeg"),
            (["--logo", os.path.join(self.tmp, "missing.png")], "cannot read"),
            (["--logo", "data:image/png;base64,!!!!"], "a logo is"),
        ]
        before = self.clients()
        for args, message in cases:
            with self.subTest(args=args):
                self.assertRefused(self.ctl("client", "add", "--name", "Bad", *args), message)
        self.assertEqual(self.clients(), before, "a refused client was stored")
        # Usage errors: an option without its value, an unknown one.
        self.assertRefused(self.ctl("client", "add", "--name", "Bad", "--color"), status=2)
        self.assertRefused(self.ctl("client", "add", "--name", "Bad", "--colour", "#000000"),
                           status=2)
        self.assertEqual(self.clients(), before)


class Update(ClientsCase):
    def test_update_every_field(self):
        out = self.add("--name", "Up", "--redirect-uri", "https://up.example/cb",
                       "--permission", "direct")
        cid, secret = out["client_id"], out["client_secret"]
        old = self.listed(cid)
        # The running server refuses a resource the client does not have yet.
        r = stack.token_request(cid, secret, resource="https://api.up.example")
        self.assertOAuthError(r, 400, "invalid_target")
        logo = png(120)
        printed = self.update(
            cid, "--name", "Up 2", "--redirect-uri", "https://up.example/cb2", "--redirect-uri",
            "https://up.example/cb3", "--resource", "https://api.up.example", "--permission",
            "admin", "--signup", "closed", "--existence", "hide", "--pkce", "require",
            "--post-logout-redirect-uri", "https://up.example/bye", "--login-methods",
            "magic_link", "--display-name", "Up Two", "--logo", self.file("up.png", logo),
            "--color", "#abcdef")
        self.assertNotIn("secret", printed)
        c = self.listed(cid)
        self.assertEqual(printed, c)
        self.assertEqual(c["client_id"], cid)
        self.assertEqual(c["name"], "Up 2")
        self.assertEqual(c["redirect_uris"], ["https://up.example/cb2", "https://up.example/cb3"])
        self.assertEqual(c["resources"], ["https://api.up.example"])
        self.assertEqual(c["permissions"], ["admin"])
        self.assertEqual((c["signup"], c["existence"]), ("closed", "hide"))
        self.assertEqual((c["type"], c["pkce"]), ("confidential", "require"))
        self.assertEqual(c["post_logout_redirect_uris"], ["https://up.example/bye"])
        self.assertEqual(c["login_methods"], ["magic_link"])
        self.assertEqual(c["display_name"], "Up Two")
        self.assertEqual(c["logo"], PNG_PREFIX + base64.b64encode(logo).decode())
        self.assertEqual(c["color"], "#abcdef")
        self.assertEqual(c["created_at"], old["created_at"])
        self.assertIsInstance(c.get("updated_at"), int)
        # The secret is the same, and the running server sees the new resource at once.
        self.assertJSON(stack.token_request(cid, secret, resource="https://api.up.example"),
                        200)

    def test_only_what_is_given_and_clearing(self):
        cid = self.add("--name", "Part", "--redirect-uri", "https://p.example/a",
                       "--redirect-uri", "https://p.example/b", "--display-name", "Part",
                       "--color", "#000000", "--logo", "https://p.example/l.png")["client_id"]
        before = self.listed(cid)
        c = self.update(cid, "--color", "#FFFFFF")
        self.assertEqual(c["color"], "#FFFFFF")
        for k in before:
            if k not in ("color", "updated_at"):
                self.assertEqual(c[k], before[k], k)
        # A list option replaces the whole list.
        c = self.update(cid, "--redirect-uri", "https://p.example/c")
        self.assertEqual(c["redirect_uris"], ["https://p.example/c"])
        # Empty values clear.
        c = self.update(cid, "--display-name", "", "--logo", "", "--redirect-uri", "")
        self.assertNotIn("display_name", c)
        self.assertNotIn("logo", c)
        self.assertEqual(c["redirect_uris"], [])
        self.assertEqual(c["color"], "#FFFFFF")
        self.assertEqual(self.listed(cid), c)

    def test_allow_http_redirect_back_and_forth(self):
        cid = self.add("--name", "Http")["client_id"]
        c = self.update(cid, "--allow-http-redirect", "--redirect-uri", "http://app.example/cb")
        self.assertIs(c.get("allow_http_redirect"), True)
        before = self.listed(cid)
        # Withdrawing the flag while a plain http URI needs it is refused...
        self.assertRefused(self.ctl("client", "update", cid, "--no-allow-http-redirect"),
                           "--allow-http-redirect")
        self.assertEqual(self.listed(cid), before)
        # ...and accepted along with an https one.
        c = self.update(cid, "--no-allow-http-redirect", "--redirect-uri",
                        "https://app.example/cb")
        self.assertNotIn("allow_http_redirect", c)

    def test_refused_update_changes_nothing(self):
        out = self.add("--name", "Keep", "--redirect-uri", "https://k.example/cb",
                       "--display-name", "Keep")
        cid, secret = out["client_id"], out["client_secret"]
        before = self.clients()
        cases = [
            # A good value next to a bad one: neither is applied.
            (["--name", "Changed", "--color", "blue"], "#RRGGBB"),
            (["--display-name", "Changed", "--type", "root"], "type must be"),
            (["--redirect-uri", "http://k.example/cb"], "--allow-http-redirect"),
            (["--post-logout-redirect-uri", "ftp://k.example/"], "post-logout"),
            (["--login-methods", "sms"], "login methods are"),
            (["--pkce", "maybe"], "pkce must be"),
            (["--permission", "root"], "permissions are"),
            (["--signup", "ajar"], "signup must be"),
            (["--existence", "maybe"], "existence must be"),
            (["--name", ""], "a client needs a name"),
            (["--display-name", "\x07bell"], "display name"),
            (["--logo", self.file("fake.jpg", b"\x89PNG\r\n\x1a\n....")], "a logo is"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                self.assertRefused(self.ctl("client", "update", cid, *args), message)
        self.assertEqual(self.clients(), before, "a refused update changed something")
        self.assertRefused(self.ctl("client", "update", "0" * 32, "--name", "x"), "no client")
        self.assertRefused(self.ctl("client", "update", cid), "nothing to change", status=2)
        # The id and the secret are no options at all.
        self.assertRefused(self.ctl("client", "update", cid, "--secret", "mine"), status=2)
        self.assertRefused(self.ctl("client", "update", cid, "--client-id", "mine"), status=2)
        self.assertEqual(self.clients(), before)
        self.assertSecretWorks(cid, secret)

    def test_turned_public_loses_its_secret(self):
        out = self.add("--name", "Goes public", "--redirect-uri", "https://g.example/cb")
        cid, secret = out["client_id"], out["client_secret"]
        self.assertSecretWorks(cid, secret)
        c = self.update(cid, "--type", "public")
        self.assertEqual((c["type"], c["pkce"]), ("public", "require"))
        self.assertSecretWorks(cid, secret, works=False)
        before = self.listed(cid)
        # Turning it back would need a secret it no longer has; PKCE stays required.
        self.assertRefused(self.ctl("client", "update", cid, "--type", "confidential"),
                           "cannot become confidential")
        self.assertRefused(self.ctl("client", "update", cid, "--pkce", "allow"),
                           "public client always requires PKCE")
        self.assertEqual(self.listed(cid), before)
        self.assertSecretWorks(cid, secret, works=False)
        # The token endpoint now takes it by its client_id alone.
        r = stack.http("POST", "/cis/oidc/token",
                       form={"grant_type": "authorization_code", "code": "not-a-code",
                             "redirect_uri": "https://g.example/cb", "client_id": cid,
                             "code_verifier": "v" * 43})
        self.assertOAuthError(r, 400, "invalid_grant")
        # Its other fields still change.
        c = self.update(cid, "--display-name", "Public now")
        self.assertEqual((c["type"], c["display_name"]), ("public", "Public now"))


if __name__ == "__main__":
    unittest.main()
