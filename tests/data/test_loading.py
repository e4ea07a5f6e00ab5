"""Loading each task from local copies in the hub schema, and the exact prompt strings.

Expected prompts are written out by hand from the facts sheet (docs/benchmarks.md), not
produced by the code under test.
"""

from __future__ import annotations

import builders as b
import pytest

from vtwcli.data import get_task, list_tasks
from vtwcli.errors import DatasetError, UsageError

SHA = "89abcdef0123456789abcdef0123456789abcdef"
MMMU_IMAGES = [f"image_{k}" for k in range(1, 8)]


def test_list_tasks_names_every_benchmark():
    names = {s.name for s in list_tasks()}
    assert names == {"sqa", "mme", "pope", "pope-adv", "pope-pop", "pope-random", "ai2d", "mmbench", "mmmu",
                     "videomme", "shapes"}
    sqa = next(s for s in list_tasks() if s.name == "sqa")
    assert sqa.location.hub_ids == ("lmms-lab/ScienceQA", "lmms-lab-encoder/ScienceQA")
    assert (sqa.location.config, sqa.location.split) == ("ScienceQA-IMG", "test")


@pytest.mark.parametrize("layout", ["save_to_disk", "hub_readme", "hub_folders"])
def test_sqa_loads_from_each_local_layout(tmp_path, layout):
    rows = b.sqa_rows(4)
    if layout == "save_to_disk":
        path = b.save_dict(rows, tmp_path / "copy", "test")
    else:
        path = b.save_hub_layout(rows, tmp_path / "copy", "ScienceQA-IMG", "test", readme=layout == "hub_readme")
    task = get_task("sqa", path=path)
    assert len(task) == 4
    assert task.source.dataset_id == "lmms-lab/ScienceQA"
    assert (task.source.config, task.source.split) == ("ScienceQA-IMG", "test")
    assert task.source.path == str(path.resolve())
    assert task.source.fingerprint
    assert task.source.rows_available == 4 and task.source.selection == "all"
    image = task.images(task[2])[0]
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (20, 50, 90)
    assert task.generation.max_new_tokens == 16 and task.generation.do_sample is False


def test_offline_hub_cache_is_used_and_revision_recorded(tmp_path, isolated_hf):
    # only the NEW id is cached: the loader must fall back to it and say so in source
    b.fake_hub_cache(b.mme_rows(2), isolated_hf, "lmms-lab-encoder/MME", None, "test", SHA)
    task = get_task("mme")
    assert len(task) == 4
    assert task.source.dataset_id == "lmms-lab-encoder/MME"
    assert task.source.revision == SHA
    assert task.source.split == "test" and task.source.path is None
    assert task.images(task[0])[0].size == (32, 24)


def test_hub_id_as_path_with_config(tmp_path, isolated_hf):
    b.fake_hub_cache(b.sqa_rows(3), isolated_hf, "lmms-lab/ScienceQA", "ScienceQA-IMG", "test", SHA)
    task = get_task("sqa", path="lmms-lab/ScienceQA", limit=2)
    assert len(task) == 2 and task.source.revision == SHA and task.source.selection == "first 2"


def test_no_data_anywhere_says_how_to_download():
    with pytest.raises(DatasetError) as err:
        get_task("pope-adv")
    text = str(err.value)
    for part in ("lmms-lab/POPE", "lmms-lab-encoder/POPE", "Full", "adversarial", "gated", "save_to_disk",
                 "--data-path", "HF_HUB_OFFLINE=1", "hf auth login"):
        assert part in text, part


def test_missing_local_path_is_clear(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory"):
        get_task("mme", path=tmp_path / "nope" / "here")


def test_wrong_schema_names_missing_fields(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("category", "question_id")} for r in b.mme_rows(1)]
    path = b.save_dict(rows, tmp_path / "bad", "test")
    with pytest.raises(DatasetError) as err:
        get_task("mme", path=path)
    assert "missing field(s) question_id, category" in str(err.value)
    assert "lmms-lab/MME" in str(err.value)


def test_wrong_split_lists_available(tmp_path):
    path = b.save_dict(b.pope_rows(2), tmp_path / "p", "test")
    with pytest.raises(DatasetError, match="no split 'validation'.*test"):
        get_task("pope", path=path, split="validation")


def test_unknown_task_suggests_nearest():
    with pytest.raises(DatasetError, match="unknown task 'scienceqa'.*Did you mean 'sqa'") as err:
        get_task("scienceqa")
    assert "jsonl:PATH" in str(err.value)
    with pytest.raises(DatasetError, match="Did you mean 'mmbench'"):
        get_task("mmbenhc")
    with pytest.raises(DatasetError, match="Did you mean 'pope-adv'"):
        get_task("pope_adv2")


def test_underscore_alias_of_lmms_eval_names(tmp_path):
    path = b.save_dict(b.pope_rows(2, "adversarial"), tmp_path / "p", "adversarial")
    task = get_task("pope_adv", path=path)
    assert task.name == "pope-adv" and task.source.config == "Full" and task.source.split == "adversarial"


def test_limit_first_n_and_seeded_subset(tmp_path):
    path = b.save_dict(b.pope_rows(6), tmp_path / "p", "test")
    first = get_task("pope", path=path, limit=3)
    assert [r.id for r in first] == ["1000", "1001", "1002"]
    a = get_task("pope", path=path, subset=3, seed=5)
    again = get_task("pope", path=path, subset=3, seed=5)
    other = [get_task("pope", path=path, subset=3, seed=s) for s in range(6, 12)]
    assert [r.id for r in a] == [r.id for r in again]
    assert any([r.id for r in o] != [r.id for r in a] for o in other)
    assert [r.id for r in a] == sorted(r.id for r in a)  # table order kept
    assert a.source.selection == "random 3 of 6 (seed 5)"
    # the images follow their rows through the selection
    assert [a.images(r)[0].getpixel((0, 0))[0] for r in a] == [int(r.id) % 1000 * 30 for r in a]
    with pytest.raises(UsageError, match="--limit"):
        get_task("pope", path=path, limit=0)


def test_single_parquet_file(tmp_path):
    ds = b.with_image_feature(b.dataset(b.ai2d_rows(3)), ["image"])
    ds.to_parquet(str(tmp_path / "ai2d.parquet"))
    task = get_task("ai2d", path=tmp_path / "ai2d.parquet")
    assert len(task) == 3 and task[1].answer == 1


# ---- exact prompt strings, one record of each task -------------------------------------------

def test_prompt_sqa_with_and_without_hint(tmp_path):
    task = get_task("sqa", path=b.save_dict(b.sqa_rows(2), tmp_path / "s", "test"))
    assert task.prompt(task[0]) == (
        "Context: The picture 0 was taken outdoors.\nWhich animal is shown 0?\nA. cat\nB. dog\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(task[1]) == (
        "Which animal is shown 1?\nA. cat\nB. dog\nC. bird\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_prompt_mme_drops_builtin_suffix(tmp_path):
    rows = b.mme_rows(1)
    rows[0]["question"] = "  Is there a cat in the image 0? Please answer yes or no.  "
    task = get_task("mme", path=b.save_dict(rows, tmp_path / "m", "test"))
    assert task.prompt(task[0]) == "Is there a cat in the image 0?\nAnswer the question using a single word or phrase."


def test_prompt_pope(tmp_path):
    task = get_task("pope", path=b.save_dict(b.pope_rows(1), tmp_path / "p", "test"))
    assert task.prompt(task[0]) == "Is there a chair 0 in the image?\nAnswer the question using a single word or phrase."
    assert task.generation.max_new_tokens == 128


def test_prompt_ai2d(tmp_path):
    task = get_task("ai2d", path=b.save_dict(b.ai2d_rows(1), tmp_path / "a", "test"))
    assert task.prompt(task[0]) == (
        "Which stage comes after egg 0?\nA. larva\nB. pupa\nC. adult\nD. egg\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_prompt_mmbench_with_and_without_hint(tmp_path):
    task = get_task("mmbench", path=b.save_dict(b.mmbench_rows(), tmp_path / "m", "dev"))
    assert task.prompt(task[0]) == (
        "Look up. What colour is the sky? There are several options:\nA. blue\nB. green\nC. red\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(task[2]) == (
        "How many legs has a spider? There are several options:\nA. six\nB. eight\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.generation.max_new_tokens == 1024 and task.generation.stop == ["ASSISTANT:"]
    assert task[1].meta["index"] == 1_000_000


def test_prompt_mmbench_nan_hint(tmp_path):
    rows = b.mmbench_rows()[:1]
    rows[0]["hint"] = "nan"
    task = get_task("mmbench", path=b.save_dict(rows, tmp_path / "m", "dev"))
    assert task.prompt(task[0]).startswith("What colour is the sky? There are several options:\nA. blue")


def test_prompt_mmmu_choice_and_open_and_images(tmp_path):
    path = b.save_hub_layout(b.mmmu_rows(), tmp_path / "mmmu", None, "validation", readme=True,
                             image_columns=MMMU_IMAGES)
    task = get_task("mmmu", path=path)
    assert task.prompt(task[0]) == (
        "Look at <image 2> and <image 1>. Which is older?\nA. The first\nB. The second\nC. <image 3>\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.prompt(task[1]) == (
        "<image 1> What is the area of the square?\n\nAnswer the question using a single word or phrase."
    )
    # every image named in question or options, once, by number
    assert [im.getpixel((0, 0)) for im in task.images(task[0])] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert [im.getpixel((0, 0)) for im in task.images(task[1])] == [(4, 4, 4)]
    assert task.generation.max_new_tokens == 128 and "16" in task.generation.note


def test_mme_limit_that_splits_a_pair_scores(tmp_path):
    task = get_task("mme", path=b.save_dict(b.mme_rows(2), tmp_path / "m", "test"), limit=3)
    scores = task.score(task.records, ["Yes", "No", "Yes"])
    assert scores["incomplete_pairs"] == 1 and scores["scored_pairs"] == 1
    assert scores["subtask/existence"] == 200.0


def test_shapes_is_reachable():
    task = get_task("shapes", limit=4)
    assert len(task) == 4 and task.source.dataset_id == "vtwcli/shapes"
    with pytest.raises(DatasetError, match="generated"):
        get_task("shapes", path="x")


def test_shapes_missing_module_is_clear(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vtwcli.data.shapes", None)  # import of it now fails
    with pytest.raises(DatasetError, match="shapes task is not part of this build"):
        get_task("shapes")


def test_unreachable_hub_without_offline_flag_is_fast_and_uses_cache(monkeypatch, isolated_hf):
    import socket

    import datasets
    from huggingface_hub import constants

    from vtwcli import hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_reachable", {})

    def no_network(*args, **kwargs):
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DatasetError, match="not reachable from this machine"):
        get_task("ai2d")
    b.fake_hub_cache(b.ai2d_rows(2), isolated_hf, "lmms-lab/ai2d", None, "test", SHA)
    task = get_task("ai2d")
    assert len(task) == 2 and task.source.revision == SHA
    # the offline switch was only for that load
    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False
