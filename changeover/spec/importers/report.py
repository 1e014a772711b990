"""What an import could not carry over, field by field.

Every importer returns the converted documents and a list of ``Note``\\ s, one per field
of the source that changeover does not carry (or carries differently), with the source
file, the field's path as written there, and why. ``changeover import`` prints them; with
``--strict`` any note is an error (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]


@dataclass(frozen=True)
class Note:
    source: str
    path: str
    message: str
    kind: Literal["dropped", "changed"] = "dropped"

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path}: {self.kind}: {self.message}"


@dataclass
class Result:
    documents: list[JSON] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def extend(self, other: Result) -> None:
        self.documents += other.documents
        self.notes += other.notes


class Notes:
    """Collects notes for one source document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Note] = []

    def drop(self, path: str, message: str) -> None:
        self.items.append(Note(self.source, path, message, "dropped"))

    def change(self, path: str, message: str) -> None:
        self.items.append(Note(self.source, path, message, "changed"))

    def rest(self, doc: JSON, path: str, known: set[str], why: str = "") -> None:
        """Report every key of ``doc`` not in ``known``."""
        for key in doc:
            if key not in known:
                self.drop(f"{path}.{key}", why or "not supported by changeover")
