/*
 * lib/store_internal.h - shared by the store module's own files (lib/store.c,
 * lib/store_merge.c) only: the store owns its SQL, no other module gets its
 * connection (lib/internal.h).
 */
#ifndef SCRY_STORE_INTERNAL_H
#define SCRY_STORE_INTERNAL_H

#include "internal.h"

struct sqlite3;
/* The store's SQLite connection. */
SCRY_HIDDEN struct sqlite3 *scry__store_sqlite(scry_store *store);
/* Drops the handle's statement and pattern caches (reloaded on the next
 * append), after SQL changed those tables behind them (merge). */
SCRY_HIDDEN void scry__store_forget_caches(scry_store *store);

#endif /* SCRY_STORE_INTERNAL_H */
