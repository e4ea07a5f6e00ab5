"""Parity with lmms-eval, task by task: prompts, answer extraction, aggregation.

Every expected value here was worked out by hand from lmms-eval's rules (the derivation is in
the comment next to it), never by running vtw. Prompt strings are written out literally as
lmms-eval's ``doc_to_text`` with the task's default settings builds them for the row shown.
"""

from __future__ import annotations

import math
import random

import pytest
from fake_openai import FakeChatServer, FakeFailure

from vtwcli.data.ai2d import AI2DTask
from vtwcli.data.base import Source
from vtwcli.data.judge import ChatJudge
from vtwcli.data.mmbench import MMBenchTask
from vtwcli.data.mme import MMETask
from vtwcli.data.mmmu import MMMUTask
from vtwcli.data.pope import POPETask
from vtwcli.data.sqa import ScienceQATask
from vtwcli.data.videomme import VideoMMETask
from vtwcli.errors import JudgeError, UsageError

SRC = Source("test")
LETTER = "Answer with the option's letter from the given choices directly."
WORD = "Answer the question using a single word or phrase."


def make(cls, rows, seed=0):
    """Records built the way loading builds them (make_record on hub-schema rows), no images."""
    records = [cls.make_record(row, i, {"image": None, **{f"image_{k}": None for k in range(1, 8)}})
               for i, row in enumerate(rows)]
    return cls(records, SRC, seed=seed), records


# ==== ScienceQA-IMG =============================================================================

SQA_ROWS = [
    {"question": "Which animal is shown?", "choices": ["cat", "dog"], "answer": 1,
     "hint": "The picture was taken outdoors.", "image": None},
    {"question": "Which is a mammal?", "choices": ["frog", "whale", "trout"], "answer": 1, "hint": "",
     "image": None},
]


def test_sqa_prompts_are_lmms_eval_strings():
    # sqa_doc_to_text, format "default": f"{pre}{context}{question}\n{choices}{post}", with
    # context "Context: {hint}\n" only for a non-empty hint and post "\nAnswer with ...".
    task, recs = make(ScienceQATask, SQA_ROWS)
    assert task.prompt(recs[0]) == (
        "Context: The picture was taken outdoors.\nWhich animal is shown?\nA. cat\nB. dog\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(recs[1]) == (
        "Which is a mammal?\nA. frog\nB. whale\nC. trout\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_sqa_null_hint_is_formatted_as_lmms_eval_does():
    # sqa_doc_to_text only rewrites a truthy hint; a null one goes into the f-string as is
    task, recs = make(ScienceQATask, [dict(SQA_ROWS[1], hint=None)])
    assert task.prompt(recs[0]) == (
        "NoneWhich is a mammal?\nA. frog\nB. whale\nC. trout\n"
        "Answer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize("reply,right", [
    # sqa_process_results: target "B".strip().lower() == "b"; pred = reply.strip().lower().
    ("B", True),              # "b" == "b"
    ("b", True),              # lower-cased: "b"
    ("  B \n", True),         # stripped: "b"
    ("B.", False),            # "b." != "b"; the "X." branch tests pred[0].isupper() on the
    ("B. whale", False),      # lower-cased pred, so it never fires (a known upstream bug)
    ("(B)", False),           # "(b)" != "b"
    ("The answer is B", False),
    ("A", False),
    ("", False),
])
def test_sqa_tricky_replies(reply, right):
    task, recs = make(ScienceQATask, SQA_ROWS[1:])
    assert task.score(recs, [reply]) == {"accuracy": 1.0 if right else 0.0, "n": 1.0}
    assert task.sample_score(recs[0], reply) == float(right)


# ==== MME =======================================================================================

def test_mme_prompt_is_lmms_eval_string():
    # mme_doc_to_text: question.strip(); with a non-empty post_prompt the built-in
    # " Please answer yes or no." is removed and post "\nAnswer the question ..." appended.
    row = {"question_id": "code_0001.png", "question": " Is the output 3? Please answer yes or no. ",
           "answer": "Yes", "category": "code_reasoning", "image": None}
    task, recs = make(MMETask, [row])
    assert task.prompt(recs[0]) == "Is the output 3?\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize("reply,parsed", [
    # parse_pred_ans: lower, strip, drop "."; "yes"/"no" exact; one character y/n; else only
    # the first four characters are searched, "yes" before "no".
    ("Yes.", "yes"), ("NO", "no"), ("Y", "yes"), ("n.", "no"), ("x", "other"),
    ("No, there is none.", "no"),      # "no, " holds "no"
    ("Not sure", "no"),                # "not " holds "no": a hedge counts as no
    ("Eyes are open", "yes"),          # "eyes" holds "yes"
    ("I do not know", "other"),        # "i do" holds neither
    ("The answer is yes", "other"),    # "the " holds neither
    ("  nope", "no"),                  # stripped: "nope" -> "nope" holds "no"
])
def test_mme_tricky_replies(reply, parsed):
    task, recs = make(MMETask, [{"question_id": "a.png", "question": "q", "answer": "Yes",
                                 "category": "existence", "image": None}])
    assert task.parse(recs[0], reply) == parsed


def test_mme_aggregation_is_acc_plus_acc_plus_per_subtask():
    # two images in "count": image 1 both right (acc 100, acc+ 100), image 2 one right (50, 0)
    # -> acc = 3/4*100 = 75, acc+ = 1/2*100 = 50, subtask 125; one cognition image with both
    # wrong -> 0. perception = 125, cognition = 0.
    rows = [
        {"question_id": "1.png", "question": "q", "answer": "Yes", "category": "count", "image": None},
        {"question_id": "1.png", "question": "q", "answer": "No", "category": "count", "image": None},
        {"question_id": "2.png", "question": "q", "answer": "Yes", "category": "count", "image": None},
        {"question_id": "2.png", "question": "q", "answer": "No", "category": "count", "image": None},
        {"question_id": "3.png", "question": "q", "answer": "Yes", "category": "code_reasoning", "image": None},
        {"question_id": "3.png", "question": "q", "answer": "No", "category": "code_reasoning", "image": None},
    ]
    task, recs = make(MMETask, rows)
    s = task.score(recs, ["Yes.", "no", "yes", "Yes", "No", "Yes"])
    assert s["subtask/count"] == 125.0 and s["subtask/code_reasoning"] == 0.0
    assert s["perception"] == 125.0 and s["cognition"] == 0.0 and s["total"] == 125.0


# ==== POPE ======================================================================================

def test_pope_prompt_is_lmms_eval_string():
    # pope_doc_to_text: f"{question.strip()}\nAnswer the question using a single word or phrase."
    row = {"question_id": "7", "question": " Is there a dog in the image? ", "answer": "no", "image": None,
           "category": "adversarial"}
    task, recs = make(POPETask, [row])
    assert task.prompt(recs[0]) == "Is there a dog in the image?\nAnswer the question using a single word or phrase."


def test_pope_tricky_replies_and_metrics():
    # pred = reply.lower().strip(); only exact "yes"/"no" count.
    # gold:  yes    yes     no     no      yes   no
    # reply: " YES" "Yes."  "no"   "yes"   "no"  "No, it is not."
    # pred:  yes    yes.    no     yes     no    no, it is not.
    # right: 1      0       1      0       0     0    -> accuracy 2/6
    # TP = 1 (row 1), FP = 1 (row 4), FN = 1 (row 5: gold yes, pred exactly "no")
    # precision 1/2, recall 1/2, F1 1/2; gold yes ratio 3/6.
    golds = ["yes", "yes", "no", "no", "yes", "no"]
    rows = [{"question_id": str(i), "question": "q", "answer": g, "image": None, "category": "random"}
            for i, g in enumerate(golds)]
    task, recs = make(POPETask, rows)
    s = task.score(recs, [" YES", "Yes.", "no", "yes", "no", "No, it is not."])
    assert s["accuracy"] == pytest.approx(2 / 6)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert s["gt_yes_ratio"] == 0.5 and s["neither_yes_nor_no"] == 2.0


# ==== AI2D ======================================================================================

AI2D_ROW = {"question": "Which stage comes after the larva?", "options": ["egg", "larva", "pupa", "adult"],
            "answer": "2", "image": None}


def test_ai2d_prompt_is_lmms_eval_string():
    # ai2d_doc_to_text, prompt_format "mcq": f"{pre}{question}\n{choices}{post}", post "\nAnswer ...".
    task, recs = make(AI2DTask, [AI2D_ROW])
    assert task.prompt(recs[0]) == (
        "Which stage comes after the larva?\nA. egg\nB. larva\nC. pupa\nD. adult\n"
        "Answer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize("reply,right", [
    # target "C". Filter: a reply matching ^\s*([A-Z])\. becomes that letter, else stays whole.
    # exact_match(ignore_case, ignore_punctuation): lower both, delete string.punctuation, compare.
    ("C", True),              # "c" == "c"
    ("c", True),              # lower-cased
    ("C. pupa", True),        # filter -> "C"
    ("  C. pupa", True),      # the regex allows leading space -> "C"
    ("C.pupa", True),         # filter -> "C"
    ("(C)", True),            # no filter match; "(c)" minus punctuation -> "c"
    ("C)", True),             # "c)" -> "c"
    ("**C**", True),          # "*" is punctuation -> "c"
    ("- C", False),           # no filter match; "- c" minus punctuation -> " c" (the space stays)
    ("C: pupa", False),       # "c: pupa" -> "c pupa"
    ("c. pupa", False),       # the filter wants an upper-case letter; "c pupa" != "c"
    ("The answer is C", False),
    ("pupa", False),          # the option text is not the letter
    ("B. pupa", False),       # filter -> "B"
])
def test_ai2d_tricky_replies(reply, right):
    task, recs = make(AI2DTask, [AI2D_ROW])
    assert task.score(recs, [reply]) == {"accuracy": 1.0 if right else 0.0, "n": 1.0}


# ==== MMBench ===================================================================================

def mmb_row(index, question, answer, hint=None, **options):
    row = {"index": index, "question": question, "hint": hint, "answer": answer,
           "A": None, "B": None, "C": None, "D": None, "category": "c", "L2-category": "l2", "source": "s",
           "split": "dev", "comment": None, "image": None}
    row.update(options)
    return row


def test_mmbench_prompts_are_lmms_eval_strings():
    # mmbench_doc_to_text: options "There are several options:\n" + "X. text\n" for each A-E
    # that is truthy, not NaN and not "nan", right-stripped of "\n"; query
    # f"{hint} {question} {options}" when hint is not NaN and not "nan" (an empty hint stays,
    # leaving a leading space), then f"{query}\n{post_prompt}" with the default post_prompt
    # "\nAnswer with the option's letter from the given choices directly." -> a blank line.
    rows = [
        mmb_row(0, "What colour is the sky?", "A", hint="The sky at noon.", A="blue", B="green", C="red"),
        mmb_row(1, "How many legs?", "B", A="six", B="eight", C="", D="nan"),
        mmb_row(2, "How many?", "A", hint="", A="1", B="2"),
        mmb_row(3, "Pick one.", "E", hint=float("nan"), A="one", B="two", C="three", D="four", E="five"),
    ]
    task, recs = make(MMBenchTask, rows)
    assert task.prompt(recs[0]) == (
        "The sky at noon. What colour is the sky? There are several options:\nA. blue\nB. green\nC. red\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(recs[1]) == (
        "How many legs? There are several options:\nA. six\nB. eight\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(recs[2]) == (
        " How many? There are several options:\nA. 1\nB. 2\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(recs[3]) == (
        "Pick one. There are several options:\nA. one\nB. two\nC. three\nD. four\nE. five\n\n"
        "Answer with the option's letter from the given choices directly."
    )


SKY = {"A": "blue", "B": "green", "C": "red"}


@pytest.mark.parametrize("reply,letter", [
    # can_infer_option: words = reply.split(); letters A-E standing alone: exactly one -> it,
    # unless a bare "A" is among more than three words; else the first wrapped form
    # ("X." "X," "X:" "X)" "X)." "(X)" "(X)." ":X" ":X," ":X." ":X)" ":X).") naming exactly
    # one letter. can_infer_text: the one option A-D whose lower-cased text is in the
    # lower-cased reply. Options here: A blue, B green, C red (D missing).
    ("A", "A"),                         # one bare letter
    ("B\n", "B"),                       # stripped first
    ("- B", "B"),                       # "-" and "B": one bare letter
    ("A. blue", "A"),                   # wrapped "A."
    ("(B)", "B"),                       # wrapped "(B)"
    ("I think it's (C).", "C"),         # wrapped "(C)."
    ("C:", "C"),                        # wrapped "C:"
    ("Answer: C", "C"),                 # "Answer:" and "C": one bare letter
    ("The answer is B.", "B"),          # wrapped "B."
    ("A red car.", "A"),                # 3 words, bare "A" read as the letter
    ("A bright red apple", "C"),        # 4 words with a bare "A": article; text "red" -> C
    ("A cat is sitting on a mat", None),  # article skipped, no option text: needs the judge
    ("A, B", "B"),                      # "A," is not bare; "B" is the one bare letter
    ("A or B", None),                   # two bare letters, no wrapped form, no option text
    ("blue or red", None),              # two option texts
    ("It is green.", "B"),              # option text
    ("The sky is blue because of Rayleigh scattering, so the answer is A.", "A"),  # "A." near the end
    ("**B**", None),                    # not a word of its own, no option text
    ("E", "E"),                         # the rule knows A-E whatever the row offers
    ("D", "D"),
    ("(a)", None),                      # lower case is not a letter
    ("Failed to obtain answer via API", None),
])
def test_mmbench_reading_rule(reply, letter):
    task, recs = make(MMBenchTask, [mmb_row(0, "What colour is the sky?", "A", **SKY)])
    assert task.parse(recs[0], reply) == letter


def test_mmbench_option_column_missing_from_the_row_is_the_string_nan():
    # process_results fills a missing option column with "nan"; build_choices keeps it (not NaN),
    # so the text stage matches "nan" in "banana", and the judge prompt lists "C. nan", "D. nan".
    row = mmb_row(0, "Fruit?", "C", A="apple", B="pear")
    del row["C"], row["D"]
    task, recs = make(MMBenchTask, [row])
    assert task.prompt(recs[0]) == (
        "Fruit? There are several options:\nA. apple\nB. pear\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.parse(recs[0], "a ripe banana") is None  # "nan" is both C's and D's text: two matches
    from vtwcli.data.mmbench import judge_prompt

    assert judge_prompt("Fruit?", recs[0].meta, "x").endswith(
        "Options: There are several options: \nA. apple\nB. pear\nC. nan\nD. nan\n\nAnswer: x\nYour output: ")


def test_mmbench_offline_circular_needs_judge_and_unscored_copies():
    # Sorted by index: questions are the rows with index < 1e6 (0, 1, 2).
    # q0: "A" (right) and copy "C" (right)                          -> right
    # q1: "hmm" (unreadable) and copy "B" (right)                   -> offline wrong
    # q2: "B" (wrong, gold A)                                       -> wrong
    # copy 1_000_005 has no question row in the run                 -> unscored
    # circular 1/3; per copy: rows right by the rule: q0 main, q0 copy, q1 copy = 3 of 6.
    # needs_judge: "hmm" and the unscored copy's "who knows" = 2.
    rows = [
        mmb_row(0, "What colour is the sky?", "A", **SKY),
        mmb_row(1_000_000, "What colour is the sky?", "C", A="green", B="red", C="blue"),
        mmb_row(1, "Legs?", "A", A="six", B="eight"),
        mmb_row(1_000_001, "Legs?", "B", A="eight", B="six"),
        mmb_row(2, "Pick.", "A", A="x", B="y"),
        mmb_row(1_000_005, "Orphan?", "A", A="x", B="y"),
    ]
    task, recs = make(MMBenchTask, rows)
    s = task.score(recs, ["A", "C", "hmm", "B", "B", "who knows"])
    assert s == {"circular_accuracy": pytest.approx(100 / 3), "per_copy_accuracy": 50.0, "questions": 3.0,
                 "copies": 6.0, "unscored_copies": 1.0, "needs_judge": 2.0, "judged": 0.0, "unparsed": 2.0}


# lmms-eval's judge prompt written out in its own pieces (MMBench_Evaluator.build_prompt).
JUDGE_HEAD = (
    "You are an AI assistant who will help me to match an answer "
    "with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, "
    "and you need to find which option is most similar to the answer. "
    "If the meaning of all options are significantly different "
    "from the answer, output E. "
    "Your should output a single uppercase character in A, B, C, D "
    "(if they are valid options), and E. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear "
    "B. rabbit C. cat D. dog\nAnswer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear "
    "B. rabbit C. cat D. dog\nAnswer: Spider\nYour output: E\n"
    "Example 3: \n"
)


def test_mmbench_judge_gets_lmms_eval_prompt_and_follows_its_steps():
    # q0: main "A" right; copy unreadable -> judge answers "C" -> right -> question right.
    # q1: main unreadable -> judge says "no idea" three times -> lmms-eval's fallback: a random
    #     letter from "ABCDE" by random.seed(2680) then randint(0, 4) (first draw).
    # q2: main read "B", gold A: decided wrong at once; its unreadable copy is never judged.
    # q3: main unreadable, judge answers "A bright red apple" -> read as C (text), gold C -> right.
    first_draw = "ABCDE"[random.Random(2680).randint(0, 4)]
    rows = [
        mmb_row(0, "What colour is the sky?", "A", **SKY),
        mmb_row(1_000_000, "What colour is the sky?", "C", A="green", B="red", C="blue"),
        mmb_row(1, "Legs?", "B", A="six", B="eight"),
        mmb_row(2, "Pick.", "A", A="x", B="y"),
        mmb_row(1_000_002, "Pick.", "B", A="y", B="x"),
        mmb_row(3, "Colour?", "C", **SKY),
    ]
    replies = ["A", "azure, like the sea", "hmm", "B", "not sure", "it is the colour of blood"]

    def answer(prompt):
        if "Answer: azure" in prompt:
            return "C"
        if "Answer: it is the colour" in prompt:
            return "A bright red apple"
        return "no idea"

    with FakeChatServer(answer) as server:
        task, recs = make(MMBenchTask, rows)
        task.judge = ChatJudge(server.url, "judge-model", retry_sleep_s=0)
        s = task.score(recs, replies)
        prompts = server.prompts()
        bodies = [r["body"] for r in server.requests]
    # "What colour is the sky?" + "?" -> "??"; options A-D up to the first missing one, after
    # "There are several options: \n", each "X. text\n"; then "\nAnswer: ..." and "Your output: ".
    assert prompts[0] == JUDGE_HEAD + (
        "Question: What colour is the sky??\nOptions: There are several options: \nA. green\nB. red\nC. blue\n\n"
        "Answer: azure, like the sea\nYour output: "
    )
    assert prompts[1:4] == [JUDGE_HEAD + "Question: Legs??\nOptions: There are several options: \nA. six\n"
                            "B. eight\n\nAnswer: hmm\nYour output: "] * 3
    assert len(prompts) == 5 and "Answer: not sure" not in "".join(prompts)
    assert all(b["model"] == "judge-model" and b["temperature"] == 0 and b["max_tokens"] == 256 for b in bodies)
    q1_right = first_draw == "B"
    assert s["circular_accuracy"] == pytest.approx(100 * (2 + q1_right) / 4)
    assert s["needs_judge"] == 4.0 and s["judged"] == 3.0 and s["unparsed"] == 1.0


def test_mmbench_judge_retries_failed_requests_like_lmms_eval():
    # get_chat_response tries up to five times; a server error counts as one failed attempt.
    calls = {"n": 0}

    def answer(prompt):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise FakeFailure(500)
        return "A"

    with FakeChatServer(answer) as server:
        judge = ChatJudge(server.url + "/chat/completions", "m", retry_sleep_s=0)  # full URL accepted
        assert judge.ask("first") == "A"  # the first request fails twice, then succeeds
        assert judge.calls == 1 and len(server.requests) == 3


def test_mmbench_judge_unreachable_stops_with_one_clear_error():
    with FakeChatServer(lambda p: "A") as server:
        url = server.url
    # the server is stopped: nothing listens on that port any more
    rows = [mmb_row(0, "Sky?", "A", **SKY)]
    task, recs = make(MMBenchTask, rows)
    task.judge = ChatJudge(url, "m", retry_sleep_s=0, timeout_s=2)
    with pytest.raises(JudgeError, match="did not answer"):
        task.score(recs, ["unreadable reply"])


def test_mmbench_judge_options_need_both(tmp_path):
    import builders as b

    from vtwcli.data import get_task

    path = b.save_dict(b.mmbench_rows(), tmp_path / "m", "dev")
    with pytest.raises(UsageError, match="both --judge-url and --judge-model"):
        get_task("mmbench", path=path, judge_url="http://127.0.0.1:9/v1")
    task = get_task("mmbench", path=path, judge_url="http://127.0.0.1:9/v1", judge_model="m")
    assert isinstance(task.judge, ChatJudge) and task.judge.model == "m"
    with pytest.raises(UsageError):
        get_task("ai2d", path=b.save_dict(b.ai2d_rows(1), tmp_path / "a", "test"), judge_url="x", judge_model="m")


# ==== MMMU ======================================================================================

def mmmu_row(rid, question, answer, options="[]", qtype="multiple-choice"):
    return {"id": rid, "question": question, "options": options, "answer": answer, "question_type": qtype,
            "image_1": None, "subfield": "s", "explanation": "", "img_type": "[]", "topic_difficulty": "Easy"}


def test_mmmu_prompts_are_lmms_eval_strings():
    # construct_prompt: multiple choice f"{question}\n{A. x\nB. y}\n\n{mc_prompt}", open
    # f"{question}\n\n{open_ended_prompt}"; "<image k>" stays in the text (not interleaved).
    task, recs = make(MMMUTask, [
        mmmu_row("validation_Art_1", "<image 1> Which style is this?", "B", "['Baroque', 'Gothic', 'Rococo']"),
        mmmu_row("validation_Math_2", "<image 1> What is x?", "4", qtype="open"),
    ])
    assert task.prompt(recs[0]) == (
        "<image 1> Which style is this?\nA. Baroque\nB. Gothic\nC. Rococo\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(recs[1]) == "<image 1> What is x?\n\nAnswer the question using a single word or phrase."


MC = "['cat', 'dog', 'bird', 'fish']"


@pytest.mark.parametrize("reply,letter", [
    # parse_multi_choice_response on the stripped reply: strip , . ! ? ; : ' from the ends, pad
    # with spaces; "(X)" first, then "X ", then "X.", then (> 5 words) option text; last wins.
    ("B\n", "B"),                            # stripped -> " B " holds "B "
    ("C.", "C"),                             # "." stripped -> " C "
    ("The answer is B.", "B"),               # " The answer is B " holds "B " (no other capital A-D)
    ("A dog.", "A"),                         # " A dog " holds "A ": the article is read as A
    ("(A) is wrong, (C) is right", "C"),     # brackets A and C; rfind("(C)") is later
    ("I think the answer is a dog", "B"),    # 7 words, no letter form; text "dog" -> B
])
def test_mmmu_multiple_choice_tricky_replies(reply, letter):
    task, recs = make(MMMUTask, [mmmu_row("validation_Art_1", "q", letter, MC)])
    assert task.parse(recs[0], reply) == letter
    assert task.score(recs, [reply]) == {"accuracy": 1.0, "unparsed": 0.0, "n": 1.0}


@pytest.mark.parametrize("reply", [
    "Dog",       # " Dog " holds no "(X)", "X ", "X." for A-D ("D" is followed by "o"); 1 word
    "C)",        # " C) ": "C" is followed by ")"; 1 word
    "**D**",     # "*" is not stripped; 1 word
])
def test_mmmu_multiple_choice_unreadable_is_random_and_counted(reply):
    task, recs = make(MMMUTask, [mmmu_row("validation_Art_1", "q", "B", MC)])
    assert task.score(recs, [reply])["unparsed"] == 1.0


@pytest.mark.parametrize("gold,reply,right", [
    # parse_open_response: lower, strip ".", split on newlines; per part the shortest tail after
    # "could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result " (and "="
    # in the last part); numbers from those tails; every candidate normalised (numbers to 2
    # decimals; strings lower-cased). eval_open: a float gold must equal a float candidate; a
    # string gold must be a substring of a string candidate.
    ("12.5", "The area is 12.50 square units", True),   # tail "12.50 square units" -> 12.5
    ("12.5", "The area is 12.5cm", True),     # "12.5" matches \d+\.\d+ (c is not e/E+digits)
    ("5", "The length is 5cm", False),        # "5" needs \b after it: no number; "5cm" != 5.0
    ("5", "The length is 5 cm", True),        # "5" -> 5.0
    ("3", "There are 13 apples", False),      # no indicator; numbers [13] -> 13.0 != 3.0
    ("1,000", "it is 1000", True),            # gold "1,000" -> 1000.0
    ("Paris", "The capital is paris.", True),  # "paris" in "paris"
    ("x", "The answer is x", True),           # one letter -> " x" / "x " on both sides
    ("['24', '24.0']", "the result is 24", False),  # the stored string is one text gold, not a list
    ("7", "x = 7\nso that is it", False),     # part 1 "x = 7": "=" only in the last part; part 2
                                              # tail "it"; no 7 among the candidates
])
def test_mmmu_open_tricky_replies(gold, reply, right):
    task, recs = make(MMMUTask, [mmmu_row("validation_Math_1", "q", gold, qtype="open")])
    assert task.sample_score(recs[0], reply) == float(right)


def test_mmmu_reply_with_trailing_newline_is_read_not_randomised():
    # score() strips like lmms-eval's model wrappers: "B\n" is B, every time, whatever the seed
    for seed in range(5):
        task, recs = make(MMMUTask, [mmmu_row("validation_Art_1", "q", "B", MC)], seed=seed)
        assert task.score(recs, ["B\n"])["accuracy"] == 1.0


# ==== Video-MME =================================================================================

VMME_ROW = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
            "url": "u", "videoID": "vid0", "question_id": "001-1", "task_type": "Counting Problem",
            "question": "How many planets are shown?", "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."],
            "answer": "C"}


def test_videomme_prompt_is_lmms_eval_string():
    # videomme_doc_to_text: option_prompt + "\n" + question + "\n" + "\n".join(options) + "\n"
    # + post_prompt, default post_prompt "\nAnswer with the option's letter ..." -> a blank line.
    task, recs = make(VideoMMETask, [VMME_ROW])
    assert task.prompt(recs[0]) == (
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many planets are shown?\nA. 1.\nB. 2.\nC. 3.\nD. 4.\n\n"
        "Answer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize("reply,letter", [
    # extract_characters_regex: strip; remove "The best answer is", "The correct answer is",
    # "The answer is", "The answer", "The best option isThe correct option is", "Best answer:Best
    # option:" (two commas are missing in lmms-eval's list); first upper-case A-D.
    ("C", "C"),
    ("(B)", "B"),
    ("The best answer is B", "B"),            # prefix removed -> " B"
    ("The answer (A)", "A"),                  # "The answer" removed -> " (A)"
    ("Best option: C", "B"),                  # no prefix removed; "B" of "Best" comes first
    ("The correct option is D", "D"),         # not removed; T is not A-D, so D
    ("Answer: B", "A"),                       # "A" of "Answer" comes first
    ("c", ""),                                # lower case is no letter
    ("none of them", ""),
])
def test_videomme_tricky_replies(reply, letter):
    task, recs = make(VideoMMETask, [VMME_ROW])
    assert task.parse(recs[0], reply) == letter


def test_videomme_accuracy_and_per_duration():
    # overall 100 * correct / answered; per duration the same over that duration's questions.
    # short: "C" right, "Best option: C" -> B wrong; medium: "(C)" right; long: "Answer: C" -> A wrong.
    rows = [dict(VMME_ROW, question_id=f"q{i}", duration=d) for i, d in enumerate(["short", "short", "medium", "long"])]
    task, recs = make(VideoMMETask, rows)
    s = task.score(recs, ["C", "Best option: C", "(C)", "Answer: C"])
    assert s == {"accuracy": 50.0, "accuracy/long": 0.0, "accuracy/medium": 100.0, "accuracy/short": 50.0, "n": 4.0}
    assert not math.isnan(s["accuracy"])


# ==== the judge through `vtw bench` =============================================================

def test_vtw_bench_mmbench_sends_unreadable_replies_to_the_judge(tmp_path):
    import json

    import builders as b
    from typer.testing import CliRunner

    from vtwcli.cli import app

    # Two questions without circular copies (so every unreadable reply reaches the judge), both
    # answered B; the judge always says "B". The bundled testbed replies with colour and count
    # words, which the rule cannot read for these options.
    rows = [b._mmb(i, "How many legs has a spider?", None, {"A": "six", "B": "eight", "C": None, "D": None}, "B")
            for i in range(2)]
    path = b.save_dict(rows, tmp_path / "m", "dev")
    out = tmp_path / "out.json"
    with FakeChatServer(lambda prompt: "B") as server:
        res = CliRunner().invoke(app, [
            "bench", "--data", "mmbench", "--data-path", str(path), "--limit", "2", "--max-new-tokens", "3",
            "--device", "cpu", "--warmup", "0", "--methods", "baseline", "--judge-url", server.url, "--judge-model", "judge",
            "--json", str(out)], env={"HF_HUB_OFFLINE": "1", "COLUMNS": "250", "OPENAI_API_KEY": "sk-test"})
        requests = list(server.requests)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    metrics = data["rows"][0]["metrics"]
    assert metrics["needs_judge"] >= 1, "the testbed's replies were readable: the judge was not exercised"
    assert metrics["judged"] == metrics["needs_judge"] and len(requests) == metrics["judged"]
    assert metrics["unparsed"] == 0.0
    # a judged reply is right (the judge says B); a readable one counts as the rule reads it
    assert metrics["circular_accuracy"] >= 50.0 * metrics["judged"]
    assert all(r["body"]["model"] == "judge" and r["auth"] == "Bearer sk-test" for r in requests)
    assert data["task"]["judge"] == {"url": server.url, "model": "judge"}


@pytest.mark.parametrize("args,needle", [
    (["--data", "mmbench", "--judge-url", "http://127.0.0.1:9/v1"], "both --judge-url and --judge-model"),
    (["--data", "sqa", "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m"], "--data mmbench only"),
    (["--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m"], "--data mmbench only"),
])
def test_vtw_bench_judge_options_bad_input_is_one_line(args, needle):
    from typer.testing import CliRunner

    from vtwcli.cli import app

    res = CliRunner().invoke(app, ["bench", "--limit", "1", "--device", "cpu", *args], env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
