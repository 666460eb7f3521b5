/*
 * lib/session_params.c - the stored form of a session's startup parameters
 * (sessions.params, docs/store.md): one "key=value" per line, with '\n' and
 * '\\' in a value escaped. Written by the capture (lib/pgwire.c), read by
 * the replay (lib/replay_exec.c).
 */
#include "internal.h"

int scry__session_param_put(scry_buf *b, const char *key, const char *value)
{
	int rc = 0;
	if (b->size)
		rc = scry__buf_put(b, "\n", 1);
	for (const char *k = key; !rc && *k; k++)
		if (*k != '=' && *k != '\n')
			rc = scry__buf_put(b, k, 1);
	if (!rc)
		rc = scry__buf_put(b, "=", 1);
	for (const char *v = value; !rc && *v; v++) {
		if (*v == '\n')
			rc = scry__buf_put(b, "\\n", 2);
		else if (*v == '\\')
			rc = scry__buf_put(b, "\\\\", 2);
		else
			rc = scry__buf_put(b, v, 1);
	}
	return rc ? SCRY_ENOMEM : 0;
}

int scry__session_param_next(const char **pp, scry_buf *key, scry_buf *val)
{
	const char *p = *pp;
	if (!p)
		return 0;
	while (*p == '\n')
		p++;
	if (!*p)
		return 0;
	scry__buf_clear(key);
	scry__buf_clear(val);
	const char *eq = p;
	while (*eq && *eq != '=' && *eq != '\n')
		eq++;
	if (scry__buf_put(key, p, (size_t)(eq - p)) || scry__buf_grow(key, 0))
		return SCRY_ENOMEM;
	p = *eq == '=' ? eq + 1 : eq;
	for (; *p && *p != '\n'; p++) {
		char c = *p;
		if (c == '\\' && (p[1] == 'n' || p[1] == '\\'))
			c = *++p == 'n' ? '\n' : '\\';
		if (scry__buf_put(val, &c, 1))
			return SCRY_ENOMEM;
	}
	if (scry__buf_grow(val, 0))
		return SCRY_ENOMEM;
	*pp = p;
	return 1;
}
