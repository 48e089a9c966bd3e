"""Hello world on $PORT: the Knative / Cloud Run container contract, standard library only."""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"Hello from {os.environ.get('K_REVISION', 'somewhere')}!\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
