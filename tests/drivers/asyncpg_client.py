#!/usr/bin/python3
"""asyncpg through the capture proxy: server_settings (search_path) in the
startup packet, the extended protocol with parameters, a cursor with prefetch
(Execute with a row limit: PortalSuspended), binary COPY with
copy_records_to_table and COPY TO with copy_from_query."""
import asyncio
import io
import sys


async def main(port, db):
    import asyncpg
    conn = await asyncpg.connect(host="127.0.0.1", port=int(port), user="postgres", database=db,
                                 server_settings={"search_path": "app", "TimeZone": "UTC"})
    assert await conn.fetchval("SELECT count(*) FROM items") == 3000
    assert await conn.fetchval("SELECT name FROM items WHERE id = $1", 7) == "item-7"
    async with conn.transaction():
        n = 0
        async for _ in conn.cursor("SELECT * FROM items WHERE id > $1 ORDER BY id", 0, prefetch=100):
            n += 1
        assert n == 3000, n
    await conn.copy_records_to_table("t_copy", schema_name="public",
                                     records=[(i, "bin-%d" % i) for i in range(1000, 1300)], columns=["a", "b"])
    out = io.BytesIO()
    await conn.copy_from_query("SELECT * FROM public.t_copy ORDER BY a", output=out)
    assert out.getvalue().count(b"\n") == 300
    await conn.close()


asyncio.run(main(sys.argv[1], sys.argv[2]))
