// Command gate gates a SQL migration with the Go binding of libscry: exit 0
// safe, 1 error, 4 the migration failed, 5 regressions. Ctrl-C cancels the
// run through its context (the clones are dropped).
//
//	PKG_CONFIG_PATH=/opt/scry/lib/pkgconfig go build -o gate gate.go
//	./gate -store scry.db -target "dbname=shop" -sql "DROP INDEX idx_items_category"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"scry.invalid/scry/scry"
)

func main() {
	store := flag.String("store", "scry.db", "the workload store")
	target := flag.String("target", "", "the database to test against (libpq conninfo)")
	sql := flag.String("sql", "", "the migration, as SQL")
	format := flag.String("format", "markdown", "report format: text, markdown, json, junit")
	flag.Parse()
	if *target == "" || *sql == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := scry.OpenStore(*store, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gate:", err)
		os.Exit(1)
	}
	defer s.Close()
	res, err := s.TestMigration(ctx, *target, scry.Migration{SQL: *sql}, nil)
	switch {
	case errors.Is(err, scry.ErrMigration):
		fmt.Fprintln(os.Stderr, "gate: the migration failed:", err)
		os.Exit(4)
	case err != nil:
		fmt.Fprintln(os.Stderr, "gate:", err)
		os.Exit(1)
	}
	fmt.Print(res.Render(scry.Format(*format)))
	s.Close()
	os.Exit(res.ExitCode())
}
