"""The users API end to end (API.md "Users"; issue 5 item 5): create, get, find by email /
username / phone number, list with paging, update (only the fields sent, status, reindexing
identifiers), delete (which ends the user's sessions), and the admin permission every one of
them needs. Error shapes: 404 / 409 / 403 {"message": string, "error_code": number}, 400
{"message": [string], "error_code": 400}."""

import os
import re
import unittest
import urllib.parse

import harness
from harness import E2ETestCase, unique_email

stack = None
EVERY_WORKER = 8

USER_KEYS = {"user_id", "email", "phone_number", "username", "status", "status_changed_at",
             "created_at", "updated_at", "last_auth", "name", "custom_data",
             "external_account_id", "roles", "org_ids"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def setUpModule():
    global stack
    stack = harness.Stack(name="users").start()
    E2ETestCase.stack = stack


def tearDownModule():
    stack.stop()


def unique_phone():
    # +1 500 555 xxxx: test numbers that are never dialled (and nothing is sent by SMS here).
    return "+1500555%04d" % (int.from_bytes(os.urandom(2), "big") % 10000)


def unique_username(tag="u"):
    return "%s-%s" % (tag, os.urandom(5).hex())


def q(segment):
    return urllib.parse.quote(segment, safe="")


class UsersCase(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = stack.new_client(permissions=["admin", "direct"])

    # ---- requests ----

    def api(self, method, path, json=None, client=None, **kw):
        return stack.http(method, "/cis/v1" + path, json=json,
                          token=(client or self.admin)["token"], **kw)

    def create(self, **spec):
        """POST /v1/users; 201, returns the User."""
        spec.setdefault("email", unique_email())
        r = self.api("POST", "/users", json=spec)
        body = self.assertJSON(r, 201)
        self.assertEqual(set(body), {"result"})
        self.checkUser(body["result"])
        return body["result"]

    def get(self, user_id):
        return self.api("GET", "/users/" + q(user_id))

    def put(self, user_id, patch):
        return self.api("PUT", "/users/" + q(user_id), json=patch)

    def login(self, user, **extra):
        """A direct-OTP login of user's address; the token response."""
        addr = user["email"]["value"]
        code = stack.direct_code(self.admin["token"], addr)
        return self.assertTokenResponse(stack.otp_authenticate(self.admin["token"], addr, code,
                                                               **extra))

    def refresh(self, rt):
        return stack.http("POST", "/cis/v1/auth/token/refresh", json={"refresh_token": rt},
                          token=self.admin["token"])

    # ---- checks ----

    def checkUser(self, u):
        self.assertEqual(set(u), USER_KEYS, u)
        self.assertRegex(u["user_id"], r"^\S+$")
        for k in ("created_at", "updated_at", "status_changed_at"):
            self.assertIsInstance(u[k], int, k)
        self.assertGreaterEqual(u["updated_at"], u["created_at"])
        self.assertIn(u["status"], ("Active", "Disabled", "Pending"))
        for member, flag in (("email", "email_verified"),
                             ("phone_number", "phone_number_verified")):
            v = u[member]
            if v is not None:
                self.assertEqual(set(v), {"value", flag, "verified_at"}, v)
                self.assertIsInstance(v[flag], bool)
                if v[flag]:
                    self.assertRegex(v["verified_at"], RFC3339)
                else:
                    self.assertIsNone(v["verified_at"])
        if u["last_auth"] is not None:
            self.assertRegex(u["last_auth"], RFC3339)
        self.assertIsInstance(u["name"], dict)
        self.assertIsInstance(u["custom_data"], dict)
        self.assertIsInstance(u["roles"], list)
        self.assertIsInstance(u["org_ids"], list)

    def assertFound(self, r, user_id=None):
        body = self.assertJSON(r, 200)
        self.assertEqual(set(body), {"result"})
        self.checkUser(body["result"])
        if user_id is not None:
            self.assertEqual(body["result"]["user_id"], user_id)
        return body["result"]

    def assertUsersError(self, r, status):
        """404/409/403: message a string, error_code the number; 400: message a list."""
        body = self.assertJSON(r, status)
        self.assertEqual(set(body), {"message", "error_code"}, body)
        self.assertEqual(body["error_code"], status)
        if status == 400:
            self.assertIsInstance(body["message"], list, body)
            self.assertTrue(body["message"])
            self.assertTrue(all(isinstance(m, str) and m for m in body["message"]), body)
        else:
            self.assertIsInstance(body["message"], str, body)
            self.assertTrue(body["message"])
        return body

    def assertNotFound(self, r):
        self.assertUsersError(r, 404)


# ---- permission ----------------------------------------------------------------------------------

class Permission(UsersCase):
    def test_admin_permission_needed(self):
        plain = stack.new_client(permissions=["direct"])
        user = self.create()
        uid = q(user["user_id"])
        calls = [("POST", "/users", {"email": unique_email()}),
                 ("GET", "/users", None), ("GET", "/users?page_size=1", None),
                 ("GET", "/users/" + uid, None),
                 ("GET", "/users/email/" + q(user["email"]["value"]), None),
                 ("GET", "/users/username/x", None),
                 ("GET", "/users/phone-number/%2B15005550006", None),
                 ("PUT", "/users/" + uid, {"status": "Disabled"}),
                 ("DELETE", "/manage/users/" + uid, None)]
        for method, path, body in calls:
            with self.subTest(method=method, path=path):
                r = self.api(method, path, json=body, client=plain)
                self.assertUsersError(r, 403)
                # And no token at all: 401.
                r = stack.http(method, "/cis/v1" + path, json=body)
                self.assertInvalidToken(r)
        # Nothing of that changed the user.
        self.assertEqual(self.assertFound(self.get(user["user_id"])), user)

    def test_user_access_token_is_not_a_client_token(self):
        user = self.create()
        tokens = self.login(user)
        r = stack.http("GET", "/cis/v1/users/" + q(user["user_id"]),
                       token=tokens["access_token"])
        self.assertInvalidToken(r)


# ---- create ----------------------------------------------------------------------------------

class Create(UsersCase):
    def test_create_full(self):
        email, phone, name = unique_email("Mixed.Case"), unique_phone(), unique_username()
        spec = {"email": email, "phone_number": phone, "username": name,
                "name": {"first_name": "Ada", "last_name": "Lovelace"},
                "custom_data": {"tier": "gold", "n": 3, "nested": {"a": [1, 2]}},
                "external_account_id": "ext-42"}
        u = self.create(**spec)
        self.assertEqual(u["email"], {"value": email.lower(), "email_verified": False,
                                      "verified_at": None})
        self.assertEqual(u["phone_number"], {"value": phone, "phone_number_verified": False,
                                             "verified_at": None})
        self.assertEqual(u["username"], name)
        self.assertEqual(u["status"], "Active")
        self.assertEqual(u["name"], {"first_name": "Ada", "last_name": "Lovelace"})
        self.assertEqual(u["custom_data"], spec["custom_data"])
        self.assertEqual(u["external_account_id"], "ext-42")
        self.assertIsNone(u["last_auth"])
        self.assertEqual(u["roles"], [])
        self.assertEqual(u["created_at"], u["updated_at"])
        # It is stored as answered.
        self.assertEqual(self.assertFound(self.get(u["user_id"])), u)

    def test_create_minimal(self):
        u = self.create(email=unique_email())
        self.assertIsNone(u["phone_number"])
        self.assertIsNone(u["username"])
        self.assertEqual(u["name"], {})
        self.assertEqual(u["custom_data"], {})
        u2 = self.create(email=None, phone_number=unique_phone())
        self.assertIsNone(u2["email"])
        self.assertNotEqual(u["user_id"], u2["user_id"])

    def test_duplicates_409(self):
        email, phone, name = unique_email(), unique_phone(), unique_username()
        self.create(email=email, phone_number=phone, username=name)
        for spec in ({"email": email}, {"email": email.upper()},
                     {"email": unique_email(), "phone_number": phone},
                     {"email": unique_email(), "username": name}):
            with self.subTest(spec=spec):
                self.assertUsersError(self.api("POST", "/users", json=spec), 409)

    def test_conflict_leaves_nothing_behind(self):
        """A create refused for one taken identifier claims none of the others."""
        taken = unique_username()
        self.create(username=taken)
        fresh_email, fresh_phone = unique_email(), unique_phone()
        r = self.api("POST", "/users", json={"email": fresh_email, "phone_number": fresh_phone,
                                             "username": taken})
        self.assertUsersError(r, 409)
        self.assertNotFound(self.api("GET", "/users/email/" + q(fresh_email)))
        self.assertNotFound(self.api("GET", "/users/phone-number/" + q(fresh_phone)))
        u = self.create(email=fresh_email, phone_number=fresh_phone)
        self.assertEqual(u["email"]["value"], fresh_email)

    def test_invalid_input_400(self):
        for spec in ({"email": unique_email(), "phone_number": "123"},
                     {"email": unique_email(), "phone_number": "15005550006"},
                     {"email": unique_email(), "phone_number": "+0123456789"},
                     {"email": unique_email(), "phone_number": "+1 500 555 0006"},
                     {"email": "not-an-address"},
                     {"email": ""},
                     {"email": 42},
                     {"username": unique_username()},
                     {},
                     {"email": unique_email(), "name": "Ada"},
                     {"email": unique_email(), "custom_data": [1]},
                     {"email": unique_email(), "external_account_id": 7},
                     {"email": unique_email(), "username": "has space"}):
            with self.subTest(spec=spec):
                self.assertUsersError(self.api("POST", "/users", json=spec), 400)

    def test_malformed_bodies(self):
        r = stack.http("POST", "/cis/v1/users", body='{"email": "a@b.example", "email": "c"}',
                       headers={"Content-Type": "application/json"}, token=self.admin["token"])
        self.assertUsersError(r, 400)
        r = stack.http("POST", "/cis/v1/users", body="{", token=self.admin["token"],
                       headers={"Content-Type": "application/json"})
        self.assertUsersError(r, 400)
        r = stack.http("POST", "/cis/v1/users", form={"email": unique_email()},
                       token=self.admin["token"])
        self.assertEqual(r.status, 415, r)

    def test_created_user_logs_in(self):
        u = self.create(custom_data={"plan": "pro"}, username=unique_username())
        claims = {"id_token": {"email": None, "username": None, "custom_data": None}}
        tokens = self.login(u, claims=claims)
        _, idc = stack.verify_jwt(tokens["id_token"], "JWT", self.admin["client_id"])
        self.assertEqual(idc["sub"], u["user_id"])
        self.assertEqual(idc["email"], u["email"]["value"])
        self.assertEqual(idc["username"], u["username"])
        self.assertEqual(idc["custom_data"], {"plan": "pro"})
        after = self.assertFound(self.get(u["user_id"]))
        self.assertRegex(after["last_auth"], RFC3339)
        # A direct passcode proves no mailbox.
        self.assertIs(after["email"]["email_verified"], False)

    def test_email_login_marks_verified(self):
        u = self.create()
        addr = u["email"]["value"]
        code = stack.send_and_read_code(self.admin["token"], addr)
        self.assertTokenResponse(stack.otp_authenticate(self.admin["token"], addr, code))
        after = self.assertFound(self.get(u["user_id"]))
        self.assertIs(after["email"]["email_verified"], True)
        self.assertRegex(after["email"]["verified_at"], RFC3339)
        self.assertRegex(after["last_auth"], RFC3339)
        self.assertGreaterEqual(after["updated_at"], u["updated_at"])


# ---- get and find ---------------------------------------------------------------------------

class Find(UsersCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.phone = unique_phone()
        cls.username = unique_username("Find")
        r = stack.http("POST", "/cis/v1/users",
                       json={"email": unique_email("find"), "phone_number": cls.phone,
                             "username": cls.username}, token=cls.admin["token"])
        cls.user = r.json["result"]

    def test_by_id(self):
        for i in range(EVERY_WORKER // 2):
            self.assertEqual(self.assertFound(self.get(self.user["user_id"])), self.user)

    def test_by_email(self):
        addr = self.user["email"]["value"]
        for a in (addr, addr.upper()):
            with self.subTest(email=a):
                r = self.api("GET", "/users/email/" + q(a))
                self.assertEqual(self.assertFound(r, self.user["user_id"]), self.user)

    def test_by_username(self):
        r = self.api("GET", "/users/username/" + q(self.username))
        self.assertEqual(self.assertFound(r), self.user)
        # Usernames are exact.
        self.assertNotFound(self.api("GET", "/users/username/" + q(self.username.lower())))

    def test_by_phone(self):
        for path in ("/users/phone-number/" + q(self.phone),       # %2B...
                     "/users/phone-number/" + self.phone):          # a literal '+'
            with self.subTest(path=path):
                self.assertEqual(self.assertFound(self.api("GET", path)), self.user)

    def test_unknown_404(self):
        for path in ("/users/0123456789abcdef0123456789abcdef", "/users/nope",
                     "/users/email/" + q(unique_email("ghost")),
                     "/users/email/not-an-address",
                     "/users/username/" + q(unique_username("ghost")),
                     "/users/phone-number/%2B15005550000" if self.phone != "+15005550000"
                     else "/users/phone-number/%2B15005559999",
                     "/users/phone-number/12345"):
            with self.subTest(path=path):
                self.assertNotFound(self.api("GET", path))

    def test_methods(self):
        r = self.api("DELETE", "/users/" + q(self.user["user_id"]))
        self.assertEqual(r.status, 405)
        self.assertEqual({m.strip() for m in r.headers["Allow"].split(",")},
                         {"GET", "HEAD", "PUT"})
        r = self.api("PATCH", "/users")
        self.assertEqual(r.status, 405)


# ---- list ------------------------------------------------------------------------------------

class List(UsersCase):
    def walk(self, page_size):
        """Every page of GET /v1/users?page_size=N; (ids in order, first page's total)."""
        ids, cursor, total, pages = [], None, None, 0
        while True:
            path = "/users?page_size=%d" % page_size
            if cursor is not None:
                path += "&cursor=" + q(cursor)
            body = self.assertJSON(self.api("GET", path), 200)
            self.assertEqual(set(body), {"total_count", "page_info", "result"})
            info = body["page_info"]
            self.assertIs(info["has_previous_page"], cursor is not None)
            if total is None:
                total = body["total_count"]
            self.assertEqual(body["total_count"], total, "total_count changed mid-walk")
            self.assertLessEqual(len(body["result"]), page_size)
            for u in body["result"]:
                self.checkUser(u)
            ids += [u["user_id"] for u in body["result"]]
            pages += 1
            self.assertLessEqual(pages, total + 2, "paging does not end")
            if not info["has_next_page"]:
                break
            self.assertEqual(len(body["result"]), page_size)
            self.assertEqual(info["end_cursor"], body["result"][-1]["user_id"])
            cursor = info["end_cursor"]
        return ids, total

    def test_paging(self):
        mine = {self.create()["user_id"] for _ in range(5)}
        everyone, total = self.walk(500)
        self.assertEqual(len(everyone), total)
        self.assertEqual(len(set(everyone)), total)
        self.assertLessEqual(mine, set(everyone))
        for size in (1, 2, 3, total, total + 1):
            with self.subTest(page_size=size):
                ids, t = self.walk(size)
                self.assertEqual(t, total)
                self.assertEqual(ids, everyone, "pages do not add up to the whole list")

    def test_page_size_2_with_cursor(self):
        for _ in range(3):
            self.create()
        body = self.assertJSON(self.api("GET", "/users?page_size=2"), 200)
        self.assertEqual(len(body["result"]), 2)
        self.assertIs(body["page_info"]["has_next_page"], True)
        self.assertIs(body["page_info"]["has_previous_page"], False)
        cursor = body["page_info"]["end_cursor"]
        nxt = self.assertJSON(self.api("GET", "/users?page_size=2&cursor=" + q(cursor)), 200)
        self.assertTrue(nxt["result"])
        self.assertFalse({u["user_id"] for u in body["result"]} &
                         {u["user_id"] for u in nxt["result"]})
        self.assertIs(nxt["page_info"]["has_previous_page"], True)
        self.assertEqual(nxt["total_count"], body["total_count"])

    def test_default_page(self):
        self.create()
        body = self.assertJSON(self.api("GET", "/users"), 200)
        self.assertGreaterEqual(body["total_count"], 1)
        self.assertEqual(len(body["result"]), min(50, body["total_count"]))

    def test_bad_page_size(self):
        for v in ("0", "-1", "501", "abc", "", "2x", "1.5"):
            with self.subTest(page_size=v):
                self.assertUsersError(self.api("GET", "/users?page_size=" + v), 400)


# ---- update ----------------------------------------------------------------------------------

class Update(UsersCase):
    def test_disable(self):
        u = self.create()
        tokens = self.login(u)
        r = self.put(u["user_id"], {"status": "Disabled"})
        d = self.assertFound(r, u["user_id"])
        self.assertEqual(d["status"], "Disabled")
        self.assertGreaterEqual(d["status_changed_at"], u["status_changed_at"])
        self.assertGreaterEqual(d["updated_at"], u["updated_at"])
        self.assertEqual(self.assertFound(self.get(u["user_id"])), d)
        addr = u["email"]["value"]
        # A disabled user cannot log in, on any worker, by any channel.
        for i in range(EVERY_WORKER // 2):
            self.assertError(stack.otp_send(self.admin["token"], addr, channel="direct"), 403,
                             "user_not_active")
            self.assertError(stack.otp_send(self.admin["token"], addr), 403, "user_not_active")
        self.assertEqual(stack.mailbox.pending(addr), [])
        # Disabling ends their sessions: tokens stop refreshing, silent sign-in finds no
        # session, and re-enabling later does not revive them.
        for i in range(EVERY_WORKER // 2):
            self.assertError(self.refresh(tokens["refresh_token"]), 400, 400)
            r = stack.http("POST", "/cis/v1/auth/session/authenticate",
                           json={"session_id": tokens["session_id"]}, token=self.admin["token"])
            self.assertError(r, 400, "400")
        # A passcode sent before the user was disabled is refused after.
        self.assertFound(self.put(u["user_id"], {"status": "Active"}))
        code = stack.direct_code(self.admin["token"], addr)
        d = self.assertFound(self.put(u["user_id"], {"status": "Disabled"}))
        self.assertError(stack.otp_authenticate(self.admin["token"], addr, code), 403,
                         "user_not_active")
        # Unchanged status: status_changed_at stays.
        again = self.assertFound(self.put(u["user_id"], {"status": "Disabled"}))
        self.assertEqual(again["status_changed_at"], d["status_changed_at"])
        # Enabled again: logins work.
        e = self.assertFound(self.put(u["user_id"], {"status": "Active"}))
        self.assertEqual(e["status"], "Active")
        self.assertError(self.refresh(tokens["refresh_token"]), 400, 400)
        self.assertGreaterEqual(e["status_changed_at"], d["status_changed_at"])
        t2 = self.login(u)
        _, idc = stack.verify_jwt(t2["id_token"], "JWT", self.admin["client_id"])
        self.assertEqual(idc["sub"], u["user_id"])

    def test_disable_blocks_link_login(self):
        u = self.create()
        self.assertFound(self.put(u["user_id"], {"status": "Disabled"}))
        client = stack.new_client(permissions=["direct"], redirect_uris=["https://x.example/cb"])
        r = stack.http("POST", "/cis/v1/auth/link/email/send",
                       json={"email": u["email"]["value"], "redirect_uri": "https://x.example/cb",
                             "channel": "direct"}, token=client["token"])
        self.assertError(r, 403, "403")

    def test_only_sent_fields_change(self):
        phone, name = unique_phone(), unique_username()
        u = self.create(phone_number=phone, username=name, name={"first_name": "Bo"},
                        custom_data={"a": 1}, external_account_id="x-1")
        r = self.put(u["user_id"], {"name": {"first_name": "Bea", "last_name": "Z"}})
        v = self.assertFound(r)
        self.assertEqual(v["name"], {"first_name": "Bea", "last_name": "Z"})
        for k in USER_KEYS - {"name", "updated_at"}:
            self.assertEqual(v[k], u[k], k)
        r = self.put(u["user_id"], {"custom_data": {"b": 2}})
        w = self.assertFound(r)
        self.assertEqual(w["custom_data"], {"b": 2})
        self.assertEqual(w["name"], v["name"])
        for k in USER_KEYS - {"custom_data", "updated_at"}:
            self.assertEqual(w[k], v[k], k)
        # Members that are not patchable are ignored, not applied.
        r = self.put(u["user_id"], {"user_id": "other", "created_at": 1, "org_ids": ["o"]})
        x = self.assertFound(r, u["user_id"])
        self.assertEqual(x["created_at"], u["created_at"])
        self.assertEqual(x["org_ids"], [])
        self.assertFound(self.get(u["user_id"]), u["user_id"])
        # An empty patch is fine.
        self.assertFound(self.put(u["user_id"], {}), u["user_id"])

    def test_change_email_reindexes(self):
        u = self.create(username=unique_username())
        old, new = u["email"]["value"], unique_email("new")
        v = self.assertFound(self.put(u["user_id"], {"email": new.upper()}))
        self.assertEqual(v["email"], {"value": new, "email_verified": False,
                                      "verified_at": None})
        self.assertNotFound(self.api("GET", "/users/email/" + q(old)))
        self.assertEqual(self.assertFound(self.api("GET", "/users/email/" + q(new)))["user_id"],
                         u["user_id"])
        self.assertEqual(v["username"], u["username"])
        # The old address is free again; the new one is taken.
        self.create(email=old)
        self.assertUsersError(self.api("POST", "/users", json={"email": new}), 409)
        # Logins by the new address are the same user.
        t = self.login(v)
        _, idc = stack.verify_jwt(t["id_token"], "JWT", self.admin["client_id"])
        self.assertEqual(idc["sub"], u["user_id"])

    def test_change_phone_and_username(self):
        p1, p2, n1, n2 = unique_phone(), unique_phone(), unique_username(), unique_username()
        while p2 == p1:
            p2 = unique_phone()
        u = self.create(phone_number=p1, username=n1)
        v = self.assertFound(self.put(u["user_id"], {"phone_number": p2, "username": n2}))
        self.assertEqual(v["phone_number"]["value"], p2)
        self.assertEqual(v["username"], n2)
        self.assertNotFound(self.api("GET", "/users/phone-number/" + q(p1)))
        self.assertNotFound(self.api("GET", "/users/username/" + q(n1)))
        self.assertFound(self.api("GET", "/users/phone-number/" + q(p2)), u["user_id"])
        self.assertFound(self.api("GET", "/users/username/" + q(n2)), u["user_id"])
        # null removes an identifier (and its index entry).
        w = self.assertFound(self.put(u["user_id"], {"username": None, "phone_number": None}))
        self.assertIsNone(w["username"])
        self.assertIsNone(w["phone_number"])
        self.assertNotFound(self.api("GET", "/users/username/" + q(n2)))
        self.assertNotFound(self.api("GET", "/users/phone-number/" + q(p2)))

    def test_conflicting_change_changes_nothing(self):
        a, b = self.create(username=unique_username()), self.create()
        r = self.put(b["user_id"], {"email": a["email"]["value"], "name": {"first_name": "X"}})
        self.assertUsersError(r, 409)
        self.assertEqual(self.assertFound(self.get(b["user_id"])), b)
        r = self.put(b["user_id"], {"username": a["username"]})
        self.assertUsersError(r, 409)
        self.assertEqual(self.assertFound(self.get(b["user_id"])), b)
        # a's indexes were not touched.
        self.assertFound(self.api("GET", "/users/email/" + q(a["email"]["value"])), a["user_id"])
        self.assertFound(self.api("GET", "/users/username/" + q(a["username"])), a["user_id"])
        # b's own email still finds b.
        self.assertFound(self.api("GET", "/users/email/" + q(b["email"]["value"])), b["user_id"])

    def test_invalid_updates_400(self):
        u = self.create()
        for patch in ({"status": "disabled"}, {"status": "Deleted"}, {"status": 1},
                      {"email": "nope"}, {"phone_number": "555"}, {"name": "x"},
                      {"custom_data": "x"}, {"roles": "admin"}, {"roles": [1]},
                      {"email": None}):  # the user would have neither email nor phone
            with self.subTest(patch=patch):
                self.assertUsersError(self.put(u["user_id"], patch), 400)
        self.assertEqual(self.assertFound(self.get(u["user_id"])), u)

    def test_unknown_user_404(self):
        self.assertNotFound(self.put("0123456789abcdef0123456789abcdef", {"status": "Disabled"}))

    # Server bug (reported): src/user.c patch_identifier resets the verified flag whenever the
    # member is sent, even with the value the user already has; a backend that saves a
    # profile form with the unchanged address silently un-verifies it. Remove the decorator
    # once fixed.
    def test_unchanged_email_stays_verified(self):
        u = self.create()
        addr = u["email"]["value"]
        code = stack.send_and_read_code(self.admin["token"], addr)
        self.assertTokenResponse(stack.otp_authenticate(self.admin["token"], addr, code))
        v = self.assertFound(self.put(u["user_id"], {"email": addr, "name": {"first_name": "Q"}}))
        self.assertIs(v["email"]["email_verified"], True)


# ---- delete ----------------------------------------------------------------------------------

class Delete(UsersCase):
    def test_delete(self):
        phone, name = unique_phone(), unique_username()
        u = self.create(phone_number=phone, username=name)
        t1 = self.login(u)
        t2 = self.login(u)
        r = self.api("DELETE", "/manage/users/" + q(u["user_id"]))
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        for i in range(EVERY_WORKER):
            self.assertNotFound(self.get(u["user_id"]))
        self.assertNotFound(self.api("GET", "/users/email/" + q(u["email"]["value"])))
        self.assertNotFound(self.api("GET", "/users/phone-number/" + q(phone)))
        self.assertNotFound(self.api("GET", "/users/username/" + q(name)))
        # Sessions and refresh tokens ended with the user, on every worker.
        for i in range(EVERY_WORKER):
            for t in (t1, t2):
                self.assertError(self.refresh(t["refresh_token"]), 400, 400)
                r = stack.token_request(self.admin["client_id"], self.admin["client_secret"],
                                        grant_type="refresh_token",
                                        refresh_token=t["refresh_token"])
                self.assertOAuthError(r, 400, "invalid_grant")
        r = stack.http("POST", "/cis/v1/auth/session/authenticate",
                       json={"session_id": t1["session_id"]}, token=self.admin["token"])
        self.assertError(r, 400, "400")
        r = stack.http("GET", "/cis/v1/auth/users/%s/sessions" % q(u["user_id"]),
                       token=self.admin["token"])
        self.assertEqual(self.assertJSON(r, 200), [])
        # Gone from the list.
        body = self.assertJSON(self.api("GET", "/users?page_size=500"), 200)
        self.assertNotIn(u["user_id"], [x["user_id"] for x in body["result"]])
        # Deleting again: 404.
        self.assertNotFound(self.api("DELETE", "/manage/users/" + q(u["user_id"])))

    def test_identifiers_free_after_delete(self):
        email, phone, name = unique_email(), unique_phone(), unique_username()
        u = self.create(email=email, phone_number=phone, username=name)
        t = self.login(u)
        self.assertEqual(self.api("DELETE", "/manage/users/" + q(u["user_id"])).status, 204)
        v = self.create(email=email, phone_number=phone, username=name)
        self.assertNotEqual(v["user_id"], u["user_id"])
        self.assertFound(self.api("GET", "/users/email/" + q(email)), v["user_id"])
        # The old user's refresh token does not come back to life for the new one.
        self.assertError(self.refresh(t["refresh_token"]), 400, 400)

    def test_delete_unknown(self):
        self.assertNotFound(self.api("DELETE", "/manage/users/0123456789abcdef0123456789abcdef"))

    def test_delete_leaves_others(self):
        a, b = self.create(), self.create()
        tb = self.login(b)
        self.assertEqual(self.api("DELETE", "/manage/users/" + q(a["user_id"])).status, 204)
        self.assertFound(self.get(b["user_id"]), b["user_id"])
        self.assertJSON(self.refresh(tb["refresh_token"]), 200)
