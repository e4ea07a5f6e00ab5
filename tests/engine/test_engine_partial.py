"""The calibration helper (capture once, continue from layer K on kept rows) against the
hand-run reference and the unmodified model."""

from __future__ import annotations

import engine_support as S
import pytest
import torch
from tiny import TINY_ARCHS

from vtwcli.engine import capture_layer_inputs, run_layers_from


@pytest.mark.parametrize("arch", TINY_ARCHS)
@torch.no_grad()
def test_run_layers_from_matches_reference_for_every_k(arch):
    model = S.make(arch, "sdpa")
    batch = S.inputs(model, rows=(1,))
    vision = S.vision_of(model, batch)[0]
    captured = capture_layer_inputs(model, batch)
    torch.testing.assert_close(captured.logits[0], model(**batch).logits[0, -1], atol=S.ATOL, rtol=S.RTOL)
    assert torch.equal(captured.vision[0], vision)
    for k in range(1, 4):
        expected = S.reference_last_logits(model, batch, k, drop=vision)
        torch.testing.assert_close(run_layers_from(model, captured, k)[0], expected, atol=S.ATOL, rtol=S.RTOL)
    torch.testing.assert_close(run_layers_from(model, captured, 4)[0], captured.logits[0], atol=S.ATOL, rtol=S.RTOL)


@torch.no_grad()
def test_run_layers_from_on_a_padded_batch_matches_rows_alone():
    model = S.make(TINY_ARCHS[1], "eager")
    batch = S.inputs(model, rows=(0, 1, 2))
    together = run_layers_from(model, capture_layer_inputs(model, batch), 2)
    for b, v in enumerate((0, 1, 2)):
        alone = S.inputs(model, rows=(v,))
        got = run_layers_from(model, capture_layer_inputs(model, alone), 2)[0]
        torch.testing.assert_close(together[b], got, atol=S.ATOL, rtol=S.RTOL)
