"""The figures each fault test reports, gathered into one table printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class FaultRow:
    """What one scenario did; ``None`` where a column does not apply to it."""

    scenario: str
    webhooks_sent: int | None = None
    accepted: int | None = None
    duplicates: int | None = None
    appended: int | None = None
    projected: int | None = None
    replied: int | None = None
    double_sends: int | None = None
    lost: int | None = None
    server_errors: int | None = None  # 5xx other than the documented 503 while Redis is down
    unavailable_503: int | None = None  # the documented 503 while Redis is down


HEADINGS = {
    "scenario": "scenario",
    "webhooks_sent": "webhooks sent",
    "accepted": "accepted",
    "duplicates": "duplicates",
    "appended": "appended",
    "projected": "projected",
    "replied": "replied",
    "double_sends": "double sends",
    "lost": "lost",
    "server_errors": "5xx",
    "unavailable_503": "503 (Redis down)",
}


class FaultTable:
    """Rows added by tests in any order; rendered sorted by scenario name."""

    def __init__(self) -> None:
        self._rows: dict[str, FaultRow] = {}

    def add(self, row: FaultRow) -> None:
        self._rows[row.scenario] = row

    def rows(self) -> list[FaultRow]:
        return [self._rows[name] for name in sorted(self._rows)]

    def render(self) -> list[str]:
        """Aligned text lines: a heading, a rule, one line per row ("-" where not applicable)."""
        names = [f.name for f in fields(FaultRow)]
        cells = [[HEADINGS[n] for n in names]]
        for row in self.rows():
            cells.append(["-" if getattr(row, n) is None else str(getattr(row, n))
                          for n in names])
        widths = [max(len(line[i]) for line in cells) for i in range(len(names))]

        def line(values: list[str]) -> str:
            first = values[0].ljust(widths[0])
            rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
            return " | ".join([first, *rest])

        return [line(cells[0]), "-+-".join("-" * w for w in widths),
                *(line(c) for c in cells[1:])]
