// Package scry is the Go binding of libscry: catch the query regressions a
// PostgreSQL migration will cause, before it ships.
//
// It links the C library through cgo and pkg-config (`pkg-config scry`: set
// PKG_CONFIG_PATH to an install prefix's lib/pkgconfig, or to a build tree),
// so a Go migration tool can gate a migration in-process:
//
//	store, err := scry.OpenStore("scry.db", nil)
//	if err != nil {
//		log.Fatal(err) // scry.ErrNotFound: no store at that path
//	}
//	defer store.Close()
//	res, err := store.TestMigration(ctx, "dbname=shop", scry.Migration{Func: migrate}, nil)
//	if err != nil {
//		log.Fatal(err) // errors.Is(err, scry.ErrMigration): the migration failed (exit 4)
//	}
//	fmt.Print(res.Render(scry.Markdown))
//	os.Exit(res.ExitCode()) // 0 safe, 5 regressions
//
// Options are Go structs; every option of the C library is also reachable
// by name through their Settings maps (the keys of scry_settings_describe,
// listed by Settings()). A Store is used by one goroutine at a time, like
// the C handle; cancelling the context cancels the running operation.
package scry

/*
#cgo pkg-config: scry
#include <stdint.h>
#include <stdlib.h>
#include <scry/scry.h>

extern int scryGoMigration(uintptr_t ctx, char *conninfo, char *message, size_t size);
extern void scryGoLog(uintptr_t ctx, int level, char *message);
extern void scryGoProgress(uintptr_t ctx, char *phase, uint64_t done, uint64_t total);
extern void scryGoOutput(uintptr_t ctx, char *data, size_t len);

static int scry_go_migration(void *ctx, const char *conninfo, char *message, size_t size)
{
	return scryGoMigration((uintptr_t)ctx, (char *)conninfo, message, size);
}
static void scry_go_log(void *ctx, scry_log_level level, const char *message)
{
	scryGoLog((uintptr_t)ctx, (int)level, (char *)message);
}
static void scry_go_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	scryGoProgress((uintptr_t)ctx, (char *)phase, done, total);
}
static void scry_go_output(void *ctx, const char *data, size_t len)
{
	scryGoOutput((uintptr_t)ctx, (char *)data, len);
}

// Handles travel as integers: Go never converts them to pointers.
static int scry_go_set_migration_fn(scry_settings *s, const char *which, uintptr_t h, scry_error *err)
{
	return scry_settings_set_migration_fn(s, which, scry_go_migration, (void *)h, err);
}
static int scry_go_set_output(scry_settings *s, const char *which, uintptr_t h, scry_error *err)
{
	return scry_settings_set_migration_output(s, which, scry_go_output, (void *)h, err);
}
static void scry_go_set_callbacks(scry_settings *s, uintptr_t h)
{
	scry_settings_set_log(s, scry_go_log, (void *)h);
	scry_settings_set_progress(s, scry_go_progress, (void *)h);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/cgo"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Code is a libscry error code (a negative SCRY_E* value). Codes are errors
// themselves, so that errors.Is(err, scry.ErrNotFound) works on an *Error.
type Code int

// The error codes of scry/core.h.
const (
	CodeInvalid     Code = C.SCRY_EINVAL
	CodeNoMemory    Code = C.SCRY_ENOMEM
	CodeIO          Code = C.SCRY_EIO
	CodeParse       Code = C.SCRY_EPARSE
	CodeStore       Code = C.SCRY_ESTORE
	CodeSchema      Code = C.SCRY_ESCHEMA
	CodeCorrupt     Code = C.SCRY_ECORRUPT
	CodeNotFound    Code = C.SCRY_ENOTFOUND
	CodeConnect     Code = C.SCRY_ECONNECT
	CodePG          Code = C.SCRY_EPG
	CodeProtocol    Code = C.SCRY_EPROTOCOL
	CodeCanceled    Code = C.SCRY_ECANCELED
	CodeMigration   Code = C.SCRY_EMIGRATION
	CodeLimit       Code = C.SCRY_ELIMIT
	CodeUnsupported Code = C.SCRY_EUNSUPPORTED
)

// Sentinels for errors.Is.
var (
	ErrInvalid     error = CodeInvalid
	ErrNoMemory    error = CodeNoMemory
	ErrIO          error = CodeIO
	ErrParse       error = CodeParse
	ErrStore       error = CodeStore
	ErrSchema      error = CodeSchema
	ErrCorrupt     error = CodeCorrupt
	ErrNotFound    error = CodeNotFound
	ErrConnect     error = CodeConnect
	ErrPG          error = CodePG
	ErrProtocol    error = CodeProtocol
	ErrCanceled    error = CodeCanceled
	ErrMigration   error = CodeMigration // the migration (or fix) failed: CI exit 4
	ErrLimit       error = CodeLimit
	ErrUnsupported error = CodeUnsupported
)

// Error returns the library's short description of the code.
func (c Code) Error() string { return C.GoString(C.scry_strerror(C.int(c))) }

// Error is a libscry failure. errors.As(err, &e) gives the code and the
// SQLSTATE; errors.Is(err, scry.ErrX) tests the code, and
// errors.Is(err, context.Canceled) a run stopped by its context.
type Error struct {
	Code     Code   // a SCRY_E* code
	SQLState string // PostgreSQL's SQLSTATE, when there is one
	Message  string // what happened and what to do
	cause    error  // the context's error, when it cancelled the run
}

func (e *Error) Error() string { return e.Message }

// Unwrap gives the Code, for errors.Is(err, scry.ErrNotFound).
func (e *Error) Unwrap() error { return e.Code }

// Is matches the context error that cancelled the run.
func (e *Error) Is(target error) bool { return e.cause != nil && target == e.cause }

func check(rc C.int, err *C.scry_error) error {
	if rc >= 0 {
		return nil
	}
	e := &Error{Code: Code(rc), SQLState: C.GoString(&err.sqlstate[0]), Message: C.GoString(&err.message[0])}
	if e.Message == "" {
		e.Message = Code(rc).Error()
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

// Setting describes one option of the library (scry_settings_describe).
type Setting struct {
	Key     string   `json:"key"`
	Type    string   `json:"type"`
	Default string   `json:"default"`
	Values  []string `json:"values,omitempty"`
	Doc     string   `json:"doc"`
}

// Settings lists every option of the library, by key.
func Settings() ([]Setting, error) {
	var b C.scry_buf
	var e C.scry_error
	rc := C.scry_settings_describe(&b, &e)
	text := takeBuf(&b)
	if err := check(rc, &e); err != nil {
		return nil, err
	}
	var out []Setting
	return out, json.Unmarshal([]byte(text), &out)
}

// ------------------------------------------------------------------------
// settings: Go options -> a scry_settings handle

// Callbacks receive the library's reports. Both may be nil.
type Callbacks struct {
	Log      func(level LogLevel, message string)
	Progress func(phase string, done, total uint64)
}

// LogLevel is the severity of a log message.
type LogLevel int

// Log levels (scry_log_level).
const (
	LogDebug   LogLevel = C.SCRY_LOG_DEBUG
	LogInfo    LogLevel = C.SCRY_LOG_INFO
	LogWarning LogLevel = C.SCRY_LOG_WARNING
	LogError   LogLevel = C.SCRY_LOG_ERROR
)

type settings struct {
	h       *C.scry_settings
	handles []cgo.Handle
	cstrs   []*C.char
}

func newSettings() (*settings, error) {
	s := &settings{}
	var e C.scry_error
	if err := check(C.scry_settings_new(&s.h, &e), &e); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *settings) cstr(v string) *C.char {
	c := C.CString(v)
	s.cstrs = append(s.cstrs, c)
	return c
}

func (s *settings) set(key, value string) error {
	var e C.scry_error
	return check(C.scry_settings_set(s.h, s.cstr(key), s.cstr(value), &e), &e)
}

// setAll applies typed values (zero values skipped) then the Settings map.
func (s *settings) setAll(typed map[string]string, extra map[string]string) error {
	keys := make([]string, 0, len(typed))
	for k := range typed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := s.set(k, typed[k]); err != nil {
			return err
		}
	}
	for k, v := range extra {
		if err := s.set(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *settings) callbacks(cb *Callbacks) {
	if cb == nil || (cb.Log == nil && cb.Progress == nil) {
		return
	}
	h := cgo.NewHandle(cb)
	s.handles = append(s.handles, h)
	C.scry_go_set_callbacks(s.h, C.uintptr_t(h))
}

func (s *settings) migration(which string, m Migration) error {
	var e C.scry_error
	cw := s.cstr(which)
	switch {
	case m.Func != nil:
		h := cgo.NewHandle(m.Func)
		s.handles = append(s.handles, h)
		return check(C.scry_go_set_migration_fn(s.h, cw, C.uintptr_t(h), &e), &e)
	case len(m.Argv) > 0:
		argv := make([]*C.char, len(m.Argv)+1)
		for i, a := range m.Argv {
			argv[i] = s.cstr(a)
		}
		// A Go slice of C pointers may be passed to C for the call (it is copied).
		return check(C.scry_settings_set_migration_argv(s.h, cw, &argv[0], &e), &e)
	case m.SQL != "":
		return s.set(which+".sql", m.SQL)
	}
	return &Error{Code: CodeInvalid, Message: "scry: " + which + ": set one of Func, Argv or SQL"}
}

func (s *settings) output(w io.Writer) {
	if w == nil {
		return
	}
	h := cgo.NewHandle(w)
	s.handles = append(s.handles, h)
	var e C.scry_error
	for _, which := range []string{"migration", "fix"} {
		C.scry_go_set_output(s.h, s.cstr(which), C.uintptr_t(h), &e)
	}
}

func (s *settings) free() {
	C.scry_settings_free(s.h)
	for _, h := range s.handles {
		h.Delete()
	}
	for _, c := range s.cstrs {
		C.free(unsafe.Pointer(c))
	}
}

//export scryGoLog
func scryGoLog(ctx C.uintptr_t, level C.int, message *C.char) {
	if cb := cgo.Handle(ctx).Value().(*Callbacks); cb.Log != nil {
		cb.Log(LogLevel(level), C.GoString(message))
	}
}

//export scryGoProgress
func scryGoProgress(ctx C.uintptr_t, phase *C.char, done, total C.uint64_t) {
	if cb := cgo.Handle(ctx).Value().(*Callbacks); cb.Progress != nil {
		cb.Progress(C.GoString(phase), uint64(done), uint64(total))
	}
}

//export scryGoOutput
func scryGoOutput(ctx C.uintptr_t, data *C.char, n C.size_t) {
	cgo.Handle(ctx).Value().(io.Writer).Write(C.GoBytes(unsafe.Pointer(data), C.int(n)))
}

//export scryGoMigration
func scryGoMigration(ctx C.uintptr_t, conninfo *C.char, message *C.char, size C.size_t) C.int {
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

// withContext runs fn while watching ctx: cancelling ctx calls cancel. The
// error of a run stopped that way matches both ErrCanceled and ctx.Err().
func withContext(ctx context.Context, cancel func(), fn func() error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return &Error{Code: CodeCanceled, Message: "scry: " + err.Error(), cause: err}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-done:
		}
	}()
	err := fn()
	close(done)
	if ctx.Err() != nil {
		if e, ok := err.(*Error); ok && e.Code == CodeCanceled {
			e.cause = ctx.Err()
		} else if err == nil {
			// Finished as the context ended: a cancelled run never gives a result.
			err = &Error{Code: CodeCanceled, Message: "scry: " + ctx.Err().Error(), cause: ctx.Err()}
		}
	}
	return err
}

// ------------------------------------------------------------------------
// Store

// StoreOptions are the options of OpenStore; nil opens an existing store.
type StoreOptions struct {
	Create   bool // create the store when the file does not exist
	ReadOnly bool // open read-only
	Durable  bool // fsync every batch
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

// OpenStore opens the workload store at path. Without opts.Create a missing
// file is an error matching ErrNotFound (a typo'd path is not a new store).
func OpenStore(path string, opts *StoreOptions) (*Store, error) {
	if err := checkLibrary(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &StoreOptions{}
	}
	s, err := newSettings()
	if err != nil {
		return nil, err
	}
	defer s.free()
	if err := s.setAll(map[string]string{"store.must_exist": strconv.FormatBool(!opts.Create),
		"store.read_only": strconv.FormatBool(opts.ReadOnly), "store.durable": strconv.FormatBool(opts.Durable)},
		nil); err != nil {
		return nil, err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var h *C.scry_store
	var e C.scry_error
	if err := check(C.scry_store_open(&h, cp, C.scry_settings_store(s.h), &e), &e); err != nil {
		if se := err.(*Error); se.Code == CodeNotFound && !opts.Create {
			se.Message += " (open it with StoreOptions{Create: true} to create a new store)"
		}
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
	Events        int64 `json:"events"`
	Sessions      int64 `json:"sessions"`
	Patterns      int64 `json:"patterns"`
	Statements    int64 `json:"statements"`
	Runs          int64 `json:"runs"`
	Samples       int64 `json:"samples"`
	FirstUs       int64 `json:"first_us"`
	LastUs        int64 `json:"last_us"`
	FileBytes     int64 `json:"file_bytes"`
	SchemaVersion int64 `json:"schema_version"`
}

// Info reads the counts of the store.
func (s *Store) Info() (Info, error) {
	var b C.scry_buf
	var e C.scry_error
	rc := C.scry_store_info_json(s.h, &b, &e)
	text := takeBuf(&b)
	var in Info
	if err := check(rc, &e); err != nil {
		return in, err
	}
	return in, json.Unmarshal([]byte(text), &in)
}

// ReplayOptions are the knobs of a replay; zero values mean the defaults.
type ReplayOptions struct {
	Mode         string        // "fast" (default) or "timed"
	Speed        float64       // timed mode: 2 = twice as fast
	Concurrency  int           // fast mode: sessions at once (default 8)
	Repeat       int           // rounds recorded per execution
	Warmup       int           // rounds run first, not recorded
	Writes       string        // "rollback" (default), "skip" or "execute"
	Timeout      time.Duration // statement_timeout per statement (default 30 s)
	Fingerprints []string      // replay only these patterns
	Settings     map[string]string
}

func (o *ReplayOptions) settings() (map[string]string, map[string]string) {
	m := map[string]string{}
	if o == nil {
		return m, nil
	}
	if o.Mode != "" {
		m["replay.mode"] = o.Mode
	}
	if o.Speed != 0 {
		m["replay.speed"] = strconv.FormatFloat(o.Speed, 'g', -1, 64)
	}
	if o.Concurrency != 0 {
		m["replay.concurrency"] = strconv.Itoa(o.Concurrency)
	}
	if o.Repeat != 0 {
		m["replay.repeat"] = strconv.Itoa(o.Repeat)
	}
	if o.Warmup != 0 {
		m["replay.warmup"] = strconv.Itoa(o.Warmup)
	}
	if o.Writes != "" {
		m["replay.writes"] = o.Writes
	}
	if o.Timeout != 0 {
		m["replay.timeout_ms"] = strconv.FormatInt(o.Timeout.Milliseconds(), 10)
	}
	if len(o.Fingerprints) > 0 {
		m["replay.fingerprints"] = strings.Join(o.Fingerprints, ",")
	}
	return m, o.Settings
}

// ReplayResult is what one replay measured.
type ReplayResult struct {
	RunID      int64   `json:"run_id"`
	Executions int64   `json:"executions"`
	Errors     int64   `json:"errors"`
	Timeouts   int64   `json:"timeouts"`
	Reconnects int64   `json:"reconnects"`
	Skipped    int64   `json:"skipped"`
	PerSecond  float64 `json:"per_second"`
	ElapsedUs  int64   `json:"elapsed_us"`
	LagP50Us   int64   `json:"lag_p50_us"`
	LagP99Us   int64   `json:"lag_p99_us"`
	LagMaxUs   int64   `json:"lag_max_us"`
}

// Replay replays the captured workload against target (a libpq connection
// string) as a run labelled label. Cancelling ctx stops it.
func (s *Store) Replay(ctx context.Context, target, label string, opts *ReplayOptions, cb *Callbacks) (ReplayResult, error) {
	var res ReplayResult
	st, err := newSettings()
	if err != nil {
		return res, err
	}
	defer st.free()
	if err := st.setAll(opts.settings()); err != nil {
		return res, err
	}
	st.callbacks(cb)
	var r *C.scry_replay
	var e C.scry_error
	if err := check(C.scry_replay_new(&r, s.h, C.scry_settings_replay(st.h), &e), &e); err != nil {
		return res, err
	}
	defer C.scry_replay_free(r)
	var text string
	err = withContext(ctx, func() { C.scry_replay_cancel(r) }, func() error {
		var b C.scry_buf
		var e C.scry_error
		rc := C.scry_replay_run_json(r, st.cstr(target), st.cstr(label), &b, &e)
		text = takeBuf(&b)
		return check(rc, &e)
	})
	if err != nil {
		return res, err
	}
	return res, json.Unmarshal([]byte(text), &res)
}

// VerdictOptions are the knobs of the comparison; zero values mean the defaults.
type VerdictOptions struct {
	Threshold  float64 // ratio of medians above which a pattern regressed (default 1.5)
	MinDeltaMs float64 // floor on the median's growth (default 0.5 ms)
	MinSamples int     // per side (default 5)
	// Noise control: globs matched against the fingerprint and the
	// normalized text (scry/filter.h). Session setup (SET, SHOW, BEGIN...)
	// is not judged unless JudgeSessionSetup.
	Include, Exclude  []string
	JudgeSessionSetup bool
	Settings          map[string]string
}

func (o *VerdictOptions) settings() (map[string]string, map[string]string) {
	m := map[string]string{}
	if o == nil {
		return m, nil
	}
	if o.Threshold != 0 {
		m["verdict.threshold"] = strconv.FormatFloat(o.Threshold, 'g', -1, 64)
	}
	if o.MinDeltaMs != 0 {
		m["verdict.min_delta_ms"] = strconv.FormatFloat(o.MinDeltaMs, 'g', -1, 64)
	}
	if o.MinSamples != 0 {
		m["verdict.min_samples"] = strconv.Itoa(o.MinSamples)
	}
	if len(o.Include) > 0 {
		m["verdict.include"] = strings.Join(o.Include, "\n")
	}
	if len(o.Exclude) > 0 {
		m["verdict.exclude"] = strings.Join(o.Exclude, "\n")
	}
	if o.JudgeSessionSetup {
		m["verdict.judge_session_setup"] = "true"
	}
	return m, o.Settings
}

// Pattern is one pattern of a JSON report (the keys of docs/cli.md).
type Pattern struct {
	Fingerprint    string   `json:"fingerprint"`
	Normalized     string   `json:"query"`
	Class          string   `json:"class"`
	Flagged        bool     `json:"flagged"`
	BaselineP50Ms  *float64 `json:"baseline_p50_ms"`
	CandidateP50Ms *float64 `json:"candidate_p50_ms"`
	Ratio          *float64 `json:"ratio"`
	ImpactMs       *float64 `json:"impact_ms"`
	Pairs          int64    `json:"pairs"`
	PlanChange     string   `json:"plan_change"`
	Reason         string   `json:"reason"`
}

// Summary is the totals of a report.
type Summary struct {
	Verdict  string `json:"verdict"`
	Patterns int    `json:"patterns"`
	Failures int    `json:"failures"`
}

// Report is the JSON report of a verdict.
type Report struct {
	Summary  Summary   `json:"summary"`
	Patterns []Pattern `json:"patterns"`
	AfterFix *Report   `json:"after_fix,omitempty"`
}

// Format is a report format.
type Format string

// Report formats.
const (
	Text     Format = "text"
	JSON     Format = "json"
	Markdown Format = "markdown"
	JUnit    Format = "junit"
	HTML     Format = "html"
)

// Result is a verdict: the JSON report, and every rendering of it.
type Result struct {
	Failures int     // patterns that fail the gate
	Report   *Report // the JSON report
	renders  map[Format]string
}

// ExitCode is the CLI's exit code for this outcome: 0 safe, 5 regressions.
func (r *Result) ExitCode() int {
	if r.Failures > 0 {
		return 5
	}
	return 0
}

// Render returns the report in format f ("" for formats this libscry lacks).
func (r *Result) Render(f Format) string { return r.renders[f] }

// Final is the final verdict's report (after the fix, when there is one).
func (r *Result) Final() *Report {
	if r.Report != nil && r.Report.AfterFix != nil {
		return r.Report.AfterFix
	}
	return r.Report
}

func (r *Result) String() string {
	word := "PASS"
	if r.Failures > 0 {
		word = "FAIL"
	}
	n := 0
	if f := r.Final(); f != nil {
		n = len(f.Patterns)
	}
	return fmt.Sprintf("scry %s: %d of %d patterns fail the gate (exit %d)", word, r.Failures, n, r.ExitCode())
}

func renderAll(render func(C.scry_report_format, *C.scry_buf, *C.scry_error) C.int, failures int) (*Result, error) {
	res := &Result{Failures: failures, renders: map[Format]string{}}
	for _, f := range []Format{Text, JSON, Markdown, JUnit, HTML} {
		cf := C.CString(string(f))
		var code C.scry_report_format
		ok := C.scry_report_format_parse(cf, &code) == 0
		C.free(unsafe.Pointer(cf))
		if !ok {
			continue
		}
		var b C.scry_buf
		var e C.scry_error
		rc := render(code, &b, &e)
		text := takeBuf(&b)
		if err := check(rc, &e); err != nil {
			return nil, err
		}
		res.renders[f] = text
	}
	res.Report = &Report{}
	return res, json.Unmarshal([]byte(res.renders[JSON]), res.Report)
}

// Diff compares the runs labelled baseline and candidate.
func (s *Store) Diff(baseline, candidate string, opts *VerdictOptions) (*Result, error) {
	st, err := newSettings()
	if err != nil {
		return nil, err
	}
	defer st.free()
	if err := st.setAll(opts.settings()); err != nil {
		return nil, err
	}
	var v *C.scry_verdict
	var e C.scry_error
	if err := check(C.scry_verdict_compute(&v, s.h, st.cstr(baseline), st.cstr(candidate),
		C.scry_settings_verdict(st.h), &e), &e); err != nil {
		return nil, err
	}
	defer C.scry_verdict_free(v)
	return renderAll(func(f C.scry_report_format, b *C.scry_buf, e *C.scry_error) C.int {
		return C.scry_report_render(v, f, b, e)
	}, int(C.scry_verdict_failures(v)))
}

// Migration is exactly one of: Func (run in-process with the clone's libpq
// connection string), Argv (a command run with DATABASE_URL and PG* set), or SQL.
type Migration struct {
	Func func(conninfo string) error
	Argv []string
	SQL  string
}

// MigrationOptions are the knobs of TestMigration; nil means defaults.
type MigrationOptions struct {
	Fix         *Migration // applied to B after the first verdict, then validated again
	Sequential  bool       // replay, migrate and replay on the target itself
	NoSettle    bool       // skip VACUUM ANALYZE after migrating
	LabelPrefix string     // prefix of the run labels (default "pipeline")
	// Migration impact (docs/impact.md): the workload replayed on the
	// candidate while the migration runs, and two gates on it (zero = off).
	NoImpact         bool
	ImpactSpeed      float64       // speed of that replay (default 1 = the captured rate)
	MaxLockWait      time.Duration // fail when a query waited longer on the migration's locks
	MaxMigrationTime time.Duration // fail when the migration took longer
	Replay           *ReplayOptions
	Verdict          *VerdictOptions
	Output           io.Writer // a migration command's output (nil: inherited)
	Callbacks        *Callbacks
	Settings         map[string]string // any other option, by key
}

// MigrationResult is the outcome of TestMigration.
type MigrationResult struct {
	*Result
	Stats Stats // what the run measured
}

// Stats holds the phase timings (microseconds) and the replays of a migration test.
type Stats struct {
	CloneUs       int64        `json:"clone_us"`
	MigrateUs     int64        `json:"migrate_us"`
	SettleUs      int64        `json:"settle_us"`
	ReplayUs      int64        `json:"replay_us"`
	VerdictUs     int64        `json:"verdict_us"`
	FixUs         int64        `json:"fix_us"`
	TotalUs       int64        `json:"total_us"`
	Baseline      ReplayResult `json:"baseline"`
	Candidate     ReplayResult `json:"candidate"`
	Fixed         ReplayResult `json:"fixed"`
	FixedBaseline ReplayResult `json:"fixed_baseline"`
}

// TestMigration clones target, applies the migration to clone B, replays the
// captured workload on both clones interleaved and decides. A failed
// migration gives an error matching ErrMigration (CI exit 4); cancelling
// ctx stops the run (its clones are dropped) with an error matching both
// ErrCanceled and ctx.Err().
func (s *Store) TestMigration(ctx context.Context, target string, m Migration, opts *MigrationOptions) (*MigrationResult, error) {
	if opts == nil {
		opts = &MigrationOptions{}
	}
	st, err := newSettings()
	if err != nil {
		return nil, err
	}
	defer st.free()
	typed, extra := opts.Replay.settings()
	vt, vx := opts.Verdict.settings()
	for k, v := range vt {
		typed[k] = v
	}
	if opts.Sequential {
		typed["pipeline.mode"] = "sequential"
	}
	if opts.NoSettle {
		typed["pipeline.no_settle"] = "true"
	}
	if opts.LabelPrefix != "" {
		typed["pipeline.label_prefix"] = opts.LabelPrefix
	}
	if opts.NoImpact {
		typed["pipeline.no_impact"] = "true"
	}
	if opts.ImpactSpeed != 0 {
		typed["pipeline.impact_speed"] = strconv.FormatFloat(opts.ImpactSpeed, 'g', -1, 64)
	}
	if opts.MaxLockWait != 0 {
		typed["pipeline.max_lock_wait_ms"] = strconv.FormatInt(opts.MaxLockWait.Milliseconds(), 10)
	}
	if opts.MaxMigrationTime != 0 {
		typed["pipeline.max_migration_seconds"] = strconv.FormatFloat(opts.MaxMigrationTime.Seconds(), 'g', -1, 64)
	}
	if err := st.setAll(typed, nil); err != nil {
		return nil, err
	}
	for _, x := range []map[string]string{extra, vx, opts.Settings} {
		if err := st.setAll(nil, x); err != nil {
			return nil, err
		}
	}
	st.callbacks(opts.Callbacks)
	st.output(opts.Output)
	if err := st.migration("migration", m); err != nil {
		return nil, err
	}
	if opts.Fix != nil {
		if err := st.migration("fix", *opts.Fix); err != nil {
			return nil, err
		}
	}
	var p *C.scry_pipeline
	var e C.scry_error
	if err := check(C.scry_pipeline_new(&p, s.h, st.cstr(target), C.scry_settings_pipeline(st.h), &e), &e); err != nil {
		return nil, err
	}
	defer C.scry_pipeline_free(p)
	err = withContext(ctx, func() { C.scry_pipeline_cancel(p) }, func() error {
		var e C.scry_error
		return check(C.scry_pipeline_run(p, C.scry_settings_migration(st.h, st.cstr("migration")), &e), &e)
	})
	if err != nil {
		return nil, err
	}
	res, err := renderAll(func(f C.scry_report_format, b *C.scry_buf, e *C.scry_error) C.int {
		return C.scry_pipeline_report(p, f, b, e)
	}, int(C.scry_pipeline_failures(p)))
	if err != nil {
		return nil, err
	}
	out := &MigrationResult{Result: res}
	var b C.scry_buf
	rc := C.scry_pipeline_stats_json(p, &b, &e)
	text := takeBuf(&b)
	if err := check(rc, &e); err != nil {
		return nil, err
	}
	return out, json.Unmarshal([]byte(text), &out.Stats)
}
