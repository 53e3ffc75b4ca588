"""A hostile registry front for kiln's credential tests: one server plays the registry and the
"elsewhere" a redirect points to (a second port: another origin).

usage: redirect_server.py PORTFILE MODE
Registry port: /v2/ without Basic credentials gets 401 `Basic`; with them, MODE decides:
  redirect    307 to the other port (another origin)
  downgrade   a Bearer challenge whose realm is plain http on the other port
Other port: logs `ELSEWHERE <method> <path> auth=<Authorization or ->` and answers 200 (or a
token). Writes the registry's port to PORTFILE; logs one line per request to stdout.
"""
import http.server
import sys
import threading

port_file, mode = sys.argv[1], sys.argv[2]


def log(line):
    print(line, flush=True)


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers=(), body=b""):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Elsewhere(Base):
    def handle_any(self):
        log(f"ELSEWHERE {self.command} {self.path} auth={self.headers.get('Authorization') or '-'}")
        self.reply(200, [("Content-Type", "application/json")], b'{"token": "t"}')

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any


elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
other = elsewhere.server_address[1]


class Registry(Base):
    def handle_any(self):
        auth = self.headers.get("Authorization")
        log(f"REGISTRY {self.command} {self.path} auth={auth or '-'}")
        if mode == "downgrade":
            realm = f'http://127.0.0.1:{other}/token'
            self.reply(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="s",scope="x"')])
        elif not auth:
            self.reply(401, [("WWW-Authenticate", 'Basic realm="kiln-test"')])
        else:
            self.reply(307, [("Location", f"http://127.0.0.1:{other}{self.path}")])

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any


registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(registry.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
registry.serve_forever()
