"""Typed YAML configuration for lineside: the line config and the sync agent config."""

from config.loader import ConfigError, Problem, detect_kind, load_line_config, load_sync_config
from config.models import LineConfig, line_config_schema
from config.sync_models import SyncConfig, sync_config_schema

__all__ = [
    "ConfigError",
    "LineConfig",
    "Problem",
    "SyncConfig",
    "detect_kind",
    "line_config_schema",
    "load_line_config",
    "load_sync_config",
    "sync_config_schema",
]
