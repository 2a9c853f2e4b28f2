#!/usr/bin/env python3
"""A webhook receiver for trying the dispatcher out: answers 200 OK to every request and
prints it (method, path, the headers the dispatcher sets, the body) on stdout, one block per
request. Standard library only.

    python3 scripts/receiver.py --port 9999
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOWN = ("content-type", "user-agent", "idempotency-key", "authorization",
         "webhook-id", "webhook-timestamp", "webhook-signature")


class Handler(BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)).decode("utf-8", "replace")
        try:
            body = json.dumps(json.loads(body), indent=2)
        except ValueError:
            pass
        headers = {k: v for k, v in self.headers.items() if k.lower() in SHOWN or k.lower().startswith("x-")}
        print(f"{self.command} {self.path}\n{json.dumps(headers, indent=2)}\n{body}\n", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_GET = answer

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=9999, help="port to listen on")
    args = parser.parse_args()
    print(f"receiver listening on http://{args.host}:{args.port}/", flush=True)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
