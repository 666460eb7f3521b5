#!/usr/bin/env python3
"""Records real PostgreSQL conversations as fuzz_pgwire seeds: a relay on
127.0.0.1:LISTEN forwards to 127.0.0.1:UPSTREAM and writes each connection's
traffic as segments [direction][len16 le][bytes] (direction 0 client->server,
1 server->client; long reads are cut into 65535-byte segments) to
OUTDIR/PREFIX-N. Stops after COUNT connections.

  record_pgwire.py LISTEN UPSTREAM OUTDIR PREFIX COUNT
"""
import os, select, socket, struct, sys

listen, upstream, outdir, prefix, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", listen)); ls.listen(16)
print("ready", flush=True)
for n in range(count):
    c, _ = ls.accept()
    s = socket.create_connection(("127.0.0.1", upstream))
    out = bytearray()
    open_ = {c: s, s: c}
    while open_:
        r, _, _ = select.select(list(open_), [], [], 30)
        if not r:
            break
        for x in r:
            data = x.recv(65536)
            if not data:
                open_.clear()
                break
            d = 0 if x is c else 1
            for i in range(0, len(data), 65535):
                part = data[i:i + 65535]
                out += bytes([d]) + struct.pack("<H", len(part)) + part
            open_[x].sendall(data)
    c.close(); s.close()
    with open(os.path.join(outdir, f"{prefix}-{n}"), "wb") as f:
        f.write(out)
