"""The `shapes` task: procedurally generated pictures of coloured shapes on a 3x3 grid.

It is what the bundled `testbed` model was trained on, so every command can run end to end
with no download. Questions come in the styles of the paper's benchmarks:

- ``exist``: POPE/MME-style existence, answered "yes"/"no" (balanced; half of the "no"
  questions name a colour and a shape that are both in the picture, but not together, so
  the model has to bind colour to shape);
- ``choice``: ScienceQA-style multiple choice answered with the option's letter;
- ``colour`` and ``count``: single-word answers.

Everything is a pure function of (split, seed): the held-out ``test`` split and the
``train`` split draw from different seeds, so the same call always yields the same records.
Bump ``GENERATOR_VERSION`` whenever the pictures or questions change: it is written into
every result file as the source revision.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vtwcli.data.base import Generation, Record, Source, Task
from vtwcli.errors import DatasetError

GENERATOR_VERSION = "shapes-v1"

GRID = 3
CELL = 24  # pixels per cell; with the testbed's 8-px patches a cell is 3x3 patches
IMAGE_SIZE = GRID * CELL
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 20),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")
COUNT_WORDS = ("1", "2", "3", "4")
MAX_SHAPES = 4
LETTERS = ("A", "B", "C")
QUESTION_TYPES = ("exist", "choice", "colour", "count")

# Suffixes in the wording the reference harnesses use for these benchmark styles.
YESNO_SUFFIX = "Please answer yes or no."
LETTER_SUFFIX = "Answer with the option's letter from the given choices directly."
WORD_SUFFIX = "Answer the question using a single word or phrase."

# Split -> base seed. Distinct, fixed constants so that train and held-out never share a stream.
_SPLIT_SEEDS = {"train": 1_000_003, "test": 7_777}
_DEFAULT_SIZES = {"train": 20_000, "test": 800}

BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class Scene:
    """The picture's content: cell index (0..8, row-major) -> (colour, shape)."""

    cells: tuple[tuple[int, str, str], ...]  # (cell, colour, shape), sorted by cell
    jitter: tuple[tuple[int, int, int], ...]  # per object: (dx, dy, size) in pixels

    def at(self, cell: int) -> tuple[str, str] | None:
        for c, colour, shape in self.cells:
            if c == cell:
                return colour, shape
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"cells": [list(x) for x in self.cells], "jitter": [list(x) for x in self.jitter]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(tuple(tuple(x) for x in d["cells"]), tuple(tuple(x) for x in d["jitter"]))


def random_scene(rng: random.Random, n: int | None = None) -> Scene:
    n = rng.randint(1, MAX_SHAPES) if n is None else n
    cells = sorted(rng.sample(range(GRID * GRID), n))
    objs = tuple((c, rng.choice(list(COLOURS)), rng.choice(SHAPES)) for c in cells)
    jitter = tuple((rng.randint(-2, 2), rng.randint(-2, 2), rng.randint(14, 18)) for _ in cells)
    return Scene(objs, jitter)


def draw_scene(scene: Scene | None):
    """The RGB picture of ``scene`` (``None``: a blank picture of the same size)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    if scene is None:
        return img
    draw = ImageDraw.Draw(img)
    for (cell, colour, shape), (dx, dy, size) in zip(scene.cells, scene.jitter, strict=True):
        row, col = divmod(cell, GRID)
        cx = col * CELL + CELL // 2 + dx
        cy = row * CELL + CELL // 2 + dy
        h = size // 2
        box = (cx - h, cy - h, cx + h, cy + h)
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=fill)
    return img


def cell_labels(scene: Scene) -> list[tuple[int, int]]:
    """Per cell (row-major): (colour index or -1, shape index or -1). Dense labels for training."""
    out = [(-1, -1)] * (GRID * GRID)
    colours = list(COLOURS)
    for cell, colour, shape in scene.cells:
        out[cell] = (colours.index(colour), SHAPES.index(shape))
    return out


def make_question(rng: random.Random, scene: Scene, qtype: str) -> dict[str, Any] | None:
    """One question of ``qtype`` about ``scene``; ``None`` if the scene cannot carry it.

    The result has ``question`` (without the answer-format suffix), ``answer`` and ``meta``.
    """
    present = {(colour, shape) for _, colour, shape in scene.cells}
    if qtype == "exist":
        if rng.random() < 0.5:
            colour, shape = rng.choice(sorted(present))
            answer = "yes"
        else:
            absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
            colours = {c for c, _ in present}
            shapes = {s for _, s in present}
            # "Hard" negatives: colour and shape are each in the picture, but never together.
            hard = [(c, s) for c, s in absent if c in colours and s in shapes]
            pool = hard if hard and rng.random() < 0.5 else absent
            colour, shape = rng.choice(pool)
            answer = "no"
        return {"question": f"Is there a {colour} {shape} in the image?", "answer": answer,
                "meta": {"colour": colour, "shape": shape}}
    if qtype == "choice":
        cell, _, shape = rng.choice(scene.cells)
        options = list(SHAPES)
        rng.shuffle(options)
        letter = LETTERS[options.index(shape)]
        lines = "\n".join(f"{lt}. {opt}" for lt, opt in zip(LETTERS, options, strict=True))
        return {"question": f"Which shape is at {POSITIONS[cell]}?\n{lines}", "answer": letter,
                "meta": {"cell": cell, "position": POSITIONS[cell], "options": options, "shape": shape}}
    if qtype == "colour":
        shape_counts: dict[str, int] = {}
        for _, _, s in scene.cells:
            shape_counts[s] = shape_counts.get(s, 0) + 1
        unique = [s for s in SHAPES if shape_counts.get(s) == 1]
        if not unique:
            return None
        shape = rng.choice(unique)
        colour = next(c for _, c, s in scene.cells if s == shape)
        return {"question": f"What colour is the {shape}?", "answer": colour, "meta": {"shape": shape}}
    if qtype == "count":
        return {"question": "How many shapes are there?", "answer": COUNT_WORDS[len(scene.cells) - 1], "meta": {}}
    raise DatasetError(f"unknown shapes question type {qtype!r}; use one of {', '.join(QUESTION_TYPES)}")


def suffix_for(qtype: str) -> str:
    return {"exist": YESNO_SUFFIX, "choice": LETTER_SUFFIX}.get(qtype, WORD_SUFFIX)


def prompt_text(question: str, qtype: str) -> str:
    return f"{question}\n{suffix_for(qtype)}"


def sample(rng: random.Random, qtype: str) -> tuple[Scene, dict[str, Any]]:
    """A scene and a question of ``qtype`` on it (rejection-samples scenes that cannot carry it)."""
    while True:
        scene = random_scene(rng)
        q = make_question(rng, scene, qtype)
        if q is not None:
            return scene, q


def vocabulary() -> list[str]:
    """Every whitespace-separated word the generator and the chat template can produce."""
    words: set[str] = set()
    texts = [YESNO_SUFFIX, LETTER_SUFFIX, WORD_SUFFIX, "How many shapes are there?"]
    for colour in COLOURS:
        for shape in SHAPES:
            texts.append(f"Is there a {colour} {shape} in the image?")
    for shape in SHAPES:
        texts.append(f"What colour is the {shape}?")
    for pos in POSITIONS:
        texts.append(f"Which shape is at {pos}?")
    for lt in LETTERS:
        texts.append(f"{lt}. {lt}")
    texts += list(COLOURS) + list(SHAPES) + list(COUNT_WORDS) + ["yes", "no"]
    for t in texts:
        words.update(t.split())
    return sorted(words)


class ShapesTask(Task):
    name = "shapes"
    description = "Coloured shapes on a 3x3 grid (procedural; the testbed's task): yes/no, letter, colour, count"
    generation = Generation(max_new_tokens=4)
    metric_names = ("accuracy", *(f"accuracy_{t}" for t in QUESTION_TYPES))
    headline_metric, headline_label = "accuracy", "shapes accuracy"

    def prompt(self, record: Record) -> str:
        return prompt_text(record.question, record.meta["type"])

    def images(self, record: Record) -> list[Any]:
        if record.meta.get("blank"):
            return [draw_scene(None)]
        return [draw_scene(Scene.from_dict(record.meta["scene"]))]

    def parse(self, record: Record, reply: str) -> str:
        return parse_reply(reply, record.meta["type"])

    def score(self, records: Sequence[Record], replies: Sequence[str]) -> dict[str, float]:
        if len(records) != len(replies):
            raise ValueError(f"{len(records)} records but {len(replies)} replies")
        hits: dict[str, list[int]] = {t: [] for t in QUESTION_TYPES}
        for rec, reply in zip(records, replies, strict=True):
            qtype = rec.meta["type"]
            hits[qtype].append(int(parse_reply(reply, qtype) == str(rec.answer).lower()))
        allhits = [h for v in hits.values() for h in v]
        out = {"accuracy": sum(allhits) / len(allhits) if allhits else float("nan")}
        for t, v in hits.items():
            if v:
                out[f"accuracy_{t}"] = sum(v) / len(v)
        return out


def parse_reply(reply: str, qtype: str) -> str:
    """The first word of a reply, lower-cased and stripped of punctuation ("B." -> "b")."""
    words = reply.strip().split()
    if not words:
        return ""
    word = words[0].strip(".,:;!?()\"'").lower()
    if qtype == "choice":
        return word[:1]
    return word


def _parse_subset(subset: str | Sequence[str] | None) -> tuple[str, ...]:
    if subset is None or subset == "" or subset == "all":
        return QUESTION_TYPES
    items = subset.split(",") if isinstance(subset, str) else list(subset)
    items = [s.strip() for s in items if s.strip()]
    bad = [s for s in items if s not in QUESTION_TYPES]
    if bad or not items:
        raise DatasetError(
            f"unknown shapes subset {', '.join(bad) or repr(subset)}; use one or more of "
            f"{', '.join(QUESTION_TYPES)} (comma-separated), or leave it out for all"
        )
    return tuple(dict.fromkeys(items))


def load_shapes(split: str | None = "test", limit: int | None = None, subset=None, seed: int = 0,
                blank: bool = False) -> ShapesTask:
    """The `shapes` task: ``limit`` records (default 800 for test, 20000 for train).

    ``subset`` picks question types (comma-separated). Types are interleaved round-robin so
    any prefix is balanced. ``blank=True`` pairs every question with a blank picture (the
    check that a model reads the image: its accuracy should fall to about chance).
    """
    split = split or "test"
    if split not in _SPLIT_SEEDS:
        raise DatasetError(f"shapes has splits 'train' and 'test', not {split!r}")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    types = _parse_subset(subset)
    n = limit if limit is not None else _DEFAULT_SIZES[split]
    rng = random.Random(_SPLIT_SEEDS[split] * 1_000_003 + int(seed))
    records = []
    for i in range(n):
        qtype = types[i % len(types)]
        scene, q = sample(rng, qtype)
        meta = {"type": qtype, "scene": scene.to_dict(), **q["meta"]}
        if blank:
            meta["blank"] = True
        records.append(Record(id=f"shapes-{split}-{seed}-{i}", question=q["question"], answer=q["answer"], meta=meta))
    config = ",".join(types) if types != QUESTION_TYPES else "all"
    if blank:
        config += "+blank"
    source = Source(dataset_id="vtwcli/shapes", config=config, split=split, revision=GENERATOR_VERSION)
    return ShapesTask(records, source)
