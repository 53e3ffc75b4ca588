"""A loopback HTTP server for kiln's download tests: serves one directory, honours
`Range: bytes=N-`, and can stall the first response after some bytes, as a transfer that is
interrupted half way (the client is then cancelled, like a build stopped with Ctrl-C).

usage: range_server.py DIR PORTFILE CUT_AFTER_BYTES
Writes the port it listens on to PORTFILE; logs each request's Range header to stdout.
"""
import http.server
import socketserver
import time
import os
import sys

root, port_file, cut_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = {"cut": cut_after > 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        byte_range = self.headers.get("Range")
        print(f"GET {self.path} range={byte_range}", flush=True)
        if byte_range and byte_range.startswith("bytes=") and byte_range.endswith("-"):
            start = int(byte_range[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if state["cut"]:
            state["cut"] = False
            self.wfile.write(body[:cut_after])
            self.wfile.flush()
            time.sleep(30)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
