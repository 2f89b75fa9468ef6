"""The lab's HTTP server: the page from ``static/`` and JSON endpoints, on 127.0.0.1 only.

The standard library's :class:`http.server.ThreadingHTTPServer`; no file outside the package is
served and the page asks for nothing outside the server. Endpoints (GET, numbers as query strings):

- ``/api/problem?model=M``: what does not move with q (log p(x), the posterior, its contours);
- ``/api/decomposition?model=M&m1=&m2=&v1=&v2=``: eq.13 for q = N(m, diag e^v);
- ``/api/jensen?...`` (the same q): L_K for K = 1 … 4096;
- ``/api/estimators?f0=``: the reparameterization and score-function table;
- ``/api/trained`` and ``/api/decode?a=&b=``: a checkpoint's latent plane and decoder (with RUN_DIR);
- ``/api/requests``: the requests this server has answered (the browser tests read it).

A bad query is a 400 with a JSON ``error``; nothing is printed per request.
"""
import http.server
import json
import math
import os
import threading
import urllib.parse

from . import views

HOST = "127.0.0.1"
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


class BadQuery(ValueError):
    """A query string the endpoints refuse (HTTP 400)."""


def _number(query, name, lo=-math.inf, hi=math.inf, default=None):
    values = query.get(name)
    if not values:
        if default is None:
            raise BadQuery(f"missing parameter {name}")
        return default
    try:
        value = float(values[0])
    except ValueError:
        raise BadQuery(f"{name} must be a number, got {values[0]!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise BadQuery(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {values[0]!r}")
    return value


class Lab:
    """The state behind the endpoints: the two linear-Gaussian problems and, with a run, its trained model.

    Parameters
    ----------
    trained : :class:`scratchvae.lab.views.Trained` or None
    """

    def __init__(self, trained=None):
        self.problems = {}
        self.trained = trained
        self.estimator_noise = None  # drawn at the first request of the estimators view
        self.requests = []  # (client address, path) of every request answered
        self._lock = threading.Lock()

    def problem(self, query):
        which = (query.get("model") or ["orthogonal"])[0]
        if which not in views.MODELS:
            raise BadQuery(f"model must be one of {', '.join(views.MODELS)}, got {which!r}")
        with self._lock:
            if which not in self.problems:
                self.problems[which] = views.Decomposition(which)
            return self.problems[which]

    def q_of(self, query):
        lo, hi = views.MEAN_RANGE
        vlo, vhi = views.LOGVAR_RANGE
        mean = [_number(query, "m1", lo, hi), _number(query, "m2", lo, hi)]
        logvar = [_number(query, "v1", vlo, vhi), _number(query, "v2", vlo, vhi)]
        return mean, logvar

    def answer(self, path, query):
        """The JSON-ready answer of endpoint ``path``; raises BadQuery or KeyError (unknown path)."""
        if path == "/api/info":
            return {"trained": self.trained is not None, "models": list(views.MODELS),
                    "source": None if self.trained is None else self.trained.source_name}
        if path == "/api/problem":
            return self.problem(query).problem()
        if path == "/api/decomposition":
            return self.problem(query).decomposition(*self.q_of(query))
        if path == "/api/jensen":
            return self.problem(query).jensen(*self.q_of(query))
        if path == "/api/estimators":
            with self._lock:
                if self.estimator_noise is None:
                    self.estimator_noise = views.estimator_noise()
            return views.estimators(_number(query, "f0", *views.F0_RANGE, default=views.est.F0),
                                    noise=self.estimator_noise)
        if path == "/api/requests":
            with self._lock:
                return {"requests": [{"client": c, "path": p} for c, p in self.requests]}
        if path in ("/api/trained", "/api/decode"):
            if self.trained is None:
                raise BadQuery("no run was given: scratchvae lab RUN_DIR")
            if path == "/api/trained":
                return self.trained.points()
            return self.trained.decode(_number(query, "a", -1e3, 1e3), _number(query, "b", -1e3, 1e3, default=0.0))
        raise KeyError(path)

    def log(self, client, path):
        with self._lock:
            self.requests.append((client, path))


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "scratchvae-lab"
    lab = None  # set on the subclass :func:`make_server` builds

    def log_message(self, format, *args):  # quiet: the terminal shows the address and nothing per request
        pass

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj, allow_nan=False).encode("utf-8"), "application/json")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        self.lab.log(self.client_address[0], url.path)
        if url.path.startswith("/api/"):
            query = urllib.parse.parse_qs(url.query)
            try:
                self._json(200, self.lab.answer(url.path, query))
            except BadQuery as e:
                self._json(400, {"error": str(e)})
            except KeyError:
                self._json(404, {"error": f"no endpoint {url.path}"})
            except Exception as e:  # a bug: the page shows it in one line, the server keeps serving
                self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
            return
        name = "index.html" if url.path == "/" else url.path.removeprefix("/static/")
        ext = os.path.splitext(name)[1]
        if "/" in name or ext not in CONTENT_TYPES or not os.path.isfile(os.path.join(STATIC, name)):
            self._send(404, b"not found", "text/plain; charset=utf-8")
            return
        with open(os.path.join(STATIC, name), "rb") as f:
            self._send(200, f.read(), CONTENT_TYPES[ext])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a closed connection is not worth a traceback
        pass


def make_server(lab, port=0):
    """A server for ``lab`` on 127.0.0.1:``port`` (0: any free port); raises OSError if the port is taken."""
    handler = type("LabHandler", (Handler,), {"lab": lab})
    return Server((HOST, port), handler)


def url_of(server):
    return f"http://{HOST}:{server.server_address[1]}/"
