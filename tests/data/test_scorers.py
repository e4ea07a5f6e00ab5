"""Scorers against hand-made replies; every expected number is worked out by hand from the rules
in the facts sheet (docs/benchmarks.md), including the harness's traps."""

from __future__ import annotations

import pytest

from vtwcli.data.ai2d import AI2DTask
from vtwcli.data.base import Record, Source
from vtwcli.data.mmbench import MMBenchTask
from vtwcli.data.mme import MMETask, mme_parse
from vtwcli.data.mmmu import MMMUTask, mc_candidates
from vtwcli.data.pope import POPETask
from vtwcli.data.sqa import ScienceQATask
from vtwcli.data.videomme import VideoMMETask, videomme_extract
from vtwcli.errors import UsageError

SRC = Source("test")


def task_of(cls, records, seed=0):
    return cls(records, SRC, seed=seed)


# ---- ScienceQA --------------------------------------------------------------------------------

def test_sqa_accuracy_is_mean():
    recs = [Record(str(i), "q", answer=i % 3, meta={"choices": ["x", "y", "z"]}) for i in range(4)]
    task = task_of(ScienceQATask, recs)
    # targets A B C A; lmms-eval compares the stripped, lower-cased reply with the letter:
    # "A" right, "B. y" wrong (its "X." branch never fires), "A" wrong, "a" right
    assert task.score(recs, ["A", "B. y", "A", "a"]) == {"accuracy": 0.5, "n": 4.0}
    assert task.parse(recs[1], " B ") == "b"


# ---- AI2D -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply,right", [
    ("C", True), ("c", True), ("C. adult", True), ("  C. adult", True), ("C.", True), ("(C)", True),
    ("c)", True), ("adult", False), ("B. adult", False), ("The answer is C", False), ("C adult", False),
])
def test_ai2d_rules(reply, right):
    rec = Record("1", "q", answer=2, meta={"options": ["egg", "larva", "adult", "pupa"]})
    assert task_of(AI2DTask, [rec]).score([rec], [reply])["accuracy"] == (1.0 if right else 0.0)


# ---- MME --------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply,parsed", [
    ("Yes", "yes"), ("yes.", "yes"), ("NO", "no"), ("No.", "no"), ("y", "yes"), ("n", "no"), ("x", "other"),
    ("Yes, there is a cat", "yes"), ("No, there is not", "no"), ("nope", "no"),
    ("There is no cat", "other"),  # only the first 4 characters are read
    ("I think yes", "other"), ("not sure", "no"), ("", "other"),
])
def test_mme_parse(reply, parsed):
    assert mme_parse(reply) == parsed


def _mme(cat, qid, answer):
    return Record(f"{qid}-{answer}", "q", answer=answer, meta={"category": cat, "question_id": qid})


def test_mme_acc_plus_and_sums():
    recs = [
        _mme("existence", "e1", "yes"), _mme("existence", "e1", "no"),   # both right
        _mme("existence", "e2", "yes"), _mme("existence", "e2", "no"),   # one right
        _mme("OCR", "o1", "yes"), _mme("OCR", "o1", "no"),               # both right
        _mme("code_reasoning", "c1", "yes"), _mme("code_reasoning", "c1", "no"),  # none right
    ]
    replies = ["Yes", "No", "Yes", "Yes", "yes", "no", "No", "Yes"]
    scores = task_of(MMETask, recs).score(recs, replies)
    # existence: acc 3/4 = 75, acc+ 1/2 = 50 -> 125; OCR 100 + 100; code 0
    assert scores["subtask/existence"] == 125.0
    assert scores["subtask/OCR"] == 200.0
    assert scores["subtask/code_reasoning"] == 0.0
    assert scores["perception"] == 325.0 and scores["cognition"] == 0.0 and scores["total"] == 325.0
    assert scores["incomplete_pairs"] == 0.0 and scores["scored_pairs"] == 4.0


def test_mme_incomplete_pair_scores_complete_pairs_and_reports():
    recs = [_mme("existence", "e1", "yes"), _mme("existence", "e1", "no"), _mme("existence", "e2", "yes")]
    scores = task_of(MMETask, recs).score(recs, ["Yes", "Yes", "Yes"])
    # only e1 is scored: acc 50, acc+ 0; e2 is reported, not counted
    assert scores["subtask/existence"] == 50.0
    assert scores["incomplete_pairs"] == 1.0 and scores["scored_pairs"] == 1.0


def test_mme_same_question_id_in_two_subtasks_is_two_images():
    recs = [_mme("count", "0001.png", "yes"), _mme("count", "0001.png", "no"),
            _mme("color", "0001.png", "yes"), _mme("color", "0001.png", "no")]
    scores = task_of(MMETask, recs).score(recs, ["yes", "no", "no", "no"])
    assert scores["subtask/count"] == 200.0 and scores["subtask/color"] == 50.0
    assert scores["incomplete_pairs"] == 0.0


# ---- POPE -------------------------------------------------------------------------------------

def test_pope_yes_with_period_is_neither():
    recs = [Record(str(i), "q", answer=a) for i, a in enumerate(["yes", "yes", "no", "no", "yes", "no"])]
    replies = ["Yes.", "yes", "YES", "no", "No", "maybe"]
    s = task_of(POPETask, recs).score(recs, replies)
    # preds: other, yes, yes, no, no, other -> right: 2nd and 4th
    assert s["accuracy"] == pytest.approx(2 / 6)
    # TP=1 (reply 2), FP=1 (reply 3), FN=1 (reply 5); "Yes." (reply 1) is not a false negative: it is neither
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert s["gt_yes_ratio"] == 0.5
    assert s["pred_yes_ratio"] == pytest.approx(2 / 6)
    assert s["neither_yes_nor_no"] == 2.0
    assert task_of(POPETask, recs).sample_score(recs[0], "Yes.") == 0.0


def test_pope_no_yes_predictions_gives_zero_not_error():
    recs = [Record("1", "q", answer="yes"), Record("2", "q", answer="no")]
    s = task_of(POPETask, recs).score(recs, ["no", "no"])
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0 and s["accuracy"] == 0.5


def test_scorer_rejects_length_mismatch():
    recs = [Record("1", "q", answer="yes")]
    with pytest.raises(UsageError, match="1 records but 2 replies"):
        task_of(POPETask, recs).score(recs, ["yes", "no"])


# ---- MMBench ----------------------------------------------------------------------------------

def _mmb(index, answer, opts):
    return Record(f"m{index}", "q", answer=answer, meta={"index": index, **opts, "hint": None})


OPTS = {"A": "blue", "B": "green", "C": "red", "D": None}


@pytest.mark.parametrize("reply,letter", [
    ("A", "A"), ("A.", "A"), ("(A)", "A"), ("A: blue", "A"), ("The answer is A,", "A"),
    ("green", "B"), ("It is Green.", "B"),
    ("A or B", None),             # two letters and no unique text
    ("blue or red", None),        # two texts
    ("D", "D"),                   # lmms-eval's rule reads A-E whether offered or not
    ("I cannot tell", None),
    ("A. green", "A"),            # a unique letter is taken before any option text
])
def test_mmbench_extraction(reply, letter):
    rec = _mmb(0, "A", OPTS)
    assert task_of(MMBenchTask, [rec]).parse(rec, reply) == letter


def test_mmbench_circular_all_copies_must_be_right():
    recs = [
        _mmb(5, "A", OPTS), _mmb(1_000_005, "C", {"A": "green", "B": "red", "C": "blue", "D": None}),
        _mmb(7, "B", OPTS), _mmb(1_000_007, "A", {"A": "green", "B": "red", "C": "blue", "D": None}),
    ]
    replies = ["A", "C", "B", "B"]  # question 5: both right; question 7: second copy wrong
    s = task_of(MMBenchTask, recs).score(recs, replies)
    assert s["circular_accuracy"] == 50.0 and s["per_copy_accuracy"] == 75.0
    assert s["questions"] == 2.0 and s["copies"] == 4.0 and s["unparsed"] == 0.0


def test_mmbench_failed_extraction_gets_no_credit():
    recs = [_mmb(1, "A", OPTS)]
    s = task_of(MMBenchTask, recs).score(recs, ["hmm"])
    assert s["circular_accuracy"] == 0.0 and s["unparsed"] == 1.0


# ---- MMMU -------------------------------------------------------------------------------------

def _mc(answer, options, rid="validation_Art_1"):
    return Record(rid, "q", answer=answer, meta={"question_type": "multiple-choice", "options": options})


MC4 = ["cat", "dog", "bird", "fish"]


@pytest.mark.parametrize("reply,letter", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("The answer is B.", "B"),
    ("(A) is wrong, (C) is right", "C"),          # bracket candidates: the last one wins
    ("A or maybe C", "C"),                          # "X " candidates: the last one wins
    ("It is not A but D", "D"),
    ("The picture clearly shows a small dog here", "B"),   # > 5 words: option text
    ("a dog", None),                                # <= 5 words and no letter: unparsed
])
def test_mmmu_multiple_choice_parsing(reply, letter):
    options = dict(zip("ABCD", MC4, strict=True))
    assert mc_candidates(reply, options)[0] == letter


def test_mmmu_last_candidate_wins_and_unparsed_is_seeded_and_counted():
    recs = [_mc("C", MC4, "r1"), _mc("B", MC4, "r2"), _mc("A", MC4, "r3")]
    task = task_of(MMMUTask, recs, seed=3)
    s = task.score(recs, ["(A) no, (C) yes", "I choose (B)", "??"])
    expected_random = task.parse(recs[2], "??")
    assert expected_random in "ABCD"
    assert task.parse(recs[2], "??") == expected_random  # same seed, same fallback
    assert s["unparsed"] == 1.0
    assert s["accuracy"] == pytest.approx((2 + (expected_random == "A")) / 3)


def _open(answer, rid="validation_Math_1"):
    return Record(rid, "q", answer=answer, meta={"question_type": "open", "options": []})


@pytest.mark.parametrize("gold,reply,right", [
    ("12.5", "12.5", True),
    ("12.5", "The area is 12.50 square units", True),   # number after "is", normalised to 2 decimals
    ("12.5", "so the answer is 12.499", True),           # 12.499 rounds to 12.5
    ("12.5", "12.6", False),
    ("1,000", "it is 1000", True),                       # gold with comma is the number 1000
    ("3", "There are 13 apples", False),                 # 13 is not 3
    ("3", "3 apples", True),
    ("Paris", "The capital is paris.", True),            # substring, case folded
    ("Paris", "London", False),
    ("['24', '24.0']", "the result is 24", False),       # a stored "[...]" string is one text gold
])
def test_mmmu_open_matching(gold, reply, right):
    rec = _open(gold)
    assert task_of(MMMUTask, [rec]).sample_score(rec, reply) == float(right)


def test_mmmu_micro_accuracy():
    recs = [_mc("A", MC4, "a"), _open("7", "b"), _mc("D", MC4, "c"), _open("x y", "d")]
    s = task_of(MMMUTask, recs).score(recs, ["A", "it is 7", "(D)", "no idea"])
    assert s == {"accuracy": 0.75, "unparsed": 0.0, "n": 4.0}


# ---- Video-MME --------------------------------------------------------------------------------

@pytest.mark.parametrize("reply,letter", [
    ("C", "C"), ("C. 3.", "C"), ("The best answer is B", "B"), ("The answer is (D)", "D"),
    ("Best option: A", "B"),  # lmms-eval's prefix list joins "Best answer:Best option:": "B" of "Best"
    ("none of them", ""), ("", ""),
])
def test_videomme_extract(reply, letter):
    assert videomme_extract(reply) == letter


def test_videomme_accuracy_percent_and_by_duration():
    recs = [Record(str(i), "q", answer="C", meta={"duration": d}) for i, d in enumerate(["short", "short", "long"])]
    s = task_of(VideoMMETask, recs).score(recs, ["C", "The best answer is A", "C."])
    assert s["accuracy"] == pytest.approx(200 / 3)
    assert s["accuracy/short"] == 50.0 and s["accuracy/long"] == 100.0
