"""The audit trail end to end (issue 13 "Audit trail"; README "Audit trail"): a stack with
[audit] log = FILE, one test per event, each reading the stream the workers and otloginctl
write: the event's fields, the common fields every line carries, and that no secret (a
passcode, a token, a client secret) and no full address reaches it.
"""

import json
import os
import re
import socket
import subprocess
import tempfile
import urllib.parse

import harness
from harness import E2ETestCase, unique_email
from hosted_browser import Browser, auth_params, exchange, REDIRECT

stack = None

COMMON = ["ts", "event", "outcome", "reason", "request_id", "client_id", "user_id", "ip"]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# The account delay after two wrong passcodes (the lockout test's own user).
ACCOUNT_FAILURES = "2/1h"


def setUpModule():
    global stack
    stack = harness.Stack(name="audit", audit=True, limits={"send_cooldown": 60},
                          otp={"account_failures": ACCOUNT_FAILURES}).start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def masked(addr):
    """log_mask_addr's form: two leading characters of each part, then ***."""
    if "@" not in addr:
        return addr[:2] + "***"
    local, domain = addr.split("@", 1)
    return local[:2] + "***@" + domain[:2] + "***"


class AuditCase(E2ETestCase):
    def setUp(self):
        self.mark = len(stack.audit_events())

    def new_events(self, event=None):
        evs = stack.audit_events()[self.mark:]
        for e in evs:
            self.assertEqual(list(e)[:len(COMMON)], COMMON, e)
            self.assertRegex(e["ts"], TS_RE)
            self.assertIn(e["outcome"], ("success", "failure"))
            self.assertEqual(e["reason"] is None, e["outcome"] == "success", e)
        return [e for e in evs if event is None or e["event"] == event]

    def one(self, event, **fields):
        """The only new event of that name whose fields include `fields`."""
        evs = [e for e in self.new_events(event)
               if all(e.get(k) == v for k, v in fields.items())]
        self.assertEqual(len(evs), 1, "%s %r in %s" % (event, fields,
                                                       json.dumps(self.new_events(), indent=1)))
        return evs[0]

    def assertNotInTrail(self, *secrets):
        with open(stack.path("audit.log"), encoding="utf-8") as f:
            text = f.read()
        for s in secrets:
            self.assertTrue(s)
            self.assertNotIn(s, text)

    def otp_login(self, client, addr):
        code = stack.send_and_read_code(client["token"], addr)
        body = self.assertTokenResponse(stack.otp_authenticate(client["token"], addr, code))
        return code, body


class Login(AuditCase):
    @classmethod
    def setUpClass(cls):
        cls.client = stack.new_client()

    def test_code_sent(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        self.mark = len(stack.audit_events())
        code = stack.send_and_read_code(self.client["token"], addr)
        e = self.one("message_sent")
        self.assertEqual(e["outcome"], "success")
        self.assertEqual(e["channel"], "email")
        self.assertEqual(e["message"], "code")
        self.assertEqual(e["destination"], masked(addr))
        self.assertEqual(e["client_id"], self.client["client_id"])
        self.assertRegex(e["request_id"] or "", r"^\S+$")
        self.assertEqual(e["ip"], "127.0.0.1")
        self.assertNotInTrail(addr, code)

    def test_login_success_creates_a_session(self):
        user = stack.make_user()
        addr = user["email"]["value"]
        self.mark = len(stack.audit_events())
        code, body = self.otp_login(self.client, addr)
        e = self.one("login", outcome="success")
        self.assertEqual(e["method"], "email_otp")
        self.assertEqual(e["user_id"], user["user_id"])
        self.assertEqual(e["client_id"], self.client["client_id"])
        s = self.one("session_created")
        self.assertEqual(s["user_id"], user["user_id"])
        self.assertEqual(s["client_id"], self.client["client_id"])
        self.assertEqual(s["request_id"], e["request_id"])
        self.assertNotInTrail(addr, code, body["access_token"], body["refresh_token"],
                              body["session_id"], self.client["client_secret"],
                              self.client["token"])

    def test_login_failure(self):
        addr = stack.make_user()["email"]["value"]
        code = stack.send_and_read_code(self.client["token"], addr)
        self.mark = len(stack.audit_events())
        wrong = harness.other_code(code)
        r = stack.otp_authenticate(self.client["token"], addr, wrong)
        self.assertNotEqual(r.status, 200)
        e = self.one("login")
        self.assertEqual(e["outcome"], "failure")
        self.assertEqual(e["reason"], "bad_credentials")
        self.assertEqual(e["method"], "email_otp")
        self.assertEqual(e["client_id"], self.client["client_id"])
        self.assertEqual(e["identifier"], masked(addr))
        # A failed login opens no session, and the attempt is audited once.
        self.assertEqual(self.new_events("session_created"), [])
        self.assertNotInTrail(addr, wrong, code)

    def test_throttled(self):
        """A second send within the cool-down: a throttle by rule "cooldown", and no
        message_sent claims it went out."""
        addr = stack.make_user()["email"]["value"]
        stack.send_and_read_code(self.client["token"], addr)
        self.mark = len(stack.audit_events())
        r = stack.otp_send(self.client["token"], addr)
        self.assertEqual(r.status, 429, "%r" % (r,))
        e = self.one("throttled")
        self.assertEqual(e["rule"], "cooldown")
        self.assertEqual(e["reason"], "cooldown")
        self.assertGreater(int(e["retry_after"]), 0)
        self.assertEqual(e["client_id"], self.client["client_id"])
        self.assertEqual([m for m in self.new_events("message_sent")
                          if m["outcome"] == "success"], [])
        self.assertNotInTrail(addr)

    def test_lockout(self):
        """Wrong passcodes up to [otp] account_failures put the account under a delay (a
        "lockout" event); an attempt during it is throttled by rule "lockout". Another
        account is not affected: the attacker cannot lock out everybody."""
        victim = stack.make_user()
        addr = victim["email"]["value"]
        # Guesses count against an outstanding code only (test_lockout.py).
        wrong = harness.other_code(stack.send_and_read_code(self.client["token"], addr))
        self.mark = len(stack.audit_events())
        for _ in range(2):
            r = stack.otp_authenticate(self.client["token"], addr, wrong)
            self.assertNotEqual(r.status, 200)
        lock = self.one("lockout")
        self.assertEqual(lock["reason"], "too_many_failures")
        self.assertGreater(int(lock["retry_after"]), 0)
        self.mark = len(stack.audit_events())
        r = stack.otp_authenticate(self.client["token"], addr, wrong)
        self.assertNotEqual(r.status, 200)
        t = self.one("throttled", rule="lockout")
        self.assertEqual(t["user_id"], victim["user_id"])
        self.assertEqual(self.one("login")["reason"], "locked")
        # Someone else still signs in, and nothing about them says lockout.
        self.mark = len(stack.audit_events())
        self.otp_login(self.client, stack.make_user()["email"]["value"])
        self.one("login", outcome="success")
        self.assertEqual(self.new_events("lockout") + self.new_events("throttled"), [])

    def test_refresh_reuse(self):
        user = stack.make_user()
        _, body = self.otp_login(self.client, user["email"]["value"])
        rt = body["refresh_token"]
        r = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                       token=self.client["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        new_rt = r.json["refresh_token"]
        r = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": new_rt},
                       token=self.client["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        self.mark = len(stack.audit_events())
        r = stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                       token=self.client["token"])
        self.assertNotEqual(r.status, 200)
        e = self.one("refresh_reuse")
        self.assertEqual(e["outcome"], "failure")
        self.assertEqual(e["reason"], "family_revoked")
        self.assertEqual(e["user_id"], user["user_id"])
        self.assertEqual(e["client_id"], self.client["client_id"])
        self.assertEqual(self.one("session_ended")["user_id"], user["user_id"])
        self.assertNotInTrail(rt, new_rt)

    def test_logout(self):
        user = stack.make_user()
        _, body = self.otp_login(self.client, user["email"]["value"])
        self.mark = len(stack.audit_events())
        r = stack.http("POST", "/cis/v1/auth/session/logout",
                       json={"session_id": body["session_id"]}, token=self.client["token"])
        self.assertEqual(r.status, 204, "%r" % (r,))
        e = self.one("logout")
        self.assertEqual(e["outcome"], "success")
        self.assertEqual(e["method"], "api")
        self.assertEqual(e["client_id"], self.client["client_id"])
        ended = self.one("session_ended")
        self.assertEqual(ended["user_id"], user["user_id"])
        self.assertEqual(ended["request_id"], e["request_id"])
        self.assertNotInTrail(body["session_id"])

    def test_end_all_sessions(self):
        user = stack.make_user()
        for _ in range(2):
            self.otp_login(self.client, user["email"]["value"])
        self.mark = len(stack.audit_events())
        r = stack.http("DELETE", "/cis/v1/auth/users/%s/sessions" % user["user_id"],
                       token=self.client["token"])
        self.assertEqual(r.status, 204, "%r" % (r,))
        e = self.one("logout", method="end_all")
        self.assertEqual((e["outcome"], e["user_id"], e["client_id"]),
                         ("success", user["user_id"], self.client["client_id"]))
        self.assertEqual([x["user_id"] for x in self.new_events("session_ended")],
                         [user["user_id"]] * 2)

    def test_redirect_api_logout(self):
        user = stack.make_user()
        _, body = self.otp_login(self.client, user["email"]["value"])
        self.mark = len(stack.audit_events())
        r = stack.http("POST", "/cis/v1/auth/logout",
                       headers={"Authorization": "Bearer " + body["access_token"]})
        self.assertEqual(r.status, 200, "%r" % (r,))
        e = self.one("logout", method="redirect")
        self.assertEqual((e["outcome"], e["user_id"], e["client_id"]),
                         ("success", user["user_id"], self.client["client_id"]))
        self.assertEqual(self.one("session_ended")["user_id"], user["user_id"])
        self.assertNotInTrail(body["access_token"])

    def test_silent_sign_in(self):
        user = stack.make_user()
        _, body = self.otp_login(self.client, user["email"]["value"])
        self.mark = len(stack.audit_events())
        r = stack.http("POST", "/cis/v1/auth/session/authenticate",
                       json={"session_id": body["session_id"]}, token=self.client["token"])
        again = self.assertTokenResponse(r)
        e = self.one("login", method="session")
        self.assertEqual((e["outcome"], e["user_id"]), ("success", user["user_id"]))
        # A session that is not there: a failure, and no session appears.
        r = stack.http("POST", "/cis/v1/auth/session/authenticate",
                       json={"session_id": "x" * 43}, token=self.client["token"])
        self.assertNotEqual(r.status, 200)
        self.assertEqual(self.one("login", outcome="failure")["reason"], "session_not_found")
        self.assertEqual(self.new_events("session_created"), [])
        self.assertNotInTrail(body["session_id"], again["access_token"])

    def test_rp_initiated_logout(self):
        """/oidc/session/end with the relying party's ID token: logout method rp_initiated,
        naming the user and how many sessions ended."""
        plru = "https://rp.example/bye"
        c = stack.ctl("client", "add", "--name", "audit-rp", "--permission", "direct",
                      "--post-logout-redirect-uri", plru, parse=True)
        c["token"] = stack.client_token(c["client_id"], c["client_secret"])
        user = stack.make_user()
        addr = user["email"]["value"]
        code = stack.direct_code(c["token"], addr)
        body = self.assertTokenResponse(stack.otp_authenticate(c["token"], addr, code))
        self.mark = len(stack.audit_events())
        r = stack.http("GET", "/cis/oidc/session/end?" + urllib.parse.urlencode(
            {"id_token_hint": body["id_token"], "post_logout_redirect_uri": plru}))
        self.assertEqual(r.status, 303, r)
        e = self.one("logout", method="rp_initiated")
        self.assertEqual((e["outcome"], e["user_id"], e["sessions_ended"]),
                         ("success", user["user_id"], "1"))
        self.assertEqual(self.one("session_ended")["request_id"], e["request_id"])
        self.assertNotInTrail(body["id_token"], body["session_id"], addr)


class MagicLink(AuditCase):
    """A magic link by the direct channel (nothing mailed: message_sent with channel none),
    opened, and its code authenticated (method magic_link); a wrong code fails."""

    def test_magic_link_login(self):
        back = "https://app.example/callback"
        client = stack.new_client(permissions=["direct"], redirect_uris=[back])
        user = stack.make_user()
        addr = user["email"]["value"]
        self.mark = len(stack.audit_events())
        r = stack.http("POST", "/cis/v1/auth/link/email/send",
                       json={"email": addr, "redirect_uri": back, "channel": "direct"},
                       token=client["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        link = r.json["link"]
        sent = self.one("message_sent")
        self.assertEqual((sent["outcome"], sent["message"], sent["channel"],
                          sent["destination"]), ("success", "link", "none", masked(addr)))
        r = stack.open_link(link)
        self.assertEqual(r.status, 303, "%r" % (r,))
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)[
            "code"][0]
        r = stack.http("POST", "/cis/v1/auth/link/email/authenticate",
                       json={"code": code + "x"}, token=client["token"])
        self.assertNotEqual(r.status, 200)
        self.assertEqual(self.one("login", outcome="failure")["method"], "magic_link")
        body = self.assertTokenResponse(stack.http(
            "POST", "/cis/v1/auth/link/email/authenticate", json={"code": code},
            token=client["token"]))
        e = self.one("login", outcome="success")
        self.assertEqual((e["method"], e["user_id"], e["client_id"]),
                         ("magic_link", user["user_id"], client["client_id"]))
        token = [v for vs in urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).values()
                 for v in vs] or [urllib.parse.urlsplit(link).path.rsplit("/", 1)[-1]]
        self.assertNotInTrail(addr, code, body["access_token"], *token)


class UsersAPI(AuditCase):
    def test_create_update_delete(self):
        admin = stack.new_client(permissions=["admin"])
        addr = unique_email("api")
        r = stack.http("POST", "/cis/v1/users", json={"email": addr}, token=admin["token"])
        self.assertEqual(r.status, 201, "%r" % (r,))
        uid = r.json["result"]["user_id"]
        new_addr = unique_email("api2")
        r = stack.http("PUT", "/cis/v1/users/" + uid, json={"email": new_addr},
                       token=admin["token"])
        self.assertEqual(r.status, 200, "%r" % (r,))
        r = stack.http("DELETE", "/cis/v1/manage/users/" + uid, token=admin["token"])
        self.assertEqual(r.status, 204, "%r" % (r,))
        r = stack.http("DELETE", "/cis/v1/manage/users/" + uid, token=admin["token"])
        self.assertEqual(r.status, 404, "%r" % (r,))
        for event in ("user_created", "user_updated"):
            e = self.one(event)
            self.assertEqual((e["outcome"], e["user_id"], e["by"]), ("success", uid, "api"))
            self.assertEqual(e["client_id"], admin["client_id"])
        deleted = self.new_events("user_deleted")
        self.assertEqual([(e["outcome"], e["reason"], e["user_id"]) for e in deleted],
                         [("success", None, uid), ("failure", "not_found", uid)])
        self.assertNotInTrail(addr, new_addr, admin["token"])

    def test_values_cannot_forge_lines_or_fields(self):
        """What a caller chooses (a user id in the path, an X-Request-Id) reaches the trail
        only as a JSON string: one line per event, no field of its making."""
        admin = stack.new_client(permissions=["admin"])
        self.mark = len(stack.audit_events())
        # (lighttpd refuses a %0A in the path: the unit test tries a newline.)
        forged = 'u1","event":"admin","outcome":"success","x":"'
        r = stack.http("DELETE", "/cis/v1/manage/users/" + urllib.parse.quote(forged, safe=""),
                       token=admin["token"], headers={"X-Request-Id": 'r","a":"b'})
        self.assertEqual(r.status, 404, "%r" % (r,))
        evs = self.new_events()  # every line parses
        self.assertEqual([e["event"] for e in evs], ["user_deleted"])
        e = evs[0]
        self.assertEqual(e["user_id"], forged)
        self.assertNotIn("x", e)
        self.assertNotIn('"', e["request_id"])
        self.assertEqual(e["request_id"], r.headers["X-Request-Id"])



class Otloginctl(AuditCase):
    def ctl_fails(self, *args):
        r = subprocess.run([stack.ctl_bin, "-c", stack.conf] + list(args), capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)

    def test_client_changes(self):
        c = stack.make_client(name="audited")
        e = self.one("admin", object="client", action="add")
        self.assertEqual(e["outcome"], "success")
        self.assertEqual(e["by"], "otloginctl")
        self.assertEqual(e["uid"], str(os.getuid()))
        self.assertIsNone(e["request_id"])
        stack.ctl("client", "update", c["client_id"], "--name", "renamed")
        self.assertEqual(self.one("admin", action="update")["target"], c["client_id"])
        # Reading changes nothing and is not audited.
        stack.ctl("client", "list")
        self.assertEqual(len(self.new_events("admin")), 2)
        self.ctl_fails("client", "update", "no-such-client", "--name", "x")
        e = self.one("admin", target="no-such-client")
        self.assertEqual((e["outcome"], e["reason"]), ("failure", "failed"))
        self.assertNotInTrail(c["client_secret"])

    def test_user_key_org_import(self):
        addr = unique_email("ctl")
        stack.make_user(email=addr, phone="+4915112345678")
        stack.ctl("key", "rotate")
        stack.ctl("org", "add", "--name", "Audited Org", "--id", "org-audit")
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=stack.dir,
                                         delete=False) as f:
            f.write(json.dumps({"email": unique_email("imp")}) + "\n")
        stack.ctl("user", "import", f.name)
        got = [(e["object"], e["action"], e["outcome"]) for e in self.new_events("admin")]
        self.assertEqual(got, [("user", "add", "success"), ("key", "rotate", "success"),
                               ("org", "add", "success"), ("user", "import", "success")])
        self.assertNotInTrail(addr, "15112345678", f.name)


class Hosted(AuditCase):
    """The hosted login page and the authorization code: login (method hosted_code), the
    code's exchange, and a replayed code (its session revoked)."""

    def test_hosted_login_and_code_exchange(self):
        client = stack.make_client(redirect_uris=[REDIRECT])
        addr = unique_email("hosted")
        user = stack.make_user(email=addr)
        self.mark = len(stack.audit_events())
        r = Browser(stack).login(auth_params(client), addr)
        self.assertEqual(r.status_code, 303, r.text[:300])
        code = dict(p.split("=", 1) for p in r.headers["Location"].split("?", 1)[1].split("&"))[
            "code"]
        sent = self.one("message_sent")
        self.assertEqual((sent["outcome"], sent["destination"], sent["client_id"]),
                         ("success", masked(addr), client["client_id"]))
        login = self.one("login", method="hosted_code")
        self.assertEqual((login["outcome"], login["user_id"], login["client_id"]),
                         ("success", user["user_id"], client["client_id"]))
        self.assertEqual(self.one("session_created")["user_id"], user["user_id"])
        r = exchange(stack, client, code)
        self.assertEqual(r.status, 200, r.body)
        e = self.one("code_exchange", outcome="success")
        self.assertEqual((e["user_id"], e["client_id"]), (user["user_id"], client["client_id"]))
        # The same code again: a replay, its session ended.
        r = exchange(stack, client, code)
        self.assertNotEqual(r.status, 200)
        self.assertEqual(self.one("code_replay")["reason"], "session_revoked")
        self.assertEqual(self.one("code_exchange", outcome="failure")["reason"],
                         "bad_credentials")
        self.assertEqual(self.one("session_ended")["user_id"], user["user_id"])
        self.assertNotInTrail(addr, code)


class Delivery(E2ETestCase):
    """A relay that refuses connections: delivery_failed, with the masked destination."""

    def test_delivery_failure(self):
        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        st = harness.Stack(name="audit-delivery", audit=True, workers=1,
                           mail={"smtp_port": port, "smtp_timeout": 2}).start()
        try:
            client = st.new_client()
            addr = st.make_user()["email"]["value"]
            r = st.otp_send(client["token"], addr)
            self.assertNotEqual(r.status, 200)
            evs = [e for e in st.audit_events() if e["event"] == "delivery_failed"]
            self.assertEqual(len(evs), 1, st.audit_events())
            e = evs[0]
            self.assertEqual((e["outcome"], e["reason"], e["channel"], e["destination"]),
                             ("failure", "delivery_failed", "email", masked(addr)))
            self.assertEqual(e["client_id"], client["client_id"])
            self.assertEqual([e for e in st.audit_events() if e["event"] == "message_sent"
                              and e["outcome"] == "success"], [])
            with open(st.path("audit.log"), encoding="utf-8") as f:
                self.assertNotIn(addr, f.read())
        finally:
            st.stop()
