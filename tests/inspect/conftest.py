import pytest


@pytest.fixture(autouse=True)
def _empty_cwd(monkeypatch, tmp_path):
    # a profiles/testbed.yaml in the checkout would otherwise supply the K to mark
    monkeypatch.chdir(tmp_path)
