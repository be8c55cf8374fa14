"""A fault-injecting HTTP proxy in front of the moto S3 server, for tests.

Each request is classified into an S3 call kind (PutObject, UploadPartCopy, ...) from its
method, path, query and headers. Rules answer chosen calls with a fault instead of moto's
answer; everything else is forwarded as is. Counters record the calls seen per kind and the
faults injected, so a test can wait for a run to reach a phase and check what it survived.

    proxy = S3FaultProxy("http://127.0.0.1:5000").start()
    proxy.fail("UploadPartCopy", SLOW_DOWN, times=2)
    proxy.fail("PutObject", Delay(30, forward_first=True), key_contains="/_staging/")

Faults:
- `INTERNAL_ERROR`: 500 InternalError (not forwarded).
- `SLOW_DOWN`: 503 SlowDown (not forwarded).
- `RESET`: the connection is reset (TCP RST) without an answer (not forwarded).
- `TRUNCATE`: forwarded, then moto's answer is cut: the headers (with the full
  Content-Length) and half the body, then the connection closes. A response without a body
  (HEAD, most PUTs) is cut inside its status line.
- `HOLD`: read, never forwarded and never answered (a server that accepted the request and
  hangs), until `release()` or `stop()`: then the connection closes without an answer.
- `Delay(seconds)`: held, then forwarded; if the client went away meanwhile (a killed
  process), the request is dropped and never reaches moto. `forward_first=True` forwards at
  once and holds moto's answer instead (the call took effect; its answer is slow).
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import select
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "CALL_KINDS",
    "Delay",
    "HOLD",
    "INTERNAL_ERROR",
    "RESET",
    "S3FaultProxy",
    "SLOW_DOWN",
    "TRUNCATE",
    "classify",
]

CALL_KINDS = (
    "PutObject",
    "UploadPart",
    "UploadPartCopy",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListObjectsV2",
    "ListMultipartUploads",
    "DeleteObjects",
    "HeadObject",
    "GetObject",
)

INTERNAL_ERROR = "500"
SLOW_DOWN = "503"
RESET = "reset"
TRUNCATE = "truncate"
HOLD = "hold"


@dataclasses.dataclass(frozen=True)
class Delay:
    seconds: float
    forward_first: bool = False

    def __str__(self) -> str:
        return "delay-response" if self.forward_first else "delay"


_ERROR_ANSWERS = {
    INTERNAL_ERROR: (500, "InternalError", "We encountered an internal error. Please try again."),
    SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


def classify(method: str, path: str, headers) -> str:
    """The S3 call kind of a path-style request, e.g. `UploadPartCopy`; `Other` if unknown."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in parts.path.lstrip("/")
    copy = "x-amz-copy-source" in {name.lower() for name in headers.keys()}
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if has_key:
            return "CopyObject" if copy else "PutObject"
    elif method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
    elif method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if has_key:
            return "DeleteObject"
    elif method == "GET":
        if has_key:
            return "ListParts" if "uploadId" in query else "GetObject"
        if "uploads" in query:
            return "ListMultipartUploads"
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
    elif method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    return "Other"


@dataclasses.dataclass
class _Rule:
    kind: str
    fault: object
    times: int | None  # None: every matching call
    key_contains: tuple[str, ...]
    used: int = 0  # calls it answered

    def matches(self, kind: str, target: str) -> bool:
        if kind != self.kind or (self.times is not None and self.used >= self.times):
            return False
        return all(text in target for text in self.key_contains)


class S3FaultProxy:
    """A threaded proxy on 127.0.0.1 (a free port) that forwards to `upstream` with faults."""

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.seen: collections.Counter[str] = collections.Counter()
        self.calls: list[tuple[str, str]] = []  # (kind, path and query) of every call, in order
        self.injected: collections.Counter[tuple[str, str]] = collections.Counter()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._released = threading.Event()  # ends every HOLD
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True).start()
        return self

    def release(self) -> None:
        """End every held call (closed without an answer), and any later one at once."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def fail(self, kind: str, fault, *, times: int | None = 1, key_contains: str | tuple[str, ...] = ()) -> _Rule:
        """Answer the next `times` calls of `kind` (every one if None) with `fault`; returns the
        rule, whose `used` counts the calls it answered.

        `key_contains` limits the rule to calls whose decoded path and query (and, for
        DeleteObjects, whose request body listing the keys) hold that text: a bucket name, a
        key fragment, or a listed prefix (several: all of them). The first rule that applies wins.
        """
        if kind not in CALL_KINDS:
            raise ValueError(f"unknown call kind {kind!r}; one of {', '.join(CALL_KINDS)}")
        if not isinstance(fault, Delay) and fault not in _ERROR_ANSWERS and fault not in (RESET, TRUNCATE, HOLD):
            raise ValueError(f"unknown fault {fault!r}")
        texts = (key_contains,) if isinstance(key_contains, str) else tuple(key_contains)
        rule = _Rule(kind, fault, times, texts)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, *rules: _Rule) -> None:
        """Remove these rules; calls they already hold stay held until their delay ends."""
        with self._lock:
            self._rules = [rule for rule in self._rules if all(rule is not gone for gone in rules)]

    def clear(self) -> None:
        """Remove every rule and reset the counters."""
        with self._lock:
            self._rules.clear()
            self.seen.clear()
            self.calls.clear()
            self.injected.clear()

    def count(self, kind: str, key_contains: str = "") -> int:
        """Calls of `kind` seen so far whose path and query hold `key_contains`."""
        with self._lock:
            return sum(1 for k, target in self.calls if k == kind and key_contains in target)

    def injected_total(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(n for (k, _), n in self.injected.items() if kind is None or k == kind)

    def _take_fault(self, kind: str, target: str):
        with self._lock:
            self.seen[kind] += 1
            self.calls.append((kind, target.partition("\n")[0]))
            for rule in self._rules:
                if rule.matches(kind, target):
                    rule.used += 1
                    self.injected[(kind, str(rule.fault))] += 1
                    return rule.fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 uses it; answers Expect: 100-continue
    proxy: S3FaultProxy

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass  # the connection was reset or closed on purpose

    def _handle(self):
        body = self._read_body()
        kind = classify(self.command, self.path, self.headers)
        target = unquote(self.path)
        if kind == "DeleteObjects":
            target += "\n" + body.decode("utf-8", "replace")
        fault = self.proxy._take_fault(kind, target)
        if fault in _ERROR_ANSWERS:
            self._send_error(*_ERROR_ANSWERS[fault])
        elif fault == RESET:
            self._reset()
        elif fault == HOLD:
            self.proxy._released.wait()
            self.close_connection = True
        elif isinstance(fault, Delay):
            answer = self._forward(body) if fault.forward_first else None
            if self._client_left_within(fault.seconds):
                self.close_connection = True  # a killed client: a held request never reaches moto
                return
            self._send(answer or self._forward(body))
        elif fault == TRUNCATE:
            self._send(self._forward(body), truncate=True)
        else:
            self._send(self._forward(body))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, body: bytes):
        """Send the request to moto; returns (status, reason, headers, body)."""
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        if self.command in ("PUT", "POST") or body:
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.proxy.upstream, timeout=600)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()

    def _send(self, answer, *, truncate: bool = False) -> None:
        status, reason, headers, data = answer
        head = [f"HTTP/1.1 {status} {reason}"]
        for name, value in headers:
            if name.lower() in _HOP_BY_HOP or (name.lower() == "content-length" and self.command != "HEAD"):
                continue
            head.append(f"{name}: {value}")
        if self.command != "HEAD":
            head.append(f"Content-Length: {len(data)}")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            data = b""
        if truncate:
            # Without a body, the cut falls inside the status line: Python's http.client would
            # take a cut inside the headers for their end and accept the answer.
            cut = raw_head + data[: len(data) // 2] if data else raw_head[: raw_head.index(b" ") + 2]
            self.wfile.write(cut)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(raw_head + data)
        self.wfile.flush()

    def _send_error(self, status: int, code: str, message: str) -> None:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", "fault-proxy")]
        self._send((status, http.client.responses[status], headers, xml))

    def _reset(self) -> None:
        """Close the connection with a TCP RST and no answer."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _client_left_within(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client closes its end (e.g. it was killed)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.1))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(min(left, 0.1))  # unexpected early bytes: keep waiting
        return False
