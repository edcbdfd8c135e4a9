"""The proof that a request which changes something comes from this site's own page.

Airflow's session cookie is SameSite=Lax, and every request that changes something must prove it
comes from this site's own page: a browser sends `Sec-Fetch-Site` and/or `Origin` with every POST and
PUT, and the request is refused (403) unless `Sec-Fetch-Site` is `same-origin` and `Origin` is this
host (never `null`, the origin of sandboxed frames, `data:` pages and some redirects). A request with
neither header is refused too, unless it carries its own credential in an `Authorization` header (an
API client with a bearer token: a cross-site form cannot set that header, and Airflow then ignores
the session cookie).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin: `http://host` and `https://host` are two origins."""
    where = _host_and_port(netloc, scheme)
    return None if where is None else (scheme, *where)


def same_origin_proof(request: Request) -> None:
    """Refuse (403) a request that changes something unless it shows it comes from this site.

    `Sec-Fetch-Site`, when sent, must be `same-origin`; `Origin`, when sent, must be this origin, the
    same scheme, host and port (the request's scheme and `Host` header, or `X-Forwarded-Proto` and
    `X-Forwarded-Host` behind a reverse proxy: none can be set by a cross-site form) and not `null`;
    one of the two must be there, unless the request brings its own credential in an `Authorization`
    header.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site[:20]})")
    origin = request.headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        if parts is None or parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            raise HTTPException(403, "request refused: its Origin is not a web page of this site")
        theirs = _origin(parts.scheme, parts.netloc)
        scheme = request.url.scheme
        forwarded = (request.headers.get("x-forwarded-proto") or scheme).split(",")[0].strip().lower()
        ours = {
            _origin(proto, h.split(",")[0].strip())
            for proto, h in (
                (scheme, request.headers.get("host")),
                (forwarded, request.headers.get("x-forwarded-host")),
            )
            if h
        }
        if theirs is None or theirs not in ours:
            raise HTTPException(403, "cross-origin request refused: its Origin is another site")
    if site is None and origin is None and "authorization" not in request.headers:
        raise HTTPException(
            403,
            "request refused: no proof that it comes from this site's page (the browser sent neither "
            "Origin nor Sec-Fetch-Site); API clients authenticate with an Authorization header",
        )
