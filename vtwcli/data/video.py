"""Uniform frame sampling with PyAV (``pip install 'vtwcli[video]'``)."""

from __future__ import annotations

from pathlib import Path

from vtwcli.errors import InputFileError

DEFAULT_FRAMES = 8


def uniform_indices(total: int, n: int) -> list[int]:
    """n frame indices spread evenly from the first to the last frame, truncated to int as
    numpy.linspace(..., dtype=int) does (a short video repeats frames)."""
    if total <= 0:
        return []
    if n == 1:
        return [0]
    return [int(i * (total - 1) / (n - 1)) for i in range(n)]


def _import_av():
    try:
        import av
    except ImportError as err:
        raise InputFileError(
            "reading videos needs PyAV: pip install 'vtwcli[video]' (or pip install av)"
        ) from err
    return av


def sample_frames(path: str | Path, n: int = DEFAULT_FRAMES) -> list:
    """``n`` RGB PIL frames taken uniformly over the whole video."""
    av = _import_av()
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"video {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputFileError(f"{path} has no video stream")
            total = container.streams.video[0].frames
            if total <= 0:  # the container does not say: count the packets instead
                total = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
        wanted = uniform_indices(total, n)
        keep = set(wanted)
        frames = {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in keep:
                    frames[i] = frame.to_image()
                if i >= wanted[-1]:
                    break
    except InputFileError:
        raise
    except Exception as err:  # PyAV raises its own error classes per failure
        raise InputFileError(f"video {path} cannot be decoded: {err}") from err
    if not frames:
        raise InputFileError(f"video {path} has no decodable frames")
    last = frames[max(frames)]
    # a frame count in the header that overstates the stream: reuse the last decoded frame
    return [frames.get(i, last).convert("RGB") for i in wanted]
