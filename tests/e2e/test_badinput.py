"""Hostile and malformed requests against otp/send, otp/authenticate and oidc/token: every
one is refused with a JSON error (Content-Type application/json, Cache-Control no-store), and
the server still serves a normal login afterwards (API.md "Conventions for every endpoint",
"Authentication of callers")."""

import base64
import hashlib
import hmac
import json
import time

import harness
from harness import E2ETestCase, unique_email

stack = None

SEND = "/cis/v1/auth/otp/send"
AUTH = "/cis/v1/auth/otp/authenticate"
TOKEN = "/cis/oidc/token"


def setUpModule():
    global stack
    stack = harness.Stack(name="badinput").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header, claims, key=b"not-the-server-key", alg="HS256"):
    h = b64u(json.dumps(header))
    p = b64u(json.dumps(claims))
    if alg == "none":
        return "%s.%s." % (h, p)
    sig = hmac.new(key, ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64u(sig))


class BadInput(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(permissions=["direct"])
        cls.user = stack.make_user()
        cls.addr = cls.user["email"]["value"]

    def post_raw(self, path, body, ctype="application/json", token=None, headers=None):
        h = {"Content-Type": ctype}
        h.update(headers or {})
        return stack.http("POST", path, body=body, headers=h,
                          token=self.client["token"] if token is None else token or None)

    def send_body(self, addr=None, **over):
        b = {"channel": "direct", "identifier_type": "email", "identifier": addr or self.addr}
        b.update(over)
        return b

    def auth_body(self, **over):
        b = {"passcode": "000000", "identifier_type": "email", "identifier": self.addr}
        b.update(over)
        return b

    def fresh_addr(self):
        """A user of its own for a test that must log in (so that a failure counted by an
        earlier refused request cannot lock it out)."""
        return stack.make_user()["email"]["value"]

    # ---- JSON endpoints ------------------------------------------------------------------

    def test_malformed_json(self):
        for path in (SEND, AUTH):
            for body in ('{"channel":', "{", "not json", '{"a":1}x', "{'a': 1}", "",
                         '{"channel":"direct",}', "\xff\xfe", '"just a string"', "[]",
                         "null", "42", '{"identifier":"a\x01b"}'):
                with self.subTest(path=path, body=body):
                    r = self.post_raw(path, body.encode("latin-1"))
                    self.assertError(r, 400, "system_invalid_input")

    def test_malformed_json_quoting_half_a_character(self):
        # Jansson's error quotes the input up to the bad byte: here the first half of "Л".
        for path in (SEND, AUTH):
            with self.subTest(path=path):
                body = self.assertError(self.post_raw(path, '"\\Л'.encode()), 400,
                                        "system_invalid_input")
                self.assertTrue(body["message"].startswith("Malformed JSON"), body)

    def test_invalid_utf8_and_nul(self):
        for path, base in ((SEND, self.send_body()), (AUTH, self.auth_body())):
            raw = json.dumps(base)
            bad = [raw.encode().replace(self.addr.encode(), b"\xc3\x28" + self.addr.encode()),
                   raw.replace(self.addr, "x\\u0000" + self.addr).encode(),
                   raw.replace(self.addr, "\\ud800" + self.addr).encode()]
            for body in bad:
                with self.subTest(path=path, body=body):
                    self.assertError(self.post_raw(path, body), 400, "system_invalid_input")

    def test_wrong_types_send(self):
        cases = {
            "identifier number": self.send_body(identifier=12345),
            "identifier null": self.send_body(identifier=None),
            "identifier array": self.send_body(identifier=[self.addr]),
            "channel unknown": self.send_body(channel="pigeon"),
            "channel case": self.send_body(channel="EMAIL"),
            "channel number": self.send_body(channel=1),
            "identifier_type unknown": self.send_body(identifier_type="ssn"),
            "generate_request_id string": self.send_body(generate_request_id="true"),
            "generate_request_id number": self.send_body(generate_request_id=1),
            "expires_in string": self.send_body(expires_in="10"),
            "expires_in zero": self.send_body(expires_in=0),
            "expires_in negative": self.send_body(expires_in=-5),
            "approval_data string": self.send_body(approval_data="x"),
            "approval_data nested": self.send_body(approval_data={"a": {"b": "c"}}),
            "approval_data number value": self.send_body(approval_data={"a": 1}),
            "approval_data bad key": self.send_body(approval_data={"a b": "c"}),
            "approval_data 11 keys": self.send_body(
                approval_data={"k%d" % i: "v" for i in range(11)}),
            "email_content string": self.send_body(email_content="x"),
            "email_content without subject": self.send_body(channel="email",
                                                            email_content={"bodyText": "x"}),
            "client_attributes string": self.send_body(client_attributes="x"),
            "device_id too long": self.send_body(device_id="d" * 81),
            "empty identifier": self.send_body(identifier=""),
        }
        for name, body in cases.items():
            with self.subTest(name):
                r = stack.http("POST", SEND, json=body, token=self.client["token"])
                b = self.assertError(r, 400, "system_invalid_input")
                self.assertNotIn("code", b)

    def test_wrong_types_authenticate(self):
        cases = {
            "passcode number": self.auth_body(passcode=123456),
            "passcode null": self.auth_body(passcode=None),
            "identifier number": self.auth_body(identifier=5),
            "identifier_type unknown": self.auth_body(identifier_type="ssn"),
            "request_id number": self.auth_body(request_id=7),
            "session_id number": self.auth_body(session_id=7),
            "claims string": self.auth_body(claims="roles"),
            "client_attributes array": self.auth_body(client_attributes=[]),
        }
        for name, body in cases.items():
            with self.subTest(name):
                r = stack.http("POST", AUTH, json=body, token=self.client["token"])
                self.assertError(r, 400, "system_invalid_input")

    def test_missing_fields(self):
        for path, base in ((SEND, self.send_body()), (AUTH, self.auth_body())):
            for field in base:
                body = dict(base)
                del body[field]
                with self.subTest(path=path, missing=field):
                    r = stack.http("POST", path, json=body, token=self.client["token"])
                    self.assertError(r, 400, "system_invalid_input")
            with self.subTest(path=path, missing="everything"):
                r = stack.http("POST", path, json={}, token=self.client["token"])
                self.assertError(r, 400, "system_invalid_input")

    def test_duplicate_keys(self):
        bodies = {
            SEND: '{"channel":"direct","channel":"sms","identifier_type":"email",'
                  '"identifier":"%s"}' % self.addr,
            AUTH: '{"passcode":"000000","identifier_type":"email","identifier":"%s",'
                  '"identifier":"other@example.org"}' % self.addr,
        }
        for path, body in bodies.items():
            with self.subTest(path=path):
                self.assertError(self.post_raw(path, body), 400, "system_invalid_input")
        # Also a duplicate inside a nested object.
        body = ('{"channel":"direct","identifier_type":"email","identifier":"%s",'
                '"approval_data":{"a":"1","a":"2"}}' % self.addr)
        self.assertError(self.post_raw(SEND, body), 400, "system_invalid_input")

    def test_unknown_fields_ignored(self):
        addr = self.fresh_addr()
        r = stack.http("POST", SEND, token=self.client["token"], json=self.send_body(
            addr, some_future_field={"x": [1, 2, {"y": None}]}, another=1,
            email_content={"subject": "s", "futureThing": 1},
            client_attributes={"user_agent": "t", "ip_address": "127.0.0.1", "extra": "x"}))
        body = self.assertJSON(r, 200)
        self.assertIn("code", body)
        r = stack.otp_authenticate(self.client["token"], addr, body["code"],
                                   newer_field="x", client_attributes={"other": True})
        self.assertTokenResponse(r)

    def test_body_too_large(self):
        filler = " " * (64 * 1024)
        for path, base in ((SEND, self.send_body()), (AUTH, self.auth_body())):
            with self.subTest(path=path):
                body = json.dumps(base)[:-1] + filler + "}"
                self.assertGreater(len(body), 65536)
                self.assertError(self.post_raw(path, body.encode()), 413)
        with self.subTest(path=TOKEN):
            body = "grant_type=client_credentials&x=" + "a" * (64 * 1024)
            self.assertAnyError(stack.http("POST", TOKEN, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded"}), 413)

    def test_chunked_bodies(self):
        """Bodies sent with Transfer-Encoding: chunked (lighttpd buffers them and passes a
        CONTENT_LENGTH): a small one works, a large one is 413."""
        import http.client

        def chunked(body):
            conn = http.client.HTTPConnection("127.0.0.1", stack.port,
                                              timeout=harness.HTTP_TIMEOUT)
            try:
                conn.request("POST", SEND, body=iter([body[i:i + 4096]
                                                      for i in range(0, len(body), 4096)]),
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer " + self.client["token"]},
                             encode_chunked=True)
                r = conn.getresponse()
                return harness.Response(r.status, r.headers, r.read())
            finally:
                conn.close()

        small = json.dumps(self.send_body(self.fresh_addr())).encode()
        self.assertIn("code", self.assertJSON(chunked(small), 200))
        large = json.dumps(self.send_body())[:-1].encode() + b" " * 70000 + b"}"
        self.assertAnyError(chunked(large), 413)

    def test_body_at_limit_accepted(self):
        """Exactly 64 KiB is still under the cap (413 only above it)."""
        base = json.dumps(self.send_body(self.fresh_addr()))
        body = base[:-1] + " " * (65536 - len(base)) + "}"
        self.assertEqual(len(body), 65536)
        r = self.post_raw(SEND, body.encode())
        self.assertJSON(r, 200)

    def test_wrong_content_type(self):
        good = json.dumps(self.send_body()).encode()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml",
                      "multipart/form-data; boundary=x", "application/jsonx", None):
            for path in (SEND, AUTH):
                with self.subTest(path=path, ctype=ctype):
                    r = stack.http("POST", path, body=good, token=self.client["token"],
                                   headers={"Content-Type": ctype})
                    self.assertError(r, 415)
        cred = base64.b64encode(("%s:%s" % (self.client["client_id"],
                                            self.client["client_secret"])).encode()).decode()
        for ctype in ("application/json", "text/plain", None):
            with self.subTest(path=TOKEN, ctype=ctype):
                r = stack.http("POST", TOKEN, body=b"grant_type=client_credentials",
                               headers={"Content-Type": ctype, "Authorization": "Basic " + cred})
                self.assertAnyError(r, 415)

    def test_json_with_charset_accepted(self):
        r = self.post_raw(SEND, json.dumps(self.send_body(self.fresh_addr())).encode(),
                          ctype="application/json; charset=utf-8")
        self.assertIn("code", self.assertJSON(r, 200))

    # ---- bearer tokens -------------------------------------------------------------------

    def invalid_bearers(self):
        good = self.client["token"]
        header, claims = harness.jwt_parts(good)
        h, p, s = good.split(".")
        flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
        expired = dict(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
        return {
            "missing": None,
            "empty bearer": "Bearer ",
            "bearer no space": "Bearer" + good,
            "basic scheme": "Basic " + base64.b64encode(b"a:b").decode(),
            "garbage": "Bearer garbage",
            "two parts": "Bearer %s.%s" % (h, p),
            "tampered signature": "Bearer %s.%s.%s" % (h, p, flipped),
            "tampered payload": "Bearer %s.%s.%s" % (
                h, b64u(json.dumps(dict(claims, sub="someone-else"))), s),
            "foreign key": "Bearer " + forge(header, claims),
            "expired, foreign key": "Bearer " + forge(header, expired),
            "alg none": "Bearer " + forge({"alg": "none", "typ": "at+jwt"}, claims, alg="none"),
            "unknown kid": "Bearer " + forge(dict(header, kid="nope"), claims),
            "token plus junk": "Bearer " + good + "x",
            "id-token-like RS256 header": "Bearer " + forge({"alg": "RS256", "typ": "JWT"},
                                                            claims),
        }

    def test_algorithm_confusion(self):
        """HS256 "signed" with the published RSA key, and RS256/none headers naming a
        published kid: all refused (DESIGN rule 10: fixed algorithm per key)."""
        from cryptography.hazmat.primitives import serialization

        header, claims = harness.jwt_parts(self.client["token"])
        for kid, jwk in stack.jwks().items():
            pem = jwk.key.public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
            der = jwk.key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
            forged = {
                "HS256 with the PEM": forge({"alg": "HS256", "typ": "at+jwt", "kid": kid},
                                            claims, key=pem),
                "HS256 with the DER": forge({"alg": "HS256", "typ": "at+jwt", "kid": kid},
                                            claims, key=der),
                "HS256 with the PEM, no kid": forge({"alg": "HS256", "typ": "at+jwt"},
                                                    claims, key=pem),
                "none with a kid": forge({"alg": "none", "typ": "at+jwt", "kid": kid}, claims,
                                         alg="none"),
            }
            for name, tok in forged.items():
                with self.subTest(kid=kid, forgery=name):
                    r = stack.http("POST", SEND, json=self.send_body(), token=tok)
                    self.assertInvalidToken(r)

    def test_invalid_bearer(self):
        for path, body in ((SEND, self.send_body()), (AUTH, self.auth_body())):
            for name, auth in self.invalid_bearers().items():
                with self.subTest(path=path, bearer=name):
                    r = stack.http("POST", path, json=body, headers={"Authorization": auth})
                    self.assertInvalidToken(r)

    def test_user_token_is_not_a_client_token(self):
        """An end user's access token (RS256, sub = user) must not act as a client token."""
        addr = self.fresh_addr()
        code = stack.direct_code(self.client["token"], addr)
        toks = self.assertTokenResponse(stack.otp_authenticate(self.client["token"], addr, code))
        for kind in ("access_token", "id_token"):
            with self.subTest(kind=kind):
                r = stack.http("POST", SEND, json=self.send_body(), token=toks[kind])
                self.assertInvalidToken(r)

    def test_token_in_query_string_refused(self):
        tok = self.client["token"]
        for path in (SEND, AUTH):
            for q in ("access_token", "token"):
                with self.subTest(path=path, param=q):
                    r = stack.http("POST", "%s?%s=%s" % (path, q, tok), json=self.send_body())
                    self.assertInvalidToken(r)
        with self.subTest("token in the JSON body"):
            r = stack.http("POST", SEND, json=self.send_body(access_token=tok))
            self.assertInvalidToken(r)

    # ---- methods and paths ---------------------------------------------------------------

    def test_wrong_method(self):
        cases = [("GET", SEND, "POST"), ("PUT", AUTH, "POST"), ("DELETE", SEND, "POST"),
                 ("GET", TOKEN, "POST"), ("GET", "/oidc/token", "POST"),
                 ("POST", "/cis/health", "GET"), ("POST", "/cis/oidc/jwks", "GET"),
                 ("PUT", "/cis/oidc/.well-known/openid-configuration", "GET")]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = stack.http(method, path, token=self.client["token"])
                if "/oidc/token" in path:
                    self.assertAnyError(r, 405)  # the OAuth endpoint may use RFC 6749 shape
                else:
                    self.assertError(r, 405)
                allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
                self.assertIn(allowed, allow, "Allow: %r" % r.headers.get("Allow"))
                self.assertNotIn(method, allow)

    def test_unknown_path(self):
        for method, path in (("GET", "/cis/nope"), ("POST", "/cis/v1/auth/otp/nope"),
                             ("GET", "/cis/"), ("GET", "/cis"), ("POST", "/cis/v1/auth/otp"),
                             ("GET", "/cis/v1/auth/otp/send/extra"),
                             ("GET", "/cis/health/x"), ("GET", "/oidc/nothing-here"),
                             ("POST", "/cis/V1/AUTH/OTP/SEND")):
            with self.subTest(method=method, path=path):
                r = stack.http(method, path, token=self.client["token"])
                self.assertError(r, 404)

    # ---- token endpoint ------------------------------------------------------------------

    def test_token_endpoint_bad_forms(self):
        cid, sec = self.client["client_id"], self.client["client_secret"]
        form = "application/x-www-form-urlencoded"
        cases = {
            "duplicate grant_type": "grant_type=client_credentials&grant_type=password"
                                    "&client_id=%s&client_secret=%s" % (cid, sec),
            "duplicate client_id": "grant_type=client_credentials&client_id=%s&client_id=x"
                                   "&client_secret=%s" % (cid, sec),
            "bad percent-encoding": "grant_type=client_credentials%%zz&client_id=%s"
                                    "&client_secret=%s" % (cid, sec),
            "missing grant_type": "client_id=%s&client_secret=%s" % (cid, sec),
        }
        for name, body in cases.items():
            with self.subTest(name):
                r = stack.http("POST", TOKEN, body=body, headers={"Content-Type": form})
                b = self.assertAnyError(r, 400)
                self.assertIn("error", b)
                self.assertNotIn("access_token", b)

    def test_token_endpoint_basic_garbage(self):
        for auth in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                     "Basic ", "Bearer " + self.client["token"]):
            with self.subTest(auth=auth):
                r = stack.http("POST", TOKEN, form={"grant_type": "client_credentials"},
                               headers={"Authorization": auth})
                self.assertIn(r.status, (400, 401), "%r" % (r,))
                b = self.assertAnyError(r, r.status)
                self.assertIn(b.get("error"), ("invalid_client", "invalid_request"))


class ForeignToken(E2ETestCase):
    """A genuine client token from another otlogin installation (its own server key) is
    refused, even for a client id that exists here."""

    def test_token_of_another_installation(self):
        here = stack.make_client(permissions=["direct"])
        other = harness.Stack(name="foreign", workers=1).start()
        try:
            there = other.new_client(permissions=["direct"])
        finally:
            other.stop()
        _, claims = harness.jwt_parts(there["token"])
        self.assertEqual(claims["iss"].split("/cis")[0].split(":")[1], "//127.0.0.1")
        body = {"channel": "direct", "identifier_type": "email",
                "identifier": stack.make_user()["email"]["value"]}
        r = stack.http("POST", SEND, json=body, token=there["token"])
        self.assertInvalidToken(r)
        # The same claims re-signed with nothing we know cannot name our client either.
        header, _ = harness.jwt_parts(there["token"])
        tok = forge(header, dict(claims, sub=here["client_id"], client_id=here["client_id"],
                                 iss=stack.issuer))
        self.assertInvalidToken(stack.http("POST", SEND, json=body, token=tok))


class StillConsistent(E2ETestCase):
    """Runs after BadInput (the loader takes a module's classes in name order), so the
    database has seen all of the above."""

    def test_full_login_after_abuse(self):
        client = stack.new_client()
        user = stack.make_user()
        addr = user["email"]["value"]
        code = stack.send_and_read_code(client["token"], addr)
        r = stack.otp_authenticate(client["token"], addr, code)
        body = self.assertTokenResponse(r)
        _, idc = stack.verify_jwt(body["id_token"], "JWT", client["client_id"])
        self.assertEqual(idc["sub"], user["user_id"])
        r = stack.http("GET", "/cis/health")
        self.assertEqual(self.assertJSON(r, 200), {"status": "ok"})

    def test_crlf_in_identifier_sends_nothing(self):
        """An address with CR/LF is refused before the mailer sees it (DESIGN rule 9)."""
        client = stack.new_client(signup="open")
        victim = unique_email("victim")
        for ident in ("a@example.org\r\nRCPT TO:<%s>" % victim,
                      "a@example.org>\r\nBcc: %s" % victim, "%s\n" % victim,
                      "a@b@example.org", "no-at-sign", "x" * 300 + "@example.org"):
            with self.subTest(identifier=ident):
                r = stack.otp_send(client["token"], ident)
                self.assertError(r, 400, "system_invalid_input")
        self.assertNotIn(victim.lower(), stack.mailbox.all_recipients())
