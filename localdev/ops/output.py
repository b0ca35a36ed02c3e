"""Terminal output: check marks, colour (TTY only, honouring NO_COLOR), sizes, a progress line."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

GREEN = "\033[32m"
RED = "\033[31m"
YELLOW = "\033[33m"
DIM = "\033[2m"
BOLD = "\033[1m"
RESET = "\033[0m"


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Style:
    """Marks and colours for one output stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.colour = use_colour(stream)

    def paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if self.colour else text

    @property
    def ok(self) -> str:
        return self.paint("✓", GREEN)

    @property
    def bad(self) -> str:
        return self.paint("✗", RED)

    @property
    def warn(self) -> str:
        return self.paint("!", YELLOW)

    def dim(self, text: str) -> str:
        return self.paint(text, DIM)

    def bold(self, text: str) -> str:
        return self.paint(text, BOLD)


def human_bytes(count: int | float | None) -> str:
    """1234567 → '1.2 MB' (decimal units, as registries and Docker report sizes)."""
    if count is None:
        return "n/a"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - loop always returns


def ratio(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return part / whole


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


class Progress:
    """Progress on stderr: a bar redrawn in place on a terminal, else silent, or lines when asked.

    ``lines=True`` is for output read line by line (``pulumi up`` shows a
    Command's stderr as it comes): one line every ``interval`` seconds while
    bytes move, and one at the end.
    """

    def __init__(
        self,
        total_items: int,
        total_bytes: int,
        label: str,
        stream: TextIO | None = None,
        *,
        lines: bool = False,
        interval: float = 5.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.lines = lines
        self.enabled = lines or bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.label = label
        self.interval = interval if lines else 0.1
        self.items = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._last_draw = time.monotonic() if lines else 0.0
        self._started = time.monotonic()
        if lines:
            self._line("start")

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.items += items
            now = time.monotonic()
            due = now - self._last_draw > self.interval
            # The bar is drawn full at once; the last line is close()'s.
            finished = self.items == self.total_items and not self.lines
            if not self.enabled or not (due or finished):
                return
            self._last_draw = now
            if self.lines:
                self._line()
            else:
                self._draw()

    def _fraction(self) -> float:
        frac = self.bytes / self.total_bytes if self.total_bytes else (self.items / self.total_items if self.total_items else 1.0)
        return min(max(frac, 0.0), 1.0)

    def _line(self, when: str = "") -> None:
        if when == "start":
            text = f"{self.total_items} blobs to fetch, {human_bytes(self.total_bytes)}"
        else:
            elapsed = time.monotonic() - self._started
            rate = self.bytes / elapsed if elapsed > 0 else 0.0
            text = (
                f"{self._fraction() * 100:3.0f}%  {self.items}/{self.total_items} blobs  "
                f"{human_bytes(self.bytes)}/{human_bytes(self.total_bytes)}  {human_bytes(rate)}/s  {elapsed:.0f}s"
            )
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def _draw(self) -> None:
        width = 24
        frac = self._fraction()
        filled = int(frac * width)
        bar = "█" * filled + "░" * (width - filled)
        self.stream.write(
            f"\r{self.label} {bar} {frac * 100:3.0f}%  {self.items}/{self.total_items} blobs"
            f"  {human_bytes(self.bytes)}/{human_bytes(self.total_bytes)}\033[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self.lines:
                self._line()
                return
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
