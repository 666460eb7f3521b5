"""scry: catch the query regressions a PostgreSQL migration will cause, before it ships.

The Python binding of libscry (ctypes, standard library only). A migration
tool gates a migration in-process:

    import scry
    with scry.Store("scry.db") as store:
        result = store.test_migration("dbname=shop", migrate=scry.alembic.upgrade("head"))
    print(result.render("markdown"))
    raise SystemExit(result.exit_code)          # 0 safe, 5 regressions

`migrate` receives the libpq connection string of the migrated clone. Every
option of the C API is reachable by name (see `settings()`); Ctrl-C during a
run cancels it and raises KeyboardInterrupt. The library is found through
$SCRY_LIB, this package's directory, the install prefix, pkg-config, then the
system's library path. Documented in bindings/python/README.md.
"""

import contextlib
import ctypes
import json
import logging
import signal
import threading

from . import _native
from ._native import lib as _lib

__version__ = _native.VERSION

__all__ = [
    "ScryError", "MigrationFailed", "Store", "Result", "MigrationResult", "ReplayResult",
    "version", "library_path", "fingerprint", "normalize", "settings", "assert_no_regressions",
    "FORMATS",
]

# Error codes (scry/core.h).
EINVAL, ENOTFOUND, ECANCELED, EMIGRATION = -1, -8, -12, -13

#: Report formats this library renders.
FORMATS = tuple(f for f in ("text", "json", "markdown", "junit", "html")
                if _lib.scry_report_format_parse(f.encode(), ctypes.byref(ctypes.c_int())) == 0)

log = logging.getLogger("scry")
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


class ScryError(Exception):
    """A libscry failure: `code` is the SCRY_E* code, `sqlstate` PostgreSQL's."""

    def __init__(self, code, message, sqlstate=""):
        super().__init__(message or _lib.scry_strerror(code).decode())
        self.code = code
        self.sqlstate = sqlstate


class MigrationFailed(ScryError):
    """The migration (or the fix) failed: the CLI's exit code 4."""


def _check(rc, err):
    if rc < 0:
        msg = err.message.decode("utf-8", "replace")
        cls = MigrationFailed if rc == EMIGRATION else ScryError
        raise cls(rc, msg, err.sqlstate.decode("ascii", "replace"))
    return rc


def _take(buf):
    try:
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8", "replace") if buf.ptr else ""
    finally:
        _lib.scry_buf_dispose(ctypes.byref(buf))


def _call_buf(fn, *args):
    """Calls fn(*args, &buf, &err) and returns the buffer's text."""
    buf, err = _native.Buf(), _native.Error()
    rc = fn(*args, ctypes.byref(buf), ctypes.byref(err))
    text = _take(buf)
    _check(rc, err)
    return text


def _b(s):
    return s.encode() if isinstance(s, str) else s


def version():
    """The version of the loaded libscry, e.g. "0.1.0"."""
    return _lib.scry_version().decode()


def library_path():
    """The path of the loaded libscry."""
    return _native.path


def fingerprint(sql):
    """pg_query-compatible fingerprint of one statement, as 16 hex digits."""
    data = _b(sql)
    out, err = ctypes.c_uint64(), _native.Error()
    _check(_lib.scry_fingerprint_compute(None, data, len(data), ctypes.byref(out), ctypes.byref(err)), err)
    return "%016x" % out.value


def normalize(sql):
    """The statement with its constants replaced by $1, $2, ... (pg_query_normalize)."""
    data = _b(sql)
    return _call_buf(_lib.scry_fingerprint_normalize, data, len(data))


def settings():
    """Every option by name: a list of dicts with key, type, default, doc (scry_settings_describe)."""
    return json.loads(_call_buf(_lib.scry_settings_describe))


_KEYS = {d["key"]: d for d in settings()}


# --------------------------------------------------------------------------
# Settings: options by name, and the callbacks that keep Ctrl-C working
# --------------------------------------------------------------------------

class _Settings:
    """A scry_settings handle, its callbacks, and what happened in them."""

    def __init__(self, sections, options, kwargs, progress=None, log_fn=None):
        self.h = ctypes.c_void_p()
        err = _native.Error()
        _check(_lib.scry_settings_new(ctypes.byref(self.h), ctypes.byref(err)), err)
        self.keep = []            # ctypes objects that must outlive the run
        self.interrupt = None     # a KeyboardInterrupt/SystemExit raised in a callback
        self.cancel = None        # cancels the running operation
        try:
            for key, value in dict(options or {}).items():
                self.set(key, value)
            for name, value in kwargs.items():
                self.set(self._resolve(name, sections), value)
            self._callbacks(progress, log_fn)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _resolve(name, sections):
        found = [k for k in _KEYS if k.split(".", 1)[0] in sections and k.split(".", 1)[1] == name]
        if len(found) == 1:
            return found[0]
        if found:
            raise TypeError(f"option {name!r} is ambiguous ({', '.join(found)}): pass options={{...}} "
                            "with the full key")
        valid = sorted(k.split(".", 1)[1] for k in _KEYS if k.split(".", 1)[0] in sections)
        raise TypeError(f"unknown option {name!r}; valid here: {', '.join(valid)} "
                        "(scry.settings() describes them)")

    def set(self, key, value):
        if value is None:
            text = None
        elif isinstance(value, bool):
            text = b"true" if value else b"false"
        elif isinstance(value, (list, tuple, set)):
            sep = "," if _KEYS.get(key, {}).get("type") == "fingerprints" else "\n"  # globs: one per line
            text = sep.join(str(v) for v in value).encode()
        else:
            text = str(value).encode()
        err = _native.Error()
        try:
            _check(_lib.scry_settings_set(self.h, _b(key), text, ctypes.byref(err)), err)
        except ScryError as e:
            raise ValueError(str(e)) from None

    def _guard(self, fn, default=None):
        """Wraps a Python callback: Ctrl-C or SystemExit inside it cancels the run."""
        def wrapped(*args):
            if self.interrupt is not None:
                return default
            try:
                return fn(*args)
            except (KeyboardInterrupt, SystemExit) as e:
                self.interrupted(e)
                return default
            except Exception:  # a progress/log callback must not break the run
                log.exception("scry: exception in a callback")
                return default
        return wrapped

    def interrupted(self, e):
        if self.interrupt is None:
            self.interrupt = e
        if self.cancel is not None:
            self.cancel()

    def _callbacks(self, progress, log_fn):
        def on_log(ctx, level, message):
            text = message.decode("utf-8", "replace")
            if log_fn is not None:
                log_fn(_LEVELS.get(level, logging.INFO), text)
            else:
                log.log(_LEVELS.get(level, logging.INFO), "%s", text)
        cb = _native.LOG_FN(self._guard(on_log))
        self.keep.append(cb)
        _lib.scry_settings_set_log(self.h, cb, None)
        if progress is not None:
            pcb = _native.PROGRESS_FN(self._guard(lambda ctx, phase, done, total:
                                                  progress(phase.decode(), done, total)))
            self.keep.append(pcb)
            _lib.scry_settings_set_progress(self.h, pcb, None)

    def migration(self, which, what):
        err = _native.Error()
        if callable(what):
            def trampoline(ctx, conninfo, message, size):
                if self.interrupt is not None:
                    return 1
                try:
                    what(conninfo.decode())
                    return 0
                except (KeyboardInterrupt, SystemExit) as e:
                    self.interrupted(e)
                    text = b"interrupted"
                except BaseException as e:  # the migration's failure, reported to the pipeline
                    text = f"{type(e).__name__}: {e}".encode("utf-8", "replace")
                text = text[: max(0, size - 1)]
                ctypes.memmove(message, text + b"\0", len(text) + 1)
                return 1
            cb = _native.MIGRATION_FN(trampoline)
            self.keep.append(cb)
            _check(_lib.scry_settings_set_migration_fn(self.h, _b(which), cb, None, ctypes.byref(err)), err)
        elif isinstance(what, (list, tuple)):
            argv = (ctypes.c_char_p * (len(what) + 1))(*[_b(str(a)) for a in what], None)
            _check(_lib.scry_settings_set_migration_argv(self.h, _b(which), argv, ctypes.byref(err)), err)
        elif isinstance(what, str):
            self.set(f"{which}.sql", what)
        else:
            raise TypeError(f"{which}: a migration is a callable, an argv list, or a SQL string")

    def run(self, fn, cancel):
        """Runs fn() in a worker thread so that Ctrl-C reaches this thread at once.

        On KeyboardInterrupt (here or in a callback) the operation is
        cancelled, waited for, and the KeyboardInterrupt re-raised: a
        cancelled run never returns a result.
        """
        self.cancel = cancel
        box = {}

        def work():
            try:
                box["value"] = fn()
            except BaseException as e:  # re-raised in the caller's thread
                box["error"] = e

        t = threading.Thread(target=work, name="scry", daemon=True)
        with self._sigint():
            t.start()
            while t.is_alive():
                try:
                    t.join(0.1)
                except (KeyboardInterrupt, SystemExit) as e:  # raised by another handler
                    self.interrupted(e)
        self.cancel = None
        if self.interrupt is not None:
            raise self.interrupt
        if "error" in box:
            raise box["error"]
        return box.get("value")

    @contextlib.contextmanager
    def _sigint(self):
        """While a run is in progress, Ctrl-C cancels it instead of raising at a random point.

        Python raises KeyboardInterrupt between any two bytecodes, which could
        leave the worker running unobserved; this handler records the
        interrupt and cancels. A handler the application installed is still
        called. Only possible in the main thread (where signals arrive).
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, signal.SIG_DFL, None):
            yield
            return

        def handler(signum, frame):
            if previous is signal.default_int_handler:
                self.interrupted(KeyboardInterrupt())
                return
            try:
                previous(signum, frame)
            except BaseException as e:  # noqa: B036 - recorded, re-raised after the cancel
                self.interrupted(e)
        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def close(self):
        if self.h:
            _lib.scry_settings_free(self.h)
            self.h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

class ReplayResult(dict):
    """What one replay measured: run_id, executions, errors, timeouts, per_second, ..."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self):
        return (f"<scry.ReplayResult run {self.get('run_id')}: {self.get('executions')} executions, "
                f"{self.get('errors')} errors>")


class Result:
    """A verdict: `failures`, `patterns` (dicts, worst first), `report` (JSON), `render(format)`."""

    def __init__(self, renders, failures, stats=None):
        self._renders = renders               # format -> text
        self.failures = failures              # patterns that fail the gate
        self.report = json.loads(renders["json"])
        self.stats = stats or {}

    @property
    def exit_code(self):
        """The CLI's exit code for this outcome: 0 safe, 5 regressions."""
        return 5 if self.failures else 0

    @property
    def passed(self):
        return not self.failures

    @property
    def final_report(self):
        """The final verdict's JSON (after the fix, when there is one)."""
        return self.report.get("after_fix", self.report)

    @property
    def patterns(self):
        """The final verdict's patterns (dicts with the keys of docs/cli.md), worst first."""
        return self.final_report.get("patterns", [])

    @property
    def failing_patterns(self):
        return [p for p in self.patterns if p.get("flagged")]

    @property
    def report_text(self):
        return self.render("text")

    def render(self, format="text"):
        """The report in `format`: one of scry.FORMATS (text, json, markdown, junit, html)."""
        if format == "md":
            format = "markdown"
        if format not in self._renders:
            raise ValueError(f"unknown report format {format!r} (one of {', '.join(FORMATS)})")
        return self._renders[format]

    def __repr__(self):
        summary = self.final_report.get("summary", {})
        word = "FAIL" if self.failures else "PASS"
        return (f"<scry.{type(self).__name__} {word}: {self.failures} of {summary.get('patterns', 0)} "
                f"patterns fail the gate (exit {self.exit_code})>")


class MigrationResult(Result):
    """Outcome of Store.test_migration(); `stats` holds the phase timings (microseconds)."""


def _render_all(fn, handle):
    out = {}
    for f in FORMATS:
        code = ctypes.c_int()
        _lib.scry_report_format_parse(f.encode(), ctypes.byref(code))
        out[f] = _call_buf(fn, handle, code.value)
    return out


def _markdown_failures(markdown):
    """The Markdown report cut to the failing patterns: header, their table rows, the "Why" section."""
    lines, out, in_table, why = markdown.splitlines(), [], False, False
    for line in lines:
        if line.startswith("#### "):
            why = True
        if why:
            out.append(line)
        elif line.startswith("|"):
            if not in_table:
                in_table = True
                out.append(line)
            elif line.startswith("|---") or "**FAIL**" in line:
                out.append(line)
        else:
            out.append(line)
    return "\n".join(out).strip() + "\n"


def assert_no_regressions(result):
    """Raises AssertionError with the Markdown report cut to the failing patterns
    when `result` (a Result) has any pattern that fails the gate."""
    if not isinstance(result, Result):
        raise TypeError(f"assert_no_regressions takes a scry.Result, not {type(result).__name__}")
    if result.failures:
        raise AssertionError("scry: the migration regresses %d query pattern(s)\n\n%s"
                             % (result.failures, _markdown_failures(result.render("markdown"))))


# --------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------

class Store:
    """A workload store (a SQLite file). Use as a context manager.

    Opening a path where no store exists fails (ScryError, code ENOTFOUND)
    unless create=True, so that a typo'd path is not silently a new empty store.
    """

    def __init__(self, path="scry.db", create=False, read_only=False, durable=False):
        self._h = ctypes.c_void_p()
        self._lock = threading.Lock()
        self._running = None
        with _Settings(("store",), {"store.must_exist": not create, "store.read_only": read_only,
                                    "store.durable": durable}, {}) as s:
            err = _native.Error()
            rc = _lib.scry_store_open(ctypes.byref(self._h), _b(path), _lib.scry_settings_store(s.h),
                                      ctypes.byref(err))
            if rc == ENOTFOUND and not create:
                raise ScryError(rc, f"{err.message.decode('utf-8', 'replace')} (pass create=True to create "
                                "a new store)")
            _check(rc, err)
        self.path = path

    def close(self):
        if self._h:
            _lib.scry_store_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return f"<scry.Store {self.path!r}{'' if self._h else ' (closed)'}>"

    def _handle(self):
        if not self._h:
            raise ValueError("the store is closed")
        return self._h

    def cancel(self):
        """Cancels the replay or migration test running on this store (from any thread)."""
        running = self._running
        if running is not None:
            running()

    def info(self):
        """Counts: events, sessions, patterns, statements, runs, samples, ..."""
        return json.loads(_call_buf(_lib.scry_store_info_json, self._handle()))

    def replay(self, target, label, *, options=None, progress=None, log=None, **kwargs):
        """Replays the workload against `target` (libpq conninfo) as run `label`.

        Keyword options are the "replay.*" settings (mode, speed, concurrency,
        repeat, warmup, writes, timeout_ms, fingerprints). Returns a ReplayResult.
        """
        h = self._handle()
        with _Settings(("replay",), options, kwargs, progress, log) as s:
            r = ctypes.c_void_p()
            err = _native.Error()
            _check(_lib.scry_replay_new(ctypes.byref(r), h, _lib.scry_settings_replay(s.h), ctypes.byref(err)), err)
            try:
                self._running = lambda: _lib.scry_replay_cancel(r)
                text = s.run(lambda: _call_buf(_lib.scry_replay_run_json, r, _b(target), _b(label)),
                             self._running)
            finally:
                self._running = None
                _lib.scry_replay_free(r)
        return ReplayResult(json.loads(text))

    def diff(self, baseline, candidate, *, options=None, log=None, **kwargs):
        """Compares the runs labelled `baseline` and `candidate`; returns a Result.

        Keyword options are the "verdict.*" settings (threshold, min_delta_ms,
        min_samples, baseline_conninfo, candidate_conninfo).
        """
        h = self._handle()
        with _Settings(("verdict",), options, kwargs, None, log) as s:
            def compute():
                v = ctypes.c_void_p()
                err = _native.Error()
                _check(_lib.scry_verdict_compute(ctypes.byref(v), h, _b(baseline), _b(candidate),
                                                 _lib.scry_settings_verdict(s.h), ctypes.byref(err)), err)
                try:
                    return Result(_render_all(_lib.scry_report_render, v), _lib.scry_verdict_failures(v))
                finally:
                    _lib.scry_verdict_free(v)
            # The verdict cannot be interrupted: Ctrl-C waits for it, then raises.
            return s.run(compute, lambda: None)

    def test_migration(self, target, migrate, fix=None, *, sequential=False, options=None, progress=None,
                       log=None, output=None, **kwargs):
        """Clones `target`, migrates clone B, replays the workload on both, decides.

        `migrate` and `fix` are each a callable taking the clone's libpq
        connection string (run in-process; raise to fail), an argv list (a
        command run with DATABASE_URL and PG* set), or a SQL string. Keyword
        options are the "pipeline.*", "replay.*" and "verdict.*" settings by
        their short names (threshold=2, repeat=3, no_settle=True, ...); pass
        options={"replay.mode": ...} for a full key. `progress(phase, done,
        total)` and `log(level, message)` receive the library's reports;
        `output(bytes)` a migration command's output.

        Returns a MigrationResult. Raises MigrationFailed when the migration
        fails (CI exit 4), and KeyboardInterrupt after Ctrl-C (the run is
        cancelled and its clones dropped).
        """
        h = self._handle()
        if sequential:
            options = dict(options or {}, **{"pipeline.mode": "sequential"})
        with _Settings(("pipeline", "replay", "verdict"), options, kwargs, progress, log) as s:
            s.migration("migration", migrate)
            if fix is not None:
                s.migration("fix", fix)
            if output is not None:
                ocb = _native.OUTPUT_FN(s._guard(lambda ctx, data, n: output(ctypes.string_at(data, n))))
                s.keep.append(ocb)
                for which in ("migration", "fix"):
                    err = _native.Error()
                    _lib.scry_settings_set_migration_output(s.h, which.encode(), ocb, None, ctypes.byref(err))
            p = ctypes.c_void_p()
            err = _native.Error()
            _check(_lib.scry_pipeline_new(ctypes.byref(p), h, _b(target), _lib.scry_settings_pipeline(s.h),
                                          ctypes.byref(err)), err)
            try:
                def run():
                    e = _native.Error()
                    _check(_lib.scry_pipeline_run(p, _lib.scry_settings_migration(s.h, b"migration"),
                                                  ctypes.byref(e)), e)
                    stats = json.loads(_call_buf(_lib.scry_pipeline_stats_json, p))
                    return MigrationResult(_render_all(_lib.scry_pipeline_report, p),
                                           _lib.scry_pipeline_failures(p), stats)
                self._running = lambda: _lib.scry_pipeline_cancel(p)
                return s.run(run, self._running)
            finally:
                self._running = None
                _lib.scry_pipeline_free(p)


def __getattr__(name):
    # scry.alembic without importing SQLAlchemy for every user of the package.
    if name == "alembic":
        from . import alembic
        return alembic
    raise AttributeError(f"module 'scry' has no attribute {name!r}")
