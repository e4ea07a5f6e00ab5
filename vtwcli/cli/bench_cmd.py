"""`vtw bench`: FLOPs, latency, memory and accuracy of baseline, FastV and VTW side by side.

Only parses options and calls :func:`vtwcli.bench.bench`; torch and transformers load inside
the command body so `vtw --help` stays fast.
"""

from __future__ import annotations

import typer

from vtwcli.cli.options import (
    attn_option,
    device_map_option,
    device_option,
    dtype_option,
    force_option,
    memory_check,
    prompt_style_option,
)

_HELP = """Compare baseline, FastV and VTW on the same samples: formula TFLOPs, measured prefill / decode / end-to-end latency, KV-cache bytes, GPU memory, accuracy and agreement.

All methods run in one process on the same samples, interleaved per sample, greedy, with the same max_new_tokens, after a warm-up that is not counted. Without CUDA the memory columns say n/a. See docs/bench.md.

Examples:

  vtw bench

  vtw bench --profile profiles/llava15_7b.yaml --data sqa --limit 200 --json sqa.json

  vtw bench --model llava-1.5-7b --k 16 --random-init --dtype bf16 --markdown table.md

  vtw bench --methods baseline,fastv,vtw,rand --fastv-k 3 --fastv-ratio 0.5 --csv rows.csv

  vtw bench --methods baseline,vtw --k 1-6 --plot acc.png

  vtw bench --methods baseline,vtw,noimage,white,random-k,rand --k 3

  accelerate launch --num_processes 8 -m vtwcli bench --model llava-1.5-7b --data pope --limit 9000 --json pope.json

  vtw bench --model llava-1.5-13b --device-map auto --data mme --limit 100

  vtw bench --batch-size 8 --limit 40

  vtw bench --model llava-1.5-7b --random-init --dtype fp16 --memory-budget 20GiB --limit 64

Under accelerate launch or torchrun each rank runs its share of the samples on its own GPU;
rank 0 scores the union and writes the files, with latencies pooled and per rank (docs/scaling.md).
"""


def register(app: typer.Typer) -> None:
    @app.command("bench", help=_HELP)
    def bench_command(
        model: str = typer.Option("testbed", "--model", "-m", help="Model alias, hub id or local directory."),
        data: str = typer.Option(None, "--data", "-d", help="Task name (default shapes; see `vtw datasets`)."),
        data_path: str = typer.Option(None, "--data-path", help="Local copy of the dataset (directory or file)."),
        split: str = typer.Option(None, "--split", help="Dataset split (default: the task's own)."),
        limit: int = typer.Option(None, "--limit", "-n", help="Samples to run (default 40; 8 with --random-init)."),
        subset: str = typer.Option(
            "random", "--subset",
            help="How --limit picks samples: random (seeded by --seed, stratified by category, MME pairs and "
            "MMBench circular copies kept together) or first (the first N rows, lmms-eval's --limit).",
        ),
        methods: str = typer.Option(
            "baseline,fastv,vtw", "--methods",
            help="Comma-separated rows: baseline, fastv, fastv-mask (FastV's masking implementation: full cache), vtw, "
                 "rand, and the paper's ablations noimage (image removed), "
                 "white (white image, withdrawn at K), random-k (K drawn per sample).",
        ),
        k: str = typer.Option(
            None, "--k", "-k",
            help="VTW's K (layers that still see the vision tokens); a list or range (2,4,8,16 or 1-6) gives one "
                 "row per K for vtw, rand and white.",
        ),
        k_range: str = typer.Option(
            None, "--k-range", help="random-k: draw K per sample from lo-hi (default 8-24 for 32 layers, scaled)."
        ),
        positions: str = typer.Option(
            None, "--positions",
            help="Position embeddings of the tokens layers >= K keep: keep (default), rearrange (renumbered "
                 "contiguously), or keep,rearrange for one row of each (the paper's Table 6).",
        ),
        plot: str = typer.Option(
            None, "--plot", help="Draw accuracy and FLOPs against K (and the profile's KL curve) to this PNG."
        ),
        profile: str = typer.Option(None, "--profile", "-p", help="Profile YAML to take K from."),
        task: str = typer.Option(None, "--task", help="Which task's K to take from the profile (default: --data)."),
        fastv_k: int = typer.Option(
            None, "--fastv-k",
            help="FastV's K (layers before pruning; default: 2, FastV's own, or the nearest K the model accepts).",
        ),
        fastv_ratio: float = typer.Option(0.5, "--fastv-ratio", help="FastV's R: share of vision tokens pruned."),
        random_init: bool = typer.Option(
            False, "--random-init", help="Random weights from the shipped shape config: speed and memory only."
        ),
        max_new_tokens: int = typer.Option(
            None, "--max-new-tokens", help="Tokens per reply (default: the task's; 32 with --random-init, 8 with --shrink)."
        ),
        min_new_tokens: int = typer.Option(
            None, "--min-new-tokens",
            help="Force at least this many tokens per reply (equal lengths for speed runs; EOS held back until then).",
        ),
        warmup: int = typer.Option(1, "--warmup", help="Uncounted warm-up rounds (each method once per round)."),
        batch_size: int = typer.Option(
            1, "--batch-size", help="Samples per generate() call (left-padded); adds samples/s and tokens/s."
        ),
        memory_budget: str = typer.Option(
            None, "--memory-budget",
            help="Find each method's largest batch within this memory (e.g. 20GiB; GPU: device memory, "
            "CPU: the process's resident memory) and its tokens/s there.",
        ),
        repeats: int = typer.Option(3, "--repeats", help="Timed rounds at each max batch (with --memory-budget)."),
        seed: int = typer.Option(0, "--seed", help="Seed for sample selection, synthetic prompts and `rand`."),
        json_out: str = typer.Option(None, "--json", help="Write the full result as JSON to this file ('-' for stdout)."),
        csv_out: str = typer.Option(None, "--csv", help="Write one CSV row per method to this file ('-' for stdout)."),
        md_out: str = typer.Option(None, "--markdown", help="Write the table as markdown to this file ('-' for stdout)."),
        log_samples: bool = typer.Option(
            False, "--log-samples", help="Put every sample's prompt, replies, parsed answers and timings in the JSON."
        ),
        prompt_style: str = prompt_style_option(),
        dtype: str = dtype_option(),
        device: str = device_option(),
        attn: str = attn_option(),
        device_map: str = device_map_option(),
        force: bool = force_option(),
        judge_url: str = typer.Option(
            None, "--judge-url",
            help="MMBench: OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) that reads the replies "
            "lmms-eval's rule cannot, as its GPT judge does. Key from $OPENAI_API_KEY. Needs vtwcli[judge].",
        ),
        judge_model: str = typer.Option(None, "--judge-model", help="MMBench: the judge's model name."),
        shrink: bool = typer.Option(
            False, "--shrink", help="With --random-init: the model's real processor, chat template and vision-token "
            "count with a 16-layer, 512-wide decoder, so the speed-up shows on a CPU (the result says what was shrunk; "
            "8 new tokens unless --max-new-tokens).",
        ),
    ) -> None:
        args = dict(locals())
        with memory_check(args.pop("force")):
            _run(**args)


def _run(
    model, data, data_path, split, limit, subset, prompt_style, methods, k, profile, task, fastv_k, fastv_ratio, random_init,
    max_new_tokens, min_new_tokens, warmup, seed, json_out, csv_out, md_out, log_samples, dtype, device, attn, device_map,
    judge_url=None, judge_model=None,
    k_range=None, plot=None, batch_size=1, memory_budget=None, repeats=3,
    shrink=False, positions=None,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vtwcli.bench.runner import parse_k_list, parse_k_range, parse_methods, parse_positions
    from vtwcli.cli import console as make_console
    from vtwcli.distributed import context
    from vtwcli.errors import UsageError
    from vtwcli.fileio import check_writable, write_atomic

    ctx = context()

    # Every check a user can fail runs before the model loads.
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (samples per generate() call), got {batch_size}")
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    if memory_budget is not None:
        from vtwcli.bench.budget import parse_memory_budget

        parse_memory_budget(memory_budget)
        if batch_size != 1:
            raise UsageError(
                "--memory-budget searches the largest batch that fits for each method; drop --batch-size "
                "(or drop --memory-budget to time one fixed batch size)"
            )
    if plot is not None and "vtw" not in parse_methods(methods):
        raise UsageError("--plot draws accuracy against K: include vtw in --methods (e.g. --methods baseline,vtw --k 1-6)")
    parse_k_list(k)
    parse_k_range(k_range)
    from vtwcli.data.loading import check_order

    check_order(subset)
    from vtwcli.models.prompting import check_style_name

    check_style_name(prompt_style)
    parse_positions(positions)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if log_samples and not json_out:
        raise UsageError("--log-samples puts each sample into the JSON result; add --json out.json")
    stdout_outputs = [name for name, v in (("--json", json_out), ("--csv", csv_out), ("--markdown", md_out)) if v == "-"]
    if len(stdout_outputs) > 1:
        raise UsageError(f"only one output can go to stdout ('-'), got {', '.join(stdout_outputs)}")
    targets = {"json": check_writable(json_out, "json"), "csv": check_writable(csv_out, "csv"),
               "markdown": check_writable(md_out, "md")}  # fmt: skip
    from vtwcli.plotting import check_plot_path

    targets["plot"] = check_plot_path(plot) if ctx.is_main else None
    paths = [p.resolve() for p in targets.values() if p is not None]
    if len(paths) != len(set(paths)):
        raise UsageError("--json, --csv, --markdown and --plot must name different files")

    quiet = bool(stdout_outputs)  # keep stdout clean for the machine-readable output
    console = make_console(stderr=quiet)
    err_console = make_console(stderr=True)

    from transformers.utils import logging as hf_logging

    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one progress bar (ours), not the weight-loading bar too
    try:
        with Progress(
            TextColumn("[bold]benchmarking[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal or not ctx.is_main,  # one bar per run: rank 0's
        ) as bar:
            share = f" (rank 0's share of {ctx.world_size})" if ctx.enabled else ""
            job = bar.add_task(f"{model}{share}", total=None)

            def progress(done: int, total: int, what: str) -> None:
                bar.update(job, completed=done, total=total or None, description=f"{model}: {what}")

            from vtwcli.bench import bench

            result = bench(
                model=model, data=data, methods=methods, k=k, profile=profile, task=task, fastv_k=fastv_k,
                fastv_ratio=fastv_ratio, limit=limit, random_init=random_init, max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens, subset=subset, prompt_style=prompt_style, shrink=shrink,
                warmup=warmup, dtype=dtype, device=device, attn=attn, log_samples=log_samples,
                data_path=data_path, split=split, seed=seed, progress=progress, device_map=device_map,
                judge_url=judge_url, judge_model=judge_model,
                k_range=k_range, batch_size=batch_size, memory_budget=memory_budget, repeats=repeats, positions=positions,
            )
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
    if result is None:
        return  # another rank of a data-parallel run: rank 0 reports and writes

    console.print(result.rich_table())
    if result.paired:
        console.print(result.rich_paired_table())
    for notice in result.notices:
        console.print(f"note: {notice}", markup=False, highlight=False, soft_wrap=True)
    if ctx.enabled:
        console.print(_rank_lines(result), markup=False, highlight=False)

    # Render everything first, then write: a rendering error leaves no file behind.
    texts = {"json": result.to_json(), "csv": result.to_csv(), "markdown": result.to_markdown()}
    for key, given in (("json", json_out), ("csv", csv_out), ("markdown", md_out)):
        if given == "-":
            print(texts[key], end="")
        elif given:
            write_atomic(targets[key], texts[key])
            console.print(f"wrote {key} to {targets[key]}", markup=False, highlight=False)
    if targets["plot"] is not None:
        from vtwcli.bench.plot import write_k_plot

        console.print(f"wrote plot to {write_k_plot(result, targets['plot'])}", markup=False, highlight=False)


def _rank_lines(result) -> str:
    """Median end-to-end latency of each method on each rank (the table pools all ranks)."""
    lines = [f"{result.settings.get('world_size')} ranks shared {result.task.get('samples')} samples; "
             "median e2e ms per rank:"]  # fmt: skip
    for row in result.rows:
        cells = []
        for entry in row.per_rank or []:
            med = (entry.get("e2e_ms") or {}).get("median")
            cells.append(f"rank {entry['rank']} ({entry['samples']} on {entry['device']}): "
                         + ("-" if med is None else f"{med:.1f}"))  # fmt: skip
        lines.append(f"  {row.method}: " + ", ".join(cells))
    return "\n".join(lines)
