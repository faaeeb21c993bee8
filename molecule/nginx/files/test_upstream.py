#!/usr/bin/env python3
"""Test-only backend for the nginx scenarios: 200 on every path, the request echoed.
Under /app-headers it sends page headers of its own, as the service does."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the service sends on its pages (the values differ from nginx's on purpose).
APP_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=()",
    "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
    "Content-Security-Policy": "default-src 'none'",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keepalive towards nginx, as the real service
    disable_nagle_algorithm = True  # headers and body go out as two writes

    def _answer(self, status: int = 200) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = len(self.rfile.read(length)) if length else 0
        if self.path == "/big":
            body = json.dumps({"items": ["comic page"] * 400}).encode()
        else:
            body = json.dumps(
                {
                    "path": self.path,
                    "method": self.command,
                    "received": received,
                    "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                    "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                    "authorization": self.headers.get("Authorization"),
                    "server": self.server.server_address[1],
                }
            ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if "/pages/" in self.path:
            self.send_header("Cache-Control", "no-cache")
        if self.path.startswith("/app-headers"):
            for name, value in APP_HEADERS.items():
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer(201 if self.path == "/v1/comics" else 200)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under load
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    Server(("127.0.0.1", port), Handler).serve_forever()
