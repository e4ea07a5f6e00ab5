"""AI2D (lmms-eval ``ai2d``): diagram multiple choice, "X." prefix or the whole reply vs the letter.

lmms-eval's ``flexible-extract`` filter takes the letter of a leading ``X.`` (``^\\s*([A-Z])\\.``),
else the whole (stripped) reply; its ``exact_match`` metric then lower-cases both sides, deletes
ASCII punctuation and compares, with no further stripping: "- B" becomes " b" and is wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import LETTER_INSTRUCTION, HubTask, clean_reply, lettered_options

_LETTER_PREFIX = re.compile(r"^\s*([A-Z])\.")
_PUNCT = str.maketrans("", "", string.punctuation)


def ai2d_extract(reply: str) -> str:
    match = _LETTER_PREFIX.match(reply)
    return match.group(1) if match else reply


def _normalise(text: str) -> str:
    # exact_match with ignore_case and ignore_punctuation: lower, then delete punctuation. Its
    # numpy string arrays cannot hold trailing NUL characters, so those do not count either.
    return text.lower().translate(_PUNCT).rstrip("\x00")


class AI2DTask(HubTask):
    required = ("image", "question", "options", "answer")
    generation = Generation(max_new_tokens=16)

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        # The hub stores the option index as a string ("2").
        return Record(id=f"ai2d-{row_index}", question=row["question"], answer=int(str(row["answer"]).strip()),
                      images=[images["image"]], meta=meta)

    def target(self, record: Record) -> str:
        return chr(ord("A") + int(record.answer))

    def prompt(self, record: Record) -> str:
        return f"{record.question}\n{lettered_options(record.meta['options'])}\n{LETTER_INSTRUCTION}"

    def parse(self, record: Record, reply: str) -> str:
        return ai2d_extract(clean_reply(reply))

    def sample_score(self, record: Record, reply: str) -> float:
        return float(_normalise(self.parse(record, reply)) == _normalise(self.target(record)))

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        self._check_lengths(records, replies)
        hits = [self.sample_score(r, a) for r, a in zip(records, replies, strict=True)]
        return {"accuracy": sum(hits) / len(hits) if hits else 0.0, "n": float(len(hits))}
