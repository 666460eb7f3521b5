#!/usr/bin/python3
"""psycopg2 through the capture proxy: startup options (search_path), client-side
parameters, a named (server-side) cursor with itersize, COPY FROM STDIN (text and
csv) and TO STDOUT with copy_expert, an error the application saw."""
import io
import sys

import psycopg2

dsn = sys.argv[1]
conn = psycopg2.connect(dsn, options="-c search_path=app -c DateStyle=SQL,DMY")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT count(*) FROM items")          # items exists only in schema app
assert cur.fetchone()[0] == 3000
cur.execute("SELECT name FROM items WHERE id = %s", (42,))
assert cur.fetchone()[0] == "item-42"
cur.execute("SELECT to_char(date '2024-02-01', 'DD') || current_setting('DateStyle')")
cur.fetchall()
try:
    cur.execute("SELECT 1/0")
except psycopg2.errors.DivisionByZero:
    pass
buf = io.StringIO("".join("%d\tcopied-%d\n" % (i, i) for i in range(1, 501)))
cur.copy_expert("COPY public.t_copy (a, b) FROM STDIN", buf)
buf = io.StringIO("".join("%d,csv-%d\n" % (i, i) for i in range(501, 601)))
cur.copy_expert("COPY public.t_copy (a, b) FROM STDIN WITH (FORMAT csv)", buf)
out = io.StringIO()
cur.copy_expert("COPY (SELECT * FROM public.t_copy ORDER BY a) TO STDOUT", out)
assert out.getvalue().count("\n") == 600, out.getvalue().count("\n")
conn.autocommit = False
named = conn.cursor(name="big")
named.itersize = 100
named.execute("SELECT * FROM items ORDER BY id")
assert sum(1 for _ in named) == 3000
named.close()
conn.commit()
conn.close()
