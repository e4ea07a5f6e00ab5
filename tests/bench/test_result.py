"""How a result is shown: a readable FLOPs unit, distinct column names, the same columns everywhere."""

from __future__ import annotations

from vtwcli.bench.result import BenchResult, MethodRow


def _result(tflops_base, cuda=False, has_answers=True, headline=None):
    rows = [
        MethodRow(method="baseline", tflops=tflops_base, tflops_ratio=1.0, samples=2, accuracy=0.5, metric="acc"),
        MethodRow(method="vtw", k=3, tflops=tflops_base * 0.58, tflops_ratio=0.58, samples=2, accuracy=0.5,
                  metric="acc"),  # fmt: skip
    ]
    task = {"name": "shapes", "samples": 2, "has_answers": has_answers}
    if headline:
        task["headline"] = headline
    return BenchResult(model={"alias": "m", "num_layers": 6, "hidden_size": 128}, task=task, settings={},
                       environment={"cuda": cuda, "nvml": False, "device_name": "cpu"}, prompt={}, rows=rows)  # fmt: skip


def test_flops_unit_fits_the_model():
    headers, body = _result(2.652e-4).display_rows()  # the testbed: 265 MFLOPs, not 0.0002652 TFLOPs
    assert "MFLOPs" in headers and body[0][headers.index("MFLOPs")] == "265"
    headers, body = _result(8.48).display_rows()  # LLaVA-1.5-7B
    assert "TFLOPs" in headers and body[0][headers.index("TFLOPs")] == "8.48"
    headers, body = _result(0.0312).display_rows()
    assert "GFLOPs" in headers and body[1][headers.index("GFLOPs")] == "18.1"


def test_column_names_are_distinct_and_name_the_metric():
    headers, _ = _result(1.0, cuda=True, headline="MME total").display_rows()
    assert len(headers) == len(set(headers)), headers
    assert "MME total" in headers and "accuracy" not in headers
    assert "x" not in headers and "FLOPs x base" in headers and "mem x base" in headers


def test_terminal_and_markdown_show_the_same_columns():
    res = _result(1.0)
    table = res.rich_table()
    shown = [str(c.header) for c in table.columns]
    md_header = res.to_markdown().splitlines()[0]
    assert [h.strip() for h in md_header.strip("|").split("|")] == shown
    assert "peak MiB" not in shown  # n/a everywhere without CUDA: left out of both


def test_csv_has_every_column_and_interval_bounds():
    res = _result(1.0)
    res.rows[1].prefill_ratio, res.rows[1].prefill_ratio_ci95 = 0.6, [0.55, 0.65]
    header = res.to_csv().splitlines()[0].split(",")
    assert "prefill_ratio_ci95_lo" in header and "peak_mem_bytes" in header
    assert len(header) == len(set(header))
