"""Uniform frame sampling from a video file with PyAV (the ``video`` extra)."""

from __future__ import annotations

from pathlib import Path

from vtwcli.errors import InputFileError, UsageError


def sample_frames(path: str | Path, num_frames: int = 8):
    """``num_frames`` RGB frames spread evenly over the video, as a uint8 array (T, H, W, 3)."""
    import numpy as np

    if num_frames < 1:
        raise UsageError(f"--frames must be at least 1, got {num_frames}")
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"video {p} does not exist")
    try:
        import av
    except ImportError as err:
        raise UsageError("reading videos needs PyAV: pip install 'vtwcli[video]'") from err
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise InputFileError(f"video {p} has no video stream")
            stream = container.streams.video[0]
            total = stream.frames
            if total and total > 0:
                wanted = _spread(total, num_frames)
                picked: dict[int, np.ndarray] = {}
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        picked[i] = frame.to_ndarray(format="rgb24")
                    if i >= max(wanted):
                        break
                # the container's frame count can overstate what decodes; fall back to what we got
                frames = [picked[i] for i in sorted(picked)]
            else:  # unknown length: decode everything once, then pick
                every = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
                frames = [every[i] for i in sorted(_spread(len(every), num_frames))] if every else []
    except InputFileError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise InputFileError(f"video {p} cannot be decoded: {err}") from err
    if not frames:
        raise InputFileError(f"video {p} has no decodable frames")
    while len(frames) < num_frames:  # a very short clip: repeat the last frame so T is as asked
        frames.append(frames[-1])
    return np.stack(frames[:num_frames])


def _spread(total: int, n: int) -> set[int]:
    if n >= total:
        return set(range(total))
    return {round(i * (total - 1) / (n - 1)) for i in range(n)} if n > 1 else {total // 2}


def check_video_file(path: str | Path) -> Path:
    """Fail early (before a model loads) on a missing video path."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"video {p} does not exist")
    if not p.is_file():
        raise InputFileError(f"video {p} is not a file")
    return p
