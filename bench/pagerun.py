"""Call a bench page's entry function (window.runBench, runTransformersJs, runKernels) in Chromium and get its
value: through Playwright where it is installed, or without it (hosts with Python only, e.g. a GPU host):
Chromium started on the page's URL, the page fetching its job from and POSTing its value to a small stdlib
HTTP server here (bench/pagecall.js, added to the page as it is served).

Both runners give `call(html, fn, config) -> value` and `version`; an error in the page raises PageError."""

import contextlib
import itertools
import json
import os
import queue
import re
import shlex
import subprocess
import tempfile
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path

from janusweb.errors import UserError
from janusweb.site import Handler, resolve, serve_in_thread, site_roots

BASE_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_S = 3600
PAGECALL = Path(__file__).with_name("pagecall.js")
DRIVERS = ("auto", "playwright", "http")


def browser_params() -> tuple:
    """The parameters every scenario that runs a page takes: which Chromium, a prebuilt page, how it is driven."""
    from janusweb.bench.scenario import Param
    return (Param("browser", str, None, "Chromium/Chrome executable (default: Debian's chromium)", multi=False),
            Param("page", Path, None, "an already built page (web/build.mjs --bench --outdir DIR), for hosts "
                                      "without node", multi=False),
            Param("driver", str, "auto", "how Chromium is driven: playwright, or http (no Playwright)", multi=False,
                  choices=DRIVERS))


class PageError(RuntimeError):
    """The page's entry function threw, or the page never answered."""


def browser_args(backend: str) -> list:
    args = BASE_ARGS + shlex.split(os.environ.get("CHROMIUM_GPU_FLAGS", ""))  # set on a GPU host (Vulkan WebGPU)
    if backend == "webgpu" and "--enable-unsafe-webgpu" not in args:
        args.append("--enable-unsafe-webgpu")
    return args


def playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed"
    return None


def pick_driver(driver: str) -> str:
    if driver not in DRIVERS:
        raise UserError(f"unknown browser driver {driver}; known: {', '.join(DRIVERS)}")
    if driver == "auto":
        return "http" if playwright_missing() else "playwright"
    return driver


class PlaywrightRunner:
    def __init__(self, browser, url: str):
        self.browser, self.url, self.version = browser, url, browser.version

    def call(self, html: str, fn: str, config: dict):
        from playwright.sync_api import Error
        tab = self.browser.new_page()
        try:
            tab.goto(self.url + html)
            tab.wait_for_function(f"typeof window.{fn} === 'function'")
            return tab.evaluate(f"c => {fn}(c)", config)
        except Error as e:
            raise PageError(str(e).splitlines()[0]) from e
        finally:
            tab.close()


class HttpRunner:
    def __init__(self, executable: str, args: list, url: str, handler, headed: bool):
        self.executable, self.args, self.url, self.handler, self.headed = executable, args, url, handler, headed
        self.version = "unknown"
        self.ids = itertools.count(1)

    def call(self, html: str, fn: str, config: dict):
        job = str(next(self.ids))
        self.handler.jobs[job] = {"fn": fn, "config": config}
        self.handler.results[job] = queue.Queue()
        with tempfile.TemporaryDirectory(prefix="janusweb-chromium-") as profile:
            cmd = [self.executable, *self.args, *([] if self.headed else ["--headless"]),
                   f"--user-data-dir={profile}", "--remote-debugging-port=0", f"{self.url}{html}?jwcall={job}"]
            chromium = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                answer = self.handler.results[job].get(timeout=TIMEOUT_S)
            except queue.Empty:
                answer = {"error": f"no answer from {html} within {TIMEOUT_S} s"}
            finally:
                chromium.kill()
                stderr = chromium.communicate()[1]
        ua = answer.get("userAgent", "")
        found = re.search(r"Chrome/([\d.]+)", ua)
        self.version = found.group(1) if found else self.version
        if "error" in answer:
            tail = "; ".join(ln for ln in stderr.splitlines()[-3:] if "dbus" not in ln)
            raise PageError(answer["error"] + (f" (Chromium: {tail})" if tail and "no answer" in answer["error"] else ""))
        return answer["value"]


class CallHandler(Handler):
    """The site's handler, plus the job/result routes and pagecall.js in the pages it serves."""
    jobs: dict = {}
    results: dict = {}

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/__jw/job":
            self._reply(json.dumps(self.jobs[query["id"][0]]).encode(), "application/json")
        elif url.path == "/__jw/pagecall.js":
            self._reply(PAGECALL.read_bytes(), "text/javascript; charset=utf-8")
        elif url.path.endswith(".html") and "jwcall" in query and (target := resolve(self.roots, url.path)):
            tag = b'<script type="module" src="/__jw/pagecall.js"></script>\n'
            self._reply(target.read_bytes().replace(b"</body>", tag + b"</body>"), "text/html; charset=utf-8")
        else:
            super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.results[urllib.parse.parse_qs(url.query)["id"][0]].put(body)
        self.send_response(204)
        self.end_headers()

    def _reply(self, body: bytes, mime: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def page_runner(site: Path, backend: str, executable: str, headed: bool = False, driver: str = "auto"):
    """A runner over the site folder `site` (the page's headers on every response)."""
    args = browser_args(backend)
    if pick_driver(driver) == "playwright":
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            server, url = serve_in_thread(site)
            try:
                browser = p.chromium.launch(executable_path=executable, headless=not headed, args=args)
                try:
                    yield PlaywrightRunner(browser, url)
                finally:
                    browser.close()
            finally:
                server.shutdown()
        return
    handler = type("BenchCallHandler", (CallHandler,), {"roots": site_roots(Path(site)),
                                                         "jobs": {}, "results": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield HttpRunner(executable, args, url, handler, headed)
    finally:
        server.shutdown()
