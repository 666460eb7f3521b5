// node-postgres (npm `pg`) through the capture proxy: options in the startup
// packet, the extended protocol with parameters.
const { Client } = require('pg');
(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.argv[2], user: 'postgres', database: process.argv[3],
                         options: '-c search_path=app' });
  await c.connect();
  const r = await c.query('SELECT count(*)::int AS n FROM items');
  if (r.rows[0].n !== 3000) throw new Error('count ' + r.rows[0].n);
  for (let i = 1; i <= 5; i++) await c.query('SELECT name FROM items WHERE id = $1', [i]);
  await c.query({ text: 'SELECT * FROM items WHERE id <= $1', values: [500] });
  await c.end();
})().catch(e => { console.error(e); process.exit(1); });
