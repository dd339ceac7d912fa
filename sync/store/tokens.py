"""The store's token file: SHA-256 hashes of bearer tokens, each bound to lines and roles.

The file never holds a plain token, so reading it (a backup, a config repo) does not let
anyone write to the store. Format (YAML)::

    tokens:
      - name: line3-edge          # a label for logs; never the token
        sha256: 9f86d08...        # hex SHA-256 of the token (python -m sync.store.tokens hash)
        lines: [line3]            # the lines it may write and read, or ["*"]
        roles: [write]            # write: POST /v1/records; read: follow-up (PATCH, ack)

Helpers: ``python -m sync.store.tokens hash`` (token on stdin → hash on stdout) and
``python -m sync.store.tokens new --file F --name N --lines line3 [--roles write]`` (makes a
random token, appends its hash to F, prints the token once). Tests use `write_token_file`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml
from msgspec import Meta, Struct, field

__all__ = [
    "Role",
    "TokenEntry",
    "TokenError",
    "TokenFile",
    "hash_token",
    "load_token_file",
    "main",
    "new_token",
    "write_token_file",
]

Role = Literal["write", "read"]
Sha256Hex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")]


class TokenError(ValueError):
    """The token file cannot be used; the message names the file and the problem."""


class TokenEntry(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    sha256: Sha256Hex
    lines: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
    roles: list[Role] = field(default_factory=lambda: ["write"])

    def may_access(self, line: str) -> bool:
        return "*" in self.lines or line in self.lines


class TokenFile(Struct, kw_only=True, forbid_unknown_fields=True):
    tokens: list[TokenEntry] = field(default_factory=list)


def hash_token(token: str) -> str:
    """The hex SHA-256 stored in the token file for this token."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def load_token_file(path: str | os.PathLike[str]) -> dict[str, TokenEntry]:
    """Token hash -> entry. Raises TokenError with the file name and the bad field."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TokenError(f"{p}: cannot read token file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise TokenError(f"{p}: not valid YAML: {exc}") from exc
    try:
        parsed = msgspec.convert(raw if raw is not None else {}, TokenFile)
    except msgspec.ValidationError as exc:
        # msgspec's message names the path ($.tokens[0].sha256) but not the value, so a
        # mistakenly pasted plain token is never echoed into a log.
        raise TokenError(f"{p}: {exc}") from exc
    by_hash: dict[str, TokenEntry] = {}
    for entry in parsed.tokens:
        if entry.sha256 in by_hash:
            raise TokenError(f"{p}: token {entry.name!r} has the same hash as {by_hash[entry.sha256].name!r}")
        by_hash[entry.sha256] = entry
    return by_hash


def write_token_file(
    path: str | os.PathLike[str],
    tokens: Iterable[tuple[str, str, Sequence[str], Sequence[Role]]],
) -> None:
    """Write a token file from (name, plain token, lines, roles); only hashes reach the disk."""
    doc = TokenFile(
        tokens=[
            TokenEntry(name=name, sha256=hash_token(tok), lines=list(lines), roles=list(roles))
            for name, tok, lines, roles in tokens
        ]
    )
    _dump(Path(path), doc)


def _dump(path: Path, doc: TokenFile) -> None:
    # Written beside and renamed: a reader never sees half a file; 0600 as it guards writes.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(msgspec.to_builtins(doc), fh, sort_keys=False)
    os.replace(tmp, path)


def _append(path: Path, name: str, token: str, lines: list[str], roles: list[Role]) -> None:
    entries = list(load_token_file(path).values()) if path.exists() else []
    new = TokenEntry(name=name, sha256=hash_token(token), lines=lines, roles=roles)
    _dump(path, TokenFile(tokens=[*entries, new]))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sync.store.tokens", description="Manage the store's token file.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hash", help="read a token on stdin, print its SHA-256 for the token file")
    n = sub.add_parser("new", help="make a token, append its hash to FILE, print the token once")
    n.add_argument("--file", required=True, type=Path)
    n.add_argument("--name", required=True)
    n.add_argument("--lines", required=True, help="comma-separated line ids, or *")
    n.add_argument("--roles", default="write", help="comma-separated: write, read")
    args = ap.parse_args(argv)
    if args.cmd == "hash":
        # stdin, not argv: a token on the command line ends up in shell history and `ps`.
        token = sys.stdin.readline().strip()
        if not token:
            print("no token on stdin", file=sys.stderr)
            return 2
        print(hash_token(token))
        return 0
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    bad = [r for r in roles if r not in ("write", "read")]
    if bad or not roles:
        print(f"unknown role(s) {bad}; use write and/or read", file=sys.stderr)
        return 2
    lines = [s.strip() for s in args.lines.split(",") if s.strip()]
    if not lines:
        print("--lines needs at least one line id (or *)", file=sys.stderr)
        return 2
    token = new_token()
    try:
        _append(args.file, args.name, token, lines, roles)
    except TokenError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
