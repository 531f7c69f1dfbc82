#!/usr/bin/env python3
"""Local HTTP server for the fetch tests: real photos plus every failure the fetcher must sort.

Listens on 127.0.0.1 on an ephemeral port and prints "PORT <n>" once ready. Routes:
  /img/<name>            a photo from /usr/share/backgrounds/mate (any subfolder)
  /copy/<name>           the same bytes under another URL (exact duplicate)
  /ua/<name>              the photo for User-Agent "lvd-test/1", else 403
  /404, /500             those statuses, always
  /reset                 resets the connection without answering, always
  /resetonce/<name>      resets the first request of each path, then the photo
  /flaky429/<name>       429 on the first request of each path, then the photo
  /redirect/<n>/<name>   n redirects, then the photo
  /loop                  redirects to itself forever
  /stall                 sends headers and a few bytes, then nothing
  /truncated.jpg         the first half of a JPEG photo
  /html                  an HTML page served as image/jpeg
  /bomb.png              a PNG whose header claims 100000x100000 pixels
  /small.png, /medium.png, /wide.png   valid 10x10, 300x200 and 400x40 PNGs
  /data/<path>           a file below the folder given with --root DIR (the benchmark)
  /shuffle/<path>        the same after a random delay of 0-40 ms, so that concurrent answers
                         arrive in random order (a query string is ignored: /shuffle/a.jpg?2
                         is a second URL of the same bytes)
"""
import glob
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MATE = "/usr/share/backgrounds/mate"
PHOTOS = {os.path.basename(p): p for p in glob.glob(os.path.join(MATE, "*", "*"))}
ROOT = None
seen = set()
seen_lock = threading.Lock()


def png(width, height, rows=None):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if rows is not None:
        out += chunk(b"IDAT", zlib.compress(rows))
    return out + chunk(b"IEND", b"")


def solid_png(width, height):
    row = b"\x00" + bytes((x * 7 % 256, 80, 160) [i % 3] for x in range(width) for i in range(3))
    return png(width, height, row * height)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body=b"", ctype="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher gave up (byte cap): expected

    def first_time(self):
        with seen_lock:
            first = self.path not in seen
            seen.add(self.path)
        return first

    def photo(self, name):
        path = PHOTOS.get(name)
        if not path:
            return self.send(404, b"no such photo", "text/plain")
        with open(path, "rb") as f:
            data = f.read()
        ctype = "image/png" if name.endswith(".png") else "image/jpeg"
        self.send(200, data, ctype)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        head = parts[0]
        if head in ("img", "copy") and len(parts) == 2:
            return self.photo(parts[1])
        if head == "shuffle" and ROOT:
            time.sleep(random.random() * 0.04)
            parts = self.path.split("?")[0].strip("/").split("/")
            head = "data"
        if head == "data" and ROOT:
            path = os.path.realpath(os.path.join(ROOT, *parts[1:]))
            if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
                return self.send(404, b"no such file", "text/plain")
            with open(path, "rb") as f:
                return self.send(200, f.read(), "image/jpeg")
        if head == "reset" or (head == "resetonce" and len(parts) == 2 and self.first_time()):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.request.close()
            self.close_connection = True
            return None
        if head == "resetonce":
            return self.photo(parts[1])
        if head == "ua" and len(parts) == 2:
            if self.headers.get("User-Agent") != "lvd-test/1":
                return self.send(403, b"unknown agent", "text/plain")
            return self.photo(parts[1])
        if head == "404":
            return self.send(404, b"not found", "text/plain")
        if head == "500":
            return self.send(500, b"server error", "text/plain")
        if head == "flaky429" and len(parts) == 2:
            if self.first_time():
                return self.send(429, b"slow down", "text/plain", [("Retry-After", "0")])
            return self.photo(parts[1])
        if head == "redirect" and len(parts) == 3:
            n = int(parts[1])
            target = "/img/%s" % parts[2] if n <= 0 else "/redirect/%d/%s" % (n - 1, parts[2])
            return self.send(302, b"", "text/plain", [("Location", target)])
        if head == "loop":
            return self.send(302, b"", "text/plain", [("Location", "/loop")])
        if head == "stall":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff")
            self.wfile.flush()
            time.sleep(60)
            return None
        if head == "truncated.jpg":
            with open(PHOTOS["Garden.jpg"], "rb") as f:
                data = f.read()
            return self.send(200, data[: len(data) // 2], "image/jpeg")
        if head == "html":
            return self.send(200, b"<!doctype html><html><body>not an image</body></html>", "image/jpeg")
        if head == "bomb.png":
            return self.send(200, png(100000, 100000), "image/png")
        if head == "small.png":
            return self.send(200, solid_png(10, 10), "image/png")
        if head == "medium.png":
            return self.send(200, solid_png(300, 200), "image/png")
        if head == "wide.png":
            return self.send(200, solid_png(400, 40), "image/png")
        return self.send(404, b"unknown route", "text/plain")


def main():
    global ROOT
    if len(sys.argv) == 3 and sys.argv[1] == "--root":
        ROOT = os.path.realpath(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    # The test closes our stdin when it is done; stop then, even if it died without killing us.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
