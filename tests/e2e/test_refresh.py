"""Refresh tokens end to end (API.md "Sessions", "POST /oidc/token", "Tokens"; issue 5 item 2):
rotation on every use through both endpoints (POST /v1/auth/token/refresh with a client bearer
token, and grant_type=refresh_token at /oidc/token with client authentication), the grace
window in which a retried refresh of the immediate predecessor returns the same successor,
reuse detection that revokes the whole family and its session, concurrency, and the binding
of a refresh token to its client.

Two stacks: "refresh" with the default [tokens] refresh_grace (10 s) and "refresh-nograce"
with refresh_grace = 0 (every reuse is a reuse, no retry window), so the reuse tests need no
waiting. Only the grace tests assume that a few requests take less than the 10 s window.
A third stack, "refresh-clock" (refresh_ttl = 600), runs its workers under libfaketime so that
the end of the grace window and refresh-token expiry are tested without waiting; without
libfaketime (Debian package faketime) those tests skip."""

import harness
from clock import ClockStack
from harness import E2ETestCase

stack = None     # refresh_grace default (10 s)
nograce = None   # refresh_grace = 0

EVERY_WORKER = 8  # repeats so that each of the 4 workers very likely answers at least once
PARALLEL = 50
REFRESH_KEYS = {"access_token", "id_token", "refresh_token", "token_type", "expires_in"}


def setUpModule():
    global stack, nograce
    stack = harness.Stack(name="refresh").start()
    try:
        nograce = harness.Stack(name="refresh-nograce", tokens={"refresh_grace": 0}).start()
    except BaseException:
        stack.stop()
        raise
    E2ETestCase.stack = stack


def tearDownModule():
    try:
        nograce.stop()
    finally:
        stack.stop()


def summary(results):
    """"1x200, 49x400 invalid_grant" for a list of responses."""
    count = {}
    for r in results:
        try:
            j = r.json
            what = "" if r.status == 200 else str(j.get("error") or j.get("error_code"))
        except ValueError:
            what = "(not JSON)"
        key = ("%d %s" % (r.status, what)).strip()
        count[key] = count.get(key, 0) + 1
    return ", ".join("%dx%s" % (n, k) for k, n in sorted(count.items()))


class RefreshCase(E2ETestCase):
    st = None  # the stack a class runs against (a property: the stacks start later)

    # ---- requests ----

    def login(self, user=None, client=None, **extra):
        """A direct-OTP login; (token response, id claims, user)."""
        st, client = self.st, client or self.client
        user = user or st.make_user()
        addr = user["email"]["value"]
        code = st.direct_code(client["token"], addr)
        body = self.assertTokenResponse(st.otp_authenticate(client["token"], addr, code,
                                                            **extra))
        _, idc = st.verify_jwt(body["id_token"], "JWT", client["client_id"])
        return body, idc, user

    def refresh_v1(self, rt, client=None):
        return self.st.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                            token=(client or self.client)["token"])

    def refresh_oidc(self, rt, client=None, auth="basic", path="/oidc/token"):
        c = client or self.client
        return self.st.token_request(c["client_id"], c["client_secret"], auth=auth, path=path,
                                     grant_type="refresh_token", refresh_token=rt)

    def refresh(self, rt, via="v1"):
        return self.refresh_v1(rt) if via == "v1" else self.refresh_oidc(rt)

    def session_authenticate(self, session_id):
        return self.st.http("POST", "/cis/v1/auth/session/authenticate",
                            json={"session_id": session_id}, token=self.client["token"])

    # ---- checks ----

    def assertRefreshed(self, r, login_idc, user, client=None):
        """A refresh answer: the five members, JWTs verified with PyJWT and continuing the
        login's session (sub, sid, amr, auth_time). Returns the body."""
        client = client or self.client
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), REFRESH_KEYS, body)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3600)
        self.assertIsInstance(body["refresh_token"], str)
        self.assertGreaterEqual(len(body["refresh_token"]), 22)
        self.assertNotEqual(body["refresh_token"].count("."), 2, "refresh token looks like a JWT")
        _, idc = self.st.verify_jwt(body["id_token"], "JWT", client["client_id"])
        _, atc = self.st.verify_jwt(body["access_token"], "at+jwt", client["client_id"])
        for c in (idc, atc):
            self.assertEqual(c["iss"], self.st.issuer)
            self.assertEqual(c["sub"], user["user_id"])
            self.assertEqual(c["sid"], login_idc["sid"])
        self.assertEqual(idc["amr"], login_idc["amr"])
        self.assertEqual(idc["auth_time"], login_idc["auth_time"])
        self.assertEqual(atc["client_id"], client["client_id"])
        return body

    def assertRefreshRefused(self, rt, times=1):
        """rt is refused by both endpoints (each asked `times` times)."""
        for i in range(times):
            r = self.refresh_v1(rt)
            body = self.assertError(r, 400, 400)
            self.assertEqual(body["message"], "Invalid refresh token")
            self.assertOAuthError(self.refresh_oidc(rt), 400, "invalid_grant")

    def assertSessionDead(self, login_body, times=1):
        for i in range(times):
            r = self.session_authenticate(login_body["session_id"])
            self.assertEqual(self.assertError(r, 400, "400")["message"], "Session not found")


# ---- rotation and the grace window (default refresh_grace = 10 s) -------------------------------

class Rotation(RefreshCase):
    st = property(lambda self: stack)

    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client(permissions=["direct"])

    def test_chain_v1(self):
        login, idc, user = self.login()
        seen = {login["refresh_token"]}
        rt = login["refresh_token"]
        for i in range(4):
            body = self.assertRefreshed(self.refresh_v1(rt), idc, user)
            self.assertNotIn(body["refresh_token"], seen)
            seen.add(body["refresh_token"])
            rt = body["refresh_token"]

    def test_chain_oidc_basic_and_post(self):
        login, idc, user = self.login()
        rt = login["refresh_token"]
        for auth, path in (("basic", "/oidc/token"), ("post", "/oidc/token"),
                           ("basic", "/cis/oidc/token")):
            with self.subTest(auth=auth, path=path):
                body = self.assertRefreshed(self.refresh_oidc(rt, auth=auth, path=path), idc,
                                            user)
                self.assertNotEqual(body["refresh_token"], rt)
                rt = body["refresh_token"]

    def test_chain_across_endpoints(self):
        """R1 -> R2 (v1) -> R3 (/oidc/token) -> R4 (v1): one chain, whichever endpoint."""
        login, idc, user = self.login()
        r2 = self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        r3 = self.assertRefreshed(self.refresh_oidc(r2["refresh_token"]), idc, user)
        r4 = self.assertRefreshed(self.refresh_v1(r3["refresh_token"]), idc, user)
        self.assertEqual(len({login["refresh_token"], r2["refresh_token"], r3["refresh_token"],
                              r4["refresh_token"]}), 4)

    def test_grace_returns_same_successor(self):
        """A retried refresh of R1 within the window (lost response, second tab) returns the
        same R2, on every worker and either endpoint; new access and ID tokens each time."""
        login, idc, user = self.login()
        r1 = login["refresh_token"]
        r2 = self.assertRefreshed(self.refresh_v1(r1), idc, user)["refresh_token"]
        access = set()
        for i in range(EVERY_WORKER):
            via = "v1" if i % 2 else "oidc"
            with self.subTest(attempt=i, via=via):
                body = self.assertRefreshed(self.refresh(r1, via), idc, user)
                self.assertEqual(body["refresh_token"], r2)
                access.add(body["access_token"])
        self.assertEqual(len(access), EVERY_WORKER, "access tokens repeat")
        # R2 is live and rotates normally.
        r3 = self.assertRefreshed(self.refresh_v1(r2), idc, user)["refresh_token"]
        self.assertNotIn(r3, (r1, r2))
        self.assertRefreshed(self.refresh_v1(r3), idc, user)

    def test_grace_ends_once_successor_used(self):
        """R1 -> R2 -> R3; R1 again: R2 is no longer the live end of the chain, so R1 is a
        reuse, not a retry: the family and its session are revoked (R3 dies too)."""
        login, idc, user = self.login()
        r2 = self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        r3 = self.assertRefreshed(self.refresh_v1(r2["refresh_token"]), idc, user)
        self.assertRefreshRefused(login["refresh_token"])
        self.assertRefreshRefused(r3["refresh_token"], times=EVERY_WORKER // 2)
        self.assertRefreshRefused(r2["refresh_token"])
        self.assertSessionDead(login, times=2)

    def test_parallel_with_grace(self):
        """50 concurrent refreshes of one token: every success carries the same successor
        (never two different ones), and that successor is live."""
        login, idc, user = self.login()
        r1 = login["refresh_token"]
        calls = [(lambda via=("v1" if i % 2 else "oidc"): self.refresh(r1, via))
                 for i in range(PARALLEL)]
        results = stack.parallel(calls, threads=PARALLEL)
        harness.note("parallel refresh, grace 10 s: %s" % summary(results))
        ok = [r for r in results if r.status == 200]
        for r in results:
            self.assertIn(r.status, (200, 400), r)
        self.assertTrue(ok, summary(results))
        successors = {r.json["refresh_token"] for r in ok}
        self.assertEqual(len(successors), 1, "distinct successors: %s" % summary(results))
        for r in ok:
            self.assertRefreshed(r, idc, user)
        (r2,) = successors
        self.assertRefreshed(self.refresh_v1(r2), idc, user)

    def test_refresh_keeps_session_alive_for_others(self):
        """Refreshing does not end the session: silent sign-in still works after."""
        login, idc, user = self.login()
        self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        r = self.session_authenticate(login["session_id"])
        self.assertTokenResponse(r)


# ---- reuse detection (refresh_grace = 0) --------------------------------------------------------

class Reuse(RefreshCase):
    st = property(lambda self: nograce)

    @classmethod
    def setUpClass(cls):
        cls.client = nograce.new_client(permissions=["direct"])

    def test_reuse_of_r1_revokes_family(self):
        login, idc, user = self.login()
        # A second family in the same session (silent sign-in) dies with it.
        sibling = self.assertTokenResponse(self.session_authenticate(login["session_id"]))
        r2 = self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        r3 = self.assertRefreshed(self.refresh_oidc(r2["refresh_token"]), idc, user)
        self.assertOAuthError(self.refresh_oidc(login["refresh_token"]), 400, "invalid_grant")
        self.assertRefreshRefused(r3["refresh_token"], times=EVERY_WORKER)
        self.assertRefreshRefused(sibling["refresh_token"], times=2)
        self.assertSessionDead(login, times=EVERY_WORKER)
        listed = self.assertJSON(nograce.http("GET", "/cis/v1/auth/users/%s/sessions"
                                              % user["user_id"], token=self.client["token"]),
                                 200)
        self.assertEqual(listed, [])

    def test_reuse_via_v1(self):
        login, idc, user = self.login()
        r2 = self.assertRefreshed(self.refresh_oidc(login["refresh_token"]), idc, user)
        r = self.refresh_v1(login["refresh_token"])
        self.assertEqual(self.assertError(r, 400, 400)["message"], "Invalid refresh token")
        self.assertRefreshRefused(r2["refresh_token"], times=EVERY_WORKER // 2)
        self.assertSessionDead(login)

    def test_reuse_of_middle_token(self):
        login, idc, user = self.login()
        r2 = self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        r3 = self.assertRefreshed(self.refresh_v1(r2["refresh_token"]), idc, user)
        r4 = self.assertRefreshed(self.refresh_v1(r3["refresh_token"]), idc, user)
        self.assertRefreshRefused(r2["refresh_token"])
        self.assertRefreshRefused(r4["refresh_token"], times=EVERY_WORKER // 2)
        self.assertSessionDead(login)

    def test_no_grace_retry(self):
        """refresh_grace = 0: even an immediate retry of R1 is a reuse."""
        login, idc, user = self.login()
        r2 = self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        self.assertRefreshRefused(login["refresh_token"])
        self.assertRefreshRefused(r2["refresh_token"], times=2)

    def test_other_sessions_of_user_survive(self):
        login, idc, user = self.login()
        other, other_idc, _ = self.login(user=user)
        self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)
        self.assertRefreshRefused(login["refresh_token"])
        self.assertRefreshed(self.refresh_v1(other["refresh_token"]), other_idc, user)
        self.assertTokenResponse(self.session_authenticate(other["session_id"]))

    def test_parallel_exactly_one_wins(self):
        """50 concurrent refreshes of one token: exactly one 200, the others 400; and never two
        live successors: of all tokens handed out, at most one still refreshes."""
        login, idc, user = self.login()
        r1 = login["refresh_token"]
        calls = [(lambda via=("v1" if i % 2 else "oidc"): self.refresh(r1, via))
                 for i in range(PARALLEL)]
        results = nograce.parallel(calls, threads=PARALLEL)
        harness.note("parallel refresh, no grace: %s" % summary(results))
        ok = [r for r in results if r.status == 200]
        self.assertEqual(len(ok), 1, summary(results))
        for r in results:
            if r.status != 200:
                if r.json.get("error") is not None:
                    self.assertOAuthError(r, 400, "invalid_grant")
                else:
                    self.assertError(r, 400, 400)
        self.assertRefreshed(ok[0], idc, user)
        handed_out = {r.json["refresh_token"] for r in ok}
        live = [rt for rt in handed_out if self.refresh_v1(rt).status == 200]
        self.assertLessEqual(len(live), 1)
        # What happens (src/token.c): the losers came after the winner's rotation, so each
        # was a reuse, which revoked the family and the session: no successor is live.
        harness.note("live successors after the race: %d" % len(live))
        self.assertEqual(live, [])
        self.assertSessionDead(login)


# ---- binding to the client, input checks ---------------------------------------------------------

class Binding(RefreshCase):
    st = property(lambda self: nograce)

    @classmethod
    def setUpClass(cls):
        cls.client = nograce.new_client(permissions=["direct"])
        cls.other = nograce.new_client(permissions=["direct"])

    def test_other_client_refused(self):
        """Client B presenting A's refresh token: 400 on both endpoints, and that attempt
        neither rotates nor revokes A's token (grace 0 here, so a rotation would show)."""
        login, idc, user = self.login()
        rt = login["refresh_token"]
        for i in range(3):
            r = self.refresh_v1(rt, client=self.other)
            self.assertEqual(self.assertError(r, 400, 400)["message"], "Invalid refresh token")
            self.assertOAuthError(self.refresh_oidc(rt, client=self.other), 400,
                                  "invalid_grant")
        self.assertRefreshed(self.refresh_v1(rt), idc, user)

    def test_session_bound_to_client(self):
        login, idc, user = self.login()
        r = nograce.http("POST", "/cis/v1/auth/session/authenticate",
                         json={"session_id": login["session_id"]}, token=self.other["token"])
        self.assertError(r, 400, "400")

    def test_unknown_and_malformed_tokens(self):
        login, idc, user = self.login()
        for rt in ("garbage", login["access_token"][:128], login["refresh_token"] + "x",
                   login["refresh_token"][:-1], "\u00e9t\u00e9"):
            with self.subTest(token=rt[:20]):
                self.assertRefreshRefused(rt)
        # None of that touched the real one.
        self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)

    def test_v1_input(self):
        for body in ({}, {"refresh_token": None}, {"refresh_token": 1},
                     {"refresh_token": ""}, {"refresh_token": "x" * 129}):
            with self.subTest(body=str(body)[:40]):
                r = nograce.http("POST", "/cis/v1/auth/token/refresh", json=body,
                                 token=self.client["token"])
                self.assertError(r, 400)
        r = nograce.http("POST", "/cis/v1/auth/token/refresh",
                         form={"refresh_token": "x"}, token=self.client["token"])
        self.assertEqual(r.status, 415, r)

    def test_v1_needs_bearer(self):
        login, idc, user = self.login()
        r = nograce.http("POST", "/cis/v1/auth/token/refresh",
                         json={"refresh_token": login["refresh_token"]})
        self.assertInvalidToken(r)
        # The user's access token is no client token.
        r = nograce.http("POST", "/cis/v1/auth/token/refresh",
                         json={"refresh_token": login["refresh_token"]},
                         token=login["access_token"])
        self.assertInvalidToken(r)
        self.assertRefreshed(self.refresh_v1(login["refresh_token"]), idc, user)

    def test_oidc_input(self):
        c = self.client
        login, idc, user = self.login()
        r = nograce.token_request(c["client_id"], c["client_secret"], grant_type="refresh_token")
        self.assertOAuthError(r, 400, "invalid_request")
        r = nograce.token_request(c["client_id"], "wrong-secret", grant_type="refresh_token",
                                  refresh_token=login["refresh_token"])
        self.assertOAuthError(r, 401, "invalid_client")
        r = nograce.http("POST", "/oidc/token",
                         form={"grant_type": "refresh_token",
                               "refresh_token": login["refresh_token"]})
        self.assertOAuthError(r, 401, "invalid_client")
        r = nograce.token_request(c["client_id"], c["client_secret"],
                                  grant_type="refresh_token", refresh_token="x" * 400)
        self.assertOAuthError(r, 400, "invalid_grant")
        # The token was never rotated by those.
        self.assertRefreshed(self.refresh_oidc(login["refresh_token"]), idc, user)

    def test_resource_carried_through_rotation(self):
        res = "urn:e2e:refresh-api"
        client = nograce.new_client(permissions=["direct"], resources=[res])
        login, idc, user = self.login(client=client, resource=res)
        _, atc = nograce.verify_jwt(login["access_token"], "at+jwt", res)
        rt = login["refresh_token"]
        for i in range(2):
            r = nograce.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                             token=client["token"])
            body = self.assertJSON(r, 200)
            _, atc = nograce.verify_jwt(body["access_token"], "at+jwt", res)
            self.assertEqual(atc["aud"], res)
            _, idc2 = nograce.verify_jwt(body["id_token"], "JWT", client["client_id"])
            self.assertEqual(idc2["sid"], idc["sid"])
            rt = body["refresh_token"]


# ---- lifetimes, with a clock the test moves -----------------------------------------------------

clock = None


class Lifetimes(RefreshCase):
    """[tokens] refresh_grace = 10 (the default), refresh_ttl = 600: the grace window ends, and
    refresh tokens expire while their session lives on."""

    st = property(lambda self: clock)
    REFRESH_TTL = 600
    GRACE = 10

    @classmethod
    def setUpClass(cls):
        global clock
        clock = ClockStack(name="refresh-clock", tokens={"refresh_ttl": cls.REFRESH_TTL})
        clock.start()
        cls.client = clock.new_client(permissions=["direct"])

    @classmethod
    def tearDownClass(cls):
        if clock is not None:
            clock.stop()

    def setUp(self):
        if clock.faketime is None:
            self.skipTest("libfaketime not installed (Debian package faketime)")

    def advance(self, seconds):
        """Move the workers' clock; the client token (an hour's lifetime) is fetched anew."""
        clock.advance(seconds)
        self.client["token"] = clock.client_token(self.client["client_id"],
                                                  self.client["client_secret"])

    def login(self, user=None, client=None, **extra):
        """As RefreshCase.login, with PyJWT's time checks off: the tokens' iat is the moved
        clock, in the test's future."""
        user = user or clock.make_user()
        addr = user["email"]["value"]
        code = clock.direct_code(self.client["token"], addr)
        body = self.assertTokenResponse(clock.otp_authenticate(self.client["token"], addr, code,
                                                               **extra))
        return body, self.claims(body["id_token"]), user

    def claims(self, token):
        import jwt
        header, _ = harness.jwt_parts(token)
        return jwt.decode(token, clock.jwks(refresh=True)[header["kid"]].key,
                          algorithms=[header["alg"]], audience=self.client["client_id"],
                          issuer=clock.issuer,
                          options={"verify_exp": False, "verify_iat": False})

    def refreshed(self, r, login_idc):
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), REFRESH_KEYS)
        idc = self.claims(body["id_token"])
        self.assertEqual(idc["sid"], login_idc["sid"])
        self.assertEqual(idc["exp"] - idc["iat"], 3600)
        return body

    def test_grace_window_ends(self):
        login, idc, user = self.login()
        r2 = self.refreshed(self.refresh_v1(login["refresh_token"]), idc)["refresh_token"]
        self.advance(self.GRACE // 2)
        again = self.refreshed(self.refresh_oidc(login["refresh_token"]), idc)
        self.assertEqual(again["refresh_token"], r2)
        # Past the window the same retry is a reuse: the family and its session are revoked.
        self.advance(self.GRACE // 2 + 2)
        self.assertOAuthError(self.refresh_oidc(login["refresh_token"]), 400, "invalid_grant")
        self.assertRefreshRefused(r2, times=EVERY_WORKER // 2)
        self.assertSessionDead(login)

    def test_refresh_token_expires(self):
        """An expired refresh token is refused without ending its session."""
        login, idc, user = self.login()
        self.advance(self.REFRESH_TTL + 5)
        self.assertRefreshRefused(login["refresh_token"], times=EVERY_WORKER // 2)
        fresh = self.assertTokenResponse(self.session_authenticate(login["session_id"]))
        self.refreshed(self.refresh_v1(fresh["refresh_token"]), idc)

    def test_rotation_gives_a_fresh_lifetime(self):
        login, idc, user = self.login()
        self.advance(self.REFRESH_TTL // 2 + 100)
        r2 = self.refreshed(self.refresh_v1(login["refresh_token"]), idc)
        self.advance(self.REFRESH_TTL // 2 + 100)   # R1's lifetime is over, R2's is not
        r3 = self.refreshed(self.refresh_v1(r2["refresh_token"]), idc)
        self.refreshed(self.refresh_oidc(r3["refresh_token"]), idc)
