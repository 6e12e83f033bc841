"""Token endpoint (client credentials), JWKS, discovery and health (API.md "Authentication of
callers", "Discovery and keys", "Operations endpoints")."""

import base64
import urllib.parse

import harness
from harness import E2ETestCase, jwt_parts

stack = None


def setUpModule():
    global stack
    stack = harness.Stack(name="oidc").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


class ClientCredentials(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.make_client()

    def check_client_token(self, r):
        body = self.assertJSON(r, 200)
        self.assertEqual(body.get("token_type"), "Bearer")
        self.assertEqual(body.get("expires_in"), 3600)
        self.assertIsInstance(body.get("access_token"), str)
        self.assertIn("scope", body)
        self.assertNotIn("refresh_token", body)
        self.assertNotIn("id_token", body)
        self.assertNotIn(self.client["client_secret"], r.body.decode())
        header, claims = jwt_parts(body["access_token"])
        self.assertEqual(header.get("typ"), "at+jwt")
        self.assertEqual(header.get("alg"), "HS256")
        self.assertEqual(claims.get("sub"), self.client["client_id"])
        self.assertEqual(claims.get("client_id"), self.client["client_id"])
        self.assertEqual(claims.get("iss"), stack.issuer)
        for k in ("aud", "iat", "exp", "jti"):
            self.assertIn(k, claims)
        self.assertEqual(claims["exp"] - claims["iat"], 3600)
        return body

    def test_basic(self):
        r = stack.token_request(self.client["client_id"], self.client["client_secret"], "basic")
        self.check_client_token(r)

    def test_post(self):
        r = stack.token_request(self.client["client_id"], self.client["client_secret"], "post")
        self.check_client_token(r)

    def test_root_and_cis_paths(self):
        """{host}/oidc/token (rewritten by lighttpd) and {host}/cis/oidc/token both answer."""
        for path in ("/oidc/token", "/cis/oidc/token"):
            with self.subTest(path=path):
                r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                        path=path)
                self.check_client_token(r)

    def test_token_is_accepted_as_bearer(self):
        """The issued token authenticates a seed operation (Authorization reaches the app)."""
        tok = stack.client_token(self.client["client_id"], self.client["client_secret"])
        # An input error, not 401: the caller was authenticated before the body was judged.
        r = stack.http("POST", "/cis/v1/auth/otp/send", json={}, token=tok)
        self.assertNotEqual(r.status, 401, "%r" % (r,))
        self.assertError(r, 400)

    def test_resource_becomes_aud(self):
        api = "https://api.example.org/orders"
        c = stack.make_client(resources=[api])
        r = stack.token_request(c["client_id"], c["client_secret"], resource=api)
        body = self.assertJSON(r, 200)
        _, claims = jwt_parts(body["access_token"])
        self.assertEqual(claims["aud"], api)
        self.assertEqual(claims["sub"], c["client_id"])

    def test_unregistered_resource_refused(self):
        r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                resource="https://api.example.org/not-registered")
        self.assertOAuthError(r, 400, "invalid_target")

    def test_tokens_differ(self):
        """Two tokens for the same client are distinct (fresh jti)."""
        a = stack.client_token(self.client["client_id"], self.client["client_secret"])
        b = stack.client_token(self.client["client_id"], self.client["client_secret"])
        self.assertNotEqual(jwt_parts(a)[1]["jti"], jwt_parts(b)[1]["jti"])

    def test_wrong_secret(self):
        for auth in ("basic", "post"):
            with self.subTest(auth=auth):
                r = stack.token_request(self.client["client_id"],
                                        self.client["client_secret"] + "x", auth)
                self.assertOAuthError(r, 401, "invalid_client")
                self.assertNotIn("access_token", r.json)

    def test_unknown_client(self):
        for auth in ("basic", "post"):
            with self.subTest(auth=auth):
                r = stack.token_request("no-such-client", "whatever", auth)
                self.assertOAuthError(r, 401, "invalid_client")

    def test_no_credentials(self):
        r = stack.http("POST", "/oidc/token", form={"grant_type": "client_credentials"})
        self.assertOAuthError(r, 401, "invalid_client")

    def test_unsupported_grant(self):
        for grant in ("password", "implicit", "urn:x:unknown", ""):
            with self.subTest(grant=grant):
                r = stack.token_request(self.client["client_id"], self.client["client_secret"],
                                        grant_type=grant)
                if grant == "":
                    # An empty grant_type may be called missing (invalid_request) instead.
                    body = self.assertAnyError(r, 400)
                    self.assertIn(body.get("error"), ("unsupported_grant_type",
                                                      "invalid_request"))
                else:
                    self.assertOAuthError(r, 400, "unsupported_grant_type")

    def test_missing_grant_type(self):
        cred = base64.b64encode(("%s:%s" % (self.client["client_id"],
                                            self.client["client_secret"])).encode()).decode()
        r = stack.http("POST", "/oidc/token", form={"scope": "x"},
                       headers={"Authorization": "Basic " + cred})
        body = self.assertAnyError(r, 400)
        self.assertIn("error", body)

    def test_basic_with_urlencoded_credentials(self):
        """RFC 6749 2.3.1: id and secret are form-urlencoded before base64 (the harness
        always encodes; a secret with reserved characters would expose a decoder bug)."""
        cred = "%s:%s" % (urllib.parse.quote(self.client["client_id"], safe=""),
                          urllib.parse.quote(self.client["client_secret"], safe=""))
        r = stack.http("POST", "/oidc/token", form={"grant_type": "client_credentials"},
                       headers={"Authorization": "Basic " +
                                base64.b64encode(cred.encode()).decode()})
        self.check_client_token(r)


class Keys(E2ETestCase):
    def get_jwks(self, path):
        body = self.assertJSON(stack.http("GET", path), 200)
        self.assertIsInstance(body.get("keys"), list)
        self.assertTrue(body["keys"], "empty JWKS")
        return body

    def test_jwks_public_only(self):
        import jwt

        body = self.get_jwks("/cis/oidc/jwks")
        kids = set()
        for key in body["keys"]:
            with self.subTest(kid=key.get("kid")):
                for member in ("kid", "kty", "use", "alg"):
                    self.assertIn(member, key)
                self.assertEqual(key["use"], "sig")
                self.assertNotEqual(key["kty"], "oct", "a symmetric key is published")
                for member in PRIVATE_MEMBERS:
                    self.assertNotIn(member, key, "private member %r published" % member)
                self.assertNotIn(key["kid"], kids, "duplicate kid")
                kids.add(key["kid"])
                self.assertNotEqual(key["alg"], "none")
                if key["kty"] == "RSA":
                    self.assertEqual(key["alg"], "RS256")
                    n = harness.b64url_decode(key["n"])
                    self.assertGreaterEqual(len(n.lstrip(b"\0")) * 8, 2048, "RSA key < 2048 bit")
                # The key must load as a public key.
                k = jwt.PyJWK(key).key
                self.assertFalse(hasattr(k, "private_bytes"), "JWK loads as a private key")
        self.assertIn("RS256", [k["alg"] for k in body["keys"]])

    def test_jwks_at_host_root(self):
        self.assertEqual(self.get_jwks("/oidc/jwks"), self.get_jwks("/cis/oidc/jwks"))

    def test_discovery(self):
        docs = {}
        for path in ("/cis/oidc/.well-known/openid-configuration",
                     "/cis/.well-known/openid-configuration",
                     "/.well-known/openid-configuration",
                     "/oidc/.well-known/openid-configuration"):
            with self.subTest(path=path):
                docs[path] = self.assertJSON(stack.http("GET", path), 200)
        doc = docs.get("/cis/oidc/.well-known/openid-configuration")
        self.assertIsNotNone(doc)
        for other in docs.values():
            self.assertEqual(other, doc, "discovery differs by path")
        for field in ("issuer", "jwks_uri", "token_endpoint", "revocation_endpoint",
                      "id_token_signing_alg_values_supported", "grant_types_supported",
                      "response_types_supported", "subject_types_supported",
                      "token_endpoint_auth_methods_supported", "claims_supported"):
            self.assertIn(field, doc)
        self.assertEqual(doc["issuer"], stack.issuer)
        self.assertIn("RS256", doc["id_token_signing_alg_values_supported"])
        self.assertNotIn("none", doc["id_token_signing_alg_values_supported"])
        self.assertIn("client_credentials", doc["grant_types_supported"])
        for m in ("client_secret_basic", "client_secret_post"):
            self.assertIn(m, doc["token_endpoint_auth_methods_supported"])
        for field in ("claims_supported", "response_types_supported",
                      "subject_types_supported"):
            self.assertIsInstance(doc[field], list)
        # The advertised endpoints live on this server (from configuration) and work.
        for field in ("jwks_uri", "token_endpoint", "revocation_endpoint"):
            url = urllib.parse.urlsplit(doc[field])
            self.assertEqual((url.scheme, url.netloc), ("http", "127.0.0.1:%d" % stack.port),
                             "%s = %r" % (field, doc[field]))
        jwks = stack.http("GET", urllib.parse.urlsplit(doc["jwks_uri"]).path)
        self.assertEqual(self.assertJSON(jwks, 200), self.get_jwks("/cis/oidc/jwks"))
        c = stack.make_client()
        r = stack.token_request(c["client_id"], c["client_secret"],
                                path=urllib.parse.urlsplit(doc["token_endpoint"]).path)
        self.assertJSON(r, 200)

    def test_discovery_grants_match_token_endpoint(self):
        """grant_types_supported lists refresh_token (API.md: the token endpoint takes it)
        exactly when the token endpoint knows the grant."""
        doc = self.assertJSON(stack.http("GET", "/cis/oidc/.well-known/openid-configuration"),
                              200)
        c = stack.make_client()
        r = stack.token_request(c["client_id"], c["client_secret"], grant_type="refresh_token",
                                refresh_token="not-a-real-token")
        body = self.assertAnyError(r, 400)
        known = body.get("error") != "unsupported_grant_type"
        self.assertEqual("refresh_token" in doc["grant_types_supported"], known,
                         "discovery %r vs token endpoint %r" % (doc["grant_types_supported"],
                                                                body))
        self.assertTrue(known, "grant_type=refresh_token (API.md) is not supported: %r" % body)

    def test_discovery_ignores_host_header(self):
        """Issuer and endpoints come from configuration, not from Host (DESIGN rule 8)."""
        r = stack.http("GET", "/cis/oidc/.well-known/openid-configuration",
                       headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                                "X-Forwarded-Proto": "https"})
        doc = self.assertJSON(r, 200)
        self.assertNotIn("evil.example", r.body.decode())
        self.assertEqual(doc["issuer"], stack.issuer)


class Health(E2ETestCase):
    def test_health(self):
        r = stack.http("GET", "/cis/health")
        self.assertEqual(self.assertJSON(r, 200), {"status": "ok"})
        self.assertTrue(r.content_type.lower().replace(" ", "")
                        .startswith("application/json;charset=utf-8"), r.content_type)

    def test_workers(self):
        """lighttpd started var.otlogin_workers (4) FastCGI workers from the snippet."""
        self.assertEqual(len(stack.worker_pids()), stack.workers)

    def test_health_needs_no_token(self):
        r = stack.http("GET", "/cis/health", headers={"Authorization": "Bearer nonsense"})
        self.assertEqual(self.assertJSON(r, 200), {"status": "ok"})


class ProviderEndpoints(E2ETestCase):
    """The OpenID Provider's discovery, the authorization_code grant's refusals and UserInfo
    (the codes themselves come from the redirect flows: test_authz, test_hosted,
    test_redirect; the exchange's rules are tests/unit/test_authcode)."""

    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(permissions=["direct"])

    def test_discovery_names_the_provider(self):
        """{issuer}/.well-known/openid-configuration answers (OIDC clients fetch exactly that)
        and lists what stock relying parties look for."""
        r = stack.http("GET", urllib.parse.urlsplit(stack.issuer).path +
                       "/.well-known/openid-configuration")
        doc = self.assertJSON(r, 200)
        self.assertEqual(doc["issuer"], stack.issuer)
        for field, path in (("authorization_endpoint", "/oidc/auth"),
                            ("token_endpoint", "/oidc/token"),
                            ("userinfo_endpoint", "/oidc/me"),
                            ("end_session_endpoint", "/oidc/session/end"),
                            ("pushed_authorization_request_endpoint", "/oidc/request"),
                            ("revocation_endpoint", "/oidc/token/revocation")):
            self.assertEqual(doc.get(field), stack.base_url + path, field)
        self.assertEqual(doc["response_types_supported"], ["code"])
        self.assertEqual(doc["code_challenge_methods_supported"], ["S256"])
        self.assertEqual(sorted(doc["token_endpoint_auth_methods_supported"]),
                         ["client_secret_basic", "client_secret_post", "none"])
        self.assertIn("authorization_code", doc["grant_types_supported"])
        self.assertIs(doc["authorization_response_iss_parameter_supported"], True)
        self.assertIs(doc["claims_parameter_supported"], True)
        for s in ("openid", "email", "phone", "profile", "offline_access"):
            self.assertIn(s, doc["scopes_supported"])
        for p in ("none", "login", "consent"):
            self.assertIn(p, doc["prompt_values_supported"])
        for cl in ("nonce", "at_hash", "acr", "email"):
            self.assertIn(cl, doc["claims_supported"])
        self.assertIn("query", doc["response_modes_supported"])

    def code_request(self, auth="basic", **fields):
        form = {"grant_type": "authorization_code"}
        form.update(fields)
        return stack.token_request(self.client["client_id"], self.client["client_secret"],
                                   auth=auth, **form)

    def test_unknown_code_is_invalid_grant(self):
        for auth in ("basic", "post"):
            with self.subTest(auth=auth):
                r = self.code_request(auth, code="not-a-code", redirect_uri="https://a.example/")
                body = self.assertAnyError(r, 400)
                self.assertEqual(body["error"], "invalid_grant")
                self.assertEqual(r.headers.get("cache-control"), "no-store")

    def test_missing_code_is_invalid_request(self):
        body = self.assertAnyError(self.code_request(), 400)
        self.assertEqual(body["error"], "invalid_request")

    def test_wrong_secret_basic_gets_a_challenge(self):
        form = {"grant_type": "authorization_code", "code": "x"}
        r = stack.token_request(self.client["client_id"], "wrong", auth="basic", **form)
        self.assertEqual(self.assertAnyError(r, 401)["error"], "invalid_client")
        self.assertTrue(r.headers.get("www-authenticate", "").startswith("Basic"), r.headers)
        r = stack.token_request(self.client["client_id"], "wrong", auth="post", **form)
        self.assertEqual(self.assertAnyError(r, 401)["error"], "invalid_client")

    def test_confidential_client_without_secret_is_refused(self):
        """Naming a confidential client without its secret is no public-client login."""
        r = stack.http("POST", "/cis/oidc/token",
                       form={"grant_type": "authorization_code", "code": "x",
                             "client_id": self.client["client_id"]})
        self.assertEqual(self.assertAnyError(r, 401)["error"], "invalid_client")
        r = stack.http("POST", "/cis/oidc/token",
                       form={"grant_type": "client_credentials",
                             "client_id": self.client["client_id"]})
        self.assertEqual(self.assertAnyError(r, 401)["error"], "invalid_client")

    def user_access_token(self):
        email = harness.unique_email("userinfo")
        stack.make_user(email=email)
        code = stack.direct_code(self.client["token"], email)
        r = stack.otp_authenticate(self.client["token"], email, code)
        return email, self.assertJSON(r, 200)

    def assert_invalid_token(self, r):
        self.assertEqual(self.assertAnyError(r, 401)["error"], "invalid_token")
        self.assertEqual(r.headers.get("www-authenticate"), 'Bearer error="invalid_token"')

    def test_userinfo(self):
        """A user access token of the backend API (scope openid) reads sub, by header at
        both paths and as a POST form field; the sub is the ID token's."""
        _, tokens = self.user_access_token()
        _, id_claims = jwt_parts(tokens["id_token"])
        at = tokens["access_token"]
        for method, path in (("GET", "/cis/oidc/me"), ("GET", "/cis/oidc/userinfo"),
                             ("POST", "/cis/oidc/me")):
            with self.subTest(method=method, path=path):
                r = stack.http(method, path, token=at)
                self.assertEqual(self.assertJSON(r, 200), {"sub": id_claims["sub"]})
                self.assertEqual(r.headers.get("cache-control"), "no-store")
        r = stack.http("POST", "/cis/oidc/me", form={"access_token": at})
        self.assertEqual(self.assertJSON(r, 200), {"sub": id_claims["sub"]})

    def test_userinfo_refuses_other_tokens(self):
        """No token, a client token, a changed token, an ID token: 401 invalid_token."""
        _, tokens = self.user_access_token()
        at = tokens["access_token"]
        changed = at[:-4] + ("AAAA" if at[-4:] != "AAAA" else "BBBB")
        r = stack.http("GET", "/cis/oidc/me")
        self.assert_invalid_token(r)
        self.assertEqual(r.headers.get_all("www-authenticate"), ['Bearer error="invalid_token"'])
        for bad in (self.client["token"], changed, tokens["id_token"], "x"):
            with self.subTest(token=bad[:12]):
                self.assert_invalid_token(stack.http("GET", "/cis/oidc/me", token=bad))
        # The query string never carries a bearer token (RFC 6750 2.3 is not offered).
        self.assert_invalid_token(stack.http("GET", "/cis/oidc/me?access_token=" + at))
