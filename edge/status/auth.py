"""Who may read the status page: loopback is trusted, anything else needs the token.

The token comes from `status.token_file` (under systemd: `$CREDENTIALS_DIRECTORY/status-token`,
put there by `LoadCredential=`). It is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "COOKIE_NAME",
    "MIN_TOKEN_LENGTH",
    "StatusAuthError",
    "TokenGuard",
    "is_loopback_listen",
    "load_token",
    "split_listen",
]

COOKIE_NAME = "lineside_token"
MIN_TOKEN_LENGTH = 16


class StatusAuthError(ValueError):
    """The status page's listen address or token file cannot be used as configured."""


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` into host and port."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", listen)
    if m is None:
        raise StatusAuthError(f"status.listen: {listen!r} is not HOST:PORT or [IPV6]:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise StatusAuthError(f"status.listen: port {port} is out of range")
    return host, port


def is_loopback_listen(listen: str) -> bool:
    """True only for addresses no other machine can reach (127.0.0.0/8, ::1, localhost)."""
    host, _ = split_listen(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # A host name may resolve to anything, now or later: treat it as exposed.
        return False


def load_token(token_file: str) -> str:
    """Read the status token; `$CREDENTIALS_DIRECTORY` in the path is expanded."""
    if "CREDENTIALS_DIRECTORY" in token_file and not os.environ.get("CREDENTIALS_DIRECTORY"):
        raise StatusAuthError(
            f"status.token_file: {token_file!r} uses $CREDENTIALS_DIRECTORY, which is not set "
            "(run under systemd with LoadCredential=, or give a plain path)"
        )
    path = Path(os.path.expandvars(token_file))
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StatusAuthError(f"status.token_file: cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StatusAuthError(f"status.token_file: {str(path)!r} is not UTF-8 text") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise StatusAuthError(
            f"status.token_file: {str(path)!r} must hold one token of at least {MIN_TOKEN_LENGTH} "
            "characters without spaces (e.g. `openssl rand -hex 32`)"
        )
    return token


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def presented_tokens(scope: Scope) -> Iterable[str]:
    """Every token the request carries: Bearer header, cookie, `?token=`."""
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        yield auth[7:].strip()
    cookie = _header(scope, b"cookie")
    if cookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:  # a malformed cookie header is just no token
            jar = SimpleCookie()
        if COOKIE_NAME in jar:
            yield jar[COOKIE_NAME].value
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    yield from query.get("token", [])


class TokenGuard:
    """ASGI middleware: 401 unless the request carries the token; `open_paths` stay open."""

    def __init__(self, app: ASGIApp, token: str, open_paths: Iterable[str] = ("/healthz",)) -> None:
        self.app = app
        self._token = token.encode()
        self._open = frozenset(open_paths)

    def allows(self, scope: Scope) -> bool:
        # compare_digest on every candidate, so timing tells nothing about the token.
        ok = False
        for candidate in presented_tokens(scope):
            ok |= hmac.compare_digest(candidate.encode(), self._token)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open or self.allows(scope):
            await self.app(scope, receive, send)
            return
        accept = _header(scope, b"accept") or ""
        if "text/html" in accept:
            body = (
                b"<!doctype html><meta charset=utf-8><title>lineside: token required</title>"
                b"<p style='font:24px sans-serif'>This status page needs its access token. "
                b"Open it as <code>/?token=&hellip;</code> once; the browser then keeps it.</p>"
            )
            ctype = b"text/html; charset=utf-8"
        else:
            body = b'{"error":"unauthorized: send Authorization: Bearer <token>"}'
            ctype = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="lineside"'),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
