"""A real headless browser for the end-to-end suite: Debian's chromium driven through
chromium-driver by python3-selenium, on 127.0.0.1 only.

    with Browser() as dev:                       # one "device": a fresh, empty profile
        dev.get(link)
        dev.click("button")
        dev.wait_url(target.url)
        dev.console()                            # what the pages logged (CSP reports too)
    Browser(javascript=False)                    # the same with JavaScript turned off

Two Browser objects are two devices: separate temporary profiles (cookies, storage, cache),
so nothing one did is visible to the other. quit() (or leaving the `with`) stops chromedriver
and every chromium process of the profile, checks that none survived (by the profile path
in their command lines: other sessions on the machine may run a chromium of their own) and
removes the profile; a survivor is killed and reported as a BrowserError.

A missing browser is an error, never a skip: a test run that quietly did not drive a browser
must not pass for one that did (./quickstart test installs chromium, chromium-driver and
python3-selenium).

RedirectTarget is the relying party's side of a redirect: a tiny HTTP server on 127.0.0.1
that records every request the browser makes to it and serves a plain page (or one a test
sets, such as an attacker's form).
"""

import http.server
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"  # util-linux, essential in Debian

# Every wait here is bounded by one of these (seconds).
PAGE_TIMEOUT = 30      # a navigation (page load)
WAIT_TIMEOUT = 20      # an element or a URL to appear
COMMAND_TIMEOUT = 60   # one WebDriver command (selenium's HTTP call to chromedriver)
EXIT_TIMEOUT = 15      # chromium's processes to go after quit()

# Browsers that are running, so a test module can make sure none outlives it.
RUNNING = []


class BrowserError(Exception):
    pass


def missing_browser():
    """Reasons no browser can run here (empty list: it can)."""
    why = []
    if not os.access(CHROMIUM, os.X_OK):
        why.append("chromium not installed (Debian package chromium)")
    if not os.access(CHROMEDRIVER, os.X_OK):
        why.append("chromedriver not installed (Debian package chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        why.append("python module selenium missing (Debian package python3-selenium)")
    return why


def require_browser():
    """Raise BrowserError (a test failure, not a skip) when no browser can run here."""
    why = missing_browser()
    if why:
        raise BrowserError("; ".join(why) + " (./quickstart test installs them)")


def profile_pids(marker):
    """Pids of the live processes whose command line holds `marker` (a profile path)."""
    r = subprocess.run(["pgrep", "-f", "--", marker], capture_output=True, text=True,
                       timeout=10)
    if r.returncode not in (0, 1):
        raise BrowserError("pgrep failed: %s" % r.stderr)
    pids = []
    for p in r.stdout.split():
        try:
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            pids.append(int(p))
    return pids


class Browser:
    """One headless chromium with its own fresh profile: one device."""

    _seq = 0
    _seq_lock = threading.Lock()

    def __init__(self, javascript=True, name=None):
        with Browser._seq_lock:
            Browser._seq += 1
            seq = Browser._seq
        self.javascript = javascript
        self.name = name or "device-%d%s" % (seq, "" if javascript else "-nojs")
        self.dir = None
        self.driver = None
        self._driver_pid = None

    @property
    def profile(self):
        return os.path.join(self.dir, "profile")

    def start(self):
        require_browser()
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.remote.remote_connection import RemoteConnection

        self.dir = tempfile.mkdtemp(prefix="otlogin-browser-")
        RUNNING.append(self)
        try:
            opts = webdriver.ChromeOptions()
            opts.binary_location = self._tied(CHROMIUM)
            args = ["--headless=new", "--user-data-dir=" + self.profile,
                    "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync",
                    "--disable-component-update", "--disable-default-apps",
                    "--metrics-recording-only", "--password-store=basic",
                    "--window-size=1024,768", "--lang=en-US"]
            # Chromium refuses to start its sandbox as root; only then do without it.
            if os.geteuid() == 0:
                args.append("--no-sandbox")
            for a in args:
                opts.add_argument(a)
            prefs = {"intl.accept_languages": "en-US,en"}
            if not self.javascript:
                prefs["profile.managed_default_content_settings.javascript"] = 2
            opts.add_experimental_option("prefs", prefs)
            # The console (CSP violations are reported there) for console().
            opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            RemoteConnection.set_timeout(COMMAND_TIMEOUT)
            service = Service(self._tied(CHROMEDRIVER),
                              log_path=os.path.join(self.dir, "chromedriver.log"))
            self.driver = webdriver.Chrome(service=service, options=opts)
            self._driver_pid = service.process.pid
            self.driver.set_page_load_timeout(PAGE_TIMEOUT)
            self.driver.set_script_timeout(PAGE_TIMEOUT)
            self.driver.implicitly_wait(0)
            return self
        except BaseException:
            self.quit()
            raise

    def _tied(self, program):
        """A wrapper of program (in the browser's directory) that runs it with SIGTERM as its
        parent-death signal: when the test runner dies (its watchdog ends it with os._exit,
        or a signal), chromedriver goes with it, and chromium with chromedriver, instead of
        running on. quit() stays the normal way out."""
        if not os.access(SETPRIV, os.X_OK):
            return program
        path = os.path.join(self.dir, os.path.basename(program))
        with open(path, "w") as f:
            f.write('#!/bin/sh\nexec %s --pdeathsig TERM -- %s "$@"\n' % (SETPRIV, program))
        os.chmod(path, 0o755)
        return path

    def quit(self):
        """Stop the browser; raise BrowserError when a process of it had to be killed."""
        if self.dir is None:
            return
        errors = []
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception as e:
                errors.append("quit: %r" % e)
            self.driver = None
        survivors = []
        deadline = time.monotonic() + EXIT_TIMEOUT
        while True:
            survivors = profile_pids(self.profile)
            if self._driver_pid is not None and pid_alive(self._driver_pid):
                survivors.append(self._driver_pid)
            if not survivors or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if survivors:
            errors.append("chromium processes survived quit(): %r" % survivors)
        if self in RUNNING:
            RUNNING.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        if errors:
            raise BrowserError("%s: %s" % (self.name, "; ".join(errors)))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.quit()

    # ---- driving ------------------------------------------------------------------------

    def get(self, url):
        self.driver.get(url)

    @property
    def url(self):
        return self.driver.current_url

    @property
    def title(self):
        return self.driver.title

    def text(self):
        """The visible text of the page."""
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def find(self, css, timeout=WAIT_TIMEOUT):
        """The element matching a CSS selector, waiting for it to appear."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait

        from selenium.common.exceptions import TimeoutException

        try:
            return WebDriverWait(self.driver, timeout).until(
                EC.presence_of_element_located((By.CSS_SELECTOR, css)))
        except TimeoutException:
            pass
        raise BrowserError("%s: no %r within %ss on %s; the page says:\n%s"
                           % (self.name, css, timeout, self.url, self.text()[:800]))

    def find_all(self, css):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css, timeout=WAIT_TIMEOUT):
        """Click the element (a button: the form submits as a person's click would)."""
        self.find(css, timeout).click()

    def submit(self, css, timeout=WAIT_TIMEOUT):
        """Click the submit button of the form that holds the element matching css (a
        person's click: the browser submits the form as it would)."""
        from selenium.webdriver.common.by import By

        form = self.find(css, timeout).find_element(By.XPATH, "./ancestor::form")
        buttons = form.find_elements(By.CSS_SELECTOR, "button:not([type]), button[type=submit], "
                                     "input[type=submit]")
        if not buttons:
            raise BrowserError("%s: the form of %r has no submit button on %s"
                               % (self.name, css, self.url))
        buttons[0].click()

    def type_and_enter(self, css, text, tries=3):
        """Type text into the field and press Enter (the form's implicit submission), in one
        WebDriver command; when the page was replaced before the keys reached it (a page that
        reloads itself), type again into the new one, as a person would."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.keys import Keys

        for attempt in range(tries):
            try:
                self.find(css).send_keys(text + Keys.ENTER)
                return
            except StaleElementReferenceException:
                if attempt == tries - 1:
                    raise

    def type(self, css, text, timeout=WAIT_TIMEOUT):
        el = self.find(css, timeout)
        el.clear()
        el.send_keys(text)
        return el

    def wait_url(self, prefix, timeout=WAIT_TIMEOUT):
        """Wait until the current URL starts with prefix; the URL."""
        deadline = time.monotonic() + timeout
        while True:
            url = self.url
            if url.startswith(prefix):
                return url
            if time.monotonic() >= deadline:
                raise BrowserError("%s: URL %r does not start with %r after %ss; page:\n%s"
                                   % (self.name, url, prefix, timeout, self.text()[:800]))
            time.sleep(0.1)

    def wait_until(self, what, predicate, timeout=WAIT_TIMEOUT):
        """Wait until predicate(self) is true; its value. An element that went away under
        the predicate (the page was being replaced) counts as not yet."""
        from selenium.common.exceptions import (NoSuchElementException,
                                                StaleElementReferenceException,
                                                WebDriverException)

        deadline = time.monotonic() + timeout
        while True:
            try:
                v = predicate(self)
            except (NoSuchElementException, StaleElementReferenceException):
                v = None
            except WebDriverException as e:
                # Chromium's word for an element of a page that is being replaced.
                if "does not belong to the document" not in str(e):
                    raise
                v = None
            if v:
                return v
            if time.monotonic() >= deadline:
                raise BrowserError("%s: %s not within %ss; at %s:\n%s"
                                   % (self.name, what, timeout, self.url, self.text()[:800]))
            time.sleep(0.2)

    def console(self):
        """The browser log entries since the last call ({level, source, message}): console
        messages, CSP violations, failed loads."""
        return self.driver.get_log("browser")

    def cookies(self):
        return self.driver.get_cookies()


def pid_alive(pid):
    """Whether pid is a live process (a zombie has exited: its parent has yet to reap it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def quit_all():
    """Stop every browser still running (a module's tearDown); raise on the first error."""
    first = None
    for b in list(RUNNING):
        try:
            b.quit()
        except BrowserError as e:
            first = first or e
    if first is not None:
        raise first


class RedirectTarget:
    """An HTTP server on 127.0.0.1 standing in for a relying party: it records each request
    (method, path, query as a dict of single values, headers) and answers with the page set
    for its path in .pages (and the extra response headers in .headers), else a plain
    "callback" page."""

    def __init__(self):
        self.requests = []
        self.pages = {}
        self.headers = {}
        self.cond = threading.Condition()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path == "/favicon.ico":  # asked for by the browser itself: no noise
                    self.send_response(204)
                    self.end_headers()
                    return
                query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with target.cond:
                    target.requests.append({
                        "method": self.command, "path": u.path, "raw_query": u.query,
                        "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()},
                        "headers": dict(self.headers), "body": body})
                    target.cond.notify_all()
                page = target.pages.get(u.path)
                if page is None:
                    page = ("<!doctype html><html lang=en><head><title>callback</title></head>"
                            "<body><p>callback reached</p></body></html>")
                data = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in target.headers.get(u.path, {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/callback"):
        return self.origin + path

    def wait(self, path="/callback", timeout=WAIT_TIMEOUT, since=0):
        """The first recorded request for path at index >= since, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests[since:]:
                    if r["path"] == path:
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError("no request for %s%s within %ss (got %r)"
                                       % (self.origin, path, timeout,
                                          [r["path"] for r in self.requests]))
                self.cond.wait(left)

    def hits(self, path="/callback"):
        with self.cond:
            return [r for r in self.requests if r["path"] == path]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
