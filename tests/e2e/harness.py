#!/usr/bin/python3
"""End-to-end harness: a full otlogin stack on loopback, in a fresh temporary directory.

A Stack is: an SMTP sink (aiosmtpd, in this process) that collects every message, an
otlogin.conf pointing at it, a database created with "otloginctl init", and lighttpd running
etc/lighttpd/otlogin.conf, which starts the FastCGI workers (otlogin.fcgi) itself.

    stack = Stack(otp={"max_failures": 3}).start()
    client = stack.new_client(permissions=["direct"])      # {client_id, client_secret, token}
    user = stack.make_user()                               # API.md User object
    r = stack.http("POST", "/cis/v1/auth/otp/send", json={...}, token=client["token"])
    msg = stack.wait_mail(user_email)                      # email.message.EmailMessage
    stack.stop()

Programs come from $top_builddir/src, the lighttpd snippet from $top_srcdir/etc/lighttpd; both
variables default to the repository that holds this file. Nothing talks to anything but
127.0.0.1. Set E2E_KEEP=1 to keep the temporary directory (its path is printed on stderr).
"""

import base64
import email
import email.policy
import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir") or REPO)
TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir") or REPO)

FCGI_BIN = os.path.join(TOP_BUILDDIR, "src", "otlogin.fcgi")
CTL_BIN = os.path.join(TOP_BUILDDIR, "src", "otloginctl")
LIGHTTPD_SNIPPET = os.path.join(TOP_SRCDIR, "etc", "lighttpd", "otlogin.conf")
LIGHTTPD = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
# The other servers otlogin ships configurations for (test_servers.py).
NGINX_SNIPPET = os.path.join(TOP_SRCDIR, "etc", "nginx", "otlogin.conf")
APACHE_SNIPPET = os.path.join(TOP_SRCDIR, "etc", "apache2", "otlogin.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SPAWN_FCGI = shutil.which("spawn-fcgi") or "/usr/bin/spawn-fcgi"
APACHE2 = shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"

# Every wait in the suite is bounded by one of these (seconds).
HTTP_TIMEOUT = 30
MAIL_TIMEOUT = 15
START_TIMEOUT = 30
CTL_TIMEOUT = 60

# The [limits] keys (otlogin.conf(5)); a Stack turns each off unless asked.
LIMIT_KEYS = ("send_cooldown", "recipient_sends", "client_emails", "client_sms",
              "identifier_attempts", "ip_attempts", "client_attempts", "client_secret_failures",
              "authorization_flows")

# Stacks that are running, so the test runner can show their logs on a failure and stop
# them if it has to give up.
RUNNING = []


# Diagnostics a test wants shown under its TAP line (the runner prints and clears them).
NOTES = []



# The sections a stack's otlogin.conf is written with, in this order.
CONF_SECTIONS = ("server", "tokens", "otp", "mail", "limits", "hosted", "audit")


def write_conf(path, header, sections, order):
    """Write an otlogin.conf at path: the header comment, then each section of order from the
    dict sections ({section: {key: value}})."""
    lines = [header]
    for sec in order:
        lines.append("[%s]" % sec)
        lines += ["%s = %s" % (k, v) for k, v in sections[sec].items()]
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))

class HarnessError(Exception):
    pass


def note(msg):
    """Show msg as a "# " diagnostic under the current test's result."""
    NOTES.append(str(msg))


def log(msg):
    sys.stderr.write("e2e: %s\n" % msg)
    sys.stderr.flush()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def missing_prerequisites():
    """Reasons the suite cannot run here at all (empty list: it can)."""
    why = []
    if not os.access(LIGHTTPD, os.X_OK):
        why.append("lighttpd not installed")
    for mod in ("aiosmtpd", "jwt", "cryptography"):
        try:
            __import__(mod)
        except ImportError:
            why.append("python module %s missing" % mod)
    return why


def missing_server_tools(server):
    """Reasons a stack behind `server` ("nginx" or "apache2") cannot run here. The suite as a
    whole needs only lighttpd (missing_prerequisites); a module that runs another server
    calls this and fails, rather than skips, when the server is missing."""
    why = []
    if server == "nginx":
        if not os.access(NGINX, os.X_OK):
            why.append("nginx not installed")
        if not os.access(SPAWN_FCGI, os.X_OK):
            why.append("spawn-fcgi not installed")
    elif server == "apache2":
        if not os.access(APACHE2, os.X_OK):
            why.append("apache2 not installed")
        if not os.path.exists(os.path.join(APACHE_MODULES, "mod_fcgid.so")):
            why.append("mod_fcgid not installed (libapache2-mod-fcgid)")
    else:
        raise ValueError(server)
    return why


def missing_programs():
    return [p for p in (FCGI_BIN, CTL_BIN) if not os.access(p, os.X_OK)]


def _unique_pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r in server JSON" % k)
        d[k] = v
    return d


def parse_json(data):
    """Strict JSON parse (duplicate keys in a server answer are a bug too)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return jsonlib.loads(data, object_pairs_hook=_unique_pairs)


class Response(namedtuple("Response", "status headers body")):
    """status (int), headers (http.client.HTTPMessage), body (bytes); .json parses the body."""

    __slots__ = ()

    @property
    def json(self):
        return parse_json(self.body)

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "")

    def __repr__(self):
        body = self.body[:400]
        return "<HTTP %d %s %r>" % (self.status, self.content_type, body)


def b64url_decode(s):
    s = s.encode() if isinstance(s, str) else s
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def jwt_parts(token):
    """(header, payload) of a compact JWS, unverified."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS: %d parts" % len(parts))
    return parse_json(b64url_decode(parts[0])), parse_json(b64url_decode(parts[1]))


def extract_code(text, length):
    """The passcode in a mail body: the digit run of exactly `length` digits (leading zeros kept)."""
    found = re.findall(r"(?<![0-9])[0-9]{%d}(?![0-9])" % length, text)
    if not found:
        raise HarnessError("no %d-digit code in mail text: %r" % (length, text[:500]))
    if len(set(found)) > 1:
        raise HarnessError("several %d-digit numbers in mail text: %r" % (length, found))
    return found[0]


def mail_parts(msg):
    """{content_type: decoded text} for the text parts of a message."""
    out = {}
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype.startswith("text/"):
            out.setdefault(ctype, part.get_content())
    return out


class Mailbox:
    """What the SMTP sink received; thread-safe. Each message is handed out once."""

    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []  # dicts: mail_from, rcpt_tos, msg, raw, taken

    # aiosmtpd handler hook, runs on the sink's thread.
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.cond:
            self.messages.append(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": [r.lower() for r in envelope.rcpt_tos],
                    "msg": msg,
                    "raw": raw,
                    "taken": False,
                }
            )
            self.cond.notify_all()
        return "250 Message accepted for delivery"

    def _find(self, to):
        to = to.lower()
        for m in self.messages:
            if not m["taken"] and to in m["rcpt_tos"]:
                return m
        return None

    def wait(self, to, timeout=MAIL_TIMEOUT):
        """The oldest message not yet taken whose envelope recipients include `to`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = self._find(to)
                if m is not None:
                    m["taken"] = True
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError("no mail to %s within %ss" % (to, timeout))
                self.cond.wait(left)

    def pending(self, to=None):
        """Messages not taken yet (to a given recipient if named), without waiting."""
        with self.cond:
            return [
                m for m in self.messages
                if not m["taken"] and (to is None or to.lower() in m["rcpt_tos"])
            ]

    def all_recipients(self):
        with self.cond:
            return [r for m in self.messages for r in m["rcpt_tos"]]


def _proc_stat(pid):
    """(state, ppid, starttime) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def _all_procs():
    """{pid: (state, ppid, starttime)} of the live processes."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st and st[0] not in ("Z", "X"):
                procs[int(name)] = st
    return procs


def _descendants(roots, procs):
    """Pids of every process below `roots` (not the roots themselves)."""
    out, parents = [], set(roots)
    while True:
        found = [pid for pid, st in procs.items() if st[1] in parents and pid not in parents]
        if not found:
            return out
        out += found
        parents.update(found)


def _proc_strings(pid, name):
    """/proc/PID/NAME (cmdline, environ) split at its NULs; [] once the process is gone."""
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _cmdline(pid):
    return _proc_strings(pid, "cmdline")


class Stack:
    """One complete otlogin installation on loopback. Use start() / stop() or `with`."""

    _seq = 0
    _seq_lock = threading.Lock()

    def __init__(self, name="e2e", otp=None, server=None, tokens=None, mail=None, workers=4,
                 app=None, limits=None, audit=False):
        """app: run this FastCGI program instead of otlogin.fcgi (and skip otloginctl init);
        test_lighttpd uses it to look at what lighttpd hands to the application.
        limits: [limits] keys to set; every other limit is off ("0"), since the suite sends
        many codes to one address and every request comes from 127.0.0.1 (test_ratelimit
        turns on the ones it tests).
        audit: write the audit trail to audit.log in the stack's directory (audit_events()
        reads it); otherwise it is off, so that the suite sends nothing to the host's syslog."""
        self.name = name
        self.workers = workers
        self.app = app or FCGI_BIN
        self.ctl_bin = CTL_BIN
        self.sections = {
            # stderr: the server's own log, which log_text() reads (test_logs.py tests the
            # other destinations)
            "server": {"log_level": "debug", "log": "stderr"},
            "tokens": {},
            "otp": {"length": 6, "ttl_minutes": 10, "max_ttl_minutes": 60,
                    "max_failures": 3, "lockout_minutes": 15},
            "mail": {"from": "otlogin@localhost", "from_name": "otlogin", "smtp_timeout": 5},
            "limits": {k: 0 for k in LIMIT_KEYS},
            # The hosted login page's texts, from the source tree (not installed).
            "hosted": {"templates_dir": os.path.join(TOP_SRCDIR, "etc", "templates")},
            "audit": {"log": "audit.log" if audit else "off"},
        }
        for sec, vals in (("server", server), ("tokens", tokens), ("otp", otp), ("mail", mail),
                          ("limits", limits)):
            self.sections[sec].update(vals or {})
        self.dir = None
        self.port = None
        self.mailbox = Mailbox()
        self.smtp = None
        self.proc = None
        self._server_out = None
        self._jwks = None

    # ---- configuration -------------------------------------------------------------------

    @property
    def otp_length(self):
        return int(self.sections["otp"]["length"])

    @property
    def max_failures(self):
        return int(self.sections["otp"]["max_failures"])

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/cis" % self.port

    @property
    def issuer(self):
        return self.sections["server"].get("issuer") or self.base_url

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def _write_otlogin_conf(self):
        s = self.sections
        s["server"]["public_base_url"] = self.base_url
        s["server"]["db_dir"] = self.path("db")
        # mail={"smtp_port": N} points the server at another loopback listener than the sink.
        s["mail"]["smtp_host"] = "127.0.0.1"
        s["mail"].setdefault("smtp_port", self.smtp_port)
        s["mail"]["maildir"] = self.path("maildir")
        self.conf = self.path("otlogin.conf")
        write_conf(self.conf, "# written by tests/e2e/harness.py", s, CONF_SECTIONS)

    def _write_lighttpd_conf(self):
        os.makedirs(self.path("www"), exist_ok=True)
        os.makedirs(self.path("sock"), mode=0o700, exist_ok=True)
        os.makedirs(self.path("upload"), mode=0o700, exist_ok=True)
        q = lambda v: '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')
        conf = [
            "# written by tests/e2e/harness.py",
            "server.port = %d" % self.port,
            'server.bind = "127.0.0.1"',
            "server.document-root = %s" % q(self.path("www")),
            "server.errorlog = %s" % q(self.path("lighttpd-error.log")),
            "server.pid-file = %s" % q(self.path("lighttpd.pid")),
            "server.upload-dirs = ( %s )" % q(self.path("upload")),
            'server.modules = ( "mod_accesslog" )',
            "accesslog.filename = %s" % q(self.path("access.log")),
            "var.otlogin_bin = %s" % q(self.app),
            "var.otlogin_conf = %s" % q(self.conf),
            "var.otlogin_socket_dir = %s" % q(self.path("sock")),
            "var.otlogin_workers = %d" % self.workers,
            "include %s" % q(LIGHTTPD_SNIPPET),
            "",
        ]
        self.lighttpd_conf = self.path("lighttpd.conf")
        with open(self.lighttpd_conf, "w") as f:
            f.write("\n".join(conf))

    # ---- life cycle ----------------------------------------------------------------------

    def start(self):
        from aiosmtpd.controller import Controller

        ours = self.app == FCGI_BIN  # otlogin itself, not a test_lighttpd probe
        missing = missing_programs() if ours else []
        if missing:
            raise HarnessError("not built: %s" % ", ".join(missing))
        self.dir = tempfile.mkdtemp(prefix="otlogin-e2e-")
        RUNNING.append(self)
        try:
            self.smtp_port = free_port()
            self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
            self.smtp.start()
            for attempt in range(3):
                self.port = free_port()
                self._write_otlogin_conf()
                if attempt == 0:
                    self._prepare_dir()
                    if ours:
                        self.ctl("init")
                self._write_server_conf()
                r = subprocess.run(self._server_check_argv(), capture_output=True, text=True,
                                   timeout=CTL_TIMEOUT)
                if r.returncode != 0:
                    raise HarnessError("%s: %s%s" % (" ".join(self._server_check_argv()),
                                                     r.stdout, r.stderr))
                if self._start_server():
                    return self
            raise HarnessError("%s did not start (port races?)" % self.server)
        except BaseException:
            self.stop()
            raise

    # ---- the web server (lighttpd here; test_servers.py overrides these for others) -------

    server = "lighttpd"
    # (uid, gid) otloginctl runs as, when the workers run as another account than the tests.
    run_as = None
    # Files under the stack's directory that log_text() shows.
    log_files = ("lighttpd-error.log", "lighttpd.out")

    def _prepare_dir(self):
        """Called once, after otlogin.conf is written and before otloginctl init."""

    def _write_server_conf(self):
        self._write_lighttpd_conf()

    def _server_check_argv(self):
        """A command that checks the server's configuration (exit 0: fine)."""
        return [LIGHTTPD, "-tt", "-f", self.lighttpd_conf]

    def _server_argv(self):
        """The server, in the foreground."""
        return [LIGHTTPD, "-D", "-f", self.lighttpd_conf]

    def _start_server(self):
        """Start the server and wait for GET /cis/health; False when it exited (port taken).
        Also starts it again after a test killed or stopped it."""
        if self._server_out is not None:
            self._server_out.close()
        self._server_out = open(self.path(self.server + ".out"), "ab")
        self.proc = subprocess.Popen(self._server_argv(),
                                     stdin=subprocess.DEVNULL, stdout=self._server_out,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log("%s exited with %s: %s" % (self.server, self.proc.returncode,
                                               self.log_tail(10)))
                self.proc = None
                self._server_out.close()
                self._server_out = None
                return False
            try:
                r = self.http("GET", "/cis/health", timeout=5)
                if r.status == 200:
                    return True
                last = r
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise HarnessError("GET /cis/health not 200 within %ss (last: %r)\n%s"
                           % (START_TIMEOUT, last, self.log_tail(30)))

    def worker_pids(self, descendants=False):
        """[(pid, starttime)] of the application processes lighttpd started (with
        descendants=True also what those forked, e.g. a mail sender)."""
        if self.proc is None:
            return []
        procs = _all_procs()
        parents = {self.proc.pid}
        out = []
        while True:
            found = [(pid, st) for pid, st in procs.items()
                     if st[1] in parents and pid not in parents and self.runs_app(pid)]
            if not found:
                return out
            out += [(pid, st[2]) for pid, st in found]
            if not descendants:
                return out
            parents.update(pid for pid, _ in found)

    def _after_stop(self):
        """Called when the server and its workers are gone, before the directory is removed;
        returns pids of workers that had to be killed after all."""
        return []

    def _stop_server(self):
        """Stop the server; the workers are expected to go with it."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            self.proc = None

    def runs_app(self, pid):
        """Whether pid runs this stack's application: the program, or an interpreter and its
        script (test_lighttpd's probe)."""
        prog = os.path.basename(self.app).encode()
        return any(os.path.basename(a) == prog for a in _cmdline(pid)[:2])

    def restart(self):
        """Stop the web server and its workers, then start them again on the same database."""
        workers = self.worker_pids()
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.proc = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_proc_stat(p) for p, _ in workers):
            time.sleep(0.05)
        if not self._start_server():
            raise HarnessError("the web server did not start again")

    def stop(self):
        """Stop the server (it stops its workers), make sure no worker survives, stop the
        sink. Raises HarnessError when a worker had to be killed by force."""
        leaked = []
        if self.dir is not None:
            workers = self.worker_pids(descendants=True)
            self._stop_server()
            for pid, start in workers:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    st = _proc_stat(pid)
                    if st is None or st[2] != start or st[0] in ("Z", "X"):
                        break
                    time.sleep(0.05)
                else:
                    leaked.append(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        if self._server_out is not None:
            self._server_out.close()
            self._server_out = None
        if self.dir is not None:
            leaked += self._after_stop()
        if self.smtp is not None:
            try:
                self.smtp.stop()
            except Exception as e:  # the sink's loop may already be gone
                log("stopping the SMTP sink: %r" % e)
            self.smtp = None
        if self in RUNNING:
            RUNNING.remove(self)
        if self.dir is not None:
            if os.environ.get("E2E_KEEP"):
                log("kept %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if leaked:
            raise HarnessError("otlogin.fcgi workers survived %s: %r" % (self.server, leaked))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        """Everything the server side logged so far (the server's error log and the workers'
        stderr, which lighttpd passes through)."""
        out = []
        for name in self.log_files:
            try:
                with open(self.path(name), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except (OSError, TypeError):
                pass
        return "\n".join(out)

    def audit_events(self):
        """The audit trail so far (Stack(audit=True)): one parsed JSON object per line."""
        try:
            with open(self.path("audit.log"), encoding="utf-8") as f:
                return [parse_json(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def log_tail(self, n=20):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])

    # ---- otloginctl ----------------------------------------------------------------------

    def ctl(self, *args, parse=False):
        """Run otloginctl -c CONF args...; stdout (parsed as JSON if asked)."""
        cmd = [self.ctl_bin, "-c", self.conf] + [str(a) for a in args]
        kw = {}
        if self.run_as is not None:  # the account the workers run as: it owns the database
            kw = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=CTL_TIMEOUT, **kw)
        if r.returncode != 0:
            raise HarnessError("%s: exit %d\n%s%s" % (" ".join(cmd[3:]), r.returncode,
                                                    r.stdout, r.stderr))
        return parse_json(r.stdout) if parse else r.stdout

    def make_client(self, name=None, redirect_uris=(), permissions=(), signup=None,
                    resources=()):
        """otloginctl client add; returns {"client_id", "client_secret", ...}."""
        with Stack._seq_lock:
            Stack._seq += 1
            seq = Stack._seq
        args = ["client", "add", "--name", name or "e2e-client-%d" % seq]
        for u in redirect_uris:
            args += ["--redirect-uri", u]
        for u in resources:
            args += ["--resource", u]
        for p in permissions:
            args += ["--permission", p]
        if signup:
            args += ["--signup", signup]
        c = self.ctl(*args, parse=True)
        if not c.get("client_id") or not c.get("client_secret"):
            raise HarnessError("client add printed %r" % c)
        return c

    def new_client(self, **kw):
        """make_client(...) plus a client access token under "token"."""
        c = self.make_client(**kw)
        c["token"] = self.client_token(c["client_id"], c["client_secret"])
        return c

    def make_user(self, email=None, phone=None, username=None, roles=()):
        """otloginctl user add; returns the User object. A fresh address when none is given."""
        if email is None and phone is None:
            email = unique_email()
        args = ["user", "add"]
        if email is not None:
            args += ["--email", email]
        if phone is not None:
            args += ["--phone", phone]
        if username is not None:
            args += ["--username", username]
        for r in roles:
            args += ["--role", r]
        u = self.ctl(*args, parse=True)
        if not u.get("user_id"):
            raise HarnessError("user add printed %r" % u)
        return u

    # ---- HTTP ----------------------------------------------------------------------------

    def http(self, method, path, body=None, json=None, form=None, headers=None, token=None,
             timeout=HTTP_TIMEOUT, source=None):
        """One request on a fresh connection. json= / form= set the body and its Content-Type;
        token= adds "Authorization: Bearer". headers= wins over both (None removes a header).
        source= connects from another loopback address (such as 127.0.0.2): the server's
        REMOTE_ADDR."""
        hdrs = {}
        if json is not None:
            body = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        elif form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif isinstance(body, str):
            body = body.encode()
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        for k, v in (headers or {}).items():
            hdrs.pop(k, None)
            if v is not None:
                hdrs[k] = v
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.headers, data)
        finally:
            conn.close()

    def parallel(self, calls, threads=50):
        """Run the zero-argument callables concurrently; their results in order."""
        with ThreadPoolExecutor(max_workers=threads) as ex:
            futures = [ex.submit(c) for c in calls]
            return [f.result(timeout=HTTP_TIMEOUT * 4) for f in futures]

    # ---- magic links ---------------------------------------------------------------------

    def landing_form(self, link):
        """GET a magic link's landing page as a browser does: (path to POST to, form fields,
        Cookie header value) of its button's form, or None when the page has no form."""
        u = urllib.parse.urlsplit(link)
        path = u.path + ("?" + u.query if u.query else "")
        r = self.http("GET", path)
        html = r.body.decode("utf-8", "replace")
        form = re.search(r'<form method="post" action="([^"]*)">(.*?)</form>', html, re.S)
        if r.status != 200 or form is None:
            return None
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                                 form.group(2)))
        cookies = [c.split(";", 1)[0].strip() for c in r.headers.get_all("Set-Cookie") or []]
        action = urllib.parse.urljoin(path, form.group(1).replace("&amp;", "&"))
        return action, fields, "; ".join(cookies)

    def open_link(self, link, headers=None):
        """Open a magic link as a browser that sends no Sec-Fetch-Site or Origin does: GET
        the landing page, then POST its form with the cookie the page set. The POST's
        Response (303 to the redirect for a valid link). Without a form on the page (a used,
        expired or unknown link) the POST goes out bare, as a same-origin one."""
        u = urllib.parse.urlsplit(link)
        path = u.path + ("?" + u.query if u.query else "")
        found = self.landing_form(link)
        hdrs = {}
        fields = {}
        if found is None:
            hdrs["Sec-Fetch-Site"] = "same-origin"
        else:
            path, fields, cookie = found
            if cookie:
                hdrs["Cookie"] = cookie
        hdrs.update(headers or {})
        return self.http("POST", path, form=fields, headers=hdrs)

    # ---- OAuth / OIDC --------------------------------------------------------------------

    def token_request(self, client_id, secret, auth="basic", path="/oidc/token", source=None,
                      **fields):
        """POST the token endpoint with client_secret_basic or client_secret_post (from the
        loopback address source, when given)."""
        form = {"grant_type": "client_credentials"}
        form.update(fields)
        headers = {}
        if auth == "basic":
            cred = "%s:%s" % (urllib.parse.quote(client_id, safe=""),
                              urllib.parse.quote(secret, safe=""))
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        elif auth == "post":
            form["client_id"] = client_id
            form["client_secret"] = secret
        else:
            raise ValueError(auth)
        return self.http("POST", path, form=form, headers=headers, source=source)

    def client_token(self, client_id, secret, auth="basic"):
        r = self.token_request(client_id, secret, auth=auth)
        if r.status != 200:
            raise HarnessError("client_credentials for %s: %r" % (client_id, r))
        return r.json["access_token"]

    def jwks(self, refresh=False):
        """{kid: jwt.PyJWK} from GET /cis/oidc/jwks."""
        import jwt

        if self._jwks is None or refresh:
            r = self.http("GET", "/cis/oidc/jwks")
            if r.status != 200:
                raise HarnessError("GET /cis/oidc/jwks: %r" % (r,))
            self._jwks = {k["kid"]: jwt.PyJWK(k) for k in r.json["keys"]}
        return self._jwks

    def verify_jwt(self, token, typ, audience):
        """Verify an RS256 token against the JWKS; returns (header, claims)."""
        import jwt

        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise HarnessError("alg %r" % header.get("alg"))
        if header.get("typ") != typ:
            raise HarnessError("typ %r, expected %r" % (header.get("typ"), typ))
        keys = self.jwks()
        if header.get("kid") not in keys:
            keys = self.jwks(refresh=True)
        if header.get("kid") not in keys:
            raise HarnessError("kid %r not in JWKS %r" % (header.get("kid"), list(keys)))
        claims = jwt.decode(token, keys[header["kid"]].key, algorithms=["RS256"],
                            audience=audience, issuer=self.issuer, leeway=5,
                            options={"require": ["iss", "sub", "aud", "iat", "exp"]})
        return header, claims

    # ---- OTP flow ------------------------------------------------------------------------

    def otp_send(self, token, identifier, identifier_type="email", channel="email", **extra):
        body = {"channel": channel, "identifier_type": identifier_type, "identifier": identifier}
        body.update(extra)
        return self.http("POST", "/cis/v1/auth/otp/send", json=body, token=token)

    def otp_authenticate(self, token, identifier, passcode, identifier_type="email", **extra):
        body = {"passcode": passcode, "identifier_type": identifier_type,
                "identifier": identifier}
        body.update(extra)
        return self.http("POST", "/cis/v1/auth/otp/authenticate", json=body, token=token)

    def wait_mail(self, to, timeout=MAIL_TIMEOUT):
        """The next message (email.message.EmailMessage) delivered to `to`."""
        return self.mailbox.wait(to, timeout)["msg"]

    def mail_code(self, msg):
        """The passcode in the text/plain part of a message."""
        parts = mail_parts(msg)
        if "text/plain" not in parts:
            raise HarnessError("no text/plain part in mail: %s" % list(parts))
        return extract_code(parts["text/plain"], self.otp_length)

    def send_and_read_code(self, token, to, identifier=None, identifier_type="email", **extra):
        """otp/send by email, then the code from the mail delivered to `to`."""
        r = self.otp_send(token, identifier or to, identifier_type, "email", **extra)
        if r.status != 200:
            raise HarnessError("otp/send: %r" % (r,))
        return self.mail_code(self.wait_mail(to))

    def direct_code(self, token, identifier, identifier_type="email", **extra):
        r = self.otp_send(token, identifier, identifier_type, "direct", **extra)
        if r.status != 200 or "code" not in r.json:
            raise HarnessError("otp/send direct: %r" % (r,))
        return r.json["code"]


_uniq_lock = threading.Lock()
_uniq_n = 0


def unique_email(tag="user"):
    """An address no other test uses (the domain never resolves; mail goes to the sink)."""
    global _uniq_n
    with _uniq_lock:
        _uniq_n += 1
        n = _uniq_n
    return "%s-%d-%s@example.org" % (tag, n, os.urandom(4).hex())


def other_code(code):
    """A code of the same length that is certainly not `code`."""
    n = len(code)
    return "%0*d" % (n, (int(code) + 1) % 10 ** n)


# ---- assertions shared by the test modules -------------------------------------------------

import unittest  # noqa: E402


class E2ETestCase(unittest.TestCase):
    """A TestCase with the contract's response checks. Set `stack` (a started Stack)."""

    stack = None
    maxDiff = 2000

    def assertJSON(self, r, status):
        """r has this status, is application/json, carries Cache-Control: no-store, and its
        body is one JSON value (returned)."""
        self.assertEqual(r.status, status, "HTTP status of %r" % (r,))
        self.assertTrue(r.content_type.lower().startswith("application/json"),
                        "Content-Type %r of %r" % (r.content_type, r))
        self.assertIn("no-store", r.headers.get("Cache-Control", "").lower(),
                      "Cache-Control of %r" % (r,))
        try:
            return r.json
        except ValueError as e:
            self.fail("body of %r is not JSON: %s" % (r, e))

    def assertError(self, r, status, error_code=None):
        """A contract error: {"message": ..., "error_code": ...} with this status (and code)."""
        body = self.assertJSON(r, status)
        self.assertIsInstance(body, dict, "error body %r" % (body,))
        self.assertIn("message", body, "error body %r" % (body,))
        self.assertIn("error_code", body, "error body %r" % (body,))
        if error_code is not None:
            self.assertEqual(body["error_code"], error_code, "error body %r" % (body,))
        return body

    def assertAnyError(self, r, status):
        """An error with this status whose body is a JSON object (any documented shape)."""
        body = self.assertJSON(r, status)
        self.assertIsInstance(body, dict, "error body %r" % (body,))
        return body

    def assertOAuthError(self, r, status, error):
        body = self.assertJSON(r, status)
        self.assertIsInstance(body, dict)
        self.assertEqual(body.get("error"), error, "OAuth error body %r" % (body,))
        return body

    def assertInvalidToken(self, r):
        self.assertEqual(r.status, 401, "%r" % (r,))
        body = self.assertJSON(r, 401)
        self.assertEqual(body, {"message": "Invalid token", "error_code": 401})
        self.assertEqual(r.headers.get("WWW-Authenticate"), 'Bearer error="invalid_token"')

    def assertTokenResponse(self, r):
        """The shared authenticate answer; returns the body."""
        body = self.assertJSON(r, 200)
        for k in ("access_token", "id_token", "refresh_token", "session_id"):
            self.assertIsInstance(body.get(k), str, "%s in %r" % (k, body))
            self.assertTrue(body[k], "%s empty in %r" % (k, body))
        self.assertEqual(body.get("token_type"), "Bearer")
        self.assertEqual(body.get("expires_in"), 3600)
        return body
