"""Answering prompts with a model and a K: the library behind ``vtw run``.

    from vtwcli.runner import Runner, RunSettings
    runner = Runner(RunSettings(profile="profiles/testbed.yaml"))
    print(runner.answer("What colour is the square?", images=["shapes.png"]).text)
    runner.run_batch("questions.jsonl", "answers.jsonl")

K comes from ``--k``, else from the profile (the named task's entry, else its default);
with neither, the model answers without withdrawal (method ``baseline``). Everything a user
can get wrong is checked before the model loads, where that is possible, and raised as a
:class:`vtwcli.errors.VTWError`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtwcli.errors import (
    InputFileError,
    KOutOfRangeError,
    OutputPathError,
    ProfileError,
    UsageError,
    VTWError,
    k_below_one,
)

RUN_METHODS = ("baseline", "vtw", "fastv", "fastv-mask")
DEFAULT_FRAMES = 8
DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class RunSettings:
    """What ``vtw run`` was asked for; None means "not given" (a profile or default fills it)."""

    model: str | None = None
    profile: str | os.PathLike | None = None
    task: str | None = None
    k: int | None = None
    method: str | None = None
    ratio: float = 0.5  # fastv, fastv-mask: share of vision tokens pruned at layer K
    dtype: str = "auto"
    device: str = "auto"
    attn: str = "sdpa"
    max_new_tokens: int | None = None  # None: the model's generation config, else DEFAULT_MAX_NEW_TOKENS
    frames: int = DEFAULT_FRAMES
    random_init: bool = False
    revision: str | None = None
    device_map: str | None = None  # "auto": spread one model's layers over the visible devices
    # "chat" or "vicuna_v1" (vtwcli.models.prompting); None: the style the profile was calibrated with, else chat
    prompt_style: str | None = None


TEXT_ONLY_NOTICE = (
    "no image or video given: answered as a text-only prompt by the plain model "
    "(no vision tokens, so nothing to withdraw)"
)


@dataclass
class Answer:
    text: str
    k: int | None
    method: str
    latency_s: float
    text_only: bool = False  # no image or video: the plain model answered, without the engine
    warnings: list[str] = field(default_factory=list)  # e.g. words the model's vocabulary lacks


@dataclass
class BatchSummary:
    total: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    warned: list[tuple[int, str]] = field(default_factory=list)  # (line number, warning): answered anyway
    output: Path | None = None
    world_size: int = 1  # data-parallel ranks that shared the lines

    @property
    def ok(self) -> int:
        return self.total - len(self.failed)


class Runner:
    """A loaded model with its withdrawal settings; answers one prompt, a chat, or a JSONL file."""

    def __init__(self, settings: RunSettings, loaded=None):
        self.settings = s = settings
        if s.method is not None and s.method not in RUN_METHODS:
            raise UsageError(f"--method must be one of {', '.join(RUN_METHODS)}, got {s.method!r}")
        if s.max_new_tokens is not None and s.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1, got {s.max_new_tokens}")
        if s.k is not None and s.k < 1:
            raise k_below_one("--k", s.k)
        if s.task is not None and s.profile is None:
            raise UsageError("--task picks a K from a profile; pass --profile too (or give --k)")
        self.profile = None
        self.task_name: str | None = None
        profile_method = None
        profile_path = s.profile
        if profile_path is None and s.k is None and s.method is None and not s.random_init:
            from vtwcli.profiles import default_profile_path

            profile_path = default_profile_path(s.model or "testbed")  # where `vtw calibrate` wrote K
        if profile_path is not None:
            from vtwcli.profiles import load_profile

            self.profile = load_profile(profile_path)
            self.task_name, entry = self.profile.entry(s.task)
            profile_method = entry.method
        self.method = s.method or (profile_method if profile_method in RUN_METHODS else None)
        if self.method is None:
            self.method = "vtw" if (s.k is not None or self.profile is not None) else "baseline"
        model_name = s.model
        if model_name is None and self.profile is not None:
            model_name = self.profile.model.alias or self.profile.model.id
        self.model_name = model_name or "testbed"
        from vtwcli.models.prompting import check_style, check_style_name

        style = s.prompt_style
        if style is None and self.profile is not None:
            style = (self.profile.entry(self.task_name)[1].calibration or {}).get("prompt_style")
        check_style_name(style)
        self.loaded = loaded if loaded is not None else self._load()
        self.prompt_style = check_style(style, getattr(self.loaded, "arch", None), self.model_name)
        self.k = self._pick_k()
        self.max_new_tokens = s.max_new_tokens or _model_max_new_tokens(self.loaded.model) or DEFAULT_MAX_NEW_TOKENS
        self._handle = None

    # -- set-up -----------------------------------------------------------------------
    def _load(self):
        from vtwcli.models import load_model, resolve

        s = self.settings
        resolve(self.model_name)  # unknown aliases fail here, before anything heavy
        _quiet_transformers()
        extra: dict[str, Any] = {"device_map": s.device_map} if s.device_map is not None else {}
        return load_model(
            self.model_name, dtype=s.dtype, device=s.device, attn=s.attn, random_init=s.random_init,
            revision=s.revision, **extra,
        )

    def _pick_k(self) -> int | None:
        n = self.loaded.num_layers
        s = self.settings
        if self.profile is not None:
            self.profile.check_model_layers(n)
            if self.profile.model.num_layers != n:
                raise ProfileError(
                    f"profile {self.profile.path} was made for {self.profile.model.alias or self.profile.model.id} "
                    f"({self.profile.model.num_layers} decoder layers), but {self.loaded.alias or self.loaded.model_id} "
                    f"has {n}; use a profile for this model or calibrate one with `vtw calibrate`"
                )
        if self.method == "baseline":
            return None
        if s.k is not None:
            k = s.k
        elif self.profile is not None:
            k = self.profile.k_for(self.task_name)
        elif self.method in ("fastv", "fastv-mask"):
            k = 2  # FastV's own default layer
        else:
            raise UsageError(f"--method {self.method} needs a K: pass --k or --profile")
        if not 1 <= k <= n:
            raise KOutOfRangeError(
                f"K={k} is outside 1..{n} for {self.loaded.alias or self.loaded.model_id} ({n} decoder layers)"
            )
        return k

    def _engine(self):
        """Attach the engine once and keep it for this runner's life (chat turns reuse it)."""
        if self.method == "baseline" or self._handle is not None:
            return
        from vtwcli.engine import apply

        self._handle = apply(self.loaded.model, self.k, method=self.method, ratio=self.settings.ratio)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- answering --------------------------------------------------------------------
    def _videos(self, videos) -> list:
        if not videos:
            return []
        if getattr(self.loaded.processor, "video_token", None) is None:
            raise UsageError(
                f"{self.loaded.alias or self.loaded.model_id} does not take videos; use a video model "
                "such as video-llava-7b or qwen2-vl-2b, or pass --image"
            )
        from vtwcli.models.video import sample_frames

        return [sample_frames(v, self.settings.frames) if isinstance(v, (str, Path)) else v for v in videos]

    def answer(self, prompt: str, images=None, videos=None) -> Answer:
        from vtwcli.data.images import load_images

        images = load_images(list(images or []))
        vids = self._videos(videos)
        text_only = not images and not vids
        warnings = self.word_warnings(prompt)
        if text_only:
            self.close()  # no vision tokens: the plain model answers (the engine is re-attached when needed)
        else:
            self._engine()
        t0 = time.perf_counter()
        inputs = self.loaded.prepare([prompt], images=[images], videos=[vids], style=self.prompt_style)
        text = self.loaded.generate(inputs, max_new_tokens=self.max_new_tokens)[0]
        _sync(self.loaded.device)
        return Answer(
            text=text, k=None if text_only else self.k, method="baseline" if text_only else self.method,
            latency_s=time.perf_counter() - t0, text_only=text_only, warnings=warnings,
        )  # fmt: skip

    @property
    def scope_notice(self) -> str | None:
        """What the model was trained on, when that is narrow enough to say (the testbed)."""
        from vtwcli.models.registry import TESTBED_SCOPE

        return TESTBED_SCOPE if self.loaded.alias == "testbed" else None

    def word_warnings(self, prompt: str) -> list[str]:
        """A warning naming the words of ``prompt`` the model's vocabulary does not have."""
        unknown = self.loaded.unknown_words(prompt)
        if not unknown:
            return []
        name = self.loaded.alias or self.loaded.model_id
        return [
            f"{name} does not know the word{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(w) for w in unknown)} (read as <unk>)"
        ]

    def stream(self, conversation: list[dict], images=None, videos=None) -> Iterator[str]:
        """Yield the reply to ``conversation`` piece by piece as tokens are generated."""
        from transformers import TextIteratorStreamer

        from vtwcli.data.images import load_images

        images = load_images(list(images or []))
        vids = self._videos(videos)
        self._engine()
        inputs = self.loaded.prepare_chat([conversation], [images], [vids], style=self.prompt_style)
        streamer = TextIteratorStreamer(self.loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work():
            try:
                self.loaded.generate(inputs, max_new_tokens=self.max_new_tokens, streamer=streamer)
            except BaseException as err:  # surfaced in the caller's thread below
                errors.append(err)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if errors:
            raise errors[0]

    # -- batch ------------------------------------------------------------------------
    def run_batch(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        on_line: Callable[[int, int], None] | None = None,
    ) -> BatchSummary:
        """Answer every line of ``input_path``; write ``output_path`` atomically when done.

        A line that is not a JSON object, lacks a prompt, or names a bad image is recorded
        with its line number (and an ``error`` field in the output) and the rest still run.
        """
        rows = read_prompts(input_path)
        out = check_output_path(output_path)
        results = [rec for _, rec in self.answer_rows(rows, range(len(rows)), on_line)]
        write_jsonl_atomic(out, results)
        return summarize_batch(results, out)

    def answer_rows(
        self,
        rows: list[tuple[int, dict[str, Any], str | None]],
        indices,
        on_line: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Answer ``rows[i]`` for each i in ``indices``: (i, output record) pairs, in order."""
        indices = list(indices)
        out: list[tuple[int, dict[str, Any]]] = []
        for n, i in enumerate(indices):
            lineno, row, problem = rows[i]
            if problem is None:
                try:
                    ans = self.answer(row["prompt"], images=row["images"], videos=row["videos"])
                except VTWError as err:
                    problem = str(err)
            record = {"line": lineno, **{k: v for k, v in row.get("raw", {}).items()}}
            if problem is None:
                record.update(answer=ans.text, k=ans.k, method=ans.method, latency_s=round(ans.latency_s, 4))
                if ans.warnings:
                    record["warnings"] = ans.warnings
                if ans.text_only:
                    record["note"] = TEXT_ONLY_NOTICE
            else:
                record.update(answer=None, k=self.k, method=self.method, error=problem)
            record["model"] = self.loaded.alias or self.loaded.model_id
            out.append((i, record))
            if on_line is not None:
                on_line(n + 1, len(indices))
        return out


def summarize_batch(results: list[dict[str, Any]], output: Path, world_size: int = 1) -> BatchSummary:
    summary = BatchSummary(total=len(results), output=output, world_size=world_size)
    summary.failed = [(rec["line"], rec["error"]) for rec in results if "error" in rec]
    summary.warned = [(rec["line"], w) for rec in results for w in rec.get("warnings", [])]
    return summary


def _model_max_new_tokens(model) -> int | None:
    gen = getattr(model, "generation_config", None)
    value = getattr(gen, "max_new_tokens", None)
    return int(value) if value else None


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# -- files ---------------------------------------------------------------------------------
def read_prompts(path: str | os.PathLike) -> list[tuple[int, dict[str, Any], str | None]]:
    """Parse a prompts JSONL file into (line number, row, problem-or-None), blank lines skipped.

    Each line: ``{"image": "a.png" | "images": [...], "video": "v.mp4", "prompt": "...", "id": ...}``
    (``question`` is accepted for ``prompt``); relative paths are relative to the JSONL file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"input file {p} does not exist" if not p.exists() else f"input {p} is not a file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"input file {p} cannot be read as UTF-8 text: {err}") from err
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append((lineno, {}, f"not valid JSON ({err.msg})"))
            continue
        if not isinstance(raw, dict):
            rows.append((lineno, {}, "not a JSON object"))
            continue
        prompt = raw.get("prompt", raw.get("question"))
        if not isinstance(prompt, str) or not prompt.strip():
            rows.append((lineno, {"raw": raw}, "no \"prompt\" text"))
            continue
        images = raw.get("images", [raw["image"]] if "image" in raw else [])
        videos = raw.get("videos", [raw["video"]] if "video" in raw else [])
        if not isinstance(images, list) or not isinstance(videos, list):
            rows.append((lineno, {"raw": raw}, "\"images\"/\"videos\" must be lists of paths"))
            continue
        rows.append(
            (lineno, {"raw": raw, "prompt": prompt, "images": [_rel(p, x) for x in images],
                      "videos": [_rel(p, x) for x in videos]}, None)
        )
    if not rows:
        raise InputFileError(f"input file {p} has no prompts (one JSON object per line)")
    return rows


def _rel(base: Path, item: Any) -> Any:
    if isinstance(item, str):
        q = Path(item).expanduser()
        return q if q.is_absolute() else base.parent / q
    return item


def check_output_path(path: str | os.PathLike) -> Path:
    """The answers file, checked before any model loads (nothing is created)."""
    from vtwcli.fileio import check_writable

    out = check_writable(path, "answers", example="answers.jsonl")
    if out is None:
        raise OutputPathError("--output - is not supported: give a file name such as answers.jsonl")
    return out


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    """Write all records or nothing: a temporary file beside ``path``, fsynced, then renamed."""
    from vtwcli.fileio import write_atomic

    write_atomic(path, "".join(json.dumps(rec, ensure_ascii=False, default=str) + "\n" for rec in records))


# -- one-call helpers (what the CLI calls) ---------------------------------------------------
def answer(prompt: str, images=None, videos=None, settings: RunSettings | None = None) -> Answer:
    """Answer one prompt; bad image/video paths fail before the model loads."""
    from vtwcli.models.loading import check_image_file

    for img in images or []:
        if isinstance(img, (str, Path)):
            check_image_file(img)
    from vtwcli.models.video import check_video_file

    for vid in videos or []:
        if isinstance(vid, (str, Path)):
            check_video_file(vid)
    with Runner(settings or RunSettings()) as runner:
        return runner.answer(prompt, images=images, videos=videos)


def run_batch(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    settings: RunSettings | None = None,
    on_line: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
    dist: Any = None,
    on_ready: Callable[[Runner], None] | None = None,
) -> BatchSummary | None:
    """Answer a prompts JSONL file into ``output_path``; the files are checked before the model loads.

    Under ``torchrun``/``accelerate launch`` (or with ``dist``) each rank answers a strided
    share of the lines on its own device and rank 0 writes the whole file, in input order
    (the same file one process writes, but for latencies); other ranks return None.
    ``on_ready(runner)`` is called on rank 0 once the model is loaded, ``on_line(done,
    total)`` on rank 0 after each of its own lines.
    """
    import dataclasses

    from vtwcli.distributed import context, merge_shards, run_sharded

    rows = read_prompts(input_path)
    out = check_output_path(output_path)
    ctx = dist if dist is not None else context()
    settings = settings or RunSettings()
    if settings.device_map is not None and ctx.enabled:
        raise UsageError(
            "--device-map splits one model over the devices; under torchrun/accelerate launch each rank "
            "already has its own device. Use one or the other"
        )
    if ctx.enabled and runner is None:
        settings = dataclasses.replace(settings, device=ctx.device(settings.device))
    made: list[Runner] = []

    def work() -> list[tuple[int, dict[str, Any]]]:
        r = runner
        if r is None:
            r = Runner(settings)
            made.append(r)
        if on_ready is not None and ctx.is_main:
            on_ready(r)
        return r.answer_rows(rows, ctx.shard_indices(len(rows)), on_line if ctx.is_main else None)

    try:
        shares = run_sharded(ctx, work)
    finally:
        for r in made:
            r.close()
    if shares is None:
        return None
    results = merge_shards(shares)
    if len(results) != len(rows):
        raise RuntimeError(f"gathered {len(results)} answers for {len(rows)} lines; a rank lost some")
    write_jsonl_atomic(out, results)
    return summarize_batch(results, out, ctx.world_size)
