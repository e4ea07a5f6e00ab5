"""ScienceQA-IMG (lmms-eval ``scienceqa_img``): multiple choice, scored by exact letter match.

lmms-eval's scorer lower-cases and strips both the reply and the target letter before it
compares them, so only a reply that is the letter alone counts ("b" and " B " are right). Its
code goes on to accept a reply of the form "X. ..." when X is upper case, but that test runs
on the lower-cased reply and can never pass: "B. dog" and "B." are wrong in lmms-eval (reported
upstream twice and closed without a change). vtw
scores what lmms-eval's code does.
"""

from __future__ import annotations

from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import LETTER_INSTRUCTION, HubTask, clean_reply, lettered_options


def target_letter(record: Record) -> str:
    return chr(ord("A") + int(record.answer))


def sqa_correct(reply: str, target: str) -> bool:
    """lmms-eval's rule as it runs: the stripped, lower-cased reply equals the target letter."""
    return reply.strip().lower() == target.strip().lower()


class ScienceQATask(HubTask):
    required = ("image", "question", "choices", "answer", "hint")
    generation = Generation(max_new_tokens=16)

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        return Record(id=f"sqa-{row_index}", question=row["question"], answer=int(row["answer"]),
                      images=[images["image"]], meta=meta)

    def prompt(self, record: Record) -> str:
        hint = record.meta.get("hint")
        # lmms-eval formats a falsy hint as is: "" adds nothing, a null hint would print "None"
        context = f"Context: {hint}\n" if hint else f"{hint}"
        return f"{context}{record.question}\n{lettered_options(record.meta['choices'])}\n{LETTER_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str:
        return clean_reply(reply).lower()

    def sample_score(self, record: Record, reply: str) -> float:
        return float(sqa_correct(clean_reply(reply), target_letter(record)))

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        self._check_lengths(records, replies)
        hits = [self.sample_score(r, a) for r, a in zip(records, replies, strict=True)]
        return {"accuracy": sum(hits) / len(hits) if hits else 0.0, "n": float(len(hits))}
