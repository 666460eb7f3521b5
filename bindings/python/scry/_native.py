"""Loading libscry and declaring the C functions the package calls.

Only two structs are shared by layout, `scry_error` and `scry_buf`
(scry/core.h), which never change. Options are set by name through
scry_settings (scry/settings.h) and results come back as JSON, so nothing
here depends on the layout of an options or result struct.
"""

import ctypes
import ctypes.util
import os
import shutil
import subprocess

# The library this package mirrors. A libscry of the same major version and
# at least this version is accepted (docs/api.md, "Versioning").
VERSION = "0.1.0"


def _number(v):
    major, minor, patch = (int(x) for x in v.split("."))
    return major * 10000 + minor * 100 + patch


def _config_libdir():
    """The install prefix's libdir recorded at `cmake --install` (relative to here)."""
    try:
        from . import _config  # written by cmake --install; absent in a source tree
    except ImportError:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, _config.LIBDIR_FROM_PACKAGE))


def _pkg_config_libdir():
    exe = shutil.which("pkg-config")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--variable=libdir", "scry"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def candidates():
    """Where the library is looked for, in order: (what, path)."""
    out = []
    if os.environ.get("SCRY_LIB"):
        out.append(("$SCRY_LIB", os.environ["SCRY_LIB"]))
    here = os.path.dirname(os.path.abspath(__file__))
    out.append(("the package's directory", os.path.join(here, "libscry.so.0")))
    libdir = _config_libdir()
    if libdir:
        out.append(("the install prefix", os.path.join(libdir, "libscry.so.0")))
    libdir = _pkg_config_libdir()
    if libdir:
        out.append(("pkg-config", os.path.join(libdir, "libscry.so.0")))
    found = ctypes.util.find_library("scry")
    if found:
        out.append(("the system", found))
    out.append(("the system", "libscry.so.0"))
    return out


def _load():
    errors = []
    for what, path in candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"  {what}: {path}: no such file")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"  {what}: {e}")
            continue
        lib.scry_version.restype = ctypes.c_char_p
        have = lib.scry_version().decode()
        if hasattr(lib, "scry_version_number"):  # MAJOR*10000 + MINOR*100 + PATCH
            lib.scry_version_number.restype = ctypes.c_int
            n = lib.scry_version_number()
            have = "%d.%d.%d" % (n // 10000, n // 100 % 100, n % 100)
        n, built = _number(have), _number(VERSION)
        if n // 10000 != built // 10000 or n < built:
            errors.append(f"  {what}: {path} is libscry {have}; this package needs {VERSION[0]}.x, "
                          f"at least {VERSION}")
            continue
        if not hasattr(lib, "scry_settings_new"):
            errors.append(f"  {what}: {path} is too old (no scry_settings_new)")
            continue
        return lib, path
    raise ImportError("scry: cannot load libscry. Install it (cmake --install), or set SCRY_LIB to "
                      "the path of libscry.so. Tried:\n" + "\n".join(errors))


lib, path = _load()


class Error(ctypes.Structure):
    """struct scry_error (scry/core.h)."""
    _fields_ = [("code", ctypes.c_int), ("sys_code", ctypes.c_int),
                ("sqlstate", ctypes.c_char * 6), ("message", ctypes.c_char * 512)]


class Buf(ctypes.Structure):
    """struct scry_buf (scry/core.h)."""
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("asize", ctypes.c_size_t)]


PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
MIGRATION_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
OUTPUT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

P = ctypes.c_void_p
PP = ctypes.POINTER(ctypes.c_void_p)
E = ctypes.POINTER(Error)
B = ctypes.POINTER(Buf)
S = ctypes.c_char_p
I = ctypes.c_int

_SIGNATURES = {
    "scry_version": (S,),
    "scry_strerror": (S, I),
    "scry_buf_dispose": (None, B),
    "scry_fingerprint_compute": (I, P, S, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint64), E),
    "scry_fingerprint_normalize": (I, S, ctypes.c_size_t, B, E),
    "scry_settings_new": (I, PP, E),
    "scry_settings_free": (None, P),
    "scry_settings_set": (I, P, S, S, E),
    "scry_settings_describe": (I, B, E),
    "scry_settings_set_log": (None, P, LOG_FN, P),
    "scry_settings_set_progress": (None, P, PROGRESS_FN, P),
    "scry_settings_set_migration_fn": (I, P, S, MIGRATION_FN, P, E),
    "scry_settings_set_migration_argv": (I, P, S, ctypes.POINTER(S), E),
    "scry_settings_set_migration_output": (I, P, S, OUTPUT_FN, P, E),
    "scry_settings_store": (P, P),
    "scry_settings_replay": (P, P),
    "scry_settings_verdict": (P, P),
    "scry_settings_pipeline": (P, P),
    "scry_settings_migration": (P, P, S),
    "scry_store_open": (I, PP, S, P, E),
    "scry_store_free": (None, P),
    "scry_store_info_json": (I, P, B, E),
    "scry_replay_new": (I, PP, P, P, E),
    "scry_replay_run_json": (I, P, S, S, B, E),
    "scry_replay_cancel": (None, P),
    "scry_replay_free": (None, P),
    "scry_verdict_compute": (I, PP, P, S, S, P, E),
    "scry_verdict_failures": (ctypes.c_size_t, P),
    "scry_verdict_free": (None, P),
    "scry_report_format_parse": (I, S, ctypes.POINTER(I)),
    "scry_report_render": (I, P, I, B, E),
    "scry_pipeline_new": (I, PP, P, S, P, E),
    "scry_pipeline_run": (I, P, P, E),
    "scry_pipeline_cancel": (None, P),
    "scry_pipeline_failures": (ctypes.c_size_t, P),
    "scry_pipeline_report": (I, P, I, B, E),
    "scry_pipeline_stats_json": (I, P, B, E),
    "scry_pipeline_free": (None, P),
}

for _name, (_res, *_args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
