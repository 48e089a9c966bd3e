"""An app that serves well, then falls sick: after `GOOD` requests it answers every request with
a 500 (SICK=5xx) or accepts connections and never answers (SICK=hang). Each instance counts on
its own, so a replacement serves well again: what a leak or a deadlock looks like."""

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = int(os.environ.get("GOOD", "30"))
SICK = os.environ.get("SICK", "5xx")
served = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global served
        with lock:
            served += 1
            sick = served > GOOD
        if sick and SICK == "hang":
            time.sleep(3600)
        body = b"sick\n" if sick else os.environ.get("BODY", "well\n").encode()
        self.send_response(500 if sick else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
