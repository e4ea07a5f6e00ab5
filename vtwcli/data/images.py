"""Loading images given as PIL objects, paths or bytes, with one clear error for a bad file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from vtwcli.errors import InputFileError


class LazyImage:
    """One image cell of a ``datasets`` table, decoded only when a model needs it.

    Holding every decoded image of a benchmark in memory would take gigabytes (MME, AI2D);
    the table itself is memory-mapped, so a row reference costs nothing.
    """

    __slots__ = ("_table", "_row", "_column")

    def __init__(self, table, row: int, column: str):
        self._table, self._row, self._column = table, row, column

    def raw(self) -> Any:
        return self._table[self._row][self._column]

    def __repr__(self) -> str:
        return f"LazyImage(row={self._row}, column={self._column!r})"


def load_image(item: Any):
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, LazyImage):
        item = item.raw()
        if item is None:
            raise InputFileError("a dataset row names an image that is empty")
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, dict) and item.get("bytes") is not None:  # datasets' Image feature, decode=False
        item = item["bytes"]
    if isinstance(item, (bytes, bytearray)):
        try:
            return Image.open(io.BytesIO(item)).convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise InputFileError("an embedded image is corrupt or not an image") from err
    if isinstance(item, dict) and item.get("path"):
        item = item["path"]
    path = Path(item)
    if not path.exists():
        raise InputFileError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except UnidentifiedImageError as err:
        raise InputFileError(f"image {path} is not an image file or is corrupt") from err
    except OSError as err:
        raise InputFileError(f"image {path} cannot be read: {err}") from err


def load_images(items) -> list:
    return [load_image(x) for x in items]
