"""The result of one ``vtw bench`` run, and its renderings (rich table, JSON, CSV, markdown).

JSON schema (``kind: vtw-bench``, ``schema_version: 1``), documented in docs/bench.md:

- ``model``: alias, id, architecture, num_layers, hidden_size, random_init
- ``task``: name, source (what was loaded), samples, has_answers
- ``settings``: methods, K values, FastV ratio, max_new_tokens, warm-up, greedy, dtype, attn, device,
  world_size (data-parallel ranks that shared the samples), device_map
- ``environment``: device name, library versions, threads, whether CUDA and NVML were used;
  ``ranks``: each rank's device and sample count
- ``prompt``: average prompt length and vision-token count the FLOPs formula was evaluated at
- ``rows``: one per method, every column of the table (see :data:`ROW_FIELDS`); the
  ``*_ratio`` latency columns are medians of paired per-sample ratios to the baseline, with
  their 95% bootstrap interval in ``*_ratio_ci95``
- ``paired``: ``{"vtw/baseline": {"prefill": {n, median, ci95, verdict}, "decode_per_token":
  ..., "e2e": ..., "e2e_per_token": ...}, "fastv/baseline": ..., "vtw/fastv": ...}``
- ``notices``: what the reader must know (no CUDA, a method that ran out of memory...)
- ``samples`` (with ``--log-samples``): per sample and method the reply, parsed answer, timings
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
KIND = "vtw-bench"

# Every column a row carries; the JSON has each of them (None where not measured).
ROW_FIELDS = (
    "method", "k", "ratio", "tflops", "tflops_ratio", "tflops_exact", "tflops_exact_ratio",
    "prefill_ms", "prefill_ratio", "prefill_ratio_ci95", "decode_ms_per_token", "decode_ratio",
    "decode_ratio_ci95", "e2e_ms", "e2e_ratio", "e2e_ratio_ci95", "e2e_ms_per_token", "e2e_per_token_ratio",
    "e2e_per_token_ratio_ci95", "new_tokens_mean", "kv_bytes_per_sample", "kv_ratio",
    "peak_mem_bytes", "per_sample_mem_bytes", "per_sample_mem_ratio",
    "nvml_peak_bytes", "nvml_per_sample_bytes", "nvml_per_sample_ratio",
    "accuracy", "metric", "metrics", "agreement", "samples", "error", "per_rank", "kind", "k_range",
    "samples_per_s", "tokens_per_s", "tokens_per_s_ratio", "tokens_per_s_ratio_ci95",
    "max_batch", "max_batch_capped", "max_batch_ratio", "max_batch_predicted", "max_batch_predicted_ratio",
    "peak_bytes_at_max_batch", "search", "positions",
)  # fmt: skip


_SPREADS = ("prefill_ms", "decode_ms_per_token", "e2e_ms", "e2e_ms_per_token")


@dataclass
class MethodRow:
    method: str
    k: int | None = None
    ratio: float | None = None
    tflops: float | None = None
    tflops_ratio: float | None = None
    # architecture-exact count (real heads, windows, MLP, active experts; attended pairs), next to the paper's
    tflops_exact: float | None = None
    tflops_exact_ratio: float | None = None
    prefill_ms: dict[str, Any] | None = None  # median, p25, p75, min, max, n
    prefill_ratio: float | None = None  # median of the per-sample ratios to the baseline
    prefill_ratio_ci95: list[float] | None = None  # its 95% bootstrap interval
    decode_ms_per_token: dict[str, Any] | None = None
    decode_ratio: float | None = None
    decode_ratio_ci95: list[float] | None = None
    e2e_ms: dict[str, Any] | None = None
    e2e_ratio: float | None = None
    e2e_ratio_ci95: list[float] | None = None
    e2e_ms_per_token: dict[str, Any] | None = None  # end to end divided by the tokens generated
    e2e_per_token_ratio: float | None = None
    e2e_per_token_ratio_ci95: list[float] | None = None
    new_tokens_mean: float | None = None
    kv_bytes_per_sample: float | None = None  # mean over samples, at the end of generation
    kv_ratio: float | None = None
    peak_mem_bytes: int | None = None  # max over samples (torch allocator)
    per_sample_mem_bytes: float | None = None  # median over samples of peak minus loaded model
    per_sample_mem_ratio: float | None = None
    nvml_peak_bytes: int | None = None
    nvml_per_sample_bytes: float | None = None
    nvml_per_sample_ratio: float | None = None
    accuracy: float | None = None
    metric: str | None = None
    metrics: dict[str, float] | None = None
    agreement: float | None = None  # share of samples whose parsed answer equals baseline's
    samples: int = 0  # samples measured
    error: str | None = None  # e.g. out of memory: the row's other fields cover what ran before
    # data-parallel runs: per rank {rank, device, samples, prefill_ms, decode_ms_per_token, e2e_ms};
    # the columns above pool every rank's samples
    per_rank: list[dict[str, Any]] | None = None
    kind: str | None = None  # the method this row runs (``vtw`` for a row labelled ``vtw@4``)
    k_range: list[int] | None = None  # random-k: K was drawn per sample from lo..hi
    # throughput (--batch-size B > 1, or at the max batch with --memory-budget): pooled over the
    # row's generate() calls (rows of every call / seconds of every call)
    samples_per_s: float | None = None
    tokens_per_s: float | None = None  # generated tokens (each row up to its end-of-sequence)
    # median of the tokens/s ratios to the baseline paired per batch (or per round), and its interval
    tokens_per_s_ratio: float | None = None
    tokens_per_s_ratio_ci95: list[float] | None = None
    # --memory-budget: the largest batch of the task's prompts that fit, and the analytic prediction
    max_batch: int | None = None
    max_batch_capped: bool | None = None  # the largest size tried (all the prompts) fit
    max_batch_ratio: float | None = None
    max_batch_predicted: int | None = None
    max_batch_predicted_ratio: float | None = None
    peak_bytes_at_max_batch: int | None = None
    search: dict[str, Any] | None = None  # every size tried {batch, fits, peak_bytes, reason, ...}, the prediction
    positions: str | None = None  # the engine's position policy after withdrawal (keep or rearrange)


@dataclass
class BenchResult:
    model: dict[str, Any]
    task: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    prompt: dict[str, Any]
    rows: list[MethodRow]
    notices: list[str] = field(default_factory=list)
    paired: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[dict[str, Any]] | None = None
    created: str = ""

    def row(self, method: str) -> MethodRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "model": self.model,
            "task": self.task,
            "settings": self.settings,
            "environment": self.environment,
            "prompt": self.prompt,
            "rows": [asdict(r) for r in self.rows],
            "paired": self.paired,
            "notices": list(self.notices),
        }
        if self.samples is not None:
            out["samples"] = self.samples
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    # ---- flat views ---------------------------------------------------------------
    def flat_rows(self) -> list[dict[str, Any]]:
        """One flat dict per method (spreads expanded): CSV columns."""
        out = []
        for r in self.rows:
            d: dict[str, Any] = {}
            for name in ROW_FIELDS:
                value = getattr(r, name)
                if name in _SPREADS:
                    for key in ("median", "p25", "p75", "min", "max"):
                        d[f"{name}_{key}"] = value.get(key) if value else None
                elif name.endswith("_ci95"):
                    d[f"{name}_lo"], d[f"{name}_hi"] = value if value else (None, None)
                elif name in ("metrics", "per_rank", "search"):
                    d[name] = json.dumps(value, default=str) if value else None
                else:
                    d[name] = value
            out.append(d)
        return out

    def to_csv(self) -> str:
        rows = self.flat_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(ROW_FIELDS))
        writer.writeheader()
        for d in rows:
            writer.writerow(d)
        return buf.getvalue()

    def flops_unit(self) -> tuple[str, float]:
        """The FLOPs unit that shows the baseline's count as a number of at least 1."""
        values = [r.tflops for r in self.rows if r.tflops]
        top = max(values) * 1e12 if values else 1e12
        for name, scale in (("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6)):
            if top >= scale:
                return name, scale
        return "kFLOPs", 1e3

    def metric_label(self) -> str:
        """What the accuracy column reports, e.g. "MME total" or "POPE F1"."""
        headline = self.task.get("headline")
        if headline:
            return str(headline)
        metric = next((r.metric for r in self.rows if r.metric), None)
        return f"{self.task.get('name')} {metric}" if metric else "accuracy"

    @property
    def mode(self) -> str:
        """``latency`` (one sample per call), ``batch`` (--batch-size > 1) or ``memory-budget``."""
        return str(self.settings.get("mode") or "latency")

    def display_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and cells of the human table, the same in the terminal and in markdown.

        Columns that are n/a for every row (memory without CUDA, NVML without nvidia-ml-py,
        accuracy with random weights) are left out; a notice says why, and CSV and JSON keep
        every column.
        """
        if self.mode == "memory-budget":
            return self._budget_rows()
        cuda = bool(self.environment.get("cuda"))
        nvml = bool(self.environment.get("nvml"))
        unit, scale = self.flops_unit()
        headers = [
            "method", "K", unit, "FLOPs x base", f"exact {unit}", "exact x base", "prefill ms", "prefill x base", "decode ms/tok",
            "decode x base", "e2e ms", "e2e ms/tok", "e2e/tok x base", "new tok", "KV MiB", "KV x base",
            "peak MiB", "per-sample MiB", "mem x base", "NVML per-sample MiB", self.metric_label(), "agree",
        ]  # fmt: skip
        body = []
        for r in self.rows:
            k = "-" if r.k is None else (f"{r.k} R={r.ratio:g}" if (r.kind or r.method) in ("fastv", "fastv-mask") else str(r.k))
            if r.k_range:
                k = f"{r.k_range[0]}..{r.k_range[1]}"
            body.append([
                r.method if not r.error else f"{r.method} ({r.error.split(':')[0]})",
                k,
                "-" if r.tflops is None else _fixed(r.tflops * 1e12 / scale),
                _ratio(r.tflops_ratio),
                "-" if r.tflops_exact is None else _fixed(r.tflops_exact * 1e12 / scale),
                _ratio(r.tflops_exact_ratio),
                _spread(r.prefill_ms),
                _ratio(r.prefill_ratio),
                _spread(r.decode_ms_per_token),
                _ratio(r.decode_ratio),
                _spread(r.e2e_ms),
                _spread(r.e2e_ms_per_token),
                _ratio(r.e2e_per_token_ratio),
                "-" if r.new_tokens_mean is None else f"{r.new_tokens_mean:.1f}",
                _mib(r.kv_bytes_per_sample),
                _ratio(r.kv_ratio),
                _mib(r.peak_mem_bytes) if cuda else "n/a",
                _mib(r.per_sample_mem_bytes) if cuda else "n/a",
                _ratio(r.per_sample_mem_ratio) if cuda else "n/a",
                _mib(r.nvml_per_sample_bytes) if nvml else "n/a",
                "-" if r.accuracy is None else f"{r.accuracy:.3f}",
                "-" if r.agreement is None else f"{r.agreement:.3f}",
            ])  # fmt: skip
        if not self.task.get("has_answers"):
            for row in body:
                row[-2] = "n/a"
        if self.mode == "batch":
            at = len(headers) - 2  # before accuracy and agreement
            headers[at:at] = ["samples/s", "tok/s", "tok/s x base"]
            for r, cells in zip(self.rows, body, strict=True):
                cells[at:at] = [_fixed(r.samples_per_s) if r.samples_per_s else "-",
                                _fixed(r.tokens_per_s) if r.tokens_per_s else "-",
                                _ratio_ci(r.tokens_per_s_ratio, r.tokens_per_s_ratio_ci95)]  # fmt: skip
        shown = [i for i in range(len(headers)) if not body or any(row[i] != "n/a" for row in body)]
        return [headers[i] for i in shown], [[row[i] for i in shown] for row in body]

    def _budget_rows(self) -> tuple[list[str], list[list[str]]]:
        headers = [
            "method", "K", "max batch", "max batch x base", "predicted", "predicted x base",
            "tok/s at max batch", "tok/s x base", "samples/s", "peak MiB", "KV MiB/sample", "did not fit",
        ]  # fmt: skip
        body = []
        for r in self.rows:
            k = "-" if r.k is None else (f"{r.k} R={r.ratio:g}" if (r.kind or r.method) in ("fastv", "fastv-mask") else str(r.k))
            mb = "-" if r.max_batch is None else (f">={r.max_batch}" if r.max_batch_capped else str(r.max_batch))
            fails = [t for t in (r.search or {}).get("tries", []) if not t.get("fits")]
            body.append([
                r.method if not r.error else f"{r.method} ({r.error.split(':')[0]})",
                k,
                mb,
                _ratio(r.max_batch_ratio),
                "-" if r.max_batch_predicted is None else str(r.max_batch_predicted),
                _ratio(r.max_batch_predicted_ratio),
                _fixed(r.tokens_per_s) if r.tokens_per_s else "-",
                _ratio_ci(r.tokens_per_s_ratio, r.tokens_per_s_ratio_ci95),
                _fixed(r.samples_per_s) if r.samples_per_s else "-",
                _mib(r.peak_bytes_at_max_batch),
                _mib(r.kv_bytes_per_sample),
                ", ".join(str(t["batch"]) for t in fails) or "-",
            ])  # fmt: skip
        return headers, body

    def paired_rows(self) -> tuple[list[str], list[list[str]]]:
        """One line per compared pair: median per-sample ratio [95% interval] and the verdict."""
        headers = ["pair (A/B)", "n", "prefill", "decode per token", "end to end", "e2e per token"]
        body = []
        for pair, entry in self.paired.items():
            cells = [pair, str(entry.get("prefill", {}).get("n", 0))]
            for measure in ("prefill", "decode_per_token", "e2e", "e2e_per_token"):
                cells.append(_interval(entry.get(measure)))
            body.append(cells)
        return headers, body

    def caption(self) -> str:
        e, m, p, s = self.environment, self.model, self.prompt, self.settings
        if self.mode == "memory-budget":
            return (
                f"{m.get('alias') or m.get('id')} ({m.get('num_layers')} layers, h={m.get('hidden_size')}"
                f"{', random init' if m.get('random_init') else ''}) on {self.task.get('name')}: the largest batch of "
                f"the first {s.get('max_batch_cap')} prompts within {s.get('memory_budget_text')} "
                f"({s.get('memory_budget_meter')}); prompt {p.get('avg_prompt_tokens', 0):.1f} tokens of which "
                f"{p.get('avg_vision_tokens', 0):.1f} vision; {e.get('device_name')}, {s.get('dtype')}, "
                f"attn={s.get('attn')}, max_new_tokens={s.get('max_new_tokens')}, greedy; tok/s over "
                f"{s.get('repeats')} interleaved rounds at each max batch; x base = ratio to baseline (tok/s: median "
                f"of the per-round ratios [95% bootstrap interval]); >=N: every prompt fit, raise --limit"
            )
        batch = ""
        if self.mode == "batch":
            batch = (f"; {s.get('batch_size')} samples per call (left-padded; a sample's latency is its call's, "
                     "and ratios pair batches); tok/s x base: median of per-batch ratios [95% bootstrap interval]")  # fmt: skip
        return (
            f"{m.get('alias') or m.get('id')} ({m.get('num_layers')} layers, h={m.get('hidden_size')}"
            f"{', random init' if m.get('random_init') else ''}) on {self.task.get('name')}: "
            f"{self.task.get('samples')} samples, prompt {p.get('avg_prompt_tokens', 0):.1f} tokens of which "
            f"{p.get('avg_vision_tokens', 0):.1f} vision; {e.get('device_name')}, {s.get('dtype')}, "
            f"attn={s.get('attn')}, max_new_tokens={s.get('max_new_tokens')}, greedy; "
            f"latencies: median ±half-IQR; x base = median of the per-sample ratios to baseline{batch}"
        )

    PAIRED_NOTE = (
        "paired per-sample ratios A/B: median [95% bootstrap interval]; faster = the whole interval "
        "below 1, slower = above 1, ~ = the interval contains 1 (no difference shown)"
    )

    def paired_note(self) -> str:
        if self.mode == "batch":  # one measurement per batch: its samples share its times
            return self.PAIRED_NOTE.replace("paired per-sample ratios", "paired per-batch ratios")
        return self.PAIRED_NOTE

    def to_markdown(self) -> str:
        from tabulate import tabulate

        headers, body = self.display_rows()
        text = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)
        lines = [text, "", self.caption()]
        if self.paired:
            p_headers, p_body = self.paired_rows()
            lines += ["", tabulate(p_body, headers=p_headers, tablefmt="pipe", disable_numparse=True), "",
                      self.paired_note()]  # fmt: skip
        lines += [f"- {n}" for n in self.notices]
        return "\n".join(lines) + "\n"

    def rich_table(self):
        from rich.table import Table

        headers, body = self.display_rows()
        table = Table(title="vtw bench", caption=self.caption(), show_lines=False)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
        for cells in body:
            table.add_row(*cells)
        return table

    def rich_paired_table(self):
        from rich.table import Table

        headers, body = self.paired_rows()
        table = Table(title="paired ratios", caption=self.paired_note(), show_lines=False)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
        for cells in body:
            table.add_row(*cells)
        return table


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.2f}"


def _ratio_ci(v: float | None, ci: list[float] | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if not ci else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _interval(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("median") is None:
        return "-"
    ci = entry.get("ci95")
    if not ci:
        return f"{entry['median']:.3f}"
    mark = {"faster": " faster", "slower": " slower"}.get(entry.get("verdict"), " ~")
    return f"{entry['median']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{mark}"


def _spread(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("median") is None:
        return "-"
    half_iqr = (stat["p75"] - stat["p25"]) / 2
    return f"{_fixed(stat['median'])} ±{_fixed(half_iqr)}"


def _fixed(x: float) -> str:
    """About three significant digits without exponent notation (milliseconds)."""
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


# ---- output files ------------------------------------------------------------------
