"""Every profile in profiles/ loads, validates, and fits the model it names."""

import json
from pathlib import Path

import pytest

from vtwcli.models import SPECS, shipped_num_layers
from vtwcli.models.registry import TESTBED_DIR
from vtwcli.profiles import load_profile

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
# K per model as the paper states it (Table 2, Table 3, Table 8, the chatbot appendix).
PAPER_K = {
    "llava15_7b.yaml": ("llava-1.5-7b", 16),
    "llava15_13b.yaml": ("llava-1.5-13b", 20),
    "llava_next_7b.yaml": ("llava-next-7b", 16),
    "qwen2vl_2b.yaml": ("qwen2-vl-2b", 18),
    "internvl2_4b.yaml": ("internvl2-4b", 16),
    "video_llava_7b.yaml": ("video-llava-7b", 16),
}


def test_all_paper_profiles_are_shipped():
    assert set(PAPER_K) <= {p.name for p in PROFILES.glob("*.yaml")}


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profile_is_valid(path):
    prof = load_profile(path)
    if prof.model.alias == "testbed":
        n = json.loads((TESTBED_DIR / "config.json").read_text())["text_config"]["num_hidden_layers"]
    else:
        assert prof.model.alias in SPECS, f"{path.name} names an unregistered alias"
        assert prof.model.id == SPECS[prof.model.alias].hub_id
        n = shipped_num_layers(prof.model.alias)
    assert prof.model.num_layers == n
    prof.check_model_layers(n)
    if path.name in PAPER_K:
        alias, k = PAPER_K[path.name]
        assert prof.model.alias == alias
        assert {e.k for e in prof.tasks.values()} == {k} and prof.k_for() == k
        for entry in prof.tasks.values():
            assert entry.source == "paper" and entry.note == "taken from the paper, not calibrated here"
