"""The one list of images the stack runs (``localdev/images.lock.yaml``), and the checks made against it.

Each entry names an image, the version pinned, where that version was confirmed
upstream, and whether the project still releases it. Every image in ``k8s/``
and every image default in ``Pulumi.yaml`` must be exactly one entry's
reference; :func:`lock_problems` says which are not. ``docs/images.md`` carries
the table :func:`render_table` makes from the list; ``python -m
localdev.image_lock`` rewrites it after a bump.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from localdev.errors import UsageError
from localdev.images import DIGEST_REQUIRED, ImageRef, parse_reference

LOCK_FILE = Path(__file__).resolve().parent / "images.lock.yaml"
DOCS_FILE = Path(__file__).resolve().parent.parent / "docs" / "images.md"
STATUSES = ("maintained", "final")
#: Marks around the generated table in docs/images.md.
TABLE_BEGIN = "<!-- images table: generated from localdev/images.lock.yaml by `python -m localdev.image_lock` -->"
TABLE_END = "<!-- end of images table -->"
#: Images the stack must never run again, with the reason (matched against the repository path).
BANNED = (
    (re.compile(r"(^|/)minio(/|$)"), "MinIO's images are no longer published for anonymous pulls (docs/backup-store.md)"),
    (re.compile(r"(^|/)all-in-one$"), "Jaeger v1's all-in-one image is no longer released; use jaegertracing/jaeger (v2)"),
)


@dataclass(frozen=True)
class LockEntry:
    """One image of the stack and the evidence for its version."""

    name: str
    """Fully qualified repository, e.g. ``docker.io/library/redis``."""
    version: str
    """The tag pinned."""
    status: str
    """``maintained``, or ``final`` for a project that has ended (then :attr:`successor` is set)."""
    used_by: str
    """Where the stack uses it (a file under k8s/ or a Pulumi.yaml setting)."""
    confirmed: tuple[str, ...]
    """Upstream sources (release page, tag, release note) that show this version."""
    digest: str | None = None
    released: str | None = None
    successor: str | None = None
    note: str | None = None

    @property
    def ref(self) -> ImageRef:
        registry, _, repository = self.name.partition("/")
        return ImageRef(registry, repository, self.version, self.digest)

    @property
    def reference(self) -> str:
        return str(self.ref)


def load_lock(path: Path = LOCK_FILE) -> list[LockEntry]:
    """Read the lock file; raise ``ValueError`` naming the entry and field that is wrong."""
    data = yaml.safe_load(path.read_text()) or {}
    raw = data.get("images")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list under 'images'")
    entries: list[LockEntry] = []
    for index, item in enumerate(raw):
        where = f"{path.name} images[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping")
        unknown = set(item) - {f for f in LockEntry.__dataclass_fields__}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        for key in ("name", "version", "status", "used_by", "confirmed"):
            if not item.get(key):
                raise ValueError(f"{where}: '{key}' is required")
        confirmed = item["confirmed"]
        if not isinstance(confirmed, list) or not all(isinstance(c, str) and c.startswith("https://") for c in confirmed):
            raise ValueError(f"{where}: 'confirmed' must be a list of https:// sources")
        entry = LockEntry(
            name=str(item["name"]),
            version=str(item["version"]),
            status=str(item["status"]),
            used_by=str(item["used_by"]),
            confirmed=tuple(confirmed),
            digest=item.get("digest"),
            released=None if item.get("released") is None else str(item["released"]),
            successor=item.get("successor"),
            note=item.get("note"),
        )
        if entry.status not in STATUSES:
            raise ValueError(f"{where}: status {entry.status!r} is not one of {', '.join(STATUSES)}")
        if entry.status == "final" and not entry.successor:
            raise ValueError(f"{where}: a 'final' image needs a 'successor'")
        try:
            parsed = parse_reference(f"{entry.name}:{entry.version}" + (f"@{entry.digest}" if entry.digest else ""))
        except UsageError as err:
            raise ValueError(f"{where}: {err}") from err
        if f"{parsed.registry}/{parsed.repository}" != entry.name:
            expected = f"{parsed.registry}/{parsed.repository}"
            raise ValueError(f"{where}: name {entry.name!r} is not fully qualified (expected {expected})")
        entries.append(entry)
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{path.name}: more than one entry for {duplicated}")
    return entries


def lock_problems(used: Iterable[tuple[str, str]], lock: Sequence[LockEntry]) -> list[str]:
    """Problems of the images the stack uses, given as ``(where, reference)``; empty when all is well.

    A reference must normalise to exactly an entry's ``name:version[@digest]``;
    MinIO and Jaeger v1 all-in-one images are refused whatever the lock says;
    node images must carry a digest. Entries no reference uses are reported too,
    so the list never keeps an image the stack dropped.
    """
    by_name = {e.name: e for e in lock}
    problems: list[str] = []
    seen: set[str] = set()
    for where, text in used:
        try:
            ref = parse_reference(text)
        except UsageError as err:
            problems.append(f"{where}: {err}")
            continue
        for pattern, reason in BANNED:
            if pattern.search(ref.repository):
                problems.append(f"{where}: {text!r}: {reason}")
        if (ref.registry, ref.repository) in DIGEST_REQUIRED and ref.digest is None:
            problems.append(f"{where}: {text!r} has no digest; use NAME:TAG@sha256:<digest> as kind's release notes list it")
        name = f"{ref.registry}/{ref.repository}"
        entry = by_name.get(name)
        if entry is None:
            problems.append(f"{where}: {text!r} is not in {LOCK_FILE.name}; add it with its version and where it was confirmed")
            continue
        seen.add(name)
        if (ref.tag, ref.digest) != (entry.version, entry.digest):
            problems.append(f"{where}: {text!r} differs from {LOCK_FILE.name}'s {entry.reference}")
    problems += [f"{LOCK_FILE.name}: {e.name} is used by nothing in the stack" for e in lock if e.name not in seen]
    return problems


def render_table(lock: Sequence[LockEntry]) -> str:
    """The Markdown table docs/images.md carries, between its marks."""
    lines = [
        TABLE_BEGIN,
        "",
        "| image | version | released | status | used by | confirmed at |",
        "|---|---|---|---|---|---|",
    ]
    for e in sorted(lock, key=lambda e: e.name):
        version = f"`{e.version}`" + (f"<br>`@{e.digest}`" if e.digest else "")
        status = e.status if not e.successor else f"{e.status} (successor: {e.successor})"
        sources = "<br>".join(f"<{c}>" for c in e.confirmed)
        lines.append(f"| `{e.name}` | {version} | {e.released or 'n/a'} | {status} | {e.used_by} | {sources} |")
    lines += ["", TABLE_END]
    return "\n".join(lines)


def table_in(text: str) -> str | None:
    """The generated table found in a document, marks included; None when the marks are missing."""
    start, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(TABLE_END)]


def rewrite_docs(docs: Path = DOCS_FILE, lock_file: Path = LOCK_FILE) -> bool:
    """Replace the table in ``docs`` with one rendered from ``lock_file``; True when the file changed."""
    text = docs.read_text()
    current = table_in(text)
    if current is None:
        raise ValueError(f"{docs}: no generated table marks ({TABLE_BEGIN!r} … {TABLE_END!r})")
    updated = text.replace(current, render_table(load_lock(lock_file)))
    if updated == text:
        return False
    docs.write_text(updated)
    return True


if __name__ == "__main__":
    changed = rewrite_docs()
    print(f"{DOCS_FILE}: {'rewritten' if changed else 'already up to date'}")
    sys.exit(0)
