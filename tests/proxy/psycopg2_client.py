#!/usr/bin/python3
"""A psycopg2 application run through the capture proxy by tests/test_proxy.c.

psycopg2 interpolates parameters on the client and sends simple Query
messages; it opens transactions with BEGIN on its own. The test checks the
store against exactly the statements below.
"""
import io
import sys

import psycopg2

conn = psycopg2.connect(sys.argv[1], application_name="psycopg2-app")
cur = conn.cursor()
cur.execute("CREATE TABLE py_orders (id int PRIMARY KEY, customer text, total numeric)")
conn.commit()
cur.executemany("INSERT INTO py_orders VALUES (%s, %s, %s)",
                [(1, "ann", 10.5), (2, "bob", 20), (3, "o'hara", 7)])
conn.commit()
cur.execute("SELECT id, total FROM py_orders WHERE customer = %s", ("o'hara",))
assert cur.fetchall() == [(3, 7)]
try:
    cur.execute("SELECT * FROM py_missing")
except psycopg2.errors.UndefinedTable:
    conn.rollback()
else:
    sys.exit("expected an error")
cur.copy_expert("COPY py_orders (id, customer, total) FROM STDIN",
                io.StringIO("4\tcid\t1\n5\tdan\t2\n"))
conn.commit()
cur.execute("SELECT count(*) FROM py_orders")
assert cur.fetchone()[0] == 5
conn.commit()
conn.close()
print("ok")
