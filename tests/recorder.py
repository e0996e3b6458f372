#!/usr/bin/python3
"""Two small servers on 127.0.0.1 for the tests, each recording what
reaches it, one line per request, in --record (appended, flushed).

--mode proxy: an HTTP proxy that tunnels CONNECT to 127.0.0.1 (and
refuses any other target or method). It records "CONNECT host:port"
for every request, so a test can tell whether a client used the proxy
that its environment names; it never sees inside the TLS it tunnels.

--mode redirect --cert C --key K --location URL: an HTTPS server that
answers every request with HTTP 302 to URL, as a web server or a
captive portal at a wrong authority would. It records "POST /path".

It writes the port it listens on to --port-file when ready.
"""

import argparse
import os
import select
import socket
import ssl
import sys
import threading


def record(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def relay(a, b):
    socks = [a, b]
    while True:
        r, _, _ = select.select(socks, [], [], 60)
        if not r:
            return
        for s in r:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


def proxy(conn, args):
    try:
        head = read_head(conn)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        record(args.record, line.rsplit(" ", 1)[0] if " HTTP/" in line
               else line)
        parts = line.split()
        if len(parts) < 2 or parts[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return
        host, _, port = parts[1].rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return
        up = socket.create_connection(("127.0.0.1", int(port)), 5)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            relay(conn, up)
        finally:
            up.close()
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def redirect(conn, args, ctx):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        head = read_head(tls)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        record(args.record, line.rsplit(" ", 1)[0])
        # read the request body: closing on unread data would reset
        hdrs, _, rest = head.partition(b"\r\n\r\n")
        length = 0
        for h in hdrs.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while len(rest) < length:
            chunk = tls.recv(65536)
            if not chunk:
                break
            rest += chunk
        # an error body of the shape Entra uses: a 3xx must not be
        # taken for a refusal whatever it carries
        body = b'{"error":"invalid_client","error_codes":[7000215]}'
        tls.sendall(b"HTTP/1.1 302 Found\r\nLocation: " +
                    args.location.encode() +
                    b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " +
                    str(len(body)).encode() +
                    b"\r\nConnection: close\r\n\r\n" + body)
        tls.close()
    except (OSError, ValueError, ssl.SSLError):
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("proxy", "redirect"), required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--location", default="https://login.example.test/")
    args = ap.parse_args()
    ctx = None
    if args.mode == "redirect":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    open(args.record, "a").close()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.rename(args.port_file + ".tmp", args.port_file)
    while True:
        conn, _ = srv.accept()
        if ctx is None:
            t = threading.Thread(target=proxy, args=(conn, args))
        else:
            t = threading.Thread(target=redirect, args=(conn, args, ctx))
        t.daemon = True
        t.start()


if __name__ == "__main__":
    sys.exit(main())
