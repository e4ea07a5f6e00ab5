"""The comparison runner behind ``vtw bench`` and ``vtwcli.bench.bench``.

:func:`bench` is four stages, each a function that can be called (and tested) alone:

1. :func:`plan` checks every option and reads the profile; nothing heavy is loaded.
2. :func:`load` loads the model, resolves K, builds one :class:`MethodSpec` per table row and
   the samples with their generation settings (:class:`Setup`).
3. :func:`measure` warms up (not counted), then for each group of samples runs every row once,
   round-robin (the starting row rotates so no method always runs first). Each timed run is one
   ordinary greedy ``generate()`` call with identical settings; only the engine attached around
   it differs, and nothing but the device synchronization of the step clock runs inside the
   timed region. Device memory is measured afterwards in a separate, untimed pass.
   Out of memory in one row ends that row (with the reason) and the others go on.
4. :func:`summarize` turns the per-sample outcomes into table rows and a :class:`BenchResult`.

Under a data-parallel launcher stages 2-3 run on every rank over its share of the samples and
rank 0 summarizes the union.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import platform
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vtwcli.bench.flops import prefill_tflops
from vtwcli.bench.kvcache import cache_bytes, layer_seq_lengths
from vtwcli.bench.memory import MemoryMeter, SampleMemory
from vtwcli.bench.paired import paired_block
from vtwcli.bench.result import BenchResult, MethodRow
from vtwcli.bench.timing import Stat, StepClock, model_devices
from vtwcli.errors import KOutOfRangeError, UsageError, k_below_one

METHODS = ("baseline", "fastv", "fastv-mask", "vtw", "rand", "noimage", "white", "random-k")
DEFAULT_METHODS = ("baseline", "fastv", "vtw")
# The paper's ablations as rows (Tables 1 and 2): what each one runs.
#   noimage   the prompt with its image removed: no vision tokens at all (Table 1a)
#   white     the image replaced by a white one of the same size, withdrawn at K (Table 1b)
#   random-k  VTW at a K drawn per sample from a range, seeded (Table 2's VTW†)
#   rand      as many random prompt tokens dropped at K as there are vision tokens (Table 2's Rand)
# fastv-mask is FastV's own masking implementation (the source of the paper's FastV memory
# figures): fastv's K, R and kept set, every token computed and cached, the pruned ones masked.
K_METHODS = ("vtw", "rand", "white")  # one row per K of a --k list
FASTV_ROWS = ("fastv", "fastv-mask")  # rows run at --fastv-k, --fastv-ratio
ENGINE_OF = {"fastv": "fastv", "fastv-mask": "fastv-mask", "vtw": "vtw", "rand": "rand", "white": "vtw", "random-k": "vtw"}
INPUTS_OF = {"noimage": "none", "white": "white"}  # every other row gets the sample's own image
DEFAULT_LIMIT = 40  # task samples when --limit is not given (the testbed's task runs in about a minute)
DEFAULT_SYNTHETIC_SAMPLES = 8
DEFAULT_SYNTHETIC_NEW_TOKENS = 32
TESTBED_LATENCY_NOTE = (
    "the testbed's latencies are overhead-bound (6 layers of width 128, ~100-token prompts): its "
    "prefill ratio stays near 1 whatever the FLOPs; `vtw bench --model llava-1.5-7b --random-init "
    "--shrink` shows the speed-up on a real model's token geometry on a CPU"
)
DEFAULT_SHRUNK_NEW_TOKENS = 8  # --shrink is about prefill; a short reply keeps the run under a minute on 2 cores
# LLaVA-1.5's prompts on MME average 641.4 tokens with 576 vision tokens (the paper's FLOPs
# setting): about 65 text tokens, which is what synthetic prompts aim for (the chat template adds a few).
SYNTHETIC_PROMPT_WORDS = 60
SYNTHETIC_IMAGE_SIZE = (640, 480)  # width, height: a typical COCO photo (sets LLaVA-NeXT's anyres count)

ProgressFn = Callable[[int, int, str], None]


@dataclass
class MethodSpec:
    """One table row: which engine method runs, with which K and ratio.

    ``label`` names the row (default: the method's name); rows are keyed by it everywhere, so
    two rows of the same method (VTW at two K values) can sit side by side.
    """

    name: str
    k: int | None = None
    ratio: float | None = None
    seed: int = 0
    label: str | None = None
    k_range: tuple[int, int] | None = None  # random-k: K drawn per sample from lo..hi (inclusive)
    positions: str = "keep"  # the engine's position policy for layers >= K (keep or rearrange)

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def prunes(self) -> bool:
        """Whether this row must remove tokens from layers >= K (checked on every sample)."""
        return self.name in ENGINE_OF

    @property
    def inputs(self) -> str:
        """Which version of the sample this row runs on: ``image``, ``none`` or ``white``."""
        return INPUTS_OF.get(self.name, "image")

    def at(self, index: int) -> MethodSpec:
        """This row as run on sample ``index``: random-k draws its K there (the same on every rank)."""
        if self.k_range is None:
            return self
        lo, hi = self.k_range
        k = random.Random(self.seed * 1_000_003 + index).randint(lo, hi)
        return MethodSpec(self.name, k=k, ratio=self.ratio, seed=self.seed, label=self.label, positions=self.positions)

    def engine(self, model):
        """A context manager attaching this row's engine; yields its handle (None without one)."""
        if self.name not in ENGINE_OF:
            return contextlib.nullcontext()
        from vtwcli.engine import withdraw

        method = ENGINE_OF[self.name]
        kwargs: dict[str, Any] = {"method": method, "seed": self.seed}
        if method in FASTV_ROWS:
            kwargs["ratio"] = self.ratio
        if self.positions != "keep":
            kwargs["positions"] = self.positions
        return withdraw(model, self.k, **kwargs)


@dataclass
class Sample:
    id: str
    prompt: str
    record: Any = None  # vtwcli.data.base.Record, None for synthetic inputs
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)


@dataclass
class RunOutcome:
    """One row's method on one sample."""

    reply: str
    token_ids: list[int]
    prompt_tokens: int
    vision_tokens: int
    prefill_s: float | None
    decode_s_per_token: float | None
    total_s: float
    kv_bytes: int
    kv_layer_tokens: list[int]
    memory: SampleMemory = field(default_factory=SampleMemory)
    kept_tokens: int | None = None  # tokens layers >= K saw (fastv-mask: attended to), the engine's count; None for the baseline
    k: int | None = None  # the K this run withdrew at (random-k draws one per sample)
    n_layers: int | None = None
    vision_start: int | None = None  # position of the first vision token in the (unpadded) prompt


# ---------------------------------------------------------------- stage 1: plan


@dataclass
class BenchPlan:
    """Every option of one bench run, checked; the profile read. Nothing is loaded yet."""

    model: Any
    methods: tuple[str, ...]
    data: str | None = None
    data_path: str | None = None
    split: str | None = None
    k: int | None = None
    ks: tuple[int, ...] | None = None  # a --k list: one row per K for vtw, rand and white
    k_range: tuple[int, int] | None = None  # random-k's range (default: scaled from [8, 24] of 32 layers)
    positions: tuple[str, ...] = ("keep",)  # position policies of the withdrawing rows (one row each)
    profile: Any = None  # path as given (or the default profiles/<model>.yaml)
    prof: Any = None  # the loaded vtwcli.profiles.Profile
    task: str | None = None
    fastv_k: int | None = None  # None: FastV's paper K (2), or the nearest K the engine accepts for the model
    fastv_ratio: float = 0.5
    limit: int | None = None
    subset: str = "random"  # how --limit picks task samples: "random" (stratified, seeded) or "first"
    random_init: bool = False
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    warmup: int = 1
    dtype: str = "auto"
    device: str = "auto"
    attn: str = "sdpa"
    log_samples: bool = False
    seed: int = 0
    image_size: tuple[int, int] = SYNTHETIC_IMAGE_SIZE
    prompt_words: int | None = None  # synthetic text words (None: the prompt style's default)
    prompt_style: str = "chat"  # "chat" (the processor's template) or "vicuna_v1" (vtwcli.models.prompting)
    device_map: str | None = None
    judge_url: str | None = None  # MMBench: OpenAI-compatible judge for replies the rule cannot read
    judge_model: str | None = None
    batch_size: int = 1  # samples per generate() call (left-padded)
    memory_budget: int | None = None  # bytes: the max-batch search mode (see vtwcli.bench.throughput)
    repeats: int = 3  # timed rounds at each row's max batch (memory-budget mode)
    shrink: bool = False  # random-init: the real token geometry with a small decoder (vtwcli.models.shrink)

    @property
    def needs_k(self) -> bool:
        return any(m in K_METHODS for m in self.methods)

    @property
    def task_name(self) -> str | None:
        return None if self.random_init else (self.data or "shapes")


def parse_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m).strip() for m in methods]
    items = [m for m in items if m]
    if not items:
        raise UsageError(f"no method given; choose from {', '.join(METHODS)} (e.g. --methods baseline,vtw)")
    unknown = [m for m in items if m not in METHODS]
    if unknown:
        raise UsageError(
            f"unknown method {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)} "
            "(e.g. --methods baseline,fastv,vtw)"
        )
    dupes = sorted({m for m in items if items.count(m) > 1})
    if dupes:
        raise UsageError(f"method {', '.join(dupes)} is listed twice in --methods")
    return tuple(items)


def _check_positive(name: str, value: int | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        low = "0 or more" if allow_zero else "at least 1"
        raise UsageError(f"{name} must be an integer {low}, got {value!r}")


def parse_k_list(value: Any) -> tuple[int, ...] | None:
    """``--k``: one K, a list ("2,4,8,16"), a range ("1-6", inclusive) or a mix; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise KOutOfRangeError(f"--k must be a whole number (a layer count), got {value!r}")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = []
        for part in str(value).split(","):
            part = part.strip()
            lo, dash, hi = part.partition("-")
            try:
                a, b = (int(lo), int(hi)) if dash else (int(part), int(part))
            except ValueError:
                raise KOutOfRangeError(
                    f"--k takes a layer count, a list or a range (16, 2,4,8,16 or 1-6), got {str(value)!r}"
                ) from None
            if b < a:
                raise KOutOfRangeError(f"--k range {part!r} runs backwards; write it as {b}-{a}")
            items.extend(range(a, b + 1))
    if not items:
        raise KOutOfRangeError("--k is empty; give a layer count, a list or a range (16, 2,4,8,16 or 1-6)")
    for k in items:
        if isinstance(k, bool) or not isinstance(k, int):
            raise KOutOfRangeError(f"--k must be a whole number (a layer count), got {k!r}")
        if k < 1:
            raise k_below_one("--k", k)
    dupes = sorted({k for k in items if items.count(k) > 1})
    if dupes:
        raise KOutOfRangeError(f"--k lists K={', '.join(map(str, dupes))} twice")
    return tuple(items)


def parse_k_range(value: Any) -> tuple[int, int] | None:
    """random-k's ``--k-range`` ("8-24", inclusive); None stays None (the scaled default)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = value
    else:
        a, dash, b = str(value).partition("-")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            lo = hi = None
        if not dash or lo is None:
            raise KOutOfRangeError(f"--k-range takes two layer counts as lo-hi (such as 8-24), got {str(value)!r}")
    if isinstance(lo, bool) or not isinstance(lo, int) or not isinstance(hi, int) or lo < 1 or hi < lo:
        raise KOutOfRangeError(f"--k-range must be lo-hi with 1 <= lo <= hi, got {value!r}")
    return (lo, hi)


def parse_positions(value: Any) -> tuple[str, ...]:
    """``--positions``: keep, rearrange or both ("keep,rearrange": one row per policy)."""
    from vtwcli.engine.positions import POLICIES

    if value is None:
        return ("keep",)
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    bad = [v for v in items if v not in POLICIES]
    if not items or bad:
        raise UsageError(
            f"--positions takes keep, rearrange or keep,rearrange (the position embeddings of the tokens layers "
            f">= K keep), got {value!r}"
        )
    if len(set(items)) != len(items):
        raise UsageError(f"--positions lists a policy twice: {value!r}")
    return tuple(items)


def default_k_range(n_layers: int) -> tuple[int, int]:
    """The paper's VTW† range [8, 24] of 32 layers, scaled to ``n_layers`` (1..N)."""
    lo = max(1, int(n_layers * 8 / 32 + 0.5))
    hi = min(n_layers, max(lo, int(n_layers * 24 / 32 + 0.5)))
    return lo, hi


def _check_k(name: str, k: int, n: int, model_name: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise KOutOfRangeError(
            f"{name}={k!r} is outside 1..{n}: {model_name} has {n} decoder layers and K counts the layers "
            f"that still see the vision tokens (K={n} withdraws nothing); pick a K in 1..{n}"
        )


def plan(
    model: Any = "testbed",
    *,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    k: int | None = None,
    profile: Any = None,
    fastv_k: int | None = None,
    fastv_ratio: float = 0.5,
    limit: int | None = None,
    random_init: bool = False,
    max_new_tokens: int | None = None,
    min_new_tokens: int | None = None,
    warmup: int = 1,
    prompt_words: int | None = None,
    data: str | None = None,
    data_path: str | None = None,
    batch_size: int = 1,
    memory_budget: str | int | None = None,
    repeats: int = 3,
    **rest: Any,
) -> BenchPlan:
    """Stage 1: check every option a user can get wrong, before anything heavy is loaded."""
    chosen = parse_methods(methods)
    _check_positive("--batch-size", batch_size)
    _check_positive("--repeats", repeats)
    budget = None
    if memory_budget is not None:
        from vtwcli.bench.budget import parse_memory_budget

        budget = parse_memory_budget(memory_budget)
        if batch_size != 1:
            raise UsageError(
                "--memory-budget searches the largest batch that fits for each method; drop --batch-size "
                "(or drop --memory-budget to time one fixed batch size)"
            )
        if rest.get("device_map") is not None:
            raise UsageError("--memory-budget measures one device; it cannot be combined with --device-map")
    if (batch_size != 1 or budget is not None) and "random-k" in chosen:
        raise UsageError(
            "random-k draws its K per sample, so its samples cannot share a batch; drop random-k from "
            "--methods or run with --batch-size 1"
        )
    _check_positive("--limit", limit)
    _check_positive("--max-new-tokens", max_new_tokens)
    _check_positive("--min-new-tokens", min_new_tokens)
    if min_new_tokens is not None and max_new_tokens is not None and min_new_tokens > max_new_tokens:
        raise UsageError(
            f"--min-new-tokens {min_new_tokens} is more than --max-new-tokens {max_new_tokens}; "
            "set them equal to force every reply to the same length"
        )
    _check_positive("--warmup", warmup, allow_zero=True)
    _check_positive("--prompt-words", prompt_words)
    ks = parse_k_list(k)
    k = ks[0] if ks else None
    k_range = parse_k_range(rest.pop("k_range", None))
    position_policies = parse_positions(rest.pop("positions", None))
    if any(m in chosen for m in FASTV_ROWS) and fastv_k is not None and (isinstance(fastv_k, bool) or not isinstance(fastv_k, int) or fastv_k < 1):
        raise k_below_one("--fastv-k", fastv_k)
    if not isinstance(fastv_ratio, (int, float)) or not 0.0 <= float(fastv_ratio) <= 1.0:
        raise UsageError(f"--fastv-ratio is the share of vision tokens FastV prunes: it must be in 0..1, got {fastv_ratio!r}")
    from vtwcli.data.loading import check_order
    from vtwcli.models.prompting import check_style_name

    check_order(rest.get("subset", "random"))
    rest["prompt_style"] = check_style_name(rest.get("prompt_style"))
    if rest.get("shrink") and not random_init:
        raise UsageError(
            "--shrink builds a small random-weight copy of the architecture; add --random-init "
            "(real weights cannot be shrunk)"
        )
    if random_init and (data is not None or data_path is not None):
        raise UsageError(
            "--random-init measures speed and memory on synthetic inputs (random weights cannot "
            "answer questions); drop --data/--data-path, or drop --random-init to use real weights"
        )
    judge_url, judge_model = rest.get("judge_url"), rest.get("judge_model")
    if judge_url is not None or judge_model is not None:
        if judge_url is None or judge_model is None:
            raise UsageError("the MMBench judge needs both --judge-url and --judge-model")
        if random_init or (data or "shapes").strip().lower() != "mmbench":
            raise UsageError(
                "--judge-url/--judge-model send MMBench replies lmms-eval's rule cannot read to a judge; "
                "they apply to --data mmbench only"
            )
    prof = None
    if profile is None and k is None and not random_init and isinstance(model, str):
        from vtwcli.profiles import default_profile_path

        profile = default_profile_path(model)  # where `vtw calibrate` wrote this model's K
    if profile is not None:
        from vtwcli.profiles import load_profile

        prof = load_profile(profile)
    return BenchPlan(
        model=model, methods=chosen, k=k, ks=ks, k_range=k_range, positions=position_policies, profile=profile,
        prof=prof, fastv_k=fastv_k,
        fastv_ratio=float(fastv_ratio), limit=limit, random_init=random_init, max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens, warmup=warmup, prompt_words=prompt_words, data=data, data_path=data_path,
        batch_size=batch_size, memory_budget=budget, repeats=repeats, **rest,
    )  # fmt: skip


# ---------------------------------------------------------------- stage 2: load


@dataclass
class Setup:
    """A loaded model with the rows to run, the samples and the generation settings."""

    loaded: Any
    specs: list[MethodSpec]
    samples: list[Sample]
    task: Any  # a vtwcli.data Task, None for synthetic inputs
    gen: dict[str, Any]
    task_info: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    k: int | None = None  # VTW's K after the profile / default was applied
    entry_task: str | None = None  # the profile's task entry K came from
    prompt_style: str = "chat"

    @property
    def name(self) -> str:
        return self.loaded.alias or self.loaded.model_id

    def inputs(self, i: int, variant: str = "image"):
        """Sample ``i``'s model inputs, its images or video decoded now (not up front).

        ``variant``: ``image`` (as the task gives it), ``none`` (the image removed: the prompt
        alone) or ``white`` (each image, or video frame, replaced by white of the same size).
        """
        s = self.samples[i]
        images, videos = s.images, s.videos
        if s.record is not None and self.task is not None:
            images, videos = list(self.task.images(s.record)), list(_videos(self.task, s.record))
        if variant == "none":
            images, videos = [], []
        elif variant == "white":
            images, videos = [_white_like(x) for x in images], [_white_like(v) for v in videos]
        return self.loaded.prepare(s.prompt, images=images or None, videos=videos or None, style=self.prompt_style)

    def batch_inputs(self, indices: Sequence[int], variant: str = "image"):
        """One left-padded batch of the samples ``indices`` (one row each, in that order)."""
        if len(indices) == 1:
            return self.inputs(indices[0], variant)
        prompts, images, videos = [], [], []
        for i in indices:
            s = self.samples[i]
            imgs, vids = s.images, s.videos
            if s.record is not None and self.task is not None:
                imgs, vids = list(self.task.images(s.record)), list(_videos(self.task, s.record))
            if variant == "none":
                imgs, vids = [], []
            elif variant == "white":
                imgs, vids = [_white_like(x) for x in imgs], [_white_like(v) for v in vids]
            prompts.append(s.prompt)
            images.append(list(imgs))
            videos.append(list(vids))
        return self.loaded.prepare(
            prompts, images=images if any(images) else None, videos=videos if any(videos) else None,
            style=self.prompt_style,
        )


def load(p: BenchPlan, *, device: str | None = None) -> Setup:
    """Stage 2: load the model (``device`` overrides the plan's: a data-parallel rank's own)."""
    loaded = _load(
        p.model, dtype=p.dtype, device=device or p.device, attn=p.attn, random_init=p.random_init,
        device_map=p.device_map, shrink=p.shrink,
    )  # fmt: skip
    from vtwcli.models.prompting import check_style

    check_style(p.prompt_style, loaded.arch, loaded.alias or loaded.model_id)
    specs, k, entry_task, notices = resolve_specs(p, int(loaded.num_layers), loaded.alias or loaded.model_id,
                                                  model=loaded.model)  # fmt: skip
    if getattr(loaded, "shrunk", None) is not None:
        notices.insert(0, f"shrunk: {loaded.shrunk.describe()}")
    if loaded.alias == "testbed":
        notices.append(TESTBED_LATENCY_NOTE)
    samples, the_task, gen, task_info, more = load_samples(p, loaded)
    return Setup(
        loaded=loaded, specs=specs, samples=samples, task=the_task, gen=gen, task_info=task_info,
        notices=notices + more, k=k, entry_task=entry_task, prompt_style=p.prompt_style,
    )  # fmt: skip


FASTV_PAPER_K = 2  # FastV's own default (K=2, R=50%)


def _accepted(model, method: str) -> list[int] | None:
    """The Ks the engine accepts for the loaded ``model`` (None: no model, or one the engine has no
    record for; it then refuses with its own message when the row runs)."""
    if model is None:
        return None
    from vtwcli.engine import accepted_ks
    from vtwcli.errors import VTWError

    try:
        return accepted_ks(model, method) or None
    except VTWError:
        return None


def _default_k(model, preferred: int, method: str) -> int:
    """``preferred``, or the nearest K the engine accepts for the loaded ``model`` (see
    vtwcli.engine.default_k); ``preferred`` when there is no model or no record for it."""
    if model is None:
        return preferred
    from vtwcli.engine import default_k
    from vtwcli.errors import VTWError

    try:
        return default_k(model, preferred, method)
    except VTWError:
        return preferred


def resolve_specs(
    p: BenchPlan, n_layers: int, name: str, model: Any = None
) -> tuple[list[MethodSpec], int | None, str | None, list[str]]:
    """The rows to run: K from ``--k`` (one row per K of a list for vtw, rand and white), else the
    profile, else half the layers (with a notice); random-k's range from ``--k-range`` or scaled.
    Defaults the user did not give (VTW's half, FastV's K=2, random-k's range) move to the Ks the
    engine accepts for the loaded ``model`` (hybrid decoders refuse K before their first attention
    layer; FastV needs layer K-1 to attend)."""
    notices: list[str] = []
    k, entry_task = p.k, None
    k_profile = None
    if p.prof is not None:
        p.prof.check_model_layers(n_layers)
        if p.task is not None:  # asked for by name: a missing entry is an error
            entry_task, _ = p.prof.entry(p.task)
        elif p.task_name in p.prof.tasks:
            entry_task = p.task_name
        else:
            entry_task, _ = p.prof.entry(None)
        k_profile = p.prof.k_for(entry_task)
    if k is None and p.needs_k:
        if k_profile is not None:
            k = k_profile
            notices.append(f"K={k} from profile {p.profile} (task {entry_task})")
        else:
            half = max(1, n_layers // 2)
            k = _default_k(model, half, "vtw")
            why = (f"half of {n_layers} layers, the paper's choice for LLaVA-1.5-7B" if k == half else
                   f"the K nearest half of {n_layers} layers ({half}) that this model accepts")
            notices.append(
                f"no --k or --profile given: VTW runs with K={k} ({why}); run `vtw calibrate --model {name}` to pick "
                "K for your task"
            )  # fmt: skip
    ks = list(p.ks) if p.ks and len(p.ks) > 1 else ([k] if k is not None else [])
    if p.needs_k:
        bad = [each for each in ks if not 1 <= each <= n_layers]
        if len(bad) > 1:
            raise KOutOfRangeError(
                f"--k={','.join(map(str, bad))} are outside 1..{n_layers}: {name} has {n_layers} decoder layers and K "
                f"counts the layers that still see the vision tokens (K={n_layers} withdraws nothing); pick K in 1..{n_layers}"
            )
        for each in ks:
            _check_k("--k", each, n_layers, name)
    fastv_k = p.fastv_k
    fastv_rows = [m for m in FASTV_ROWS if m in p.methods]
    if fastv_rows:
        if fastv_k is None:
            # one K for both rows (the same kept set): the nearest K that every FastV row accepts
            fastv_k = _default_k(model, FASTV_PAPER_K, fastv_rows[-1])
        _check_k("--fastv-k", fastv_k, n_layers, name)
        if "fastv-mask" in p.methods and p.fastv_k is None and fastv_k >= n_layers:
            raise UsageError(
                f"fastv-mask masks the pruned tokens out of the attention of layers >= K, and {name} accepts no K "
                f"below {n_layers} for it (layers after its last attention-free layer must all attend); drop "
                "fastv-mask from --methods or pass --fastv-k"
            )
    k_range = None
    if "random-k" in p.methods:
        k_range = p.k_range or default_k_range(n_layers)
        accepted = _accepted(model, "vtw") if p.k_range is None else None
        if accepted and k_range[0] < accepted[0]:  # draw only Ks past a hybrid's first attention layer
            k_range = (accepted[0], max(k_range[1], accepted[0]))
        for each in k_range:
            _check_k("--k-range", each, n_layers, name)
        if p.k_range is None:
            notices.append(f"random-k drew K per sample from {k_range[0]}..{k_range[1]} (the paper's 8..24 of 32 "
                           f"layers, scaled to {n_layers}); --k-range to change it")  # fmt: skip
    specs = []
    for m in p.methods:
        if m in ("baseline", "noimage"):
            specs.append(MethodSpec(m))
        elif m in FASTV_ROWS:
            specs.append(MethodSpec(m, k=fastv_k, ratio=p.fastv_ratio, seed=p.seed))
        else:
            for policy in p.positions:
                # rows that renumber positions say so in their name; keep is the engine's default
                tag = "" if policy == "keep" else f"+{policy}"
                if m == "random-k":
                    specs.append(MethodSpec(m, seed=p.seed, k_range=k_range, positions=policy, label=f"{m}{tag}"))
                elif len(ks) > 1:
                    specs.extend(MethodSpec(m, k=each, seed=p.seed, label=f"{m}@{each}{tag}", positions=policy)
                                 for each in ks)  # fmt: skip
                else:
                    specs.append(MethodSpec(m, k=k, seed=p.seed, label=f"{m}{tag}", positions=policy))
    if fastv_rows:
        moved = (f" (FastV's own K={FASTV_PAPER_K} is refused for this model; {fastv_k} is the nearest K the "
                 "engine accepts)" if p.fastv_k is None and fastv_k != FASTV_PAPER_K else "")
        notices.append(
            f"FastV ran with K={fastv_k}, R={p.fastv_ratio:g}{moved}; the paper's Table 2 FastV TFLOPs match "
            "K=3, R=0.5 for 13B and NeXT, and no single K for 7B"
        )  # fmt: skip
    if "fastv-mask" in p.methods:
        notices.append(
            "fastv-mask is FastV's masking implementation: every token is computed and cached in every layer "
            "(its FLOPs are the baseline's), the pruned vision tokens are only masked out as keys; the paper's "
            "FastV FLOPs are the in-place figure (the fastv row), its FastV memory figures this row's"
        )  # fmt: skip
    return specs, (k if p.needs_k else None), entry_task, notices


def load_samples(p: BenchPlan, loaded) -> tuple[list[Sample], Any, dict[str, Any], dict[str, Any], list[str]]:
    """The samples (synthetic with ``random_init``, else the task's), generate() kwargs, task info."""
    notices: list[str] = []
    if p.random_init:
        the_task = None
        n = p.limit if p.limit is not None else DEFAULT_SYNTHETIC_SAMPLES
        words = p.prompt_words if p.prompt_words is not None else synthetic_words(p.prompt_style)
        samples = _synthetic_samples(loaded, n, seed=p.seed, image_size=p.image_size, words=words)
        new_tokens = p.max_new_tokens or (DEFAULT_SHRUNK_NEW_TOKENS if p.shrink else DEFAULT_SYNTHETIC_NEW_TOKENS)
        if p.min_new_tokens is not None and p.min_new_tokens > new_tokens:
            raise UsageError(f"--min-new-tokens {p.min_new_tokens} is more than max_new_tokens {new_tokens}")
        gen: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": p.min_new_tokens or new_tokens}
        task_info: dict[str, Any] = {
            "name": "synthetic",
            "source": {"dataset_id": "synthetic", "image_size": list(p.image_size), "prompt_words": words},
            "samples": len(samples),
            "has_answers": False,
        }
        notices.append(
            "random weights: speed and memory only; every reply is forced to max_new_tokens tokens "
            "and accuracy is n/a (agreement compares generated tokens)"
        )
    else:
        from vtwcli.data import get_task

        name = p.task_name
        judge = {"judge_url": p.judge_url, "judge_model": p.judge_model} if p.judge_url else {}
        the_task = get_task(name, path=p.data_path, split=p.split, limit=p.limit or DEFAULT_LIMIT, seed=p.seed,
                            order=p.subset, **judge)  # fmt: skip
        if len(the_task) == 0:
            raise UsageError(f"task {name!r} gave no samples to benchmark; check --data-path/--split")
        # Images and videos are decoded per sample when it runs (MME, AI2D are gigabytes).
        samples = [Sample(str(r.id), the_task.prompt(r), r) for r in the_task.records]
        gen = dict(the_task.generation.generate_kwargs())
        if p.max_new_tokens is not None:
            gen["max_new_tokens"] = p.max_new_tokens
        if p.min_new_tokens is not None:
            if p.min_new_tokens > gen["max_new_tokens"]:
                raise UsageError(
                    f"--min-new-tokens {p.min_new_tokens} is more than the task's max_new_tokens "
                    f"{gen['max_new_tokens']}; lower it or raise --max-new-tokens"
                )
            gen["min_new_tokens"] = p.min_new_tokens
        task_info = {
            "name": getattr(the_task, "name", name) or name,
            "source": the_task.source.to_dict(),
            "samples": len(samples),
            "has_answers": any(r.answer is not None for r in the_task.records),
            "selection": the_task.source.selection,
            "subset": p.subset,
            "sample_ids": [s.id for s in samples],
        }
        if p.judge_url:
            task_info["judge"] = {"url": p.judge_url, "model": p.judge_model}
    tok = loaded.tokenizer
    if getattr(tok, "pad_token_id", None) is not None:
        gen["pad_token_id"] = tok.pad_token_id
    gen["do_sample"], gen["num_beams"] = False, 1
    return samples, the_task, gen, task_info, notices


# ---------------------------------------------------------------- stage 3: measure


@dataclass
class Measured:
    """What one process measured: per row key, one outcome per sample (None where not run)."""

    outcomes: dict[str, list[RunOutcome | None]]
    errors: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    # per row key, one entry per generate() call: {"samples": [indices], "seconds", "new_tokens"}
    batches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def measure(
    setup: Setup,
    indices: Sequence[int],
    *,
    meter: Any,
    warmup: int = 1,
    progress: ProgressFn | None = None,
    where: str = "",
    batch_size: int = 1,
) -> Measured:
    """Stage 3: warm up, then time every row on each sample of ``indices``, then measure memory.

    With ``batch_size`` B the samples go in consecutive groups of B, one left-padded
    ``generate()`` call per group and row (each sample's latency is its call's). Rows run
    round-robin per group, the first row rotating with the group index (the sample index
    when B = 1). ``meter`` is
    a :class:`MemoryMeter` (or anything with its interface); it is only ever called in the
    memory pass, after every timed run, so no allocator call or NVML poll can land in a timed
    region. A row that runs out of memory stops there; the others go on.
    """
    import torch

    specs, samples = setup.specs, setup.samples
    indices = list(indices)
    groups = [indices[j:j + batch_size] for j in range(0, len(indices), batch_size)]
    total_runs = len(groups) * len(specs)
    cached: dict[tuple[tuple[int, ...], str], Any] = {}

    def inputs_for(group: Sequence[int], variant: str = "image"):
        key = tuple(group)
        if not any(k[0] == key for k in cached):
            cached.clear()  # one group's tensors at a time on the device
        if (key, variant) not in cached:
            cached[(key, variant)] = setup.batch_inputs(key, variant)
        return cached[(key, variant)]

    def run(spec: MethodSpec, group: Sequence[int]) -> list[RunOutcome]:
        inputs = inputs_for(group, spec.inputs)
        if batch_size == 1:
            return [_run_one(setup.loaded, spec.at(group[0]), inputs, setup.gen)]
        return _run_batch(setup.loaded, spec, inputs, setup.gen)

    for w in range(warmup if groups else 0):
        for spec in specs:
            if progress:
                progress(0, total_runs, f"warm-up {spec.key}")
            with contextlib.suppress(torch.OutOfMemoryError):
                run(spec, groups[w % len(groups)])

    outcomes: dict[str, list[RunOutcome | None]] = {s.key: [None] * len(samples) for s in specs}
    batches: dict[str, list[dict[str, Any]]] = {s.key: [] for s in specs}
    errors: dict[str, str] = {}
    notices: list[str] = []
    done = 0
    for g, group in enumerate(groups):
        i = group[0]
        turn = i if batch_size == 1 else g
        order = specs[turn % len(specs):] + specs[: turn % len(specs)]
        what = f"sample {i + 1}/{len(samples)}" if batch_size == 1 else f"batch {g + 1}/{len(groups)}"
        for spec in order:
            if spec.key in errors:
                done += 1
                continue
            if progress:
                progress(done, total_runs, f"{what} {spec.key}")
            try:
                got = run(spec, group)
            except torch.OutOfMemoryError as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else "CUDA out of memory"
                place = f"sample {i + 1}" if batch_size == 1 else f"batch {g + 1} (samples {i + 1}..{group[-1] + 1})"
                errors[spec.key] = f"out of memory on {place}: {first[:200]}"
                notices.append(f"{spec.key}: {errors[spec.key]}{where}; its row covers the samples before")
                _free(meter)
            else:
                problems = (not_pruned(spec.at(j), o, j) for o, j in zip(got, group, strict=True))
                problem = next((q for q in problems if q), None)
                if problem is None:
                    for outcome, j in zip(got, group, strict=True):
                        outcomes[spec.key][j] = outcome
                    batches[spec.key].append({
                        "samples": list(group), "seconds": got[0].total_s,
                        "new_tokens": sum(len(o.token_ids) for o in got),
                    })  # fmt: skip
                else:  # it ran as the baseline: its timings would be the baseline's
                    errors[spec.key] = problem
                    notices.append(f"{spec.key}: {problem}{where}; its row covers the samples before")
            done += 1
    if progress:
        progress(total_runs, total_runs, "done")

    if getattr(meter, "cuda", False):
        memory_pass(setup, groups, outcomes, meter, inputs_for, progress=progress)
    cached.clear()
    return Measured(outcomes=outcomes, errors=errors, notices=notices, batches=batches)


def memory_pass(setup: Setup, groups, outcomes, meter, inputs_for, *, progress: ProgressFn | None = None) -> None:
    """Each row's device memory on each sample it ran, in runs that are not timed.

    The model's resident bytes are read first (after the timed runs: every lazily created
    buffer exists by then); each run then starts from an emptied cache and a reset peak.
    """
    import torch

    _free(meter)
    meter.record_model()
    total = sum(1 for g in groups for s in setup.specs if outcomes[s.key][g[0]] is not None)
    done = 0
    for group in groups:
        i = group[0]
        for spec in setup.specs:
            outcome = outcomes[spec.key][i]
            if outcome is None:
                continue
            if progress:
                progress(done, total, f"memory {i + 1}/{len(setup.samples)} {spec.key}")
            meter.begin()
            try:
                _generate(setup.loaded, spec.at(i), inputs_for(group, spec.inputs), setup.gen)
            except torch.OutOfMemoryError:
                meter.abort()
                continue
            memory = meter.end()
            if len(group) > 1:  # a batch's peak is shared: per sample = its share of the growth
                memory = _per_row_memory(memory, len(group))
            for j in group:
                if outcomes[spec.key][j] is not None:
                    outcomes[spec.key][j].memory = memory
            done += 1


def _per_row_memory(m: SampleMemory, rows: int) -> SampleMemory:
    return SampleMemory(
        peak_bytes=m.peak_bytes,
        per_sample_bytes=None if m.per_sample_bytes is None else m.per_sample_bytes // rows,
        nvml_peak_bytes=m.nvml_peak_bytes,
        nvml_per_sample_bytes=None if m.nvml_per_sample_bytes is None else m.nvml_per_sample_bytes // rows,
    )


def not_pruned(spec: MethodSpec, outcome: RunOutcome, index: int) -> str | None:
    """Why a row that must remove tokens did not on this sample (None when it did).

    The engine's own count is the witness: layers >= K must have seen fewer tokens than the
    prompt holds. K = N removes nothing by definition and is not a failure.
    """
    if not spec.prunes or spec.k is None or spec.k >= int(outcome.n_layers or 0):
        return None
    if spec.name in FASTV_ROWS and not spec.ratio:
        return None  # R = 0 prunes nothing by request
    if outcome.kept_tokens is None:
        return f"did not withdraw on sample {index + 1}: the engine saw no prefill with vision tokens"
    if spec.name == "fastv-mask" and outcome.kept_tokens >= outcome.prompt_tokens:
        # it keeps every row; kept_tokens counts the keys layers >= K let other tokens attend to
        return (
            f"masked nothing on sample {index + 1}: layers >= K={spec.k} let every one of the "
            f"{outcome.prompt_tokens} prompt tokens be attended to, so this row ran as the baseline"
        )
    if outcome.kept_tokens >= outcome.prompt_tokens:
        return (
            f"did not withdraw on sample {index + 1}: layers >= K={spec.k} saw all {outcome.prompt_tokens} "
            "prompt tokens, so this row ran as the baseline"
        )
    return None


# ---------------------------------------------------------------- stage 4: summarize


def summarize(
    p: BenchPlan,
    setup: Setup,
    measured: Measured,
    *,
    ran_on: list[int | None],
    shares: list[dict[str, Any]],
    world_size: int = 1,
) -> BenchResult:
    """Stage 4: rows, the prompt shape, settings and environment -> :class:`BenchResult`."""
    loaded, specs, samples = setup.loaded, setup.specs, setup.samples
    rows, prompt_info = _summarize(loaded, specs, samples, measured.outcomes, measured.errors, setup.task)
    # a batch is one measurement (its samples share its times): pair batches, not their samples
    per_call = measured.outcomes if p.batch_size == 1 else _first_of_each_batch(measured.outcomes, measured.batches)
    paired = paired_block(per_call, {s.key: s.name for s in specs}, seed=p.seed)
    apply_paired(rows, specs, paired)
    task_info = dict(setup.task_info)
    head = prompt_info.pop("headline", None)
    if head is not None:
        task_info["headline_metric"], task_info["headline"] = head
    for row, spec in zip(rows, specs, strict=True):
        row.per_rank = _per_rank(measured.outcomes[spec.key], ran_on, shares)
    if p.batch_size > 1:
        batch_throughput(rows, specs, measured.batches, seed=p.seed)
    meter_info = shares[0].get("meter", {}) if shares else {}
    env = environment(loaded, meter_info)
    env["world_size"] = world_size
    env["ranks"] = [
        {"rank": r, "device": share["device"], "device_name": share["device_name"],
         "samples": sum(1 for x in ran_on if x == r)}
        for r, share in enumerate(shares)
    ]  # fmt: skip
    settings = {
        "methods": list(p.methods),
        "k": setup.k,
        "k_list": list(p.ks) if p.ks and len(p.ks) > 1 else None,
        "k_range": next((list(sp.k_range) for sp in specs if sp.k_range is not None), None),
        "positions": list(p.positions),
        "fastv_k": next((sp.k for sp in specs if sp.name in FASTV_ROWS), None),
        "fastv_ratio": p.fastv_ratio if any(m in p.methods for m in FASTV_ROWS) else None,
        "profile": str(p.profile) if p.profile else None,
        "profile_task": setup.entry_task,
        "max_new_tokens": setup.gen["max_new_tokens"],
        "min_new_tokens": setup.gen.get("min_new_tokens"),
        "greedy": True,
        "num_beams": 1,
        "batch_size": p.batch_size,
        "mode": "batch" if p.batch_size > 1 else "latency",
        "warmup_rounds": p.warmup,
        "order": "round-robin per sample, starting method rotates" if p.batch_size == 1
        else f"consecutive batches of {p.batch_size} samples, left-padded; round-robin per batch, starting method "
        "rotates; paired ratios are per batch",
        "memory": "separate untimed pass per sample and method" if env.get("cuda") else None,
        "dtype": loaded.dtype,
        "attn": loaded.attn,
        "device": str(loaded.device),
        "limit": p.limit,
        "subset": None if p.random_init else p.subset,
        "prompt_style": setup.prompt_style,
        "seed": p.seed,
        "world_size": world_size,
        "device_map": p.device_map if isinstance(p.device_map, (str, type(None))) else "custom",
    }
    hf = loaded.model
    model_info = {
        "alias": loaded.alias,
        "id": loaded.model_id,
        "architecture": hf.config.model_type,
        "num_layers": int(loaded.num_layers),
        "hidden_size": _hidden_size(loaded),
        "random_init": bool(getattr(loaded, "random_init", p.random_init)),
        "revision": getattr(loaded, "revision", None),
        "shrunk": loaded.shrunk.to_dict() if getattr(loaded, "shrunk", None) is not None else None,
    }
    log = None
    if p.log_samples:
        log = _sample_log(specs, samples, measured.outcomes, setup.task)
        for entry, rank in zip(log, ran_on, strict=True):
            entry["rank"] = rank
    return BenchResult(
        model=model_info,
        task=task_info,
        settings=settings,
        environment=env,
        prompt=prompt_info,
        rows=rows,
        paired=paired,
        notices=list(setup.notices) + list(measured.notices) + _exact_notice(prompt_info),
        samples=log,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# ---------------------------------------------------------------- the library API


def bench(
    model: Any = "testbed",
    data: str | None = None,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    k: int | str | Sequence[int] | None = None,
    profile: str | None = None,
    task: str | None = None,
    fastv_k: int | None = None,
    fastv_ratio: float = 0.5,
    limit: int | None = None,
    random_init: bool = False,
    max_new_tokens: int | None = None,
    warmup: int = 1,
    dtype: str = "auto",
    device: str = "auto",
    attn: str = "sdpa",
    log_samples: bool = False,
    data_path: str | None = None,
    split: str | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = SYNTHETIC_IMAGE_SIZE,
    prompt_words: int | None = None,
    progress: ProgressFn | None = None,
    device_map: str | None = None,
    dist: Any = None,
    min_new_tokens: int | None = None,
    judge_url: str | None = None,
    judge_model: str | None = None,
    k_range: str | tuple[int, int] | None = None,
    batch_size: int = 1,
    memory_budget: str | int | None = None,
    repeats: int = 3,
    subset: str = "random",
    prompt_style: str = "chat",
    shrink: bool = False,
    positions: str | Sequence[str] | None = None,
) -> BenchResult | None:
    """Benchmark baseline, FastV and VTW (and optionally ``rand`` and the paper's ablations
    ``noimage``, ``white``, ``random-k``) on the same samples.

    ``k`` may be a list or a range (``[2, 4, 8]``, ``"2,4,8,16"``, ``"1-6"``): vtw, rand and
    white then get one row per K (labelled ``vtw@2``...), all on the same samples in one
    process. ``k_range`` is random-k's range (default: the paper's 8..24 of 32 layers, scaled).
    ``positions`` (``"keep"``, ``"rearrange"`` or ``"keep,rearrange"``: one row per policy) is the
    position policy of the withdrawing rows (the paper's Table 6).

    ``model`` is an alias, hub id or directory, or an already loaded
    :class:`vtwcli.models.LoadedModel`. ``data`` is a task name (default ``shapes``; with
    ``random_init`` synthetic inputs are used instead). K comes from ``k``, else from
    ``profile`` for ``task`` (default: the data's name), else half the layers (with a notice).
    ``limit`` task samples are drawn by ``subset``: ``"random"`` (default; seeded by ``seed``,
    stratified by the task's category, MME image pairs and MMBench circular copies kept
    together) or ``"first"`` (the first ``limit`` rows, lmms-eval's ``--limit``).
    Returns a :class:`BenchResult`; nothing is written.

    Under ``torchrun``/``accelerate launch`` (or with ``dist``, a
    :class:`vtwcli.distributed.DistContext`) each rank measures a strided share of the same
    samples on its own device; rank 0 gathers them and returns the result over the union
    (every sample scored once; latencies pooled, and per rank in ``MethodRow.per_rank``);
    the other ranks return None. ``device_map="auto"`` spreads one model over the devices.
    ``judge_url``/``judge_model`` (MMBench only): an OpenAI-compatible endpoint that reads the
    replies lmms-eval's rule cannot read, as lmms-eval's GPT judge does (docs/datasets.md).

    ``batch_size`` B > 1: every row generates B samples per call (left-padded, the same groups
    for every row, interleaved per batch); rows gain samples/s, generated tokens/s and tokens/s
    paired with the baseline per batch, and the latency ratios pair batches too.
    ``memory_budget`` ("20GiB"; GPU: device memory, CPU: the process's resident memory): each
    row's largest batch that fits, predicted and searched (:mod:`vtwcli.bench.throughput`),
    and its throughput there over ``repeats`` interleaved rounds.
    """
    p = plan(
        model, methods=methods, k=k, profile=profile, task=task, fastv_k=fastv_k, fastv_ratio=fastv_ratio,
        limit=limit, random_init=random_init, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
        warmup=warmup, dtype=dtype,
        device=device, attn=attn, log_samples=log_samples, data=data, data_path=data_path, split=split,
        seed=seed, image_size=tuple(image_size), prompt_words=prompt_words, device_map=device_map,
        judge_url=judge_url, judge_model=judge_model, subset=subset, prompt_style=prompt_style,
        k_range=k_range, batch_size=batch_size, memory_budget=memory_budget, repeats=repeats,
        shrink=shrink,
        positions=positions,
    )  # fmt: skip

    from vtwcli.distributed import context, run_sharded

    ctx = dist if dist is not None else context()
    if device_map is not None and ctx.enabled:
        raise UsageError(
            "--device-map splits one model over the devices; under torchrun/accelerate launch each rank "
            "already has its own device. Use one or the other"
        )
    if p.memory_budget is not None:
        if ctx.enabled:
            raise UsageError("--memory-budget searches one device's largest batch; run it without torchrun/accelerate")
        from vtwcli.bench.throughput import budget_run, check_budget_before_loading

        check_budget_before_loading(p)
        return budget_run(p, load(p), progress=progress)
    state: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        # every rank: model, samples, its share of the measured runs (all inside run_sharded, so a
        # rank that fails still reaches the gather and the run ends with one message, not a hang)
        setup = load(p, device=ctx.device(p.device) if ctx.enabled else None)
        meter = MemoryMeter(setup.loaded.device, devices=model_devices(setup.loaded.model))
        if not meter.cuda:
            setup.notices.append("no CUDA device: the memory columns are n/a (KV-cache bytes are still measured)")
        elif not meter.nvml_available:
            setup.notices.append(f"NVML unavailable ({meter.nvml_reason}): NVML columns are n/a")
        mine = ctx.shard_indices(len(setup.samples))  # this rank's samples; all of them in one process
        measured = measure(
            setup, mine, meter=meter, warmup=p.warmup, progress=progress if ctx.is_main else None,
            where=f" on rank {ctx.rank}" if ctx.enabled else "", batch_size=p.batch_size,
        )  # fmt: skip
        state["setup"] = setup
        return {
            "outcomes": {key: [(i, outs[i]) for i in mine] for key, outs in measured.outcomes.items()},
            "errors": measured.errors,
            "notices": measured.notices,
            "batches": measured.batches,
            "device": str(setup.loaded.device),
            "device_name": device_name(setup.loaded, meter.cuda),
            "meter": meter.info(),
        }

    shares = run_sharded(ctx, work)
    if shares is None:
        return None  # not rank 0: rank 0 reports
    setup = state["setup"]
    measured, ran_on = gather(setup, shares, enabled=ctx.enabled)
    return summarize(p, setup, measured, ran_on=ran_on, shares=shares, world_size=ctx.world_size)


def gather(setup: Setup, shares: list[dict[str, Any]], *, enabled: bool) -> tuple[Measured, list[int | None]]:
    """Every rank's outcomes in one :class:`Measured`, and which rank ran each sample."""
    samples = setup.samples
    outcomes: dict[str, list[RunOutcome | None]] = {s.key: [None] * len(samples) for s in setup.specs}
    ran_on: list[int | None] = [None] * len(samples)
    errors: dict[str, str] = {}
    notices: list[str] = []
    batches: dict[str, list[dict[str, Any]]] = {}
    for rank, share in enumerate(shares):
        for key, pairs in share["outcomes"].items():
            for i, outcome in pairs:
                if ran_on[i] not in (None, rank):
                    raise RuntimeError(f"sample {i} ran on ranks {ran_on[i]} and {rank}; the shards overlap")
                ran_on[i] = rank
                outcomes[key][i] = outcome
        for key, msg in share["errors"].items():
            errors.setdefault(key, f"rank {rank}: {msg}" if enabled else msg)
        notices.extend(share["notices"])
        for key, calls in (share.get("batches") or {}).items():
            batches.setdefault(key, []).extend(dict(c, rank=rank) for c in calls)
    missing = [samples[i].id for i, r in enumerate(ran_on) if r is None]
    if missing:
        raise RuntimeError(f"no rank ran samples {missing[:5]}; the shards do not cover the task")
    return Measured(outcomes=outcomes, errors=errors, notices=notices, batches=batches), ran_on


def _first_of_each_batch(outcomes: dict[str, list[Any]], batches: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Each row's outcomes with only the first sample of each batch kept (the others share its times)."""
    firsts = {c["samples"][0] for calls in batches.values() for c in calls}
    return {key: [o if j in firsts else None for j, o in enumerate(outs)] for key, outs in outcomes.items()}


def batch_throughput(rows: list[MethodRow], specs: list[MethodSpec], batches: dict[str, list[dict[str, Any]]],
                     *, seed: int = 0) -> None:  # fmt: skip
    """Samples/s and generated tokens/s per row, pooled over its calls, and its tokens/s paired
    with the baseline's on the same batch (the same samples, interleaved): median of the
    per-batch ratios with its bootstrap interval."""
    from vtwcli.bench.paired import compare

    def tps(call: dict[str, Any]) -> float | None:
        return call["new_tokens"] / call["seconds"] if call.get("seconds") else None

    base_spec = next((s for s in specs if s.name == "baseline"), None)
    base_calls = {tuple(c["samples"]): c for c in batches.get(base_spec.key, [])} if base_spec else {}
    for row, spec in zip(rows, specs, strict=True):
        calls = [c for c in batches.get(spec.key, []) if c.get("seconds")]
        if not calls:
            continue
        seconds = sum(c["seconds"] for c in calls)
        row.samples_per_s = sum(len(c["samples"]) for c in calls) / seconds
        row.tokens_per_s = sum(c["new_tokens"] for c in calls) / seconds
        pairs = [(tps(c), tps(base_calls[tuple(c["samples"])])) for c in calls if tuple(c["samples"]) in base_calls]
        ratios = [a / b for a, b in pairs if a and b]
        if ratios:
            got = compare(ratios, seed=seed)
            row.tokens_per_s_ratio, row.tokens_per_s_ratio_ci95 = got["median"], got["ci95"]


# ---------------------------------------------------------------- pieces


def _load(
    model: Any, *, dtype: str, device: str, attn: str, random_init: bool, device_map: str | None = None,
    shrink: bool = False,
):  # fmt: skip
    if hasattr(model, "model") and hasattr(model, "prepare"):
        return model  # an already loaded vtwcli.models.LoadedModel
    from vtwcli.models import load_model

    if shrink:
        return load_model(model, dtype=dtype, device=device, attn=attn, random_init=random_init, shrink=True)
    if device_map is not None:
        return load_model(
            model, dtype=dtype, device=device, attn=attn, random_init=random_init, device_map=device_map
        )
    return load_model(model, dtype=dtype, device=device, attn=attn, random_init=random_init)


def _hidden_size(loaded) -> int:
    if loaded.arch is not None:
        return int(loaded.arch.hidden_size(loaded.model.config))
    return int(loaded.model.config.get_text_config(decoder=True).hidden_size)


def _placeholders(loaded) -> tuple[int, ...]:
    if loaded.arch is not None:
        return tuple(loaded.arch.placeholder_ids(loaded.model.config))
    return ()


def _videos(task, record) -> list[Any]:
    fn = getattr(task, "videos", None)
    return fn(record) if fn is not None else []


def _free(meter: Any) -> None:
    gc.collect()
    if getattr(meter, "cuda", False):
        meter.empty_cache()


def synthetic_words(style: str) -> int:
    """Words of synthetic text per prompt: with the chat template they make LLaVA-1.5's average
    MME prompt (641 tokens with a 576-token image); with ``vicuna_v1`` the system sentence
    takes part of that length, so the text is shorter by the sentence's words."""
    if style == "vicuna_v1":
        from vtwcli.models.prompting import VICUNA_V1_SYSTEM

        return SYNTHETIC_PROMPT_WORDS - len(VICUNA_V1_SYSTEM.split())
    return SYNTHETIC_PROMPT_WORDS


def _synthetic_samples(loaded, n: int, *, seed: int, image_size: tuple[int, int], words: int) -> list[Sample]:
    """Prompts of ``words`` random vocabulary words and a flat grey image of ``image_size``.

    The image's pixels do not matter to a random model; its size sets the vision-token count
    (LLaVA-NeXT's anyres grid), so every sample has the shape's real count.
    """
    from PIL import Image

    tok = loaded.tokenizer
    vocab = int(loaded.model.config.get_text_config(decoder=True).vocab_size)
    special = set(getattr(tok, "all_special_ids", []) or []) | set(_placeholders(loaded))
    lo = min(1000, vocab // 4)
    pool = [i for i in range(lo, vocab) if i not in special]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ids = [rng.choice(pool) for _ in range(words)]
        # Decoding ids one by one keeps each word a single token with word-level tokenizers and
        # gives a realistic-length text with real (sub)word tokenizers.
        text = " ".join(tok.decode([t]).strip() or "x" for t in ids)
        image = Image.new("RGB", tuple(image_size), (128 + (i * 7) % 64, 128, 128))
        out.append(Sample(id=f"synthetic-{i}", prompt=text, images=[image]))
    return out


def _generate(loaded, spec: MethodSpec, inputs, gen: dict[str, Any], processors=()):
    """One generate() call with ``spec``'s engine attached: (output, engine handle)."""
    import torch
    from transformers import LogitsProcessorList

    with spec.engine(loaded.model) as handle, torch.inference_mode():
        out = loaded.model.generate(
            **inputs, **gen, logits_processor=LogitsProcessorList(list(processors)), return_dict_in_generate=True,
        )
    return out, handle


def _run_one(loaded, spec: MethodSpec, inputs, gen: dict[str, Any], clock: StepClock | None = None) -> RunOutcome:
    """One timed generate() call on one sample. Inside the timed region: the call and the clock's syncs only."""
    return _run_batch(loaded, spec, inputs, gen, clock)[0]


def _run_batch(loaded, spec: MethodSpec, inputs, gen: dict[str, Any], clock: StepClock | None = None) -> list[RunOutcome]:
    """One timed generate() call on a (left-padded) batch: one :class:`RunOutcome` per row.

    Every row shares the call's timings (each sample waited for the whole call); a row's
    tokens end at its first end-of-sequence token (generate() pads finished rows after it), so
    a row's reply is what the same prompt gives alone. ``kv_bytes`` is the row's share of the
    batch's cache (left padding included); ``kv_layer_tokens`` the batch cache's lengths.
    """
    import torch
    from transformers import LogitsProcessorList

    model = loaded.model
    clock = clock if clock is not None else StepClock(model_devices(model) or [loaded.device])
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    rows, width = int(ids.shape[0]), int(ids.shape[1])
    placeholder = _placeholders(loaded)
    with spec.engine(model) as handle, torch.inference_mode():
        clock.begin()
        out = model.generate(
            **inputs,
            **gen,
            logits_processor=LogitsProcessorList([clock]),
            return_dict_in_generate=True,
        )
        clock.finish()
    stats = getattr(handle, "last_prefill", None)
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    kv = cache_bytes(cache) if cache is not None else 0
    kv_layers = layer_seq_lengths(cache) if cache is not None else []
    sequences = out.sequences[:, width:].tolist()
    del out, cache
    eos = _eos_ids(loaded, gen) if rows > 1 else set()
    outcomes = []
    for b in range(rows):
        new = _until_eos(sequences[b], eos)
        row_ids = ids[b]
        outcomes.append(RunOutcome(
            reply=loaded.tokenizer.decode(new, skip_special_tokens=True).strip(),
            token_ids=new,
            prompt_tokens=int(mask[b].sum()) if mask is not None else width,
            vision_tokens=int(sum(int((row_ids == p).sum()) for p in placeholder)),
            prefill_s=clock.prefill_s,
            decode_s_per_token=clock.decode_s_per_token,
            total_s=clock.total_s,
            kv_bytes=kv // rows,
            kv_layer_tokens=kv_layers,
            kept_tokens=int(stats.kept[b]) if stats is not None else None,
            k=spec.k,
            n_layers=int(loaded.num_layers),
            vision_start=_vision_start(ids, mask, placeholder, b),
        ))  # fmt: skip
    return outcomes


def _eos_ids(loaded, gen: dict[str, Any]) -> set[int]:
    value = gen.get("eos_token_id", getattr(loaded.model.generation_config, "eos_token_id", None))
    if value is None:
        return set()
    return {int(v) for v in (value if isinstance(value, (list, tuple)) else [value])}


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """The tokens up to and including the first end-of-sequence token."""
    for n, t in enumerate(tokens):
        if t in eos:
            return tokens[: n + 1]
    return tokens


def _vision_start(ids, mask, placeholder, b: int = 0) -> int | None:
    """Where the first vision token sits among the prompt's real (unpadded) tokens of row ``b``."""
    row = ids[b] if mask is None else ids[b][mask[b].bool()]
    hits = [int(i) for p in placeholder for i in (row == p).nonzero().flatten()[:1]]
    return min(hits) if hits else None


def _exact_notice(prompt_info: dict[str, Any]) -> list[str]:
    error = prompt_info.get("exact_flops_error")
    return [f"exact TFLOPs not available: {error}"] if error else []


class _ExactFlops:
    """The architecture-exact count (vtwcli.bench.exact_flops) at the samples' average prompt; None
    for a decoder it cannot build (the paper's column is still there)."""

    def __init__(self, config, s: float, n_vis: float, vis_start: float):
        self.config, self.s, self.n_vis = config, s, n_vis
        self.vis_start = max(0, min(int(round(vis_start)), int(round(s)) - int(round(n_vis))))
        self.failed: str | None = None

    def tflops(self, method: str, k: int | None, ratio: float | None) -> float | None:
        from vtwcli.bench.exact_flops import exact_prefill_tflops
        from vtwcli.errors import VTWError

        if self.failed is not None:
            return None
        try:
            return exact_prefill_tflops(
                self.config, method, s=self.s, n_vis=self.n_vis, k=k, vis_start=self.vis_start,
                ratio=ratio if ratio is not None else 0.5,
            )
        except VTWError as err:
            self.failed = str(err)
            return None


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def _answers(task, samples: list[Sample], outs: list[RunOutcome | None]) -> list[Any]:
    got = []
    for s, o in zip(samples, outs, strict=True):
        if o is None:
            got.append(None)
        elif task is not None:
            got.append(task.parse(s.record, o.reply))
        else:
            got.append(tuple(o.token_ids))
    return got


def _summarize(loaded, specs, samples, outcomes, errors, task) -> tuple[list[MethodRow], dict[str, Any]]:
    n_layers = int(loaded.num_layers)
    hidden = _hidden_size(loaded)
    # The formula is evaluated at the average prompt length and vision count over the samples,
    # as the paper does; baseline outcomes are preferred (every method sees the same prompt).
    firsts = [next((outcomes[s.key][i] for s in specs if outcomes[s.key][i] is not None), None)
              for i in range(len(samples))]  # fmt: skip
    seen = [o for o in firsts if o is not None]
    avg_s = statistics.fmean(o.prompt_tokens for o in seen) if seen else 0.0
    avg_vis = statistics.fmean(o.vision_tokens for o in seen) if seen else 0.0
    prompt_info = {"avg_prompt_tokens": avg_s, "avg_vision_tokens": avg_vis, "samples_measured": len(seen)}

    base_spec = next((s for s in specs if s.name == "baseline"), None)
    base_tflops = prefill_tflops("baseline", s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers) if avg_s else None
    starts = [o.vision_start for o in seen if o.vision_start is not None]
    avg_start = statistics.fmean(starts) if starts else 0.0
    exact = _ExactFlops(loaded.model.config, avg_s, avg_vis, avg_start) if avg_s else None
    base_exact = exact.tflops("baseline", None, None) if exact else None
    prompt_info["exact_flops_vision_start"] = exact.vis_start if exact else None
    prompt_info["exact_flops_attention"] = "attended"  # causal/window pairs only (see vtwcli.bench.exact_flops)
    base_answers = _answers(task, samples, outcomes[base_spec.key]) if base_spec is not None else None
    has_answers = task is not None and any(getattr(s.record, "answer", None) is not None for s in samples)

    rows: list[MethodRow] = []
    for spec in specs:
        outs = outcomes[spec.key]
        ok = [o for o in outs if o is not None]
        row = MethodRow(method=spec.key, k=spec.k, ratio=spec.ratio, samples=len(ok), error=errors.get(spec.key),
                        kind=spec.name, k_range=list(spec.k_range) if spec.k_range else None,
                        positions=spec.positions if spec.prunes else None)  # fmt: skip
        if avg_s:
            row.tflops, row.tflops_exact = _row_tflops(spec, ok, avg_s, avg_vis, hidden, n_layers, exact, loaded)
            row.tflops_ratio = _ratio(row.tflops, base_tflops)
            row.tflops_exact_ratio = _ratio(row.tflops_exact, base_exact)
            if exact and exact.failed:
                prompt_info["exact_flops_error"] = exact.failed
        if ok:
            row.prefill_ms = Stat([o.prefill_s for o in ok if o.prefill_s is not None]).summary(1e3)
            row.decode_ms_per_token = Stat(
                [o.decode_s_per_token for o in ok if o.decode_s_per_token is not None]
            ).summary(1e3)
            row.e2e_ms = Stat([o.total_s for o in ok]).summary(1e3)
            row.e2e_ms_per_token = Stat([o.total_s / len(o.token_ids) for o in ok if o.token_ids]).summary(1e3)
            row.new_tokens_mean = statistics.fmean(len(o.token_ids) for o in ok)
            row.kv_bytes_per_sample = statistics.fmean(o.kv_bytes for o in ok)
            peaks = [o.memory.peak_bytes for o in ok if o.memory.peak_bytes is not None]
            if peaks:
                row.peak_mem_bytes = max(peaks)
                row.per_sample_mem_bytes = statistics.median(
                    o.memory.per_sample_bytes for o in ok if o.memory.per_sample_bytes is not None
                )
            nv = [o.memory.nvml_per_sample_bytes for o in ok if o.memory.nvml_per_sample_bytes is not None]
            if nv:
                row.nvml_peak_bytes = max(o.memory.nvml_peak_bytes for o in ok if o.memory.nvml_peak_bytes is not None)
                row.nvml_per_sample_bytes = statistics.median(nv)
            if has_answers:
                idx = [i for i, o in enumerate(outs) if o is not None]
                metrics = task.score([samples[i].record for i in idx], [outs[i].reply for i in idx])
                row.metrics = {k: float(v) for k, v in metrics.items()}
                head = headline_of(task, row.metrics)
                if head is not None:
                    row.metric = head[0]
                    row.accuracy = row.metrics[head[0]]
                    prompt_info.setdefault("headline", head)
            if base_answers is not None:
                mine = _answers(task, samples, outs)
                pairs = [(a, b) for a, b in zip(mine, base_answers, strict=True) if a is not None and b is not None]
                row.agreement = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
        rows.append(row)

    base = next((r for r, s in zip(rows, specs, strict=True) if s is base_spec), None)
    if base is not None:
        for r in rows:
            r.kv_ratio = _ratio(r.kv_bytes_per_sample, base.kv_bytes_per_sample)
            r.per_sample_mem_ratio = _ratio(r.per_sample_mem_bytes, base.per_sample_mem_bytes)
            r.nvml_per_sample_ratio = _ratio(r.nvml_per_sample_bytes, base.nvml_per_sample_bytes)
    return rows, prompt_info


def apply_paired(rows: list[MethodRow], specs: list[MethodSpec], paired: dict[str, dict[str, Any]]) -> None:
    """Each row's "x baseline" columns are its paired per-sample ratio medians (with intervals)."""
    base = next((s.key for s in specs if s.name == "baseline"), None)
    if base is None:
        return
    for row, spec in zip(rows, specs, strict=True):
        if spec.key == base:
            entry = {m: {"median": 1.0, "ci95": [1.0, 1.0]} for m in ("prefill", "decode_per_token", "e2e", "e2e_per_token")}
            if row.samples == 0:
                continue
        else:
            entry = paired.get(f"{spec.key}/{base}")
            if entry is None:
                continue
        row.prefill_ratio, row.prefill_ratio_ci95 = entry["prefill"]["median"], entry["prefill"]["ci95"]
        row.decode_ratio, row.decode_ratio_ci95 = entry["decode_per_token"]["median"], entry["decode_per_token"]["ci95"]
        row.e2e_ratio, row.e2e_ratio_ci95 = entry["e2e"]["median"], entry["e2e"]["ci95"]
        row.e2e_per_token_ratio = entry["e2e_per_token"]["median"]
        row.e2e_per_token_ratio_ci95 = entry["e2e_per_token"]["ci95"]


def _row_tflops(spec, ok, avg_s, avg_vis, hidden, n_layers, exact, loaded) -> tuple[float | None, float | None]:
    """A row's formula and exact TFLOPs at the samples' average prompt.

    ``noimage`` runs its own, shorter prompt (no vision tokens): the baseline formula at that
    row's average length. ``random-k`` is the mean over the K it drew (both counts are linear in
    K). ``white`` costs what ``vtw`` costs at its K.
    """
    if spec.name == "noimage":
        if not ok:
            return None, None
        s = statistics.fmean(o.prompt_tokens for o in ok)
        formula = prefill_tflops("baseline", s=s, n_vis=0, hidden_size=hidden, num_layers=n_layers)
        exact_t = _ExactFlops(loaded.model.config, s, 0, 0).tflops("baseline", None, None) if exact else None
        return formula, exact_t
    method = ENGINE_OF.get(spec.name, spec.name)
    ratio = spec.ratio if spec.ratio is not None else 0.5
    if method == "fastv-mask":
        # every token runs through every layer (only keys are masked): what it computes is the baseline
        formula = prefill_tflops("baseline", s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers)
        return formula, (exact.tflops("baseline", None, None) if exact else None)
    if spec.k_range is not None:
        ks = [o.k for o in ok if o.k is not None]
        if not ks:
            return None, None
        formula = statistics.fmean(
            prefill_tflops(method, s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers, k=k) for k in ks
        )
        exact_each = [exact.tflops(method, k, None) for k in ks] if exact else []
        exact_t = statistics.fmean(exact_each) if exact_each and None not in exact_each else None
        return formula, exact_t
    formula = prefill_tflops(method, s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers, k=spec.k,
                             ratio=ratio)  # fmt: skip
    return formula, (exact.tflops(method, spec.k, spec.ratio) if exact else None)


def _white_like(item):
    """A white image (PIL) or video (array of frames) of the same size as ``item``."""
    import numpy as np
    from PIL import Image

    if isinstance(item, Image.Image):
        return Image.new(item.mode if item.mode in ("RGB", "L", "RGBA") else "RGB", item.size, "white")
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        from vtwcli.data.images import load_image

        return _white_like(load_image(item))
    arr = np.asarray(item)
    return np.full_like(arr, 255 if arr.dtype == np.uint8 else 1)


def headline_of(task, metrics: dict[str, float]) -> tuple[str, str] | None:
    """(metric, label) the accuracy column shows: the task's declared headline (MME total, POPE F1)."""
    fn = getattr(task, "headline", None)
    if callable(fn):
        return fn(metrics)
    names = [m for m in getattr(task, "metric_names", ()) if m in metrics] or list(metrics)
    return (names[0], f"{getattr(task, 'name', 'task')} {names[0]}") if names else None


def _per_rank(outs: list[RunOutcome | None], ran_on: list[int | None], shares: list[dict]) -> list[dict[str, Any]]:
    """One row's latencies on each rank's own samples (the row's columns pool every rank)."""
    out = []
    for rank, share in enumerate(shares):
        ok = [o for o, r in zip(outs, ran_on, strict=True) if r == rank and o is not None]
        out.append({
            "rank": rank,
            "device": share["device"],
            "samples": len(ok),
            "prefill_ms": Stat([o.prefill_s for o in ok if o.prefill_s is not None]).summary(1e3) if ok else None,
            "decode_ms_per_token": Stat(
                [o.decode_s_per_token for o in ok if o.decode_s_per_token is not None]
            ).summary(1e3) if ok else None,
            "e2e_ms": Stat([o.total_s for o in ok]).summary(1e3) if ok else None,
        })  # fmt: skip
    return out


def _sample_log(specs, samples, outcomes, task) -> list[dict[str, Any]]:
    log = []
    for i, s in enumerate(samples):
        entry: dict[str, Any] = {
            "id": s.id,
            "prompt": s.prompt,
            "answer": getattr(s.record, "answer", None) if s.record is not None else None,
            "methods": {},
        }
        for spec in specs:
            o = outcomes[spec.key][i]
            if o is None:
                entry["methods"][spec.key] = None
                continue
            if spec.inputs == "image":  # the sample as given (noimage and white change the prompt)
                entry["prompt_tokens"] = o.prompt_tokens
                entry["vision_tokens"] = o.vision_tokens
            entry["methods"][spec.key] = {
                "k": o.k,
                "prompt_tokens": o.prompt_tokens,
                "vision_tokens": o.vision_tokens,
                "reply": o.reply,
                "parsed": task.parse(s.record, o.reply) if task is not None else None,
                "new_tokens": len(o.token_ids),
                "kept_tokens": o.kept_tokens,
                "prefill_ms": None if o.prefill_s is None else o.prefill_s * 1e3,
                "decode_ms_per_token": None if o.decode_s_per_token is None else o.decode_s_per_token * 1e3,
                "e2e_ms": o.total_s * 1e3,
                "kv_bytes": o.kv_bytes,
                "kv_tokens_per_layer": o.kv_layer_tokens,
                "peak_mem_bytes": o.memory.peak_bytes,
                "per_sample_mem_bytes": o.memory.per_sample_bytes,
                "nvml_per_sample_bytes": o.memory.nvml_per_sample_bytes,
            }
        log.append(entry)
    return log


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for pkg in ("vtwcli", "torch", "transformers", "accelerate", "flash-attn", "nvidia-ml-py"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(loaded, cuda: bool) -> str:
    import torch

    if cuda:
        dev = torch.device(loaded.device)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    return f"CPU: {_cpu_name()}"


def environment(loaded, meter_info: dict[str, Any]) -> dict[str, Any]:
    import torch

    cuda = bool(meter_info.get("cuda"))
    return {
        "device_name": device_name(loaded, cuda),
        "device": str(loaded.device),
        "devices": meter_info.get("devices") or [str(loaded.device)],
        "cuda": cuda,
        "cuda_version": torch.version.cuda,
        "nvml": bool(meter_info.get("nvml")),
        "nvml_devices": meter_info.get("nvml_devices"),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": _versions(),
        "memory_note": (
            "measured in a separate untimed run per sample and method, summed over every device the model "
            "spans: peak = torch.cuda.max_memory_allocated during the run; per-sample = peak minus the "
            "allocated bytes of the loaded, warmed-up model; NVML = whole-device used memory, polled every 2 ms"
        ),
        "kv_note": "bytes held by the returned KV cache at the end of generation (prompt + generated tokens)",
        "timing_note": (
            "prefill = generate() start to the first logits (every device the model spans synchronized); "
            "decode = mean time per later step; e2e = the whole generate() call; inputs prepared beforehand, "
            "warm-up not counted, no allocator or NVML call inside the timed region"
        ),
    }
