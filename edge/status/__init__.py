"""The local status page, its JSON API and `/metrics` (see app.py for routes and access)."""

from edge.status.app import STATIC_DIR, app_from_config, create_app
from edge.status.auth import StatusAuthError, is_loopback_listen, load_token
from edge.status.metrics import LineMetrics
from edge.status.provider import SnapshotProvider, StatusDoc, StatusProvider
from edge.status.server import bind, serve

__all__ = [
    "STATIC_DIR",
    "LineMetrics",
    "SnapshotProvider",
    "StatusAuthError",
    "StatusDoc",
    "StatusProvider",
    "app_from_config",
    "bind",
    "create_app",
    "is_loopback_listen",
    "load_token",
    "serve",
]
