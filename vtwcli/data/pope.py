"""POPE (lmms-eval ``pope``, ``pope_adv``/``pope_pop``/``pope_random``): strict yes/no.

Only a reply that is exactly "yes" or "no" (ignoring case and surrounding spaces) counts:
"Yes." is wrong and is neither a yes nor a no for precision and recall, as in lmms-eval.
"""

from __future__ import annotations

from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import WORD_INSTRUCTION, HubTask


def pope_parse(reply: str) -> str:
    return reply.lower().strip()


class POPETask(HubTask):
    required = ("question_id", "question", "answer", "image", "category")
    generation = Generation(max_new_tokens=128)
    stratum_column = "category"
    stratum_what = "sampling"

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        return Record(id=str(row["question_id"]), question=row["question"], answer=str(row["answer"]).strip().lower(),
                      images=[images["image"]], meta=meta)

    def prompt(self, record: Record) -> str:
        return f"{record.question.strip()}\n{WORD_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str:
        return pope_parse(reply)

    def sample_score(self, record: Record, reply: str) -> float:
        return float(pope_parse(reply) == record.answer)

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics (all 0-1): ``accuracy``, ``precision``, ``recall``, ``f1`` (positive class
        "yes"), ``gt_yes_ratio`` (share of gold "yes": lmms-eval's ``yes_ratio``),
        ``pred_yes_ratio`` (share of replies that are exactly "yes"), ``neither_yes_nor_no``
        (count of replies that are neither)."""
        self._check_lengths(records, replies)
        n = len(records)
        preds = [pope_parse(r) for r in replies]
        golds = [r.answer for r in records]
        tp = sum(1 for g, p in zip(golds, preds, strict=True) if g == "yes" and p == "yes")
        fp = sum(1 for g, p in zip(golds, preds, strict=True) if g == "no" and p == "yes")
        fn = sum(1 for g, p in zip(golds, preds, strict=True) if g == "yes" and p == "no")
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "accuracy": sum(1 for g, p in zip(golds, preds, strict=True) if g == p) / n if n else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "gt_yes_ratio": golds.count("yes") / n if n else 0.0,
            "pred_yes_ratio": preds.count("yes") / n if n else 0.0,
            "neither_yes_nor_no": float(sum(1 for p in preds if p not in ("yes", "no"))),
            "n": float(n),
        }
