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
#include "scry/pgwire.h"
#include "scry/proxy.h"
#include "scry/logimport.h"
#include "scry/replay.h"
#include "scry/shadow.h"
#include "scry/verdict.h"
#include "scry/report.h"
#include "scry/impact.h"
#include "scry/pipeline.h"
#include "scry/filter.h"
#include "scry/settings.h"

#endif /* SCRY_SCRY_H */
