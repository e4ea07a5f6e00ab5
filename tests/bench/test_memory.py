"""MemoryMeter and the NVML lookup with fake CUDA devices and a fake NVML."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bench_fakes import GIB, FakeCuda, FakeNvml

from vtwcli.bench.memory import MemoryMeter, nvml_handle, pci_bus_id, uuid_of


def test_pci_bus_id_and_uuid_in_nvml_form():
    props = SimpleNamespace(pci_domain_id=0, pci_bus_id=0x3B, pci_device_id=0x1A, uuid="58e2a5d7-aa00")
    assert pci_bus_id(props) == "00000000:3B:1A.0"
    assert uuid_of(props) == "GPU-58e2a5d7-aa00"
    assert uuid_of(SimpleNamespace(uuid="GPU-x")) == "GPU-x"
    assert pci_bus_id(SimpleNamespace()) is None and uuid_of(SimpleNamespace()) is None


def test_nvml_lookup_by_uuid_then_pci_bus_never_by_index():
    nvml = FakeNvml({"GPU-aaaa-0000": 1, "GPU-bbbb-1111": 2})
    props = FakeCuda().props["cuda:1"]
    assert nvml_handle(nvml, props) == ("GPU-bbbb-1111", "uuid GPU-bbbb-1111")
    nvml.uuid_ok = False
    assert nvml_handle(nvml, props) == ("GPU-bbbb-1111", "pci 00000000:5E:00.0")
    with pytest.raises(LookupError, match="pci bus id"):
        nvml_handle(nvml, SimpleNamespace(uuid="zzz", pci_bus_id=0x99, pci_device_id=0))


def test_meter_sums_every_device_and_subtracts_the_model():
    cuda = FakeCuda()
    nvml = FakeNvml({"GPU-aaaa-0000": 5 * GIB, "GPU-bbbb-1111": 3 * GIB})
    meter = MemoryMeter("cuda:0", ["cuda:0", "cuda:1"], backend=cuda, nvml=nvml)
    assert meter.cuda and meter.nvml_available
    assert meter.info()["nvml_devices"] == ["cuda:0: uuid GPU-aaaa-0000", "cuda:1: uuid GPU-bbbb-1111"]
    cuda.alloc("cuda:0", 4 * GIB)  # the model: 4 GiB on the first device, 2 GiB on the second
    cuda.alloc("cuda:1", 2 * GIB)
    meter.record_model()
    assert meter.model_bytes == 6 * GIB and meter.nvml_model_bytes == 8 * GIB
    meter.begin()
    cuda.alloc("cuda:0", 1 * GIB)  # a sample: +1 GiB then freed on cuda:0, +512 MiB kept on cuda:1
    cuda.alloc("cuda:0", -1 * GIB)
    cuda.alloc("cuda:1", GIB // 2)
    nvml.used["GPU-bbbb-1111"] = 4 * GIB
    got = meter.end()
    assert got.peak_bytes == 7 * GIB + GIB // 2  # 5 GiB peak on cuda:0 + 2.5 GiB on cuda:1
    assert got.per_sample_bytes == GIB + GIB // 2
    assert got.nvml_peak_bytes == 9 * GIB and got.nvml_per_sample_bytes == GIB
    # both devices synchronized and reset, not only the first
    assert {"sync cuda:0", "sync cuda:1", "reset cuda:0", "reset cuda:1"} <= set(cuda.calls)


def test_meter_reports_why_nvml_is_off():
    cuda = FakeCuda()
    meter = MemoryMeter("cuda:0", ["cuda:0"], backend=cuda, nvml=_Lost())
    assert meter.cuda and not meter.nvml_available and "cannot find cuda:0 in NVML" in meter.nvml_reason
    assert MemoryMeter("cuda:0", backend=cuda, nvml=False).nvml_reason == "pip install nvidia-ml-py"


class _Lost(FakeNvml):
    def __init__(self):
        super().__init__({})
        self.bus = {}


def test_meter_off_cuda_measures_nothing():
    meter = MemoryMeter("cpu", backend=FakeCuda())
    assert not meter.cuda
    meter.record_model()
    meter.begin()
    got = meter.end()
    assert got.peak_bytes is None and got.nvml_per_sample_bytes is None
    assert meter.backend.calls == []
