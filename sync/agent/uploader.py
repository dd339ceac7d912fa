"""The HTTP side of the agent: one httpx client per upstream, the bearer token, TLS, and
the retry policy of RECORDS.md.

A timeout, a dropped connection, a 5xx or a 429 means "not stored": the same batch is sent
again, forever, with capped exponential backoff and jitter. 401/403 are retried the same way
(the token may be rotated while the agent runs; nothing is dropped) and reported loudly.
400 and 413 are answers about the batch's content and go back to the caller.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_random_exponential

from config.sync_models import Retry, Upstream
from sync.records import IngestError, IngestErrors, IngestResult

__all__ = ["Answer", "PullError", "TokenError", "Uploader", "build_ssl_context", "resolve_token_path"]


class TokenError(Exception):
    """The token file cannot be used (missing, empty, or a systemd credential outside systemd)."""


class _Retry(Exception):
    def __init__(self, message: str, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


@dataclass
class Answer:
    """A final answer for one batch: 200, or a 400/413 the caller must act on."""

    status: int
    accepted: int = 0
    duplicates: int = 0
    error: str = ""
    errors: list[IngestError] = field(default_factory=list)


_CRED = re.compile(r"\$(\{CREDENTIALS_DIRECTORY\}|CREDENTIALS_DIRECTORY)")


def resolve_token_path(path: str) -> Path:
    """Expand ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) in a token_file path."""
    if _CRED.search(path):
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise TokenError(
                f"token_file {path!r} uses $CREDENTIALS_DIRECTORY, which is not set "
                "(run under systemd with LoadCredential=, or give a plain path)"
            )
        path = _CRED.sub(lambda _m: creds, path)
    return Path(path)


class _Token:
    """Re-read when the file changes, so a rotated token is used without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._value = ""
        self.load()

    def load(self) -> str:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                value = self.path.read_text().strip()
                if not value:
                    raise TokenError(f"token_file {self.path} is empty")
                self._value, self._mtime = value, mtime
        except OSError as exc:
            if not self._value:
                raise TokenError(f"token_file {self.path}: {exc.strerror}") from exc
        return self._value


def build_ssl_context(up: Upstream) -> ssl.SSLContext:
    """Verified TLS (system CAs or `ca_file`), optional client certificate for mTLS."""
    ctx = ssl.create_default_context(cafile=up.ca_file)
    if up.client_certificate:
        ctx.load_cert_chain(up.client_certificate, up.client_key)
    return ctx


class Uploader:
    """Posts batch bodies to ``{url}/v1/records``; use as an async context manager."""

    def __init__(self, upstream: Upstream, retry: Retry) -> None:
        if upstream.url.startswith("http://") and not upstream.allow_insecure_http:
            raise ValueError(
                f"upstream.url {upstream.url!r} is plain http: use https, or set "
                "upstream.allow_insecure_http: true for a trusted network"
            )
        self._up = upstream
        self._retry = retry
        self._token = _Token(resolve_token_path(upstream.token_file)) if upstream.token_file else None
        verify: ssl.SSLContext | bool = build_ssl_context(upstream) if upstream.url.startswith("https") else True
        self._client = httpx.AsyncClient(
            base_url=upstream.url.rstrip("/"),
            verify=verify,
            timeout=httpx.Timeout(upstream.timeout_s, connect=min(upstream.timeout_s, 10.0)),
            headers={"User-Agent": "lineside-sync"},
        )

    async def __aenter__(self) -> Uploader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def send(
        self, body: bytes, headers: dict[str, str], on_failure: Callable[[str, bool], None] | None = None
    ) -> Answer:
        """Post until the store gives a final answer (200, 400, 413); retries everything else.

        `on_failure(message, is_auth)` is told about every failed attempt (status, logs)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retry),
            wait=wait_random_exponential(multiplier=self._retry.initial_s, max=self._retry.max_s),
            stop=stop_never,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(body, headers, on_failure or _ignore)
        raise AssertionError("unreachable: stop_never")

    async def _attempt(
        self, body: bytes, headers: dict[str, str], on_failure: Callable[[str, bool], None]
    ) -> Answer:
        h = dict(headers)
        if self._token is not None:
            h["Authorization"] = "Bearer " + self._token.load()
        try:
            resp = await self._client.post("/v1/records", content=body, headers=h)
        except httpx.TransportError as exc:  # timeouts, refused, reset, TLS failures
            _fail(on_failure, f"{type(exc).__name__}: {exc}".rstrip(": "), auth=False)
        code = resp.status_code
        if code == 200:
            res = msgspec.json.decode(resp.content, type=IngestResult)
            return Answer(200, accepted=res.accepted, duplicates=res.duplicates)
        text = resp.text[:500]
        if code in (400, 413):
            try:
                errs = msgspec.json.decode(resp.content, type=IngestErrors)
                return Answer(code, error=errs.error, errors=errs.errors)
            except msgspec.DecodeError:
                return Answer(code, error=text)
        if code in (401, 403):
            _fail(on_failure, f"upstream refused the token: HTTP {code} {text}", auth=True)
        _fail(on_failure, f"HTTP {code} {text}", auth=False)


    async def get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One GET of a follow-up query (the central changes the agent pulls); no retries here:
        the caller asks again on its next round. Raises `PullError` with a short message."""
        h = {"Authorization": "Bearer " + self._token.load()} if self._token is not None else {}
        try:
            resp = await self._client.get(path, params=params, headers=h)
        except httpx.TransportError as exc:
            raise PullError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if resp.status_code != 200:
            raise PullError(f"GET {path}: HTTP {resp.status_code} {resp.text[:300]}")
        try:
            doc = msgspec.json.decode(resp.content)
        except msgspec.DecodeError as exc:
            raise PullError(f"GET {path}: not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise PullError(f"GET {path}: expected a JSON object")
        return doc


class PullError(Exception):
    """A pull from the store failed (network, HTTP status, body); the message says which."""


def _ignore(message: str, auth: bool) -> None:
    pass


def _fail(on_failure: Callable[[str, bool], None], message: str, *, auth: bool) -> NoReturn:
    on_failure(message, auth)
    raise _Retry(message, auth)
