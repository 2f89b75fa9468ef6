"""A small W3C WebDriver client over urllib: headless Chromium driven by chromedriver, no selenium.

The lab's browser tests and its screenshot script use it; the lab's server does not. Chromium runs
with its network confined to 127.0.0.1 (every other host resolves to nothing, :data:`CHROMIUM_FLAGS`)
and with the performance log on, so a test can list every request the page made.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "chromium and chromedriver not found: apt-get install chromium chromium-driver"
START_TIMEOUT = 20.0  # seconds for chromedriver to answer /status on a loaded 2-core machine


DEBIAN_BINARY = "/usr/lib/chromium/chromium"  # Debian's /usr/bin/chromium is a shell script around it


def find_browser():
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None
    browser = browser or next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One headless Chromium session. Use as a context manager; :meth:`close` ends chromedriver.

    Parameters
    ----------
    width, height : int, the window size in CSS pixels (screenshots have this size).
    """

    def __init__(self, width=1280, height=1000):
        found = find_browser()
        if found is None:
            raise WebDriverError(INSTALL_HINT)
        browser, driver = found
        self.port = free_port()
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=self._log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        try:
            self._wait_ready()
            caps = {"browserName": "chrome",
                    "goog:chromeOptions": {"binary": os.path.realpath(browser),
                                           "args": [*CHROMIUM_FLAGS, f"--window-size={width},{height}"]},
                    "goog:loggingPrefs": {"performance": "ALL"}}
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
            self.session = value["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WebDriverError(f"chromedriver exited with code {self.proc.returncode}")
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.05)
        raise WebDriverError(f"chromedriver did not answer within {START_TIMEOUT:g} s")

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                payload = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            value = payload.get("value", {})
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message', '')[:500]}") from None
        return payload.get("value")

    def _s(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    # ------------------------------------------------------------------ what the tests use
    def get(self, url):
        self._s("POST", "/url", {"url": url})

    def run(self, script, *args):
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page, return its value."""
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, *args, timeout=10.0, what="the page"):
        """Poll ``script`` until it returns a truthy value; return it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise WebDriverError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.02)

    def text(self, css):
        return self.run("const e = document.querySelector(arguments[0]); return e && e.textContent;", css)

    def click(self, css):
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        self._s("POST", f"/element/{next(iter(el.values()))}/click", {})

    def move_pointer(self, css, x, y):
        """Move the mouse to (x, y) CSS pixels from the centre of the element ``css``."""
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        origin = {"element-6066-11e4-a52e-4f735466cecf": next(iter(el.values()))}
        self._s("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                                                  "actions": [{"type": "pointerMove", "duration": 0, "origin": origin,
                                                               "x": int(x), "y": int(y)}]}]})

    def press_pointer(self):
        """Press and release the left mouse button where the pointer is (a click, as pointer events)."""
        self._s("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                                                  "actions": [{"type": "pointerDown", "button": 0},
                                                              {"type": "pointerUp", "button": 0}]}]})

    def screenshot(self, path):
        """Write the viewport as a PNG to ``path`` (atomically)."""
        from ..io.files import atomic_file

        png = base64.b64decode(self._s("GET", "/screenshot"))
        with atomic_file(path, suffix=".png") as f:
            f.write(png)
        return path

    def performance_log(self):
        """Chromium's DevTools network events since the last call (dicts with ``method`` and ``params``)."""
        entries = self._s("POST", "/se/log", {"type": "performance"})
        return [json.loads(e["message"])["message"] for e in entries]

    def close(self):
        if self.session is not None:
            try:
                self._s("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
