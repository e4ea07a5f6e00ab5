"""The comparison runner behind ``vtw bench`` and ``vtwcli.bench.bench``.

Reads top to bottom: check every option, load the model and the samples, warm up (not
counted), then for each sample run every method once, round-robin (the starting method
rotates so no method always runs first), and summarize. Each method's prefill, decode and
end-to-end time comes from one ordinary greedy ``generate()`` call with identical settings;
only the engine attached around it differs. Out of memory in one method ends that method's
row (with the reason) and the others go on.
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
from vtwcli.bench.result import BenchResult, MethodRow
from vtwcli.bench.timing import Stat, StepClock
from vtwcli.errors import KOutOfRangeError, UsageError

METHODS = ("baseline", "fastv", "vtw", "rand")
DEFAULT_METHODS = ("baseline", "fastv", "vtw")
DEFAULT_LIMIT = 40  # task samples when --limit is not given (the testbed's task runs in about a minute)
DEFAULT_SYNTHETIC_SAMPLES = 8
DEFAULT_SYNTHETIC_NEW_TOKENS = 32
# LLaVA-1.5's prompts on MME average 641.4 tokens with 576 vision tokens (../shared/docs/flops.md):
# about 65 text tokens, which is what synthetic prompts aim for (the chat template adds a few).
SYNTHETIC_PROMPT_WORDS = 60
SYNTHETIC_IMAGE_SIZE = (640, 480)  # width, height: a typical COCO photo (sets LLaVA-NeXT's anyres count)

ProgressFn = Callable[[int, int, str], None]


@dataclass
class MethodSpec:
    """One row: which engine method runs, with which K and ratio."""

    name: str
    k: int | None = None
    ratio: float | None = None
    seed: int = 0

    def engine(self, model):
        if self.name == "baseline":
            return contextlib.nullcontext()
        from vtwcli.engine import withdraw

        kwargs: dict[str, Any] = {"method": self.name, "seed": self.seed}
        if self.name == "fastv":
            kwargs["ratio"] = self.ratio
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
    """One method on one sample."""

    reply: str
    token_ids: list[int]
    prompt_tokens: int
    vision_tokens: int
    prefill_s: float | None
    decode_s_per_token: float | None
    total_s: float
    kv_bytes: int
    kv_layer_tokens: list[int]
    memory: SampleMemory


# ---------------------------------------------------------------- validation


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


def _check_k(name: str, k: int, n: int, model_name: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise KOutOfRangeError(
            f"{name}={k!r} is outside 1..{n}: {model_name} has {n} decoder layers and K counts the layers "
            f"that still see the vision tokens (K={n} withdraws nothing); pick a K in 1..{n}"
        )


# ---------------------------------------------------------------- the library API


def bench(
    model: Any = "testbed",
    data: str | None = None,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    k: int | None = None,
    profile: str | None = None,
    task: str | None = None,
    fastv_k: int = 2,
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
    prompt_words: int = SYNTHETIC_PROMPT_WORDS,
    progress: ProgressFn | None = None,
    device_map: str | None = None,
    dist: Any = None,
) -> BenchResult | None:
    """Benchmark baseline, FastV and VTW (and optionally ``rand``) on the same samples.

    ``model`` is an alias, hub id or directory, or an already loaded
    :class:`vtwcli.models.LoadedModel`. ``data`` is a task name (default ``shapes``; with
    ``random_init`` synthetic inputs are used instead). K comes from ``k``, else from
    ``profile`` for ``task`` (default: the data's name), else half the layers (with a notice).
    Returns a :class:`BenchResult`; nothing is written.

    Under ``torchrun``/``accelerate launch`` (or with ``dist``, a
    :class:`vtwcli.distributed.DistContext`) each rank measures a strided share of the same
    samples on its own device; rank 0 gathers them and returns the result over the union
    (every sample scored once; latencies pooled, and per rank in ``MethodRow.per_rank``);
    the other ranks return None. ``device_map="auto"`` spreads one model over the devices.
    """
    # ---- every cheap check before anything heavy is loaded
    chosen = parse_methods(methods)
    _check_positive("--limit", limit)
    _check_positive("--max-new-tokens", max_new_tokens)
    _check_positive("--warmup", warmup, allow_zero=True)
    _check_positive("--prompt-words", prompt_words)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise KOutOfRangeError(f"--k must be a positive integer (a layer count), got {k!r}")
    if "fastv" in chosen and (isinstance(fastv_k, bool) or not isinstance(fastv_k, int) or fastv_k < 1):
        raise KOutOfRangeError(f"--fastv-k must be a positive integer, got {fastv_k!r}")
    if not isinstance(fastv_ratio, (int, float)) or not 0.0 <= float(fastv_ratio) <= 1.0:
        raise UsageError(f"--fastv-ratio is the share of vision tokens FastV prunes: it must be in 0..1, got {fastv_ratio!r}")
    if random_init and (data is not None or data_path is not None):
        raise UsageError(
            "--random-init measures speed and memory on synthetic inputs (random weights cannot "
            "answer questions); drop --data/--data-path, or drop --random-init to use real weights"
        )

    prof = None
    if profile is None and k is None and not random_init:
        from vtwcli.profiles import default_profile_path

        profile = default_profile_path(model)  # where `vtw calibrate` wrote this model's K
    if profile is not None:
        from vtwcli.profiles import load_profile

        prof = load_profile(profile)

    # ---- every rank: model, samples, its share of the measured runs (all inside run_sharded, so a
    # rank that fails still reaches the gather and the run ends with one message, not a hang)
    from vtwcli.distributed import context, run_sharded

    ctx = dist if dist is not None else context()
    if device_map is not None and ctx.enabled:
        raise UsageError(
            "--device-map splits one model over the devices; under torchrun/accelerate launch each rank "
            "already has its own device. Use one or the other"
        )
    state: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        nonlocal k  # filled from the profile or the default below
        # ---- model
        import torch

        loaded = _load(
            model, dtype=dtype, device=ctx.device(device) if ctx.enabled else device, attn=attn,
            random_init=random_init, device_map=device_map,
        )
        hf = loaded.model
        n_layers = int(loaded.num_layers)
        name = loaded.alias or loaded.model_id
        notices: list[str] = []

        task_name = None if random_init else (data or "shapes")
        k_profile, entry_task = None, None
        if prof is not None:
            prof.check_model_layers(n_layers)
            if task is not None:  # asked for by name: a missing entry is an error
                entry_task, _ = prof.entry(task)
            elif task_name in prof.tasks:
                entry_task = task_name
            else:
                entry_task, _ = prof.entry(None)
            k_profile = prof.k_for(entry_task)
        needs_k = any(m in ("vtw", "rand") for m in chosen)
        if k is None and needs_k:
            if k_profile is not None:
                k = k_profile
                notices.append(f"K={k} from profile {profile} (task {entry_task})")
            else:
                k = max(1, n_layers // 2)
                notices.append(
                    f"no --k or --profile given: VTW runs with K={k} (half of {n_layers} layers, the paper's "
                    f"choice for LLaVA-1.5-7B); run `vtw calibrate --model {name}` to pick K for your task"
                )
        if needs_k:
            _check_k("--k", k, n_layers, name)
        if "fastv" in chosen:
            _check_k("--fastv-k", fastv_k, n_layers, name)

        specs = []
        for m in chosen:
            if m == "baseline":
                specs.append(MethodSpec("baseline"))
            elif m == "fastv":
                specs.append(MethodSpec("fastv", k=fastv_k, ratio=float(fastv_ratio), seed=seed))
            else:
                specs.append(MethodSpec(m, k=k, seed=seed))

        # ---- samples
        if random_init:
            the_task = None
            n = limit if limit is not None else DEFAULT_SYNTHETIC_SAMPLES
            samples = _synthetic_samples(loaded, n, seed=seed, image_size=image_size, words=prompt_words)
            new_tokens = max_new_tokens or DEFAULT_SYNTHETIC_NEW_TOKENS
            gen = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
            task_info: dict[str, Any] = {
                "name": "synthetic",
                "source": {"dataset_id": "synthetic", "image_size": list(image_size), "prompt_words": prompt_words},
                "samples": len(samples),
                "has_answers": False,
            }
            notices.append(
                "random weights: speed and memory only; every reply is forced to max_new_tokens tokens "
                "and accuracy is n/a (agreement compares generated tokens)"
            )
        else:
            from vtwcli.data import get_task

            the_task = get_task(task_name, path=data_path, split=split, limit=limit or DEFAULT_LIMIT, seed=seed)
            if len(the_task) == 0:
                raise UsageError(f"task {task_name!r} gave no samples to benchmark; check --data-path/--split")
            # Images and videos are decoded per sample when it runs (MME, AI2D are gigabytes).
            samples = [Sample(str(r.id), the_task.prompt(r), r) for r in the_task.records]
            gen = dict(the_task.generation.generate_kwargs())
            if max_new_tokens is not None:
                gen["max_new_tokens"] = max_new_tokens
            gen["do_sample"], gen["num_beams"] = False, 1
            has_answers = any(r.answer is not None for r in the_task.records)
            task_info = {
                "name": getattr(the_task, "name", task_name) or task_name,
                "source": the_task.source.to_dict(),
                "samples": len(samples),
                "has_answers": has_answers,
            }
        tok = loaded.tokenizer
        if getattr(tok, "pad_token_id", None) is not None:
            gen["pad_token_id"] = tok.pad_token_id
        gen["do_sample"], gen["num_beams"] = False, 1

        meter = MemoryMeter(loaded.device)
        if not meter.cuda:
            notices.append("no CUDA device: the memory columns are n/a (KV-cache bytes are still measured)")
        elif not meter.nvml_available:
            notices.append("NVML unavailable (pip install nvidia-ml-py): NVML columns are n/a")
        if "fastv" in chosen:
            notices.append(
                f"FastV ran with K={fastv_k}, R={float(fastv_ratio):g}; the paper's Table 2 FastV TFLOPs match "
                "K=3, R=0.5 for 13B and NeXT, and no single K for 7B"
            )

        # ---- warm-up (uncounted), then the model's resident memory
        mine = ctx.shard_indices(len(samples))  # this rank's samples; all of them in one process
        total_runs = len(mine) * len(specs)
        prepared_cache: dict[int, Any] = {}
        tell = progress if ctx.is_main else None

        def inputs_for(i: int):
            if i not in prepared_cache:
                prepared_cache.clear()  # one sample's tensors at a time on the device
                s = samples[i]
                images, videos = s.images, s.videos
                if s.record is not None and the_task is not None:
                    images, videos = list(the_task.images(s.record)), list(_videos(the_task, s.record))
                prepared_cache[i] = loaded.prepare(s.prompt, images=images or None, videos=videos or None)
            return prepared_cache[i]

        for w in range(warmup if mine else 0):
            for spec in specs:
                if tell:
                    tell(0, total_runs, f"warm-up {spec.name}")
                with contextlib.suppress(torch.OutOfMemoryError):
                    _run_one(loaded, spec, inputs_for(mine[w % len(mine)]), gen, SampleMemoryNoop())
        _free(meter)
        meter.record_model()

        # ---- measured rounds
        outcomes: dict[str, list[RunOutcome | None]] = {s.name: [None] * len(samples) for s in specs}
        errors: dict[str, str] = {}
        rank_notices: list[str] = []
        done = 0
        for i in mine:
            inputs = inputs_for(i)
            order = specs[i % len(specs):] + specs[: i % len(specs)]
            for spec in order:
                if spec.name in errors:
                    done += 1
                    continue
                if tell:
                    tell(done, total_runs, f"sample {i + 1}/{len(samples)} {spec.name}")
                try:
                    outcomes[spec.name][i] = _run_one(loaded, spec, inputs, gen, meter)
                except torch.OutOfMemoryError as err:
                    meter.abort()
                    first = str(err).strip().splitlines()[0] if str(err).strip() else "CUDA out of memory"
                    errors[spec.name] = f"out of memory on sample {i + 1}: {first[:200]}"
                    where = f" on rank {ctx.rank}" if ctx.enabled else ""
                    rank_notices.append(f"{spec.name}: {errors[spec.name]}{where}; its row covers the samples before")
                    _free(meter)
                done += 1
        if tell:
            tell(total_runs, total_runs, "done")
        prepared_cache.clear()
        state.update(
            loaded=loaded, hf=hf, n_layers=n_layers, notices=notices, k=k, entry_task=entry_task, needs_k=needs_k,
            specs=specs, samples=samples, the_task=the_task, gen=gen, task_info=task_info, meter=meter,
        )
        return {
            "outcomes": {name: [(i, outs[i]) for i in mine] for name, outs in outcomes.items()},
            "errors": errors,
            "notices": rank_notices,
            "device": str(loaded.device),
            "device_name": environment(loaded, meter)["device_name"],
        }


    shares = run_sharded(ctx, work)
    if shares is None:
        return None  # not rank 0: rank 0 reports
    loaded, hf, n_layers, notices = state["loaded"], state["hf"], state["n_layers"], state["notices"]
    k, entry_task, needs_k, specs = state["k"], state["entry_task"], state["needs_k"], state["specs"]
    samples, the_task, gen, task_info, meter = (
        state["samples"], state["the_task"], state["gen"], state["task_info"], state["meter"]
    )
    outcomes: dict[str, list[RunOutcome | None]] = {s.name: [None] * len(samples) for s in specs}
    ran_on: list[int | None] = [None] * len(samples)
    errors: dict[str, str] = {}
    for rank, share in enumerate(shares):
        for name, pairs in share["outcomes"].items():
            for i, outcome in pairs:
                if ran_on[i] not in (None, rank):
                    raise RuntimeError(f"sample {i} ran on ranks {ran_on[i]} and {rank}; the shards overlap")
                ran_on[i] = rank
                outcomes[name][i] = outcome
        for name, msg in share["errors"].items():
            errors.setdefault(name, f"rank {rank}: {msg}" if ctx.enabled else msg)
        notices.extend(share["notices"])
    missing = [samples[i].id for i, r in enumerate(ran_on) if r is None]
    if missing:
        raise RuntimeError(f"no rank ran samples {missing[:5]}; the shards do not cover the task")

    # ---- summary
    rows, prompt_info = _summarize(loaded, specs, samples, outcomes, errors, the_task)
    for row in rows:
        row.per_rank = _per_rank(outcomes[row.method], ran_on, shares)
    env = environment(loaded, meter)
    env["world_size"] = ctx.world_size
    env["ranks"] = [
        {"rank": r, "device": share["device"], "device_name": share["device_name"],
         "samples": sum(1 for x in ran_on if x == r)}
        for r, share in enumerate(shares)
    ]  # fmt: skip
    settings = {
        "methods": list(chosen),
        "k": k if needs_k else None,
        "fastv_k": fastv_k if "fastv" in chosen else None,
        "fastv_ratio": float(fastv_ratio) if "fastv" in chosen else None,
        "profile": str(profile) if profile else None,
        "profile_task": entry_task,
        "max_new_tokens": gen["max_new_tokens"],
        "min_new_tokens": gen.get("min_new_tokens"),
        "greedy": True,
        "num_beams": 1,
        "batch_size": 1,
        "warmup_rounds": warmup,
        "order": "round-robin per sample, starting method rotates",
        "dtype": loaded.dtype,
        "attn": loaded.attn,
        "device": str(loaded.device),
        "limit": limit,
        "seed": seed,
        "world_size": ctx.world_size,
        "device_map": device_map if isinstance(device_map, (str, type(None))) else "custom",
    }
    model_info = {
        "alias": loaded.alias,
        "id": loaded.model_id,
        "architecture": hf.config.model_type,
        "num_layers": n_layers,
        "hidden_size": _hidden_size(loaded),
        "random_init": bool(getattr(loaded, "random_init", random_init)),
        "revision": getattr(loaded, "revision", None),
    }
    log = _sample_log(specs, samples, outcomes, the_task) if log_samples else None
    if log is not None:
        for entry, rank in zip(log, ran_on, strict=True):
            entry["rank"] = rank
    return BenchResult(
        model=model_info,
        task=task_info,
        settings=settings,
        environment=env,
        prompt=prompt_info,
        rows=rows,
        notices=notices,
        samples=log,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# ---------------------------------------------------------------- pieces


class SampleMemoryNoop:
    """A meter that measures nothing (warm-up)."""

    def begin(self) -> None:
        pass

    def end(self) -> SampleMemory:
        return SampleMemory()

    def abort(self) -> None:
        pass


def _load(model: Any, *, dtype: str, device: str, attn: str, random_init: bool, device_map: str | None = None):
    if hasattr(model, "model") and hasattr(model, "prepare"):
        return model  # an already loaded vtwcli.models.LoadedModel
    from vtwcli.models import load_model

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


def _free(meter: MemoryMeter) -> None:
    gc.collect()
    if meter.cuda:
        import torch

        torch.cuda.empty_cache()


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


def _run_one(loaded, spec: MethodSpec, inputs, gen: dict[str, Any], meter) -> RunOutcome:
    import torch
    from transformers import LogitsProcessorList

    model = loaded.model
    clock = StepClock(loaded.device)
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    prompt_tokens = int(mask.sum()) if mask is not None else int(ids.numel())
    placeholder = _placeholders(loaded)
    vision_tokens = int(sum(int((ids == p).sum()) for p in placeholder))
    meter.begin()
    with spec.engine(model), torch.inference_mode():
        clock.begin()
        out = model.generate(
            **inputs,
            **gen,
            logits_processor=LogitsProcessorList([clock]),
            return_dict_in_generate=True,
        )
        clock.finish()
    memory = meter.end()
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    kv = cache_bytes(cache) if cache is not None else 0
    kv_layers = layer_seq_lengths(cache) if cache is not None else []
    new = out.sequences[0, ids.shape[1]:].tolist()
    del out, cache
    reply = loaded.tokenizer.decode(new, skip_special_tokens=True).strip()
    return RunOutcome(
        reply=reply,
        token_ids=new,
        prompt_tokens=prompt_tokens,
        vision_tokens=vision_tokens,
        prefill_s=clock.prefill_s,
        decode_s_per_token=clock.decode_s_per_token,
        total_s=clock.total_s,
        kv_bytes=kv,
        kv_layer_tokens=kv_layers,
        memory=memory,
    )


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
    firsts = [next((outcomes[s.name][i] for s in specs if outcomes[s.name][i] is not None), None)
              for i in range(len(samples))]  # fmt: skip
    seen = [o for o in firsts if o is not None]
    avg_s = statistics.fmean(o.prompt_tokens for o in seen) if seen else 0.0
    avg_vis = statistics.fmean(o.vision_tokens for o in seen) if seen else 0.0
    prompt_info = {"avg_prompt_tokens": avg_s, "avg_vision_tokens": avg_vis, "samples_measured": len(seen)}

    base_tflops = prefill_tflops("baseline", s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers) if avg_s else None
    base_answers = _answers(task, samples, outcomes["baseline"]) if "baseline" in outcomes else None
    has_answers = task is not None and any(getattr(s.record, "answer", None) is not None for s in samples)

    rows: list[MethodRow] = []
    for spec in specs:
        outs = outcomes[spec.name]
        ok = [o for o in outs if o is not None]
        row = MethodRow(method=spec.name, k=spec.k, ratio=spec.ratio, samples=len(ok), error=errors.get(spec.name))
        if avg_s:
            row.tflops = prefill_tflops(
                spec.name, s=avg_s, n_vis=avg_vis, hidden_size=hidden, num_layers=n_layers,
                k=spec.k, ratio=spec.ratio if spec.ratio is not None else 0.5,
            )
            row.tflops_ratio = _ratio(row.tflops, base_tflops)
        if ok:
            row.prefill_ms = Stat([o.prefill_s for o in ok if o.prefill_s is not None]).summary(1e3)
            row.decode_ms_per_token = Stat(
                [o.decode_s_per_token for o in ok if o.decode_s_per_token is not None]
            ).summary(1e3)
            row.e2e_ms = Stat([o.total_s for o in ok]).summary(1e3)
            row.new_tokens_mean = statistics.fmean(len(o.token_ids) for o in ok)
            row.kv_bytes_per_sample = statistics.fmean(o.kv_bytes for o in ok)
            peaks = [o.memory.peak_bytes for o in ok if o.memory.peak_bytes is not None]
            if peaks:
                row.peak_mem_bytes = max(peaks)
                row.per_sample_mem_bytes = statistics.median(o.memory.per_sample_bytes for o in ok)
            nv = [o.memory.nvml_per_sample_bytes for o in ok if o.memory.nvml_per_sample_bytes is not None]
            if nv:
                row.nvml_peak_bytes = max(o.memory.nvml_peak_bytes for o in ok)
                row.nvml_per_sample_bytes = statistics.median(nv)
            if has_answers:
                idx = [i for i, o in enumerate(outs) if o is not None]
                metrics = task.score([samples[i].record for i in idx], [outs[i].reply for i in idx])
                row.metrics = {k: float(v) for k, v in metrics.items()}
                names = [m for m in getattr(task, "metric_names", ()) if m in metrics] or list(metrics)
                if names:
                    row.metric = names[0]
                    row.accuracy = float(metrics[names[0]])
            if base_answers is not None:
                mine = _answers(task, samples, outs)
                pairs = [(a, b) for a, b in zip(mine, base_answers, strict=True) if a is not None and b is not None]
                row.agreement = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
        rows.append(row)

    base = next((r for r in rows if r.method == "baseline"), None)
    if base is not None:
        for r in rows:
            r.prefill_ratio = _ratio(_med(r.prefill_ms), _med(base.prefill_ms))
            r.decode_ratio = _ratio(_med(r.decode_ms_per_token), _med(base.decode_ms_per_token))
            r.e2e_ratio = _ratio(_med(r.e2e_ms), _med(base.e2e_ms))
            r.kv_ratio = _ratio(r.kv_bytes_per_sample, base.kv_bytes_per_sample)
            r.per_sample_mem_ratio = _ratio(r.per_sample_mem_bytes, base.per_sample_mem_bytes)
            r.nvml_per_sample_ratio = _ratio(r.nvml_per_sample_bytes, base.nvml_per_sample_bytes)
    return rows, prompt_info


def _per_rank(outs: list[RunOutcome | None], ran_on: list[int | None], shares: list[dict]) -> list[dict[str, Any]]:
    """One method's latencies on each rank's own samples (the row's columns pool every rank)."""
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


def _med(stat: dict[str, Any] | None) -> float | None:
    return None if not stat else stat.get("median")


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
            o = outcomes[spec.name][i]
            if o is None:
                entry["methods"][spec.name] = None
                continue
            entry["prompt_tokens"] = o.prompt_tokens
            entry["vision_tokens"] = o.vision_tokens
            entry["methods"][spec.name] = {
                "reply": o.reply,
                "parsed": task.parse(s.record, o.reply) if task is not None else None,
                "new_tokens": len(o.token_ids),
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


def environment(loaded, meter: MemoryMeter) -> dict[str, Any]:
    import torch

    dev = torch.device(loaded.device)
    if meter.cuda:
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = f"CPU: {_cpu_name()}"
    return {
        "device_name": name,
        "device": str(loaded.device),
        "cuda": meter.cuda,
        "cuda_version": torch.version.cuda,
        "nvml": meter.nvml_available,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": _versions(),
        "memory_note": (
            "peak = torch.cuda.max_memory_allocated during the sample; per-sample = peak minus the "
            "allocated bytes of the loaded, warmed-up model; NVML = whole-device used memory, polled every 2 ms"
        ),
        "kv_note": "bytes held by the returned KV cache at the end of generation (prompt + generated tokens)",
        "timing_note": (
            "prefill = generate() start to the first logits (device synchronized); decode = mean time per "
            "later step; e2e = the whole generate() call; inputs prepared beforehand, warm-up not counted"
        ),
    }
