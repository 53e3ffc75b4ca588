"""EC2's instance metadata service as IMDSv2 answers it, on loopback, for kiln's credential
chain tests: a PUT to /latest/api/token (with a TTL header) gives a session token; every GET
without that token gets 401, as an instance that requires IMDSv2 answers.

usage: imds_server.py PORTFILE ROLE ACCESS_KEY SECRET_KEY SESSION_TOKEN
Writes its port to PORTFILE; logs one line per request: `METHOD PATH STATUS`.
"""
import http.server
import json
import sys
import uuid

port_file, role, access_key, secret_key, session_token = sys.argv[1:6]
tokens = set()


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{self.command} {self.path} {status}", flush=True)

    def do_PUT(self):
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.answer(400)
        token = uuid.uuid4().hex
        tokens.add(token)
        self.answer(200, token.encode())

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") not in tokens:
            return self.answer(401)
        prefix = "/latest/meta-data/iam/security-credentials/"
        if self.path == prefix:
            return self.answer(200, role.encode())
        if self.path == prefix + role:
            body = {
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": access_key, "SecretAccessKey": secret_key,
                "Token": session_token, "Expiration": "2099-01-01T00:00:00Z", "LastUpdated": "2026-01-01T00:00:00Z",
            }
            return self.answer(200, json.dumps(body).encode(), "application/json")
        self.answer(404)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(port_file + ".tmp", port_file)
server.serve_forever()
