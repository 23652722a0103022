"""Skipped items: the end-of-run tally by reason, and a collate function that keeps them out of batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from clipworks.data.types import Sample, Skipped


def _category(reason: str) -> str:
    return reason.split(" (", 1)[0].strip()


class SkipReport:
    """Tallies Skipped records by reason for the end-of-run summary; keeps a few examples, not all keys."""

    MAX_EXAMPLES = 100

    def __init__(self, total: int | None = None) -> None:
        self.total = total  # items seen in all, when the caller knows it; else kept + skipped if kept were counted
        self.kept = 0
        self._counts: Counter[str] = Counter()
        self._first: dict[str, Skipped] = {}
        self._examples: list[Skipped] = []

    def add(self, item: Skipped | Sample) -> None:
        """Record a Skipped item (a Sample counts as kept, so `for item in data: report.add(item)` works)."""
        if isinstance(item, Sample):
            self.kept += 1
            return
        category = _category(item.reason)
        self._counts[category] += 1
        self._first.setdefault(category, item)
        if len(self._examples) < self.MAX_EXAMPLES:
            self._examples.append(item)

    def add_kept(self, n: int = 1) -> None:
        self.kept += n

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    def by_reason(self) -> dict[str, int]:
        """Skips per reason category (the reason up to " ("), most common first."""
        return dict(self._counts.most_common())

    def examples(self, n: int = 5) -> list[Skipped]:
        """Up to n skipped items: the first of each reason category, then others in the order they came."""
        chosen = [self._first[c] for c in self.by_reason()][:n]
        for item in self._examples:
            if len(chosen) >= n:
                break
            if not any(item is c for c in chosen):
                chosen.append(item)
        return chosen

    def first(self) -> str:
        """The first skipped item with its full reason ("a.png: unreadable caption file (a.txt: ...)"), or ""."""
        examples = self.examples(1)
        return f"{examples[0].key}: {examples[0].reason}" if examples else ""

    def summary(self, total: int | None = None, noun: str = "sample") -> str:
        """e.g. "skipped 3 of 1000 samples: 2 corrupt or truncated image, 1 no such file; e.g. a.jpg, b.png"
        (`noun`: what the items are, "row" or "video" where they are not samples)."""
        total = total if total is not None else self.total
        if total is None and self.kept:
            total = self.kept + self.count
        of = f" of {total}" if total is not None else ""
        noun = noun if (total if total is not None else self.count) == 1 else f"{noun}s"
        if not self.count:
            return f"skipped 0{of} {noun}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.by_reason().items())
        examples = ", ".join(s.key for s in self.examples(min(len(self._counts), 5)))
        return f"skipped {self.count}{of} {noun}: {reasons}; e.g. {examples}"


def collate_samples(items: Sequence[Sample | Skipped]) -> tuple[list[Sample], list[Skipped]]:
    """A DataLoader collate_fn that separates usable samples from skipped items instead of failing on them."""
    samples = [item for item in items if isinstance(item, Sample)]
    skipped = [item for item in items if isinstance(item, Skipped)]
    return samples, skipped
