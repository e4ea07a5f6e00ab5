"""MME (lmms-eval ``mme``): yes/no pairs per image; per subtask acc + acc+, summed.

A run may hold only one question of a pair (``--limit``, a random subset): those images are
left out of acc and acc+ alike and reported as ``incomplete_pairs``, where lmms-eval would
stop on an assertion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import WORD_INSTRUCTION, HubTask

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_BUILTIN_SUFFIX = " Please answer yes or no."


def mme_parse(reply: str) -> str:
    """"yes", "no" or "other", by lmms-eval's rule (only the first 4 characters are read)."""
    text = reply.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


class MMETask(HubTask):
    required = ("question_id", "image", "question", "answer", "category")
    generation = Generation(max_new_tokens=16)
    stratum_column = "category"
    stratum_what = "subtask"

    @classmethod
    def selection_keys(cls, table):
        """Stratified by subtask; an image's two questions (its acc+ pair) are kept together."""
        keys = super().selection_keys(table)
        cats, qids = table["category"], table["question_id"]
        keys["groups"] = [(str(c), str(q)) for c, q in zip(cats, qids, strict=True)]
        keys["group_what"] = "image pairs"
        return keys

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        return Record(id=f"{row['question_id']}#{row_index}", question=row["question"],
                      answer=str(row["answer"]).strip().lower(), images=[images["image"]], meta=meta)

    def prompt(self, record: Record) -> str:
        question = record.question.strip().replace(_BUILTIN_SUFFIX, "")
        return f"{question}\n{WORD_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str:
        return mme_parse(reply)

    def sample_score(self, record: Record, reply: str) -> float:
        return float(mme_parse(reply) == record.answer)

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``perception`` (0-2000), ``cognition`` (0-800), ``total`` (their sum, the
        paper's MME column), ``subtask/<name>`` (acc + acc+, 0-200), ``scored_pairs``,
        ``incomplete_pairs`` (images with other than 2 questions in this run; not scored)."""
        self._check_lengths(records, replies)
        by_image: dict[tuple[str, str], list[float]] = defaultdict(list)
        for record, reply in zip(records, replies, strict=True):
            key = (record.meta["category"], str(record.meta["question_id"]))
            by_image[key].append(self.sample_score(record, reply))
        per_subtask: dict[str, list[list[float]]] = defaultdict(list)
        incomplete = 0
        for (category, _), hits in by_image.items():
            if len(hits) != 2:
                incomplete += 1
                continue
            per_subtask[category].append(hits)
        out: dict[str, float] = {}
        for category, pairs in sorted(per_subtask.items()):
            acc = 100.0 * sum(sum(p) for p in pairs) / (2 * len(pairs))
            acc_plus = 100.0 * sum(1 for p in pairs if sum(p) == 2) / len(pairs)
            out[f"subtask/{category}"] = acc + acc_plus
        perception = sum(out.get(f"subtask/{c}", 0.0) for c in PERCEPTION)
        cognition = sum(out.get(f"subtask/{c}", 0.0) for c in COGNITION)
        return {
            "perception": perception,
            "cognition": cognition,
            "total": perception + cognition,
            **out,
            "scored_pairs": float(sum(len(p) for p in per_subtask.values())),
            "incomplete_pairs": float(incomplete),
        }
