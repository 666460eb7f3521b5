/*
 * lib/logimport_formats.c - the framing of the log importer: the first
 * bytes go to detection (lib/logimport_detect.c), then complete records to
 * the format's reader (lib/logimport_csvlog.c, lib/logimport_jsonlog.c,
 * lib/logimport_stderr.c), and the bytes consumed leave the buffer.
 */
#include "logimport_internal.h"

#include <string.h>

/* Bytes looked at to detect the format, prefix and language. */
#define DETECT_BYTES ((size_t)256 << 10)

/* Consumes complete records from imp->in; `final` at end of input. */
int scry__logimport_process(scry_logimport *imp, bool final, scry_error *err)
{
	if (imp->detecting) {
		/* Enough of the log to see what it is, or all of it. */
		if (!imp->in.size || (imp->in.size < DETECT_BYTES && !final))
			return 0;
		int rc = scry__logimport_detect(imp, final, err);
		if (rc)
			return rc;
	}
	char *buf = imp->in.ptr;
	size_t n = imp->in.size, pos = 0;
	int rc = imp->fmt == SCRY_LOG_CSVLOG    ? scry__logimport_csvlog_records(imp, buf, n, final, &pos, err)
	         : imp->fmt == SCRY_LOG_JSONLOG ? scry__logimport_jsonlog_lines(imp, buf, n, final, &pos, err)
	                                        : scry__logimport_stderr_lines(imp, buf, n, final, &pos, err);
	if (pos) {
		memmove(buf, buf + pos, n - pos);
		imp->in.size = n - pos;
		if (imp->in.ptr)
			imp->in.ptr[imp->in.size] = 0;
	}
	return rc;
}
