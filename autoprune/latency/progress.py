"""Progress reporting for long measurements: a tiny interface and a Rich progress bar."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol as TypingProtocol
from typing import Self


class Progress(TypingProtocol):
    """Told when a stage starts (with its number of steps) and as steps finish."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...


class NullProgress:
    """Reports nothing (library use, tests)."""

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


class RichProgress:
    """One Rich bar per stage, with elapsed and remaining time; use as a context manager."""

    def __init__(self, transient: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _Bar

        self._bar = _Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(), transient=transient)
        self._task: int | None = None

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._bar.stop()

    def start(self, stage: str, total: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].total)
        self._task = self._bar.add_task(stage, total=max(total, 1))

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, steps)
