"""MMMU validation (lmms-eval ``mmmu_val``): multiple choice and open questions, micro accuracy.

Rules follow lmms-eval's ``lmms_eval/tasks/mmmu/utils.py`` (itself the official MMMU code).
The reply is stripped first, as lmms-eval's model wrappers do.
Multiple choice: the edge punctuation ``, . ! ? ; : '`` is stripped and the reply padded with
spaces; candidates are looked for as "(A)", then "A " , then "A.", then (for replies longer
than five words) option texts; with several candidates the last occurrence wins. When nothing
is found lmms-eval picks a random letter; vtw does the same with a generator seeded by (seed,
record id), so a record's fallback does not depend on which other records ran, and counts
those replies as ``unparsed``. Right when the letter equals the stored answer.
Open: key sub-answers and the numbers in them are extracted (an integer must end at a word
boundary: "5cm" holds no number) and normalised (numbers rounded to 2 decimals); a reply is
right when the normalised gold is a substring of an extracted string or equals an extracted
number. Every extracted candidate is compared, as upstream lmms-eval does since its fix of the
open-answer scoring (August 2026), not only the first one.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Sequence

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import (
    LETTER_INSTRUCTION,
    WORD_INSTRUCTION,
    HubTask,
    clean_reply,
    lettered_options,
    letters,
)

IMAGE_COLUMNS = tuple(f"image_{k}" for k in range(1, 8))
_PLACEHOLDER = re.compile(r"<image (\d+)>")
_EDGE_PUNCT = ",.!?;:'"
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCI = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
# an integer must end at a word boundary, so "5cm" holds no number (lmms-eval's pattern)
_NUM_PLAIN = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def parse_options(raw) -> list[str]:
    """The hub stores options as a string holding a Python list literal."""
    if isinstance(raw, list):
        return [str(x) for x in raw]
    if raw is None or str(raw).strip() == "":
        return []
    value = ast.literal_eval(str(raw))
    return [str(x) for x in value]


def mc_candidates(reply: str, options: dict[str, str]) -> tuple[str | None, list[str]]:
    """(chosen letter or None, candidates) by lmms-eval's rule; None means nothing was found."""
    text = reply
    for ch in _EDGE_PUNCT:
        text = text.strip(ch)
    text = f" {text} "
    choices = list(options)
    found = [c for c in choices if f"({c})" in text]
    kind = "bracket"
    if not found:
        found = [c for c in choices if f"{c} " in text]
        kind = "letter"
    if not found:
        found = [c for c in choices if f"{c}." in text]
        kind = "letter"
    if not found and len(text.split()) > 5:
        found = [c for c, t in options.items() if t.lower() in text.lower()]
        kind = "content"
    if not found:
        return None, []
    if len(found) == 1:
        return found[0], found

    def last_position(c: str) -> int:
        if kind == "bracket":
            return text.rfind(f"({c})")
        if kind == "letter":
            return text.rfind(f" {c} ")
        return text.lower().rfind(options[c].lower())

    positions = [last_position(c) for c in found]
    # max() keeps the first of equal positions, as an argmax does
    return found[positions.index(max(positions))], found


def _normalise(value: str) -> list:
    value = value.strip()
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        lowered = value.lower()
        # a one-letter answer must stand alone, so it is padded on one side or the other
        return [" " + lowered, lowered + " "] if len(lowered) == 1 else [lowered]
    return [round(number, 2)]


def _numbers_in(text: str) -> list[str]:
    return _NUM_COMMAS.findall(text) + _NUM_SCI.findall(text) + _NUM_PLAIN.findall(text)


def open_predictions(reply: str) -> list:
    """Normalised strings and numbers a free-form reply may be answering with."""
    text = reply.strip().strip(".").lower()
    # lmms-eval splits on ". " before a capital, but after lowering: so only newlines split.
    parts = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys = []
    for i, part in enumerate(parts):
        indicators = _KEY_INDICATORS + (("=",) if i == len(parts) - 1 else ())
        shortest = ""
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                # an empty tail does not hold the place: the next indicator's tail replaces it
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    if not keys:
        keys = [text]
    raw = list(keys)
    for key in keys:
        raw.extend(_numbers_in(key))
    preds: list = []
    for item in raw:
        for norm in _normalise(item):
            if norm not in preds:
                preds.append(norm)
    return preds


def gold_answers(answer) -> list[str]:
    """The gold answer(s) as lmms-eval compares them: a list stays a list, anything else is one
    string as stored. The hub keeps every answer as a string, so a stored "['a', 'b']" is matched
    as that text, not as two answers (lmms-eval does not parse it either)."""
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    return [str(answer)]


def open_correct(gold, preds: list) -> bool:
    norm_gold = [n for g in gold_answers(gold) for n in _normalise(g)]
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in norm_gold):
                return True
        elif pred in norm_gold:
            return True
    return False


class MMMUTask(HubTask):
    required = ("id", "question", "options", "answer", "question_type", "image_1")
    image_columns = IMAGE_COLUMNS
    generation = Generation(
        max_new_tokens=128,
        note="lmms-eval mmmu_val uses max_new_tokens 128 since Dec 2025 (16 before); results made with "
        "the older harness need Generation(max_new_tokens=16)",
    )

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        meta["options"] = parse_options(row["options"])
        record = Record(id=str(row["id"]), question=row["question"], answer=row["answer"], meta=meta)
        text = record.question + "\n" + "\n".join(meta["options"])
        # lmms-eval passes each image named anywhere in question or options once, by number
        numbers = sorted({int(k) for k in _PLACEHOLDER.findall(text)})
        record.images = [images[f"image_{k}"] for k in numbers if f"image_{k}" in images]
        return record

    def _is_mc(self, record: Record) -> bool:
        return record.meta.get("question_type") == "multiple-choice"

    def _options(self, record: Record) -> dict[str, str]:
        opts = record.meta["options"]
        return dict(zip(letters(len(opts)), opts, strict=True))

    def prompt(self, record: Record) -> str:
        if self._is_mc(record):
            return f"{record.question}\n{lettered_options(record.meta['options'])}\n\n{LETTER_INSTRUCTION}"
        return f"{record.question}\n\n{WORD_INSTRUCTION}"

    def _judge(self, record: Record, reply: str) -> tuple[object, bool, bool]:
        """(parsed answer, correct, was unparsed)."""
        reply = clean_reply(reply)  # lmms-eval's model wrappers strip the reply before the task sees it
        if self._is_mc(record):
            options = self._options(record)
            letter, _ = mc_candidates(reply, options)
            unparsed = letter is None
            if unparsed:
                letter = random.Random(f"{self.seed}:{record.id}").choice(list(options) or ["A"])
            golds = gold_answers(record.answer)
            return letter, letter in golds, unparsed
        preds = open_predictions(reply)
        return preds, open_correct(record.answer, preds), False

    def parse(self, record: Record, reply: str):
        return self._judge(record, reply)[0]

    def sample_score(self, record: Record, reply: str) -> float:
        return float(self._judge(record, reply)[1])

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``accuracy`` (0-1, micro over all questions), ``unparsed`` (multiple-choice
        replies with no letter found; scored with a seeded random letter as lmms-eval does),
        ``n``."""
        self._check_lengths(records, replies)
        judged = [self._judge(r, a) for r, a in zip(records, replies, strict=True)]
        n = len(judged)
        return {
            "accuracy": sum(ok for _, ok, _ in judged) / n if n else 0.0,
            "unparsed": float(sum(u for _, _, u in judged)),
            "n": float(n),
        }
