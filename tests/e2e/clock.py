"""A clock the tests move: the FastCGI workers run with libfaketime (Debian package faketime)
preloaded and read their clock offset from a file the test rewrites; lighttpd and otloginctl
keep the real clock (FAKETIME_ONLY_CMDS).

fcgi_stdio swaps environ for each request's parameters, so libfaketime's settings also go to
the workers as request variables (mod_setenv), else it would lose them. Without libfaketime,
ClockStack.faketime is None, the stack runs on the real clock, and the clocked tests skip."""

import glob
import os
import shutil
import tempfile
import time

import harness


def faketime_library():
    """The path of libfaketime.so.1, or None when it is not installed."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                    "/usr/local/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


class ClockStack(harness.Stack):
    """A Stack whose workers run on a clock the test moves (see the module's docstring).
    It composes with other Stack subclasses: class S(ClockStack, OtherStack)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.faketime = faketime_library()
        self.offset = 0
        self.clock_dir = None
        self.clock_file = None

    def _fake_env(self):
        return {"FAKETIME_TIMESTAMP_FILE": self.clock_file, "FAKETIME_NO_CACHE": "1",
                "FAKETIME_DISABLE_SHM": "1"}

    def _write_lighttpd_conf(self):
        super()._write_lighttpd_conf()
        if self.faketime is None:
            return
        q = lambda v: '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
        with open(self.lighttpd_conf, "a") as f:
            f.write('server.modules += ( "mod_setenv" )\n')
            f.write("setenv.add-environment = ( %s )\n"
                    % ", ".join("%s => %s" % (q(k), q(v)) for k, v in self._fake_env().items()))

    def start(self):
        if self.faketime is None:
            return super().start()
        self.clock_dir = tempfile.mkdtemp(prefix="otlogin-e2e-clock-")
        self.clock_file = os.path.join(self.clock_dir, "offset")
        self._write_offset()
        saved = dict(os.environ)
        os.environ.update(self._fake_env())
        os.environ.update({"LD_PRELOAD": self.faketime, "FAKETIME_ONLY_CMDS": "otlogin.fcgi"})
        try:
            super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self

    def stop(self):
        try:
            super().stop()
        finally:
            if self.clock_dir is not None:
                shutil.rmtree(self.clock_dir, ignore_errors=True)
                self.clock_dir = None

    def _write_offset(self):
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+d\n" % self.offset)
        os.replace(tmp, self.clock_file)

    def advance(self, seconds):
        """Move the workers' clock forward (libfaketime only)."""
        if self.faketime is None:
            raise harness.HarnessError("no libfaketime: the clock cannot be moved")
        self.offset += int(seconds)
        self._write_offset()

    def let_pass(self, seconds):
        """Make `seconds` pass for the workers: move the fake clock, or really wait."""
        if self.faketime is not None:
            self.advance(seconds)
        else:
            time.sleep(seconds)
