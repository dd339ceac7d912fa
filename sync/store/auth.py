"""Who is calling: the bearer token's entry, and what it may do.

Any known token may read the lines it is bound to; `write` may POST records for them; `read`
is the follow-up role (maintenance, quality): PATCH a stop's reason and ack requests/alerts.
Only the token's name is ever logged.
"""

from __future__ import annotations

from collections.abc import Mapping

from sync.store.tokens import Role, TokenEntry, hash_token

__all__ = ["AuthError", "authenticate", "require", "visible_lines"]


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def authenticate(header: str | None, tokens: Mapping[str, TokenEntry]) -> TokenEntry:
    """The entry for `Authorization: Bearer <token>`, or AuthError(401)."""
    if not header:
        raise AuthError(401, "missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "Authorization must be 'Bearer <token>'")
    # Looked up by hash: the file holds only hashes, and a dict lookup on a SHA-256 leaks
    # nothing useful about the token through timing.
    entry = tokens.get(hash_token(token))
    if entry is None:
        raise AuthError(401, "unknown token")
    return entry


def require(entry: TokenEntry, role: Role | None, lines: list[str]) -> None:
    """AuthError(403) unless the token has `role` (None: any) and may access every line."""
    if role is not None and role not in entry.roles:
        raise AuthError(403, f"token {entry.name!r} does not have the {role!r} role")
    denied = sorted({ln for ln in lines if not entry.may_access(ln)})
    if denied:
        raise AuthError(403, f"token {entry.name!r} may not access line(s) {', '.join(denied[:10])}")


def visible_lines(entry: TokenEntry) -> list[str] | None:
    """The lines a query may return for this token; None means all."""
    return None if "*" in entry.lines else list(entry.lines)
