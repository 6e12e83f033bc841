#!/usr/bin/python3
"""A three-site otlogin replication group on loopback, behind HAProxy (issue 14).

Each site is a directory of its own: otlogin.conf with a [replication] section, db/ (the
environment), mail/ (the Maildir: no SMTP relay), lighttpd.conf, logs and pid files. On each
site run `otloginctl replicate` (the replication process, started first), then lighttpd with
the otlogin.fcgi workers (etc/lighttpd/otlogin.conf, mounted at /cis as in the demo). HAProxy
in front sends every request to the one site whose GET /cis/health answers 200 (the master
with a quorum). Site 1 is set up with `otloginctl init` and creates the group (creator =
yes); sites 2 and 3 get a copy of its server.key and join empty (the master copies the
database to them).

As a module (tests/e2e/test_ha.py, bench/ha):

    group = Group(ports=free_ports()).start()     # a fresh temporary directory
    n = group.master()                            # 1..3: the site whose /health is 200
    client = group.new_client(permissions=["direct"])
    r = group.front.http("GET", "/cis/health")    # through HAProxy
    group.kill_site(n)                            # kill -9 every process of site n
    group.wait_for_master(30)
    group.restart_site(n)
    group.wait_for_equal_logs(60)
    group.stop()

As a program (./quickstart ha):

    python3 tests/e2e/hagroup.py start --dir run/ha --http-base 8091 --repl-base 5501 --proxy 8090
    python3 tests/e2e/hagroup.py status --dir run/ha
    python3 tests/e2e/hagroup.py stop --dir run/ha

`start` on a directory that holds a group already starts it again on its databases. The
processes run in sessions of their own and outlive the command; their pids are in each
site's *.pid files (and haproxy.pid), which `stop` reads (it checks a pid still runs the
expected command line before it signals it).
"""

import argparse
import base64
import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import HarnessError, Stack, free_port, log, unique_email  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NFT = shutil.which("nft") or "/usr/sbin/nft"
MOUNT = "/cis"
HEALTH = MOUNT + "/health"
SITES = 3

# The [replication] timings of HA.md ("Defaults are unusable"): heartbeats every 0.5 s, a
# master silent for 2 s is gone, connection and election retry every second.
REPLICATION = {"priority": 100, "ack_timeout_ms": 1000, "heartbeat_send_ms": 500,
               "heartbeat_monitor_ms": 2000, "retry_ms": 1000}


def missing_tools():
    """Reasons a group cannot run here (empty list: it can). The group itself needs no
    Python module beyond the standard library (the tests need more: see harness)."""
    why = ["not built: " + p for p in harness.missing_programs()]
    if not os.access(harness.LIGHTTPD, os.X_OK):
        why.append("lighttpd not installed")
    if not os.access(HAPROXY, os.X_OK):
        why.append("haproxy not installed")
    return why


def free_ports():
    """{"http": [3 ports], "repl": [3 ports], "proxy": port}, all free right now."""
    ports = set()
    while len(ports) < 2 * SITES + 1:
        ports.add(free_port())
    ports = sorted(ports)
    return {"http": ports[:SITES], "repl": ports[SITES:2 * SITES], "proxy": ports[-1]}


def base_ports(http_base, repl_base, proxy):
    """The demo's layout: sites on http_base.., replication on repl_base.."""
    return {"http": [http_base + i for i in range(SITES)],
            "repl": [repl_base + i for i in range(SITES)], "proxy": proxy}


def _alive(pid):
    st = harness._proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _runs(pid, needle):
    """Whether process pid is alive and its command line holds the string needle."""
    return _alive(pid) and any(needle.encode() in a for a in harness._cmdline(pid))


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _spawn(argv, cwd, out, pidfile):
    """Start argv in a session of its own (it outlives this program and a ^C to it), output
    appended to the file out; its pid written to pidfile. Returns the Popen."""
    with open(out, "ab") as f:
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
    with open(pidfile, "w") as f:
        f.write("%d\n" % p.pid)
    return p


def _wait_gone(pids, timeout):
    """Wait until none of pids runs; the ones still running after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _cgroup2_root():
    """(directory, prefix for nft's "socket cgroupv2" paths) of the cgroup v2 hierarchy we
    may make groups in, or None: /sys/fs/cgroup itself, or its unified/ in a hybrid setup."""
    for sub in ("", "unified"):
        root = os.path.join("/sys/fs/cgroup", sub)
        if os.path.exists(os.path.join(root, "cgroup.procs")) and os.access(root, os.W_OK) \
                and not os.path.exists(os.path.join(root, "cpu")):
            return root, (sub + "/" if sub else "")
    return None


def _move_procs(src, dst):
    """Move every process of cgroup src into cgroup dst."""
    try:
        with open(os.path.join(src, "cgroup.procs")) as f:
            pids = f.read().split()
    except OSError:
        return
    for pid in pids:
        try:
            with open(os.path.join(dst, "cgroup.procs"), "w") as f:
                f.write(pid + "\n")
        except OSError:
            pass


class Front:
    """HAProxy's listener: the HTTP helpers of a Stack, against another port."""

    http = Stack.http
    otp_send = Stack.otp_send
    otp_authenticate = Stack.otp_authenticate
    token_request = Stack.token_request
    client_token = Stack.client_token

    def __init__(self, port):
        self.port = port


class Site(Stack):
    """One site of the group: a Stack without an SMTP sink (mail goes to its Maildir), with
    a [replication] section and a replication process next to its web server."""

    def __init__(self, group, n, workers=2, **kw):
        super().__init__(name="ha-site%d" % n, workers=workers, **kw)
        self.group = group
        self.n = n
        self.dir = os.path.join(group.dir, "site%d" % n)
        self.port = group.ports["http"][n - 1]
        self.repl_port = group.ports["repl"][n - 1]
        self.conf = self.path("otlogin.conf")
        # The replication process reads otlogin.conf through this link: on a machine shared
        # with other otlogin work, `pkill -f "otlogin.conf replicate"` aimed at another
        # group must not end this one's.
        self.repd_conf = self.path("repd.conf")
        self.lighttpd_conf = self.path("lighttpd.conf")
        self.sections["server"]["log_level"] = "info"
        self.sections["server"]["public_base_url"] = group.public_base_url
        self.repd = None   # Popen of the replication process, when this program started it
        self._popen = {}   # name -> Popen, to reap what this program started

    log_files = ("lighttpd-error.log", "lighttpd.out", "repd.log")

    @property
    def issuer(self):
        return self.group.public_base_url

    @property
    def address(self):
        return "127.0.0.1:%d" % self.repl_port

    def replication_section(self):
        peers = ["127.0.0.1:%d" % p for p in self.group.ports["repl"] if p != self.repl_port]
        sec = {"enabled": "yes", "local": self.address, "peers": ", ".join(peers),
               "creator": "yes" if self.n == 1 else "no"}
        sec.update(REPLICATION)
        sec.update(self.group.replication)
        return sec

    def _write_otlogin_conf(self):
        s = self.sections
        s["server"]["db_dir"] = self.path("db")
        s["mail"].pop("smtp_host", None)
        s["mail"].pop("smtp_port", None)
        s["mail"]["maildir"] = self.path("mail")
        s["replication"] = self.replication_section()
        self.conf = self.path("otlogin.conf")
        harness.write_conf(self.conf, "# written by tests/e2e/hagroup.py: site %d of a "
                           "replication group" % self.n, s,
                           harness.CONF_SECTIONS + ("replication",))

    def write_configs(self):
        for d in ("db", "mail", "mail/new", "mail/cur", "mail/tmp"):
            os.makedirs(self.path(d), mode=0o700, exist_ok=True)
        self._write_otlogin_conf()
        self._write_lighttpd_conf()

    # ---- processes ---------------------------------------------------------------------

    def repd_pid(self):
        pid = _read_pid(self.path("repd.pid"))
        return pid if pid and _runs(pid, self.repd_conf) else None

    def lighttpd_pid(self):
        pid = _read_pid(self.path("lighttpd.pid"))
        return pid if pid and _runs(pid, self.lighttpd_conf) else None

    def pids(self):
        """Every process of this site that runs: the replication process, lighttpd, and
        whatever lighttpd started (the workers and their children)."""
        procs = harness._all_procs()
        roots = [p for p in (self.repd_pid(), self.lighttpd_pid()) if p]
        out = roots + harness._descendants(roots, procs)
        # Workers whose lighttpd died before them are children of init now.
        for pid in procs:
            if pid not in out and any(self.conf.encode() in a for a in
                                      harness._proc_strings(pid, "environ")):
                out.append(pid)
        return out

    def start_repd(self):
        self._killed = False
        if not os.path.lexists(self.repd_conf):
            os.symlink("otlogin.conf", self.repd_conf)
        self.repd = self._popen["repd"] = _spawn(
            [self.ctl_bin, "-c", self.repd_conf, "replicate"], self.dir,
            self.path("repd.log"), self.path("repd.pid"))
        return self.repd

    def start_web(self):
        """lighttpd (it starts the workers); waits until GET /cis/health answers at all (a
        client answers 503)."""
        r = subprocess.run([harness.LIGHTTPD, "-tt", "-f", self.lighttpd_conf],
                           capture_output=True, text=True, timeout=harness.CTL_TIMEOUT)
        if r.returncode != 0:
            raise HarnessError("lighttpd -tt: %s%s" % (r.stdout, r.stderr))
        p = self._popen["lighttpd"] = _spawn([harness.LIGHTTPD, "-D", "-f", self.lighttpd_conf],
                                             self.dir, self.path("lighttpd.out"),
                                             self.path("lighttpd.pid"))
        self.proc = p
        deadline = time.monotonic() + harness.START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise HarnessError("site %d: lighttpd exited with %s\n%s"
                                   % (self.n, p.returncode, self.log_tail(20)))
            try:
                return self.health()
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise HarnessError("site %d: GET %s unanswered within %ss (%r)\n%s"
                           % (self.n, HEALTH, harness.START_TIMEOUT, last, self.log_tail(30)))

    def health(self, timeout=5):
        """The site's GET /cis/health: (status, body as JSON or None). Raises OSError when
        nothing answers."""
        r = self.http("GET", HEALTH, timeout=timeout)
        try:
            body = r.json
        except ValueError:
            body = None
        return r.status, body

    def role(self):
        """"master" when GET /cis/health answers 200 with role master, else the reason of its
        503 ("client", "no-quorum", ...), "down" when nothing answers."""
        try:
            status, body = self.health(timeout=2)
        except OSError:
            return "down"
        body = body if isinstance(body, dict) else {}
        if status == 200:
            return body.get("role", "?")
        return body.get("reason", "HTTP %d" % status)

    def reap(self):
        for p in self._popen.values():
            try:
                p.wait(timeout=0) if p.poll() is None else None
            except subprocess.TimeoutExpired:
                pass

    # The replication process's line at each change of role or master (repd.c say_role).
    ROLE_LINE = re.compile(r"^(\S+Z) .* replication: site \S+ (is the master|is a client, .*|"
                           r"is catching up .*|knows no master.*)$")

    def role_lines(self):
        """The role changes the replication process logged, as [(wall time, what)]."""
        out = []
        for line in self.log_text().splitlines():
            m = self.ROLE_LINE.match(line)
            if m:
                at = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append((at.replace(tzinfo=timezone.utc).timestamp(), m.group(2)))
        return out

    def signal_all(self, sig):
        """Send sig to every process of the site at once; the pids signalled."""
        pids = self.pids()
        self.signalled_at = time.monotonic()  # finding the pids takes a while: not before
        self.signalled_wall = time.time()  # to compare with the logs' times
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        return pids

    def stop_site(self, timeout=15):
        """SIGTERM lighttpd (it stops its workers), then the replication process; SIGKILL
        what is still there after timeout. Returns the pids that needed SIGKILL."""
        self._killed = True
        forced = []
        for pid in (self.lighttpd_pid(),):
            if pid:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
        rest = [p for p in self.pids() if p != self.repd_pid()]
        forced += _wait_gone(rest, timeout)
        pid = self.repd_pid()
        if pid:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            forced += _wait_gone([pid], timeout)
        for pid in forced + self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _wait_gone(self.pids(), 5)
        self.reap()
        self.proc = None
        return forced

    def running(self):
        return bool(self.repd_pid() or self.lighttpd_pid())

    # ---- otloginctl ----------------------------------------------------------------------

    def status(self):
        """`otloginctl replication status --json` of this site (a dict)."""
        return self.ctl("replication", "status", "--json", parse=True)


class Group:
    """Three sites and HAProxy. dir=None: a fresh temporary directory, removed by stop()
    (unless E2E_KEEP is set)."""

    def __init__(self, dir=None, ports=None, workers=2, tokens=None, otp=None,
                 replication=None, proxy_inter_ms=200):
        self.temporary = dir is None
        self.dir = os.path.abspath(dir) if dir else None
        self.ports = ports or free_ports()
        self.workers = workers
        self.tokens = tokens
        self.otp = otp
        self.replication = replication or {}
        self.proxy_inter_ms = proxy_inter_ms
        self.name = "ha-group"
        self.sites = []
        self.front = Front(self.ports["proxy"])
        self.haproxy = None
        self._cuts = {}

    @property
    def public_base_url(self):
        # One issuer for the whole group: tokens minted on one site verify after a failover.
        return "http://127.0.0.1:%d%s" % (self.ports["proxy"], MOUNT)

    def site(self, n):
        return self.sites[n - 1]

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def _make_sites(self):
        self.sites = [Site(self, n, workers=self.workers, tokens=self.tokens, otp=self.otp)
                      for n in range(1, SITES + 1)]

    def save(self):
        with open(self.path("group.json"), "w") as f:
            jsonlib.dump({"ports": self.ports, "workers": self.workers}, f)
            f.write("\n")

    @classmethod
    def load(cls, dir):
        """The group a `start` left in dir (to stop it or show its status)."""
        with open(os.path.join(dir, "group.json")) as f:
            saved = jsonlib.load(f)
        g = cls(dir=dir, ports=saved["ports"], workers=saved["workers"])
        g.temporary = False
        g._make_sites()
        return g

    # ---- life cycle --------------------------------------------------------------------

    def start(self):
        why = missing_tools()
        if why:
            raise HarnessError("; ".join(why))
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="otlogin-ha-")
        os.makedirs(self.dir, exist_ok=True)
        self._make_sites()
        if self not in harness.RUNNING:
            harness.RUNNING.append(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        first = self.site(1)
        fresh = not os.path.exists(first.path("db", "server.key"))
        for s in self.sites:
            if s.running():
                raise HarnessError("site %d runs already (%s)" % (s.n, s.dir))
            s.write_configs()
        self.save()
        if fresh:
            # On a replicated site otloginctl writes only on a master whose replication
            # process runs: that process first, then init.
            first.start_repd()
            self._wait(lambda: self._role(1) == "master", 30, "site 1 master of a new group")
            first.ctl("init")
            key = first.path("db", "server.key")
            for s in self.sites[1:]:
                shutil.copyfile(key, s.path("db", "server.key"))
                os.chmod(s.path("db", "server.key"), 0o600)
            for s in self.sites[1:]:
                s.start_repd()
        else:
            for s in self.sites:
                s.start_repd()
        # Workers start once every site has its role (a client once its first sync is done).
        self._wait(lambda: sorted(self.rep_roles().values()) == ["client", "client", "master"],
                   90, "one master and two clients (replication status)")
        for s in self.sites:
            s.start_web()
        self._wait(lambda: sorted(self.roles().values()) == ["client", "client", "master"],
                   90, "one master and two clients (/health)")
        self._start_haproxy()

    def _role(self, n):
        try:
            return self.site(n).status().get("role")
        except HarnessError:
            return None

    def rep_roles(self):
        """{n: role} as `otloginctl replication status` says it ("master", "client" or
        "none"): what the site's replication process publishes, read without joining the
        environment."""
        return {s.n: self._role(s.n) or "none" for s in self.sites}

    def roles(self):
        """{n: what site n's GET /cis/health says}: "master" (200), else the reason of its
        503 (client, no-quorum, no-repd, starting, failed), "down" when nothing answers."""
        return {s.n: s.role() for s in self.sites}

    def _wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            self._check_processes()
            v = cond()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise HarnessError("%s: not within %ss (now: %r, %r)\n%s"
                                   % (what, timeout, self.roles(), self.rep_roles(),
                                      self.log_tail(20)))
            time.sleep(0.1)

    def _check_processes(self):
        for s in self.sites:
            p = s._popen.get("repd")
            if p is not None and p.poll() is not None and not s._killed:
                raise HarnessError("site %d: the replication process exited with %s\n%s"
                                   % (s.n, p.returncode, s.log_tail(30)))

    def _write_haproxy_conf(self):
        inter = self.proxy_inter_ms
        servers = ["    server site%d 127.0.0.1:%d check" % (s.n, s.port) for s in self.sites]
        conf = [
            "# written by tests/e2e/hagroup.py: only the master passes the health check",
            "global",
            "    maxconn 512",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            # A loaded master can take longer than inter to answer its check.
            "    timeout check 2s",
            # A connection refused (a dead site) is tried again on another server; a request
            # that reached a site is never sent twice.
            "    retries 2",
            "    option redispatch 1",
            "frontend otlogin",
            "    bind 127.0.0.1:%d" % self.ports["proxy"],
            "    default_backend sites",
            "backend sites",
            "    option httpchk GET %s" % HEALTH,
            "    http-check expect status 200",
            "    default-server inter %dms fastinter %dms downinter %dms fall 2 rise 1"
            % (inter, inter // 2, inter),
        ] + servers + [""]
        with open(self.path("haproxy.cfg"), "w") as f:
            f.write("\n".join(conf))

    def haproxy_pid(self):
        pid = _read_pid(self.path("haproxy.pid"))
        return pid if pid and _runs(pid, self.path("haproxy.cfg")) else None

    def _start_haproxy(self):
        self._write_haproxy_conf()
        cfg = self.path("haproxy.cfg")
        r = subprocess.run([HAPROXY, "-c", "-q", "-f", cfg], capture_output=True, text=True,
                           timeout=harness.CTL_TIMEOUT)
        if r.returncode != 0:
            raise HarnessError("haproxy -c: %s%s" % (r.stdout, r.stderr))
        self.haproxy = _spawn([HAPROXY, "-db", "-f", cfg], self.dir, self.path("haproxy.log"),
                              self.path("haproxy.pid"))

        def up():
            if self.haproxy.poll() is not None:
                raise HarnessError("haproxy exited: %s" % self.tail("haproxy.log", 20))
            try:
                return self.front.http("GET", HEALTH, timeout=5).status == 200
            except OSError:
                return False

        self._wait(up, 30, "GET %s through HAProxy" % HEALTH)

    def stop(self):
        """Stop HAProxy and every site (lighttpd with its workers, then the replication
        processes); remove a temporary directory."""
        for n in list(self._cuts):
            self.uncut(n)
        pid = self.haproxy_pid() if self.dir else None
        if pid:
            os.kill(pid, signal.SIGTERM)
            if _wait_gone([pid], 10):
                os.kill(pid, signal.SIGKILL)
        if self.haproxy is not None:
            self.haproxy.wait(timeout=10)
            self.haproxy = None
        forced = []
        for s in self.sites:
            if s.lighttpd_pid():
                os.kill(s.lighttpd_pid(), signal.SIGTERM)
        for s in self.sites:
            forced += s.stop_site()
        if self in harness.RUNNING:
            harness.RUNNING.remove(self)
        if self.temporary and self.dir is not None:
            if os.environ.get("E2E_KEEP"):
                log("kept %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if forced:
            raise HarnessError("processes that needed SIGKILL to stop: %r" % forced)

    # ---- what tests do to it -----------------------------------------------------------

    def masters(self):
        """The sites whose GET /cis/health answers 200 with role master."""
        return [s.n for s in self.sites if s.role() == "master"]

    def wait_for_role(self, n, role, timeout=60):
        """Wait until site n's GET /cis/health says role (see roles())."""
        return self._wait(lambda: self.site(n).role() == role, timeout,
                          "site %d %s" % (n, role))

    def master(self):
        """The site that is master (1..3), or None. Two sites that both pass the health check
        are a bug the caller must see: HarnessError."""
        m = self.masters()
        if len(m) > 1:
            raise HarnessError("two masters pass /health: sites %r" % m)
        return m[0] if m else None

    def wait_for_master(self, timeout=30, exclude=()):
        """Poll until one site (not in exclude) passes the health check; its number."""
        def found():
            m = [n for n in self.masters() if n not in exclude]
            if len(m) > 1:
                raise HarnessError("two masters pass /health: sites %r" % m)
            return m[0] if m else None

        return self._wait(found, timeout, "a master")

    def kill_site(self, n, sig=signal.SIGKILL):
        """Send sig to every process of site n at once (workers, lighttpd, the replication
        process); with SIGKILL waits until they are gone. Returns the pids signalled;
        site(n).signalled_at is the time.monotonic() of the first signal."""
        s = self.site(n)
        s._killed = True
        pids = s.signal_all(sig)
        if sig == signal.SIGKILL:
            s.reap()
            left = _wait_gone(pids, 10)
            if left:
                raise HarnessError("site %d: %r survived SIGKILL" % (n, left))
        return pids

    def restart_site(self, n):
        """Start site n again on its directory (after kill_site or stop_site): the
        replication process, then lighttpd and its workers."""
        s = self.site(n)
        if s.running():
            raise HarnessError("site %d still runs: %r" % (n, s.pids()))
        s.start_repd()
        return s.start_web()

    def status(self, n):
        """`otloginctl replication status --json` of site n."""
        return self.site(n).status()

    def log_positions(self):
        """{n: (file, offset)}: each site's log position, as its replication process
        publishes it (`otloginctl replication status`)."""
        out = {}
        for s in self.sites:
            st = s.status()
            out[s.n] = (st["log"]["file"], st["log"]["offset"])
        return out

    def wait_for_equal_logs(self, timeout=60):
        """Wait until every site's log position is the same; that position."""
        last = [None]

        def equal():
            try:
                pos = self.log_positions()
            except HarnessError as e:
                last[0] = e
                return None
            last[0] = pos
            vals = set(pos.values())
            return vals.pop() if len(vals) == 1 else None

        try:
            return self._wait(equal, timeout, "equal log positions")
        except HarnessError as e:
            raise HarnessError("%s (last: %r)" % (e, last[0]))

    # ---- cutting a site off ------------------------------------------------------------

    def cut_method(self):
        """How cut() isolates a site here: "nft" (root, nft and a cgroup v2 hierarchy: the
        packets of the site's replication connections dropped on lo, see _nft_cut) or,
        without them, "sigstop" (the site's replication process stopped: it neither sends
        nor answers; its workers still run)."""
        if os.geteuid() == 0 and os.access(NFT, os.X_OK) and _cgroup2_root():
            return "nft"
        return "sigstop"

    def cut(self, n, seconds=None):
        """Cut site n's replication traffic (cut_method() says how); undone by uncut(n), or
        after `seconds` by a timer. Requests still reach the site's web server."""
        if n in self._cuts:
            raise HarnessError("site %d is cut off already" % n)
        method = self.cut_method()
        if method == "nft":
            self._nft_cut(n)
        else:
            pid = self.site(n).repd_pid()
            if not pid:
                raise HarnessError("site %d has no replication process to stop" % n)
            os.kill(pid, signal.SIGSTOP)
        timer = None
        if seconds is not None:
            timer = threading.Timer(seconds, self.uncut, (n,))
            timer.daemon = True
        self._cuts[n] = (method, timer)
        if timer:
            timer.start()
        return method

    def uncut(self, n):
        cut = self._cuts.pop(n, None)
        if cut is None:
            return
        method, timer = cut
        if timer is not None:
            timer.cancel()
        if method == "nft":
            subprocess.run([NFT, "delete", "table", "inet", self._nft_name(n)],
                           capture_output=True, timeout=30)
            root, _ = _cgroup2_root()
            cg = os.path.join(root, self._nft_name(n))
            _move_procs(cg, root)
            try:
                os.rmdir(cg)
            except OSError as e:
                log("removing %s: %s" % (cg, e))
        else:
            pid = self.site(n).repd_pid()
            if pid:
                os.kill(pid, signal.SIGCONT)

    def _nft_name(self, n):
        return "otlogin_ha_cut_%d_%d" % (self.ports["repl"][n - 1], n)

    def _nft_cut(self, n):
        """Drop, on lo, every packet of the site's replication connections: those to its
        listener (its port at one end), those its processes hold to the other sites'
        listeners (their local ports, as ss shows them now), and any such connection they
        open later: the site's processes move to a cgroup of their own, whose sockets may
        not reach the other listeners."""
        s = self.site(n)
        port = s.repl_port
        name = self._nft_name(n)
        root, prefix = _cgroup2_root()
        cg = os.path.join(root, name)
        os.makedirs(cg, exist_ok=True)
        for pid in s.pids():
            try:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write("%d\n" % pid)
            except OSError:
                pass  # gone meanwhile
        others = ", ".join(str(p) for p in self.ports["repl"] if p != port)
        rules = ["tcp dport %d drop" % port, "tcp sport %d drop" % port,
                 'socket cgroupv2 level 1 "%s%s" tcp dport { %s } drop' % (prefix, name,
                                                                           others)]
        ours = self._site_ports(s)
        if ours:
            ours = ", ".join(str(p) for p in sorted(ours))
            rules += ["tcp sport { %s } tcp dport { %s } drop" % (ours, others),
                      "tcp dport { %s } tcp sport { %s } drop" % (ours, others)]
        script = "table inet %s {\n chain out {\n  type filter hook output priority 0;\n" % name
        script += "".join("  %s\n" % r for r in rules) + " }\n}\n"
        r = subprocess.run([NFT, "-f", "-"], input=script, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            _move_procs(cg, root)
            raise HarnessError("nft: %s" % r.stderr)

    def _site_ports(self, s):
        """Local ports of the TCP connections site s's processes hold to the other sites'
        replication ports."""
        pids = set(s.pids())
        others = {p for p in self.ports["repl"] if p != s.repl_port}
        r = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                           text=True, timeout=30)
        out = set()
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) < 5:
                continue
            local, peer = f[2], f[3]
            try:
                lport, pport = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
            except ValueError:
                continue
            if pport in others and any("pid=%d," % p in line for p in pids):
                out.add(lport)
        return out

    # ---- otloginctl, logs --------------------------------------------------------------

    def ctl(self, *args, parse=False):
        """otloginctl on the master (writes are refused elsewhere)."""
        n = self.wait_for_master(30)
        return self.site(n).ctl(*args, parse=parse)

    def new_client(self, **kw):
        """A client made on the master, with a client access token (through HAProxy)."""
        deadline = time.monotonic() + 30
        while True:
            n = self.wait_for_master(30)
            try:
                c = self.site(n).make_client(**kw)
                break
            except HarnessError as e:
                # A commit the quorum did not acknowledge (its outcome unknown): "could not
                # store the client". Another client is made; one stored twice is harmless.
                if "could not store" not in str(e) or time.monotonic() > deadline:
                    raise
                log("client add on site %d: %s; again" % (n, str(e).strip()))
                time.sleep(0.5)
        # A master answers 503 until its quorum acknowledged a commit lately.
        while True:
            r = self.front.token_request(c["client_id"], c["client_secret"])
            if r.status == 200:
                c["token"] = r.json["access_token"]
                return c
            if r.status not in UNSURE or time.monotonic() > deadline:
                raise HarnessError("client_credentials for %s: %r" % (c["client_id"], r))
            time.sleep(0.2)

    def tail(self, name, n=20):
        try:
            with open(self.path(name), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except (OSError, TypeError):
            return ""

    def log_tail(self, n=20):
        out = []
        for s in self.sites:
            out.append("-- site %d (%s) --" % (s.n, s.dir))
            # The first of Berkeley DB's messages: a tail that ends in retries hides the cause.
            bdb = [line for line in s.log_text().splitlines() if "BDB" in line][:6]
            if bdb:
                out.append("(its first messages from Berkeley DB:)")
                out.extend(bdb)
            out.append(s.log_tail(n))
        out.append("-- haproxy --")
        out.append(self.tail("haproxy.log", n))
        return "\n".join(out)


Site._killed = False


# ---- load: logins and refreshes, every answer logged -----------------------------------

UNSURE = (502, 503, 504, None)  # answers that leave the outcome open (None: no answer)


def claims(jwt):
    """The payload of a JWT, unverified."""
    payload = jwt.split(".")[1]
    return harness.parse_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Pair:
    """One login of the load: a direct-channel send, the authenticate with its code, maybe a
    refresh. send and auth are HTTP statuses (None: no answer, "-": not tried)."""

    __slots__ = ("email", "code", "send", "auth", "sub", "sid", "rt", "rotated", "unsure_rt",
                 "spent")

    def __init__(self, email):
        self.email = email
        self.code = None
        self.send = None
        self.auth = "-"
        self.sub = self.sid = self.rt = None
        self.rotated = []     # refresh tokens a 200 rotated
        self.unsure_rt = False
        self.spent = False    # its family was revoked by a reuse check: session gone


class Load:
    """`threads` threads of logins (Pair) against `target` (group.front, a Site, a Stack)
    with the client access token `token`, until stop(); with refresh=True every second login
    also refreshes once. Every answer goes to self.log as (monotonic time sent, time
    answered, what, status), every 200 also to self.ok as (time sent, time answered,
    what)."""

    def __init__(self, target, token, threads=4, refresh=True):
        self.target = target
        self.token = token
        self.threads = threads
        self.refresh = refresh
        self.pairs = []
        self.log = []
        self.ok = []
        self.errors = []
        self._stop = threading.Event()
        self._threads = []

    def call(self, what, fn, *a, **kw):
        t0 = time.monotonic()
        try:
            r = fn(*a, timeout=15, **kw)
            status = r.status
        except (OSError, http.client.HTTPException):
            r, status = None, None
        t1 = time.monotonic()
        self.log.append((t0, t1, what, status))
        if status == 200:
            self.ok.append((t0, t1, what))
        elif status in UNSURE:
            # A 503 or a refused connection comes back at once: a client that tried again
            # at once would spin, and the spinning takes the CPU the group needs to recover.
            time.sleep(0.05)
        return r, status

    def post(self, path, body, timeout):
        return self.target.http("POST", path, json=body, token=self.token, timeout=timeout)

    def one(self):
        p = Pair(unique_email("ha"))
        self.pairs.append(p)
        r, p.send = self.call("send", self.post, "/cis/v1/auth/otp/send",
                              {"channel": "direct", "identifier_type": "email",
                               "identifier": p.email})
        if p.send != 200:
            return
        p.code = r.json["code"]
        if self._stop.is_set():
            return
        r, p.auth = self.call("auth", self.post, "/cis/v1/auth/otp/authenticate",
                              {"passcode": p.code, "identifier_type": "email",
                               "identifier": p.email})
        if p.auth != 200:
            return
        body = r.json
        c = claims(body["id_token"])
        p.sub, p.sid, p.rt = c["sub"], c["sid"], body["refresh_token"]
        if not self.refresh or len(self.pairs) % 2 or self._stop.is_set():
            return
        r, st = self.call("refresh", self.post, "/cis/v1/auth/token/refresh",
                          {"refresh_token": p.rt})
        if st == 200:
            p.rotated.append(p.rt)
            p.rt = r.json["refresh_token"]
        elif st in UNSURE:
            p.unsure_rt = True

    def run(self):
        try:
            while not self._stop.is_set():
                self.one()
        except Exception as e:  # an answer of the wrong shape: stop() reports it
            self.errors.append(repr(e))

    def start(self):
        for _ in range(self.threads):
            t = threading.Thread(target=self.run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(60)
        if any(t.is_alive() for t in self._threads):
            raise HarnessError("load threads did not stop")
        if self.errors:
            raise HarnessError("load threads failed: %s" % "; ".join(self.errors[:5]))

    def first_ok_after(self, t):
        """When the first 200 to a request sent after t came (None: none yet)."""
        return min((t1 for t0, t1, _ in self.ok if t0 > t), default=None)

    def wait_ok_after(self, t, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = self.first_ok_after(t)
            if first is not None:
                return first
            time.sleep(0.02)
        return None

    def counts(self, since=None, until=None):
        out = {}
        for t0, t1, what, st in self.log:
            if (since is None or t1 >= since) and (until is None or t1 <= until):
                out[st] = out.get(st, 0) + 1
        return out



# ---- the command line (./quickstart ha) ---------------------------------------------------

def cmd_start(a):
    g = Group(dir=a.dir, ports=base_ports(a.http_base, a.repl_base, a.proxy), workers=a.workers)
    g.start()
    harness.RUNNING.remove(g)
    n = g.master()
    print("three sites on 127.0.0.1:%s (replication %s), HAProxy on 127.0.0.1:%d; master: "
          "site %s" % ("-".join(str(p) for p in (g.ports["http"][0], g.ports["http"][-1])),
                       "-".join(str(p) for p in (g.ports["repl"][0], g.ports["repl"][-1])),
                       g.ports["proxy"], n))
    return 0


def cmd_stop(a):
    if not os.path.exists(os.path.join(a.dir, "group.json")):
        print("no group in %s" % a.dir)
        return 0
    g = Group.load(a.dir)
    g.stop()
    print("stopped the group in %s" % a.dir)
    return 0


def cmd_status(a):
    g = Group.load(a.dir)
    out = {"proxy": {"port": g.ports["proxy"], "running": bool(g.haproxy_pid())}, "sites": []}
    try:
        out["proxy"]["health"] = g.front.http("GET", HEALTH, timeout=3).status
    except OSError as e:
        out["proxy"]["health"] = str(e)
    for s in g.sites:
        site = {"site": s.n, "dir": s.dir, "http": s.port, "replication": s.address,
                "running": s.running()}
        try:
            site["health"] = dict(zip(("status", "body"), s.health(timeout=3)))
        except OSError as e:
            site["health"] = str(e)
        try:
            site["status"] = s.status()
        except HarnessError as e:
            site["status"] = str(e).strip()
        out["sites"].append(site)
    print(jsonlib.dumps(out, indent=2))
    return 0


def main(argv):
    p = argparse.ArgumentParser(prog="hagroup.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start the group (again, on an existing directory)")
    st.add_argument("--http-base", type=int, default=8091)
    st.add_argument("--repl-base", type=int, default=5501)
    st.add_argument("--proxy", type=int, default=8090)
    st.add_argument("--workers", type=int, default=2, help="FastCGI workers per site")
    for name in ("start", "stop", "status"):
        sp = st if name == "start" else sub.add_parser(name)
        sp.add_argument("--dir", required=True, help="the group's directory (run/ha)")
    a = p.parse_args(argv)
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[a.cmd](a)
    except HarnessError as e:
        sys.stderr.write("hagroup.py %s: %s\n" % (a.cmd, e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
