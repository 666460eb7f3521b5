package scry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run against a throwaway PostgreSQL cluster started with
// tests/harness/pgcluster.sh, with a workload captured through the real
// capture proxy (`scry capture proxy`) from psql.

var (
	source = os.Getenv("SCRY_SOURCE_DIR")
	cli    = os.Getenv("SCRY_CLI")
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestFingerprint(t *testing.T) {
	a, err := Fingerprint("SELECT * FROM t WHERE a = 1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Fingerprint("select * from t where a = 42")
	c, _ := Fingerprint("SELECT * FROM t WHERE b = 1")
	if a != b || a == c || len(a) != 16 {
		t.Fatalf("fingerprints %s %s %s", a, b, c)
	}
	if n, _ := Normalize("SELECT 1"); n != "SELECT $1" {
		t.Fatalf("normalize: %q", n)
	}
	if _, err := Fingerprint("SELEC 1"); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("want a syntax error, got %v", err)
	}
}

func TestMigrationGate(t *testing.T) {
	if source == "" || cli == "" {
		t.Skip("SCRY_SOURCE_DIR and SCRY_CLI are needed (run through tests/test_go.sh)")
	}
	tmp, err := os.MkdirTemp("/tmp", "scry-go.")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(tmp, 0o755)
	defer os.RemoveAll(tmp)
	cluster := filepath.Join(tmp, "pg")
	harness := filepath.Join(source, "tests/harness/pgcluster.sh")
	port := strings.TrimSpace(run(t, "bash", harness, "start", cluster))
	defer exec.Command("bash", harness, "stop", cluster).Run()
	dsn := "host=127.0.0.1 port=" + port + " user=postgres dbname=postgres"
	shop := "host=127.0.0.1 port=" + port + " user=postgres dbname=shop"
	run(t, "psql", dsn, "-qc", "CREATE DATABASE shop")
	run(t, "psql", shop, "-qc", `CREATE TABLE items (id int PRIMARY KEY, sku text NOT NULL);
		INSERT INTO items SELECT g, 'sku-' || g FROM generate_series(1, 60000) g;
		CREATE INDEX items_sku ON items (sku); ANALYZE items;`)

	// Capture: psql through the proxy.
	store := filepath.Join(tmp, "scry.db")
	pport := freePort(t)
	proxy := exec.Command(cli, "capture", "proxy", "--listen", fmt.Sprintf("127.0.0.1:%d", pport),
		"--upstream", "127.0.0.1:"+port, "--store", store)
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&script, "SELECT id FROM items WHERE sku = 'sku-%d';\n", i*997)
	}
	through := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=shop", pport)
	var out []byte
	for i := 0; i < 100; i++ {
		cmd := exec.Command("psql", through, "-qAt")
		cmd.Stdin = strings.NewReader(script.String())
		if out, err = cmd.CombinedOutput(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("psql through the proxy: %v\n%s", err, out)
	}
	proxy.Process.Signal(syscall.SIGTERM)
	proxy.Wait()

	s, err := OpenStore(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err := s.Info()
	if err != nil || info.Events != 40 || info.Patterns != 1 {
		t.Fatalf("captured %+v, %v; want 40 events of 1 pattern", info, err)
	}
	ctx := context.Background()

	dropIndex := Migration{Func: func(conninfo string) error {
		out, err := exec.Command("psql", conninfo, "-qc", "DROP INDEX items_sku").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}}
	var phases []string
	res, err := s.TestMigration(ctx, shop, dropIndex, &MigrationOptions{
		Verdict:   &VerdictOptions{Threshold: 1.5},
		Callbacks: &Callbacks{Progress: func(phase string, done, total uint64) { phases = append(phases, phase) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode() != 5 {
		t.Fatalf("dropping the index: exit %d, want 5\n%s", res.ExitCode(), res.Render(Text))
	}
	if p := res.Final().Patterns[0]; !strings.Contains(p.Normalized, "sku") || p.Class != "regressed" || !p.Flagged {
		t.Fatalf("the regressed pattern: %+v", p)
	}
	if res.Stats.TotalUs <= 0 || res.Stats.Candidate.Executions <= 0 {
		t.Fatalf("stats: %+v", res.Stats)
	}
	if !strings.Contains(res.Render(Markdown), "**FAIL**") || !strings.Contains(res.String(), "FAIL") {
		t.Fatalf("renders: %s / %s", res.String(), res.Render(Markdown))
	}
	if len(phases) == 0 {
		t.Fatal("no progress reported")
	}
	res, err = s.TestMigration(ctx, shop, Migration{SQL: "ALTER TABLE items ADD COLUMN note text"},
		&MigrationOptions{Replay: &ReplayOptions{Timeout: 10 * time.Second, Concurrency: 2}})
	if err != nil || res.ExitCode() != 0 {
		t.Fatalf("a safe migration: %v, %v", err, res)
	}
	_, err = s.TestMigration(ctx, shop, Migration{Func: func(string) error { return errors.New("revision abc123 not found") }}, nil)
	var se *Error
	if !errors.Is(err, ErrMigration) || !errors.As(err, &se) || se.Code != CodeMigration || !strings.Contains(err.Error(), "abc123") {
		t.Fatalf("a failing migration: %v", err)
	}
	_, err = s.TestMigration(ctx, shop, Migration{SQL: "ALTER TABLE nosuch ADD COLUMN x int"}, nil)
	if !errors.As(err, &se) || se.SQLState != "42P01" || !errors.Is(err, ErrMigration) {
		t.Fatalf("a failing SQL migration keeps its SQLSTATE: %#v", err)
	}
	_, err = s.TestMigration(ctx, shop, Migration{SQL: "SELECT 1"}, &MigrationOptions{Settings: map[string]string{"replay.writes": "sometimes"}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("a bad setting: %v", err)
	}

	// Cancelling the context during the migration stops the run, drops the clones.
	cctx, cancel := context.WithCancel(ctx)
	_, err = s.TestMigration(cctx, shop, Migration{Func: func(string) error {
		cancel()
		time.Sleep(200 * time.Millisecond)
		return nil
	}}, nil)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled context: %v", err)
	}
	left := strings.TrimSpace(run(t, "psql", dsn, "-qAtc", "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'"))
	if left != "0" {
		t.Fatalf("%s clones left after a cancel", left)
	}
}

func TestStoreErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenStore(filepath.Join(dir, "typo.db"), nil)
	var se *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &se) || se.Code != CodeNotFound || !strings.Contains(se.Message, "Create") {
		t.Fatalf("a missing store: %v", err)
	}
	// The package documentation's snippet on an empty store: an error, no panic.
	s, err := OpenStore(filepath.Join(dir, "empty.db"), &StoreOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.TestMigration(context.Background(), "host=127.0.0.1 port=1 dbname=nothing", Migration{SQL: "SELECT 1"}, nil)
	if err == nil || res != nil {
		t.Fatalf("an empty store: %v, %v", res, err)
	}
	if keys, err := Settings(); err != nil || len(keys) < 20 {
		t.Fatalf("settings: %d, %v", len(keys), err)
	}
}
