#!/usr/bin/env python
"""How long `--prompt-style vicuna_v1` prompts are with a real LLaMA vocabulary.

vtw builds a vicuna_v1 prompt as text (vtwcli.models.prompting) and lets the model's processor
tokenize it in one piece, expanding ``<image>`` to the vision tokens. LLaVA's original code,
which the paper's numbers come from, tokenizes the text between image placeholders chunk by
chunk (each chunk on its own, its BOS dropped after the first) and splices the image in.

This script tokenizes the same conversations both ways with a LLaVA-1.5 processor (576 vision
tokens for any image) around a real tokenizer and prints, per question, the prompt length vtw
gives, the length LLaVA's chunked rule gives, and the chat-template length, so the distance to
the paper's convention (641.4 tokens on average on MME for LLaVA-1.5-7B) can be read off.

A real vocabulary with no download: llama.cpp's LLaMA SentencePiece vocabulary
``models/ggml-vocab-llama-spm.gguf`` (inside the llama-cpp-python source distribution on
the package index); reading it needs the ``gguf`` package.

  pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all:
  tar xzf llama_cpp_python-0.3.36.tar.gz llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
  pip install gguf
  python scripts/vicuna_prompt_tokens.py --gguf llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf

``--legacy`` marks a word start before every piece of text between special tokens, as
transformers' LLaMA tokenizer does with ``legacy=True`` (without it, only before the first).
``--tokenizer DIR`` takes a local tokenizer instead (e.g. a copy of llava-hf/llava-1.5-7b-hf's
tokenizer files); with neither, the stand-in word-level tokenizer vtw ships is used.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

# Yes/no questions in MME's form (written for this script; MME's own are not bundled)
QUESTIONS = (
    "Is there a train in this image? Please answer yes or no.",
    "Is the man on the left holding a red umbrella? Please answer yes or no.",
    "Is the word in the sign \"central station\"? Please answer yes or no.",
    "Does this artwork belong to the type of landscape? Please answer yes or no.",
    "Is this photo taken in a place of worship? Please answer yes or no.",
    "Are there three people in the image? Please answer yes or no.",
)
IMAGE = "<image>"


def load_tokenizer(gguf: str | None, directory: str | None, legacy: bool = False):
    """The real tokenizer asked for, with ``<image>`` added as LLaVA-HF's checkpoints have it;
    None for the stand-in. ``legacy``: a word-start mark before every piece of text between
    special tokens (transformers' ``legacy=True`` LLaMA tokenizer), not only before the first."""
    from transformers import AutoTokenizer

    if gguf:
        path = Path(gguf)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    elif directory:
        tok = AutoTokenizer.from_pretrained(directory)
    else:
        return None
    if IMAGE not in tok.get_vocab():
        tok.add_tokens([IMAGE], special_tokens=True)
    if legacy:
        from tokenizers import pre_tokenizers

        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                                       split=False)  # fmt: skip
    return tok


def llava_processor(tokenizer):
    """vtw's LLaVA-1.5-7B processor (real image geometry, chat template), with ``tokenizer``."""
    from vtwcli.models.synthetic import synthetic_processor

    proc = synthetic_processor("llava-1.5-7b")
    if tokenizer is not None:
        proc.tokenizer = tokenizer
        proc.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)
    return proc


def chunked_ids(tokenizer, prompt: str, vision: int, image_id: int) -> list[int]:
    """LLaVA's original rule: tokenize each text chunk between placeholders alone, keep the
    first chunk's BOS only, and put ``vision`` image ids where each placeholder was."""
    chunks = [tokenizer(c).input_ids for c in prompt.split(IMAGE)]
    bos = tokenizer.bos_token_id
    ids = list(chunks[0])
    for chunk in chunks[1:]:
        ids += [image_id] * vision
        ids += chunk[1:] if bos is not None and chunk[:1] == [bos] else chunk
    return ids


def measure(proc, questions=QUESTIONS) -> list[dict]:
    from PIL import Image

    from vtwcli.models.prompting import vicuna_v1

    image = Image.new("RGB", (640, 480), (128, 128, 128))
    tok = proc.tokenizer
    image_id = tok.convert_tokens_to_ids(IMAGE)
    rows = []
    for q in questions:
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        prompt = vicuna_v1(conv, IMAGE)
        ids = proc(text=prompt, images=image, return_tensors="pt")["input_ids"][0].tolist()
        vision = ids.count(image_id)
        chat = proc(text=proc.apply_chat_template(conv, add_generation_prompt=True, tokenize=False),
                    images=image, return_tensors="pt")["input_ids"].shape[1]  # fmt: skip
        ref = chunked_ids(tok, prompt, vision, image_id)
        first = ids.index(image_id)
        after = ids[first + vision :]
        ref_after = ref[first + vision :] if ref[:first] == ids[:first] else None
        rows.append({
            "question": q, "vision": vision, "before_image": first, "vtw": len(ids), "llava_chunked": len(ref),
            "chat": int(chat), "same_ids": ids == ref,
            "after_image_vtw": tok.convert_ids_to_tokens(after[:3]),
            "after_image_llava": tok.convert_ids_to_tokens(ref_after[:3]) if ref_after is not None else None,
        })  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--gguf", help="a LLaMA vocabulary in GGUF (llama.cpp's ggml-vocab-llama-spm.gguf)")
    src.add_argument("--tokenizer", help="a local tokenizer directory")
    ap.add_argument("--legacy", action="store_true",
                    help="mark a word start before every text piece between special tokens (legacy LLaMA tokenizers)")
    args = ap.parse_args()

    import sys

    source = args.gguf or args.tokenizer
    if source and not Path(source).exists():
        print(f"error: {source} does not exist (see --help for where llama.cpp's LLaMA vocabulary comes from)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.gguf:
        try:
            import gguf  # noqa: F401
        except ImportError:
            print("error: reading a GGUF vocabulary needs the gguf package: pip install gguf", file=sys.stderr)
            return 2
    proc = llava_processor(load_tokenizer(args.gguf, args.tokenizer, args.legacy))
    name = args.gguf or args.tokenizer or "the stand-in word-level tokenizer"
    shown = Path(name).name if (args.gguf or args.tokenizer) else name
    print(f"tokenizer: {shown} ({len(proc.tokenizer)} tokens{', legacy word starts' if args.legacy else ''})")
    rows = measure(proc)
    print(f"{'vtw':>4} {'LLaVA':>6} {'chat':>5}  before image  after the image (vtw | LLaVA)   question")
    for r in rows:
        print(f"{r['vtw']:>4} {r['llava_chunked']:>6} {r['chat']:>5}  {r['before_image']:>12}  "
              f"{' '.join(r['after_image_vtw']):<14}| {' '.join(r['after_image_llava'] or ['?']):<14}  "
              f"{r['question']}")  # fmt: skip
    vision = rows[0]["vision"]
    mean = {k: statistics.fmean(r[k] for r in rows) for k in ("vtw", "llava_chunked", "chat")}
    print(f"vision tokens {vision}; BOS + system sentence + 'USER:' = {rows[0]['before_image']} tokens before the image")
    print(f"mean prompt: vtw vicuna_v1 {mean['vtw']:.1f}, LLaVA's chunked rule {mean['llava_chunked']:.1f}, "
          f"chat template {mean['chat']:.1f}; identical ids for {sum(r['same_ids'] for r in rows)}/{len(rows)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
