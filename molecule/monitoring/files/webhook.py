"""A webhook receiver for the alert drill: appends each POST body, with the time it
arrived, as one JSON line to the file named on the command line."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[1], "a", encoding="utf-8") as out:
            out.write(json.dumps({"received": time.time(), "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.end_headers()


HTTPServer(("127.0.0.1", 9999), Handler).serve_forever()
