/*
 * scry/scry.h - the whole public API of libscry.
 *
 * Include this one header. Each module has its own header, listed below;
 * docs/api.md explains the conventions they share.
 */
#ifndef SCRY_SCRY_H
#define SCRY_SCRY_H

#include "scry/core.h"
#include "scry/fingerprint.h"
#include "scry/store.h"
#if __has_include("scry/pgwire.h")
#include "scry/pgwire.h"
#endif
#if __has_include("scry/proxy.h")
#include "scry/proxy.h"
#endif
#if __has_include("scry/logimport.h")
#include "scry/logimport.h"
#endif
#if __has_include("scry/replay.h")
#include "scry/replay.h"
#endif
#if __has_include("scry/shadow.h")
#include "scry/shadow.h"
#endif
#if __has_include("scry/verdict.h")
#include "scry/verdict.h"
#endif
#if __has_include("scry/report.h")
#include "scry/report.h"
#endif
#if __has_include("scry/pipeline.h")
#include "scry/pipeline.h"
#endif

#endif /* SCRY_SCRY_H */
