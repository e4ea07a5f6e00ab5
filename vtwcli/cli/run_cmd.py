"""`vtw run`: answer prompts with a model and a K (from --k or a saved profile)."""

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

EXAMPLES = """
Examples (no downloads: the bundled testbed answers when no model is named):

  vtw run --image docs/examples/shapes.png --prompt "How many shapes are there? Answer the question using a single word or phrase."

  vtw run --profile profiles/testbed.yaml --input docs/examples/questions.jsonl --output answers.jsonl

  vtw run --model llava-1.5-7b --k 16 --image photo.jpg --prompt "Describe the image."

  vtw run --model video-llava-7b --k 16 --video clip.mp4 --prompt "What happens?"

  vtw run --image docs/examples/shapes.png          # interactive chat about the image (empty line ends)

  torchrun --standalone --nproc_per_node 4 -m vtwcli run --k 16 --input q.jsonl --output a.jsonl

  vtw run --model llava-1.5-13b --device-map auto --k 20 --image photo.jpg --prompt "Describe it."

Each JSONL line: {"image": "a.png", "prompt": "...", "id": "q1"} ("images": [...] for several, "video": "v.mp4" for a video; paths relative to the JSONL file). Each output line adds answer, k, method, latency_s and model; a bad line gets an "error" field instead.
"""


def register(app: typer.Typer) -> None:
    @app.command("run", help="Answer prompts with Visual Tokens Withdrawal at layer K.\n\n" + EXAMPLES)
    def run_command(
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="Alias, hub id or directory (default: the profile's model, else testbed).",
        ),
        profile: Path = typer.Option(
            None, "--profile", "-p", help="Saved profile: K per task for one model."
        ),
        task: str = typer.Option(
            None, "--task", help="Use this task's K from the profile (default: the profile's default task)."
        ),
        k: int = typer.Option(
            None, "--k", "-k", help="Decoder layers that see the vision tokens (overrides the profile)."
        ),
        method: str = typer.Option(
            None, "--method", help="baseline | vtw | fastv | fastv-mask (default: vtw with a K, else baseline)."
        ),
        image: list[Path] = typer.Option(None, "--image", "-i", help="Image file (repeat for several)."),
        video: Path = typer.Option(
            None, "--video", help="Video file (video models); frames are sampled uniformly."
        ),
        frames: int = typer.Option(8, "--frames", help="Frames sampled from --video."),
        prompt: str = typer.Option(
            None, "--prompt", help="Question to answer; without it (and without --input) starts a chat."
        ),
        input_path: Path = typer.Option(None, "--input", help="Prompts JSONL file (one object per line)."),
        output_path: Path = typer.Option(
            None, "--output", "-o", help="Answers JSONL file (written whole, atomically)."
        ),
        dtype: str = dtype_option(),
        device: str = device_option(),
        attn: str = attn_option(),
        max_new_tokens: int = typer.Option(
            None,
            "--max-new-tokens",
            help="Longest answer, in tokens (default: the model's generation config, else 64).",
        ),
        random_init: bool = typer.Option(
            False,
            "--random-init",
            help="Random weights from the shipped config (shapes only; answers are noise).",
        ),
        as_json: str = typer.Option(
            None, "--json", help="With --prompt: write the answer as a JSON object to this file ('-' for stdout)."
        ),
        device_map: str = device_map_option(),
        prompt_style: str = typer.Option(
            None, "--prompt-style",
            help="chat or vicuna_v1 (LLaVA's original conversation; LLaVA-1.5/NeXT only). Default: the style "
            "the profile was calibrated with, else chat.",
        ),
        force: bool = force_option(),
    ) -> None:
        args = dict(locals())
        with memory_check(args.pop("force")):
            _run(**args)


def _run(
    model,
    profile,
    task,
    k,
    method,
    image,
    video,
    frames,
    prompt,
    input_path,
    output_path,
    dtype,
    device,
    attn,
    max_new_tokens,
    random_init,
    as_json,
    device_map=None,
    prompt_style=None,
) -> None:
    from vtwcli.errors import UsageError
    from vtwcli.runner import RunSettings

    settings = RunSettings(
        model=model,
        profile=profile,
        task=task,
        k=k,
        method=method,
        dtype=dtype,
        device=device,
        attn=attn,
        max_new_tokens=max_new_tokens,
        frames=frames,
        random_init=random_init,
        device_map=device_map,
        prompt_style=prompt_style,
    )
    images = list(image or [])
    videos = [video] if video is not None else []
    if as_json is not None and prompt is None:
        raise UsageError(
            "--json writes one answer (with --prompt); --input writes its answers as JSONL to --output"
        )
    if input_path is not None:
        if prompt is not None or images or videos:
            raise UsageError(
                "--input reads prompts and images from the JSONL file; drop --prompt/--image/--video"
            )
        if output_path is None:
            raise UsageError("--input needs --output FILE for the answers")
        _batch(settings, input_path, output_path)
    elif output_path is not None:
        raise UsageError("--output goes with --input (a prompts JSONL file)")
    elif _world_size() > 1:
        raise UsageError(
            "under torchrun/accelerate launch only --input FILE --output FILE is split across ranks; "
            "run one prompt or a chat with plain `vtw run`"
        )
    elif prompt is not None:
        from vtwcli.fileio import check_writable

        check_writable(as_json, "json", example="answer.json")  # before the model loads
        _one_shot(settings, prompt, images, videos, as_json)
    else:
        if not images and not videos:
            raise UsageError(
                "give --prompt TEXT for one answer, --input FILE for many, or --image to chat about it"
            )
        _chat(settings, images, videos)


def _describe(runner, ans=None) -> str:
    lm = runner.loaded
    if ans is not None and ans.text_only:
        return f"{lm.alias or lm.model_id} on {lm.device} ({lm.dtype}), text only, no withdrawal"
    k = f"K={runner.k}/{lm.num_layers}" if runner.k is not None else f"no withdrawal ({lm.num_layers} layers)"
    src = f", profile {runner.profile.path} task {runner.task_name}" if runner.profile is not None else ""
    return f"{lm.alias or lm.model_id} on {lm.device} ({lm.dtype}), method {runner.method}, {k}{src}"


def _one_shot(settings, prompt, images, videos, as_json) -> None:
    import json

    from vtwcli.cli import console as make_console
    from vtwcli.models.loading import check_image_file
    from vtwcli.models.video import check_video_file
    from vtwcli.runner import TEXT_ONLY_NOTICE, Runner

    for img in images:
        check_image_file(img)
    for vid in videos:
        check_video_file(vid)
    err = make_console(stderr=True)
    with Runner(settings) as runner:
        _notices(err, runner)
        if not images and not videos:
            _note(err, TEXT_ONLY_NOTICE)
        for w in runner.word_warnings(prompt):
            _note(err, w, "warning")
        ans = runner.answer(prompt, images=images, videos=videos)
        record = {
            "prompt": prompt,
            "answer": ans.text,
            "k": ans.k,
            "method": ans.method,
            "latency_s": round(ans.latency_s, 4),
            "model": runner.loaded.alias or runner.loaded.model_id,
        }
        if ans.text_only:
            record["note"] = TEXT_ONLY_NOTICE
        if ans.warnings:
            record["warnings"] = ans.warnings
        if as_json == "-":
            typer.echo(json.dumps(record))
            return
        typer.echo(ans.text)
        err.print(f"[dim]{_describe(runner, ans)}; {ans.latency_s * 1000:.0f} ms[/dim]")
        if as_json is not None:
            from vtwcli.fileio import write_atomic

            write_atomic(as_json, json.dumps(record, indent=2) + "\n")
            err.print(f"wrote json to {as_json}", markup=False, highlight=False)


def _note(console, text: str, kind: str = "note") -> None:
    console.print(f"{kind}: {text}", markup=False, highlight=False, soft_wrap=True)


def _notices(console, runner) -> None:
    """Said once per run: what the model was trained on, when that is narrow (the testbed)."""
    if runner.scope_notice:
        _note(console, runner.scope_notice)


def _world_size() -> int:
    from vtwcli.distributed import context

    return context().world_size


def _batch(settings, input_path, output_path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vtwcli.cli import console as make_console
    from vtwcli.distributed import context
    from vtwcli.errors import InputFileError
    from vtwcli.runner import check_output_path, read_prompts, run_batch

    ctx = context()
    read_prompts(input_path)
    check_output_path(output_path)
    err = make_console(stderr=True)
    with Progress(
        TextColumn("answering" + (f" (rank 0's share of {ctx.world_size})" if ctx.enabled else "")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not ctx.is_main,  # one bar per run: rank 0's
    ) as bar:
        job = bar.add_task("answering", total=None)
        summary = run_batch(
            input_path, output_path, settings,
            on_ready=lambda runner: (err.print(f"[dim]{_describe(runner)}[/dim]"), _notices(err, runner)),
            on_line=lambda done, total: bar.update(job, completed=done, total=total),
        )  # fmt: skip
    if summary is None:
        return  # another rank of a data-parallel run: rank 0 reports and writes
    for lineno, reason in summary.failed:
        err.print(f"line {lineno}: {reason}", markup=False, highlight=False, soft_wrap=True)
    for lineno, warning in summary.warned:
        err.print(f"line {lineno}: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    ranks = f" (answered by {summary.world_size} ranks)" if summary.world_size > 1 else ""
    err.print(
        f"wrote {summary.total} lines to {summary.output}: {summary.ok} answered, {len(summary.failed)} failed{ranks}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if summary.failed:
        raise InputFileError(
            f"{len(summary.failed)} of {summary.total} lines in {input_path} failed (listed above; "
            f'their output lines carry an "error" field); fix them and rerun'
        )


def _chat(settings, images, videos) -> None:
    import sys

    from vtwcli.cli import console as make_console
    from vtwcli.models.loading import check_image_file
    from vtwcli.models.video import check_video_file
    from vtwcli.runner import Runner

    for img in images:
        check_image_file(img)
    for vid in videos:
        check_video_file(vid)
    err = make_console(stderr=True)
    stdin = sys.stdin
    with Runner(settings) as runner:
        err.print(
            f"[dim]{_describe(runner)}\nchat about {', '.join(map(str, images + videos))}; "
            "an empty line, 'exit' or Ctrl-D ends[/dim]"
        )
        _notices(err, runner)
        conversation: list[dict] = []
        while True:
            err.print("you> ", end="")
            line = stdin.readline()
            if not line or line.strip().lower() in ("", "exit", "quit"):
                break
            content = []
            if not conversation:  # the image goes with the first turn, as in the models' training chats
                content += [{"type": "image"} for _ in images] + [{"type": "video"} for _ in videos]
            content.append({"type": "text", "text": line.strip()})
            for w in runner.word_warnings(line):
                _note(err, w, "warning")
            conversation.append({"role": "user", "content": content})
            sys.stdout.write("model> ")
            reply = []
            for piece in runner.stream(conversation, images=images, videos=videos):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            conversation.append(
                {"role": "assistant", "content": [{"type": "text", "text": "".join(reply).strip()}]}
            )
