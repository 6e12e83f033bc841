#!/usr/bin/python3
"""Write N users as Transmit's user export gives them (JSON Lines: one users-API User object a
line) or as CSV, for `otloginctl user import` (bench/run's import measurement, tests/e2e/
test_import.py). Deterministic: the same arguments write the same file.

    bench/gen_users.py N [--csv] [--tag TAG] [--phone-prefix NNN] > FILE

Every third user has a phone number, +1 NNN (default 555) and seven digits of its index: give
files that go into one database different tags and prefixes.
"""

import argparse
import json
import sys


def users(n, tag, prefix):
    for i in range(n):
        u = {
            "user_id": "%s-%08d" % (tag, i),
            "email": {"value": "%s-%d@example.org" % (tag, i), "email_verified": i % 2 == 0,
                      "verified_at": None},
            "phone_number": None,
            "username": "%s-u%d" % (tag, i),
            "status": "Active",
            "name": {"first_name": "First%d" % i, "last_name": "Last"},
            "custom_data": {"plan": "basic", "n": i},
            "external_account_id": "ext-%s-%d" % (tag, i),
            "roles": ["member"],
            "org_ids": [],
            "created_at": 1700000000000 + i,
            "updated_at": 1700000000000 + i,
        }
        if i % 3 == 0:
            # +1 500 555 xxxx style test numbers, unique per user.
            u["phone_number"] = {"value": "+1%s%07d" % (prefix, i), "phone_number_verified": False,
                                 "verified_at": None}
        yield u


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--csv", action="store_true")
    ap.add_argument("--tag", default="imp")
    ap.add_argument("--phone-prefix", default="555")
    a = ap.parse_args()
    out = sys.stdout
    if a.csv:
        out.write("user_id,email,email_verified,phone_number,username,name.first_name,"
                  "name.last_name,external_account_id,roles,created_at\n")
        for u in users(a.n, a.tag, a.phone_prefix):
            phone = u["phone_number"]["value"] if u["phone_number"] else ""
            out.write("%s,%s,%s,%s,%s,%s,%s,%s,%s,%d\n" % (
                u["user_id"], u["email"]["value"], str(u["email"]["email_verified"]).lower(),
                phone, u["username"], u["name"]["first_name"], u["name"]["last_name"],
                u["external_account_id"], ";".join(u["roles"]), u["created_at"]))
    else:
        for u in users(a.n, a.tag, a.phone_prefix):
            out.write(json.dumps(u, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
