"""`vtw calibrate`: choose K for a model x task by the paper's KL criterion and save it.

Only parses options and calls :func:`vtwcli.calibrate.calibrate`; torch and transformers load
inside the command body so `vtw --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

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

_HELP = """Choose the withdrawal layer K for a model on a task, and save it in a profile.

Runs the paper's criterion: for K = k-min..N-1, the KL divergence between the next-token distribution with the vision tokens withdrawn before layer K and the normal one, at the last prompt token, averaged over a few samples; K is the first one below eta. One full forward per sample serves every K. Writes profiles/<model>.yaml (other tasks in it are kept).

Examples:

  vtw calibrate

  vtw calibrate --model llava-1.5-7b --data sqa --eta 0.003 --samples 20 --plot kl.png

  vtw calibrate --data shapes --direction full-withdrawn --tokens 4 --json result.json

  vtw calibrate --eta 0.003,0.001,0.006 --no-save

  torchrun --standalone --nproc_per_node 4 -m vtwcli calibrate --model llava-1.5-7b --data mme --samples 200

  vtw calibrate --model llava-1.5-13b --device-map auto --data sqa

Under torchrun or accelerate launch each rank sweeps its share of the samples on its own GPU and rank 0 writes the profile (docs/scaling.md).
"""


def register(app: typer.Typer) -> None:
    @app.command("calibrate", help=_HELP)
    def calibrate_command(
        model: str = typer.Option("testbed", "--model", "-m", help="Model alias, hub id or local directory."),
        data: str = typer.Option("shapes", "--data", "-d", help="Task name (see `vtw datasets`)."),
        data_path: str = typer.Option(None, "--data-path", help="Local copy of the dataset (directory or file)."),
        split: str = typer.Option(None, "--split", help="Dataset split (default: the task's own)."),
        eta: str = typer.Option("0.003", "--eta", help="KL threshold: K is the first layer whose mean KL is below it. A list (0.001,0.003,0.01) reports each one's K from the same sweep; the first is saved."),
        samples: int = typer.Option(20, "--samples", "--limit", "-n", help="How many samples to draw."),
        seed: int = typer.Option(0, "--seed", help="Seed for drawing the samples."),
        k_min: int = typer.Option(None, "--k-min", help="Smallest K tried (default 5; 1 below 20 layers)."),
        k_max: int = typer.Option(None, "--k-max", help="Largest K tried (default N)."),
        batch_size: int = typer.Option(1, "--batch-size", "-b", help="Samples per forward pass."),
        direction: str = typer.Option(
            "withdrawn-full", "--direction", help="KL direction: withdrawn-full, KL(P_withdrawn || P_full) (the paper's), or full-withdrawn."
        ),
        tokens: int = typer.Option(
            1, "--tokens", help="Average the KL over this many answer tokens (1 = last prompt token, the paper's)."
        ),
        out: Path = typer.Option(None, "--out", "-o", help="Profile to write or merge into (default profiles/<model>.yaml)."),
        no_save: bool = typer.Option(False, "--no-save", help="Do not write a profile; only print the result."),
        plot: Path = typer.Option(None, "--plot", help="Also draw the KL curve to this PNG file (needs the plot extra)."),
        json_out: str = typer.Option(None, "--json", help="Write the full result as JSON to this file ('-' for stdout)."),
        prompt_style: str = prompt_style_option(),
        dtype: str = dtype_option(),
        device: str = device_option(),
        attn: str = attn_option(),
        device_map: str = device_map_option(),
        force: bool = force_option(),
    ) -> None:
        args = dict(locals())
        with memory_check(args.pop("force")):
            _run(**args)


def _run(
    model, data, data_path, split, eta, samples, seed, k_min, k_max, batch_size, direction, tokens, out,
    no_save, plot, json_out, dtype, device, attn, device_map, prompt_style="chat",
) -> None:
    import json
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from vtwcli.calibrate import calibrate
    from vtwcli.calibrate.report import ascii_plot, curve_table, threshold_table, write_png
    from vtwcli.cli import console as make_console
    from vtwcli.distributed import context
    from vtwcli.errors import UsageError
    from vtwcli.fileio import check_writable, write_atomic
    from vtwcli.plotting import check_plot_path

    ctx = context()
    # every requested output is checked before the model loads (the profile inside calibrate())
    if ctx.is_main:
        plot = check_plot_path(plot)  # matplotlib and the path
        check_writable(json_out, "json", example="result.json")
        if plot is not None and json_out not in (None, "-") and Path(plot).resolve() == Path(json_out).resolve():
            raise UsageError("--plot and --json must name different files")

    quiet = json_out == "-"
    console = make_console(stderr=quiet)
    err_console = make_console(stderr=True)

    # one progress bar (ours), not transformers' weight-loading bar as well
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with Progress(
            TextColumn("[bold]calibrating[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            # a finished transient bar still leaves a newline in logs; one bar per run (rank 0's)
            disable=not err_console.is_terminal or not ctx.is_main,
        ) as bar:
            share = f" (rank 0's share of {ctx.world_size})" if ctx.enabled else ""
            job = bar.add_task(f"{model} on {data}{share}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(job, completed=done, total=total)

            result = calibrate(
                model, data, eta=eta, samples=samples, seed=seed, k_min=k_min, k_max=k_max,
                direction=direction, tokens=tokens, batch_size=batch_size, out=out, write=not no_save,
                data_path=data_path, split=split, dtype=dtype, device=device, attn=attn, progress=progress,
                device_map=device_map, prompt_style=prompt_style,
            )
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
    if result is None:
        return  # another rank of a data-parallel run: rank 0 reports and writes

    console.print(curve_table(result))
    by_eta = threshold_table(result)
    if by_eta is not None:
        console.print(by_eta)
    console.print("\n".join(ascii_plot({k: p.mean for k, p in result.curve.items()}, result.eta, result.k)),
                  markup=False, highlight=False)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    cost = result.cost
    console.print(
        f"K = [bold]{result.k}[/] of {result.num_layers} for {result.model_alias or result.model_id} on "
        f"{result.task}; formula FLOPs at K: {result.flops_ratio:.1%} of the baseline "
        f"(prompt {result.mean_prompt_length:.0f} tokens, {result.mean_vision_tokens:.0f} vision)",
        highlight=False,
    )
    console.print(
        "sweep cost per sample, in full forwards: "
        f"this sweep {cost['fast_formula_forwards_per_sample']:.2f} (formula), "
        f"{cost['measured_forwards_per_sample']:.2f} (measured); "
        f"the paper's loop {cost['slow_formula_forwards_per_sample']:.2f} (formula)",
        highlight=False,
    )
    if result.world_size > 1:
        console.print(f"{len(result.sample_ids)} samples shared by {result.world_size} ranks", highlight=False)
    if result.profile_path:
        if result.profile_unchanged:
            console.print(f"profile unchanged: {result.profile_path} (it already records this result)", highlight=False)
        else:
            console.print(f"profile written: {result.profile_path}", highlight=False)
    if plot is not None:
        console.print(f"plot written: {write_png(result, plot)}", highlight=False)
    if json_out is not None:
        text = json.dumps(result.to_dict(), indent=2)
        if quiet:
            sys.stdout.write(text + "\n")
        else:
            write_atomic(json_out, text + "\n")
            console.print(f"result written: {json_out}", highlight=False)
