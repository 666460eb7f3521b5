#!/usr/bin/python3
"""A direct-TLS PostgreSQL client (as PostgreSQL 17's sslnegotiation=direct):
a TLS ClientHello with ALPN "postgresql" as the very first bytes, then the
startup message inside TLS. Used by tests/test_proxy_tls.sh.

usage: direct_tls_client.py PORT CAFILE QUERY   -> prints the first value
       direct_tls_client.py PORT --raw          -> sends a ClientHello-looking
                                                   record without TLS and prints
                                                   what comes back (an error)
"""
import socket
import ssl
import struct
import sys


def read_msg(s):
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            raise SystemExit("connection closed")
        head += chunk
    kind, n = head[:1], struct.unpack("!i", head[1:])[0]
    body = b""
    while len(body) < n - 4:
        chunk = s.recv(n - 4 - len(body))
        if not chunk:
            raise SystemExit("connection closed")
        body += chunk
    return kind, body


def main():
    port = int(sys.argv[1])
    if sys.argv[2] == "--raw":
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"\x16\x03\x01\x00\x10" + b"\x01" + b"\x00" * 15)
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        sys.stdout.write(data.decode("latin-1"))
        return
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    ctx.set_alpn_protocols(["postgresql"])
    raw = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "postgresql", s.selected_alpn_protocol()
    params = b"user\0postgres\0database\0postgres\0application_name\0direct-tls\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    while True:
        kind, body = read_msg(s)
        if kind == b"E":
            raise SystemExit("error: %r" % body)
        if kind == b"Z":
            break
    q = sys.argv[3].encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
    value = None
    while True:
        kind, body = read_msg(s)
        if kind == b"E":
            raise SystemExit("error: %r" % body)
        if kind == b"D":
            n = struct.unpack("!i", body[2:6])[0]
            value = body[6:6 + n].decode()
        if kind == b"Z":
            break
    s.sendall(b"X\0\0\0\4")
    s.close()
    print(value)


main()
