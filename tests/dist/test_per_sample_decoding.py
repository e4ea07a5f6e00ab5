"""Inputs are decoded one sample at a time, by the task's own rules (what makes sharding cheap)."""

from __future__ import annotations

import numpy as np


def test_bench_decodes_each_sample_when_it_runs(monkeypatch):
    """Not the whole benchmark up front: at the first measured run only that sample was decoded."""
    import vtwcli.bench.runner as runner
    import vtwcli.data as data

    real_get_task = data.get_task
    decoded: list[str] = []
    seen_at_run: list[int] = []

    def counting_task(*args, **kwargs):
        task = real_get_task(*args, **kwargs)
        real_images = task.images

        def images(record):
            decoded.append(record.id)
            return real_images(record)

        task.images = images
        return task

    real_run_one = runner._run_one

    def run_one(*args, **kwargs):
        seen_at_run.append(len(decoded))
        return real_run_one(*args, **kwargs)

    monkeypatch.setattr(data, "get_task", counting_task)
    monkeypatch.setattr(runner, "_run_one", run_one)
    result = runner.bench(limit=3, max_new_tokens=2, warmup=0, methods="baseline,vtw", k=3)
    assert result.row("vtw").samples == 3
    assert seen_at_run == [1, 1, 2, 2, 3, 3]  # two methods per sample, one decode per sample
    assert len(decoded) == len(set(decoded)) == 3


def test_calibrate_takes_video_frames_from_the_task():
    """A video task's frames come from task.videos (lmms-eval's sampling), not the file path."""
    from vtwcli.calibrate.api import _vision_of, draw_samples
    from vtwcli.data.base import Record, Source, Task

    frames = np.zeros((4, 8, 8, 3), dtype=np.uint8)

    class VideoTask(Task):
        name = "fake-video"
        has_video = True

        def videos(self, record):
            return [frames + int(record.id)]

        def images(self, record):
            raise AssertionError("a video task's images are not asked for")

    records = [Record(id=str(i), question="q", video=f"/nowhere/{i}.mp4") for i in range(3)]
    records.append(Record(id="9", question="q"))  # no video: never drawn
    task = VideoTask(records, Source(dataset_id="fake"))
    images, videos = _vision_of(task, records[1])
    assert images == [] and len(videos) == 1 and int(videos[0][0, 0, 0, 0]) == 1
    drawn = draw_samples(task, 5, seed=0)
    assert [r.id for r, _, _ in drawn] == ["0", "1", "2"]
    assert all(isinstance(v[0], np.ndarray) for _, _, v in drawn)
