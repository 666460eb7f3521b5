// postgres.js (npm `postgres`) through the capture proxy: startup parameters
// (search_path), a cursor (Execute with a row limit) and COPY FROM STDIN.
const postgres = require('postgres');
(async () => {
  const sql = postgres({ host: '127.0.0.1', port: +process.argv[2], username: 'postgres', database: process.argv[3],
                         connection: { search_path: 'app' }, max: 1, prepare: true });
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM items`;
  if (n !== 3000) throw new Error('count ' + n);
  await sql`SELECT name FROM items WHERE id = ${9}`;
  let seen = 0;
  await sql.begin(async tx => {
    await tx`SELECT * FROM items WHERE id > ${0} ORDER BY id`.cursor(100, rows => { seen += rows.length; });
  });
  if (seen !== 3000) throw new Error('cursor rows ' + seen);
  const w = await sql`COPY public.t_copy (a, b) FROM STDIN`.writable();
  await new Promise((resolve, reject) => {
    w.on('error', reject); w.on('finish', resolve);
    for (let i = 3000; i < 3100; i++) w.write(i + '\tpjs-' + i + '\n');
    w.end();
  });
  await sql.end();
})().catch(e => { console.error(e); process.exit(1); });
