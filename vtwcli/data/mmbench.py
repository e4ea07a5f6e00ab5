"""MMBench-EN dev (lmms-eval ``mmbench_en_dev``): circular scoring with lmms-eval's reading rule.

Prompt, letter extraction and the circular evaluation follow lmms-eval's MMBench code
(``lmms_eval/tasks/mmbench/en_utils.py`` and ``mmbench_evals.py``) rule for rule:

- Extraction reads a reply (stripped) in two stages. Letters: the reply is split on whitespace;
  when exactly one of A-E stands alone it is the answer, unless the reply has more than three
  words and one of them is a bare "A" (then "A" may be the article, and the bare-letter stage
  is skipped); otherwise the first of twelve wrapped forms ("X." "X," "X:" "X)" "X)." "(X)"
  "(X)." ":X" ":X," ":X." ":X)" ":X).") that names exactly one of A-E wins. Option text: the
  one option (A-D) whose text, lower-cased, occurs in the lower-cased reply.
- A question counts when every one of its circular copies (same ``index % 1e6``) is right;
  questions are the rows with ``index < 1e6``, and copies of a question whose own row is not
  in the run are not scored (``unscored_copies``). A readable wrong copy decides the question
  at once; unreadable copies go to the judge in index order, and the first wrong one decides.
- Replies the rule cannot read are ``needs_judge``. Offline they are wrong. With a judge
  (:class:`vtwcli.data.judge.ChatJudge`, set as ``task.judge`` or through ``get_task(...,
  judge_url=, judge_model=)``) each is sent with lmms-eval's judge prompt, up to three times,
  and the judge's answer is read with the same rule; when all three fail, lmms-eval draws a
  random letter from A-E with a generator seeded 2680 at the start of scoring, and so does vtw
  (counted as ``unparsed``).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import LETTER_INSTRUCTION, HubTask
from vtwcli.errors import UsageError

CIRCULAR_STRIDE = 1_000_000
OPTION_KEYS = ("A", "B", "C", "D", "E")
READ_LETTERS = "ABCDE"  # the letters the reading rule knows, whatever the row offers
TEXT_KEYS = "ABCD"  # the options the text stage and the judge see
SYS_PROMPT = "There are several options:"
POST_PROMPT = "\n" + LETTER_INSTRUCTION  # lmms-eval's default post_prompt, joined with another "\n"
JUDGE_SEED = 2680
JUDGE_TRIES = 3
FAILED = "Failed to obtain answer via API"
# (prefix, suffix) pairs of the wrapped-letter stage, in the order they are tried
_WRAPPED = (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
            (":", ""), (":", ","), (":", "."), (":", ")"), (":", ")."))
# The judge prompt must reach the judge word for word as lmms-eval sends it (its typos kept), or
# the judge's answers, and so the scores, are not comparable. Text from lmms-eval's MMBench
# evaluator (lmms_eval/tasks/mmbench/mmbench_evals.py, build_prompt), which takes it from MMBench.
JUDGE_TEMPLATE = (
    "You are an AI assistant who will help me to match an answer with several options of a single-choice "
    "question. You are provided with a question, several options, and an answer, and you need to find which "
    "option is most similar to the answer. If the meaning of all options are significantly different from the "
    "answer, output E. Your should output a single uppercase character in A, B, C, D (if they are valid "
    "options), and E. \nExample 1: \nQuestion: What is the main object in image?\nOptions: A. teddy bear "
    "B. rabbit C. cat D. dog\nAnswer: a cute teddy bear\nYour output: A\nExample 2: \nQuestion: What is the "
    "main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\nAnswer: Spider\nYour output: E\n"
    "Example 3: \nQuestion: {}?\nOptions: {}\nAnswer: {}\nYour output: "
)


def _isna(value: Any) -> bool:
    """pandas' notion of a missing cell: None or NaN (the string "nan" is not missing here)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def mmbench_options(meta: dict) -> dict[str, Any]:
    """The options the prompt lists: A-E present, non-empty, not null and not the string "nan"."""
    return {k: meta[k] for k in OPTION_KEYS if k in meta and meta[k] and not _isna(meta[k]) and meta[k] != "nan"}


def mmbench_prompt(question: str, meta: dict) -> str:
    """lmms-eval's ``mmbench_doc_to_text`` with the default post_prompt."""
    lines = "".join(f"{k}. {v}\n" for k, v in mmbench_options(meta).items())
    options = f"{SYS_PROMPT}\n{lines}".rstrip("\n")
    hint = meta.get("hint")
    body = f"{hint} {question} {options}" if not _isna(hint) and hint != "nan" else f"{question} {options}"
    return f"{body}\n{POST_PROMPT}"


def _scored_value(meta: dict, key: str) -> Any:
    # lmms-eval's process_results fills an option column the row lacks with the string "nan"
    return meta.get(key, "nan")


def text_choices(meta: dict) -> dict[str, str]:
    """Options A-D that are not null, as the text stage and the judge see them."""
    return {k: str(_scored_value(meta, k)) for k in TEXT_KEYS if not _isna(_scored_value(meta, k))}


def read_option_letter(answer: str) -> str | None:
    """The letter stage of the rule (see the module docstring), or None."""
    if FAILED in answer:
        return None
    words = answer.split()
    bare = [c for c in READ_LETTERS if c in words]
    if len(bare) == 1 and not ("A" in words and len(words) > 3):
        return bare[0]
    for before, after in _WRAPPED:
        named = [c for c in READ_LETTERS if f"{before}{c}{after}" in words]
        if len(named) == 1:
            return named[0]
    return None


def read_option_text(answer: str, choices: dict[str, str]) -> str | None:
    lowered = answer.lower()
    found = [k for k, text in choices.items() if text.lower() in lowered]
    return found[0] if len(found) == 1 else None


def mmbench_extract(reply: str, choices: dict[str, str]) -> str | None:
    """The letter lmms-eval's rule reads from ``reply`` (letters first, then option text), or None."""
    return read_option_letter(reply) or read_option_text(reply, choices)


def judge_prompt(question: str, meta: dict, prediction: str) -> str:
    """The prompt lmms-eval sends its judge: options A-D up to the first missing one."""
    lines = ""
    for k in TEXT_KEYS:
        if _isna(_scored_value(meta, k)):
            break
        lines += f"{k}. {_scored_value(meta, k)}\n"
    return JUDGE_TEMPLATE.format(question, "There are several options: \n" + lines, prediction)


class MMBenchTask(HubTask):
    required = ("index", "question", "hint", "answer", "A", "B", "image")
    generation = Generation(max_new_tokens=1024, stop=["ASSISTANT:"])
    judge = None  # a ChatJudge; None scores unreadable replies wrong

    @classmethod
    def load(cls, spec, path=None, split=None, limit=None, subset=None, seed: int = 0, judge_url=None,
             judge_model=None, judge_api_key=None, **options):
        if (judge_url is None) != (judge_model is None):
            raise UsageError("the MMBench judge needs both --judge-url and --judge-model")
        task = super().load(spec, path=path, split=split, limit=limit, subset=subset, seed=seed, **options)
        if judge_url is not None:
            from vtwcli.data.judge import ChatJudge

            task.judge = ChatJudge(judge_url, judge_model, api_key=judge_api_key)
        return task

    stratum_column = "category"

    @classmethod
    def selection_keys(cls, table):
        """Stratified by category; a question's circular copies (same index % 1e6) are kept together."""
        keys = super().selection_keys(table)
        keys["groups"] = [int(float(i)) % CIRCULAR_STRIDE for i in table["index"]]
        keys["group_what"] = "circular copies"
        return keys

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        meta["index"] = int(float(row["index"]))
        return Record(id=f"mmbench-{meta['index']}", question=row["question"], answer=str(row["answer"]),
                      images=[images["image"]], meta=meta)

    def prompt(self, record: Record) -> str:
        return mmbench_prompt(record.question, record.meta)

    def parse(self, record: Record, reply: str) -> str | None:
        return mmbench_extract(reply.strip(), text_choices(record.meta))

    def sample_score(self, record: Record, reply: str) -> float:
        return float(self.parse(record, reply) == record.answer)

    def _judged_letter(self, record: Record, reply: str, rng: random.Random, counts: dict) -> str:
        """lmms-eval's judge step for one copy: three tries, then a seeded random letter."""
        counts["judged"] += 1
        prompt = judge_prompt(record.question, record.meta, reply)
        choices = text_choices(record.meta)
        for _ in range(JUDGE_TRIES):
            answer = self.judge.ask(prompt)
            if FAILED in answer:
                continue
            letter = mmbench_extract(answer, choices)
            if letter:
                return letter
        counts["unparsed"] += 1
        return READ_LETTERS[rng.randint(0, len(READ_LETTERS) - 1)]

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``circular_accuracy`` (0-100, questions whose every copy is right),
        ``per_copy_accuracy`` (0-100, each copy by the rule alone), ``questions``, ``copies``,
        ``unscored_copies`` (copies whose question row is not in the run), ``needs_judge``
        (copies the rule cannot read), ``judged`` (copies sent to the judge), ``unparsed``
        (copies left without a letter: offline every ``needs_judge`` copy, scored wrong; with a
        judge, those it could not answer either, given lmms-eval's seeded random letter)."""
        self._check_lengths(records, replies)
        rows = sorted(zip(records, (r.strip() for r in replies), strict=True), key=lambda p: p[0].meta["index"])
        read = [self.parse(rec, reply) for rec, reply in rows]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, (rec, _) in enumerate(rows):
            groups[rec.meta["index"] % CIRCULAR_STRIDE].append(i)
        mains = [rec.meta["index"] for rec, _ in rows if rec.meta["index"] < CIRCULAR_STRIDE]
        counts = {"judged": 0, "unparsed": 0}
        rng = random.Random(JUDGE_SEED)
        hits = 0
        for main in mains:
            hits += self._question_right([rows[i] for i in groups[main]], [read[i] for i in groups[main]], rng, counts)
        scored = {i for main in mains for i in groups[main]}
        needs_judge = sum(letter is None for letter in read)
        n = len(rows)
        return {
            "circular_accuracy": 100.0 * hits / len(mains) if mains else 0.0,
            "per_copy_accuracy": 100.0 * sum(read[i] == rows[i][0].answer for i in range(n)) / n if n else 0.0,
            "questions": float(len(mains)),
            "copies": float(n),
            "unscored_copies": float(n - len(scored)),
            "needs_judge": float(needs_judge),
            "judged": float(counts["judged"]),
            "unparsed": float(needs_judge if self.judge is None else counts["unparsed"]),
        }

    def _question_right(self, copies, letters, rng, counts) -> int:
        for (rec, _), letter in zip(copies, letters, strict=True):
            if letter is not None and letter != rec.answer:
                return 0
        for (rec, reply), letter in zip(copies, letters, strict=True):
            if letter is not None:
                continue
            if self.judge is None:
                return 0
            if self._judged_letter(rec, reply, rng, counts) != rec.answer:
                return 0
        return 1
