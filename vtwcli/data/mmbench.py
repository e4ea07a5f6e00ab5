"""MMBench-EN dev (lmms-eval ``mmbench_en_dev``) with the offline circular scorer.

The letter is extracted by rule only; when extraction fails the copy is wrong (lmms-eval's
online variant would ask a GPT judge; vtw never calls a remote service). A question counts
only if every one of its circular copies (same ``index % 1_000_000``) is right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import LETTER_INSTRUCTION, HubTask
from vtwcli.data.loading import is_missing

CIRCULAR_STRIDE = 1_000_000
OPTION_KEYS = ("A", "B", "C", "D", "E")
_WRAPPERS = ".,:()"


def mmbench_options(meta: dict) -> dict[str, str]:
    return {k: str(meta[k]) for k in OPTION_KEYS if k in meta and not is_missing(meta[k])}


def mmbench_extract(reply: str, options: dict[str, str]) -> str | None:
    """A letter named exactly once among the options, else the one option whose text the reply
    contains; None when neither is unique."""
    spaced = reply
    for ch in _WRAPPERS:
        spaced = spaced.replace(ch, " ")
    words = spaced.split()
    named = [letter for letter in options if letter in words]
    if len(named) == 1:
        return named[0]
    lowered = reply.lower()
    contained = [letter for letter, text in options.items() if text.lower() in lowered]
    return contained[0] if len(contained) == 1 else None


class MMBenchTask(HubTask):
    required = ("index", "question", "hint", "answer", "A", "B", "image")
    generation = Generation(max_new_tokens=1024, stop=["ASSISTANT:"])

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        meta["index"] = int(float(row["index"]))
        return Record(id=f"mmbench-{meta['index']}", question=row["question"], answer=str(row["answer"]).strip(),
                      images=[images["image"]], meta=meta)

    def prompt(self, record: Record) -> str:
        options = "There are several options:\n" + "\n".join(
            f"{k}. {v}" for k, v in mmbench_options(record.meta).items()
        )
        hint = record.meta.get("hint")
        body = f"{record.question} {options}" if is_missing(hint) else f"{hint} {record.question} {options}"
        return f"{body}\n{LETTER_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str | None:
        return mmbench_extract(reply, mmbench_options(record.meta))

    def sample_score(self, record: Record, reply: str) -> float:
        return float(self.parse(record, reply) == record.answer)

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``circular_accuracy`` (0-100, share of questions whose every copy is right),
        ``per_copy_accuracy`` (0-100, each copy on its own), ``questions``, ``copies``,
        ``unparsed`` (copies where no letter could be extracted)."""
        self._check_lengths(records, replies)
        groups: dict[int, list[float]] = defaultdict(list)
        unparsed = 0
        for record, reply in zip(records, replies, strict=True):
            parsed = self.parse(record, reply)
            unparsed += parsed is None
            groups[record.meta["index"] % CIRCULAR_STRIDE].append(float(parsed == record.answer))
        copies = [h for hits in groups.values() for h in hits]
        return {
            "circular_accuracy": 100.0 * sum(all(h) for h in groups.values()) / len(groups) if groups else 0.0,
            "per_copy_accuracy": 100.0 * sum(copies) / len(copies) if copies else 0.0,
            "questions": float(len(groups)),
            "copies": float(len(copies)),
            "unparsed": float(unparsed),
        }
