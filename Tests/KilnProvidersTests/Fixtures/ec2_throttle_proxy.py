"""A front for moto_server that fails chosen EC2 Query API actions the way EC2 does when it is
busy, for kiln's retry tests: moto itself never throttles.

usage: ec2_throttle_proxy.py UPSTREAM_PORT PORTFILE [ACTION:COUNT:KIND ...]
The first COUNT requests for ACTION get, by KIND:
  throttle  HTTP 503 with EC2's RequestLimitExceeded error document
  error500  HTTP 500 with EC2's InternalError error document
  drop      no answer: the connection is reset after the request is read
Everything else is forwarded to moto on UPSTREAM_PORT. Writes its port to PORTFILE; logs one line
per request to stdout: `THROTTLED|FAILED|DROPPED|FORWARDED ACTION [STATUS] token=CLIENT_TOKEN`.
"""
import http.client
import http.server
import os
import socket
import struct
import sys
import threading
import urllib.parse

upstream_port, port_file = int(sys.argv[1]), sys.argv[2]
rules = {}  # action -> [remaining, kind]
for rule in sys.argv[3:]:
    action, count, kind = rule.split(":")
    rules[action] = [int(count), kind]
lock = threading.Lock()
serial = 0

ERRORS = {
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "error500": (500, "InternalError", "An internal error has occurred."),
}


def log(line):
    print(line, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: a connection per request, so a dropped answer is never a reused connection
    # that the client's HTTP library quietly retries on its own.
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global serial
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        form = urllib.parse.parse_qs(body.decode("utf-8"))
        action = form.get("Action", ["?"])[0]
        token = form.get("ClientToken", ["-"])[0]
        with lock:
            serial += 1
            number = serial
            rule = rules.get(action)
            kind = None
            if rule and rule[0] > 0:
                rule[0] -= 1
                kind = rule[1]
        if kind == "drop":
            log(f"DROPPED {action} token={token}")
            # SO_LINGER 0: close sends a reset, which the client sees as a lost connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if kind in ERRORS:
            status, code, message = ERRORS[kind]
            log(f"{'THROTTLED' if kind == 'throttle' else 'FAILED'} {action} {status} token={token}")
            document = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>kiln-proxy-{number}</RequestID></Response>"
            )
            self.reply(status, document.encode(), "text/xml;charset=UTF-8")
            return
        connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
        connection.request("POST", self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        log(f"FORWARDED {action} {response.status} token={token}")
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        connection.close()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
