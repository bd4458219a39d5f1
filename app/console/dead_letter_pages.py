"""``/console/dead-letters``: list, details, retry and drop, through ``app.operations``'s
``mecove dlq`` functions (so a retry from here is recorded exactly like one from the shell)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from app.console.page import page
from app.operations.dead_letters import (
    drop_dead_letter,
    list_dead_letters,
    retry_dead_letter,
    show_dead_letter,
)
from app.platform.eventlog.keys import Keys

__all__ = ["DeadLettersController"]

PAGE_SIZE = 50
DLQ_ID = "{dlq_id:str}"
DONE_NOTES = ("retried", "dropped", "gone", "unretryable")


class DeadLettersController(Controller):
    path = "/dead-letters"

    @get("/")
    async def dead_letters(self, request: Request[Any, Any, Any], state: State,
                           after: FromQuery[str | None] = None,
                           done: FromQuery[str | None] = None) -> Template:
        """Oldest first, 50 a page (``after`` = the last id of the previous page)."""
        keys = Keys.from_settings(state.settings)
        letters = await list_dead_letters(state.redis, keys, after=after, count=PAGE_SIZE + 1)
        letters.sort(key=lambda letter: tuple(int(n) for n in letter.dlq_id.split("-")))
        shown = letters[:PAGE_SIZE]
        return page(request, "dead_letters.html", "dead-letters", letters=shown,
                    next_after=shown[-1].dlq_id if len(letters) > PAGE_SIZE else None,
                    done=done if done in DONE_NOTES else None)

    @get(f"/{DLQ_ID}")
    async def dead_letter(self, request: Request[Any, Any, Any], state: State,
                          dlq_id: FromPath[str]) -> Template:
        """One dead letter: every field the record keeps."""
        fields = await show_dead_letter(state.redis, Keys.from_settings(state.settings), dlq_id)
        if fields is None:
            raise NotFoundException(detail="no such dead letter")
        return page(request, "dead_letter.html", "dead-letters", dlq_id=dlq_id,
                    fields=sorted(fields.items()))

    @post(f"/{DLQ_ID}/retry", status_code=303)
    async def retry(self, state: State, dlq_id: FromPath[str]) -> Redirect:
        """Put the entry back for its group only (``mecove dlq retry``)."""
        try:
            entry_id = await retry_dead_letter(state.redis, Keys.from_settings(state.settings),
                                               dlq_id)
        except ValueError:  # a record without its original event: only dropping helps
            return Redirect("/console/dead-letters?done=unretryable", status_code=303)
        return Redirect(f"/console/dead-letters?done={'retried' if entry_id else 'gone'}",
                        status_code=303)

    @post(f"/{DLQ_ID}/drop", status_code=303)
    async def drop(self, state: State, dlq_id: FromPath[str]) -> Redirect:
        """Forget the dead letter (``mecove dlq drop``)."""
        dropped = await drop_dead_letter(state.redis, Keys.from_settings(state.settings), dlq_id)
        return Redirect(f"/console/dead-letters?done={'dropped' if dropped else 'gone'}",
                        status_code=303)
