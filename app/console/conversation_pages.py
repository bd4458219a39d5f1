"""``/console/conversations``: users and their identities; one user's chat with our replies."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from app.console.page import page
from app.console.queries import (
    conversation_messages,
    conversation_summary,
    conversations_page,
    delivery_statuses_of,
    reply_facts,
    user_identities,
)
from app.console.view_models import chat_timeline, encode_cursor, parse_cursor

__all__ = ["ConversationsController"]

MAX_PAGE = 10_000
MAX_SEARCH_LENGTH = 100


class ConversationsController(Controller):
    path = "/conversations"

    @get("/")
    async def conversations(
        self, request: Request[Any, Any, Any], state: State, q: FromQuery[str] = "",
        page_number: Annotated[int, QueryParameter(name="page")] = 0,
    ) -> Template:
        """Users, latest message first, 50 a page; ``q`` searches phone, BSUID or user id."""
        if not 0 <= page_number <= MAX_PAGE or len(q) > MAX_SEARCH_LENGTH:
            raise HTTPException(status_code=400, detail="page or search out of range")
        async with state.pool.acquire() as connection:
            rows, has_next = await conversations_page(connection, page=page_number, search=q)
        return page(request, "conversations.html", "conversations", rows=rows,
                    page_number=page_number, has_next=has_next, q=q)

    @get("/{user_id:uuid}")
    async def conversation(
        self, request: Request[Any, Any, Any], state: State, user_id: FromPath[UUID],
        before: FromQuery[str | None] = None,
    ) -> Template:
        """One user's chat (50 messages a page, older with ``before``) with the delivery ticks
        of its replies, and its latest summary."""
        try:
            cursor = parse_cursor(before) if before else None
        except ValueError as exc:
            raise HTTPException(status_code=400, detail="malformed 'before' cursor") from exc
        user = str(user_id)
        async with state.pool.acquire() as connection:
            identities = await user_identities(connection, user)
            if not identities:
                raise NotFoundException(detail="no such user")
            messages, has_older = await conversation_messages(connection, user, before=cursor)
            message_ids = [m.message_id for m in messages]
            facts = await reply_facts(connection, message_ids)
            statuses = await delivery_statuses_of(connection, message_ids)
            summary = await conversation_summary(connection, user)
        oldest = messages[-1] if messages else None
        return page(
            request, "conversation.html", "conversations", user_id=user,
            identities=identities, items=chat_timeline(messages, facts, statuses), summary=summary,
            older=encode_cursor(oldest.created_at, oldest.message_id)
            if oldest and has_older else None,
            paged=cursor is not None,
        )
