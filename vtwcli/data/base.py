"""The task interface every benchmark loader implements (calibrate, bench and run consume it).

A task is a list of :class:`Record` plus four things: the prompt text for a record (the
text after the image; the model's chat template wraps it), the record's images (PIL) or
video frames, the generation settings, and a pure scorer over (records, replies).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Record:
    id: str
    question: str
    answer: Any = None  # gold answer in the task's own form (letter, "yes"/"no", index...); None if unknown
    images: list[Any] = field(default_factory=list)  # PIL images, or paths resolved lazily by Task.images
    video: str | None = None  # path to a video file (video tasks)
    meta: dict[str, Any] = field(default_factory=dict)  # every other field of the source row


@dataclass
class Generation:
    """Generation settings of the reference harness; greedy everywhere."""

    max_new_tokens: int = 16
    do_sample: bool = False
    num_beams: int = 1
    stop: list[str] = field(default_factory=list)
    note: str = ""  # which harness version these settings follow, when it changed over time

    def generate_kwargs(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "num_beams": self.num_beams}


@dataclass
class Source:
    """What was actually loaded: written into every result file."""

    dataset_id: str
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    path: str | None = None  # local directory or file, when loaded from disk
    # Content hash of a local dataset (datasets' fingerprint, or sha256 of a JSONL file): a
    # local copy has no hub revision, and this still tells two copies apart.
    fingerprint: str | None = None
    rows_available: int | None = None  # rows in the split before --limit/--subset
    selection: str | None = None  # "all", "first 100", "random 64 of 2017 (seed 0)"
    skipped: int = 0  # rows that could not be used (missing image/video file); see Task.skipped

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Task:
    """Base class. Subclasses set ``name``, fill ``records`` and ``source``, override prompt/score."""

    name: str = ""
    description: str = ""
    generation: Generation = Generation()
    metric_names: tuple[str, ...] = ()
    # the one metric a table reports for this task (the paper's column), and how it is named there
    headline_metric: str | None = None
    headline_label: str | None = None
    has_video: bool = False

    def headline(self, metrics: dict[str, float]) -> tuple[str, str] | None:
        """(metric, label) of the number a results table shows for this task: the declared
        headline when the scorer reported it, else the first listed metric it reported."""
        if self.headline_metric and self.headline_metric in metrics:
            return self.headline_metric, self.headline_label or f"{self.name} {self.headline_metric}"
        names = [m for m in self.metric_names if m in metrics] or [m for m in metrics if m != "n"]
        return (names[0], f"{self.name} {names[0]}") if names else None

    def __init__(self, records: Sequence[Record], source: Source, seed: int = 0):
        self.records = list(records)
        self.source = source
        self.seed = seed  # for scorers that need a seeded fallback (MMMU's random letter)
        self.skipped: list[str] = []  # human-readable reasons for rows that could not be used

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def prompt(self, record: Record) -> str:
        raise NotImplementedError

    def images(self, record: Record) -> list[Any]:
        """PIL images for ``record`` in the order the prompt refers to them."""
        from vtwcli.data.images import load_images

        return load_images(record.images)

    def videos(self, record: Record) -> list[Any]:
        """Decoded videos for ``record``: one (T, H, W, 3) uint8 frame array per video."""
        return []

    def parse(self, record: Record, reply: str) -> Any:
        """The answer extracted from a reply (for logs); scoring uses :meth:`score`."""
        return reply.strip()

    def sample_score(self, record: Record, reply: str) -> float | None:
        """This one reply's score for per-sample logs (1.0/0.0 for most tasks; None if unknown)."""
        return None

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError
