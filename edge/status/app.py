"""The local status page: one HTML page, its JSON API and `/metrics`, as a Starlette app.

Routes (all read-only except setting a stop's reason):

- `GET /` the page (static HTML + JS + CSS from the package: no CDN, works offline);
  `GET /?token=...` stores the token in a cookie and redirects to `/` so it leaves the URL.
- `GET /api/status` the provider's status document plus `last_stops` (newest 10) and
  `top_reasons` (this shift's stop time by reason); the page polls it every second.
- `GET /api/stops?limit=N` (1..1000, default 50), `GET /api/kpis`, `GET /api/reasons`.
- `POST /api/stops/{id}/reason` with JSON `{"code": 42}`: an operator's reason for a stop.
- `GET /metrics` Prometheus text format, refreshed from the provider on each scrape.
- `GET /healthz` liveness (`{"ok": true}`), always open.

Access: when a token is configured, every route except `/healthz` needs it (Bearer header,
cookie, or `?token=`); that includes `/metrics` (Prometheus: `authorization.credentials_file`),
because it carries production figures. A listen address that is not loopback requires a
token (`require_token=True`); `app_from_config` derives that from `status.listen`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from config.models import StatusConfig
from edge.logs import get_logger
from edge.status.auth import COOKIE_NAME, StatusAuthError, TokenGuard, is_loopback_listen, load_token
from edge.status.metrics import CONTENT_TYPE, LineMetrics
from edge.status.provider import StatusProvider
from edge.status.server import serve  # re-exported: the daemon imports create_app and serve from here
from edge.status.views import top_reasons
from sync.records import parse_ts

__all__ = ["STATIC_DIR", "app_from_config", "create_app", "serve"]

STATIC_DIR = Path(__file__).with_name("static")
LAST_STOPS = 10
TOP_REASONS_SCAN = 500
MAX_STOPS = 1000

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json(doc: Any, status_code: int = 200) -> Response:
    return Response(
        msgspec.json.encode(doc),
        status_code=status_code,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


def _error(status_code: int, message: str) -> Response:
    return _json({"error": message}, status_code)


def create_app(
    provider: StatusProvider,
    *,
    token: str | None,
    require_token: bool,
    metrics: LineMetrics | None = None,
) -> Starlette:
    """The status app over `provider`. Refuses (`StatusAuthError`) to run unprotected when
    `require_token` is set without a token. `metrics`: the daemon's `LineMetrics` if it
    updates them itself; by default one is made for the provider's line on first scrape."""
    if require_token and not token:
        raise StatusAuthError(
            "status page: a listen address that is not loopback needs status.token_file "
            "(anyone on the plant network could otherwise read and change stop reasons)"
        )
    log = get_logger(component="status")
    line_metrics = metrics
    token_in_use = token

    def _provider_call(what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            log.exception("status_provider_failed", call=what)
            raise _Unavailable(f"{what} unavailable: {type(exc).__name__}") from exc

    async def index(request: Request) -> Response:
        if token_in_use and "token" in request.query_params:
            # Move the token from the URL (which lands in history and screenshots) into a
            # cookie. The guard has already checked it.
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(
                COOKIE_NAME, request.query_params["token"], httponly=True, samesite="strict",
                secure=request.url.scheme == "https", max_age=365 * 86400,
            )
            return resp
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def api_status(request: Request) -> Response:
        doc = dict(_provider_call("status", provider.status))
        stops = _provider_call("stops", provider.stops, TOP_REASONS_SCAN)
        shift_start = (doc.get("shift") or {}).get("start")
        now_raw = doc.get("now")
        now = parse_ts(now_raw) if isinstance(now_raw, str) else time.time()
        since = parse_ts(shift_start) if isinstance(shift_start, str) else None
        doc["last_stops"] = stops[:LAST_STOPS]
        doc["top_reasons"] = top_reasons(stops, since=since, now=now)
        return _json(doc)

    async def api_stops(request: Request) -> Response:
        raw = request.query_params.get("limit", "50")
        try:
            limit = int(raw)
        except ValueError:
            return _error(400, f"limit must be an integer 1..{MAX_STOPS}, got {raw!r}")
        if not 1 <= limit <= MAX_STOPS:
            return _error(400, f"limit must be an integer 1..{MAX_STOPS}, got {raw!r}")
        return _json(_provider_call("stops", provider.stops, limit))

    async def api_kpis(request: Request) -> Response:
        return _json(_provider_call("kpis", provider.kpis))

    async def api_reasons(request: Request) -> Response:
        return _json(_provider_call("reasons", provider.reasons))

    async def set_reason(request: Request) -> Response:
        # Requiring a JSON content type makes a cross-site form post impossible without a
        # CORS preflight, which this app never answers: a page on the internet cannot use
        # the operator's browser to set reasons on a loopback-bound status page.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the reason as JSON: {\"code\": <reason code>}")
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("code"), int | str) or isinstance(body.get("code"), bool):
            return _error(400, "body must be {\"code\": <reason code>}")
        stop_id = request.path_params["stop_id"]
        try:
            stop = provider.set_reason(stop_id, body["code"])
        except KeyError:
            return _error(404, f"no stop with id {stop_id!r}")
        except ValueError as exc:
            return _error(400, str(exc))
        log.info("stop_reason_set", stop_id=stop_id, reason_code=body["code"])
        return _json(stop)

    async def metrics_route(request: Request) -> Response:
        nonlocal line_metrics
        doc = _provider_call("status", provider.status)
        if line_metrics is None:
            # Created on the first scrape so the line label comes from the provider itself.
            line_metrics = LineMetrics(str((doc.get("line") or {}).get("id") or "unknown"))
        line_metrics.update(doc)
        return Response(line_metrics.render(), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    async def unavailable(request: Request, exc: Exception) -> Response:
        return _error(503, str(exc))

    middleware = [Middleware(_SecurityHeaders)]
    if token_in_use:
        middleware.append(Middleware(TokenGuard, token=token_in_use, open_paths=("/healthz",)))
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/status", api_status),
            Route("/api/stops", api_stops),
            Route("/api/kpis", api_kpis),
            Route("/api/reasons", api_reasons),
            Route("/api/stops/{stop_id}/reason", set_reason, methods=["POST"]),
            Route("/metrics", metrics_route),
            Route("/healthz", healthz),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=middleware,
        exception_handlers={_Unavailable: unavailable},
    )


class _Unavailable(Exception):
    """The provider failed: answered 503 with a short message, details in the log."""


def app_from_config(provider: StatusProvider, status: StatusConfig, *, line: str) -> Starlette:
    """The app as `status:` in the line config asks: token from `token_file`, required when
    `listen` is not loopback, metrics for `line`."""
    token = load_token(status.token_file) if status.token_file else None
    return create_app(
        provider, token=token, require_token=not is_loopback_listen(status.listen), metrics=LineMetrics(line)
    )
