/*
 * lib/store_internal.h - what the files of the store module share (lib/store.c,
 * lib/store_admin.c, lib/store_merge.c). Other modules go through the public
 * store API or the fixed queries of internal.h (scry__store_rows); the schema
 * and its SQL stay here (docs/store.md).
 */
#ifndef SCRY_STORE_INTERNAL_H
#define SCRY_STORE_INTERNAL_H

#include "internal.h"

#include <sqlite3.h>

/* The store's SQLite connection, for the store module's own files. */
SCRY_HIDDEN sqlite3 *scry__store_sqlite(scry_store *store);
/* Drops the handle's statement and pattern caches (reloaded on the next
 * append), after SQL changed those tables behind them (merge). */
SCRY_HIDDEN void scry__store_forget_caches(scry_store *store);

#endif
