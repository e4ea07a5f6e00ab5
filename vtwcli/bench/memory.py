"""Device memory per sample: torch's allocator and, where available, NVML for the whole device.

The paper's Table 4 reports per-sample memory as the peak during one sample minus what the
loaded model occupies. Here ``model_bytes`` is the allocator's figure after the model is loaded
and has run (so lazily created buffers are included). Memory is measured in its own runs,
never in a timed one: emptying the cache, resetting the peak and polling NVML all cost time,
and the method that allocates most would pay most. With a device map every device the model
spans is measured and the figures are summed.

NVML sees what the whole device holds (every process, the CUDA context, the allocator's
reserved but unused blocks), so its figures are higher; its peak comes from a background
thread polling every 2 ms while the sample runs, so a spike shorter than that can be missed.
NVML numbers devices its own way (by PCI bus, ignoring ``CUDA_VISIBLE_DEVICES``), so each
CUDA device is looked up by its UUID or PCI bus id, never by its CUDA index.
On CPU neither exists: the fields are None and the table says n/a.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


class TorchCuda:
    """The allocator calls the meter makes (tests substitute a fake device)."""

    def available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def synchronize(self, device) -> None:
        import torch

        torch.cuda.synchronize(device)

    def empty_cache(self) -> None:
        import torch

        torch.cuda.empty_cache()

    def reset_peak(self, device) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(device)

    def max_allocated(self, device) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated(device))

    def allocated(self, device) -> int:
        import torch

        return int(torch.cuda.memory_allocated(device))

    def properties(self, device):
        import torch

        return torch.cuda.get_device_properties(device)


def pci_bus_id(props: Any) -> str | None:
    """NVML's ``domain:bus:device.function`` string from torch's device properties."""
    bus = getattr(props, "pci_bus_id", None)
    dev = getattr(props, "pci_device_id", None)
    if bus is None or dev is None:
        return None
    domain = getattr(props, "pci_domain_id", 0) or 0
    return f"{int(domain):08X}:{int(bus):02X}:{int(dev):02X}.0"


def uuid_of(props: Any) -> str | None:
    """NVML's ``GPU-...`` UUID string from torch's device properties."""
    raw = getattr(props, "uuid", None)
    if raw is None:
        return None
    text = str(raw)
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def nvml_handle(nvml: Any, props: Any) -> tuple[Any, str]:
    """The NVML handle of the CUDA device described by ``props``: (handle, how it was found).

    Tries the UUID, then the PCI bus id. Raises LookupError when neither works (NVML's own
    index is never used: it counts every GPU of the node by PCI bus and ignores
    ``CUDA_VISIBLE_DEVICES``, so on a shared node it names another GPU).
    """
    tried = []
    uuid = uuid_of(props)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid), f"uuid {uuid}"
        except Exception as err:  # noqa: BLE001 - NVML raises its own error types
            tried.append(f"uuid {uuid}: {err}")
    bus = pci_bus_id(props)
    if bus is not None:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(bus), f"pci {bus}"
        except Exception as err:  # noqa: BLE001
            tried.append(f"pci bus id {bus}: {err}")
    raise LookupError("; ".join(tried) or "torch reports neither a UUID nor a PCI bus id for the device")


def _import_nvml():
    try:
        import pynvml  # provided by the nvidia-ml-py package (extra "gpu")
    except ImportError:
        return None
    return pynvml


class _NvmlPoller:
    """Polls the summed used memory of ``handles`` every ``interval_s`` in a background thread."""

    def __init__(self, nvml, handles, interval_s: float = 0.002):
        self.nvml, self.handles, self.interval_s = nvml, list(handles), interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def used(self) -> int:
        return sum(int(self.nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.used())
            self._stop.wait(self.interval_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.peak = self.used()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.peak = max(self.peak, self.used())
        return self.peak


@dataclass
class SampleMemory:
    peak_bytes: int | None = None  # allocator peak during the sample (summed over devices)
    per_sample_bytes: int | None = None  # peak minus the loaded model
    nvml_peak_bytes: int | None = None
    nvml_per_sample_bytes: int | None = None


class MemoryMeter:
    """Measures one sample at a time on every CUDA device the model spans; nothing off CUDA.

    ``device``: the model's main device; ``devices``: every device it spans (default: just
    ``device``). ``backend`` and ``nvml`` replace torch.cuda and pynvml (tests use fakes;
    ``nvml=False`` turns NVML off).
    """

    def __init__(self, device: Any, devices: Any = None, *, backend: Any = None, nvml: Any = None):
        import torch

        self.backend = backend or TorchCuda()
        self.device = torch.device(device)
        listed = [torch.device(d) for d in (devices or [self.device])]
        self.devices = [d for d in listed if d.type == "cuda"]
        self.cuda = bool(self.devices) and self.backend.available()
        self.model_bytes: int | None = None
        self.nvml_model_bytes: int | None = None
        self.nvml = None
        self.nvml_reason = "no CUDA device"
        self.nvml_found: list[str] = []
        self._poller: _NvmlPoller | None = None
        if self.cuda:
            self._open_nvml(_import_nvml() if nvml is None else (nvml or None))

    def _open_nvml(self, nvml) -> None:
        if nvml is None:
            self.nvml_reason = "pip install nvidia-ml-py"
            return
        try:
            nvml.nvmlInit()
        except Exception as err:  # noqa: BLE001 - no driver / no permission: NVML is simply unavailable
            self.nvml_reason = f"nvmlInit failed: {err}"
            return
        handles = []
        for dev in self.devices:
            try:
                handle, how = nvml_handle(nvml, self.backend.properties(dev))
            except LookupError as err:
                self.nvml_reason = f"cannot find {dev} in NVML: {err}"
                return
            handles.append(handle)
            self.nvml_found.append(f"{dev}: {how}")
        self.nvml = nvml
        self.nvml_reason = ""
        self._poller = _NvmlPoller(nvml, handles)

    @property
    def nvml_available(self) -> bool:
        return self._poller is not None

    def info(self) -> dict[str, Any]:
        return {
            "cuda": self.cuda,
            "devices": [str(d) for d in self.devices] or [str(self.device)],
            "nvml": self.nvml_available,
            "nvml_devices": list(self.nvml_found) or None,
        }

    def _sync(self) -> None:
        for d in self.devices:
            self.backend.synchronize(d)

    def empty_cache(self) -> None:
        if self.cuda:
            self.backend.empty_cache()

    def record_model(self) -> None:
        """Call once the model is loaded and has run: the reference subtracted per sample."""
        if not self.cuda:
            return
        self._sync()
        self.backend.empty_cache()
        self.model_bytes = sum(self.backend.allocated(d) for d in self.devices)
        if self._poller is not None:
            self.nvml_model_bytes = self._poller.used()

    def begin(self) -> None:
        if not self.cuda:
            return
        self._sync()
        self.backend.empty_cache()
        for d in self.devices:
            self.backend.reset_peak(d)
        if self._poller is not None:
            self._poller.start()

    def end(self) -> SampleMemory:
        if not self.cuda:
            return SampleMemory()
        self._sync()
        peak = sum(self.backend.max_allocated(d) for d in self.devices)
        out = SampleMemory(peak_bytes=peak, per_sample_bytes=peak - (self.model_bytes or 0))
        if self._poller is not None:
            nv_peak = self._poller.stop()
            out.nvml_peak_bytes = nv_peak
            if self.nvml_model_bytes is not None:
                out.nvml_per_sample_bytes = nv_peak - self.nvml_model_bytes
        return out

    def abort(self) -> None:
        """Stop polling after a failed sample (out of memory) and give the memory back."""
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self.cuda:
            self.backend.empty_cache()
