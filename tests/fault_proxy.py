"""Proxies on loopback that make a real server fail on cue, for the fault-injection tests.

- :class:`TcpProxy` relays bytes to a TCP server (PostgreSQL) until it is
  cut: then every open connection is closed and new ones are refused, as
  when the server or the network goes away.
- :class:`S3FaultProxy` relays HTTP requests to an S3 server (moto) and can
  answer some of them with an S3 error instead (a 500, a 503 on the first
  attempt only, a 403), or stop accepting connections after a number of
  object writes; it records every request, with botocore's invocation id and
  attempt number, so that tests can count retries.
"""

import dataclasses
import http.client
import http.server
import re
import socket
import threading
from typing import Callable
from urllib.parse import urlsplit


class TcpProxy:
    """Relay TCP connections from 127.0.0.1:<port> to ``upstream`` until :meth:`cut`."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._stop.is_set():
                    client.close()
                    server.close()
                    return
                self.connections += 1
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Close every relayed connection (both ends) and refuse new ones from now on."""
        self._stop.set()
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=5)

    close = cut


@dataclasses.dataclass
class Request:
    """One HTTP request that reached the S3 proxy, and what it was answered."""

    method: str
    path: str
    invocation: str | None
    attempt: int | None
    status: int | None = None  # None: the connection was dropped without an answer
    ordinal: int = 0  # object writes: 1 for the first object written, the same for its retries

    @property
    def is_object_write(self) -> bool:
        """A PUT of an object (not of a bucket): ``/bucket/key...``."""
        return self.method == "PUT" and self.path.split("?")[0].count("/") >= 2


# Decides the fate of a request: None to relay it, (status, S3 error code) to fail it,
# or "drop" to close the connection without an answer.
Rule = Callable[[Request, "S3FaultProxy"], "tuple[int, str] | str | None"]

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "upgrade", "te"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, add=False)

    def _relay(self) -> None:
        proxy: S3FaultProxy = self.server.proxy
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise AssertionError("the S3 proxy does not relay chunked request bodies")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        attempt = re.search(r"attempt=(\d+)", self.headers.get("amz-sdk-request", ""))
        request = Request(self.command, self.path, self.headers.get("amz-sdk-invocation-id"),
                          int(attempt.group(1)) if attempt else None)
        with proxy.lock:
            if request.is_object_write:
                request.ordinal = proxy._ordinals.setdefault(request.invocation, len(proxy._ordinals) + 1)
            proxy.requests.append(request)
            fate = proxy.rule(request, proxy) if proxy.rule else None
        if fate == "drop":
            self.close_connection = True
            proxy.go_away()
            return
        if fate is not None:
            status, code = fate
            payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                       f"<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>").encode()
            request.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        request.status = response.status
        if response.status < 300 and request.is_object_write:
            with proxy.lock:
                proxy.stored += 1
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                self.send_header(key, value)
        content_length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", content_length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up, or a connection dropped by go_away(): expected here, not worth a traceback.
        pass


class S3FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint; ``rule`` decides which requests fail.

    Parameters
    ----------
    endpoint_url : str
        The real S3 endpoint, e.g. the moto server's ``http://127.0.0.1:<port>``.
    rule : Rule, optional
        Called under a lock for every request; see :data:`Rule`.
    """

    def __init__(self, endpoint_url: str, rule: Rule | None = None):
        parts = urlsplit(endpoint_url)
        self.upstream = (parts.hostname, parts.port)
        self.rule = rule
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.stored = 0  # object writes the upstream accepted
        self._ordinals: dict[str | None, int] = {}
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._server: _Server | None = None
        self.port = 0
        self.come_back()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(sock)

    def come_back(self) -> None:
        """Accept connections again (on the same port after :meth:`go_away`)."""
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def go_away(self) -> None:
        """Stop accepting connections and drop the open ones: the endpoint is gone."""
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for serve_forever to return: not from a handler thread of that loop.
        threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()
        server.socket.close()
        with self._connections_lock:
            open_connections = list(self._connections)
        for sock in open_connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.go_away()

    def object_writes(self) -> list[Request]:
        """The requests that wrote an object (every attempt)."""
        with self.lock:
            return [r for r in self.requests if r.is_object_write]

