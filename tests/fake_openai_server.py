"""A local HTTP server that serves GPT-2 files in OpenAI's layout, and misbehaves to order.

    server = FakeGPT2Server(files_root, prefix="gpt-2/models").start()
    server.url  ->  "http://127.0.0.1:<port>/gpt-2/models"; a file is at {url}/{size}/{name}

files_root holds <size>/<name>. Every answer carries an ETag (a hash of the bytes served) and honours
Range with If-Range as a real server does: the rest of the file only if If-Range names the current
ETag, else the whole file (200).

Faults:
- `status_for_all`: answer every request with this code.
- `queued_statuses[name]`: answer the next requests for a file with these codes, one each.
- `replace_body[name]`: serve these bytes for the file (another revision: its ETag differs too).
- `ignore_range`: answer Range requests with the whole file, 200.
- `delay`: seconds to wait before answering any request.
- `faults[name]`: a list; each GET of the file uses up the first one:
    ("cut", n)        send n bytes of an honest Content-Length, then drop the connection
    "long"            a body longer than its Content-Length (which claims half the bytes)
    "no_length"       no Content-Length; the whole body, then close
    "no_length_cut"   no Content-Length; half the body, then close
    "bad_length"      Content-Length: unknown
    "superscript_length"  Content-Length: ² (a digit to str.isdigit, not to int)
    "chunked_cut"     Transfer-Encoding: chunked, dropped in the middle of a chunk
    "html"            200 with a sign-in page, Content-Type text/html
    "html_as_file"    200 with an HTML page, Content-Type application/octet-stream
    "redirect_loop"   302 to the same URL, for ever
    ("redirect", url) 302 to that address (say file:///etc/passwd)
    "stall"           headers and a third of the body, then silence for `stall_seconds`
    "trickle"         the body in 64-byte pieces, 0.1 s apart
`requests` records a Request(method, file, range, if_range, status) for every request, and
`after_request`, if set, is called with it (to change the server between two requests).

With hub=True it answers as the Hugging Face Hub does: files_root holds <repo>/<name> (for example
openai-community/gpt2-large/model.safetensors), served at {url}/<repo>/resolve/<revision>/<name>.
A large file (.safetensors) is answered there with a 302 to {url}/storage/<repo>/<name>?signature=<n>
(a new signature each time, like the Hub's signed storage URLs), carrying X-Linked-Etag (the SHA-256
of the file), X-Linked-Size and X-Repo-Commit; the storage address then serves the bytes, with the
faults above. Small files (config.json) are served at their resolve address directly.
- `storage_body[name]`: bytes the storage serves instead of the file, while the redirect still names
  the file's SHA-256 (bytes damaged between the Hub and its storage).
- `revisions`: the revisions a resolve address may name (any, if None).
- `commit`: the revision the Hub names in X-Repo-Commit (on the redirect, and on small files' answers).
- `name_no_sha256`: leave X-Linked-Etag out of the redirect (a mirror that does not name the hash).
- `storage_headers[name]`: more headers on the storage's answer (say an X-Linked-Etag of its own).
- `redirect_to[name]`: the address the redirect points to instead of the storage (another host).
"""

import collections
import hashlib
import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Request = collections.namedtuple("Request", "method file range if_range status")


class FakeGPT2Server:
    def __init__(self, files_root, prefix, hub=False):
        self.files_root, self.prefix, self.hub = Path(files_root), prefix.strip("/"), hub
        self.storage_body = {}
        self.storage_headers = {}
        self.redirect_to = {}
        self.name_no_sha256 = False
        self.revisions = None
        self.commit = hashlib.sha1(str(self.files_root).encode()).hexdigest()  # the revision a hub names
        self._signatures = itertools.count()
        self.requests = []
        self.status_for_all = None
        self.queued_statuses = {}
        self.replace_body = {}
        self.ignore_range = False
        self.delay = 0.0
        self.faults = {}
        self.stall_seconds = 3.0
        self.after_request = None  # called with each Request once it is recorded
        self._stopping = threading.Event()
        self._httpd = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/{self.prefix}"

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so that chunked bodies are legal

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                server._answer(self, head=True)

            def do_GET(self):
                try:
                    server._answer(self, head=False)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a stalled or trickling answer, as it should

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self):
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _hub_file(self, inside):
        """(<repo>/<name>, whether asked at the storage address) for a Hub path, or (None, False)."""
        if inside.startswith("storage/"):
            return inside.removeprefix("storage/"), True
        repo, resolve, rest = inside.partition("/resolve/")
        revision, _, name = rest.partition("/")
        if not resolve or not name or (self.revisions is not None and revision not in self.revisions):
            return None, False
        return f"{repo}/{name}", False

    def gets(self, name):
        """The GET requests for one file: [(range header, status), ...]."""
        return [(request.range, request.status) for request in self.requests
                if request.method == "GET" and request.file == name]

    def _answer(self, handler, head):
        if self.delay:
            time.sleep(self.delay)
        relative = handler.path.lstrip("/").split("?", 1)[0]
        name = relative.rsplit("/", 1)[-1]
        range_header, if_range = handler.headers.get("Range"), handler.headers.get("If-Range")

        def record(code):
            self.requests.append(Request(handler.command, name, range_header, if_range, code))
            if self.after_request is not None:
                self.after_request(self.requests[-1])

        def send(code, headers, payload=b""):
            record(code)
            handler.send_response(code)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Connection", "close")
            handler.end_headers()
            if payload and not head:
                handler.wfile.write(payload)

        if not relative.startswith(self.prefix + "/"):
            return send(404, {"Content-Length": "0"})
        if self.status_for_all is not None:
            return send(self.status_for_all, {"Content-Length": "0"})
        if self.queued_statuses.get(name):
            return send(self.queued_statuses[name].pop(0), {"Content-Length": "0"})
        inside = relative[len(self.prefix) + 1:]
        if self.hub:
            inside, from_storage = self._hub_file(inside)
            if inside is None:
                return send(404, {"Content-Length": "0"})
        path = self.files_root / inside
        if not path.is_file():
            return send(404, {"Content-Length": "0"})
        body = self.replace_body.get(name, path.read_bytes())
        if self.hub and name.endswith(".safetensors"):
            if not from_storage:  # the Hub's answer for a large file: where to get it, and its hash
                location = self.redirect_to.get(
                    name, f"/{self.prefix}/storage/{inside}?signature={next(self._signatures)}")
                return send(302, {"Location": location, "Content-Length": "0",
                                  **({} if self.name_no_sha256 else
                                     {"X-Linked-Etag": '"' + hashlib.sha256(body).hexdigest() + '"'}),
                                  "X-Linked-Size": str(len(body)), "X-Repo-Commit": self.commit})
            body = self.storage_body.get(name, body)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        fault = self.faults[name].pop(0) if self.faults.get(name) and not head else None

        if fault == "redirect_loop":
            return send(302, {"Location": handler.path, "Content-Length": "0"})
        if isinstance(fault, tuple) and fault[0] == "redirect":
            return send(302, {"Location": fault[1], "Content-Length": "0"})
        if fault in ("html", "html_as_file"):
            page = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>\n"
            content_type = "text/html; charset=utf-8" if fault == "html" else "application/octet-stream"
            return send(200, {"Content-Type": content_type, "Content-Length": str(len(page))}, page)

        start = 0
        if range_header and not self.ignore_range and not head and (if_range is None or if_range == etag):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                return send(416, {"Content-Length": "0"})
        status = 206 if start else 200
        payload = body[start:]
        headers = {"ETag": etag, "Content-Type": "application/octet-stream"}
        if self.hub and not from_storage:
            headers["X-Repo-Commit"] = self.commit  # the Hub names its revision on every answer
        if self.hub and from_storage:
            headers |= self.storage_headers.get(name, {})
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        honest_length = {"Content-Length": str(len(payload))}

        if fault is None:
            return send(status, headers | honest_length, payload)
        if isinstance(fault, tuple) and fault[0] == "cut":
            return send(status, headers | honest_length, payload[:fault[1]])
        if fault == "long":
            return send(status, headers | {"Content-Length": str(len(payload) // 2)}, payload)
        if fault == "no_length":
            return send(status, headers, payload)
        if fault == "no_length_cut":
            return send(status, headers, payload[:len(payload) // 2])
        if fault == "bad_length":
            return send(status, headers | {"Content-Length": "unknown"}, payload)
        if fault == "superscript_length":
            return send(status, headers | {"Content-Length": "\u00b2"}, payload)
        if fault == "chunked_cut":
            half = payload[:len(payload) // 2]
            chunk = b"%x\r\n" % len(payload) + half  # announces the whole payload, sends half
            return send(status, headers | {"Transfer-Encoding": "chunked"}, chunk)
        if fault == "stall":
            send(status, headers | honest_length, payload[:len(payload) // 3])
            handler.wfile.flush()
            self._stopping.wait(self.stall_seconds)
            return None
        if fault == "trickle":
            send(status, headers | honest_length)
            for offset in range(0, len(payload), 64):
                if self._stopping.wait(0.1):
                    return None
                handler.wfile.write(payload[offset:offset + 64])
                handler.wfile.flush()
            return None
        raise ValueError(f"unknown fault {fault!r}")


def unused_local_port():
    """A port on 127.0.0.1 where nothing listens (bound once to find it, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
