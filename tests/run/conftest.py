import json

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # run in an empty directory: a profiles/testbed.yaml in the checkout would supply a K
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def files(tmp_path):
    """A white image, a red-square image, a corrupt image and a prompts file with good and bad lines."""
    Image.new("RGB", (72, 72), (255, 255, 255)).save(tmp_path / "white.png")
    red = Image.new("RGB", (72, 72), (255, 255, 255))
    red.paste((220, 20, 20), (24, 24, 48, 48))
    red.save(tmp_path / "red.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    lines = [
        json.dumps({"id": "q1", "image": "white.png", "prompt": "how many shapes are there ?"}),
        "{this is not json",
        json.dumps({"id": "q3", "image": "red.png", "prompt": "what colour is the square ?"}),
        json.dumps({"id": "q4", "image": "missing.png", "prompt": "is there a red circle ?"}),
        "",
        json.dumps({"id": "q6", "images": ["red.png"], "question": "is there a red circle ?"}),
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path
