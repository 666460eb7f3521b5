"""libpq connection strings: parsing, and the URL forms other tools take."""

import urllib.parse

__all__ = ["parse", "to_url"]


def parse(conninfo):
    """Parses a libpq key=value connection string (or a postgresql:// URI) into a dict.

    Values may be single-quoted with backslash escapes, as libpq allows.
    """
    s = conninfo.strip()
    if s.startswith(("postgresql://", "postgres://")):
        u = urllib.parse.urlsplit(s)
        out = {}
        if u.hostname:
            out["host"] = urllib.parse.unquote(u.hostname)
        if u.port:
            out["port"] = str(u.port)
        if u.username:
            out["user"] = urllib.parse.unquote(u.username)
        if u.password:
            out["password"] = urllib.parse.unquote(u.password)
        if u.path.strip("/"):
            out["dbname"] = urllib.parse.unquote(u.path.lstrip("/"))
        for k, v in urllib.parse.parse_qsl(u.query):
            out[k] = v
        return out
    out, i, n = {}, 0, len(s)
    while i < n:
        while i < n and s[i].isspace():
            i += 1
        if i >= n:
            break
        j = s.find("=", i)
        if j < 0:
            raise ValueError(f"invalid connection string: missing '=' after {s[i:]!r}")
        key = s[i:j].strip()
        i = j + 1
        while i < n and s[i].isspace():
            i += 1
        val = []
        if i < n and s[i] == "'":
            i += 1
            while i < n and s[i] != "'":
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(s[i])
                i += 1
            if i >= n:
                raise ValueError("invalid connection string: unterminated quoted value")
            i += 1
        else:
            while i < n and not s[i].isspace():
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(s[i])
                i += 1
        out[key] = "".join(val)
    return out


def to_url(conninfo, scheme="postgresql"):
    """The connection as a URL: postgresql://user:password@host:port/dbname?other=options.

    A Unix-socket host (a path) goes in the query string (?host=/path), as
    libpq and SQLAlchemy both accept. `scheme` may name a driver, e.g.
    "postgresql+psycopg2".
    """
    kv = parse(conninfo)
    q = lambda v: urllib.parse.quote(v, safe="")  # noqa: E731
    user = kv.pop("user", "")
    password = kv.pop("password", "")
    host = kv.pop("host", "")
    port = kv.pop("port", "")
    dbname = kv.pop("dbname", "")
    auth = ""
    if user:
        auth = q(user) + (":" + q(password) if password else "") + "@"
    netloc = ""
    if host and not host.startswith("/"):
        netloc = f"[{host}]" if ":" in host else host
    elif host:
        kv = dict(kv, host=host)
    if port and netloc:
        netloc += f":{port}"
    elif port:
        kv = dict(kv, port=port)
    query = urllib.parse.urlencode(kv)
    return f"{scheme}://{auth}{netloc}/{q(dbname)}" + (f"?{query}" if query else "")
