"""One YAML document as read from a file, with where it came from and its line numbers.

``spec.load`` makes them; ``spec.messages`` uses them to put a file, a document number and
a line into every problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A field's path inside a document: ("spec", "strategy", "canary", "steps", 0).
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedDocument:
    """One non-empty YAML document and where it came from.

    ``index`` is the 0-based position among the file's documents (empty ones count, so it
    matches what the user sees); ``label`` names it for messages::

        >>> LoadedDocument(source="r.yaml", index=1, data={}, multi=True).label
        'r.yaml#2'
        >>> LoadedDocument(source="r.yaml", index=0, data={}).label
        'r.yaml'
    """

    source: str
    index: int
    data: dict[str, Any]
    multi: bool = False  # the file holds more than one non-empty document
    lines: Mapping[Loc, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.source}#{self.index + 1}" if self.multi else self.source

    def line_of(self, loc: Loc) -> int | None:
        """The 1-based line of ``loc`` in the file, or of its nearest ancestor we know."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None
