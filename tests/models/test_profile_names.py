from pathlib import Path

from vtwcli.models import SPECS
from vtwcli.models.registry import profile_stem
from vtwcli.profiles import load_profile

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def test_each_shipped_profile_is_named_by_its_alias():
    # calibrate merges into profiles/<stem>.yaml: the shipped file of the same model
    for alias in SPECS:
        path = PROFILES / f"{profile_stem(alias)}.yaml"
        if path.exists():
            assert load_profile(path).model.alias == alias
    assert profile_stem("testbed") == "testbed"
    assert profile_stem("llava15-7b") == "llava15_7b"
