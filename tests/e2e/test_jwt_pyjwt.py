"""Differential test of JWT verification: otlogin's src/jwt.c (through tests/e2e/jwt_verify)
against PyJWT, on the same keys and the same tokens.

Keys are made by otlogin (RS256, ES256, EdDSA: jwt_verify gen) and read into `cryptography`
from their stored S-expression, plus an HS256 secret; tokens are signed here, independently of
otlogin (PyJWT's algorithm objects over signing inputs written byte by byte). For every token:

- otlogin never answers -1 (internal error);
- otlogin accepts only what PyJWT accepts (with exp, nbf, iat, aud and iss checks off: jwt.c
  checks signature and structure only; the claims are the callers' business);
- where the two may differ by design, the token's case says so ("stricter": otlogin refuses
  what PyJWT takes: duplicate members, jku/jwk/x5u/x5c, a missing or unknown kid, base64url
  that is not the one canonical encoding, a key-selecting kid of another key); everywhere else
  they agree.

Besides the hand-made cases, random one-character changes of valid tokens are compared the
same way. No server is started."""

import base64
import json
import os
import random
import subprocess
import tempfile
import unittest

import harness

JWT_VERIFY = os.path.join(harness.TOP_BUILDDIR, "tests", "e2e", "jwt_verify")
ALGS = ("RS256", "ES256", "EdDSA")
SAME, STRICTER, REFUSED = "same", "stricter", "refused"  # REFUSED: otlogin refuses, PyJWT either
NOT_CANONICAL = "not canonical"  # a mutant: otlogin accepts only if PyJWT does


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def unb64_safe(s):
    try:
        return unb64(s)
    except ValueError:
        return b"\xff invalid"


def hmac_sha256(key, text):
    import hmac
    return hmac.new(key, text.encode(), "sha256").digest()


def parse_canon(data):
    """A canonical S-expression (libgcrypt's export) as nested lists of bytes."""
    pos = 0

    def item():
        nonlocal pos
        if data[pos:pos + 1] == b"(":
            pos += 1
            out = []
            while data[pos:pos + 1] != b")":
                out.append(item())
            pos += 1
            return out
        colon = data.index(b":", pos)
        n = int(data[pos:colon])
        pos = colon + 1 + n
        return data[colon + 1:pos]

    return item()


def sexp_params(tree):
    """{name: value} of the (name value) lists inside (private-key (algo ...))."""
    return {p[0].decode(): p[1] for p in tree[1][1:] if isinstance(p, list) and len(p) == 2}


def private_key(alg, stored):
    """The cryptography private key of otlogin's stored key {"kid","alg","sexp"}."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    params = sexp_params(parse_canon(unb64(stored["sexp"])))
    num = {k: int.from_bytes(v, "big") for k, v in params.items() if k != "curve"}
    if alg == "RS256":
        p, q, d = num["p"], num["q"], num["d"]
        pub = rsa.RSAPublicNumbers(num["e"], num["n"])
        return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                     pub).private_key()
    if alg == "ES256":
        return ec.derive_private_key(num["d"], ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.from_private_bytes(params["d"].rjust(32, b"\0"))


class Keys:
    def __init__(self, tmp):
        import jwt.algorithms as A
        self.priv, self.pub, self.file, self.impl = {}, {}, {}, {}
        impls = {"RS256": A.RSAAlgorithm(A.RSAAlgorithm.SHA256),
                 "ES256": A.ECAlgorithm(A.ECAlgorithm.SHA256), "EdDSA": A.OKPAlgorithm(),
                 "HS256": A.HMACAlgorithm(A.HMACAlgorithm.SHA256)}
        for alg in ALGS:
            out = subprocess.run([JWT_VERIFY, "gen", alg, "k-" + alg], capture_output=True,
                                 text=True, check=True, timeout=harness.CTL_TIMEOUT).stdout
            self.file[alg] = os.path.join(tmp, alg + ".key")
            with open(self.file[alg], "w") as f:
                f.write(out)
            self.priv[alg] = private_key(alg, json.loads(out))
            self.pub[alg] = self.priv[alg].public_key()
        self.secret = os.urandom(32)
        self.priv["HS256"] = self.pub["HS256"] = self.secret
        self.impl = impls

    def sign(self, alg, signing_input, key_alg=None):
        key = self.priv[key_alg or alg]
        return self.impl[alg].sign(signing_input.encode(), key)


def token(keys, header, payload, alg=None, key_alg=None, sig=None):
    """header and payload: dicts or raw texts; signed with alg under key_alg's key (both
    default to header["alg"]) unless sig (bytes) is given."""
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    p = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    hdr_alg = alg or json.loads(h).get("alg")
    si = "%s.%s" % (b64(h), b64(p))
    if sig is None:
        sig = keys.sign(hdr_alg, si, key_alg)
    return "%s.%s" % (si, b64(sig))


def resign(keys, alg, h64, p64):
    si = "%s.%s" % (h64, p64)
    return "%s.%s" % (si, b64(keys.sign(alg, si)))


def pyjwt_accepts(keys, alg, tok):
    import jwt
    opts = {"verify_signature": True, "verify_exp": False, "verify_nbf": False,
            "verify_iat": False, "verify_aud": False, "verify_iss": False}
    try:
        jwt.decode(tok, keys.pub[alg], algorithms=[alg], options=opts)
        return 1
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return 0


def otlogin_verdicts(keys, alg, tokens):
    argv = [JWT_VERIFY, "hs256", keys.secret.hex()] if alg == "HS256" else \
        [JWT_VERIFY, "key", keys.file[alg]]
    out = subprocess.run(argv, input="".join(t + "\n" for t in tokens), capture_output=True,
                         text=True, check=True, timeout=harness.CTL_TIMEOUT).stdout
    verdicts = [int(v) for v in out.split()]
    if len(verdicts) != len(tokens):
        raise harness.HarnessError("jwt_verify answered %d of %d" % (len(verdicts), len(tokens)))
    return verdicts


def cases(keys, alg):
    """(name, token, kind) for the key of alg."""
    kid = "k-" + alg
    hdr = {"alg": alg, "typ": "JWT"}
    if alg != "HS256":
        hdr["kid"] = kid
    claims = {"sub": "u1", "iss": "https://issuer.example", "aud": "c1", "iat": 1700000000,
              "exp": 1700003600}
    good = token(keys, hdr, claims)
    h64, p64, s64 = good.split(".")
    sig = unb64(s64)
    out = [("valid", good, SAME),
           ("expired long ago (claims are not jwt.c's)", token(keys, hdr, dict(claims, exp=1)),
            SAME),
           ("nbf in the future", token(keys, hdr, dict(claims, nbf=2 ** 40)), SAME),
           ("unicode claims", token(keys, hdr, dict(claims, name="J\u00fcrgen \U0001f600")),
            SAME),
           ("empty payload object", token(keys, hdr, {}), SAME)]
    bad = bytearray(sig)
    bad[len(bad) // 2] ^= 1
    out += [("signature bit flipped", "%s.%s.%s" % (h64, p64, b64(bytes(bad))), SAME),
            ("signature of another payload",
             "%s.%s.%s" % (h64, b64(json.dumps(dict(claims, sub="admin"))), s64), SAME),
            ("signature of another header",
             "%s.%s.%s" % (b64(json.dumps(dict(hdr, typ="at+jwt"))), p64, s64), SAME),
            ("signature truncated", "%s.%s.%s" % (h64, p64, b64(sig[:-1])), SAME),
            ("signature extended", "%s.%s.%s" % (h64, p64, b64(sig + b"\0")), SAME),
            ("empty signature", "%s.%s." % (h64, p64), SAME),
            ("two segments", "%s.%s" % (h64, p64), SAME),
            ("four segments", good + "." + s64, SAME),
            ("alg none, no signature",
             "%s.%s." % (b64(json.dumps(dict(hdr, alg="none"))), p64), SAME),
            ("alg none with the signature",
             "%s.%s.%s" % (b64(json.dumps(dict(hdr, alg="none"))), p64, s64), SAME),
            ("header not an object", token(keys, json.dumps([hdr]), claims, alg=alg), SAME),
            ("payload not an object", token(keys, hdr, "[1,2]"), SAME),
            ("payload not JSON", token(keys, hdr, "{\"sub\":"), SAME),
            ("header without alg", token(keys, {k: v for k, v in hdr.items() if k != "alg"},
                                         claims, alg=alg), SAME)]
    # Algorithm confusion: HS256 under the public key's bytes, and the other asymmetric algs.
    if alg != "HS256":
        from cryptography.hazmat.primitives import serialization
        pem = keys.pub[alg].public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        si = "%s.%s" % (b64(json.dumps(dict(hdr, alg="HS256"))), p64)
        mac = hmac_sha256(pem, si)
        out.append(("HS256 under the public key (alg confusion)", si + "." + b64(mac), SAME))
        for other in ALGS:
            if other != alg:
                out.append(("alg %s signed by a %s key" % (other, other),
                            token(keys, dict(hdr, alg=other), claims), SAME))
                out.append(("alg %s header over a %s signature" % (other, alg),
                            token(keys, dict(hdr, alg=other), claims, alg=alg), SAME))
        out += [("no kid", token(keys, {"alg": alg}, claims), STRICTER),
                ("unknown kid", token(keys, dict(hdr, kid="other"), claims), STRICTER),
                # PyJWT checks the header's types when it decodes only from Debian's
                # 2.6.0-1+deb12u1 on; 2.6.0-1 takes a number.
                ("kid not a string", token(keys, dict(hdr, kid=7), claims), REFUSED)]
    else:
        out.append(("HS256 under another secret",
                    "%s.%s.%s" % (h64, p64, b64(hmac_sha256(os.urandom(32), h64 + "." + p64))),
                    SAME))
    # Stricter than PyJWT by design.
    hj = json.dumps(hdr, separators=(",", ":"))
    for member in ('"jku":"https://attacker.example/jwks"', '"x5u":"https://attacker.example/c"',
                   '"jwk":{"kty":"oct","k":"AAAA"}', '"x5c":["MIIB"]'):
        out.append(("header " + member[:6], token(keys, hj[:-1] + "," + member + "}", claims,
                                                  alg=alg), STRICTER))
    out.append(("crit header", token(keys, dict(hdr, crit=["exp"]), claims), REFUSED))
    out.append(("duplicate alg", token(keys, hj[:-1] + ',"alg":"%s"}' % alg, claims, alg=alg),
                STRICTER))
    out.append(("duplicate typ", token(keys, hj[:-1] + ',"typ":"JWT"}', claims, alg=alg),
                STRICTER))
    out.append(("duplicate alg none then %s" % alg,
                token(keys, '{"alg":"none",' + hj[1:], claims, alg=alg), STRICTER))
    out.append(("duplicate claim", token(keys, hdr, '{"sub":"u1","sub":"admin"}'), STRICTER))
    out.append(("padded signature", good + "=" * (-len(s64) % 4), REFUSED))
    out.append(("padded payload, signed", resign(keys, alg, h64, p64 + "=" * (-len(p64) % 4)),
                REFUSED))
    std = p64.replace("-", "+").replace("_", "/")
    if std != p64:
        out.append(("standard base64 alphabet, signed", resign(keys, alg, h64, std), STRICTER))
    # Trailing bits of the last character that the decoder drops: another text, same bytes.
    if len(p64) % 4:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        i = alphabet.index(p64[-1])
        p_alt = p64[:-1] + alphabet[i ^ 1]
        out.append(("non-canonical last character, signed", resign(keys, alg, h64, p_alt),
                    STRICTER))
    out.append(("invalid base64 character in the payload, signed",
                resign(keys, alg, h64, p64[:4] + "!" + p64[4:]), REFUSED))
    out.append(("whitespace in the payload, signed",
                resign(keys, alg, h64, p64[:4] + " " + p64[4:]), REFUSED))
    if alg == "ES256":
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        out.append(("ECDSA (r, n - s)", "%s.%s.%s" % (
            h64, p64, b64(r.to_bytes(32, "big") + (n - s).to_bytes(32, "big"))), SAME))
        out.append(("ECDSA signature in DER", "%s.%s.%s" % (
            h64, p64, b64(encode_dss_signature(r, s))), SAME))
        out.append(("ECDSA (r, s + n)", "%s.%s.%s" % (
            h64, p64, b64(r.to_bytes(32, "big") + (s + n).to_bytes(33, "big"))), SAME))
    if alg == "EdDSA":
        L = 2 ** 252 + 27742317777372353535851937790883648493
        s = int.from_bytes(sig[32:], "little")
        if s + L < 2 ** 256:
            out.append(("Ed25519 S + L (non-canonical S)", "%s.%s.%s" % (
                h64, p64, b64(sig[:32] + (s + L).to_bytes(32, "little"))), SAME))
    if alg == "RS256" and sig[0] != 0:
        out.append(("RSA signature with a leading zero byte",
                    "%s.%s.%s" % (h64, p64, b64(b"\0" + sig)), SAME))
    return out


def mutations(tok, rng, n):
    """n random one-character substitutions, deletions and insertions of tok."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
    out = set()
    while len(out) < n:
        i = rng.randrange(len(tok))
        op = rng.randrange(3)
        c = rng.choice(alphabet)
        m = tok[:i] + c + tok[i + 1:] if op == 0 else tok[:i] + tok[i + 1:] if op == 1 \
            else tok[:i] + c + tok[i:]
        if m != tok:
            out.add(m)
    return sorted(out)


class JWTDifferential(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(JWT_VERIFY, os.X_OK):
            raise harness.HarnessError("not built: %s (make)" % JWT_VERIFY)
        cls.tmp = tempfile.TemporaryDirectory(prefix="otlogin-jwtdiff-")
        cls.keys = Keys(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def compare(self, alg, named):
        verdicts = otlogin_verdicts(self.keys, alg, [t for _, t, _ in named])
        bad = []
        for (name, tok, kind), ours in zip(named, verdicts):
            theirs = pyjwt_accepts(self.keys, alg, tok)
            ok = {SAME: ours == theirs, STRICTER: ours == 0 and theirs == 1,
                  REFUSED: ours == 0}[kind]
            if ours == -1 or not ok:
                bad.append("%s %s: otlogin %d, PyJWT %d (expected %s)\n  %s"
                           % (alg, name, ours, theirs, kind, tok))
        self.assertEqual(bad, [], "\n".join(bad))
        return verdicts

    def test_cases(self):
        for alg in ALGS + ("HS256",):
            with self.subTest(alg=alg):
                named = cases(self.keys, alg)
                verdicts = self.compare(alg, named)
                # The valid ones are valid (the comparison alone would pass if both refused all).
                self.assertEqual(verdicts[0], 1, "%s: a valid token was refused" % alg)

    def test_random_mutations(self):
        """One-character changes of valid tokens: otlogin accepts none that PyJWT refuses,
        and agrees with it on every mutant whose three segments are canonical base64url."""
        rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        for alg in ALGS + ("HS256",):
            with self.subTest(alg=alg):
                hdr = {"alg": alg, "kid": "k-" + alg}
                good = token(self.keys, hdr, {"sub": "u1", "n": 12345})
                named = []
                for m in mutations(good, rng, 150):
                    parts = m.split(".")
                    canonical = len(parts) == 3 and all(
                        p and b64(unb64_safe(p)) == p for p in parts)
                    named.append(("mutant", m, SAME if canonical else NOT_CANONICAL))
                verdicts = otlogin_verdicts(self.keys, alg, [t for _, t, _ in named])
                bad = []
                for (name, tok, kind), ours in zip(named, verdicts):
                    theirs = pyjwt_accepts(self.keys, alg, tok)
                    if ours == -1 or (ours == 1 and theirs == 0) or \
                            (kind == SAME and ours != theirs):
                        bad.append("%s: otlogin %d, PyJWT %d (%s)" % (tok, ours, theirs, kind))
                self.assertEqual(bad, [], "\n".join(bad))

