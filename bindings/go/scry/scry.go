// Package scry is the Go binding of libscry: catch the query regressions a
// PostgreSQL migration will cause, before it ships.
//
// It links the C library through cgo (pkg-config scry, or CGO_CFLAGS and
// CGO_LDFLAGS pointing at a build tree), so a Go migration tool can gate a
// migration in-process:
//
//	store, err := scry.OpenStore("scry.db")
//	res, err := store.TestMigration("dbname=shop", scry.Migration{Func: migrate}, nil)
//	os.Exit(res.ExitCode()) // 0 safe, 5 regressions
//
// A Store is used by one goroutine at a time, like the C handle.
package scry

/*
#cgo LDFLAGS: -lscry
#include <stdlib.h>
#include <scry/scry.h>

extern int scryGoMigration(void *ctx, char *conninfo, char *message, size_t size);

static int scry_go_migration_tramp(void *ctx, const char *conninfo, char *message, size_t size)
{
	return scryGoMigration(ctx, (char *)conninfo, message, size);
}

static void scry_go_set_fn(scry_migration *m, void *ctx)
{
	m->fn = scry_go_migration_tramp;
	m->fn_ctx = ctx;
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// Error is a libscry failure.
type Error struct {
	Code     int    // a SCRY_E* code (negative)
	SQLState string // PostgreSQL's SQLSTATE, when there is one
	Message  string
}

func (e *Error) Error() string { return e.Message }

// ErrMigration is wrapped by errors from a failed migration (CI exit 4).
var ErrMigration = errors.New("migration failed")

func check(rc C.int, err *C.scry_error) error {
	if rc >= 0 {
		return nil
	}
	e := &Error{Code: int(rc), SQLState: C.GoString(&err.sqlstate[0]), Message: C.GoString(&err.message[0])}
	if e.Message == "" {
		e.Message = C.GoString(C.scry_strerror(rc))
	}
	if rc == C.SCRY_EMIGRATION {
		return fmt.Errorf("%w: %s", ErrMigration, e.Message)
	}
	return e
}

func takeBuf(b *C.scry_buf) string {
	defer C.scry_buf_dispose(b)
	if b.ptr == nil {
		return ""
	}
	return C.GoStringN(b.ptr, C.int(b.size))
}

// Version returns the version of the linked libscry.
func Version() string { return C.GoString(C.scry_version()) }

// Fingerprint returns the pg_query-compatible fingerprint of one statement
// as 16 hex digits.
func Fingerprint(sql string) (string, error) {
	cs := C.CString(sql)
	defer C.free(unsafe.Pointer(cs))
	var fp C.uint64_t
	var e C.scry_error
	if err := check(C.scry_fingerprint_compute(nil, cs, C.size_t(len(sql)), &fp, &e), &e); err != nil {
		return "", err
	}
	return fmt.Sprintf("%016x", uint64(fp)), nil
}

// Normalize replaces the constants of a statement with $1, $2, ...
func Normalize(sql string) (string, error) {
	cs := C.CString(sql)
	defer C.free(unsafe.Pointer(cs))
	var b C.scry_buf
	var e C.scry_error
	rc := C.scry_fingerprint_normalize(cs, C.size_t(len(sql)), &b, &e)
	text := takeBuf(&b)
	return text, check(rc, &e)
}

// Store is an open workload store.
type Store struct{ h *C.scry_store }

// checkLibrary refuses a libscry loaded at run time that is older than the
// headers this package was compiled with, or of another major version
// (docs/api.md, "Versioning").
func checkLibrary() error {
	n, built := int(C.scry_version_number()), int(C.SCRY_VERSION_NUMBER)
	if n/10000 != built/10000 || n < built {
		return fmt.Errorf("libscry %d.%d.%d is not compatible with this binding (compiled against %d.%d.%d); "+
			"install a matching libscry", n/10000, n/100%100, n%100, built/10000, built/100%100, built%100)
	}
	return nil
}

// OpenStore opens (creating when missing) the workload store at path.
func OpenStore(path string) (*Store, error) {
	if err := checkLibrary(); err != nil {
		return nil, err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var h *C.scry_store
	var e C.scry_error
	if err := check(C.scry_store_open(&h, cp, nil, &e), &e); err != nil {
		return nil, err
	}
	return &Store{h: h}, nil
}

// Close closes the store. It is safe to call twice.
func (s *Store) Close() {
	if s.h != nil {
		C.scry_store_free(s.h)
		s.h = nil
	}
}

// Info holds the counts of a store.
type Info struct {
	Events, Sessions, Patterns, Statements, Runs, Samples int64
}

// Info reads the counts of the store.
func (s *Store) Info() (Info, error) {
	var in C.scry_store_info
	in.size = C.size_t(unsafe.Sizeof(in))
	var e C.scry_error
	if err := check(C.scry_store_info_get(s.h, &in, &e), &e); err != nil {
		return Info{}, err
	}
	return Info{int64(in.events), int64(in.sessions), int64(in.patterns), int64(in.statements),
		int64(in.runs), int64(in.samples)}, nil
}

// ReplayOptions are the knobs of Replay; the zero value means defaults.
type ReplayOptions struct {
	Concurrency int // sessions at once (default 8)
	Repeat      int // rounds recorded (default 1)
	Warmup      int // rounds not recorded
	TimeoutMs   int // statement_timeout (default 30000)
}

// ReplayResult is what one replay measured.
type ReplayResult struct {
	RunID, Executions, Errors, Timeouts int64
	PerSecond                           float64
}

func (o *ReplayOptions) fill(c *C.scry_replay_options) {
	C.scry_replay_options_init(c)
	if o == nil {
		return
	}
	if o.Concurrency > 0 {
		c.concurrency = C.int(o.Concurrency)
	}
	if o.Repeat > 0 {
		c.repeat = C.int(o.Repeat)
	}
	if o.Warmup > 0 {
		c.warmup = C.int(o.Warmup)
	}
	if o.TimeoutMs > 0 {
		c.timeout_ms = C.int(o.TimeoutMs)
	}
}

// Replay replays the captured workload against target (a libpq connection
// string) as a run labelled label.
func (s *Store) Replay(target, label string, opts *ReplayOptions) (ReplayResult, error) {
	var co C.scry_replay_options
	opts.fill(&co)
	var r *C.scry_replay
	var e C.scry_error
	if err := check(C.scry_replay_new(&r, s.h, &co, &e), &e); err != nil {
		return ReplayResult{}, err
	}
	defer C.scry_replay_free(r)
	ct, cl := C.CString(target), C.CString(label)
	defer C.free(unsafe.Pointer(ct))
	defer C.free(unsafe.Pointer(cl))
	var res C.scry_replay_result
	res.size = C.size_t(unsafe.Sizeof(res))
	if err := check(C.scry_replay_run(r, ct, cl, &res, &e), &e); err != nil {
		return ReplayResult{}, err
	}
	return ReplayResult{int64(res.run_id), int64(res.executions), int64(res.errors), int64(res.timeouts),
		float64(res.per_second)}, nil
}

// Pattern is one pattern of a JSON report (the keys of docs/cli.md).
type Pattern struct {
	Fingerprint    string  `json:"fingerprint"`
	Normalized     string  `json:"normalized"`
	Class          string  `json:"class"`
	BaselineP50Ms  float64 `json:"baseline_p50_ms"`
	CandidateP50Ms float64 `json:"candidate_p50_ms"`
	Ratio          float64 `json:"ratio"`
}

// Report is the JSON report of a verdict.
type Report struct {
	Patterns []Pattern `json:"patterns"`
	AfterFix *Report   `json:"after_fix,omitempty"`
}

// Diff compares the runs labelled baseline and candidate with the default
// thresholds and returns the JSON report.
func (s *Store) Diff(baseline, candidate string) (*Report, error) {
	cb, cc := C.CString(baseline), C.CString(candidate)
	defer C.free(unsafe.Pointer(cb))
	defer C.free(unsafe.Pointer(cc))
	var v *C.scry_verdict
	var e C.scry_error
	if err := check(C.scry_verdict_compute(&v, s.h, cb, cc, nil, &e), &e); err != nil {
		return nil, err
	}
	defer C.scry_verdict_free(v)
	var b C.scry_buf
	rc := C.scry_report_render(v, C.SCRY_REPORT_JSON, &b, &e)
	text := takeBuf(&b)
	if err := check(rc, &e); err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal([]byte(text), &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Migration is exactly one of: Func (run in-process with the clone's libpq
// connection string), Argv (a command run with DATABASE_URL and PG* set), or SQL.
type Migration struct {
	Func func(conninfo string) error
	Argv []string
	SQL  string
}

//export scryGoMigration
func scryGoMigration(ctx unsafe.Pointer, conninfo *C.char, message *C.char, size C.size_t) C.int {
	fn := cgo.Handle(ctx).Value().(func(string) error)
	if err := fn(C.GoString(conninfo)); err != nil {
		msg := []byte(err.Error())
		if len(msg) > int(size)-1 {
			msg = msg[:int(size)-1]
		}
		dst := unsafe.Slice((*byte)(unsafe.Pointer(message)), int(size))
		copy(dst, msg)
		dst[len(msg)] = 0
		return 1
	}
	return 0
}

// cMigration builds a scry_migration; release() frees what it allocated.
func (m Migration) cMigration() (*C.scry_migration, func()) {
	cm := (*C.scry_migration)(C.calloc(1, C.size_t(unsafe.Sizeof(C.scry_migration{}))))
	cm.version = C.SCRY_MIGRATION_VERSION
	var frees []func()
	switch {
	case m.Func != nil:
		h := cgo.NewHandle(m.Func)
		C.scry_go_set_fn(cm, unsafe.Pointer(h))
		frees = append(frees, h.Delete)
	case len(m.Argv) > 0:
		argv := (*[1 << 20]*C.char)(C.calloc(C.size_t(len(m.Argv)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		for i, a := range m.Argv {
			argv[i] = C.CString(a)
			p := argv[i]
			frees = append(frees, func() { C.free(unsafe.Pointer(p)) })
		}
		cm.argv = (**C.char)(unsafe.Pointer(argv))
		frees = append(frees, func() { C.free(unsafe.Pointer(argv)) })
	default:
		cm.sql = C.CString(m.SQL)
		frees = append(frees, func() { C.free(unsafe.Pointer(cm.sql)) })
	}
	return cm, func() {
		for _, f := range frees {
			f()
		}
		C.free(unsafe.Pointer(cm))
	}
}

// MigrationOptions are the knobs of TestMigration; nil means defaults.
type MigrationOptions struct {
	Fix        *Migration // applied to B after the first verdict, then validated again
	Sequential bool       // replay, migrate and replay on the target itself
}

// MigrationResult is the outcome of TestMigration.
type MigrationResult struct {
	Failures   int     // patterns that fail the gate
	Report     *Report // the JSON report
	ReportText string  // the text report
}

// ExitCode is the CLI's exit code for this outcome: 0 safe, 5 regressions.
func (r *MigrationResult) ExitCode() int {
	if r.Failures > 0 {
		return 5
	}
	return 0
}

// TestMigration clones target, applies the migration to clone B, replays the
// captured workload on both clones interleaved and decides. A failed
// migration gives an error wrapping ErrMigration (CI exit 4).
func (s *Store) TestMigration(target string, m Migration, opts *MigrationOptions) (*MigrationResult, error) {
	var po C.scry_pipeline_options
	C.scry_pipeline_options_init(&po)
	if opts != nil && opts.Sequential {
		po.mode = C.SCRY_PIPELINE_SEQUENTIAL
	}
	if opts != nil && opts.Fix != nil {
		fix, release := opts.Fix.cMigration()
		defer release()
		po.fix = fix
	}
	ct := C.CString(target)
	defer C.free(unsafe.Pointer(ct))
	var p *C.scry_pipeline
	var e C.scry_error
	if err := check(C.scry_pipeline_new(&p, s.h, ct, &po, &e), &e); err != nil {
		return nil, err
	}
	defer C.scry_pipeline_free(p)
	cm, release := m.cMigration()
	defer release()
	if err := check(C.scry_pipeline_run(p, cm, &e), &e); err != nil {
		return nil, err
	}
	res := &MigrationResult{Failures: int(C.scry_pipeline_failures(p))}
	for _, f := range []C.scry_report_format{C.SCRY_REPORT_JSON, C.SCRY_REPORT_TEXT} {
		var b C.scry_buf
		rc := C.scry_pipeline_report(p, f, &b, &e)
		text := takeBuf(&b)
		if err := check(rc, &e); err != nil {
			return nil, err
		}
		if f == C.SCRY_REPORT_TEXT {
			res.ReportText = text
		} else {
			res.Report = &Report{}
			if err := json.Unmarshal([]byte(text), res.Report); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}
