"""The named tasks and :func:`get_task`, the one entry point calibrate, bench and run use."""

from __future__ import annotations

import difflib
import importlib
import os

from vtwcli.data.base import Task
from vtwcli.data.hub import TaskSpec
from vtwcli.data.loading import HubLocation
from vtwcli.errors import DatasetError

_ACC01 = (("accuracy", "share of replies scored right, 0-1"), ("n", "questions scored"))
_POPE_METRICS = (
    ("accuracy", "0-1"),
    ("precision", "0-1, positive class yes"),
    ("recall", "0-1"),
    ("f1", "0-1"),
    ("gt_yes_ratio", "share of gold answers that are yes (lmms-eval's yes_ratio), 0-1"),
    ("pred_yes_ratio", "share of replies that are exactly yes, 0-1"),
    ("neither_yes_nor_no", "replies that are neither exactly yes nor no (e.g. 'Yes.')"),
    ("n", "questions scored"),
)


def _pope(name: str, lmms: str, config: str | None, split: str, rows: int, what: str) -> TaskSpec:
    # the paper's POPE column (85.83 for LLaVA-1.5-7B) is lmms-eval's F1 (x100), not its accuracy
    return TaskSpec(name, lmms, HubLocation(("lmms-lab/POPE", "lmms-lab-encoder/POPE"), config, split), rows,
                    f"POPE object hallucination, {what}", _POPE_METRICS, "vtwcli.data.pope:POPETask",
                    ("f1", "POPE F1"))


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("sqa", "scienceqa_img",
                 HubLocation(("lmms-lab/ScienceQA", "lmms-lab-encoder/ScienceQA"), "ScienceQA-IMG", "test"), 2017,
                 "ScienceQA image questions, multiple choice", _ACC01, "vtwcli.data.sqa:ScienceQATask",
                 ("accuracy", "SQA-IMG accuracy")),
        TaskSpec("mme", "mme", HubLocation(("lmms-lab/MME", "lmms-lab-encoder/MME"), None, "test"), 2374,
                 "MME yes/no pairs, 14 subtasks",
                 (("perception", "sum of 10 perception subtasks, 0-2000"),
                  ("cognition", "sum of 4 cognition subtasks, 0-800"),
                  ("total", "perception + cognition (the paper's MME column), 0-2800"),
                  ("subtask/<name>", "acc + acc+ of one subtask, 0-200"),
                  ("scored_pairs", "images with both questions in the run"),
                  ("incomplete_pairs", "images with only one question in the run; not scored")),
                 "vtwcli.data.mme:MMETask", ("total", "MME total")),
        _pope("pope", "pope", None, "test", 9000, "all three samplings"),
        _pope("pope-adv", "pope_adv", "Full", "adversarial", 3000, "adversarial sampling"),
        _pope("pope-pop", "pope_pop", "Full", "popular", 3000, "popular sampling"),
        _pope("pope-random", "pope_random", "Full", "random", 3000, "random sampling"),
        TaskSpec("ai2d", "ai2d", HubLocation(("lmms-lab/ai2d", "lmms-lab-encoder/ai2d"), None, "test"), 3088,
                 "AI2D diagram questions, multiple choice", _ACC01, "vtwcli.data.ai2d:AI2DTask",
                 ("accuracy", "AI2D accuracy")),
        TaskSpec("mmbench", "mmbench_en_dev",
                 HubLocation(("lmms-lab/MMBench", "lmms-lab-encoder/MMBench"), "en", "dev"), 4329,
                 "MMBench-EN dev, circular; lmms-eval's reading rule, optional OpenAI-compatible judge",
                 (("circular_accuracy", "share of questions whose every circular copy is right, 0-100"),
                  ("per_copy_accuracy", "each copy on its own, by the reading rule alone, 0-100"),
                  ("questions", "questions scored (rows with index < 1e6)"), ("copies", "rows scored"),
                  ("unscored_copies", "circular copies whose question row is not in the run"),
                  ("needs_judge", "replies lmms-eval's reading rule cannot read"),
                  ("judged", "replies sent to the judge (0 without --judge-url)"),
                  ("unparsed", "replies left without a letter: wrong offline; with a judge, given "
                               "lmms-eval's seeded random letter")),
                 "vtwcli.data.mmbench:MMBenchTask", ("circular_accuracy", "MMBench circular accuracy")),
        TaskSpec("mmmu", "mmmu_val", HubLocation(("lmms-lab/MMMU", "lmms-lab-encoder/MMMU"), None, "validation"),
                 900, "MMMU validation, multiple choice and open",
                 (("accuracy", "micro accuracy over all questions, 0-1"),
                  ("unparsed", "multiple-choice replies with no letter found (given a seeded random letter)"),
                  ("n", "questions scored")),
                 "vtwcli.data.mmmu:MMMUTask", ("accuracy", "MMMU accuracy")),
        TaskSpec("videomme", "videomme",
                 HubLocation(("lmms-lab/Video-MME", "lmms-eval/Video-MME"), "videomme", "test"), 2700,
                 "Video-MME, 8 uniform frames (videos downloaded separately)",
                 (("accuracy", "0-100"), ("accuracy/<duration>", "short, medium, long; 0-100"),
                  ("n", "questions scored")),
                 "vtwcli.data.videomme:VideoMMETask", ("accuracy", "Video-MME accuracy")),
        TaskSpec("shapes", "(vtw testbed)", None, None, "generated coloured shapes for the bundled testbed model",
                 (), "vtwcli.data.shapes:load_shapes"),
    )
}

JSONL_PREFIX = "jsonl:"


def list_tasks() -> list[TaskSpec]:
    """Every named task (``jsonl:PATH`` is open-ended and not listed)."""
    return list(TASKS.values())


def _unknown(name: str) -> DatasetError:
    names = [*TASKS, "jsonl:PATH"]
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return DatasetError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(names)} (see `vtw datasets`)")


def get_task(name: str, path: str | os.PathLike | None = None, split: str | None = None, limit: int | None = None,
             subset: int | None = None, seed: int = 0, order: str = "first", **options) -> Task:
    """Load task ``name`` and return it ready to iterate.

    ``path``: a hub id (``owner/name``, optionally ``@revision``) or a local directory or file
    in the task's schema; None tries the old then the new lmms-eval hub id, preferring one
    already in the local cache. ``limit`` keeps N rows: with ``order="first"`` the first N
    (lmms-eval's ``--limit``), with ``order="random"`` a sample drawn with ``seed``, stratified
    by the task's category where it has one, MME image pairs and MMBench circular copies kept
    together (what ``vtw bench`` uses). ``subset`` then draws a seeded random sample of N.
    Video-MME also takes ``video_dir`` and ``num_frames``.
    """
    from vtwcli.data.loading import check_order

    check_order(order)
    if not isinstance(name, str) or not name:
        raise _unknown(str(name))
    if name.startswith(JSONL_PREFIX):
        from vtwcli.data.jsonl import load_jsonl

        if path is not None:
            raise DatasetError("jsonl:PATH already names the file; leave --data-path out")
        return load_jsonl(name[len(JSONL_PREFIX):], split=split, limit=limit, subset=subset, seed=seed, order=order,
                          **options)
    key = name.strip().lower().replace("_", "-")
    spec = TASKS.get(key)
    if spec is None:
        raise _unknown(name)
    module_name, attr = spec.factory.split(":")
    if spec.name == "shapes":
        return _load_shapes(module_name, attr, path, split, limit, subset, seed, options)
    cls = getattr(importlib.import_module(module_name), attr)
    return cls.load(spec, path=path, split=split, limit=limit, subset=subset, seed=seed, order=order, **options)


def _load_shapes(module_name, attr, path, split, limit, subset, seed, options) -> Task:
    if path is not None:
        raise DatasetError("the shapes task is generated on the fly; leave --data-path out")
    if options:
        raise DatasetError(f"the shapes task takes no option(s) {', '.join(sorted(options))}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise DatasetError(
            "the shapes task is not part of this build (vtwcli/data/shapes.py is missing); "
            "reinstall vtw or use another task"
        ) from err
    load_shapes = getattr(module, attr)
    return load_shapes(split=split or "test", limit=limit, subset=subset, seed=seed)
