"""ScienceQA-IMG (lmms-eval ``scienceqa_img``): multiple choice, scored by exact letter match."""

from __future__ import annotations

from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import LETTER_INSTRUCTION, HubTask, clean_reply, lettered_options


def target_letter(record: Record) -> str:
    return chr(ord("A") + int(record.answer))


def sqa_correct(reply: str, target: str) -> bool:
    """lmms-eval's rule: the whole reply is the letter, or it reads "X." followed by anything."""
    if reply.strip().lower() == target.lower():
        return True
    return len(reply) >= 2 and reply[0].isupper() and reply[1] == "." and reply[0] == target


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
        context = f"Context: {hint}\n" if hint else ""
        return f"{context}{record.question}\n{lettered_options(record.meta['choices'])}\n{LETTER_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str:
        reply = clean_reply(reply)
        if len(reply) >= 2 and reply[0].isupper() and reply[1] == ".":
            return reply[0]
        return reply

    def sample_score(self, record: Record, reply: str) -> float:
        return float(sqa_correct(clean_reply(reply), target_letter(record)))

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        self._check_lengths(records, replies)
        hits = [self.sample_score(r, a) for r, a in zip(records, replies, strict=True)]
        return {"accuracy": sum(hits) / len(hits) if hits else 0.0, "n": float(len(hits))}
