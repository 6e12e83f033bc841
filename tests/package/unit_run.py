#!/usr/bin/python3
"""Start an installed otlogin unit the way systemd would, where no systemd runs (a container,
a CI machine without it as PID 1), and check what the unit promises. Root only.

    unit_run.py socket   otlogin.socket + otlogin.service: the listening socket made as
                         [Socket] says (SocketUser/SocketGroup/SocketMode), handed to
                         ExecStart as standard input (StandardInput=socket), run as User/Group
                         with Environment=
    unit_run.py spawn    otlogin-spawn-fcgi.service: RuntimeDirectory= as the unit makes it,
                         ExecStartPre=+ as root, ExecStart (spawn-fcgi -n) as User/Group
    unit_run.py repd     otlogin-repd.service: ExecStart as User/Group on the installed
                         single host (replication off: it exits with status 1, saying why),
                         then with [replication] on (a copy of the configuration whose db_dir
                         is a directory of its own) until it is the master of a group of one

Then, for the first two: GET /health over FastCGI (cgi-fcgi) as www-data answers 200; as
"nobody", another local account, the socket refuses the connection (FastCGI trusts what its
peer sends, REMOTE_ADDR included); SIGTERM stops the service with status 0 and no worker left.
The sandboxing directives (ProtectSystem=, SystemCallFilter=...) need systemd itself: they
are checked by systemd-analyze verify only.

Prints "ok - ..." / "not ok - ..." lines; exit status 1 when any check failed.
"""

import grp
import json
import os
import pwd
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time

UNITS = "/lib/systemd/system"
FAILED = []


def report(ok, what, detail=""):
    print("%s - %s" % ("ok" if ok else "not ok", what), flush=True)
    if not ok:
        FAILED.append(what)
        for line in str(detail).splitlines()[-30:]:
            print("#   " + line, flush=True)


def parse_unit(name):
    """Key -> list of values (systemd keys may repeat; an empty value resets the list)."""
    keys = {}
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            if v == "":
                keys[k] = []
            else:
                keys.setdefault(k, []).append(v)
    return keys


def one(keys, k, default=None):
    v = keys.get(k)
    return v[-1] if v else default


def environment(keys):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for line in keys.get("Environment", []):
        for word in shlex.split(line):
            k, _, v = word.partition("=")
            env[k] = v
    return env


def as_user(user, group):
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid

    def become():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(pw.pw_uid)
        os.umask(int(UMASK, 8))
    return become


UMASK = "0022"


def fcgi_health(sock, user):
    """GET /cis/health over FastCGI as `user`: (returncode, output)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cis",
           "PATH_INFO": "/health", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
           "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1",
           "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
    p = subprocess.run(["runuser", "-u", user, "--", "cgi-fcgi", "-bind", "-connect", sock],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def workers():
    out = subprocess.run(["pgrep", "-f", "^/usr/libexec/otlogin/otlogin.fcgi"],
                         stdout=subprocess.PIPE).stdout.split()
    return [int(p) for p in out]


def wait_health(sock, log):
    for _ in range(100):
        if os.path.exists(sock):
            rc, out = fcgi_health(sock, "www-data")
            if rc == 0 and "200" in out.split("\r\n", 1)[0] + out[:200]:
                return True, out
        time.sleep(0.1)
    return False, open(log).read() if os.path.exists(log) else "no log"


def check_running(name, sock, proc, log, owner_desc, argv):
    n = int(argv[argv.index("-w") + 1])
    ok, out = wait_health(sock, log)
    report(ok, "%s: GET /health over the socket as www-data" % name, out)
    pids = workers()
    uids = set()
    maintainers = []
    for pid in pids:
        try:
            uids.add(os.stat("/proc/%d" % pid).st_uid)
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"-M" in f.read().split(b"\0"):
                    maintainers.append(pid)
        except OSError:
            pass
    want = pwd.getpwnam("otlogin").pw_uid
    # A worker starts the maintainer (-M) once it has served: it may or may not be up yet.
    report(len(pids) - len(maintainers) == n + 1 and len(maintainers) <= 1 and uids == {want},
           "%s: the supervisor and its %d workers (and their maintainer) run as otlogin"
           % (name, n), "pids %s (maintainer %s) uids %s" % (pids, maintainers, uids))
    rc, out = fcgi_health(sock, "nobody")
    report(rc != 0 and "Status: 200" not in out and '"status"' not in out,
           "%s: another local account (nobody) cannot use the socket (%s)" % (name, owner_desc),
           out)
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = "did not stop"
    for _ in range(50):
        if not workers():
            break
        time.sleep(0.1)
    left = workers()
    report(status == 0 and not left, "%s: SIGTERM stops it, status 0, no worker left" % name,
           "status %s, left %s\n%s" % (status, left, open(log).read()))


def run_socket_pair(logdir):
    global UMASK
    sk = parse_unit("otlogin.socket")
    sv = parse_unit("otlogin.service")
    path = one(sk, "ListenStream")
    report(one(sv, "StandardInput") == "socket" and one(sv, "StandardOutput") == "journal",
           "otlogin.service: the socket on standard input, the log not on it")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(128)
    os.chown(path, pwd.getpwnam(one(sk, "SocketUser")).pw_uid,
             grp.getgrnam(one(sk, "SocketGroup")).gr_gid)
    os.chmod(path, int(one(sk, "SocketMode"), 8))
    UMASK = one(sv, "UMask", "0022")
    argv = shlex.split(one(sv, "ExecStart"))
    log = os.path.join(logdir, "otlogin.service.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdin=s.fileno(), stdout=out, stderr=out,
                                env=environment(sv),
                                preexec_fn=as_user(one(sv, "User"), one(sv, "Group")))
    s.close()
    try:
        check_running("otlogin.socket/otlogin.service", path, proc, log,
                      "%s:%s %s" % (one(sk, "SocketUser"), one(sk, "SocketGroup"),
                                    one(sk, "SocketMode")), argv)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(path)


def run_spawn(logdir):
    global UMASK
    sv = parse_unit("otlogin-spawn-fcgi.service")
    user, group = one(sv, "User"), one(sv, "Group")
    rundir = "/run/" + one(sv, "RuntimeDirectory")
    os.makedirs(rundir, exist_ok=True)
    os.chown(rundir, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(rundir, int(one(sv, "RuntimeDirectoryMode", "0755"), 8))
    log = os.path.join(logdir, "otlogin-spawn-fcgi.service.log")
    proc = None
    try:
        for pre in sv.get("ExecStartPre", []):
            assert pre.startswith("+"), "ExecStartPre without + runs as " + user
            subprocess.run(shlex.split(pre[1:]), check=True)
        UMASK = one(sv, "UMask", "0022")
        argv = shlex.split(one(sv, "ExecStart"))
        sock = argv[argv.index("-s") + 1]
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=environment(sv), preexec_fn=as_user(user, group))
        st = os.stat(rundir)
        check_running("otlogin-spawn-fcgi.service", sock, proc, log,
                      "%s %s:%s %o" % (rundir, pwd.getpwuid(st.st_uid).pw_name,
                                       grp.getgrgid(st.st_gid).gr_name,
                                       stat.S_IMODE(st.st_mode)), argv)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        subprocess.run(["rm", "-rf", rundir])


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def run_repd(logdir):
    global UMASK
    sv = parse_unit("otlogin-repd.service")
    user, group = one(sv, "User"), one(sv, "Group")
    UMASK = one(sv, "UMask", "0022")
    argv = shlex.split(one(sv, "ExecStart"))
    report(argv[-1] == "replicate" and "-c" in argv and one(sv, "Restart") == "always",
           "otlogin-repd.service: otloginctl -c CONF replicate, Restart=always", argv)
    # The installed configuration has replication off: the process refuses to run (which is
    # why the unit is shipped disabled: enabled on a single host it would only restart).
    p = subprocess.run(argv, env=environment(sv), preexec_fn=as_user(user, group),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    report(p.returncode == 1 and "replication" in out,
           "otlogin-repd.service on a single host (replication off): exit status 1, saying why",
           "status %s\n%s" % (p.returncode, out))
    # With [replication] on, in a directory of its own (the installed database stays a
    # single host's): it runs as User=, becomes the master of a group of one, and SIGTERM
    # stops it with status 0.
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid
    conf = argv[argv.index("-c") + 1]
    d = "/var/lib/otlogin/repd-test"
    subprocess.run(["rm", "-rf", d])
    os.makedirs(os.path.join(d, "db"))
    for x in (d, os.path.join(d, "db")):
        os.chown(x, pw.pw_uid, gid)
        os.chmod(x, 0o700)
    with open(conf) as f:
        text = f.read()
    lines = ["db_dir = %s/db" % d if ln.split("=")[0].strip() == "db_dir" else ln
             for ln in text.splitlines()]
    lines += ["[replication]", "enabled = yes", "local = 127.0.0.1:%d" % free_port(),
              "peers = 127.0.0.1:%d" % free_port(), "creator = yes", ""]
    conf2 = os.path.join(d, "otlogin.conf")
    with open(conf2, "w") as f:
        f.write("\n".join(lines))
    os.chown(conf2, pw.pw_uid, gid)
    argv2 = [conf2 if a == conf else a for a in argv]
    log = os.path.join(logdir, "otlogin-repd.service.log")
    proc = None
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(argv2, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=environment(sv), preexec_fn=as_user(user, group))
        status = None
        for _ in range(150):
            if proc.poll() is not None:
                break
            r = subprocess.run(["runuser", "-u", user, "--", argv[0], "-c", conf2,
                                "replication", "status", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
            try:
                status = json.loads(r.stdout)
            except ValueError:
                status = None
            if status and status.get("role") == "master" and status.get("repd") == "running":
                break
            time.sleep(0.2)
        uid = os.stat("/proc/%d" % proc.pid).st_uid if proc.poll() is None else None
        report(bool(status) and status.get("role") == "master" and uid == pw.pw_uid,
               "otlogin-repd.service with [replication] on: runs as %s, master of its group"
               % user, "%r uid %r\n%s" % (status, uid, open(log).read()))
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = "did not stop"
        report(rc == 0, "otlogin-repd.service: SIGTERM stops it, status 0",
               "status %s\n%s" % (rc, open(log).read()))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", d])


def main():
    logdir = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
    if sys.argv[1] == "socket":
        run_socket_pair(logdir)
    elif sys.argv[1] == "repd":
        run_repd(logdir)
    else:
        run_spawn(logdir)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
