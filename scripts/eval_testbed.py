"""Measure the bundled `testbed` model: the figures docs/testbed.md reports.

    HF_HUB_OFFLINE=1 python scripts/eval_testbed.py --json testbed_eval.json

Loads the checkpoint the way any hub model is loaded (AutoModelForImageTextToText +
AutoProcessor from the directory), answers held-out `shapes` questions with greedy
generate(), and prints:

- the share of the prompt that is vision tokens, per question type;
- held-out accuracy per question type and overall, and the same questions with a blank image
  (the proof that the model reads the image: it falls to about chance);
- for every K = 1..N, VTW through vtwcli.withdraw: accuracy, and the mean KL(withdrawn || full)
  of the next-token distribution at the last prompt token (where the information migrates).

Deterministic: the questions are a pure function of (--split, --seed, --limit).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DIR = ROOT / "vtwcli" / "models" / "testbed"


def load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    model.eval()
    return model, processor


def batches(task, size):
    recs = task.records
    for i in range(0, len(recs), size):
        yield recs[i : i + size]


def prepare(processor, task, recs):
    texts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": task.prompt(r)}]}],
                                      add_generation_prompt=True, tokenize=False)
        for r in recs
    ]
    images = [task.images(r)[0] for r in recs]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def answer(model, processor, task, batch_size=50, k=None, progress=None):
    """Replies and last-prompt-token logits for every record (optionally under VTW at K)."""
    import contextlib

    import torch

    replies, logits = [], []
    ctx = contextlib.nullcontext
    if k is not None:
        from vtwcli.engine import withdraw

        def ctx():
            return withdraw(model, k=k)

    with torch.no_grad():
        for recs in batches(task, batch_size):
            inputs = prepare(processor, task, recs)
            with ctx():
                out = model.generate(**inputs, **task.generation.generate_kwargs(), output_logits=True,
                                     return_dict_in_generate=True, pad_token_id=processor.tokenizer.pad_token_id)
            new = out.sequences[:, inputs["input_ids"].shape[1]:]
            replies += processor.tokenizer.batch_decode(new, skip_special_tokens=True)
            logits.append(out.logits[0].float())
            if progress:
                progress(len(recs))
    return replies, torch.cat(logits)


def vision_share(processor, task, model):
    by_type: dict[str, list[float]] = {}
    image_id = model.config.image_token_id
    for r in task.records:
        inputs = prepare(processor, task, [r])
        ids = inputs["input_ids"][0]
        by_type.setdefault(r.meta["type"], []).append(float((ids == image_id).sum()) / len(ids))
    out = {t: sum(v) / len(v) for t, v in by_type.items()}
    out["overall"] = sum(sum(v) for v in by_type.values()) / sum(len(v) for v in by_type.values())
    out["min"] = min(min(v) for v in by_type.values())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=str(DEFAULT_DIR))
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=800, help="held-out questions (balanced over the 4 types)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-withdraw", action="store_true", help="skip the per-K VTW sweep")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from vtwcli.calibrate.kl import withdrawal_kl
    from vtwcli.data.shapes import QUESTION_TYPES, load_shapes
    from vtwcli.fileio import recorded_path

    torch.set_num_threads(args.threads)
    console = Console()
    model, processor = load(args.model_dir)
    n_layers = model.config.text_config.num_hidden_layers
    task = load_shapes(args.split, limit=args.limit, seed=args.seed)
    blank = load_shapes(args.split, limit=args.limit, seed=args.seed, blank=True)
    t0 = time.time()

    try:
        import vtwcli.engine  # noqa: F401

        have_engine = not args.no_withdraw
    except ImportError:
        have_engine = False
        console.print("[yellow]vtwcli.engine is not importable: the per-K VTW sweep is skipped[/]")

    ks = list(range(1, n_layers + 1)) if have_engine else []
    with Progress(console=console, transient=True) as prog:
        bar = prog.add_task("answering", total=len(task) * (2 + len(ks)))

        def step(n):
            prog.advance(bar, n)

        share = vision_share(processor, task, model)
        replies, full_logits = answer(model, processor, task, args.batch_size, progress=step)
        blank_replies, _ = answer(model, processor, blank, args.batch_size, progress=step)
        sweep = []
        for k in ks:
            r_k, l_k = answer(model, processor, task, args.batch_size, k=k, progress=step)
            kl = withdrawal_kl(l_k, full_logits, "withdrawn||full")
            sweep.append({"k": k, **task.score(task.records, r_k), "kl_mean": float(kl.mean()),
                          "kl_max": float(kl.max())})

    full = task.score(task.records, replies)
    blank_score = blank.score(blank.records, blank_replies)

    t = Table(title=f"testbed on shapes/{args.split} (seed {args.seed}, {len(task)} questions)")
    t.add_column("question type")
    t.add_column("vision share", justify="right")
    t.add_column("accuracy", justify="right")
    t.add_column("blank image", justify="right")
    for qt in QUESTION_TYPES:
        t.add_row(qt, f"{share[qt]:.1%}", f"{full[f'accuracy_{qt}']:.1%}", f"{blank_score[f'accuracy_{qt}']:.1%}")
    t.add_row("overall", f"{share['overall']:.1%}", f"{full['accuracy']:.1%}", f"{blank_score['accuracy']:.1%}")
    console.print(t)

    if sweep:
        s = Table(title=f"VTW by K (K = decoder layers that see the vision tokens; N = {n_layers} = no withdrawal)")
        for col in ("K", "accuracy", *QUESTION_TYPES, "mean KL(withdrawn||full)", "max KL"):
            s.add_column(col, justify="right")
        for row in sweep:
            s.add_row(str(row["k"]), f"{row['accuracy']:.1%}", *(f"{row[f'accuracy_{q}']:.1%}" for q in QUESTION_TYPES),
                      f"{row['kl_mean']:.4f}", f"{row['kl_max']:.4f}")
        console.print(s)
    console.print(f"done in {time.time() - t0:.0f}s")

    result = {
        "model_dir": recorded_path(args.model_dir, ROOT), "seed": args.seed, "source": task.source.to_dict(), "n": len(task), "num_layers": n_layers,
        "vision_share": share, "heldout": full, "blank": blank_score, "withdraw": sweep,
        "engine": have_engine,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
