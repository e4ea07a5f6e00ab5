"""Device memory per sample: torch's allocator and, where available, NVML for the whole device.

The paper's Table 4 reports per-sample memory as the peak during one sample minus what the
loaded model occupies. Here ``model_bytes`` is the allocator's figure right after loading
(and after a warm-up, so lazily created buffers are included); before each sample the
allocator's peak is reset and the cache emptied, outside the timed region.

NVML sees what the whole device holds (every process, the CUDA context, the allocator's
reserved but unused blocks), so its figures are higher; its peak comes from a background
thread polling every 2 ms while the sample runs, so a spike shorter than that can be missed.
On CPU neither exists: the fields are None and the table says n/a.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


def _nvml_handle(device_index: int):
    try:
        import pynvml  # provided by the nvidia-ml-py package (extra "gpu")
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:  # noqa: BLE001 - no driver / no permission: NVML is simply unavailable
        return None, None


class _NvmlPoller:
    def __init__(self, nvml, handle, interval_s: float = 0.002):
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.used())
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self.peak = self.used()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.used())
        return self.peak


@dataclass
class SampleMemory:
    peak_bytes: int | None = None  # allocator peak during the sample
    per_sample_bytes: int | None = None  # peak minus the loaded model
    nvml_peak_bytes: int | None = None
    nvml_per_sample_bytes: int | None = None


class MemoryMeter:
    """Measures one sample at a time; does nothing (and says so) off CUDA."""

    def __init__(self, device: Any):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self.model_bytes: int | None = None
        self.nvml_model_bytes: int | None = None
        self.nvml = None
        self._poller: _NvmlPoller | None = None
        if self.cuda:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            nvml, handle = _nvml_handle(index)
            if nvml is not None:
                self.nvml = nvml
                self._poller = _NvmlPoller(nvml, handle)

    @property
    def nvml_available(self) -> bool:
        return self._poller is not None

    def record_model(self) -> None:
        """Call once the model is loaded and warmed up: the reference subtracted per sample."""
        if not self.cuda:
            return
        import torch

        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        self.model_bytes = torch.cuda.memory_allocated(self.device)
        if self._poller is not None:
            self.nvml_model_bytes = self._poller.used()

    def begin(self) -> None:
        if not self.cuda:
            return
        import torch

        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        if self._poller is not None:
            self._poller.start()

    def end(self) -> SampleMemory:
        if not self.cuda:
            return SampleMemory()
        import torch

        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device)
        out = SampleMemory(peak_bytes=peak, per_sample_bytes=peak - (self.model_bytes or 0))
        if self._poller is not None:
            nv_peak = self._poller.stop()
            out.nvml_peak_bytes = nv_peak
            if self.nvml_model_bytes is not None:
                out.nvml_per_sample_bytes = nv_peak - self.nvml_model_bytes
        return out

    def abort(self) -> None:
        """Stop polling after a failed sample (out of memory) and give the memory back."""
        if self._poller is not None and self._poller._thread is not None:
            self._poller.stop()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
