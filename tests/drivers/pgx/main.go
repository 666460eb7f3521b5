// pgx v4 through the capture proxy: RuntimeParams (search_path) in the startup
// packet, the extended protocol with parameters, and binary COPY with CopyFrom.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v4"
)

func main() {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%s user=postgres dbname=%s sslmode=disable", os.Args[1], os.Args[2]))
	if err != nil {
		panic(err)
	}
	cfg.RuntimeParams["search_path"] = "app"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3000 {
		panic(fmt.Sprint("count ", n, err))
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 11).Scan(&name); err != nil {
		panic(err)
	}
	rows := [][]interface{}{}
	for i := 4000; i < 4250; i++ {
		rows = append(rows, []interface{}{int32(i), fmt.Sprintf("pgx-%d", i)})
	}
	c, err := conn.CopyFrom(ctx, pgx.Identifier{"public", "t_copy"}, []string{"a", "b"}, pgx.CopyFromRows(rows))
	if err != nil || c != 250 {
		panic(fmt.Sprint("copy ", c, err))
	}
}
