"""``jsonl:PATH``: a user's own questions, one JSON object per line.

Fields: ``image`` (a path) or ``images`` (a list of paths), relative paths being relative to
the JSONL file; ``question``; optional ``answer``; optional ``answer_type`` (``text``, the
default: exact match ignoring case, punctuation and spaces; ``yesno``: MME's lenient yes/no
reading; ``choice``: an option letter, "B" or "B. text"; ``number``: MMMU's number matching);
optional ``id``. A line whose image file is missing is skipped, counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from pathlib import Path

from vtwcli.data.ai2d import ai2d_extract
from vtwcli.data.base import Generation, Record, Source, Task
from vtwcli.data.hub import clean_reply
from vtwcli.data.loading import select_rows
from vtwcli.data.mme import mme_parse
from vtwcli.data.mmmu import open_correct, open_predictions
from vtwcli.errors import DatasetError, InputFileError

ANSWER_TYPES = ("text", "yesno", "choice", "number")
_PUNCT = str.maketrans("", "", string.punctuation)


def _norm(text: str) -> str:
    return " ".join(str(text).translate(_PUNCT).lower().split())


class JsonlTask(Task):
    name = "jsonl"
    description = "your own questions from a JSONL file"
    generation = Generation(max_new_tokens=16)
    metric_names = ("accuracy", "scored", "skipped")

    def prompt(self, record: Record) -> str:
        return record.question

    def parse(self, record: Record, reply: str):
        reply = clean_reply(reply)
        kind = record.meta.get("answer_type", "text")
        if kind == "yesno":
            return mme_parse(reply)
        if kind == "choice":
            return _norm(ai2d_extract(reply)).upper()
        if kind == "number":
            return open_predictions(reply)
        return _norm(reply)

    def sample_score(self, record: Record, reply: str) -> float | None:
        if record.answer is None:
            return None
        parsed = self.parse(record, reply)
        kind = record.meta.get("answer_type", "text")
        if kind == "yesno":
            return float(parsed == _norm(record.answer))
        if kind == "choice":
            return float(parsed == _norm(record.answer).upper())
        if kind == "number":
            return float(open_correct(record.answer, parsed))
        return float(parsed == _norm(record.answer))

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``accuracy`` (0-1, over lines with an answer), ``scored`` (those lines),
        ``skipped`` (lines dropped at load for a missing image)."""
        if len(records) != len(replies):
            raise DatasetError(f"jsonl: {len(records)} records but {len(replies)} replies to score")
        hits = [s for s in (self.sample_score(r, a) for r, a in zip(records, replies, strict=True)) if s is not None]
        out = {"scored": float(len(hits)), "skipped": float(self.source.skipped)}
        if hits:
            out["accuracy"] = sum(hits) / len(hits)
        return out


def load_jsonl(path: str | Path, split=None, limit=None, subset=None, seed: int = 0, order: str = "first") -> JsonlTask:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputFileError(f"jsonl:{path}: no such file (give jsonl:PATH to a file with one JSON object per line)")
    raw = path.read_bytes()
    records: list[Record] = []
    skipped: list[str] = []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(f"{where} is not valid JSON ({err.msg}); each line must be one JSON object") from err
        if not isinstance(item, dict):
            raise InputFileError(f"{where} must be a JSON object with image and question fields")
        images = item.get("images", item.get("image"))
        if isinstance(images, str):
            images = [images]
        missing = [f for f, ok in (("image or images", bool(images)), ("question", bool(item.get("question"))))
                   if not ok]
        if missing:
            raise InputFileError(f"{where} is missing field(s): {', '.join(missing)}")
        kind = item.get("answer_type", "text")
        if kind not in ANSWER_TYPES:
            raise InputFileError(f"{where}: answer_type {kind!r} is not one of {', '.join(ANSWER_TYPES)}")
        resolved = [(path.parent / p).resolve() if not Path(p).is_absolute() else Path(p) for p in images]
        absent = [str(p) for p in resolved if not p.is_file()]
        if absent:
            skipped.append(f"line {lineno}: image {absent[0]} not found")
            continue
        meta = {k: v for k, v in item.items() if k not in ("question", "answer", "image", "images")}
        meta["answer_type"] = kind
        meta["line"] = lineno
        records.append(Record(id=str(item.get("id", f"line-{lineno}")), question=str(item["question"]),
                              answer=item.get("answer"), images=[str(p) for p in resolved], meta=meta))
    if not records:
        detail = f" ({len(skipped)} line(s) skipped: {skipped[0]}...)" if skipped else ""
        raise DatasetError(f"jsonl:{path} has no usable line{detail}")
    strata = None
    if order == "random" and all("category" in r.meta for r in records):
        strata = [str(r.meta["category"]) for r in records]
    indices, how = select_rows(len(records), limit, subset, seed, order=order, strata=strata)
    source = Source(dataset_id="jsonl", split=split, path=str(path.resolve()),
                    fingerprint="sha256:" + hashlib.sha256(raw).hexdigest()[:16],
                    rows_available=len(records), selection=how, skipped=len(skipped))
    task = JsonlTask([records[i] for i in indices], source, seed=seed)
    task.skipped = skipped
    return task
