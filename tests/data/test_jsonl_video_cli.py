"""jsonl:PATH, Video-MME with a generated clip, and the `vtw datasets` command."""

from __future__ import annotations

import json

import builders as b
import pytest
from typer.testing import CliRunner

from vtwcli.data import get_task
from vtwcli.data.video import sample_frames, uniform_indices
from vtwcli.errors import DatasetError, InputFileError

# ---- jsonl ------------------------------------------------------------------------------------


def _write_jsonl(tmp_path, lines):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return path


def test_jsonl_loads_skips_missing_images_and_scores(tmp_path):
    b.png((9, 9, 9)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    b.png((7, 7, 7)).save(tmp_path / "sub" / "b.png")
    path = _write_jsonl(tmp_path, [
        {"image": "a.png", "question": "Is it dark?", "answer": "yes", "answer_type": "yesno"},
        {"image": "gone.png", "question": "lost", "answer": "no"},
        {"images": ["a.png", "sub/b.png"], "question": "Which?", "answer": "B", "answer_type": "choice", "id": "q3"},
        {"image": "sub/b.png", "question": "How many?", "answer": "4", "answer_type": "number"},
        {"image": "a.png", "question": "Name it", "answer": "Grey Square"},
        {"image": "a.png", "question": "No gold here"},
    ])
    task = get_task(f"jsonl:{path}")
    assert len(task) == 5
    assert task.source.skipped == 1 and len(task.skipped) == 1
    assert "line 2" in task.skipped[0] and "gone.png" in task.skipped[0]
    assert task.source.dataset_id == "jsonl" and task.source.fingerprint.startswith("sha256:")
    assert task[1].id == "q3"
    assert [im.getpixel((0, 0)) for im in task.images(task[1])] == [(9, 9, 9), (7, 7, 7)]
    assert task.prompt(task[0]) == "Is it dark?"
    s = task.score(task.records, ["Yes.", "B. the second", "there are 4", "grey square!", "whatever"])
    assert s == {"scored": 4.0, "skipped": 1.0, "accuracy": 1.0}
    s = task.score(task.records, ["no", "A", "5", "grey", "x"])
    assert s["accuracy"] == 0.0


def test_jsonl_bad_lines_are_named(tmp_path):
    b.png().save(tmp_path / "a.png")
    with pytest.raises(InputFileError, match=r"mine.jsonl:2 is not valid JSON"):
        get_task(f"jsonl:{_write_jsonl(tmp_path, [{'image': 'a.png', 'question': 'q'}, '{oops'])}")
    with pytest.raises(InputFileError, match=r"mine.jsonl:1 is missing field\(s\): question"):
        get_task(f"jsonl:{_write_jsonl(tmp_path, [{'image': 'a.png'}])}")
    with pytest.raises(InputFileError, match="answer_type 'exactish'"):
        get_task(f"jsonl:{_write_jsonl(tmp_path, [{'image': 'a.png', 'question': 'q', 'answer_type': 'exactish'}])}")
    with pytest.raises(DatasetError, match="no usable line.*1 line\\(s\\) skipped"):
        get_task(f"jsonl:{_write_jsonl(tmp_path, [{'image': 'x.png', 'question': 'q'}])}")
    with pytest.raises(InputFileError, match="no such file"):
        get_task(f"jsonl:{tmp_path / 'absent.jsonl'}")


# ---- video ------------------------------------------------------------------------------------


def test_uniform_indices_match_linspace_truncation():
    import numpy as np

    for total, n in [(20, 8), (300, 8), (5, 8), (1, 8), (100, 1), (9, 3)]:
        assert uniform_indices(total, n) == np.linspace(0, total - 1, n, dtype=int).tolist()


def test_sample_frames_reads_the_uniform_frames(tmp_path):
    video = b.write_video(tmp_path / "clip.mp4", frames=20)
    frames = sample_frames(video, 8)
    assert len(frames) == 8 and frames[0].size == (32, 32)
    # frame i is grey level 10*i; lossy coding moves it a little
    levels = [f.getpixel((16, 16))[0] for f in frames]
    expected = [10 * i for i in uniform_indices(20, 8)]
    assert all(abs(a - e) <= 6 for a, e in zip(levels, expected, strict=True)), (levels, expected)


def test_videomme_loads_with_videos_and_skips_missing(tmp_path):
    rows = b.videomme_rows(3)
    path = b.save_hub_layout(rows, tmp_path / "vmme", "videomme", "test", readme=True, image_columns=())
    b.write_video(path / "data" / "vid0.mp4", frames=12)
    b.write_video(path / "data" / "vid2.mp4", frames=12)
    task = get_task("videomme", path=path, num_frames=4)
    assert [r.id for r in task] == ["001-1", "003-1"]
    assert task.source.skipped == 1 and "vid1" in task.skipped[0]
    assert task.images(task[0]) == []
    (frames,) = task.videos(task[0])
    assert frames.shape == (4, 32, 32, 3) and frames.dtype.name == "uint8"
    assert task.prompt(task[0]) == (
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many balls appear 0?\nA. 1.\nB. 2.\nC. 3.\nD. 4.\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert task.score(task.records, ["C", "B"])["accuracy"] == 50.0


def test_videomme_without_any_video_says_so(tmp_path):
    path = b.save_dict(b.videomme_rows(2), tmp_path / "vmme", "test", image_columns=())
    with pytest.raises(DatasetError, match="none of the 2 question\\(s\\) has its video file.*videos_chunked"):
        get_task("videomme", path=path)


def test_videomme_video_dir_option(tmp_path):
    path = b.save_dict(b.videomme_rows(1), tmp_path / "vmme", "test", image_columns=())
    b.write_video(tmp_path / "elsewhere" / "vid0.mp4", frames=6)
    task = get_task("videomme", path=path, video_dir=tmp_path / "elsewhere")
    assert len(task) == 1 and len(task.videos(task[0])[0]) == 8


# ---- vtw datasets -----------------------------------------------------------------------------


def _run(args):
    from vtwcli.cli import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def test_datasets_table_and_json(isolated_hf):
    b.fake_hub_cache(b.pope_rows(4), isolated_hf, "lmms-lab/POPE", None, "test",
                     "0123456789abcdef0123456789abcdef01234567")
    result = _run(["datasets"])
    assert result.exit_code == 0, result.output
    for name in ("sqa", "mme", "pope-adv", "mmbench", "videomme", "shapes", "lmms-lab/ScienceQA"):
        assert name in result.output
    result = _run(["datasets", "--json", "-"])
    rows = json.loads(result.output)
    pope = next(r for r in rows if r["task"] == "pope")
    assert pope["status"] == "cached: lmms-lab/POPE (4 rows)"
    assert pope["hub_ids"] == ["lmms-lab/POPE", "lmms-lab-encoder/POPE"]
    assert "pred_yes_ratio" in pope["metrics"]
    assert next(r for r in rows if r["task"] == "mme")["status"] == "not cached"


def test_datasets_checks_a_local_copy(tmp_path):
    path = b.save_dict(b.ai2d_rows(2), tmp_path / "ai2d", "test")
    result = _run(["datasets", "--task", "ai2d", "--data-path", str(path), "--json", "-"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["status"] == f"found at {path}: 2 rows"
    assert row["source"]["split"] == "test"


def test_datasets_unknown_task_message():
    result = _run(["datasets", "--task", "mmeee"])
    assert result.exit_code != 0
    assert "unknown task 'mmeee'. Did you mean 'mme'?" in result.output


def test_datasets_unknown_task_exits_2():
    assert _run(["datasets", "--task", "mmeee"]).exit_code == 2
