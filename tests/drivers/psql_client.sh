#!/usr/bin/env bash
# psql through the capture proxy: PGOPTIONS (search_path) in the startup
# packet, \copy FROM (text, csv) and TO, a session of another user (app_user)
# whose statements only work as that user.
set -euo pipefail
port=$1 db=$2 work=$3
seq 5001 5400 | sed 's/$/\tpsql/' >"$work/psql.tsv"
PGOPTIONS="-c search_path=app" psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$port user=postgres dbname=$db" \
  -c "SELECT count(*) FROM items" \
  -c "\\copy public.t_copy (a, b) FROM '$work/psql.tsv'" \
  -c "\\copy public.t_copy (a, b) FROM '$work/psql.tsv' WITH (FORMAT csv, DELIMITER E'\\t')" \
  -c "\\copy (SELECT * FROM public.t_copy ORDER BY a) TO '$work/psql.out'" >/dev/null
[ "$(wc -l <"$work/psql.out")" = 800 ] || { echo "psql: \\copy TO gave $(wc -l <"$work/psql.out") rows" >&2; exit 1; }
# Fails (division by zero) unless it runs as app_user: replay must SET ROLE.
psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$port user=app_user dbname=$db" \
  -c "SELECT 1 / (current_user = 'app_user')::int" -c "SELECT count(*) FROM app.items" >/dev/null
