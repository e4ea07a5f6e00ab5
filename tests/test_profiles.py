import os
from pathlib import Path

import pytest
import yaml

from vtwcli.errors import KOutOfRangeError, OutputPathError, ProfileError
from vtwcli.profiles import ModelRef, Profile, TaskEntry, load_profile, merge_task, save_profile

MODEL = ModelRef(alias="testbed", id="vtwcli/testbed", num_layers=6, architecture="llava")


def _profile(**tasks):
    return Profile(model=MODEL, tasks={k: TaskEntry(k=v) for k, v in tasks.items()}, default_task=None)


def test_round_trip(tmp_path):
    p = save_profile(_profile(shapes=4, pope=3), tmp_path / "p.yaml")
    back = load_profile(p)
    assert back.model == MODEL
    assert back.k_for("shapes") == 4 and back.k_for("pope") == 3


def test_k_out_of_range_is_refused_on_creation():
    with pytest.raises(ProfileError, match=r"outside 1\.\.6"):
        _profile(shapes=7)
    with pytest.raises(ProfileError, match=r"outside 1\.\.6"):
        _profile(shapes=0)


def test_check_model_layers_refuses_profile_for_bigger_model(tmp_path):
    prof = Profile(
        model=ModelRef(alias="llava-1.5-7b", id="llava-hf/llava-1.5-7b-hf", num_layers=32),
        tasks={"sqa": TaskEntry(k=16, source="paper")},
    )
    with pytest.raises(KOutOfRangeError, match="has 6 decoder layers"):
        prof.check_model_layers(6)


def test_merge_keeps_other_tasks(tmp_path):
    path = tmp_path / "testbed.yaml"
    merge_task(path, MODEL, "shapes", TaskEntry(k=4))
    merge_task(path, MODEL, "pope", TaskEntry(k=3))
    merge_task(path, MODEL, "shapes", TaskEntry(k=5))
    prof = load_profile(path)
    assert {n: e.k for n, e in prof.tasks.items()} == {"shapes": 5, "pope": 3}
    assert prof.default_task == "shapes"


def test_merge_refuses_other_model(tmp_path):
    path = tmp_path / "p.yaml"
    merge_task(path, MODEL, "shapes", TaskEntry(k=4))
    other = ModelRef(alias="qwen2-vl-2b", id="Qwen/Qwen2-VL-2B-Instruct", num_layers=28)
    with pytest.raises(ProfileError, match="belongs to model 'testbed'"):
        merge_task(path, other, "sqa", TaskEntry(k=18))


def test_crash_mid_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    merge_task(path, MODEL, "shapes", TaskEntry(k=4))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputPathError, match="simulated"):
        merge_task(path, MODEL, "pope", TaskEntry(k=3))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]  # no temporary left behind


@pytest.mark.parametrize(
    "text, match",
    [
        ("a: [unclosed", "not valid YAML"),
        ("- 1\n- 2\n", "does not hold a YAML mapping"),
        ("kind: something-else\n", "not a vtw profile"),
        ("kind: vtw-profile\nschema_version: 99\nmodel: {id: x, num_layers: 4}\ntasks: {t: {k: 2}}\n", "schema_version"),
        ("kind: vtw-profile\nmodel: {id: x}\ntasks: {t: {k: 2}}\n", "missing num_layers"),
        ("kind: vtw-profile\nmodel: {id: x, num_layers: 4}\ntasks: {t: {kk: 2}}\n", "mapping with a `k`"),
    ],
)
def test_malformed_profiles(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile(path)


def test_missing_profile_says_how_to_create(tmp_path):
    with pytest.raises(ProfileError, match="vtw calibrate"):
        load_profile(Path(tmp_path) / "nope.yaml")


def test_yaml_is_plain(tmp_path):
    p = save_profile(_profile(shapes=4), tmp_path / "p.yaml")
    data = yaml.safe_load(p.read_text())
    assert data["kind"] == "vtw-profile" and data["tasks"]["shapes"]["k"] == 4
