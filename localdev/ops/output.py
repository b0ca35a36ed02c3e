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
    """A one-line progress bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self, total_items: int, total_bytes: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.label = label
        self.items = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.items += items
            now = time.monotonic()
            if self.enabled and (now - self._last_draw > 0.1 or self.items == self.total_items):
                self._last_draw = now
                self._draw()

    def _draw(self) -> None:
        width = 24
        frac = self.bytes / self.total_bytes if self.total_bytes else (self.items / self.total_items if self.total_items else 1.0)
        frac = min(max(frac, 0.0), 1.0)
        filled = int(frac * width)
        bar = "█" * filled + "░" * (width - filled)
        self.stream.write(
            f"\r{self.label} {bar} {frac * 100:3.0f}%  {self.items}/{self.total_items} blobs"
            f"  {human_bytes(self.bytes)}/{human_bytes(self.total_bytes)}\033[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            with self._lock:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
