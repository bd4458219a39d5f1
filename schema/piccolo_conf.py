"""Piccolo's configuration. The engine's DSN is set at start-up by ``app.platform.database``."""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

DB = PostgresEngine(config={})

APP_REGISTRY = AppRegistry(apps=["schema.piccolo_app"])
