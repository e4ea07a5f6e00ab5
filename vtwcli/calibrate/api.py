"""``calibrate()``: pick K for a model x task by the paper's KL criterion, and save it.

Reads top to bottom: check the options, load the model and the task, draw the samples,
run the sweep batch by batch, summarise the curve, choose K, write the profile.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtwcli.bench import flops as _flops
from vtwcli.calibrate.kl import CurvePoint, check_direction, choose_k, summarize
from vtwcli.errors import DatasetError, KOutOfRangeError, UsageError

TOOL = "vtw"
PAPER_K_MIN = 5


# --------------------------------------------------------------------------------------
# the paper's FLOPs convention: one formula for the whole project, in vtwcli.bench.flops
# --------------------------------------------------------------------------------------
def vtw_flops_ratio(k: int, n_layers: int, s: float, n_vis: float, h: int) -> float:
    """Formula FLOPs of withdrawal at K over the baseline's (1.0 at K = N)."""
    shape = {"s": s, "n_vis": n_vis, "hidden_size": h, "num_layers": n_layers}
    return _flops.prefill_flops("vtw", k=k, **shape) / _flops.prefill_flops("baseline", **shape)


def sweep_cost_formula(
    k_values: Sequence[int], n_layers: int, s: float, t: float, h: int
) -> tuple[float, float]:
    """(fast, slow) cost of a sweep in full-forward equivalents per sample, by the formula.

    fast: one full forward + layers K..N-1 on the t text rows for every candidate K < N.
    slow (the paper's loop): one full forward + one withdrawn forward per candidate, K = N
    included as the paper's loop includes it.
    """
    layer = _flops.layer_flops
    full = n_layers * layer(s, h)
    tail = sum((n_layers - k) * layer(t, h) for k in k_values if k < n_layers)
    slow = sum(k * layer(s, h) + (n_layers - k) * layer(t, h) for k in k_values)
    return (full + tail) / full, (full + slow) / full


def default_k_min(n_layers: int) -> int:
    """The paper's 5 on real-size models; 1 on small ones, where layer 5 is most of the depth."""
    return PAPER_K_MIN if n_layers >= 20 else 1


# --------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------
@dataclass
class CalibrationResult:
    model_alias: str | None
    model_id: str
    num_layers: int
    task: str
    k: int
    reached: bool  # some K < N had a mean KL below eta
    eta: float
    direction: str
    tokens: int
    k_values: list[int]
    curve: dict[int, CurvePoint]
    per_sample: dict[int, list[float]]
    sample_ids: list[str]
    flops_ratio: float
    mean_prompt_length: float
    mean_vision_tokens: float
    cost: dict[str, float]
    calibration: dict[str, Any]  # what the profile records
    hidden_size: int = 0
    profile_path: str | None = None
    profile_unchanged: bool = False  # the profile already recorded this result and was left as it was
    warnings: list[str] = field(default_factory=list)
    world_size: int = 1  # data-parallel ranks that shared the samples
    # every threshold asked for, in the order given, with the K it picks from this same sweep
    # (the paper's Table 5); the first one is ``eta`` / ``k``
    thresholds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def min_kl(self) -> tuple[int, float] | None:
        """The candidate K < N with the smallest mean KL, and that KL."""
        cands = [(p.mean, k) for k, p in self.curve.items() if k < self.num_layers]
        if not cands:
            return None
        mean, k = min(cands)
        return k, mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {
                "alias": self.model_alias,
                "id": self.model_id,
                "num_layers": self.num_layers,
                "hidden_size": self.hidden_size,
            },
            "task": self.task,
            "k": self.k,
            "reached": self.reached,
            "eta": self.eta,
            "direction": self.direction,
            "tokens": self.tokens,
            "flops_ratio": self.flops_ratio,
            "mean_prompt_length": self.mean_prompt_length,
            "mean_vision_tokens": self.mean_vision_tokens,
            "cost": self.cost,
            "curve": {str(k): p.to_dict() for k, p in self.curve.items()},
            "per_sample": {str(k): v for k, v in self.per_sample.items()},
            "sample_ids": self.sample_ids,
            "profile_path": self.profile_path,
            "warnings": self.warnings,
            "world_size": self.world_size,
            "thresholds": self.thresholds,
            "calibration": self.calibration,
        }


# --------------------------------------------------------------------------------------
# checks on the options (before anything heavy loads)
# --------------------------------------------------------------------------------------
def _check_etas(eta: Any) -> list[float]:
    """One threshold or several ("0.001,0.003,0.01" or a sequence); the first picks the saved K."""
    if isinstance(eta, str) and "," in eta:
        items: list[Any] = [part.strip() for part in eta.split(",")]
    elif isinstance(eta, (list, tuple)):
        items = list(eta)
    else:
        items = [eta]
    if not items:
        raise UsageError("--eta must be a positive number such as 0.003, or a list such as 0.001,0.003,0.01")
    values = [_check_eta(item) for item in items]
    if len(set(values)) != len(values):
        raise UsageError(f"--eta lists a threshold twice: {eta!r}")
    return values


def _check_eta(eta: Any) -> float:
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise UsageError(f"--eta must be a positive number such as 0.003, got {eta!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--eta must be a positive number such as 0.003, got {eta!r}")
    return value


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _k_floor(net) -> int:
    from vtwcli.engine import k_bounds
    from vtwcli.errors import VTWError

    try:
        return k_bounds(net)[0]
    except VTWError:  # a model the engine has no record for fails later with its own message
        return 1


def _k_range(k_min: int | None, k_max: int | None, n_layers: int, floor: int = 1) -> list[int]:
    """The candidate Ks; ``floor`` is the smallest K the engine accepts for the model (hybrid
    decoders: past their first attention layer)."""
    lo = max(default_k_min(n_layers), floor) if k_min is None else k_min
    hi = n_layers if k_max is None else k_max
    for name, v in (("--k-min", lo), ("--k-max", hi)):
        if isinstance(v, bool) or not isinstance(v, int) or not floor <= v <= n_layers:
            why = " (K must be past this model's first attention layer)" if floor > 1 else ""
            raise KOutOfRangeError(
                f"{name} must be in {floor}..{n_layers} for this {n_layers}-layer model{why}, got {v!r}"
            )
    if hi < lo:
        raise KOutOfRangeError(f"--k-max ({hi}) is below --k-min ({lo}); nothing to sweep")
    return list(range(lo, hi + 1))


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------
def _load(model: Any, dtype: str, device: str, attn: str, device_map: str | None = None):
    if isinstance(model, str):
        from vtwcli.models import load_model

        if device_map is not None:
            return load_model(model, dtype=dtype, device=device, attn=attn, device_map=device_map)
        return load_model(model, dtype=dtype, device=device, attn=attn)
    if hasattr(model, "prepare") and hasattr(model, "model"):
        return model
    raise UsageError("model must be an alias, a hub id, a local directory or a LoadedModel")


def _load_task(data: Any, data_path: str | None, split: str | None, seed: int):
    if isinstance(data, str):
        from vtwcli.data import get_task

        return get_task(data, path=data_path, split=split, seed=seed)
    return data


def _vision_of(task, record) -> tuple[list, list]:
    """(images, videos) of ``record``, decoded by the task itself.

    A video task decodes with its own frame sampling (lmms-eval's rule, see
    ``vtwcli/data/video.py``), not the model processor's; an image task may fill images
    lazily (the testbed draws its scenes), so the task is asked rather than the record.
    """
    if getattr(task, "has_video", False):
        return [], list(task.videos(record) or []) if record.video else []
    return list(task.images(record) or []), []


def _has_vision(task, record) -> bool:
    """Whether ``record`` has an image or video, decoding only when the record cannot say."""
    if getattr(task, "has_video", False):
        return bool(record.video)
    if record.images:
        return True
    return bool(task.images(record))


def pick_samples(task, samples: int, seed: int) -> list[int]:
    """Indices of ``samples`` records that have an image or video, drawn with ``seed``, sorted.

    Records are visited in a seeded random order and only until enough are found, so a large
    dataset does not have every image opened to pick 20. The same seed gives the same
    indices in every process, which is what lets data-parallel ranks split them.
    """
    order = list(range(len(task)))
    random.Random(seed).shuffle(order)
    picked: list[int] = []
    for i in order:
        if _has_vision(task, task[i]):
            picked.append(i)
            if len(picked) == samples:
                break
    if not picked:
        raise DatasetError(
            f"task {_task_name(task)!r} has no record with an image or video; calibration compares "
            "decoding with and without the vision tokens, so it needs them"
        )
    return sorted(picked)


def draw_samples(task, samples: int, seed: int) -> list[tuple[Any, list, list]]:
    """``samples`` records with their decoded images/videos (see :func:`pick_samples`)."""
    out = []
    for i in pick_samples(task, samples, seed):
        images, videos = _vision_of(task, task[i])
        out.append((task[i], images, videos))
    return out


def _prepare(loaded, task, batch: Sequence[tuple[Any, list, list]], style: str | None = None):
    prompts = [task.prompt(record) for record, _, _ in batch]
    if any(videos for _, _, videos in batch):
        return loaded.prepare(prompts, videos=[videos for _, _, videos in batch], style=style)
    return loaded.prepare(prompts, images=[images for _, images, _ in batch], style=style)


# --------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------
def calibrate(
    model: Any = "testbed",
    data: Any = "shapes",
    *,
    eta: float = 0.003,
    samples: int = 20,
    seed: int = 0,
    k_min: int | None = None,
    k_max: int | None = None,
    direction: str = "withdrawn||full",
    tokens: int = 1,
    batch_size: int = 1,
    out: str | Path | None = None,
    write: bool = True,
    data_path: str | None = None,
    split: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    attn: str = "sdpa",
    method: str = "fast",
    progress: Callable[[int, int], None] | None = None,
    device_map: str | None = None,
    dist: Any = None,
    prompt_style: str = "chat",
) -> CalibrationResult | None:
    """Choose K for ``model`` on ``data``: the first K whose mean KL over the samples is below eta.

    ``model`` is an alias/hub id/directory or an already loaded ``LoadedModel``; ``data`` a
    task name or a ``Task``. ``k_min`` defaults to the paper's 5 (1 for models under 20
    layers). ``direction`` is ``"withdrawn||full"`` (the paper's) or ``"full||withdrawn"``;
    ``tokens`` > 1 averages the KL over the first tokens of the full model's greedy answer.
    ``method="slow"`` runs the paper's loop (one forward per K) instead of the one-pass sweep.
    ``prompt_style``: ``"chat"`` (the processor's template) or ``"vicuna_v1"`` (LLaVA's original
    conversation; LLaVA-1.5/NeXT only), recorded in the profile.
    ``eta`` may also be a list (or "0.001,0.003,0.01"): every threshold's K is read from the one
    sweep into ``result.thresholds`` (no extra forwards) and the first one picks the saved K.
    Writes the profile (``out``, default ``profiles/<name>.yaml``, the shipped profile of a registered alias) unless ``write=False``;
    ``progress(done, total)`` is called after each batch.

    Under ``torchrun``/``accelerate launch`` (or with ``dist``, a
    :class:`vtwcli.distributed.DistContext`) every rank draws the same samples, sweeps its
    strided share on its own device, and rank 0 gathers the per-sample KLs, chooses K from
    the mean over all of them and writes the profile; the other ranks return None.
    ``device_map="auto"`` spreads one model's layers over the visible devices.
    """
    import torch

    from vtwcli.calibrate import sweep as sw

    etas = _check_etas(eta)
    eta = etas[0]
    samples = _check_positive("--samples", samples)
    tokens = _check_positive("--tokens", tokens)
    batch_size = _check_positive("--batch-size", batch_size)
    direction = check_direction(direction)
    from vtwcli.models.prompting import check_style, check_style_name

    prompt_style = check_style_name(prompt_style)
    if method not in ("fast", "slow"):
        raise UsageError(f"method must be 'fast' or 'slow', got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"--seed must be a whole number, got {seed!r}")
    if out is not None and Path(out).exists() and write:
        # refuse a file that is not ours (or is another model's) before an expensive run
        from vtwcli.profiles import load_profile

        load_profile(out)

    from vtwcli.distributed import context, merge_shards, run_sharded

    ctx = dist if dist is not None else context()
    if write and ctx.is_main:  # the profile must be writable before the model loads
        from vtwcli.fileio import check_writable

        target = Path(out) if out is not None else _default_profile_path(model)
        if target is not None:
            check_writable(target, "profile", create_dirs=True, example="profile.yaml")
    if device_map is not None and ctx.enabled:
        raise UsageError(
            "--device-map splits one model over the devices; under torchrun/accelerate launch each rank "
            "already has its own device. Use one or the other"
        )
    task = _load_task(data, data_path, split, seed)
    picked = pick_samples(task, samples, seed)
    mine = ctx.shard_indices(len(picked))  # positions in `picked`; disjoint over ranks
    state: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        loaded = _load(model, dtype, ctx.device(device) if ctx.enabled else device, attn, device_map)
        check_style(prompt_style, getattr(loaded, "arch", None), _alias(loaded))
        net = loaded.model
        parts = sw.model_parts(net, getattr(loaded, "arch", None))
        k_values = _k_range(k_min, k_max, parts.num_layers, floor=_k_floor(net))
        state.update(loaded=loaded, parts=parts, k_values=k_values)
        if ctx.is_main and write:
            path = Path(out) if out is not None else Path("profiles") / f"{_alias(loaded)}.yaml"
            if path.exists():
                _check_profile_owner(path, loaded, parts.num_layers)
            state["profile_path"] = path
        torch.manual_seed(seed)
        was_training = net.training
        net.eval()
        stats = sw.SweepStats()
        run = sw.fast_sweep if method == "fast" else sw.slow_sweep
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            for start in range(0, len(mine), batch_size):
                positions = mine[start : start + batch_size]
                batch = [(task[picked[p]], *_vision_of(task, task[picked[p]])) for p in positions]
                inputs = _prepare(loaded, task, batch, prompt_style)
                before = len(stats.prompt_lengths)
                got = run(net, inputs, k_values, tokens=tokens, direction=direction, stats=stats, parts=parts)
                for b, p in enumerate(positions):
                    rows.append((p, {
                        "kl": {k: got[k][b] for k in k_values},
                        "id": str(batch[b][0].id),
                        "lengths": (stats.prompt_lengths[before + b], stats.text_lengths[before + b],
                                    stats.vision_counts[before + b]),
                    }))  # fmt: skip
                del batch, inputs
                if progress is not None and ctx.is_main:
                    progress(min(start + batch_size, len(mine)), len(mine))
        finally:
            net.train(was_training)
        seconds = (stats.full_seconds, stats.tail_seconds, stats.generate_seconds)
        return {"rows": rows, "seconds": seconds}

    shares = run_sharded(ctx, work)
    if shares is None:
        return None  # not rank 0: rank 0 holds the result
    merged = merge_shards([share["rows"] for share in shares])
    if len(merged) != len(picked):
        raise RuntimeError(f"gathered {len(merged)} samples of {len(picked)}; a rank lost some")
    loaded, parts, k_values = state["loaded"], state["parts"], state["k_values"]
    net = loaded.model
    n_layers = parts.num_layers
    profile_path = state.get("profile_path")
    records = [(task[picked[i]], None, None) for i in range(len(picked))]
    per_sample: dict[int, list[float]] = {k: [row["kl"][k] for row in merged] for k in k_values}
    stats = sw.SweepStats(
        full_seconds=sum(share["seconds"][0] for share in shares),
        tail_seconds=sum(share["seconds"][1] for share in shares),
        generate_seconds=sum(share["seconds"][2] for share in shares),
        prompt_lengths=[row["lengths"][0] for row in merged],
        text_lengths=[row["lengths"][1] for row in merged],
        vision_counts=[row["lengths"][2] for row in merged],
    )

    curve = {k: summarize(k, per_sample[k]) for k in k_values}
    k, reached = choose_k({k: p.mean for k, p in curve.items()}, eta, n_layers)
    h = int(parts.text_config.hidden_size)
    mean_s = _mean(stats.prompt_lengths)
    mean_t = _mean(stats.text_lengths)
    mean_v = _mean(stats.vision_counts)
    ratio = vtw_flops_ratio(k, n_layers, mean_s, mean_v, h)
    thresholds = []
    for e in etas:
        k_e, reached_e = choose_k({kk: p.mean for kk, p in curve.items()}, e, n_layers)
        thresholds.append({"eta": e, "k": k_e, "reached": reached_e,
                           "flops_ratio": vtw_flops_ratio(k_e, n_layers, mean_s, mean_v, h)})  # fmt: skip
    fast_eq, slow_eq = sweep_cost_formula(k_values, n_layers, mean_s, mean_t, h)
    cost = {
        "fast_formula_forwards_per_sample": fast_eq,
        "slow_formula_forwards_per_sample": slow_eq,
        "measured_forwards_per_sample": (stats.full_seconds + stats.tail_seconds) / stats.full_seconds
        if stats.full_seconds > 0
        else float("nan"),
        "full_seconds": stats.full_seconds,
        "sweep_seconds": stats.tail_seconds,
        "generate_seconds": stats.generate_seconds,
        "method": method,
    }
    warnings: list[str] = []
    if not reached:
        best = min(((p.mean, kk) for kk, p in curve.items() if kk < n_layers), default=None)
        smallest = f"; the smallest mean KL was {best[0]:.3g} at K={best[1]}" if best else ""
        warnings.append(
            f"no K in {k_values[0]}..{min(k_values[-1], n_layers - 1)} has a mean KL below eta={eta:g}"
            f"{smallest}; K = {n_layers} (nothing withdrawn). Try a larger --eta or more --samples."
        )

    calibration = _record(
        loaded, task, eta, records, seed, k_values, direction, tokens, batch_size, curve, ratio,
        mean_s, mean_v, reached, cost, net,
    )
    calibration["world_size"] = ctx.world_size
    calibration["prompt_style"] = prompt_style
    result = CalibrationResult(
        model_alias=getattr(loaded, "alias", None),
        model_id=str(getattr(loaded, "model_id", None) or getattr(net.config, "_name_or_path", "") or "unknown"),
        num_layers=n_layers,
        task=_task_name(task),
        k=k,
        reached=reached,
        eta=eta,
        direction=direction,
        tokens=tokens,
        k_values=k_values,
        curve=curve,
        per_sample=per_sample,
        sample_ids=[str(r.id) for r, _, _ in records],
        flops_ratio=ratio,
        mean_prompt_length=mean_s,
        mean_vision_tokens=mean_v,
        cost=cost,
        calibration=calibration,
        hidden_size=h,
        warnings=warnings,
        world_size=ctx.world_size,
        thresholds=thresholds,
    )
    if write:
        before = _read_bytes(profile_path)
        result.profile_path = str(save_result(result, profile_path, loaded))
        result.profile_unchanged = before is not None and before == _read_bytes(profile_path)
    return result


def _mean(values: Sequence[float]) -> float:
    return float(sum(values)) / len(values) if values else 0.0


def _alias(loaded) -> str:
    """File stem for the default profile path: a registered model's shipped profile name."""
    return _stem(getattr(loaded, "alias", None), getattr(loaded, "model_id", None))


def _stem(alias: str | None, model_id: str | None) -> str:
    if alias:
        from vtwcli.models.registry import profile_stem

        return profile_stem(str(alias))
    ident = str(model_id or "model")
    return ident.rstrip("/").replace("\\", "/").split("/")[-1] or "model"


def _read_bytes(path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except (OSError, TypeError):
        return None


def _default_profile_path(model: Any) -> Path | None:
    """Where the profile goes without --out (as :func:`_alias` names it after loading), from the name alone."""
    if not isinstance(model, str):
        return Path("profiles") / f"{_alias(model)}.yaml" if hasattr(model, "model") else None
    from vtwcli.models.registry import resolve

    resolved = resolve(model)
    return Path("profiles") / f"{_stem(resolved.alias, resolved.model_id)}.yaml"


def _task_name(task) -> str:
    return str(getattr(task, "name", None) or type(task).__name__)


def _model_ref(loaded, n_layers: int):
    from vtwcli.profiles import ModelRef

    if hasattr(loaded, "model_ref"):
        return loaded.model_ref()
    net = loaded.model
    return ModelRef(
        alias=getattr(loaded, "alias", None),
        id=str(getattr(loaded, "model_id", None) or getattr(net.config, "_name_or_path", "") or "unknown"),
        num_layers=n_layers,
        architecture=getattr(net.config, "model_type", None),
        revision=getattr(loaded, "revision", None),
    )


def _check_profile_owner(path: Path, loaded, n_layers: int) -> None:
    from vtwcli.errors import ProfileError
    from vtwcli.profiles import load_profile

    existing = load_profile(path)
    ref = _model_ref(loaded, n_layers)
    if not existing.model.same_model(ref):
        raise ProfileError(
            f"profile {path} belongs to model {existing.model.alias or existing.model.id!r}, not "
            f"{ref.alias or ref.id!r}; choose another file with --out"
        )


def _round(x: float) -> float:
    return float(f"{x:.6g}")


# KL values are stored to 4 significant digits and no finer than 1e-7: float32 forwards that
# reduce in another order (another thread count, another CPU) differ below that, and a rerun
# with the same result must leave the profile byte-identical.
KL_DIGITS = 4
KL_RESOLUTION_DECIMALS = 7


def round_kl(x: float) -> float:
    """A KL value at the precision profiles store (see KL_DIGITS)."""
    if not math.isfinite(x):
        return float(x)
    return float(f"{round(float(x), KL_RESOLUTION_DECIMALS):.{KL_DIGITS}g}") + 0.0  # + 0.0: no -0.0


# Fields of a calibration record that describe one run rather than its result: a rerun whose
# result is the same keeps the old values, so the profile does not change.
RUN_ONLY_FIELDS = ("date", ("sweep_cost_forwards_per_sample", "measured"))


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from vtwcli import __version__

    return {"vtw": str(__version__), "transformers": str(transformers.__version__), "torch": str(torch.__version__)}


def _record(
    loaded, task, eta, records, seed, k_values, direction, tokens, batch_size, curve, ratio,
    mean_s, mean_v, reached, cost, net,
) -> dict[str, Any]:
    source = getattr(task, "source", None)
    dataset = source.to_dict() if hasattr(source, "to_dict") else {"dataset_id": _task_name(task)}
    param = next(net.parameters())
    return {
        "criterion": f"first K with mean KL({direction.replace('||', ' || ')}) < eta",
        "eta": eta,
        "direction": direction,
        "tokens": tokens,
        "samples": len(records),
        "seed": seed,
        "k_min": k_values[0],
        "k_max": k_values[-1],
        "reached": reached,
        "batch_size": batch_size,
        "dataset": {k: v for k, v in dataset.items() if v is not None},
        "dtype": str(param.dtype).replace("torch.", ""),
        "device": str(param.device),
        "attn": getattr(getattr(net, "config", None), "_attn_implementation", None),
        "versions": _versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "mean_prompt_length": _round(mean_s),
        "mean_vision_tokens": _round(mean_v),
        "flops_ratio": _round(ratio),
        "sweep_cost_forwards_per_sample": {
            "fast_formula": _round(cost["fast_formula_forwards_per_sample"]),
            "slow_formula": _round(cost["slow_formula_forwards_per_sample"]),
            "measured": _round(cost["measured_forwards_per_sample"]),
        },
        "curve": {k: {key: round_kl(v) for key, v in p.to_dict().items()} for k, p in curve.items()},
    }


def _without_run_fields(calibration: dict[str, Any]) -> dict[str, Any]:
    out = dict(calibration)
    for name in RUN_ONLY_FIELDS:
        if isinstance(name, tuple):
            outer, inner = name
            if isinstance(out.get(outer), dict):
                out[outer] = {k: v for k, v in out[outer].items() if k != inner}
        else:
            out.pop(name, None)
    return out


def _keep_unchanged(path: str | Path, task: str, entry):
    """``entry``, or the profile's own entry for ``task`` when it records the same result (so a
    rerun rewrites nothing: no new date, no new timing)."""
    from vtwcli.errors import VTWError
    from vtwcli.profiles import load_profile

    p = Path(path)
    if not p.is_file():
        return entry
    try:
        old = load_profile(p).tasks.get(task)
    except VTWError:
        return entry
    if old is None or (old.k, old.method, old.source, old.note) != (entry.k, entry.method, entry.source, entry.note):
        return entry
    if _without_run_fields(old.calibration) != _without_run_fields(entry.calibration):
        return entry
    return old


def save_result(result: CalibrationResult, path: str | Path, loaded) -> Path:
    """Merge ``result`` into the profile at ``path`` (atomic; other tasks kept)."""
    from vtwcli.profiles import TaskEntry, merge_task

    entry = TaskEntry(k=result.k, method="vtw", source="calibrated", calibration=result.calibration)
    entry = _keep_unchanged(path, result.task, entry)
    merged = merge_task(path, _model_ref(loaded, result.num_layers), result.task, entry)
    return merged.path or Path(path)
