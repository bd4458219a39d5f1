"""``/debug/enqueue-summary``: ask for a summary by hand (only when MECOVE_DEBUG is true)."""

from __future__ import annotations

import logging
import uuid

from litestar import Controller, Response, route
from litestar.datastructures import State
from litestar.params import FromQuery
from litestar.status_codes import HTTP_200_OK, HTTP_404_NOT_FOUND, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import RedisError

from app.ingress.parse_webhook import CHANNEL, as_bsuid, as_phone
from app.platform.clock import now_ms
from schema.events import SummaryRequested

log = logging.getLogger("mecove.debug")

DEFAULT_PHONE = "+10000000000"


class DebugController(Controller):
    path = "/debug"

    @route("/enqueue-summary", http_method=["GET", "POST"], status_code=HTTP_200_OK)
    async def enqueue_summary(
        self, state: State, phone: FromQuery[str | None] = None,
        user_id: FromQuery[str | None] = None,
    ) -> Response[dict[str, object]]:
        """Append SummaryRequested for the user of ``?phone=`` or ``?user_id=<BSUID>``
        (default: the phone +10000000000)."""
        if user_id is not None:
            key = as_bsuid(user_id)
            if key is None:
                return Response({"ok": False,
                                 "error": f"not a business-scoped user id: {user_id!r}"},
                                status_code=HTTP_404_NOT_FOUND)
        else:
            key = as_phone(phone if phone is not None else DEFAULT_PHONE)
            if key is None:
                return Response({"ok": False, "error": f"not a phone number: {phone!r}"},
                                status_code=HTTP_404_NOT_FOUND)
        async with state.pool.acquire() as connection:
            user_id = await connection.fetchval(
                "SELECT user_id FROM identities WHERE channel = $1 AND channel_user_key = $2",
                CHANNEL, key,
            )
        if user_id is None:
            return Response({"ok": False, "error": f"no identity ({CHANNEL}, {key})"},
                            status_code=HTTP_404_NOT_FOUND)
        event = SummaryRequested(event_id=str(uuid.uuid4()),
                                 occurred_at=now_ms(), user_id=str(user_id))
        try:
            entry_id = await state.event_log.append(event, user_id=str(user_id))
        except (RedisError, OSError):
            return Response({"ok": False, "error": "event log unavailable"},
                            status_code=HTTP_503_SERVICE_UNAVAILABLE)
        log.info("summary requested", extra={"fields": {"event_id": event.event_id,
                                                        "user_id": str(user_id)}})
        return Response({"ok": True, "jobId": entry_id}, status_code=HTTP_200_OK)
