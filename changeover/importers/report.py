"""What an import could not carry over, field by field.

Every importer returns the converted documents and a list of ``Note``\\ s, one per field
of the source that changeover does not carry (or carries differently), with the source
file, the field's path as written there, and why. ``changeover import`` prints them; with
``--strict`` a note that loses something (``Note.loss``) is an error (exit 2). Notes that
only say how a field was written (``spec.selector``, the Services' port taken from the
first containerPort) are printed but are no loss.
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
    # False: the same meaning, written differently (not a reason for --strict to fail).
    loss: bool = True

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

    @property
    def losses(self) -> list[Note]:
        """The notes ``--strict`` refuses: something of the source is not carried over."""
        return [n for n in self.notes if n.loss]


class Notes:
    """Collects notes for one source document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Note] = []

    def drop(self, path: str, message: str, *, loss: bool = True) -> None:
        self.items.append(Note(self.source, path, message, "dropped", loss))

    def change(self, path: str, message: str, *, loss: bool = True) -> None:
        self.items.append(Note(self.source, path, message, "changed", loss))

    def rest(self, doc: JSON, path: str, known: set[str], why: str = "") -> None:
        """Report every key of ``doc`` not in ``known``."""
        for key in doc:
            if key not in known:
                self.drop(f"{path}.{key}", why or "not supported by changeover")
