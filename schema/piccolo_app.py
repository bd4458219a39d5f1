"""The Piccolo app that owns MeCove's tables and migrations."""

import os

from piccolo.conf.apps import AppConfig

from schema.tables import (
    DeliveryStatus,
    EventArchive,
    Identity,
    Message,
    ProjectionCheckpoint,
    Summary,
    UnreadableMessage,
    User,
    UserKey,
)

APP_CONFIG = AppConfig(
    app_name="mecove",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "migrations"),
    table_classes=[User, Identity, Message, Summary, UnreadableMessage, DeliveryStatus,
                   ProjectionCheckpoint, EventArchive, UserKey],
)
