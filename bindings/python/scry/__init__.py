"""Python binding of libscry (ctypes, standard library only).

Lets a migration tool such as Alembic gate a migration in-process:

    import scry
    with scry.Store("scry.db") as store:
        result = store.test_migration("dbname=shop", migrate=run_alembic_upgrade)
        print(result.report_text)
        raise SystemExit(result.exit_code)          # 0 safe, 5 regressions

`migrate` receives the libpq connection string of the migrated clone. The
library is found through $SCRY_LIB, then next to this package in a build
tree, then the system's library path (libscry.so.0).
"""

import ctypes
import ctypes.util
import json
import os

__all__ = [
    "ScryError", "MigrationFailed", "Store", "MigrationResult",
    "version", "fingerprint", "normalize",
]

# --------------------------------------------------------------------------
# Loading the library
# --------------------------------------------------------------------------


def _load():
    candidates = []
    if os.environ.get("SCRY_LIB"):
        candidates.append(os.environ["SCRY_LIB"])
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "..", "build", "libscry.so"))
    found = ctypes.util.find_library("scry")
    if found:
        candidates.append(found)
    candidates.append("libscry.so.0")
    errors = []
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("cannot load libscry; build it (make build) or set SCRY_LIB.\n"
                      + "\n".join(errors))


_lib = _load()

# The structs below mirror the version-1 layouts of libscry 0.1 (docs/api.md,
# "Versioning"): the library reads options by their declared version and
# writes results only as far as their `size`, so any libscry.so.0 from 0.1 on
# serves them. Anything else is refused here, at import.
_BUILT_FOR = 100  # SCRY_VERSION_NUMBER (MAJOR*10000 + MINOR*100) these mirrors follow


def _check_version(lib):
    fn = getattr(lib, "scry_version_number", None)
    if fn is None:
        raise ImportError("the libscry loaded is older than 0.1 (no scry_version_number); "
                          "install libscry 0.1 or newer, or set SCRY_LIB")
    fn.restype = ctypes.c_int
    fn.argtypes = []
    n = fn()
    if n // 10000 != _BUILT_FOR // 10000 or n < _BUILT_FOR:
        raise ImportError(f"libscry {n // 10000}.{n // 100 % 100}.{n % 100} is not compatible with this "
                          f"binding (made for {_BUILT_FOR // 10000}.{_BUILT_FOR // 100 % 100} or a later "
                          f"{_BUILT_FOR // 10000}.x); install a matching libscry or set SCRY_LIB")


_check_version(_lib)

# Mirrors of the C structs (prefixes of them: fields appended later are
# unknown here, which the version/size rules make harmless).


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("sys_code", ctypes.c_int),
                ("sqlstate", ctypes.c_char * 6), ("message", ctypes.c_char * 512)]


class _Buf(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("asize", ctypes.c_size_t)]


class _StoreInfo(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t)] + [(name, ctypes.c_int64) for name in (
        "events", "sessions", "patterns", "statements", "runs", "samples",
        "first_us", "last_us", "file_bytes")] + [("schema_version", ctypes.c_int)]


_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64)
_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
_MIGRATION_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
_OUTPUT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)


class _ReplayOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("mode", ctypes.c_int), ("speed", ctypes.c_double),
                ("concurrency", ctypes.c_int), ("repeat", ctypes.c_int), ("warmup", ctypes.c_int),
                ("writes", ctypes.c_int), ("timeout_ms", ctypes.c_int),
                ("fingerprints", ctypes.c_void_p), ("nfingerprints", ctypes.c_size_t),
                ("progress", _PROGRESS_FN), ("progress_ctx", ctypes.c_void_p),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p),
                ("_reserved", ctypes.c_char * 256)]


class _ReplayResult(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("run_id", ctypes.c_int64), ("executions", ctypes.c_int64), ("errors", ctypes.c_int64),
                ("timeouts", ctypes.c_int64), ("reconnects", ctypes.c_int64), ("skipped", ctypes.c_int64),
                ("per_second", ctypes.c_double), ("elapsed_us", ctypes.c_int64),
                ("lag_p50_us", ctypes.c_int64), ("lag_p99_us", ctypes.c_int64), ("lag_max_us", ctypes.c_int64)]


class _VerdictOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("threshold", ctypes.c_double), ("min_delta_ms", ctypes.c_double),
                ("min_samples", ctypes.c_int),
                ("baseline_conninfo", ctypes.c_char_p), ("candidate_conninfo", ctypes.c_char_p),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p),
                ("progress", _PROGRESS_FN), ("progress_ctx", ctypes.c_void_p),
                ("_reserved", ctypes.c_char * 256)]


class _Migration(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("sql", ctypes.c_char_p), ("fn", _MIGRATION_FN), ("fn_ctx", ctypes.c_void_p),
                ("output", _OUTPUT_FN), ("output_ctx", ctypes.c_void_p),
                ("_reserved", ctypes.c_char * 256)]


class _PipelineOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("mode", ctypes.c_int), ("no_settle", ctypes.c_int),
                ("replay", ctypes.POINTER(_ReplayOptions)), ("verdict", ctypes.POINTER(_VerdictOptions)),
                ("fix", ctypes.POINTER(_Migration)), ("label_prefix", ctypes.c_char_p),
                ("suffix", ctypes.c_char_p), ("progress", _PROGRESS_FN), ("progress_ctx", ctypes.c_void_p),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p),
                ("_reserved", ctypes.c_char * 256)]


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_E = ctypes.POINTER(_Error)
_B = ctypes.POINTER(_Buf)
_version = _fn("scry_version", ctypes.c_char_p)
_strerror = _fn("scry_strerror", ctypes.c_char_p, ctypes.c_int)
_buf_dispose = _fn("scry_buf_dispose", None, _B)
_fp_compute = _fn("scry_fingerprint_compute", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t,
                  ctypes.POINTER(ctypes.c_uint64), _E)
_fp_normalize = _fn("scry_fingerprint_normalize", ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, _B, _E)
_store_open = _fn("scry_store_open", ctypes.c_int, _PP, ctypes.c_char_p, _P, _E)
_store_free = _fn("scry_store_free", None, _P)
_store_info = _fn("scry_store_info_get", ctypes.c_int, _P, ctypes.POINTER(_StoreInfo), _E)
_replay_options_init = _fn("scry_replay_options_init", None, ctypes.POINTER(_ReplayOptions))
_replay_new = _fn("scry_replay_new", ctypes.c_int, _PP, _P, ctypes.POINTER(_ReplayOptions), _E)
_replay_run = _fn("scry_replay_run", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_char_p,
                  ctypes.POINTER(_ReplayResult), _E)
_replay_free = _fn("scry_replay_free", None, _P)
_verdict_options_init = _fn("scry_verdict_options_init", None, ctypes.POINTER(_VerdictOptions))
_verdict_compute = _fn("scry_verdict_compute", ctypes.c_int, _PP, _P, ctypes.c_char_p, ctypes.c_char_p,
                       ctypes.POINTER(_VerdictOptions), _E)
_verdict_failures = _fn("scry_verdict_failures", ctypes.c_size_t, _P)
_verdict_free = _fn("scry_verdict_free", None, _P)
_report_format_parse = _fn("scry_report_format_parse", ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int))
_report_render = _fn("scry_report_render", ctypes.c_int, _P, ctypes.c_int, _B, _E)

SCRY_EMIGRATION = -13

# --------------------------------------------------------------------------
# Errors and helpers
# --------------------------------------------------------------------------


class ScryError(Exception):
    """A libscry failure: `code` is the SCRY_E* code, `sqlstate` PostgreSQL's."""

    def __init__(self, code, message, sqlstate=""):
        super().__init__(message or _strerror(code).decode())
        self.code = code
        self.sqlstate = sqlstate


class MigrationFailed(ScryError):
    """The migration (or the fix) failed: CI exit code 4."""


def _check(rc, err):
    if rc < 0:
        msg = err.message.decode("utf-8", "replace")
        cls = MigrationFailed if rc == SCRY_EMIGRATION else ScryError
        raise cls(rc, msg, err.sqlstate.decode("ascii", "replace"))
    return rc


def _take(buf):
    try:
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8", "replace") if buf.ptr else ""
    finally:
        _buf_dispose(ctypes.byref(buf))


def _b(s):
    return s.encode() if isinstance(s, str) else s


def version():
    """The version of the loaded libscry, e.g. "0.1.0"."""
    return _version().decode()


def fingerprint(sql):
    """pg_query-compatible fingerprint of one statement, as 16 hex digits."""
    data = _b(sql)
    out = ctypes.c_uint64()
    err = _Error()
    _check(_fp_compute(None, data, len(data), ctypes.byref(out), ctypes.byref(err)), err)
    return "%016x" % out.value


def normalize(sql):
    """The statement with its constants replaced by $1, $2, ... (pg_query_normalize)."""
    data = _b(sql)
    buf = _Buf()
    err = _Error()
    rc = _fp_normalize(data, len(data), ctypes.byref(buf), ctypes.byref(err))
    text = _take(buf)
    _check(rc, err)
    return text


# --------------------------------------------------------------------------
# Store, replay, verdict, pipeline
# --------------------------------------------------------------------------

_MODES = {"fast": 0, "timed": 1}
_WRITES = {"rollback": 0, "skip": 1, "execute": 2}


class MigrationResult:
    """Outcome of Store.test_migration()."""

    def __init__(self, failures, report, report_text, stats):
        self.failures = failures          # patterns that fail the gate
        self.report = report              # the JSON report, as a dict
        self.report_text = report_text    # the text report
        self.stats = stats                # timings (microseconds)

    @property
    def exit_code(self):
        """The CLI's exit code for this outcome: 0 safe, 5 regressions."""
        return 5 if self.failures else 0

    @property
    def patterns(self):
        final = self.report.get("after_fix", self.report)
        return final.get("patterns", [])


class Store:
    """A workload store (SQLite file). Use as a context manager."""

    def __init__(self, path="scry.db", must_exist=False):
        self._h = ctypes.c_void_p()
        err = _Error()
        opts = None
        if must_exist:
            # scry_store_options: version, read_only, must_exist, durable
            raw = (ctypes.c_uint * 4)(1, 0, 1, 0)
            opts = ctypes.cast(raw, ctypes.c_void_p)
        _check(_store_open(ctypes.byref(self._h), _b(path), opts, ctypes.byref(err)), err)
        self.path = path

    def close(self):
        if self._h:
            _store_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def info(self):
        """Counts: events, sessions, patterns, statements, runs, samples, ..."""
        out = _StoreInfo(size=ctypes.sizeof(_StoreInfo))
        err = _Error()
        _check(_store_info(self._h, ctypes.byref(out), ctypes.byref(err)), err)
        return {name: getattr(out, name) for name, _ in _StoreInfo._fields_ if name != "size"}

    def replay(self, target, label, mode="fast", speed=1.0, concurrency=8, repeat=1, warmup=0,
               writes="rollback", timeout_ms=30000):
        """Replays the workload against `target` (libpq conninfo) as run `label`."""
        opts = self._replay_options(mode, speed, concurrency, repeat, warmup, writes, timeout_ms)
        r = ctypes.c_void_p()
        err = _Error()
        _check(_replay_new(ctypes.byref(r), self._h, ctypes.byref(opts), ctypes.byref(err)), err)
        try:
            res = _ReplayResult(size=ctypes.sizeof(_ReplayResult))
            _check(_replay_run(r, _b(target), _b(label), ctypes.byref(res), ctypes.byref(err)), err)
        finally:
            _replay_free(r)
        return {name: getattr(res, name) for name, _ in _ReplayResult._fields_ if name != "size"}

    def diff(self, baseline, candidate, threshold=1.5, min_delta_ms=0.5, format="json"):
        """Compares two runs. Returns the JSON report as a dict (format="json") or the rendered text."""
        vo = _VerdictOptions()
        _verdict_options_init(ctypes.byref(vo))
        vo.threshold = threshold
        vo.min_delta_ms = min_delta_ms
        v = ctypes.c_void_p()
        err = _Error()
        _check(_verdict_compute(ctypes.byref(v), self._h, _b(baseline), _b(candidate), ctypes.byref(vo),
                                ctypes.byref(err)), err)
        try:
            return self._render(_report_render, v, format)
        finally:
            _verdict_free(v)

    def test_migration(self, target, migrate, fix=None, sequential=False, threshold=1.5, min_delta_ms=0.5,
                       repeat=None, concurrency=None, progress=None):
        """Clones `target`, migrates clone B, replays the workload on both, decides.

        `migrate` and `fix` are each a callable taking the clone's libpq
        connection string (run in-process; raise to fail), a list of argv
        (a command run with DATABASE_URL and PG* set), or a SQL string.
        Raises MigrationFailed when the migration fails (CI exit 4).
        """
        p_new = _fn("scry_pipeline_new", ctypes.c_int, _PP, _P, ctypes.c_char_p,
                    ctypes.POINTER(_PipelineOptions), _E)
        p_run = _fn("scry_pipeline_run", ctypes.c_int, _P, ctypes.POINTER(_Migration), _E)
        p_failures = _fn("scry_pipeline_failures", ctypes.c_size_t, _P)
        p_report = _fn("scry_pipeline_report", ctypes.c_int, _P, ctypes.c_int, _B, _E)
        p_options_init = _fn("scry_pipeline_options_init", None, ctypes.POINTER(_PipelineOptions))
        p_free = _fn("scry_pipeline_free", None, _P)

        keep = []  # ctypes objects that must outlive the call
        opts = _PipelineOptions()
        p_options_init(ctypes.byref(opts))
        opts.mode = 1 if sequential else 0
        vo = _VerdictOptions()
        _verdict_options_init(ctypes.byref(vo))
        vo.threshold = threshold
        vo.min_delta_ms = min_delta_ms
        opts.verdict = ctypes.pointer(vo)
        if repeat is not None or concurrency is not None:
            ro = self._replay_options("fast", 1.0, concurrency or 8, repeat or 5, 1, "rollback", 30000)
            opts.replay = ctypes.pointer(ro)
            keep.append(ro)
        if progress is not None:
            cb = _PROGRESS_FN(lambda ctx, phase, done, total: progress(phase.decode(), done, total))
            opts.progress = cb
            keep.append(cb)
        if fix is not None:
            fm = self._migration(fix, keep)
            opts.fix = ctypes.pointer(fm)
        mig = self._migration(migrate, keep)

        p = ctypes.c_void_p()
        err = _Error()
        _check(p_new(ctypes.byref(p), self._h, _b(target), ctypes.byref(opts), ctypes.byref(err)), err)
        try:
            _check(p_run(p, ctypes.byref(mig), ctypes.byref(err)), err)
            failures = p_failures(p)
            report = json.loads(self._render(p_report, p, "json"))
            text = self._render(p_report, p, "text")
        finally:
            p_free(p)
        return MigrationResult(failures, report, text, {})

    # -- helpers --

    @staticmethod
    def _replay_options(mode, speed, concurrency, repeat, warmup, writes, timeout_ms):
        o = _ReplayOptions()
        _replay_options_init(ctypes.byref(o))
        o.mode = _MODES[mode]
        o.speed = speed
        o.concurrency = concurrency
        o.repeat = repeat
        o.warmup = warmup
        o.writes = _WRITES[writes]
        o.timeout_ms = timeout_ms
        return o

    @staticmethod
    def _render(fn, handle, format):
        fmt = ctypes.c_int()
        if _report_format_parse(_b(format), ctypes.byref(fmt)) != 0:
            raise ValueError(f"unknown report format {format!r} (text, json, markdown, junit)")
        buf = _Buf()
        err = _Error()
        rc = fn(handle, fmt.value, ctypes.byref(buf), ctypes.byref(err))
        text = _take(buf)
        _check(rc, err)
        if format == "json" and fn is _report_render:
            return json.loads(text)
        return text

    @staticmethod
    def _migration(what, keep):
        m = _Migration()
        m.version = 1
        if callable(what):
            def trampoline(ctx, conninfo, message, size):
                try:
                    what(conninfo.decode())
                    return 0
                except Exception as e:  # the migration's failure, reported to the pipeline
                    text = f"{type(e).__name__}: {e}".encode()[: max(0, size - 1)]
                    ctypes.memmove(message, text + b"\0", len(text) + 1)
                    return 1
            cb = _MIGRATION_FN(trampoline)
            m.fn = cb
            keep.append(cb)
        elif isinstance(what, (list, tuple)):
            argv = (ctypes.c_char_p * (len(what) + 1))(*[_b(a) for a in what], None)
            m.argv = ctypes.cast(argv, ctypes.POINTER(ctypes.c_char_p))
            keep.append(argv)
        elif isinstance(what, str):
            sql = _b(what)
            m.sql = sql
            keep.append(sql)
        else:
            raise TypeError("a migration is a callable, an argv list, or a SQL string")
        keep.append(m)
        return m
