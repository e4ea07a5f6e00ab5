"""``inspect()``: where a model's output tokens put their attention, layer by layer (paper, Figures 4-5).

Reads top to bottom: check the options, load the model and the task, draw the samples (only
records with an image or video), generate each one greedily with the attention probe
attached (and the withdrawal engine, when asked), and average the shares per layer and per
output position.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtwcli.errors import DatasetError, KOutOfRangeError, UsageError, k_below_one
from vtwcli.inspect.probe import TYPES

DEFAULT_SAMPLES = 50
ENGINE_METHODS = ("vtw", "fastv", "rand", "fastv-mask")


@dataclass
class InspectResult:
    """Mean attention shares of the output tokens over the samples.

    ``per_layer[j]``: shares (system, vision, instruction, output) at layer j, averaged over
    heads, output tokens and samples (Figure 4); ``None`` for a layer with no attention (linear
    attention, short convolution), which gives no share to anything. ``per_position[t]``: shares of output token t,
    averaged over heads, layers and the samples that generated it (Figure 5;
    ``position_counts[t]`` says how many did). ``k`` is the K marked on the pictures (from
    ``k_source``); ``engine`` says what was attached while recording, if anything.
    """

    model_alias: str | None
    model_id: str
    num_layers: int
    task: str
    attn: str
    sample_ids: list[str]
    per_layer: list[list[float] | None]
    per_position: list[list[float]]
    position_counts: list[int]
    prompt_tokens: dict[str, float]  # mean prompt tokens per type
    outputs_per_sample: float
    k: int | None = None
    k_source: str | None = None
    engine: dict[str, Any] | None = None
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    max_new_tokens: int = 0

    @property
    def name(self) -> str:
        return self.model_alias or self.model_id

    def share(self, layer: int, kind: str) -> float | None:
        row = self.per_layer[layer]
        return None if row is None else row[TYPES.index(kind)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"alias": self.model_alias, "id": self.model_id, "num_layers": self.num_layers},
            "task": self.task,
            "attn": self.attn,
            "types": list(TYPES),
            "samples": len(self.sample_ids),
            "sample_ids": self.sample_ids,
            "max_new_tokens": self.max_new_tokens,
            "outputs_per_sample": self.outputs_per_sample,
            "prompt_tokens": self.prompt_tokens,
            "k": self.k,
            "k_source": self.k_source,
            "engine": self.engine,
            "per_layer": [None if row is None else dict(zip(TYPES, row, strict=True)) for row in self.per_layer],
            "per_position": [
                dict(zip(TYPES, row, strict=True), samples=n)
                for row, n in zip(self.per_position, self.position_counts, strict=True)
            ],
            "per_sample": self.per_sample,
            "seconds": self.seconds,
        }


def _rows(matrix, digits: int | None = None) -> list[list[float] | None]:
    """[N, 4] shares as lists; a layer without attention (its NaN row) as None."""
    out = []
    for row in matrix.tolist():
        if any(x != x for x in row):
            out.append(None)
        else:
            out.append([round(x, digits) for x in row] if digits is not None else row)
    return out


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def inspect(
    model: Any = "testbed",
    data: Any = "shapes",
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    max_new_tokens: int | None = None,
    k: int | None = None,
    profile: str | None = None,
    task: str | None = None,
    withdraw: bool = False,
    method: str = "vtw",
    ratio: float = 0.5,
    data_path: str | None = None,
    split: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    attn: str = "sdpa",
    device_map: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InspectResult:
    """Attention shares of the output tokens per token type, per layer and per output position.

    ``model`` is an alias/hub id/directory or a loaded ``LoadedModel``; ``data`` a task name or
    a ``Task``; ``samples`` records with an image or video are drawn with ``seed``; each is
    answered greedily with the task's settings (``max_new_tokens`` overrides its length).
    ``k`` (else ``profile``'s K for ``task``, else the shipped ``profiles/<model>.yaml`` when
    there is one) is the K the pictures mark; ``withdraw=True`` also attaches the engine
    (``method`` vtw, fastv or fastv-mask with ``ratio``, or rand) at that K while recording, to show what
    the text tokens attend to after withdrawal.
    """
    import torch

    from vtwcli.calibrate.api import _load, _load_task, _prepare, _vision_of, pick_samples

    samples = _check_count("--samples", samples)
    if max_new_tokens is not None:
        _check_count("--max-new-tokens", max_new_tokens)
    if method not in ENGINE_METHODS:
        raise UsageError(f"--method must be one of {', '.join(ENGINE_METHODS)}, got {method!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise KOutOfRangeError(f"--k must be a whole number (a layer count), got {k!r}")
    if k is not None and k < 1:
        raise k_below_one("--k", k)
    prof = None
    if k is None:
        from vtwcli.profiles import default_profile_path, load_profile

        if profile is None and isinstance(model, str):
            profile = default_profile_path(model)
        if profile is not None:
            prof = load_profile(profile)
    if withdraw and k is None and prof is None:
        raise UsageError("--withdraw attaches the engine at K: give --k or --profile (or run `vtw calibrate` first)")

    the_task = _load_task(data, data_path, split, seed)
    task_name = str(getattr(the_task, "name", None) or data)
    try:
        picked = pick_samples(the_task, samples, seed)
    except DatasetError:
        raise DatasetError(
            f"task {task_name!r} has no record with an image or video; inspect measures the attention the "
            "output tokens give to vision tokens, so it needs them (choose an image or video task)"
        ) from None
    loaded = _load(model, dtype, device, attn, device_map)
    net = loaded.model
    arch = loaded.arch
    n_layers = int(arch.num_layers(net.config))
    k_source = "--k" if k is not None else None
    if k is None and prof is not None:
        prof.check_model_layers(n_layers)
        if task is not None:  # asked for by name: a missing entry is an error
            entry_task = prof.entry(task)[0]
        else:
            entry_task = task_name if task_name in prof.tasks else prof.entry(None)[0]
        k = prof.k_for(entry_task)
        k_source = f"profile {prof.path or profile} (task {entry_task})"
    if k is not None and not 1 <= k <= n_layers:
        raise KOutOfRangeError(
            f"--k {k} is outside 1..{n_layers}: {loaded.alias or loaded.model_id} has {n_layers} decoder layers "
            f"(K = layers that see the vision tokens; K = {n_layers} withdraws nothing)"
        )

    gen = dict(the_task.generation.generate_kwargs())
    if max_new_tokens is not None:
        gen["max_new_tokens"] = max_new_tokens
    gen.update(do_sample=False, num_beams=1)
    tok = loaded.tokenizer
    if getattr(tok, "pad_token_id", None) is not None:
        gen["pad_token_id"] = tok.pad_token_id

    from vtwcli.inspect.probe import AttentionProbe

    probe = AttentionProbe(net, arch)
    engine = None
    if withdraw:
        from vtwcli.engine import apply

        engine = apply(net, k, method=method, ratio=ratio, seed=seed)
    layer_sum = torch.zeros(n_layers, len(TYPES), dtype=torch.float64)
    layer_rows = 0
    pos_sum: list[torch.Tensor] = []
    pos_count: list[int] = []
    prompt_counts = torch.zeros(3, dtype=torch.float64)
    per_sample: list[dict[str, Any]] = []
    ids: list[str] = []
    was_training = net.training
    net.eval()
    t0 = time.perf_counter()
    try:
        for done, i in enumerate(picked, 1):
            record = the_task[i]
            inputs = _prepare(loaded, the_task, [(record, *_vision_of(the_task, record))])
            if inputs["input_ids"].shape[0] != 1:
                raise RuntimeError("inspect: one prompt gave several rows")
            with probe.sample(inputs["input_ids"][0]) as rec, torch.inference_mode():
                seq = net.generate(**inputs, **gen)
            m = rec.matrix()  # [T, N, 4]
            layer_sum += m.sum(0)
            layer_rows += m.shape[0]
            for t in range(m.shape[0]):
                if t == len(pos_sum):
                    pos_sum.append(torch.zeros(len(TYPES), dtype=torch.float64))
                    pos_count.append(0)
                pos_sum[t] += m[t].nanmean(0)  # over the layers that have attention
                pos_count[t] += 1
            prompt_counts += torch.tensor(rec.counts, dtype=torch.float64)
            new = seq[0, inputs["input_ids"].shape[1]:]
            ids.append(str(record.id))
            per_sample.append({
                "id": str(record.id),
                "reply": tok.decode(new, skip_special_tokens=True).strip() if hasattr(tok, "decode") else None,
                "outputs": int(m.shape[0]),
                "prompt_tokens": dict(zip(TYPES[:3], rec.counts, strict=True)),
                "per_layer": _rows(m.mean(0), 6),
            })  # fmt: skip
            if progress is not None:
                progress(done, len(picked))
    finally:
        if engine is not None:
            engine.remove()
        net.train(was_training)
    seconds = time.perf_counter() - t0
    n = len(ids)
    per_layer = _rows(layer_sum / max(layer_rows, 1))
    per_position = [(s / c).tolist() for s, c in zip(pos_sum, pos_count, strict=True)]
    return InspectResult(
        model_alias=getattr(loaded, "alias", None),
        model_id=str(getattr(loaded, "model_id", "") or getattr(net.config, "_name_or_path", "") or "unknown"),
        num_layers=n_layers,
        task=task_name,
        attn=str(arch.text_config(net.config)._attn_implementation),
        sample_ids=ids,
        per_layer=per_layer,
        per_position=per_position,
        position_counts=pos_count,
        prompt_tokens=dict(zip(TYPES[:3], (prompt_counts / max(n, 1)).tolist(), strict=True)),
        outputs_per_sample=layer_rows / max(n, 1),
        k=k,
        k_source=k_source,
        engine={"method": method, "k": k, **({"ratio": ratio} if method in ("fastv", "fastv-mask") else {})} if withdraw else None,
        per_sample=per_sample,
        seconds=seconds,
        max_new_tokens=int(gen["max_new_tokens"]),
    )
