"""`vtw inspect`: where the output tokens' attention goes, layer by layer (paper, Figures 4 and 5).

Only parses options and calls :func:`vtwcli.inspect.inspect`; torch and transformers load
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
)

_HELP = """Show where a model's output tokens put their attention: the share given to system, vision, instruction and already generated tokens, per layer (averaged over heads and output tokens) and per output token (averaged over layers).

This is the paper's evidence for withdrawal (Figures 4 and 5), measured on your model and task: the vision share should fall after the first layers. Each sample is answered greedily; at every layer the probabilities of the row that predicts the next token are computed from the layer's own queries and keys, whatever the attention implementation, and reduced at once (no full attention map is kept). K from --k or a profile is marked; --withdraw also attaches the engine at K to show what the text tokens attend to after withdrawal.

Examples:

  vtw inspect

  vtw inspect --plot attn.png --json attn.json

  vtw inspect --model llava-1.5-7b --data pope --limit 100 --profile profiles/llava15_7b.yaml --plot attn.png

  vtw inspect --k 3 --withdraw
"""


def register(app: typer.Typer) -> None:
    @app.command("inspect", help=_HELP)
    def inspect_command(
        model: str = typer.Option("testbed", "--model", "-m", help="Model alias, hub id or local directory."),
        data: str = typer.Option("shapes", "--data", "-d", help="Task name (see `vtw datasets`)."),
        data_path: str = typer.Option(None, "--data-path", help="Local copy of the dataset (directory or file)."),
        split: str = typer.Option(None, "--split", help="Dataset split (default: the task's own)."),
        samples: int = typer.Option(50, "--limit", "--samples", "-n", help="How many samples (with an image or video) to draw."),
        seed: int = typer.Option(0, "--seed", help="Seed for drawing the samples (and for the rand method)."),
        max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Output tokens per sample at most (default: the task's)."),
        k: int = typer.Option(None, "--k", "-k", help="K to mark (layers that see the vision tokens)."),
        profile: str = typer.Option(None, "--profile", "-p", help="Profile YAML to take K from (default profiles/<model>.yaml if present)."),
        task: str = typer.Option(None, "--task", help="Which task's K to take from the profile (default: --data)."),
        withdraw: bool = typer.Option(False, "--withdraw", help="Attach the engine at K while recording."),
        method: str = typer.Option("vtw", "--method", help="Engine method with --withdraw: vtw, fastv, fastv-mask or rand."),
        ratio: float = typer.Option(0.5, "--fastv-ratio", help="FastV's R with --withdraw --method fastv or fastv-mask."),
        plot: Path = typer.Option(None, "--plot", help="Draw both pictures to this PNG file (needs the plot extra)."),
        json_out: str = typer.Option(None, "--json", help="Write the full result as JSON to this file ('-' for stdout)."),
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
    model, data, data_path, split, samples, seed, max_new_tokens, k, profile, task, withdraw, method, ratio, plot,
    json_out, dtype, device, attn, device_map,
) -> None:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from vtwcli.cli import console as make_console
    from vtwcli.fileio import check_writable, write_atomic
    from vtwcli.plotting import check_plot_path

    # everything a user can get wrong about the outputs fails before the model loads
    json_target = check_writable(json_out, "json")
    plot_target = check_plot_path(plot)
    quiet = json_out == "-"
    console = make_console(stderr=quiet)
    err_console = make_console(stderr=True)

    from vtwcli.inspect import inspect
    from vtwcli.inspect.report import layer_table, position_table, summary_lines, write_png

    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with Progress(
            TextColumn("[bold]inspecting[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as bar:
            job = bar.add_task(f"{model} on {data}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(job, completed=done, total=total)

            result = inspect(
                model, data, samples=samples, seed=seed, max_new_tokens=max_new_tokens, k=k, profile=profile,
                task=task, withdraw=withdraw, method=method, ratio=ratio, data_path=data_path, split=split,
                dtype=dtype, device=device, attn=attn, device_map=device_map, progress=progress,
            )
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()

    console.print(layer_table(result))
    console.print(position_table(result))
    for line in summary_lines(result):
        console.print(line, markup=False, highlight=False)
    if plot_target is not None:
        console.print(f"plot written: {write_png(result, plot_target)}", markup=False, highlight=False)
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    if quiet:
        print(text, end="")
    elif json_target is not None:
        write_atomic(json_target, text)
        console.print(f"result written: {json_target}", markup=False, highlight=False)
