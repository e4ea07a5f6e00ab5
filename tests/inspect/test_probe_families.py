"""The attention probe on every family the engine's conformance suite builds, against full maps.

The models and inputs are the conformance suite's own (tests/engine/conformance/families.py).
The reference is the unmodified model in eager mode with ``output_attentions=True`` and no
cache, the whole sequence recomputed at each greedy step: the last row of each attention
layer's map summed per token type. Layers without attention (linear attention, short
convolution) have no map; the probe must give them a NaN row, and every attention layer the
reference's value. Runs on eager and, where the family has it, sdpa models with the same weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine" / "conformance"))
import families as F  # noqa: E402
import reference as R  # noqa: E402

from vtwcli.archs import get_arch  # noqa: E402
from vtwcli.inspect.probe import AttentionProbe  # noqa: E402

STEPS = 2
N = 4
SUPPRESS = list(range(F.TEXT_HIGH, F.VOCAB))  # a generated token never takes a special id
FAMS = [pytest.param(t, id=t) for t in F.FAMILIES]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _attention_layers(model) -> list[int]:
    return [j for j, t in enumerate(R.layer_types(model)) if t not in ("linear_attention", "conv")]


@torch.no_grad()
def _reference(model, batch, model_type):
    """[STEPS, N, 4] shares (NaN for layers without a map) and the greedy tokens."""
    prompt = batch["input_ids"][0]
    vision = F.vision_mask(batch)[0]
    first = int(vision.nonzero()[0, 0])
    attending = _attention_layers(model)
    cur, rows, tokens = dict(batch), [], []
    for _ in range(STEPS):
        length = cur["input_ids"].shape[1]
        types = torch.full((length,), 3)  # generated tokens: output
        types[: prompt.numel()] = 2
        types[:first] = 0
        types[: prompt.numel()][vision] = 1
        out = model(**cur, output_attentions=True, use_cache=False)
        maps = [a for a in out.attentions if a is not None]
        assert len(maps) == len(attending)
        per_layer = torch.full((N, 4), float("nan"), dtype=torch.float64)
        for j, att in zip(attending, maps, strict=True):
            row = att[0, :, -1].double()  # [H, keys]
            assert row.shape[1] == length
            per_layer[j] = torch.stack([row[:, types == c].sum(1) for c in range(4)], 1).mean(0)
        rows.append(per_layer)
        logits = out.logits[0, -1].clone()
        logits[SUPPRESS] = float("-inf")
        token = int(logits.argmax())
        tokens.append(token)
        cur = R.extend(cur, token, **F.extend_kwargs(model_type))
    return torch.stack(rows), tokens


def _probe(model, batch):
    probe = AttentionProbe(model, get_arch(model))
    with probe.sample(batch["input_ids"][0]) as rec, torch.no_grad():
        seq = model.generate(**batch, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False,
                             suppress_tokens=SUPPRESS)
    return rec.matrix(), seq[0, batch["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("mt", FAMS)
def test_family_shares_equal_full_map_reference(mt):
    fam = F.FAMILIES[mt]
    reason = F.missing(fam)
    if reason:
        pytest.skip(reason)
    eager = F.build(mt, "eager", num_layers=N)
    batch = F.inputs(eager, rows=(1,))
    want, want_tokens = _reference(eager, batch, mt)
    attending = _attention_layers(eager)
    hybrid = len(attending) < N
    assert hybrid == bool(fam.mixers)  # the families with convolution / linear attention layers are the hybrid ones
    checked = []
    for attn in ("eager", "sdpa"):
        if attn in fam.no_attn:
            continue
        model = eager if attn == "eager" else F.build(mt, attn, num_layers=N)
        got, got_tokens = _probe(model, batch)
        assert got_tokens == want_tokens, attn
        assert got.shape == (STEPS, N, 4)
        none = [j for j in range(N) if j not in attending]
        assert torch.isnan(got[:, none]).all() and not torch.isnan(got[:, attending]).any(), attn
        got_a, want_a = got[:, attending], want[:, attending]
        assert torch.allclose(got_a.sum(-1), torch.ones_like(got_a[..., 0]), atol=1e-5)
        assert torch.allclose(got_a, want_a, atol=1e-5), (attn, (got_a - want_a).abs().max())
        # not vacuous: vision and the prompt text draw attention at the prefill, output from step 1 on
        assert (got_a[0, :, 1] > 1e-3).all() and (got_a[0, :, 3] == 0).all() and (got_a[1:, :, 3] > 0).all()
        checked.append(attn)
    assert checked == ["eager"] + ([] if "sdpa" in fam.no_attn else ["sdpa"])


def test_softcapping_is_what_makes_paligemma_match():
    """PaliGemma 2's Gemma 2 decoder soft-caps its logits; without the cap the shares move,
    so the family test above checks the cap and not a no-op."""
    fam = F.FAMILIES["paligemma"]
    if F.missing(fam):
        pytest.skip(F.missing(fam))
    model = F.build("paligemma", "eager", num_layers=N)
    model.config.get_text_config(decoder=True).attn_logit_softcapping = 1.0  # strong cap: far from the raw logits
    for layer in get_arch(model).decoder_layers(model):
        layer.self_attn.attn_logit_softcapping = 1.0
    batch = F.inputs(model, rows=(1,))
    want, _ = _reference(model, batch, "paligemma")
    got, _ = _probe(model, batch)
    assert torch.allclose(got, want, atol=1e-5)
    probe = AttentionProbe(model, get_arch(model))
    real = probe._record
    probe._record = lambda j, q, k, m, s, softcap=None: real(j, q, k, m, s, None)  # the probe without the cap
    with probe.sample(batch["input_ids"][0]) as rec, torch.no_grad():
        model.generate(**batch, max_new_tokens=1, do_sample=False, suppress_tokens=SUPPRESS)
    assert (rec.matrix()[0] - want[0]).abs().max() > 1e-2


def test_layers_without_attention_are_na_in_what_inspect_reports(tmp_path):
    """Qwen3.5's linear-attention layers: the probe's NaN rows become None in the result, "n/a"
    in the table, null in the JSON, and the per-output-token means average the attention layers."""
    import json

    from rich.console import Console

    from vtwcli.inspect.api import InspectResult, _rows
    from vtwcli.inspect.report import layer_table, summary_lines, write_png

    fam = F.FAMILIES["qwen3_5"]
    if F.missing(fam):
        pytest.skip(F.missing(fam))
    model = F.build("qwen3_5", "sdpa", num_layers=N)
    batch = F.inputs(model, rows=(1,))
    m, _ = _probe(model, batch)
    attending = _attention_layers(model)
    assert attending == [1, 3]
    per_layer = _rows(m.mean(0))
    assert [j for j, row in enumerate(per_layer) if row is None] == [0, 2]
    assert torch.allclose(torch.tensor(per_layer[1], dtype=torch.float64), m[:, 1].mean(0))
    per_position = [m[t].nanmean(0).tolist() for t in range(m.shape[0])]
    assert torch.allclose(torch.tensor(per_position[0], dtype=torch.float64), m[0, attending].mean(0))
    result = InspectResult(model_alias="tiny", model_id="tiny", num_layers=N, task="t", attn="sdpa",
                           sample_ids=["0"], per_layer=per_layer, per_position=per_position,
                           position_counts=[1] * STEPS, prompt_tokens={"system": 1.0, "vision": 2.0, "instruction": 3.0},
                           outputs_per_sample=float(STEPS), k=2, k_source="--k")
    console = Console(width=120, record=True)
    console.print(layer_table(result))
    text = console.export_text()
    rows = {line.split("│")[1].strip().split()[0]: line for line in text.splitlines()
            if line.count("│") > 2 and line.split("│")[1].strip()[:1].isdigit()}
    assert "n/a" in rows["0"] and "n/a" in rows["2"] and "n/a" not in rows["1"] and "n/a" not in rows["3"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["per_layer"][0] is None and data["per_layer"][2] is None
    assert data["per_layer"][3]["vision"] == pytest.approx(per_layer[3][1])
    assert result.share(0, "vision") is None and result.share(1, "vision") == per_layer[1][1]
    assert summary_lines(result)
    pytest.importorskip("matplotlib")
    assert write_png(result, tmp_path / "a.png").stat().st_size > 0


def test_attention_sinks_are_refused_not_reported_wrong():
    """A layer with sinks (extra per-head logits the probe does not reproduce) is refused."""
    from vtwcli.errors import UnsupportedModelError

    model = F.build("qwen3_vl", "eager", num_layers=N)
    batch = F.inputs(model, rows=(0,))
    attn = get_arch(model).decoder_layers(model)[2].self_attn
    attn.sinks = torch.nn.Parameter(torch.zeros(4))
    try:
        with pytest.raises(UnsupportedModelError, match="sinks"):
            _probe(model, batch)
    finally:
        del attn.sinks
