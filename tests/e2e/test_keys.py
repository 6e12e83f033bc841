"""Signing keys end to end (issue 5 item 6; README "Signing keys"): RS256, ES256 and EdDSA
(Ed25519) chosen by [keys] algorithm, the JWKS they are published in, otloginctl key list /
rotate, and a rotation while logins and refreshes are flowing.

Every user token is verified with PyJWT against /cis/oidc/jwks, with the algorithm its JWK
names: ES256 signatures are the 64-byte R || S of RFC 7518 (not DER), Ed25519 ones 64 bytes,
RS256 ones as long as the modulus. JWKS entries carry public members only.

The rotation test runs with [keys] publish_ahead = 2 and overlap = 4 so that it takes seconds.
What it asserts follows from the server's rules alone (a key is published when it is added,
signs from its activation, stays published `overlap` seconds after its successor activates;
every worker rereads the keys within a second), with no timing threshold beyond "eventually,
within 30 s":
  - the new kid is in the JWKS before any token carries it, and once one token carries it,
    every JWKS and every token asked for afterwards does (all workers switched);
  - no request fails; refresh tokens from before the rotation refresh after it;
  - tokens signed by the old key verify against the JWKS served during the overlap; any JWKS
    answered within `overlap` seconds of the last old-key request still holds the old key;
  - after the overlap the old kid leaves the JWKS, on every worker, for good."""

import base64
import inspect
import json
import subprocess
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import harness
from harness import E2ETestCase, HarnessError, b64url_decode

# Requests that must see a change made by another process are repeated this often, so that
# with lighttpd's 4 workers each one is very likely served by every worker at least once.
EVERY_WORKER = 8
EVENTUALLY = 30  # seconds: the bound on every wait for something that must happen
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
ALGS = ("RS256", "ES256", "EdDSA")


class KeyStack(harness.Stack):
    """A Stack whose otlogin.conf has a [keys] section (the shared harness writes server,
    tokens, otp and mail only)."""

    def __init__(self, keys=None, **kw):
        self.keys_conf = dict(keys or {})
        if "keys" in inspect.signature(harness.Stack.__init__).parameters:
            kw["keys"] = self.keys_conf  # a harness that knows [keys] writes it itself
            self.keys_conf = {}
        super().__init__(**kw)

    def _write_otlogin_conf(self):
        super()._write_otlogin_conf()
        if self.keys_conf:
            with open(self.conf, "a") as f:
                f.write("\n[keys]\n")
                for k, v in self.keys_conf.items():
                    f.write("%s = %s\n" % (k, v))


# ---- helpers ----------------------------------------------------------------------------------

def fetch_jwks(stack):
    """GET /cis/oidc/jwks as a list of JWK dicts (raises on anything but 200)."""
    r = stack.http("GET", "/cis/oidc/jwks")
    if r.status != 200:
        raise HarnessError("GET /cis/oidc/jwks: %r" % (r,))
    return r.json["keys"]


def by_kid(keys):
    return {k["kid"]: k for k in keys}


def key_list(stack):
    return stack.ctl("key", "list", parse=True)


def signing_kid(stack):
    keys = key_list(stack)
    signing = [k["kid"] for k in keys if k.get("signing") is True]
    if len(signing) != 1:
        raise HarnessError("key list: not exactly one signing key: %r" % keys)
    return signing[0]


def ctl_run(stack, *args, conf=None):
    cmd = [harness.CTL_BIN, "-c", conf or stack.conf] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)


def direct_login(stack, client, addr):
    code = stack.direct_code(client["token"], addr)
    return stack.otp_authenticate(client["token"], addr, code)


def refresh_v1(stack, client, rt):
    return stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                      token=client["token"])


def refresh_oidc(stack, client, rt):
    return stack.token_request(client["client_id"], client["client_secret"],
                               grant_type="refresh_token", refresh_token=rt)


def session_authenticate(stack, client, session_id):
    return stack.http("POST", "/cis/v1/auth/session/authenticate",
                      json={"session_id": session_id}, token=client["token"])


def signature_bytes(token):
    return b64url_decode(token.split(".")[2])


def wait_for(what, cond, timeout=EVENTUALLY, step=0.05):
    """Poll cond() until it returns something true (returned); HarnessError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise HarnessError("not within %ss: %s" % (timeout, what))
        time.sleep(step)


class KeyCase(E2ETestCase):
    def checkJWK(self, k, alg=None):
        """A published JWK: public members only, the shape its kty requires."""
        for m in PRIVATE_MEMBERS:
            self.assertNotIn(m, k, "private member %r published: %r" % (m, k))
        self.assertIsInstance(k.get("kid"), str)
        self.assertTrue(k["kid"])
        self.assertEqual(k.get("use"), "sig", k)
        self.assertIn(k.get("alg"), ALGS, k)
        if alg is not None:
            self.assertEqual(k["alg"], alg, k)
        if k["alg"] == "RS256":
            self.assertEqual(set(k), {"kty", "kid", "use", "alg", "n", "e"}, k)
            self.assertEqual(k["kty"], "RSA")
            self.assertGreaterEqual(len(b64url_decode(k["n"])) * 8, 2048, "RSA modulus size")
            self.assertFalse(k["n"].startswith("AA"), "RSA n with a leading zero byte")
        elif k["alg"] == "ES256":
            self.assertEqual(set(k), {"kty", "kid", "use", "alg", "crv", "x", "y"}, k)
            self.assertEqual((k["kty"], k["crv"]), ("EC", "P-256"))
            self.assertEqual(len(b64url_decode(k["x"])), 32)
            self.assertEqual(len(b64url_decode(k["y"])), 32)
        else:
            self.assertEqual(set(k), {"kty", "kid", "use", "alg", "crv", "x"}, k)
            self.assertEqual((k["kty"], k["crv"]), ("OKP", "Ed25519"))
            self.assertEqual(len(b64url_decode(k["x"])), 32)
        for m in ("n", "e", "x", "y"):
            if m in k:
                self.assertNotIn("=", k[m], "base64url without padding")
        # PyJWT (cryptography) reads it as a public key of that kind.
        key = jwt.PyJWK(k).key
        want = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey,
                "EdDSA": ed25519.Ed25519PublicKey}[k["alg"]]
        self.assertIsInstance(key, want)
        if k["alg"] == "ES256":
            self.assertEqual(key.curve.name, "secp256r1")

    def verifyToken(self, stack, token, typ, audience, jwks, alg=None):
        """Verify with PyJWT against the JWK (from jwks, {kid: dict}) its header names, with
        the JWK's algorithm only; checks typ, iss, aud, exp and the signature's size.
        Returns (header, claims)."""
        header = jwt.get_unverified_header(token)
        self.assertEqual(header.get("typ"), typ, header)
        kid = header.get("kid")
        self.assertIn(kid, jwks, "kid %r not in JWKS %r" % (kid, list(jwks)))
        jwk = jwks[kid]
        self.assertEqual(header.get("alg"), jwk["alg"], "header %r, JWK %r" % (header, jwk))
        if alg is not None:
            self.assertEqual(header["alg"], alg)
        sig = signature_bytes(token)
        if jwk["alg"] == "RS256":
            self.assertEqual(len(sig), len(b64url_decode(jwk["n"])))
        else:
            self.assertEqual(len(sig), 64, "%s signature of %d bytes" % (jwk["alg"], len(sig)))
        claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]],
                            audience=audience, issuer=stack.issuer, leeway=5,
                            options={"require": ["iss", "sub", "aud", "iat", "exp"]})
        return header, claims

    def verifyTokens(self, stack, body, client, user_id, jwks, alg=None):
        """Both JWTs of a token response; returns (kid, id claims, access claims)."""
        hi, idc = self.verifyToken(stack, body["id_token"], "JWT", client["client_id"], jwks,
                                   alg)
        ha, atc = self.verifyToken(stack, body["access_token"], "at+jwt", client["client_id"],
                                   jwks, alg)
        self.assertEqual(hi["kid"], ha["kid"], "one response, two signing keys")
        for c in (idc, atc):
            self.assertEqual(c["sub"], user_id)
            self.assertGreater(c["exp"], c["iat"])
        self.assertEqual(idc["sid"], atc["sid"])
        self.assertIsInstance(idc.get("amr"), list)
        self.assertTrue(idc["amr"])
        return hi["kid"], idc, atc


# ---- one stack per algorithm ------------------------------------------------------------------

class AlgorithmMixin:
    """Tests for a stack whose [keys] algorithm is ALG (otloginctl init makes that key)."""

    ALG = None
    stack = None

    @classmethod
    def setUpClass(cls):
        cls.stack = KeyStack(name="keys-%s" % cls.ALG.lower(),
                             keys={"algorithm": cls.ALG}).start()
        cls.client = cls.stack.new_client(permissions=["direct"])

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_jwks(self):
        """One key of ALG, the same on every worker, public members only."""
        seen = []
        for i in range(EVERY_WORKER):
            r = self.stack.http("GET", "/cis/oidc/jwks")
            body = self.assertJSON(r, 200)
            self.assertEqual(set(body), {"keys"})
            self.assertEqual(len(body["keys"]), 1, body)
            self.checkJWK(body["keys"][0], self.ALG)
            seen.append(body["keys"][0])
        self.assertTrue(all(k == seen[0] for k in seen), "workers publish different keys")
        # The discovery document points at it and names the algorithm.
        for path in ("/cis/oidc/.well-known/openid-configuration",
                     "/.well-known/openid-configuration"):
            doc = self.assertJSON(self.stack.http("GET", path), 200)
            self.assertEqual(doc["jwks_uri"], self.stack.base_url + "/oidc/jwks")
            self.assertEqual(doc["id_token_signing_alg_values_supported"], [self.ALG])

    def test_key_list(self):
        keys = key_list(self.stack)
        self.assertEqual(len(keys), 1, keys)
        k = dict(keys[0])
        self.assertIs(k.pop("signing"), True)
        self.checkJWK(k, self.ALG)
        self.assertEqual([k], fetch_jwks(self.stack))

    def test_init_is_idempotent(self):
        before = key_list(self.stack)
        self.stack.ctl("init")
        self.assertEqual(key_list(self.stack), before)
        self.assertEqual(by_kid(fetch_jwks(self.stack)).keys(), {k["kid"] for k in before})

    def test_tokens_verify(self):
        """A login, a refresh of each kind and a silent sign-in, on every worker: both tokens
        verify with PyJWT under ALG and the published key."""
        jwks = by_kid(fetch_jwks(self.stack))
        kid = next(iter(jwks))
        for i in range(EVERY_WORKER // 2):
            with self.subTest(round=i):
                user = self.stack.make_user()
                body = self.assertTokenResponse(
                    direct_login(self.stack, self.client, user["email"]["value"]))
                got, idc, atc = self.verifyTokens(self.stack, body, self.client,
                                                  user["user_id"], jwks, self.ALG)
                self.assertEqual(got, kid)
                self.assertEqual(idc["amr"], ["otp"])
                b = self.assertJSON(refresh_v1(self.stack, self.client,
                                               body["refresh_token"]), 200)
                self.verifyTokens(self.stack, b, self.client, user["user_id"], jwks, self.ALG)
                b = self.assertJSON(refresh_oidc(self.stack, self.client, b["refresh_token"]),
                                    200)
                self.verifyTokens(self.stack, b, self.client, user["user_id"], jwks, self.ALG)
                b = self.assertTokenResponse(session_authenticate(self.stack, self.client,
                                                                  body["session_id"]))
                self.verifyTokens(self.stack, b, self.client, user["user_id"], jwks, self.ALG)

    def test_tampered_tokens_fail(self):
        jwks = by_kid(fetch_jwks(self.stack))
        user = self.stack.make_user()
        body = self.assertTokenResponse(direct_login(self.stack, self.client,
                                                     user["email"]["value"]))
        token = body["id_token"]
        h, p, s = token.split(".")
        key = jwt.PyJWK(next(iter(jwks.values()))).key
        claims = json.loads(b64url_decode(p))
        claims["sub"] = "someone-else"
        forged_p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        sig = bytearray(signature_bytes(token))
        sig[len(sig) // 2] ^= 1
        forged_s = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
        for bad in ("%s.%s.%s" % (h, forged_p, s), "%s.%s.%s" % (h, p, forged_s)):
            with self.assertRaises(jwt.InvalidSignatureError):
                jwt.decode(bad, key, algorithms=[self.ALG], audience=self.client["client_id"])
        # The key verifies nothing under another algorithm.
        other = [a for a in ALGS if a != self.ALG]
        with self.assertRaises(jwt.InvalidTokenError):
            jwt.decode(token, key, algorithms=other, audience=self.client["client_id"])


class RS256Keys(AlgorithmMixin, KeyCase):
    ALG = "RS256"


class ES256Keys(AlgorithmMixin, KeyCase):
    ALG = "ES256"

    def test_signature_is_raw_r_s(self):
        """64 bytes, R || S, each a 32-byte big-endian integer below the group order (a DER
        signature would start with 0x30 and be 70 to 72 bytes)."""
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        for i in range(EVERY_WORKER):
            user = self.stack.make_user()
            body = self.assertTokenResponse(direct_login(self.stack, self.client,
                                                         user["email"]["value"]))
            for token in (body["id_token"], body["access_token"]):
                sig = signature_bytes(token)
                self.assertEqual(len(sig), 64)
                r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                self.assertTrue(0 < r < order and 0 < s < order, (r, s))


class EdDSAKeys(AlgorithmMixin, KeyCase):
    ALG = "EdDSA"


# ---- key rotate / key list with a long publish_ahead: deterministic ----------------------------

class PublishAhead(KeyCase):
    """[keys] algorithm = ES256, publish_ahead = 600: a rotated key is published at once and
    does not sign within the test."""

    @classmethod
    def setUpClass(cls):
        cls.stack = KeyStack(name="keys-ahead",
                             keys={"algorithm": "ES256", "publish_ahead": 600}).start()
        cls.client = cls.stack.new_client(permissions=["direct"])

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_rotate_publishes_first(self):
        stack = self.stack
        old = signing_kid(stack)
        r = ctl_run(stack, "key", "rotate")  # no --alg: [keys] algorithm
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("600", r.stderr)
        keys = key_list(stack)
        self.assertEqual(len(keys), 2, keys)
        new = [k for k in keys if k["kid"] != old]
        self.assertEqual(len(new), 1)
        new = new[0]
        self.assertEqual(new["alg"], "ES256")
        self.assertIs(new["signing"], False)
        self.assertEqual(signing_kid(stack), old)
        # Every worker publishes both (within a second: they poll), and still signs with the
        # old one.
        wait_for("the new kid in the JWKS",
                 lambda: all(new["kid"] in by_kid(fetch_jwks(stack))
                             for _ in range(EVERY_WORKER)))
        for i in range(EVERY_WORKER):
            with self.subTest(attempt=i):
                jwks = by_kid(fetch_jwks(stack))
                self.assertEqual(set(jwks), {old, new["kid"]})
                for k in jwks.values():
                    self.checkJWK(k, "ES256")
                user = stack.make_user()
                body = self.assertTokenResponse(direct_login(stack, self.client,
                                                             user["email"]["value"]))
                kid, _, _ = self.verifyTokens(stack, body, self.client, user["user_id"], jwks,
                                              "ES256")
                self.assertEqual(kid, old)
        # A second rotation of another algorithm: three keys, the first still signs.
        stack.ctl("key", "rotate", "--alg", "EdDSA")
        keys = key_list(stack)
        self.assertEqual(len(keys), 3, keys)
        self.assertEqual(signing_kid(stack), old)
        third = [k for k in keys if k["kid"] not in (old, new["kid"])][0]
        self.assertEqual((third["alg"], third["kty"], third["crv"]), ("EdDSA", "OKP", "Ed25519"))
        wait_for("the EdDSA kid in the JWKS",
                 lambda: all(third["kid"] in by_kid(fetch_jwks(stack))
                             for _ in range(EVERY_WORKER)))
        for k in fetch_jwks(stack):
            self.checkJWK(k)
        user = stack.make_user()
        body = self.assertTokenResponse(direct_login(stack, self.client,
                                                     user["email"]["value"]))
        kid, _, _ = self.verifyTokens(stack, body, self.client, user["user_id"],
                                      by_kid(fetch_jwks(stack)), "ES256")
        self.assertEqual(kid, old)

    def test_rotate_bad_alg(self):
        before = key_list(self.stack)
        for alg in ("HS256", "rs256", "none", "ES384", ""):
            with self.subTest(alg=alg):
                r = ctl_run(self.stack, "key", "rotate", "--alg", alg)
                self.assertEqual(r.returncode, 2, r)
                self.assertIn("RS256, ES256 or EdDSA", r.stderr)
        self.assertEqual(key_list(self.stack), before)

    def test_bad_algorithm_in_config(self):
        with open(self.stack.conf) as f:
            text = f.read()
        self.assertIn("algorithm = ES256", text)
        bad = self.stack.path("bad-alg.conf")
        with open(bad, "w") as f:
            f.write(text.replace("algorithm = ES256", "algorithm = HS256"))
        r = ctl_run(self.stack, "key", "list", conf=bad)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("algorithm", r.stderr)
        self.assertEqual(r.stdout, "")


# ---- rotation while requests are flowing ------------------------------------------------------

PUBLISH_AHEAD = 2
OVERLAP = 4


class Traffic:
    """Background traffic: `threads` users each refreshing one long chain (v1 and
    /oidc/token), signing in silently and logging in (direct OTP) in a loop, and a JWKS poller.
    Records every token response (wall-clock send and answer times) and every JWKS; any failure
    is recorded, not raised. Bounded by stop(), max_seconds and max_rounds."""

    def __init__(self, stack, client, threads=3, max_seconds=120, max_rounds=10000):
        self.stack, self.client = stack, client
        self.lock = threading.Lock()
        self.tokens = []  # dicts: sent, done, kind, chain, body, user_id
        self.jwks = []  # dicts: sent, done, keys ({kid: jwk})
        self.failures = []
        self.first = {}  # kid: the token record first answered with it
        self.halt = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.max_rounds = max_rounds
        self.users = [stack.make_user() for _ in range(threads)]
        self.threads = [threading.Thread(target=self._user_loop, args=(i, u), daemon=True)
                        for i, u in enumerate(self.users)]
        self.threads.append(threading.Thread(target=self._jwks_loop, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(timeout=harness.HTTP_TIMEOUT * 2)
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise HarnessError("traffic threads still running: %r" % alive)

    def running(self):
        return not self.halt.is_set() and time.monotonic() < self.deadline

    def _fail(self, what, detail):
        with self.lock:
            self.failures.append((time.time(), what, detail))

    def _call(self, kind, chain, user, fn):
        """Run fn() (an HTTP call answering tokens); record it; the body or None."""
        sent = time.time()
        try:
            r = fn()
        except Exception as e:  # a failed request is what the test counts
            self._fail(kind, repr(e))
            return None
        done = time.time()
        if r.status != 200:
            self._fail(kind, repr(r))
            return None
        body = r.json
        kid = kid_of(body["id_token"])
        with self.lock:
            self.tokens.append({"sent": sent, "done": done, "kind": kind, "chain": chain,
                                "body": body, "user_id": user["user_id"], "kid": kid})
            if kid not in self.first or done < self.first[kid]["done"]:
                self.first[kid] = self.tokens[-1]
        return body

    def _login(self, chain, user):
        """A direct OTP login (recorded under chain); the body or None."""
        st, client, addr = self.stack, self.client, user["email"]["value"]
        try:
            r = st.otp_send(client["token"], addr, channel="direct")
        except Exception as e:
            self._fail("otp/send", repr(e))
            return None
        if r.status != 200:
            self._fail("otp/send", repr(r))
            return None
        code = r.json["code"]
        return self._call("login", chain, user,
                          lambda: st.otp_authenticate(client["token"], addr, code))

    def _user_loop(self, n, user):
        """One long refresh chain, begun before the rotation and refreshed across it (v1 and
        /oidc/token in turn), with a silent sign-in into its session and a fresh login (its
        own chain, refreshed once) every fifth round."""
        st, client = self.stack, self.client
        chain, body = None, None
        for i in range(self.max_rounds):
            if not self.running():
                return
            if body is None:  # the first round, or the chain broke (already a failure)
                chain = (n, i)
                body = self._login(chain, user)
                if body is None:
                    time.sleep(0.05)
                    continue
                session_id, rt = body["session_id"], body["refresh_token"]
            if i % 5 == 4:
                extra = self._login((n, i, "extra"), user)
                if extra is not None:
                    self._call("refresh", (n, i, "extra"), user,
                               lambda: refresh_v1(st, client, extra["refresh_token"]))
                self._call("silent", chain, user,
                           lambda: session_authenticate(st, client, session_id))
            fn = (refresh_v1, refresh_oidc)[i % 2]
            b = self._call("refresh", chain, user, lambda: fn(st, client, rt))
            if b is None:
                body = None
            else:
                rt = b["refresh_token"]
            time.sleep(0.01)

    def _jwks_loop(self):
        while self.running():
            sent = time.time()
            try:
                keys = fetch_jwks(self.stack)
            except Exception as e:
                self._fail("jwks", repr(e))
            else:
                done = time.time()
                with self.lock:
                    self.jwks.append({"sent": sent, "done": done, "keys": by_kid(keys)})
            time.sleep(0.05)

    def snapshot(self):
        with self.lock:
            return list(self.tokens), list(self.jwks), list(self.failures)


def timeline(tokens, around, span=1.0):
    """The token requests within span seconds of around's, for a failure message."""
    t0 = around["sent"]
    return "\n".join("%+.3f..%+.3f %s %s %s" % (t["sent"] - t0, t["done"] - t0, t["chain"],
                                               t["kind"], t["kid"])
                     for t in sorted(tokens, key=lambda t: t["sent"])
                     if abs(t["sent"] - t0) < span)


def kid_of(token):
    return jwt.get_unverified_header(token)["kid"]


class RotationUnderLoad(KeyCase):
    """[keys] publish_ahead = 2, overlap = 4 (RS256 first). Each test rotates once while
    traffic flows, and leaves one key behind."""

    @classmethod
    def setUpClass(cls):
        cls.stack = KeyStack(name="keys-rotation",
                             keys={"publish_ahead": PUBLISH_AHEAD, "overlap": OVERLAP}).start()
        cls.client = cls.stack.new_client(permissions=["direct"])

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def rotate_under_load(self, alg):
        stack, client = self.stack, self.client
        # A test before may have left its old key in its overlap.
        wait_for("a single published key", lambda: len(key_list(stack)) == 1)
        old = signing_kid(stack)
        wait_for("a single key in every worker's JWKS",
                 lambda: all(set(by_kid(fetch_jwks(stack))) == {old}
                             for _ in range(EVERY_WORKER)))
        old_alg = by_kid(fetch_jwks(stack))[old]["alg"]

        traffic = Traffic(stack, client).start()
        try:
            wait_for("traffic from every thread", lambda: all(
                sum(t["user_id"] == u["user_id"] for t in traffic.snapshot()[0]) >= 3
                for u in traffic.users))
            # A login of our own before the rotation: its tokens must verify during the
            # overlap and its refresh token must work after the switch.
            pre_user = stack.make_user()
            pre = self.assertTokenResponse(direct_login(stack, client,
                                                        pre_user["email"]["value"]))
            self.assertEqual(kid_of(pre["id_token"]), old)

            rotated_at = time.time()
            r = ctl_run(stack, "key", "rotate", "--alg", alg)
            self.assertEqual(r.returncode, 0, r)
            keys = key_list(stack)
            new = [k for k in keys if k["kid"] != old]
            self.assertEqual(len(new), 1, keys)
            new_kid = new[0]["kid"]
            self.assertEqual(new[0]["alg"], alg)
            self.assertEqual(sum(k["signing"] is True for k in keys), 1, keys)

            # Tokens switch to the new key...
            first_new = wait_for("a token signed by the new key",
                                 lambda: traffic.first.get(new_kid))
            # ...on every thread's next requests,
            wait_for("each traffic thread past the switch", lambda: {
                t["user_id"] for t in traffic.snapshot()[0][-50:]
                if t["sent"] > first_new["done"]
            } == {u["user_id"] for u in traffic.users}, step=0.2)
            # our refresh token from before the rotation refreshes under the new key,
            b = self.assertJSON(refresh_v1(stack, client, pre["refresh_token"]), 200)
            self.assertEqual(kid_of(b["id_token"]), new_kid)
            self.assertEqual(kid_of(b["access_token"]), new_kid)

            # ...and after the overlap the old kid leaves every worker's JWKS.
            def old_gone():
                j = traffic.snapshot()[1]
                tail = j[-EVERY_WORKER:]
                return len(tail) == EVERY_WORKER and all(old not in x["keys"] for x in tail) \
                    and tail[0]["sent"] > first_new["done"]
            wait_for("the old kid out of the JWKS", old_gone, step=0.2)
            time.sleep(0.3)  # a few more requests after it went
        finally:
            traffic.stop()

        tokens, fetches, failures = traffic.snapshot()
        harness.note("rotation to %s: %d token responses, %d JWKS fetches, switch %.2fs after "
                     "rotate" % (alg, len(tokens), len(fetches), first_new["sent"] - rotated_at))

        # No request failed.
        self.assertEqual(failures, [], "requests failed during the rotation")

        # Every token of every response verifies against a key the JWKS published, with
        # that key's algorithm; only the old and the new key signed.
        union = {}
        for f in fetches:
            union.update(f["keys"])
        for k in union.values():
            self.checkJWK(k)
        self.assertEqual(set(union), {old, new_kid})
        by_kid_tokens = {old: [], new_kid: []}
        for t in tokens:
            kid, _, _ = self.verifyTokens(stack, t["body"], client, t["user_id"], union)
            by_kid_tokens[kid].append(t)
            self.assertEqual(union[kid]["alg"], alg if kid == new_kid else old_alg)
        self.assertTrue(by_kid_tokens[old])
        self.assertTrue(by_kid_tokens[new_kid])

        # Published before it signs: the JWKS had the new kid before any request that got a
        # token signed by it was even sent.
        first_sent = min(t["sent"] for t in by_kid_tokens[new_kid])
        seen = [f["done"] for f in fetches if new_kid in f["keys"]]
        self.assertTrue(seen, "the new kid never appeared in the JWKS")
        self.assertLess(min(seen), first_sent,
                        "a token carried the new kid before the JWKS published it")
        # Once one worker signs with it, every worker publishes it and signs with it.
        late = [f for f in fetches if f["sent"] > first_new["done"]]
        self.assertGreaterEqual(len(late), EVERY_WORKER)
        for f in late:
            self.assertIn(new_kid, f["keys"], "a JWKS asked for after the switch lacks it")
        late = [t for t in tokens if t["sent"] > first_new["done"]]
        self.assertGreaterEqual(len(late), EVERY_WORKER)
        for t in late:
            self.assertEqual(kid_of(t["body"]["id_token"]), new_kid,
                             "a %s asked for after the switch signed by the old key" % t["kind"])

        # Each thread's refresh chain crossed the rotation: begun under the old key,
        # refreshed (and its session signed into silently) under the new one.
        for n in range(len(traffic.users)):
            chain = [t for t in tokens if t["chain"] == (n, 0)]
            self.assertEqual((chain[0]["kind"], chain[0]["kid"]), ("login", old))
            self.assertEqual({t["kid"] for t in chain if t["kind"] == "refresh"},
                             {old, new_kid}, "thread %d:\n%s" % (n, timeline(chain, first_new)))
            self.assertIn(new_kid, {t["kid"] for t in chain if t["kind"] == "silent"})

        # The overlap: the old key stays published overlap seconds after its last use at the
        # least, and old tokens verify against the JWKS served after the switch.
        last_old_sent = max(t["sent"] for t in by_kid_tokens[old])
        for f in fetches:
            if f["done"] < last_old_sent + OVERLAP:
                self.assertIn(old, f["keys"], "old kid dropped within the overlap")
        during = [f for f in fetches if f["sent"] > first_new["done"] and old in f["keys"]]
        self.assertTrue(during, "no JWKS served during the overlap held the old kid")
        for f in (during[0], during[-1]):
            self.assertEqual(set(f["keys"]), {old, new_kid})
            kid, _, _ = self.verifyTokens(stack, pre, client, pre_user["user_id"], f["keys"],
                                          old_alg)
            self.assertEqual(kid, old)
            for t in by_kid_tokens[old][-3:]:
                self.verifyTokens(stack, t["body"], client, t["user_id"], f["keys"], old_alg)

        # Retired for good: once a JWKS lacked the old kid, every later one does.
        gone = min(f["done"] for f in fetches if old not in f["keys"])
        for f in fetches:
            if f["sent"] > gone:
                self.assertNotIn(old, f["keys"], "the old kid came back")
        for i in range(EVERY_WORKER):
            self.assertEqual(set(by_kid(fetch_jwks(stack))), {new_kid})
        keys = key_list(stack)
        self.assertEqual([(k["kid"], k["signing"], k["alg"]) for k in keys],
                         [(new_kid, True, alg)])
        # A token signed by the retired key no longer finds its key.
        with self.assertRaises(AssertionError):
            self.verifyTokens(stack, pre, client, pre_user["user_id"],
                              by_kid(fetch_jwks(stack)))

    def test_rotate_to_es256_under_load(self):
        self.rotate_under_load("ES256")

    def test_rotate_to_eddsa_under_load(self):
        self.rotate_under_load("EdDSA")


class PrivateFiles(E2ETestCase):
    """server.key (the secret every record tag and client token is keyed with) and db_dir are
    the service account's alone: with either open to group or others, the workers and
    otloginctl refuse to start and say how to fix it, as ssh does for a private key."""

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(name="private-files", workers=1).start()
        cls.key = cls.stack.path("db", "server.key")
        cls.db = cls.stack.path("db")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def tearDown(self):
        import os
        os.chmod(self.key, 0o600)
        os.chmod(self.db, 0o700)

    def ctl(self, *args):
        return subprocess.run([harness.CTL_BIN, "-c", self.stack.conf] + list(args),
                              capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)

    def worker(self):
        """otlogin.fcgi started without a FastCGI socket: one CGI request, GET /health."""
        import os
        env = dict(os.environ, OTLOGIN_CONF=self.stack.conf, REQUEST_METHOD="GET",
                   PATH_INFO="/health", GATEWAY_INTERFACE="CGI/1.1")
        return subprocess.run([harness.FCGI_BIN], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=harness.CTL_TIMEOUT)

    def assertRefused(self, r, fix):
        self.assertNotEqual(r.returncode, 0, "started anyway: %s%s" % (r.stdout, r.stderr))
        self.assertNotIn("Status: 200", r.stdout)
        self.assertIn(fix, r.stderr)

    def test_private_modes_start(self):
        """The control: as otloginctl init made them (0600, 0700) both start."""
        self.assertEqual(self.ctl("client", "list").returncode, 0)
        r = self.worker()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Status: 200", r.stdout)

    def test_server_key_readable_by_others(self):
        import os
        for mode in (0o640, 0o604, 0o660, 0o644):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.key, mode)
                fix = "chmod 600 %s" % self.key
                self.assertRefused(self.ctl("client", "list"), fix)
                self.assertRefused(self.ctl("init"), fix)
                self.assertRefused(self.worker(), fix)

    def test_db_dir_open_to_others(self):
        import os
        for mode in (0o750, 0o705, 0o710, 0o755):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.db, mode)
                fix = "chmod 700 %s" % self.db
                self.assertRefused(self.ctl("client", "list"), fix)
                self.assertRefused(self.worker(), fix)
