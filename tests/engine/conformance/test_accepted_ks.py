"""The Ks the engine accepts per model and method, and the default K picked from them.

Expectations are written out by hand from each decoder's layer pattern (K must be past the
first attention layer; FastV ranks tokens by layer K-1's attention, so that layer must attend;
K = N withdraws nothing and is always allowed), then checked against what ``apply`` itself
accepts and refuses at every K.
"""

from __future__ import annotations

import families as F
import pytest
import torch

import vtwcli.engine
from vtwcli.engine import accepted_ks, default_k
from vtwcli.errors import VTWError

L, A, C = "linear_attention", "full_attention", "conv"
QWEN3_5_REAL = [L, L, L, A, L, L, L, A]  # the checkpoint's own pattern (3 linear layers, then attention)


def _build(model_type: str, layer_types: list[str] | None = None, num_layers: int = 4):
    fam = F.FAMILIES[model_type]
    reason = F.missing(fam)
    if reason:
        pytest.skip(reason)
    config = fam.make_config(len(layer_types) if layer_types else num_layers)
    if layer_types:
        config.text_config.layer_types = list(layer_types)
    torch.manual_seed(0)
    return F._cls(fam.model_class)._from_config(config, attn_implementation="eager", dtype=torch.float32).eval()


def _apply_accepts(model, k: int, method: str) -> bool:
    try:
        handle = vtwcli.engine.apply(model, k, method=method)
    except VTWError:
        return False
    handle.remove()
    return True


CASES = [
    # model_type, layer types (None: the family's default), {method: accepted Ks}
    ("mistral3", None, {"vtw": [1, 2, 3, 4], "fastv": [1, 2, 3, 4], "rand": [1, 2, 3, 4]}),
    ("qwen3_5", QWEN3_5_REAL, {"vtw": [4, 5, 6, 7, 8], "fastv": [4, 8], "rand": [4, 5, 6, 7, 8]}),
    ("lfm2_vl", [A, C, A, C], {"vtw": [1, 2, 3, 4], "fastv": [1, 3, 4]}),
]


@pytest.mark.parametrize("model_type,types,expected", CASES, ids=[c[0] for c in CASES])
def test_accepted_ks_follow_the_layer_pattern_and_match_apply(model_type, types, expected):
    model = _build(model_type, types)
    n = len(types) if types else 4
    for method, ks in expected.items():
        assert accepted_ks(model, method) == ks, method
        assert [k for k in range(1, n + 1) if _apply_accepts(model, k, method)] == ks, method


def test_default_k_keeps_an_accepted_preference_else_takes_the_nearest_accepted():
    plain = _build("mistral3")
    assert default_k(plain, 2, "fastv") == 2 and default_k(plain, 2, "vtw") == 2
    assert default_k(plain, 9, "vtw") == 4  # clamped to N
    qwen = _build("qwen3_5", QWEN3_5_REAL)
    assert default_k(qwen, 2, "fastv") == 4  # FastV's K=2 is before the first attention layer (3)
    assert default_k(qwen, 6, "fastv") == 8  # 4 and 8 are equally near: the later K withdraws less
    assert default_k(qwen, 5, "fastv") == 4
    assert default_k(qwen, 4, "vtw") == 4 and default_k(qwen, 1, "vtw") == 4
    lfm2 = _build("lfm2_vl", [A, C, A, C])
    assert default_k(lfm2, 2, "fastv") == 3  # layer 1 is a convolution: 1 and 3 are equally near


def test_bench_runs_both_fastv_rows_at_one_k_that_fastv_mask_accepts():
    """bench's FastV default K (2) moves to the nearest K *both* FastV rows accept: fastv-mask
    needs every layer from K on to attend. On the checkpoint's own Qwen3.5 pattern no K below N
    is left for it, so bench stops with one line unless --fastv-k is given."""
    from vtwcli.bench import runner
    from vtwcli.errors import UsageError

    both = "baseline,fastv,fastv-mask"
    first_linear = _build("qwen3_5", [L, A, A, A])  # fastv-mask accepts 2, 3, 4
    specs, _, _, notices = runner.resolve_specs(runner.plan("m", methods=both, random_init=True), 4, "m", first_linear)
    assert {s.name: s.k for s in specs if s.name != "baseline"} == {"fastv": 2, "fastv-mask": 2}
    real = _build("qwen3_5", QWEN3_5_REAL)  # fastv-mask accepts only 8 = N
    with pytest.raises(UsageError, match="fastv-mask .* accepts no K below 8 .* drop fastv-mask from --methods or pass --fastv-k"):
        runner.resolve_specs(runner.plan("m", methods=both, random_init=True), 8, "m", real)
    # without fastv-mask, in-place FastV still runs at its nearest accepted K (4)
    specs, _, _, _ = runner.resolve_specs(runner.plan("m", methods="baseline,fastv", random_init=True), 8, "m", real)
    assert [s.k for s in specs if s.name == "fastv"] == [4]
    # a K the user gives is not moved (the engine then refuses it, or not, when it is applied)
    specs, _, _, _ = runner.resolve_specs(runner.plan("m", methods=both, random_init=True, fastv_k=4), 8, "m", real)
    assert {s.name: s.k for s in specs if s.name != "baseline"} == {"fastv": 4, "fastv-mask": 4}
