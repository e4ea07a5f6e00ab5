"""Fake CUDA devices and a fake NVML for the memory and timing tests."""

from __future__ import annotations

import threading
from types import SimpleNamespace

GIB = 2**30


class FakeCuda:
    """Two fake GPUs: what is allocated now, the peak since the last reset, every call logged."""

    def __init__(self, props=None):
        self.now = {"cuda:0": 0, "cuda:1": 0}
        self.peak = dict(self.now)
        self.calls: list[str] = []
        self.props = props or {
            "cuda:0": SimpleNamespace(uuid="aaaa-0000", pci_bus_id=0x3B, pci_device_id=0, pci_domain_id=0),
            "cuda:1": SimpleNamespace(uuid="bbbb-1111", pci_bus_id=0x5E, pci_device_id=0, pci_domain_id=0),
        }

    def available(self):
        return True

    def synchronize(self, device):
        self.calls.append(f"sync {device}")

    def empty_cache(self):
        self.calls.append("empty_cache")

    def reset_peak(self, device):
        self.calls.append(f"reset {device}")
        self.peak[str(device)] = self.now[str(device)]

    def max_allocated(self, device):
        self.calls.append(f"max {device}")
        return self.peak[str(device)]

    def allocated(self, device):
        self.calls.append(f"allocated {device}")
        return self.now[str(device)]

    def properties(self, device):
        return self.props[str(device)]

    def alloc(self, device, nbytes):
        self.now[device] += nbytes
        self.peak[device] = max(self.peak[device], self.now[device])


class FakeNvml:
    """NVML numbering GPUs by PCI bus: its index 0 is NOT cuda:0 (CUDA_VISIBLE_DEVICES=2,3 on a 4-GPU node)."""

    def __init__(self, used_by_uuid, *, uuid_ok=True):
        self.used = dict(used_by_uuid)
        self.uuid_ok = uuid_ok
        self.bus = {"00000000:3B:00.0": "GPU-aaaa-0000", "00000000:5E:00.0": "GPU-bbbb-1111"}
        self.lock = threading.Lock()
        self.queries = 0

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        raise AssertionError("NVML's index numbers every GPU of the node; it must not be used")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if not self.uuid_ok or uuid not in self.used:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return uuid

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        if bus not in self.bus:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return self.bus[bus]

    def nvmlDeviceGetMemoryInfo(self, handle):
        with self.lock:
            self.queries += 1
        return SimpleNamespace(used=self.used[handle])
