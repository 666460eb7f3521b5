/*
 * scry/core.h - version, error reporting, output buffers and the
 * conventions every other scry module follows.
 *
 * Conventions (see docs/api.md):
 *   - functions return 0 on success or a negative SCRY_E* code;
 *   - details go to an optional caller-provided scry_error;
 *   - objects are opaque handles with exactly one destructor, which accepts
 *     NULL; on failure a constructor sets *out to NULL;
 *   - options structs start with `unsigned int version`, have an _INIT macro
 *     and an _init() function; passing NULL means defaults;
 *   - times are int64_t microseconds; fingerprints are uint64_t;
 *   - output the caller owns comes in a scry_buf, released with
 *     scry_buf_dispose().
 */
#ifndef SCRY_CORE_H
#define SCRY_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SCRY_BUILDING) && defined(__GNUC__)
#define SCRY_API __attribute__((visibility("default")))
#else
/** Marks a declaration as part of the exported API of libscry. */
#define SCRY_API
#endif

/** Major version of libscry. */
#define SCRY_VERSION_MAJOR 0
/** Minor version of libscry. */
#define SCRY_VERSION_MINOR 1
/** Patch version of libscry. */
#define SCRY_VERSION_PATCH 0
/** Version as a string, "MAJOR.MINOR.PATCH". */
#define SCRY_VERSION_STRING "0.1.0"
/** Version as one comparable number: MAJOR*10000 + MINOR*100 + PATCH. */
#define SCRY_VERSION_NUMBER \
	(SCRY_VERSION_MAJOR * 10000 + SCRY_VERSION_MINOR * 100 + SCRY_VERSION_PATCH)

/**
 * Returns the version string of the linked library ("0.1.0"), which may
 * differ from SCRY_VERSION_STRING when the headers and library disagree.
 * Thread safe; the string is static.
 */
SCRY_API const char *scry_version(void);

/**
 * Returns the version of the linked library as one number,
 * MAJOR*10000 + MINOR*100 + PATCH (compare it with SCRY_VERSION_NUMBER of
 * the headers a caller was compiled with). Thread safe.
 */
SCRY_API int scry_version_number(void);

/** Error codes. Every failing function returns one of these (negative). */
typedef enum scry_error_code {
	SCRY_OK = 0,          /**< success */
	SCRY_EINVAL = -1,     /**< invalid argument (a caller bug) */
	SCRY_ENOMEM = -2,     /**< out of memory */
	SCRY_EIO = -3,        /**< I/O or operating-system failure (errno set in sys_code) */
	SCRY_EPARSE = -4,     /**< input does not parse (SQL, log line, protocol) */
	SCRY_ESTORE = -5,     /**< workload store failure (SQLite code in sys_code) */
	SCRY_ESCHEMA = -6,    /**< store schema is newer than this library, or not a scry store */
	SCRY_ECORRUPT = -7,   /**< file is corrupt or not a SQLite database */
	SCRY_ENOTFOUND = -8,  /**< the named object (run, label, pattern) does not exist */
	SCRY_ECONNECT = -9,   /**< cannot connect to PostgreSQL */
	SCRY_EPG = -10,       /**< PostgreSQL reported an error (SQLSTATE in sqlstate) */
	SCRY_EPROTOCOL = -11, /**< malformed or unsupported wire-protocol traffic */
	SCRY_ECANCELED = -12, /**< the operation was cancelled */
	SCRY_EMIGRATION = -13,/**< the migration command or callback failed */
	SCRY_ELIMIT = -14,    /**< a size limit was exceeded */
	SCRY_EUNSUPPORTED = -15 /**< the request is valid but not supported here */
} scry_error_code;

/**
 * Details of a failure. Callers allocate it (usually on the stack) and pass
 * its address; functions fill it only on failure. Initialise with
 * SCRY_ERROR_INIT or scry_error_clear().
 */
typedef struct scry_error {
	int code;            /**< the scry_error_code returned */
	int sys_code;        /**< errno, SQLite extended code, or 0 */
	char sqlstate[6];    /**< PostgreSQL SQLSTATE, or "" */
	char message[512];   /**< a sentence a person can act on */
} scry_error;

/** Static initialiser for scry_error. */
#define SCRY_ERROR_INIT { 0, 0, "", "" }

/** Resets an error to "no error". Accepts NULL. */
SCRY_API void scry_error_clear(scry_error *err);

/**
 * Returns a short static description of an error code ("invalid argument").
 * Unknown codes give "unknown error". Thread safe.
 */
SCRY_API const char *scry_strerror(int code);

/**
 * Copies the NUL-terminated `in` to `out` (capacity `n` > 0, truncated, always
 * NUL-terminated) with secrets replaced by "***": the value of every
 * `password=` / `PGPASSWORD=` (any case, spaces around '=', quoted or not,
 * up to '&' in URI queries) and the password of every `scheme://user:pw@`.
 * Every message the library builds (scry_error, log callbacks) already went
 * through it; the CLI passes its own messages through it too. `in` and `out`
 * may not overlap. Returns `out`.
 */
SCRY_API char *scry_redact_secrets(const char *in, char *out, size_t n);

/** A buffer, declared below. */
struct scry_buf;

/**
 * Appends `n` bytes of `s` to `out` (a scry_buf) with the bytes a terminal
 * would act on made visible: C0 controls other than newline and tab, DEL,
 * and the C1 controls U+0080..U+009F (as UTF-8) become `\xNN` / `\u00NN`.
 * Used by every text, Markdown and JUnit rendering of captured SQL, server
 * messages and labels, and by the CLI's text output. Returns 0 or
 * SCRY_ENOMEM.
 */
SCRY_API int scry_escape_controls(const char *s, size_t n, struct scry_buf *out);

/**
 * Appends `n` bytes of `s` to `out` as a JSON string literal, quotes
 * included: `"` `\` and control characters escaped, valid UTF-8 kept, any
 * byte that does not start a valid UTF-8 sequence written as `\ufffd`. The
 * library's own JSON and the CLI's use it. Returns 0 or SCRY_ENOMEM.
 */
SCRY_API int scry_json_string(const char *s, size_t n, struct scry_buf *out);

/**
 * A growable byte buffer for output the caller owns. Initialise with
 * SCRY_BUF_INIT; the library (re)allocates `ptr` as needed; `ptr` is always
 * NUL-terminated when size > 0. Release with scry_buf_dispose(). A call that
 * failed with SCRY_ENOMEM while appending to it leaves it refusing further
 * appends (its content is then incomplete): dispose it before reusing it.
 */
typedef struct scry_buf {
	char *ptr;    /**< the bytes, NUL-terminated; NULL when empty */
	size_t size;  /**< bytes used, excluding the terminating NUL */
	size_t asize; /**< the library's bookkeeping (bytes allocated); do not change it */
} scry_buf;

/** Static initialiser for scry_buf. */
#define SCRY_BUF_INIT { NULL, 0, 0 }

/** Frees the memory of a buffer and resets it to empty. Accepts NULL. */
SCRY_API void scry_buf_dispose(scry_buf *buf);

/**
 * Allocator hook. All memory libscry allocates goes through these functions.
 * Install once, before any other scry call, from one thread; pass NULL to
 * restore malloc/realloc/free. Not thread safe by design: it is process
 * configuration, like sqlite3_config, but libscry never calls it itself.
 */
typedef struct scry_allocator {
	void *(*malloc_fn)(size_t size);
	void *(*realloc_fn)(void *ptr, size_t size);
	void (*free_fn)(void *ptr);
} scry_allocator;

/** Installs an allocator (NULL restores the default). Returns 0. */
SCRY_API int scry_set_allocator(const scry_allocator *allocator);

/** Log/progress severity passed to callbacks. */
typedef enum scry_log_level {
	SCRY_LOG_DEBUG = 0,
	SCRY_LOG_INFO = 1,
	SCRY_LOG_WARNING = 2,
	SCRY_LOG_ERROR = 3
} scry_log_level;

/**
 * Log callback: the library never prints; it reports through this.
 * `message` is valid only during the call.
 */
typedef void (*scry_log_fn)(void *ctx, scry_log_level level, const char *message);

/**
 * Progress callback for long work: `done` out of `total` units (total may be
 * 0 when unknown), with a short phase name ("replay", "import").
 */
typedef void (*scry_progress_fn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

/** Formats a fingerprint as pg_query does: 16 lowercase hex digits + NUL. */
SCRY_API void scry_fingerprint_format(uint64_t fingerprint, char out[17]);

/** Parses 16 (or fewer) hex digits into a fingerprint. Returns 0 or SCRY_EINVAL. */
SCRY_API int scry_fingerprint_parse(const char *hex, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_CORE_H */
