"""``async with`` for the bench's resources: entering gives the resource, leaving releases it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class ClosedOnExit(ABC):
    """Base of a resource used as ``async with resource:``; ``aclose()`` runs however the
    block ends (an exception, a cancelled run)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abstractmethod
    async def aclose(self) -> None:
        """Release everything the resource holds; safe to call more than once."""
