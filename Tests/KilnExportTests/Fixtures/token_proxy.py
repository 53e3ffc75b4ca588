"""An authenticating front for a loopback registry, for kiln's push tests: the registry itself
(docker-registry) needs a signing certificate for token auth and bcrypt for htpasswd, so this
plays the part a real registry's auth server plays.

usage: token_proxy.py UPSTREAM_PORT PORTFILE USER PASSWORD MODE [FAULTS]
MODE bearer: /v2/ requests without a valid token get 401 and a
  `WWW-Authenticate: Bearer realm=".../token",service=...,scope=...` challenge; /token issues a
  token for the scope asked, to the right Basic credentials only.
MODE basic: /v2/ requests without the right Basic credentials get 401 and `Basic realm=...`.
Authorised requests are forwarded to the registry; Location headers are made relative, as some
registries send them. Writes its port to PORTFILE; logs one line per request to stdout (with
the Range asked for, if any).
FAULTS names a file read on every request, one fault per line: corrupt-blobs (blob bytes
changed, length kept), cut-blobs-once (the first answer to each blob GET stops half-way and the
connection closes), fail-ranges-from=N (blob GETs for ranges starting at or after N get 500).
"""
import base64
import http.client
import http.server
import json
import os
import secrets
import sys
import urllib.parse

upstream_port, port_file, user, password, mode = (
    int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
faults_file = sys.argv[6] if len(sys.argv) > 6 else None
SERVICE = "kiln-test-registry"
tokens = {}  # token -> scope it was issued for
cut_already = set()  # blob paths whose first answer was cut


def faults():
    if not faults_file or not os.path.exists(faults_file):
        return set()
    with open(faults_file) as f:
        return {line.strip() for line in f if line.strip()}


def log(line):
    print(line, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def basic_ok(self):
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def issue_token(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        scopes = query.get("scope", [])
        ok = self.basic_ok() and query.get("service") == [SERVICE] and scopes
        log(f"TOKEN scope={' '.join(scopes)} granted={bool(ok)}")
        if not ok:
            error = {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}
            self.reply(401, json.dumps(error).encode(), [("Content-Type", "application/json")])
            return
        token = secrets.token_hex(16)
        tokens[token] = " ".join(scopes)
        payload = {"access_token": token, "expires_in": 300}
        self.reply(200, json.dumps(payload).encode(), [("Content-Type", "application/json")])

    def scope(self):
        parts = urllib.parse.urlsplit(self.path).path.split("/")
        # /v2/<name...>/(blobs|manifests|tags)/...
        for i, part in enumerate(parts):
            if i > 2 and part in ("blobs", "manifests", "tags"):
                name = "/".join(parts[2:i])
                actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                return f"repository:{name}:{actions}"
        return None

    def authorised(self, scope):
        if mode == "basic":
            return self.basic_ok()
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        granted = tokens.get(header[7:])
        if granted is None:
            return False
        if scope is None:
            return True
        name, actions = scope.rsplit(":", 1)
        for each in granted.split(" "):
            granted_name, granted_actions = each.rsplit(":", 1)
            if granted_name == name and set(actions.split(",")) <= set(granted_actions.split(",")):
                return True
        return False

    def handle_any(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            self.issue_token()
            return
        body = self.body()
        scope = self.scope()
        if not self.authorised(scope):
            log(f"DENIED {self.command} {path}")
            if mode == "basic":
                challenge = 'Basic realm="kiln-test"'
            else:
                realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                challenge = f'Bearer realm="{realm}",service="{SERVICE}"'
                if scope:
                    challenge += f',scope="{scope}"'
            error = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            self.reply(401, json.dumps(error).encode(),
                       [("WWW-Authenticate", challenge), ("Content-Type", "application/json")])
            return
        active = faults()
        is_blob_get = self.command == "GET" and "/blobs/sha256:" in path
        asked = self.headers.get("Range", "")
        if is_blob_get:
            start = int(asked[6:].split("-")[0]) if asked.startswith("bytes=") else 0
            for fault in active:
                if fault.startswith("fail-ranges-from=") and start >= int(fault.split("=")[1]):
                    log(f"FAULT 500 {path} {asked}")
                    self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
                    return
        connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        headers = {}
        for name, value in self.headers.items():
            if name.lower() in ("authorization", "expect"):
                continue
            # Clients send Accept once per media type (skopeo does): all of them go on.
            headers[name] = headers[name] + ", " + value if name in headers else value
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        log(f"FORWARDED {self.command} {path} {response.status}" + (f" {asked}" if asked else ""))
        if is_blob_get and response.status in (200, 206) and data:
            if "corrupt-blobs" in active:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                log(f"FAULT corrupted {path}")
            if "cut-blobs-once" in active and path not in cut_already and len(data) > 1:
                cut_already.add(path)
                log(f"FAULT cut {path} after {len(data) // 2} of {len(data)} bytes")
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                connection.close()
                return
        out = []
        for name, value in response.getheaders():
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            if name.lower() == "location":
                parts = urllib.parse.urlsplit(value)
                value = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
            out.append((name, value))
        if self.command == "HEAD":
            self.send_response(response.status)
            for name, value in out:
                self.send_header(name, value)
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
            self.end_headers()
        else:
            self.reply(response.status, data, out)
        connection.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
