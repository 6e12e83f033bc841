"""The load balancer configurations otlogin ships for a replication group, each in front of a
real group (tests/e2e/hagroup.py: three sites on loopback, each lighttpd with its workers and a
replication process): Apache with etc/apache2/otlogin-ha.conf (mod_proxy_balancer and
mod_proxy_hcheck) and HAProxy with etc/haproxy/otlogin.cfg (its addresses replaced by the
group's), each on a free loopback port. Both must send every request to the master only (the
one site whose /cis/health answers 200), carry a whole login, move to the new master after a
kill -9 of every process of the old one, and keep away from the old master once it is back
as a client.

Which site served a request is read from the sites' access logs: each probe carries a query
string of its own. A missing apache2, mod_proxy_hcheck or haproxy fails this module."""

import email
import email.policy
import os
import re
import subprocess
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import hagroup
import harness
from harness import E2ETestCase, HarnessError

HAPROXY_CFG = os.path.join(harness.TOP_SRCDIR, "etc", "haproxy", "otlogin.cfg")
APACHE_HA = os.path.join(harness.TOP_SRCDIR, "etc", "apache2", "otlogin-ha.conf")
APACHE_MODULES = ("mpm_event", "authz_core", "proxy", "proxy_http", "proxy_balancer",
                  "slotmem_shm", "lbmethod_byrequests", "watchdog", "proxy_hcheck")
SERVICE_USER = "www-data"

# Bounds of the waits below (seconds), not expectations: HAProxy checks every 0.5 s, Apache
# every 2 s (its minimum), an election takes about a second.
ROUTE_TIMEOUT = 60


def _builtin_apache_modules():
    r = subprocess.run([harness.APACHE2, "-l"], capture_output=True, text=True, timeout=30)
    return {m[:-2] for m in r.stdout.split() if m.endswith(".c")}


class Balancer:
    """A load balancer process on a free loopback port in front of the group's sites."""

    name = None

    def __init__(self, group, name=None):
        """group: what it balances (.sites, each with .n and .port; .path()); name: its
        directory under the group's (default: its kind)."""
        self.group = group
        self.name = name or self.name
        self.dir = group.path(self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = harness.free_port()
        self.front = hagroup.Front(self.port)
        self.proc = None
        self.out = os.path.join(self.dir, "out.log")

    def check_argv(self):
        raise NotImplementedError

    def argv(self):
        raise NotImplementedError

    def start(self):
        self.write_conf()
        r = subprocess.run(self.check_argv(), capture_output=True, text=True,
                           timeout=harness.CTL_TIMEOUT)
        if r.returncode != 0:
            raise HarnessError("%s: %s%s" % (" ".join(self.check_argv()), r.stdout, r.stderr))
        with open(self.out, "ab") as f:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT)
        # The runner shows its log_tail under a failure and stops it if it gives up.
        harness.RUNNING.append(self)
        return self

    def stop(self):
        if self in harness.RUNNING:
            harness.RUNNING.remove(self)
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n=20):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
                out.append("-- %s/%s --" % (self.name, name))
                out += lines
        return "\n".join(out)


class HAProxy(Balancer):
    """etc/haproxy/otlogin.cfg as shipped, its bind line and its three example servers
    replaced by a free port and the group's sites (each replacement must match once)."""

    name = "haproxy"

    def write_conf(self):
        with open(HAPROXY_CFG) as f:
            text = f.read()
        text, n = re.subn(r"(?m)^(\s*bind) :80$", r"\1 127.0.0.1:%d" % self.port, text)
        if n != 1:
            raise HarnessError("%s: no single 'bind :80' line to replace" % HAPROXY_CFG)
        for s in self.group.sites:
            text, n = re.subn(r"(?m)^(\s*server site%d) 192\.0\.2\.%d:80$" % (s.n, s.n),
                              r"\g<1> 127.0.0.1:%d" % s.port, text)
            if n != 1:
                raise HarnessError("%s: no single 'server site%d' line" % (HAPROXY_CFG, s.n))
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        with open(self.conf, "w") as f:
            f.write(text)

    def check_argv(self):
        # -dW: a warning fails the check too.
        return [hagroup.HAPROXY, "-dW", "-c", "-f", self.conf]

    def argv(self):
        return [hagroup.HAPROXY, "-db", "-f", self.conf]


class Apache(Balancer):
    """Apache (event MPM) whose virtual host defines the three sites and includes
    etc/apache2/otlogin-ha.conf, as its header says."""

    name = "apache2"

    def write_conf(self):
        q = lambda v: '"%s"' % v
        builtin = _builtin_apache_modules()
        conf = ["# written by tests/e2e/test_ha_balancers.py", "ServerRoot %s" % q(self.dir)]
        for m in APACHE_MODULES:
            if "mod_%s" % m not in builtin:
                conf.append("LoadModule %s_module %s" % (
                    m, q(os.path.join(harness.APACHE_MODULES, "mod_%s.so" % m))))
        if os.geteuid() == 0:
            conf += ["User %s" % SERVICE_USER, "Group %s" % SERVICE_USER]
        conf += [
            "Listen 127.0.0.1:%d" % self.port,
            "ServerName 127.0.0.1",
            "PidFile %s" % q(os.path.join(self.dir, "apache2.pid")),
            "ErrorLog %s" % q(os.path.join(self.dir, "error.log")),
            # info: mod_proxy_hcheck's "Health check ENABLING/DISABLING" lines
            "LogLevel info",
            "DefaultRuntimeDir %s" % q(self.dir),
            "<Directory />", "  Require all denied", "</Directory>",
        ]
        conf += ["Define OTLOGIN_SITE%d http://127.0.0.1:%d" % (s.n, s.port)
                 for s in self.group.sites]
        conf += ["<VirtualHost 127.0.0.1:%d>" % self.port,
                 "  Include %s" % q(APACHE_HA),
                 "</VirtualHost>", ""]
        self.conf = os.path.join(self.dir, "apache2.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf))

    def check_argv(self):
        return [harness.APACHE2, "-t", "-f", self.conf]

    def argv(self):
        return [harness.APACHE2, "-DFOREGROUND", "-f", self.conf]


def missing_tools():
    why = hagroup.missing_tools()
    if not os.access(harness.APACHE2, os.X_OK):
        why.append("apache2 not installed")
    elif not os.path.exists(os.path.join(harness.APACHE_MODULES, "mod_proxy_hcheck.so")):
        why.append("mod_proxy_hcheck not installed (apache2)")
    return why


class Balancers(E2ETestCase):
    """One group and both balancers for the module; the tests run in their names' order (the
    failover comes last)."""

    @classmethod
    def setUpClass(cls):
        why = missing_tools()
        if why:
            raise HarnessError("; ".join(why))
        cls.group = hagroup.Group(workers=2).start()
        cls.balancers = []
        try:
            for kind in (Apache, HAProxy):
                cls.balancers.append(kind(cls.group).start())
            for b in cls.balancers:
                cls.wait_settled(b, cls.group.master())
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for b in getattr(cls, "balancers", []):
            b.stop()
        cls.group.stop()

    # ---- probes ----------------------------------------------------------------------------

    @classmethod
    def served_by(cls, markers, timeout=20):
        """{marker: the site whose access log holds it} for each marker; a marker in no log
        once the wait is over maps to None. lighttpd writes its access log every few
        seconds: one bounded wait for the whole batch."""
        deadline = time.monotonic() + timeout
        while True:
            found = {}
            for s in cls.group.sites:
                try:
                    with open(s.path("access.log"), "rb") as f:
                        text = f.read()
                except OSError:
                    continue
                for m in markers:
                    if m.encode() in text:
                        if m in found:
                            raise AssertionError("probe %s in the logs of sites %d and %d"
                                                 % (m, found[m], s.n))
                        found[m] = s.n
            if len(found) == len(markers) or time.monotonic() >= deadline:
                return {m: found.get(m) for m in markers}
            time.sleep(0.2)

    @classmethod
    def probe(cls, balancer):
        """GET /cis/health?probe=UNIQUE through the balancer: (status, JSON body or None,
        marker); status None when the connection failed."""
        marker = uuid.uuid4().hex
        try:
            r = balancer.front.http("GET", "/cis/health?probe=" + marker, timeout=10)
        except OSError as e:
            return None, str(e), marker
        try:
            body = r.json
        except ValueError:
            body = None
        return r.status, body, marker

    @classmethod
    def first_200(cls, balancer, since):
        """Probe through the balancer until one answers 200: (seconds from `since` to that
        answer, its body, its marker)."""
        last = None
        while time.monotonic() - since < ROUTE_TIMEOUT:
            status, body, marker = cls.probe(balancer)
            if status == 200:
                return time.monotonic() - since, body, marker
            last = (status, body)
            time.sleep(0.05)
        raise AssertionError("%s: no 200 within %ss (last %r)\n%s"
                             % (balancer.name, ROUTE_TIMEOUT, last, balancer.log_tail()))

    @classmethod
    def wait_settled(cls, balancer, site, run=6):
        """Wait until `run` probes in a row through the balancer answer 200 (twice round the
        three sites: a site still in the balancer's rotation would have answered one of
        them), each from `site`; the 503s on the way are the other sites' answers. A
        balancer that has just started may not have checked every site yet, and one may
        not have checked again a site that came back."""
        deadline = time.monotonic() + ROUTE_TIMEOUT
        markers = []
        while len(markers) < run:
            status, body, marker = cls.probe(balancer)
            if status == 200:
                markers.append(marker)
            else:
                markers = []
                if time.monotonic() >= deadline:
                    raise AssertionError("%s: not settled within %ss (last %r %r)\n%s"
                                         % (balancer.name, ROUTE_TIMEOUT, status, body,
                                            balancer.log_tail()))
                time.sleep(0.1)
        by = cls.served_by(markers)
        if set(by.values()) != {site}:
            raise AssertionError("%s: 200s from sites %r while site %r is master"
                                 % (balancer.name, by, site))

    def assertRoutedOnlyTo(self, site, probes=12):
        """Every one of `probes` probes through each balancer is a master's 200, and every
        one was served by `site`."""
        markers = []
        for b in self.balancers:
            for _ in range(probes):
                status, body, marker = self.probe(b)
                self.assertEqual(status, 200, "%s: %r" % (b.name, body))
                self.assertEqual(body.get("role"), "master", body)
                markers.append((b.name, marker))
        by = self.served_by([m for _, m in markers])
        self.assertEqual({(name, by[m]) for name, m in markers},
                         {(b.name, site) for b in self.balancers})

    def read_code(self, site, to, before, timeout=15):
        """The passcode of the first mail to `to` in the site's Maildir that is not among
        `before` (file names)."""
        new = site.path("mail", "new")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in sorted(set(os.listdir(new)) - before):
                with open(os.path.join(new, name), "rb") as f:
                    msg = email.message_from_binary_file(f, policy=email.policy.default)
                if to in str(msg["To"]):
                    text = msg.get_body(preferencelist=("plain",)).get_content()
                    return harness.extract_code(text, site.otp_length)
            time.sleep(0.1)
        raise AssertionError("no mail to %s in %s" % (to, new))

    def login_through(self, b, client, attempts=4):
        """A whole email passcode login through balancer b: the token at {host}/oidc/token,
        the send, the code from the master's Maildir, the authenticate. A 503 (a commit the
        group's quorum did not acknowledge in time: outcome unknown) is retried as a client
        would, with a new code, up to `attempts` logins; each retry is noted. Only the master
        answers 200, so the 200s prove the routing."""
        m = self.group.master()
        site = self.group.site(m)
        addr = harness.unique_email("ha-" + b.name)
        site.ctl("user", "add", "--email", addr)
        for attempt in range(1, attempts + 1):
            token = b.front.client_token(client["client_id"], client["client_secret"])
            before = set(os.listdir(site.path("mail", "new")))
            r = b.front.otp_send(token, addr)
            if r.status == 503 and attempt < attempts:
                harness.note("%s: send answered 503, login tried again" % b.name)
                continue
            self.assertJSON(r, 200)
            code = self.read_code(site, addr, before)
            r = b.front.otp_authenticate(token, addr, code)
            if r.status == 503 and attempt < attempts:
                harness.note("%s: authenticate answered 503, login tried again" % b.name)
                continue
            body = self.assertJSON(r, 200)
            break
        self.assertTrue(body.get("id_token") and body.get("access_token"), body)
        _, claims = harness.jwt_parts(body["id_token"])
        self.assertEqual(claims["iss"], self.group.public_base_url)
        # The code is spent, on the master, whichever way the second try comes.
        self.assertError(b.front.otp_authenticate(token, addr, code), 400,
                         "auth_invalid_credentials")

    # ---- tests -----------------------------------------------------------------------------

    def test_1_shipped_haproxy_cfg_checks_clean(self):
        """haproxy -c accepts the shipped file as it is, without a warning (-dW)."""
        r = subprocess.run([hagroup.HAPROXY, "-dW", "-c", "-f", HAPROXY_CFG],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_1_haproxy_without_a_site_answers_json(self):
        """With no site up (an election under way), HAProxy's own 503 carries otlogin's JSON
        error body: the shipped file in front of three ports nothing listens on."""
        closed = types.SimpleNamespace(sites=[types.SimpleNamespace(n=n, port=harness.free_port())
                                              for n in (1, 2, 3)],
                                       path=self.group.path)
        b = HAProxy(closed, name="haproxy-nosite").start()
        try:
            deadline = time.monotonic() + ROUTE_TIMEOUT
            while True:
                status, body, _ = self.probe(b)
                if status is not None or time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(status, 503, body)
            self.assertEqual(body, {"message": "Service temporarily unavailable",
                                    "error_code": 503})
        finally:
            b.stop()

    def test_2_only_the_master_gets_requests(self):
        m = self.group.master()
        self.assertIsNotNone(m)
        # The others answer their own health check with 503: the balancers choose.
        for s in self.group.sites:
            if s.n != m:
                status, body = s.health()
                self.assertEqual(status, 503, body)
        self.assertRoutedOnlyTo(m)

    def test_3_a_login_through_each_balancer(self):
        client = self.group.new_client(permissions=["direct"])
        for b in self.balancers:
            with self.subTest(balancer=b.name):
                self.login_through(b, client)
        type(self).client = client

    def test_4_failover_moves_both_and_the_old_master_stays_out(self):
        old = self.group.master()
        self.assertIsNotNone(old)
        t0 = time.monotonic()
        self.group.kill_site(old)
        # Both balancers probed from the kill on, side by side, until each answers 200.
        with ThreadPoolExecutor(len(self.balancers)) as pool:
            firsts = [pool.submit(self.first_200, b, t0) for b in self.balancers]
            new = self.group.wait_for_master(60, exclude=(old,))
            elected = time.monotonic() - t0
            firsts = [f.result() for f in firsts]
        by = self.served_by([marker for _, _, marker in firsts])
        for b, (took, body, marker) in zip(self.balancers, firsts):
            self.assertEqual(by[marker], new, "%s: the first 200 after the kill" % b.name)
            self.assertEqual(body.get("role"), "master", body)
        harness.note("kill -9 of site %d: site %d master after %.2f s (election seen through "
                     "its /cis/health); first 200 through %s" % (old, new, elected, ", ".join(
                         "%s after %.2f s" % (b.name, f[0])
                         for b, f in zip(self.balancers, firsts))))
        self.assertRoutedOnlyTo(new)
        # The old master comes back as a client, and no balancer sends it anything.
        self.group.restart_site(old)
        deadline = time.monotonic() + ROUTE_TIMEOUT
        while self.group.site(old).status().get("role") != "client":
            self.assertLess(time.monotonic(), deadline, "site %d not a client again" % old)
            time.sleep(0.2)
        status, body = self.group.site(old).health()
        self.assertEqual(status, 503, body)
        # Apache may send a site that comes back a few requests until its next check (it
        # answers them 503): each balancer settles, then stays on the master.
        for b in self.balancers:
            self.wait_settled(b, new)
        self.assertRoutedOnlyTo(new)
        # A login on the new master, with the client made on the old one.
        client = getattr(type(self), "client", None) or self.group.new_client(
            permissions=["direct"])
        for b in self.balancers:
            with self.subTest(balancer=b.name):
                self.login_through(b, client)
