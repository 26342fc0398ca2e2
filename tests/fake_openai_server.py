"""A local HTTP server that serves GPT-2 files in OpenAI's layout, with faults to order.

    server = FakeGPT2Server(files_root, prefix="gpt-2/models").start()
    server.url  ->  "http://127.0.0.1:<port>/gpt-2/models"; a file is at {url}/{size}/{name}

files_root holds <size>/<name>. Faults: `status_for_all` (answer every request with this code),
`queued_statuses[name]` (answer the next requests for a file with these codes, one each),
`cut_after[name]` (send only this many bytes of the body once, then drop the connection),
`ignore_range` (answer Range requests with the whole file, 200), `replace_body[name]`.
`requests` records (method, file name, Range header, status) for every request.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeGPT2Server:
    def __init__(self, files_root, prefix):
        self.files_root, self.prefix = Path(files_root), prefix.strip("/")
        self.requests = []
        self.status_for_all = None
        self.queued_statuses = {}
        self.cut_after = {}
        self.ignore_range = False
        self.replace_body = {}
        self._httpd = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/{self.prefix}"

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                server._answer(self, head=True)

            def do_GET(self):
                server._answer(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def gets(self, name):
        """The GET requests for one file: [(range header, status), ...]."""
        return [(rng, status) for method, file, rng, status in self.requests
                if method == "GET" and file == name]

    def _answer(self, handler, head):
        relative = handler.path.lstrip("/")
        name = relative.rsplit("/", 1)[-1]
        range_header = handler.headers.get("Range")

        def send_status(code):
            self.requests.append((handler.command, name, range_header, code))
            handler.send_response(code)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        if not relative.startswith(self.prefix + "/"):
            return send_status(404)
        if self.status_for_all is not None:
            return send_status(self.status_for_all)
        if self.queued_statuses.get(name):
            return send_status(self.queued_statuses[name].pop(0))
        path = self.files_root / relative[len(self.prefix) + 1:]
        if not path.is_file():
            return send_status(404)
        body = self.replace_body.get(name, path.read_bytes())

        start = 0
        if range_header and not self.ignore_range and not head:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                return send_status(416)
        status = 206 if start else 200
        self.requests.append((handler.command, name, range_header, status))
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.end_headers()
        if head:
            return
        payload = body[start:]
        if name in self.cut_after and not head:
            payload = payload[: self.cut_after.pop(name)]  # once: the retry gets the rest
            handler.close_connection = True
        handler.wfile.write(payload)


def unused_local_port():
    """A port on 127.0.0.1 where nothing listens (bound once to find it, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
