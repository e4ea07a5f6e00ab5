"""The shared shape of a benchmark task loaded from a ``datasets`` table.

A subclass says which fields it needs, which columns hold images, how a row becomes a
:class:`Record`, and supplies ``prompt``/``parse``/``sample_score``/``score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from vtwcli.data.base import Record, Task
from vtwcli.data.images import LazyImage
from vtwcli.data.loading import HubLocation, load_table, select_rows
from vtwcli.errors import UsageError

LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
WORD_INSTRUCTION = "Answer the question using a single word or phrase."


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def lettered_options(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters(len(options)), options, strict=True))


def clean_reply(reply: str) -> str:
    # lmms-eval's model wrappers strip the decoded text before any scorer sees it.
    return (reply or "").strip()


@dataclass(frozen=True)
class TaskSpec:
    """One named task: where its data lives and what it reports."""

    name: str
    lmms_eval: str
    location: HubLocation | None
    rows: int | None  # the full split's size in lmms-eval's copy
    description: str
    metrics: tuple[tuple[str, str], ...]  # (metric name, what it means and its scale)
    factory: str  # "module:Class" (imported on use)
    # (metric, label) the paper's Table 2 column reports for this benchmark, e.g. ("total", "MME total")
    headline: tuple[str, str] | None = None


class HubTask(Task):
    """A benchmark task whose rows come from :func:`vtwcli.data.loading.load_table`."""

    required: ClassVar[tuple[str, ...]] = ()
    image_columns: ClassVar[tuple[str, ...]] = ("image",)
    # a random --limit sample is stratified by this column when the table has it
    stratum_column: ClassVar[str | None] = None
    stratum_what: ClassVar[str] = ""
    spec: TaskSpec

    @classmethod
    def selection_keys(cls, table) -> dict[str, Any]:
        """How a random sample of ``table`` is drawn: ``strata`` (a label per row) and ``groups``
        (a key per row; rows sharing a key are kept or left together), with words for the record."""
        col = cls.stratum_column
        if col is None or col not in table.column_names:
            return {}
        return {"strata": [str(v) for v in table[col]], "strata_what": cls.stratum_what or col}

    @classmethod
    def load(cls, spec: TaskSpec, path=None, split=None, limit=None, subset=None, seed: int = 0,
             order: str = "first", **options):  # fmt: skip
        if options:
            raise UsageError(f"task {spec.name} takes no option(s) {', '.join(sorted(options))}")
        table, source = load_table(spec.name, spec.location, path, split, cls.required)
        keys = cls.selection_keys(table) if order == "random" and limit is not None and limit < len(table) else {}
        indices, how = select_rows(len(table), limit, subset, seed, order=order, **keys)
        source.selection = how
        table = table.select(indices)
        image_cols = [c for c in cls.image_columns if c in table.column_names]
        text_table = table.remove_columns(image_cols) if image_cols else table
        raw_images = {c: _undecoded(table, c) for c in image_cols}
        records = []
        for pos, row in enumerate(text_table.to_list()):
            refs = {c: LazyImage(raw_images[c], pos, c) for c in image_cols}
            records.append(cls.make_record(row, indices[pos], refs))
        task = cls(records, source, seed=seed)
        task.spec = spec
        task.name = spec.name
        task.description = spec.description
        task.metric_names = tuple(m for m, _ in spec.metrics)
        if spec.headline is not None:
            task.headline_metric, task.headline_label = spec.headline
        return task

    @classmethod
    def make_record(cls, row: dict[str, Any], row_index: int, images: dict[str, LazyImage]) -> Record:
        raise NotImplementedError

    def _check_lengths(self, records: Sequence[Record], replies: Sequence[str]) -> None:
        if len(records) != len(replies):
            raise UsageError(f"{self.name}: {len(records)} records but {len(replies)} replies to score")


def _undecoded(table, column: str):
    """The image column alone, as raw bytes/paths, so reading one row decodes nothing else."""
    import datasets

    only = table.select_columns([column])
    if isinstance(only.features[column], datasets.Image):
        only = only.cast_column(column, datasets.Image(decode=False))
    return only
