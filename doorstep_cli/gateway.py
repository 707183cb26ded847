"""The development SMS gateway of `make run`: takes what identity and notify would text
and prints it (sign-in codes among them), so a developer signs in with the code shown."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Printing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            to = str(body.get("recipient", "?")).removeprefix("phone:")
            print(f"sms to {to}: {body.get('body', '')}", flush=True)
            status = 200
        except (ValueError, TypeError):
            status = 400
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Printing)
    print(f"development SMS gateway on http://127.0.0.1:{port}/sms: texts are printed here")
    server.serve_forever()
