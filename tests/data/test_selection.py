"""How --limit picks samples: seeded, stratified by category, groups kept whole; or the first N."""

from __future__ import annotations

import builders as b
import pytest

from vtwcli.data import get_task
from vtwcli.data.loading import select_rows, stratified_sample
from vtwcli.errors import UsageError


def test_quotas_follow_the_strata_sizes():
    strata = ["a"] * 60 + ["b"] * 30 + ["c"] * 10  # stored grouped, as the benchmarks are
    got = stratified_sample(100, 20, seed=1, strata=strata)
    assert len(got) == 20 and got == sorted(got)
    assert [sum(strata[i] == s for i in got) for s in "abc"] == [12, 6, 2]
    assert stratified_sample(100, 20, seed=1, strata=strata) == got  # seeded
    assert stratified_sample(100, 20, seed=2, strata=strata) != got


def test_groups_are_never_split_and_the_budget_is_respected():
    groups = [i // 2 for i in range(40)]  # 20 pairs
    strata = ["x"] * 20 + ["y"] * 20
    got = stratified_sample(40, 9, seed=0, groups=groups, strata=strata)
    assert len(got) == 8  # four whole pairs; a ninth row would split one
    picked = [groups[i] for i in got]
    assert all(picked.count(g) == 2 for g in set(picked))
    assert sum(strata[i] == "x" for i in got) == 4


def test_first_is_lmms_evals_limit():
    indices, how = select_rows(10, 4, None, 0, order="first", strata=["a"] * 10)
    assert indices == [0, 1, 2, 3] and how == "first 4"
    with pytest.raises(UsageError, match="--subset must be 'random'"):
        select_rows(10, 4, None, 0, order="shuffled")


def _mme_sorted(pairs_per_cat=4):
    """MME rows stored as the real table is: grouped by subtask, each image's two questions adjacent."""
    rows = []
    for cat in ("existence", "OCR", "code_reasoning"):
        for p in range(pairs_per_cat):
            for ans in ("Yes", "No"):
                rows.append({"question_id": f"{cat}/{p:04d}.png", "image": b.png((p * 40, 100, 100)),
                             "question": f"Is it {ans}? Please answer yes or no.", "answer": ans,
                             "category": cat})  # fmt: skip
    return rows


def test_mme_random_limit_spans_subtasks_and_keeps_pairs(tmp_path):
    path = b.save_dict(_mme_sorted(), tmp_path / "mme", "test")
    first = get_task("mme", path=path, limit=6, order="first")
    assert {r.meta["category"] for r in first} == {"existence"}  # the defect of taking the first rows
    task = get_task("mme", path=path, limit=6, order="random", seed=3)
    assert len(task) == 6
    assert {r.meta["category"] for r in task} == {"existence", "OCR", "code_reasoning"}
    qids = [r.meta["question_id"] for r in task]
    assert all(qids.count(q) == 2 for q in qids)  # both questions of every image
    assert task.source.selection == (
        "random 6 of 24 (seed 3), stratified by subtask (3 strata), image pairs kept together")
    assert task.score(list(task), ["yes" if r.answer == "yes" else "no" for r in task])["incomplete_pairs"] == 0


def test_pope_random_limit_covers_every_sampling(tmp_path):
    rows = b.pope_rows(6, "adversarial") + b.pope_rows(6, "popular") + b.pope_rows(6, "random")
    for i, row in enumerate(rows):
        row["question_id"] = str(2000 + i)
    path = b.save_dict(rows, tmp_path / "pope", "test")
    task = get_task("pope", path=path, limit=6, order="random", seed=0)
    cats = [r.meta["category"] for r in task]
    assert sorted(cats) == ["adversarial"] * 2 + ["popular"] * 2 + ["random"] * 2
    assert "stratified by sampling" in task.source.selection


def test_mmbench_circular_copies_stay_together(tmp_path):
    path = b.save_dict(b.mmbench_rows(), tmp_path / "mmb", "dev")
    for seed in range(5):
        task = get_task("mmbench", path=path, limit=3, order="random", seed=seed)
        questions = [r.meta["index"] % 1_000_000 for r in task]
        assert len(task) == 2 and questions[0] == questions[1]  # one question with its copy, never half of one
        assert "circular copies kept together" in task.source.selection
