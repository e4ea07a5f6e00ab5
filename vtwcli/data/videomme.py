"""Video-MME (lmms-eval ``videomme``): four-way multiple choice over a video, 8 uniform frames.

The hub table holds only questions; the videos come as zip archives in the same repository.
vtw looks for ``<videoID>.mp4`` (or .mkv/.webm/.avi) in, in order: ``video_dir``, $VTW_VIDEO_DIR,
``<data path>/data``, ``<data path>/videos``, ``<data path>``, and lmms-eval's own place
``$HF_HOME/videomme/data``. Questions whose video is absent are skipped and counted.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from vtwcli.data.base import Generation, Record
from vtwcli.data.hub import HubTask, clean_reply
from vtwcli.data.video import DEFAULT_FRAMES, sample_frames
from vtwcli.errors import DatasetError, UsageError

INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the "
    "subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
# lmms-eval's default post_prompt starts with a newline and doc_to_text joins it with another
POST = "\nAnswer with the option's letter from the given choices directly."
# The prefixes lmms-eval removes before it looks for a letter. Its list misses two commas, so
# Python joins "The best option is" with "The correct option is", and "Best answer:" with
# "Best option:": those four are removed only as the joined strings, which replies never
# contain. Kept as it runs: "Best option: C" reads as "B" (from "Best") in lmms-eval too.
ANSWER_PREFIXES = (
    "The best answer is", "The correct answer is", "The answer is", "The answer",
    "The best option isThe correct option is", "Best answer:Best option:",
)
VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm", ".avi")


def videomme_extract(reply: str) -> str:
    """The first of A-D (upper case) after the answer prefixes are removed; "" when there is none."""
    text = reply.strip()
    for prefix in ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    # (lmms-eval also returns "" early for a reply of more than ten words with no A-D: the same result)
    match = re.search(r"[ABCD]", text)
    return match.group(0) if match else ""


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def video_search_dirs(path, video_dir) -> list[Path]:
    dirs = []
    if video_dir:
        dirs.append(Path(video_dir).expanduser())
    if os.environ.get("VTW_VIDEO_DIR"):
        dirs.append(Path(os.environ["VTW_VIDEO_DIR"]).expanduser())
    if path is not None and Path(os.fspath(path)).exists():
        base = Path(os.fspath(path)).expanduser()
        base = base if base.is_dir() else base.parent
        dirs += [base / "data", base / "videos", base]
    dirs.append(_hf_home() / "videomme" / "data")
    return dirs


def _find_video(stem: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for suffix in VIDEO_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


class VideoMMETask(HubTask):
    required = ("videoID", "question", "options", "answer")
    image_columns = ()
    has_video = True
    generation = Generation(max_new_tokens=16)
    num_frames = DEFAULT_FRAMES

    @classmethod
    def load(cls, spec, path=None, split=None, limit=None, subset=None, seed=0, video_dir=None,
             num_frames: int = DEFAULT_FRAMES, **options):
        if not isinstance(num_frames, int) or num_frames < 1:
            raise UsageError(f"num_frames must be at least 1 (got {num_frames!r})")
        task = super().load(spec, path=path, split=split, limit=limit, subset=subset, seed=seed, **options)
        task.num_frames = num_frames
        dirs = video_search_dirs(path, video_dir)
        kept, missing = [], []
        for record in task.records:
            found = _find_video(str(record.meta["videoID"]), dirs)
            if found is None:
                missing.append(str(record.meta["videoID"]))
                continue
            record.video = str(found)
            kept.append(record)
        looked = ", ".join(str(d) for d in dirs)
        if missing and not kept:
            raise DatasetError(
                f"videomme: none of the {len(missing)} question(s) has its video file (e.g. {missing[0]}.mp4); "
                f"looked in {looked}. The hub repository ships the videos as videos_chunked_*.zip: unzip "
                f"them into one folder and pass it as video_dir (or set VTW_VIDEO_DIR)"
            )
        if missing:
            task.skipped = [f"video {m} not found" for m in sorted(set(missing))]
            task.skipped_questions = len(missing)
        task.records = kept
        task.source.skipped = len(missing)
        return task

    @classmethod
    def make_record(cls, row, row_index, images):
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        meta["row"] = row_index
        rid = row.get("question_id") or f"{row.get('video_id', row['videoID'])}-{row_index}"
        # compared as stored, like lmms-eval (pred_answer == answer)
        return Record(id=str(rid), question=row["question"], answer=str(row["answer"]), meta=meta)

    def prompt(self, record: Record) -> str:
        options = "\n".join(str(o) for o in record.meta["options"])
        return f"{INSTRUCTION}\n{record.question}\n{options}\n{POST}"

    def images(self, record: Record) -> list:
        return []

    def videos(self, record: Record) -> list:
        if record.video is None:
            raise DatasetError(f"videomme: record {record.id} has no video file")
        import numpy as np

        # (T, H, W, 3) uint8, the form LoadedModel.prepare takes for a decoded video
        return [np.stack([np.asarray(frame) for frame in sample_frames(record.video, self.num_frames)])]

    def parse(self, record: Record, reply: str) -> str:
        return videomme_extract(clean_reply(reply))

    def sample_score(self, record: Record, reply: str) -> float:
        return float(self.parse(record, reply) == record.answer)

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        """Metrics: ``accuracy`` (0-100), ``accuracy/<duration>`` for short/medium/long, ``n``."""
        self._check_lengths(records, replies)
        hits = [self.sample_score(r, a) for r, a in zip(records, replies, strict=True)]
        by_duration: dict[str, list[float]] = defaultdict(list)
        for record, hit in zip(records, hits, strict=True):
            if record.meta.get("duration"):
                by_duration[str(record.meta["duration"])].append(hit)
        out = {"accuracy": 100.0 * sum(hits) / len(hits) if hits else 0.0}
        for duration, dh in sorted(by_duration.items()):
            out[f"accuracy/{duration}"] = 100.0 * sum(dh) / len(dh)
        out["n"] = float(len(hits))
        return out
