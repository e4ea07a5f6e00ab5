"""Train the bundled `testbed` model (a tiny LLaVA) on the `shapes` task, from scratch, on CPU.

    HF_HUB_OFFLINE=1 python scripts/train_testbed.py --out vtwcli/models/testbed

Seeded and deterministic on a given machine (fixed step counts, no wall-clock schedule), about
30 minutes on 2 CPU cores. CI never runs it. What it does and why is in docs/testbed.md; in short:

1. Stage 1 (dense vision pre-training): the CLIP vision tower alone, with throw-away linear
   heads on every patch predicting what the generator knows is in that patch's grid cell
   (colour, shape, colour x shape, cell index). The tower learns to see in a couple of minutes.
2. Stage 2: tower frozen; projector + Llama decoder learn the questions. Besides the answer,
   the loss supervises a few intermediate prompt positions with the step the answer depends
   on (e.g. at the position word of a letter question: the shape in that cell; at each
   option: whether it is that shape). This turns the multi-step letter question into a chain
   of one-step lookups, the thing both earlier tries could not learn from the answer alone.

The forward pass of stage 2 is written here (embed, scatter the projected vision features into
the image rows, run the real LlamaModel) so that the per-step cost stays small; the checkpoint
is the ordinary LlavaForConditionalGeneration those modules belong to, and the script checks at
the end that the ordinary processor + generate path reproduces the training-time prompt ids.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vtwcli.data import shapes  # noqa: E402
from vtwcli.fileio import recorded_path  # noqa: E402

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
ROLE_WORDS = ["USER:", "ASSISTANT:"]
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]
PATCH = 8
NUM_PATCHES = (shapes.IMAGE_SIZE // PATCH) ** 2  # 81 vision tokens (CLS dropped)

# The LLaVA-1.5 conversation format, word-level: "USER: <image>\n<question> ASSISTANT: <answer></s>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% endif %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


# ----------------------------------------------------------------------------- building blocks


def build_tokenizer():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL + ROLE_WORDS + [w for w in shapes.vocabulary() if w not in ROLE_WORDS]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="left", model_max_length=256,
    )
    return tok


def build_processor(tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": shapes.IMAGE_SIZE}, resample=3,
        do_center_crop=True, crop_size={"height": shapes.IMAGE_SIZE, "width": shapes.IMAGE_SIZE},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, args):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden, num_hidden_layers=args.vision_layers,
        num_attention_heads=4, image_size=shapes.IMAGE_SIZE, patch_size=PATCH, projection_dim=args.vision_hidden,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True, rope_theta=10000.0,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=NUM_PATCHES, vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=True,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pixels(scenes) -> torch.Tensor:
    """Pixel values exactly as the CLIP image processor makes them (checked in verify())."""
    arr = np.stack([np.asarray(shapes.draw_scene(s), dtype=np.float32) for s in scenes])
    arr = (arr / 255.0 - np.array(IMAGE_MEAN, np.float32)) / np.array(IMAGE_STD, np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def patch_cells() -> torch.Tensor:
    side = shapes.IMAGE_SIZE // PATCH
    per_cell = shapes.CELL // PATCH
    return torch.tensor([(r // per_cell) * shapes.GRID + (c // per_cell) for r in range(side) for c in range(side)])


# ----------------------------------------------------------------------------- stage 1


def train_vision(model, args, rng: random.Random, log):
    tower = model.model.vision_tower
    dv = tower.config.hidden_size
    n_col, n_shape = len(shapes.COLOURS), len(shapes.SHAPES)
    heads = torch.nn.ModuleDict({
        "colour": torch.nn.Linear(dv, n_col + 1),
        "shape": torch.nn.Linear(dv, n_shape + 1),
        "both": torch.nn.Linear(dv, n_col * n_shape + 1),
        "cell": torch.nn.Linear(dv, shapes.GRID * shapes.GRID),
    })
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.vision_lr, weight_decay=0.01)
    cells = patch_cells()
    tower.train()
    t0 = time.time()
    for step in range(args.vision_steps):
        lr = args.vision_lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.vision_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        scenes = [shapes.random_scene(rng) for _ in range(args.vision_batch)]
        labels = torch.tensor([shapes.cell_labels(s) for s in scenes])  # (B, 9, 2), -1 = empty
        col = labels[:, :, 0][:, cells] + 1  # (B, 81) 0 = empty
        shp = labels[:, :, 1][:, cells] + 1
        both = torch.where(col > 0, (col - 1) * n_shape + (shp - 1) + 1, torch.zeros_like(col))
        cell = cells.expand(len(scenes), -1)
        h = tower(pixels(scenes), output_hidden_states=True).hidden_states[-1][:, 1:]
        loss = sum(F.cross_entropy(heads[k](h).flatten(0, 1), y.flatten()) for k, y in
                   (("colour", col), ("shape", shp), ("both", both), ("cell", cell)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.vision_steps - 1:
            with torch.no_grad():
                acc = (heads["both"](h).argmax(-1) == both).float().mean().item()
            log(f"vision step {step:4d} loss {loss.item():.3f} per-patch colour x shape acc {acc:.3f} ({time.time() - t0:.0f}s)")
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)


# ----------------------------------------------------------------------------- stage 2


class Encoder:
    """Word ids for prompts, mirroring the chat template (verified against the processor)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.vocab = tokenizer.get_vocab()
        self.image_id = self.vocab["<image>"]

    def ids(self, words: list[str]) -> list[int]:
        return [self.vocab[w] for w in words]

    def prompt_words(self, question: str, qtype: str) -> list[str]:
        return ["USER:"] + ["<image>"] * NUM_PATCHES + shapes.prompt_text(question, qtype).split() + ["ASSISTANT:"]

    def example(self, q: dict, qtype: str):
        """(ids, targets) for one question: answer + </s>, plus the intermediate supervision."""
        words = self.prompt_words(q["question"], qtype)
        n_prompt = 1 + len(words)  # <s> first
        seq = ["<s>", *words, q["answer"], "</s>"]
        targets = [-100] * len(seq)
        weights = [0.0] * len(seq)
        targets[n_prompt - 1], weights[n_prompt - 1] = self.vocab[q["answer"]], 1.0
        targets[n_prompt], weights[n_prompt] = self.vocab["</s>"], 0.2
        meta = q["meta"]
        aux: list[tuple[int, str]] = []
        if qtype == "choice":
            pos = seq.index(f"{meta['position']}?")
            aux.append((pos, meta["shape"]))  # the shape in the queried cell
            for lt, opt in zip(shapes.LETTERS, meta["options"], strict=True):
                i = seq.index(f"{lt}.") + 1  # the option's word
                aux.append((i, "yes" if opt == meta["shape"] else "no"))
        elif qtype == "exist":
            aux.append((seq.index(meta["shape"]), q["answer"]))
        elif qtype == "colour":
            aux.append((seq.index(f"{meta['shape']}?"), q["answer"]))
        elif qtype == "count":
            aux.append((seq.index("there?"), q["answer"]))
        for i, word in aux:
            targets[i], weights[i] = self.vocab[word], self.aux_weight
        return self.ids(seq), targets, weights

    aux_weight = 0.5


def batch_tensors(examples, pad_id):
    n = max(len(e[0]) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    tgt = torch.full((len(examples), n), -100, dtype=torch.long)
    wts = torch.zeros((len(examples), n))
    for b, (i, t, w) in enumerate(examples):
        ids[b, : len(i)] = torch.tensor(i)
        tgt[b, : len(t)] = torch.tensor(t)
        wts[b, : len(w)] = torch.tensor(w)
    return ids, tgt, wts


IMAGE_START = 2  # <s> USER: then the 81 image rows


def decoder_logits(model, ids, feats, positions=None, withdraw_k=None):
    """Logits at ``positions`` (B, P) or at every position; right padding needs no mask (causal).

    With ``withdraw_k`` the image rows are physically removed before decoder layer K (VTW), the
    text rows keep their original positions; ``positions`` must then all lie after the image.
    """
    lm = model.model.language_model
    emb = lm.embed_tokens(ids)
    vis = model.model.multi_modal_projector(feats)
    emb = torch.cat([emb[:, :IMAGE_START], vis, emb[:, IMAGE_START + NUM_PATCHES:]], dim=1)
    if withdraw_k is None:
        h = lm(inputs_embeds=emb, use_cache=False).last_hidden_state
    else:
        h = _withdrawn_forward(lm, emb, withdraw_k)
        if positions is not None:
            # Every target lies after the image block, which is gone from the hidden states; the
            # filler positions of short rows (weight 0) may point into it, so clamp them.
            positions = (positions - NUM_PATCHES).clamp_min(0)
    if positions is not None:
        h = torch.gather(h, 1, positions.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
    return model.lm_head(h)


def _withdrawn_forward(lm, emb, k):
    """LlamaModel forward with the image rows dropped before layer ``k`` (0 < k < N).

    LlamaModel hands every layer the same full-length rotary table (and mask, if any), so each
    layer from K on gets its kwargs cut to the kept positions; layer K also cuts the rows.
    """
    n = emb.shape[1]
    keep = torch.cat([torch.arange(IMAGE_START), torch.arange(IMAGE_START + NUM_PATCHES, n)]).to(emb.device)

    def pre_hook(module, args, kwargs, first):
        if args:
            hidden, args = args[0], args[1:]
        else:
            hidden = kwargs.pop("hidden_states")
        if first:
            hidden = hidden.index_select(1, keep)
        cos, sin = kwargs["position_embeddings"]
        if cos.shape[-2] == n:
            kwargs["position_embeddings"] = (cos.index_select(-2, keep), sin.index_select(-2, keep))
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.shape[-1] == n:
            kwargs["attention_mask"] = mask.index_select(-2, keep).index_select(-1, keep)
        if kwargs.get("position_ids") is not None and kwargs["position_ids"].shape[-1] == n:
            kwargs["position_ids"] = kwargs["position_ids"].index_select(-1, keep)
        return (hidden, *args), kwargs

    handles = []
    try:
        for j in range(k, len(lm.layers)):
            handles.append(lm.layers[j].register_forward_pre_hook(
                lambda m, a, kw, first=(j == k): pre_hook(m, a, kw, first), with_kwargs=True))
        return lm(inputs_embeds=emb, use_cache=False).last_hidden_state
    finally:
        for hd in handles:
            hd.remove()


def distill_kl(logits, full_logp, mask):
    """Mean over the ``mask``ed positions of KL(softmax(logits) || exp(full_logp)), full vocabulary."""
    logp = F.log_softmax(logits, dim=-1)
    kl = (logp.exp() * (logp - full_logp)).sum(-1)
    return kl[mask].mean()


def vision_features(model, scenes):
    with torch.no_grad():
        return model.model.vision_tower(pixels(scenes), output_hidden_states=True).hidden_states[-1][:, 1:]


def quick_eval(model, enc, n_per_type=50, blank=False):
    """Answer accuracy per type on held-out questions, argmax at the last prompt position."""
    task = shapes.load_shapes("test", limit=n_per_type * len(shapes.QUESTION_TYPES))
    out = {}
    model.eval()
    with torch.no_grad():
        for qtype in shapes.QUESTION_TYPES:
            recs = [r for r in task.records if r.meta["type"] == qtype]
            exs = []
            for r in recs:
                words = ["<s>", *enc.prompt_words(r.question, qtype)]
                exs.append((enc.ids(words), [0] * len(words), [0.0] * len(words)))
            ids, _, _ = batch_tensors(exs, enc.tok.pad_token_id)
            last = torch.tensor([[len(e[0]) - 1] for e in exs])
            scenes = [None if blank else shapes.Scene.from_dict(r.meta["scene"]) for r in recs]
            logits = decoder_logits(model, ids, vision_features(model, scenes), last)[:, 0]
            pred = [enc.tok.convert_ids_to_tokens(int(i)) for i in logits.argmax(-1)]
            out[qtype] = sum(p.lower() == str(r.answer).lower() for p, r in zip(pred, recs, strict=True)) / len(recs)
    model.train()
    return out


def train_decoder(model, enc, args, rng: random.Random, log, checkpoint=None):
    params = [p for n, p in model.named_parameters() if p.requires_grad and "vision_tower" not in n]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    types, probs = zip(*args.mix.items(), strict=True)
    t0 = time.time()
    model.train()
    last = min(args.steps, args.stop_after or args.steps)
    for step in range(last):
        warm = min(1.0, (step + 1) / args.warmup)
        lr = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        scenes, exs = [], []
        for _ in range(args.batch):
            qtype = rng.choices(types, probs)[0]
            scene, q = shapes.sample(rng, qtype)
            scenes.append(scene)
            exs.append(enc.example(q, qtype))
        ids, tgt, wts = batch_tensors(exs, enc.tok.pad_token_id)
        feats = vision_features(model, scenes)
        # Only positions with a target go through the LM head.
        keep = tgt != -100
        npos = int(keep.sum(1).max())
        order = torch.argsort((~keep).int(), dim=1, stable=True)[:, :npos]
        tsel = torch.gather(tgt, 1, order)
        wsel = torch.gather(wts, 1, order) * (tsel != -100)
        withdraw_k = None
        if args.withdraw_prob > 0 and rng.random() < args.withdraw_prob:
            # VTW during training (the paper's future work): at a random K the model must already
            # have moved what it needs from the image into the text rows.
            withdraw_k = rng.randint(args.withdraw_k_min, len(model.model.language_model.layers) - 1)
        logits = decoder_logits(model, ids, feats, order, withdraw_k=withdraw_k)
        ce = F.cross_entropy(logits.flatten(0, 1), tsel.clamp_min(0).flatten(), reduction="none")
        loss = (ce * wsel.flatten()).sum() / len(exs)
        if withdraw_k is not None and args.distill_weight > 0:
            # Cross-entropy alone lets the withdrawn model be right with a differently shaped
            # distribution; `vtw calibrate` measures KL(withdrawn || full) over the whole
            # vocabulary, so pull the withdrawn distribution onto the (fixed) full one directly.
            with torch.no_grad():
                full_logp = F.log_softmax(decoder_logits(model, ids, feats, order), dim=-1)
            # The answer position of every row has weight 1, so it is always among these.
            loss = loss + args.distill_weight * distill_kl(logits, full_logp, wsel > 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % args.log_every == 0 or step == last - 1:
            msg = f"step {step:5d} lr {lr:.2e} loss {loss.item():.3f} ({time.time() - t0:.0f}s)"
            if step % args.eval_every == 0 or step == last - 1:
                acc = quick_eval(model, enc)
                msg += " held-out " + " ".join(f"{k} {v:.2f}" for k, v in acc.items())
                if checkpoint is not None and step > 0:
                    # A usable snapshot on disk while training goes on (the CPU is shared; runs get cut).
                    checkpoint(step + 1, acc)
            log(msg)


# ----------------------------------------------------------------------------- checks + save


def verify(model, processor, enc):
    """The ordinary processor path must give the ids and pixels the training used."""
    rng = random.Random(123)
    for qtype in shapes.QUESTION_TYPES:
        scene, q = shapes.sample(rng, qtype)
        msgs = [{"role": "user", "content": [{"type": "image", "image": shapes.draw_scene(scene)},
                                             {"type": "text", "text": shapes.prompt_text(q["question"], qtype)}]}]
        inputs = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                               return_tensors="pt")
        want = enc.ids(["<s>", *enc.prompt_words(q["question"], qtype)])
        got = inputs["input_ids"][0].tolist()
        if got != want:
            raise SystemExit(f"processor ids differ from training ids for {qtype}:\n{got}\n{want}")
        if not torch.allclose(inputs["pixel_values"], pixels([scene]), atol=1e-5):
            raise SystemExit("processor pixel values differ from the training pixels")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="vtwcli/models/testbed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vision-hidden", type=int, default=96)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--vision-steps", type=int, default=300)
    ap.add_argument("--vision-batch", type=int, default=32)
    ap.add_argument("--vision-lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop after this many steps of the --steps schedule (reproduces a cut-short run)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--aux-weight", type=float, default=0.5)
    ap.add_argument("--mix", default="exist=0.3,choice=0.4,colour=0.15,count=0.15",
                    help="question-type sampling weights for stage 2")
    ap.add_argument("--init-from", default=None,
                    help="continue from a saved testbed directory: skips stage 1 (tower stays frozen)")
    ap.add_argument("--withdraw-prob", type=float, default=0.0,
                    help="share of stage-2 batches trained with the vision tokens withdrawn at a random K")
    ap.add_argument("--withdraw-k-min", type=int, default=2,
                    help="smallest K drawn for a withdrawn batch (K is uniform in KMIN..N-1)")
    ap.add_argument("--distill-weight", type=float, default=0.0,
                    help="on withdrawn batches, add W * KL(withdrawn || full) at the supervised positions "
                         "(full = the same model without withdrawal, no gradient)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=200)
    args = ap.parse_args(argv)
    if not 0.0 <= args.withdraw_prob <= 1.0:
        ap.error("--withdraw-prob must be in [0, 1]")
    if args.withdraw_prob > 0 and not 1 <= args.withdraw_k_min <= args.layers - 1:
        ap.error(f"--withdraw-k-min must be in 1..{args.layers - 1} (K = N withdraws nothing)")
    if args.distill_weight < 0:
        ap.error("--distill-weight must be >= 0")
    args.mix = {k: float(v) for k, v in (kv.split("=") for kv in args.mix.split(","))}

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    if args.init_from:
        from transformers import LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(args.init_from)
    else:
        model = build_model(tokenizer, args)
    enc = Encoder(tokenizer)
    enc.aux_weight = args.aux_weight
    verify(model, processor, enc)
    log(f"parameters: {sum(p.numel() for p in model.parameters()):,}; vocabulary {len(tokenizer)} words")

    def save(steps_done, acc, final=None, blank=None, t_stage=None):
        model.save_pretrained(out)
        processor.save_pretrained(out)
        args_d = {k: v for k, v in vars(args).items() if k != "out"}
        if args_d.get("init_from"):  # the folder relative to the repository, or its name: no machine paths
            args_d["init_from"] = recorded_path(args_d["init_from"], ROOT)
        (out / "training.json").write_text(json.dumps({
            "script": "scripts/train_testbed.py", "args": args_d, "generator": shapes.GENERATOR_VERSION,
            "torch": torch.__version__, "stage2_steps_done": steps_done, "stage_seconds": t_stage,
            "quick_eval_heldout": final or acc, "quick_eval_blank": blank,
        }, indent=2) + "\n")

    t0 = time.time()
    if args.init_from:
        model.model.vision_tower.eval()
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
    else:
        train_vision(model, args, rng, log)
    t1 = time.time()
    train_decoder(model, enc, args, rng, log, checkpoint=save)
    t2 = time.time()
    final = quick_eval(model, enc, n_per_type=100)
    blank = quick_eval(model, enc, n_per_type=100, blank=True)
    log(f"stage 1 {t1 - t0:.0f}s, stage 2 {t2 - t1:.0f}s; held-out {final}; blank {blank}")
    save(min(args.steps, args.stop_after or args.steps), None, final, blank, [round(t1 - t0), round(t2 - t1)])
    log(f"saved to {out}")


if __name__ == "__main__":
    main()
