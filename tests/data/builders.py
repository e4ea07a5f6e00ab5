"""Small local copies of each benchmark in its hub schema (fields, types, config folders).

Field lists follow the benchmarks' published hub schemas (as lmms-eval reads them); images are generated with PIL, the video
with PyAV. The copies are written in the layouts users have: ``save_to_disk`` folders, and
parquet files laid out as in the hub repository (with or without the README's config list).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def png(colour=(200, 30, 30), size=(32, 24)) -> Image.Image:
    return Image.new("RGB", size, colour)


def png_bytes(colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    png(colour).save(buf, format="PNG")
    return buf.getvalue()


def sqa_rows(n=4):
    rows = []
    for i in range(n):
        rows.append({
            "image": png((10 * i, 50, 90)),
            "question": f"Which animal is shown {i}?",
            "choices": ["cat", "dog", "bird"][: 2 + i % 2],
            "answer": i % 2,
            "hint": "" if i % 2 else f"The picture {i} was taken outdoors.",
            "task": "closed choice", "grade": "grade4", "subject": "natural science", "topic": "biology",
            "category": "Animals", "skill": "Identify animals", "lecture": "", "solution": "",
        })
    return rows


MME_CATS = ["existence", "OCR", "code_reasoning"]


def mme_rows(pairs=3):
    rows = []
    for p in range(pairs):
        cat = MME_CATS[p % len(MME_CATS)]
        for ans in ("Yes", "No"):
            rows.append({
                "question_id": f"{cat}/{p:04d}.png",
                "image": png((p * 40, 100, 100)),
                "question": f"Is there a {'cat' if ans == 'Yes' else 'dog'} in the image {p}? Please answer yes or no.",
                "answer": ans,
                "category": cat,
            })
    return rows


def pope_rows(n=6, category="adversarial"):
    return [{
        "id": str(i), "question_id": str(1000 + i), "question": f"Is there a chair {i} in the image?",
        "answer": "yes" if i % 2 == 0 else "no", "image_source": f"COCO_val2014_{i:012d}",
        "image": png((i * 30, 0, 0)), "category": category,
    } for i in range(n)]


def ai2d_rows(n=3):
    return [{
        "question": f"Which stage comes after egg {i}?",
        "options": ["larva", "pupa", "adult", "egg"],
        "answer": str(i % 4),
        "image": png((0, i * 60, 0)),
    } for i in range(n)]


def mmbench_rows():
    rows = []
    base = [
        (0, "What colour is the sky?", "Look up.", {"A": "blue", "B": "green", "C": "red", "D": None}, "A"),
        (1, "How many legs has a spider?", None, {"A": "six", "B": "eight", "C": None, "D": None}, "B"),
    ]
    for index, question, hint, opts, answer in base:
        rows.append(_mmb(index, question, hint, opts, answer))
        # a circular copy: options rotated, index shifted by 1e6
        rotated = _rotate(opts, answer)
        rows.append(_mmb(index + 1_000_000, question, hint, rotated[0], rotated[1]))
    return rows


def _rotate(opts, answer):
    letters = [k for k in "ABCD" if opts.get(k) is not None]
    texts = [opts[k] for k in letters]
    texts = texts[1:] + texts[:1]
    new = {k: None for k in "ABCD"}
    for k, t in zip(letters, texts, strict=True):
        new[k] = t
    gold_text = opts[answer]
    return new, next(k for k in letters if new[k] == gold_text)


def _mmb(index, question, hint, opts, answer):
    return {
        "index": index, "question": question, "hint": hint, "answer": answer,
        "A": opts["A"], "B": opts["B"], "C": opts["C"], "D": opts["D"],
        "category": "attribute_recognition", "image": png((index % 255, 0, 200)), "source": "test",
        "L2-category": "finegrained_perception", "comment": None, "split": "dev",
    }


def mmmu_rows():
    blank = {f"image_{k}": None for k in range(1, 8)}
    return [
        {
            "id": "validation_Art_1", "question": "Look at <image 2> and <image 1>. Which is older?",
            "options": "['The first', 'The second', '<image 3>']", **blank,
            "image_1": png((1, 1, 1)), "image_2": png((2, 2, 2)), "image_3": png((3, 3, 3)),
            "answer": "B", "question_type": "multiple-choice", "subfield": "Art History",
            "explanation": "", "img_type": "['Paintings']", "topic_difficulty": "Easy",
        },
        {
            "id": "validation_Math_2", "question": "<image 1> What is the area of the square?",
            "options": "[]", **blank, "image_1": png((4, 4, 4)),
            "answer": "12.5", "question_type": "open", "subfield": "Geometry",
            "explanation": "", "img_type": "['Diagrams']", "topic_difficulty": "Medium",
        },
    ]


def videomme_rows(n=2):
    return [{
        "video_id": f"{i + 1:03d}", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=x", "videoID": f"vid{i}", "question_id": f"{i + 1:03d}-1",
        "task_type": "Counting Problem", "question": f"How many balls appear {i}?",
        "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "C",
    } for i in range(n)]


def write_video(path: Path, frames: int = 20, size=(32, 32)) -> Path:
    """A tiny MPEG-4 clip whose frame i is filled with grey level 10*i (to check which frames are read)."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 10 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def dataset(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def with_image_feature(ds, columns):
    import datasets

    for col in columns:
        if col in ds.column_names:
            ds = ds.cast_column(col, datasets.Image())
    return ds


def save_dict(rows, folder: Path, split: str, image_columns=("image",)) -> Path:
    import datasets

    ds = with_image_feature(dataset(rows), image_columns)
    datasets.DatasetDict({split: ds}).save_to_disk(str(folder))
    return folder


def save_hub_layout(rows, folder: Path, config: str | None, split: str, readme: bool,
                    image_columns=("image",)) -> Path:
    """Parquet in the hub repository's layout: <config>/<split>-00000-of-00001.parquet."""
    ds = with_image_feature(dataset(rows), image_columns)
    sub = folder / config if config else folder / "data"
    sub.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(sub / f"{split}-00000-of-00001.parquet"))
    if readme:
        name = config or "default"
        rel = f"{config}/{split}-*" if config else f"data/{split}-*"
        (folder / "README.md").write_text(
            f"---\nconfigs:\n- config_name: {name}\n  data_files:\n  - split: {split}\n    path: {rel}\n---\n# copy\n"
        )
    return folder


def fake_hub_cache(rows, cache: Path, hub_id: str, config: str | None, split: str, sha: str,
                   image_columns=("image",)) -> Path:
    """What ``datasets.load_dataset(hub_id, config)`` leaves in its cache after a download:
    <cache>/<ns>___<snake name>/<config>/0.0.0/<commit sha>/<snake name>-<split>.arrow.
    Built with datasets' own parquet builder, then placed where a hub download would be."""
    import shutil
    import tempfile

    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet

    work = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else None))
    src = save_hub_layout(rows, work / "src", config, split, readme=False, image_columns=image_columns)
    parquet = next((src / (config or "data")).glob("*.parquet"))
    builder = Parquet(cache_dir=str(work / "build"), config_name=config or "default", hash=sha,
                      data_files={split: str(parquet)})
    builder.download_and_prepare()
    namespace, name = hub_id.split("/")
    snake = camelcase_to_snakecase(name)
    dest = cache / f"{namespace}___{snake}" / (config or "default") / "0.0.0" / sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(builder.cache_dir, dest)
    for arrow in dest.glob("parquet-*.arrow"):
        arrow.rename(dest / arrow.name.replace("parquet-", f"{snake}-", 1))
    shutil.rmtree(work)
    return dest
