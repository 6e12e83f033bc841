"""Organizations end to end (issue 5 item 4; README "otloginctl"): otloginctl org add / list /
member add, and org_id on every authenticate (OTP, magic link, silent sign-in) and on refresh.

A member gets tokens for that organization: "org_id" in the access and the ID token, and the
organization's roles (not the user's own) as "roles" in the access token, and in the ID token
when the claims request asks for roles. A non-member, or an unknown organization, gets 400
"User is not a member of the organization"; an OTP refused that way is not consumed. A refresh
keeps the organization and reads the roles again from the membership.

Every login goes through lighttpd to 4 workers; every JWT is verified with PyJWT against
/cis/oidc/jwks. Logins use the "direct" channel (code or link in the send response)."""

import os
import re
import subprocess
import urllib.parse

import harness
from harness import E2ETestCase, HarnessError

stack = None

REDIRECT = "https://app.example/callback"
NOT_MEMBER = "User is not a member of the organization"
# Requests that must see a change made by another process are repeated this often, so that
# with lighttpd's 4 workers each one is very likely served by every worker at least once.
EVERY_WORKER = 8
HEX24 = re.compile(r"^[0-9a-f]{24}$")


def setUpModule():
    global stack
    stack = harness.Stack(name="orgs").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


# ---- helpers ----------------------------------------------------------------------------------

def ctl_run(*args):
    """otloginctl -c CONF args... without judging the outcome: CompletedProcess (text)."""
    cmd = [harness.CTL_BIN, "-c", stack.conf] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)


def uniq(tag):
    return "%s-%s" % (tag, os.urandom(6).hex())


def org_add(name=None, org_id=None):
    args = ["org", "add", "--name", name or uniq("Org")]
    if org_id is not None:
        args += ["--id", org_id]
    return stack.ctl(*args, parse=True)


def org_list():
    return stack.ctl("org", "list", parse=True)


def member_add(org_id, user_id, roles=()):
    args = ["org", "member", "add", "--org", org_id, "--user", user_id]
    for r in roles:
        args += ["--role", r]
    out = stack.ctl(*args)
    return out


def new_client(**kw):
    kw.setdefault("permissions", ["direct"])
    kw.setdefault("redirect_uris", [REDIRECT])
    return stack.new_client(**kw)


def addr_of(user):
    return user["email"]["value"]


def direct_code(client, user):
    return stack.direct_code(client["token"], addr_of(user))


def otp_auth(client, user, code, **extra):
    return stack.otp_authenticate(client["token"], addr_of(user), code, **extra)


def direct_login(client, user, **extra):
    return otp_auth(client, user, direct_code(client, user), **extra)


def link_code(client, user):
    """A magic link by the direct channel, opened (GET, then POST of its form); the
    redirect's single-use code."""
    r = stack.http("POST", "/cis/v1/auth/link/email/send",
                   json={"email": addr_of(user), "redirect_uri": REDIRECT, "channel": "direct"},
                   token=client["token"])
    if r.status != 200 or "link" not in r.json:
        raise HarnessError("link/email/send direct: %r" % (r,))
    r = stack.open_link(r.json["link"])
    loc = r.headers.get("Location", "")
    if r.status != 303 or not loc.startswith(REDIRECT + "?"):
        raise HarnessError("opening the link: %r Location %r" % (r, loc))
    return urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)["code"][0]


def link_login(client, user, **extra):
    body = {"code": link_code(client, user)}
    body.update(extra)
    return stack.http("POST", "/cis/v1/auth/link/email/authenticate", json=body,
                      token=client["token"])


def session_authenticate(client, session_id, **extra):
    body = {"session_id": session_id}
    body.update(extra)
    return stack.http("POST", "/cis/v1/auth/session/authenticate", json=body,
                      token=client["token"])


def refresh_v1(client, refresh_token):
    return stack.http("POST", "/cis/v1/auth/token/refresh",
                      json={"refresh_token": refresh_token}, token=client["token"])


def refresh_oidc(client, refresh_token):
    return stack.token_request(client["client_id"], client["client_secret"],
                               grant_type="refresh_token", refresh_token=refresh_token)


def sessions_of(client, user):
    r = stack.http("GET", "/cis/v1/auth/users/%s/sessions"
                   % urllib.parse.quote(user["user_id"], safe=""), token=client["token"])
    if r.status != 200:
        raise HarnessError("sessions list: %r" % (r,))
    return r.json


class OrgCase(E2ETestCase):
    def verify(self, body, client, user):
        """Both JWTs of a token response, verified with PyJWT (typ, iss, aud, exp); checks sub
        and sid; returns (id claims, access claims)."""
        _, idc = stack.verify_jwt(body["id_token"], "JWT", client["client_id"])
        _, atc = stack.verify_jwt(body["access_token"], "at+jwt", client["client_id"])
        for claims in (idc, atc):
            self.assertEqual(claims["iss"], stack.issuer)
            self.assertEqual(claims["sub"], user["user_id"])
        self.assertEqual(idc["sid"], atc["sid"])
        return idc, atc

    def login_ok(self, r, client, user):
        body = self.assertTokenResponse(r)
        idc, atc = self.verify(body, client, user)
        return body, idc, atc

    def assertOrgTokens(self, idc, atc, org_id, roles, id_roles=False):
        """Tokens for org_id: org_id in both, the organization's roles in the access token
        (and in the ID token only when asked for)."""
        self.assertEqual(atc.get("org_id"), org_id, "access token %r" % (atc,))
        self.assertEqual(idc.get("org_id"), org_id, "ID token %r" % (idc,))
        self.assertEqual(sorted(atc.get("roles", ["<missing>"])), sorted(roles),
                         "access token roles %r" % (atc,))
        if id_roles:
            self.assertEqual(sorted(idc.get("roles", ["<missing>"])), sorted(roles),
                             "ID token roles %r" % (idc,))
        else:
            self.assertNotIn("roles", idc, "ID token without a claims request: %r" % (idc,))

    def assertNoOrg(self, idc, atc, user_roles):
        self.assertNotIn("org_id", atc)
        self.assertNotIn("org_id", idc)
        self.assertEqual(sorted(atc.get("roles", ["<missing>"])), sorted(user_roles))

    def assertNotMember(self, r, dialect):
        """400 "User is not a member of the organization": error_code "system_invalid_input"
        in the OTP dialect, "400" in the link / session one."""
        code = "system_invalid_input" if dialect == "otp" else "400"
        body = self.assertError(r, 400, code)
        self.assertEqual(body["message"], NOT_MEMBER)


# ---- otloginctl org ---------------------------------------------------------------------------

class OrgCtl(OrgCase):
    def test_add_with_id_and_list(self):
        org_id = uniq("acme")
        out = org_add(name="Acme Inc.", org_id=org_id)
        self.assertEqual(out, {"org_id": org_id, "name": "Acme Inc."})
        listed = [o for o in org_list() if o.get("org_id") == org_id]
        self.assertEqual(len(listed), 1, "org list %r" % (listed,))
        self.assertEqual(listed[0]["name"], "Acme Inc.")

    def test_add_random_id(self):
        a = org_add(name="Random A")
        b = org_add(name="Random B")
        self.assertEqual(set(a), {"org_id", "name"})
        self.assertRegex(a["org_id"], HEX24)
        self.assertRegex(b["org_id"], HEX24)
        self.assertNotEqual(a["org_id"], b["org_id"])
        ids = {o["org_id"]: o["name"] for o in org_list()}
        self.assertEqual(ids.get(a["org_id"]), "Random A")
        self.assertEqual(ids.get(b["org_id"]), "Random B")

    def test_list_is_json_array_of_orgs(self):
        org_add()
        listed = org_list()
        self.assertIsInstance(listed, list)
        self.assertTrue(listed)
        for o in listed:
            self.assertIsInstance(o.get("org_id"), str, o)
            self.assertIsInstance(o.get("name"), str, o)
        # Users are in the same table: none of them shows up as an organization.
        user = stack.make_user()
        self.assertNotIn(user["user_id"], [o["org_id"] for o in org_list()])

    def test_id_taken(self):
        org_id = uniq("taken")
        org_add(name="First", org_id=org_id)
        r = ctl_run("org", "add", "--name", "Second", "--id", org_id)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("taken", r.stderr)
        self.assertEqual(r.stdout, "")
        listed = [o for o in org_list() if o["org_id"] == org_id]
        self.assertEqual([o["name"] for o in listed], ["First"])

    def test_bad_input(self):
        before = org_list()
        for args in (["--name", "x", "--id", "has space"],
                     ["--name", "x", "--id", "a/b"],
                     ["--name", "x", "--id", ""],
                     ["--name", "x", "--id", "o" * 129],
                     ["--name", ""],
                     ["--name", "n" * 201],
                     ["--id", uniq("noname")]):
            with self.subTest(args=args):
                r = ctl_run("org", "add", *args)
                self.assertEqual(r.returncode, 1, r)
                self.assertTrue(r.stderr.strip(), r)
                self.assertEqual(r.stdout, "")
        self.assertEqual(org_list(), before)
        # The longest and the odd-but-allowed ids are fine.
        for org_id in ("o" * 128, "A.b_c-9"):
            self.assertEqual(org_add(name="ok", org_id=org_id)["org_id"], org_id)

    def test_member_add_unknown_org_or_user(self):
        user = stack.make_user()
        org = org_add()
        r = ctl_run("org", "member", "add", "--org", uniq("nosuch"), "--user", user["user_id"])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no organization", r.stderr)
        r = ctl_run("org", "member", "add", "--org", org["org_id"], "--user", uniq("nouser"))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no user", r.stderr)
        # Neither left a trace on the user.
        u = [x for x in stack.ctl("user", "list", parse=True) if x["user_id"] == user["user_id"]]
        self.assertEqual(u[0].get("org_ids"), [])

    def test_member_add_shows_on_user(self):
        user = stack.make_user()
        a, b = org_add(), org_add()
        member_add(a["org_id"], user["user_id"], ["r1"])
        member_add(b["org_id"], user["user_id"])
        member_add(a["org_id"], user["user_id"], ["r2"])  # again: listed once
        u = [x for x in stack.ctl("user", "list", parse=True) if x["user_id"] == user["user_id"]]
        self.assertEqual(u[0]["org_ids"], [a["org_id"], b["org_id"]])
        # The users API shows the same.
        admin = stack.new_client(permissions=["admin"])
        r = stack.http("GET", "/cis/v1/users/%s" % user["user_id"], token=admin["token"])
        got = self.assertJSON(r, 200)
        got = got.get("result", got)
        self.assertEqual(got["org_ids"], [a["org_id"], b["org_id"]])


class OrgCtlUsage(OrgCase):
    """otloginctl org usage errors, on a stack of their own: they must leave the running
    service alone (an otloginctl that exits without closing the database environment makes
    the next one run recovery under the workers' feet)."""

    @classmethod
    def setUpClass(cls):
        cls.own = harness.Stack(name="orgs-usage").start()

    @classmethod
    def tearDownClass(cls):
        cls.own.stop()

    def run_ctl(self, *args):
        cmd = [harness.CTL_BIN, "-c", self.own.conf] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)

    def test_usage_errors_leave_the_service_alone(self):
        own = self.own
        client = own.make_client()
        for args in (["org"], ["org", "remove"], ["org", "member"],
                     ["org", "member", "add", "--org", "x"],
                     ["org", "member", "add", "--user", "x"],
                     ["org", "add", "--bogus", "x"]):
            with self.subTest(args=args):
                r = self.run_ctl(*args)
                self.assertEqual(r.returncode, 2, r)
                self.assertIn("usage", r.stderr)
                self.assertEqual(r.stdout, "")
        # The next otloginctl and every worker go on as before.
        org = own.ctl("org", "add", "--name", "after usage errors", parse=True)
        self.assertIn(org["org_id"], [o["org_id"] for o in own.ctl("org", "list", parse=True)])
        for i in range(EVERY_WORKER):
            with self.subTest(attempt=i):
                r = own.token_request(client["client_id"], client["client_secret"])
                self.assertEqual(r.status, 200, "client_credentials after otloginctl usage "
                                 "errors: %r" % (r,))


# ---- org_id on OTP authenticate ---------------------------------------------------------------

class OrgOTP(OrgCase):
    @classmethod
    def setUpClass(cls):
        cls.client = new_client()
        cls.org = org_add(name="OTP org")
        cls.other = org_add(name="Other org")

    def member(self, roles=("admin", "billing"), user_roles=("global",)):
        user = stack.make_user(roles=user_roles)
        member_add(self.org["org_id"], user["user_id"], roles)
        return user

    def test_member_gets_org_tokens(self):
        user = self.member()
        body, idc, atc = self.login_ok(direct_login(self.client, user, org_id=self.org["org_id"]),
                                       self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin", "billing"])
        self.assertEqual(idc["amr"], ["otp"])

    def test_without_org_id_user_roles(self):
        user = self.member()
        _, idc, atc = self.login_ok(direct_login(self.client, user), self.client, user)
        self.assertNoOrg(idc, atc, ["global"])

    def test_id_token_roles_when_asked(self):
        user = self.member()
        r = direct_login(self.client, user, org_id=self.org["org_id"],
                         claims={"id_token": {"roles": None, "email": None}})
        _, idc, atc = self.login_ok(r, self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin", "billing"], id_roles=True)
        self.assertEqual(idc["email"], addr_of(user))

    def test_access_token_roles_when_asked(self):
        """claims.access_token.roles must not bring the user's own roles back into an
        organization's access token."""
        user = self.member()
        r = direct_login(self.client, user, org_id=self.org["org_id"],
                         claims={"access_token": {"roles": None}})
        _, idc, atc = self.login_ok(r, self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin", "billing"])

    def test_member_without_roles(self):
        user = self.member(roles=())
        _, idc, atc = self.login_ok(direct_login(self.client, user, org_id=self.org["org_id"]),
                                    self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], [])

    def test_roles_per_org(self):
        user = self.member(roles=("admin",))
        member_add(self.other["org_id"], user["user_id"], ["viewer"])
        _, idc, atc = self.login_ok(direct_login(self.client, user, org_id=self.org["org_id"]),
                                    self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin"])
        _, idc, atc = self.login_ok(direct_login(self.client, user,
                                                 org_id=self.other["org_id"]),
                                    self.client, user)
        self.assertOrgTokens(idc, atc, self.other["org_id"], ["viewer"])

    def test_member_add_replaces_roles(self):
        user = self.member(roles=("a", "b"))
        member_add(self.org["org_id"], user["user_id"], ["c"])
        for i in range(EVERY_WORKER // 2):
            with self.subTest(attempt=i):
                _, idc, atc = self.login_ok(
                    direct_login(self.client, user, org_id=self.org["org_id"]), self.client,
                    user)
                self.assertOrgTokens(idc, atc, self.org["org_id"], ["c"])
        member_add(self.org["org_id"], user["user_id"])  # no --role: no roles
        for i in range(EVERY_WORKER // 2):
            with self.subTest(attempt=i):
                _, idc, atc = self.login_ok(
                    direct_login(self.client, user, org_id=self.org["org_id"]), self.client,
                    user)
                self.assertOrgTokens(idc, atc, self.org["org_id"], [])

    def test_membership_takes_effect_on_every_worker(self):
        """A membership added while the workers run is seen by each of them."""
        user = stack.make_user()
        self.assertNotMember(direct_login(self.client, user, org_id=self.org["org_id"]), "otp")
        member_add(self.org["org_id"], user["user_id"], ["new"])
        for i in range(EVERY_WORKER):
            with self.subTest(attempt=i):
                _, idc, atc = self.login_ok(
                    direct_login(self.client, user, org_id=self.org["org_id"]), self.client,
                    user)
                self.assertOrgTokens(idc, atc, self.org["org_id"], ["new"])

    def test_non_member_refused_code_not_consumed(self):
        """Refused for a non-member, an unknown organization, another organization: the
        passcode is neither consumed nor counted as a failure (more refusals than
        max_failures), no session is created, and then it works without org_id."""
        user = stack.make_user(roles=("global",))
        member_add(self.other["org_id"], user["user_id"], ["x"])
        code = direct_code(self.client, user)
        refusals = [self.org["org_id"], uniq("unknown-org"), self.org["org_id"],
                    uniq("unknown-org"), self.org["org_id"]]
        self.assertGreater(len(refusals), stack.max_failures)
        for org_id in refusals:
            with self.subTest(org_id=org_id):
                self.assertNotMember(otp_auth(self.client, user, code, org_id=org_id), "otp")
        self.assertEqual(sessions_of(self.client, user), [])
        _, idc, atc = self.login_ok(otp_auth(self.client, user, code), self.client, user)
        self.assertNoOrg(idc, atc, ["global"])
        # Now it is consumed.
        r = otp_auth(self.client, user, code)
        self.assertError(r, 400, "auth_invalid_credentials")
        self.assertEqual(len(sessions_of(self.client, user)), 1)

    def test_refused_then_member_org_works_with_same_code(self):
        user = stack.make_user()
        member_add(self.org["org_id"], user["user_id"], ["m"])
        code = direct_code(self.client, user)
        self.assertNotMember(otp_auth(self.client, user, code, org_id=self.other["org_id"]),
                             "otp")
        _, idc, atc = self.login_ok(otp_auth(self.client, user, code,
                                             org_id=self.org["org_id"]), self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["m"])

    def test_wrong_code_with_org_is_a_failure_not_not_member(self):
        """The passcode is checked first: a wrong one is "Invalid passcode" whatever org_id
        says (refusing it as "not a member" would reveal memberships to a guesser)."""
        user = stack.make_user()
        code = direct_code(self.client, user)
        r = otp_auth(self.client, user, harness.other_code(code), org_id=self.org["org_id"])
        self.assertError(r, 400, "auth_invalid_credentials")

    def test_org_id_input_checked(self):
        user = self.member()
        code = direct_code(self.client, user)
        for bad in (123, None, ["x"], {"id": "x"}, True, "o" * 129):
            with self.subTest(org_id=bad):
                r = otp_auth(self.client, user, code, org_id=bad)
                self.assertError(r, 400, "system_invalid_input")
        _, idc, atc = self.login_ok(otp_auth(self.client, user, code,
                                             org_id=self.org["org_id"]), self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin", "billing"])

    def test_org_with_session_id(self):
        """A factor added to an existing session can be for an organization."""
        user = self.member()
        first, _, _ = self.login_ok(direct_login(self.client, user), self.client, user)
        code = stack.send_and_read_code(self.client["token"], addr_of(user))
        r = otp_auth(self.client, user, code, session_id=first["session_id"],
                     org_id=self.org["org_id"])
        second, idc, atc = self.login_ok(r, self.client, user)
        self.assertEqual(second["session_id"], first["session_id"])
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["admin", "billing"])
        self.assertEqual(set(idc["amr"]), {"otp", "eotp", "mfa"})


# ---- org_id on magic-link authenticate --------------------------------------------------------

class OrgLink(OrgCase):
    @classmethod
    def setUpClass(cls):
        cls.client = new_client()
        cls.org = org_add(name="Link org")

    def test_member(self):
        user = stack.make_user(roles=("global",))
        member_add(self.org["org_id"], user["user_id"], ["editor"])
        body, idc, atc = self.login_ok(link_login(self.client, user, org_id=self.org["org_id"],
                                                  claims={"id_token": {"roles": None}}),
                                       self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["editor"], id_roles=True)
        self.assertEqual(idc["amr"], ["eml"])
        _, idc, atc = self.login_ok(link_login(self.client, user), self.client, user)
        self.assertNoOrg(idc, atc, ["global"])

    def test_non_member_and_unknown_org(self):
        user = stack.make_user()
        for org_id in (self.org["org_id"], uniq("unknown-org")):
            with self.subTest(org_id=org_id):
                self.assertNotMember(link_login(self.client, user, org_id=org_id), "link")
        self.assertEqual(sessions_of(self.client, user), [])
        self.login_ok(link_login(self.client, user), self.client, user)

    def test_org_id_input_checked(self):
        user = stack.make_user()
        r = link_login(self.client, user, org_id=7)
        self.assertError(r, 400)


# ---- org_id on silent sign-in -----------------------------------------------------------------

class OrgSession(OrgCase):
    @classmethod
    def setUpClass(cls):
        cls.client = new_client()
        cls.org = org_add(name="Session org")

    def test_silent_sign_in_for_org(self):
        """A session started without an organization signs in silently for one the user is a
        member of; and without org_id again, the tokens are the user's own."""
        user = stack.make_user(roles=("global",))
        member_add(self.org["org_id"], user["user_id"], ["ops"])
        first, idc0, _ = self.login_ok(direct_login(self.client, user), self.client, user)
        r = session_authenticate(self.client, first["session_id"], org_id=self.org["org_id"])
        _, idc, atc = self.login_ok(r, self.client, user)
        self.assertEqual(idc["sid"], idc0["sid"])
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["ops"])
        r = session_authenticate(self.client, first["session_id"], org_id=self.org["org_id"],
                                 claims={"id_token": {"roles": None}})
        _, idc, atc = self.login_ok(r, self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["ops"], id_roles=True)
        _, idc, atc = self.login_ok(session_authenticate(self.client, first["session_id"]),
                                    self.client, user)
        self.assertNoOrg(idc, atc, ["global"])

    def test_non_member_and_unknown_org(self):
        user = stack.make_user()
        first, _, _ = self.login_ok(direct_login(self.client, user), self.client, user)
        for org_id in (self.org["org_id"], uniq("unknown-org")):
            with self.subTest(org_id=org_id):
                self.assertNotMember(session_authenticate(self.client, first["session_id"],
                                                          org_id=org_id), "session")
        # The session is unharmed.
        self.login_ok(session_authenticate(self.client, first["session_id"]), self.client, user)
        self.assertEqual(len(sessions_of(self.client, user)), 1)

    def test_org_login_then_silent_sign_in_elsewhere(self):
        """A session begun for an organization does not make its user a member of another."""
        other = org_add(name="Elsewhere")
        user = stack.make_user()
        member_add(self.org["org_id"], user["user_id"], ["a"])
        first, _, _ = self.login_ok(direct_login(self.client, user, org_id=self.org["org_id"]),
                                    self.client, user)
        self.assertNotMember(session_authenticate(self.client, first["session_id"],
                                                  org_id=other["org_id"]), "session")


# ---- refresh keeps the organization, reads its roles again -----------------------------------

class OrgRefresh(OrgCase):
    @classmethod
    def setUpClass(cls):
        cls.client = new_client()
        cls.org = org_add(name="Refresh org")

    def test_refresh_keeps_org_and_rereads_roles(self):
        user = stack.make_user(roles=("global",))
        member_add(self.org["org_id"], user["user_id"], ["r1"])
        body, idc, atc = self.login_ok(
            direct_login(self.client, user, org_id=self.org["org_id"],
                         claims={"id_token": {"roles": None}}), self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["r1"], id_roles=True)
        sid = idc["sid"]
        rt = body["refresh_token"]
        for i in range(2):
            r = (refresh_v1, refresh_oidc)[i % 2](self.client, rt)
            b = self.assertJSON(r, 200)
            idc, atc = self.verify(b, self.client, user)
            self.assertEqual(idc["sid"], sid)
            self.assertOrgTokens(idc, atc, self.org["org_id"], ["r1"], id_roles=True)
            rt = b["refresh_token"]
        # Changed roles show up at the next refresh, whichever worker serves it.
        member_add(self.org["org_id"], user["user_id"], ["r2", "r3"])
        for i in range(EVERY_WORKER):
            with self.subTest(attempt=i):
                r = (refresh_v1, refresh_oidc)[i % 2](self.client, rt)
                b = self.assertJSON(r, 200)
                idc, atc = self.verify(b, self.client, user)
                self.assertEqual(idc["sid"], sid)
                self.assertOrgTokens(idc, atc, self.org["org_id"], ["r2", "r3"],
                                     id_roles=True)
                rt = b["refresh_token"]

    def test_refresh_without_org_stays_without(self):
        user = stack.make_user(roles=("global",))
        member_add(self.org["org_id"], user["user_id"], ["r1"])
        body, _, _ = self.login_ok(direct_login(self.client, user), self.client, user)
        b = self.assertJSON(refresh_v1(self.client, body["refresh_token"]), 200)
        idc, atc = self.verify(b, self.client, user)
        self.assertNoOrg(idc, atc, ["global"])

    def test_refresh_after_silent_sign_in_for_org(self):
        user = stack.make_user()
        member_add(self.org["org_id"], user["user_id"], ["s1"])
        first, _, _ = self.login_ok(direct_login(self.client, user), self.client, user)
        body, _, _ = self.login_ok(session_authenticate(self.client, first["session_id"],
                                                        org_id=self.org["org_id"]),
                                   self.client, user)
        member_add(self.org["org_id"], user["user_id"], ["s2"])
        b = self.assertJSON(refresh_oidc(self.client, body["refresh_token"]), 200)
        idc, atc = self.verify(b, self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["s2"])

    def test_refresh_after_link_login_for_org(self):
        user = stack.make_user()
        member_add(self.org["org_id"], user["user_id"], ["l1"])
        body, _, _ = self.login_ok(link_login(self.client, user, org_id=self.org["org_id"]),
                                   self.client, user)
        b = self.assertJSON(refresh_v1(self.client, body["refresh_token"]), 200)
        idc, atc = self.verify(b, self.client, user)
        self.assertOrgTokens(idc, atc, self.org["org_id"], ["l1"])
