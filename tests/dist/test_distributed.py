"""Data-parallel helpers, run for real under torchrun with the gloo backend on CPU."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from vtwcli.distributed import DistContext, RankFailedError, run_sharded


def test_shards_are_disjoint_and_cover_everything():
    items = list(range(23))
    for world in (1, 2, 3, 8):
        shares = [DistContext(rank=r, world_size=world).shard(items) for r in range(world)]
        flat = sorted(x for s in shares for x in s)
        assert flat == items
        assert sum(len(s) for s in shares) == len(items)


def test_single_process_runs_work_and_reraises():
    ctx = DistContext()
    assert run_sharded(ctx, lambda: 5) == [5]
    with pytest.raises(ZeroDivisionError):
        run_sharded(ctx, lambda: 1 / 0)


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from vtwcli.distributed import context, run_sharded, RankFailedError
    ctx = context(timeout_s=60)
    def work():
        if os.environ.get("FAIL_RANK") == str(ctx.rank):
            raise MemoryError("simulated out of memory")
        return {"rank": ctx.rank, "items": ctx.shard(list(range(7)))}
    try:
        out = run_sharded(ctx, work)
    except RankFailedError as err:
        print(f"rank {ctx.rank} saw: {err}", file=sys.stderr)
        sys.exit(2)
    if ctx.is_main:
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh)
    """
)


def _torchrun(tmp_path, env_extra):
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", str(script), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    return proc, out


def test_torchrun_gathers_every_rank_once(tmp_path):
    proc, out = _torchrun(tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = json.loads(out.read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    assert sorted(x for r in ranks for x in r["items"]) == list(range(7))


def test_a_failing_rank_ends_the_run_with_a_clear_message(tmp_path):
    proc, out = _torchrun(tmp_path, {"FAIL_RANK": "1"})
    assert proc.returncode != 0
    assert "rank 1: MemoryError: simulated out of memory" in proc.stderr
    assert not out.exists()


def test_rank_failed_error_is_a_user_facing_error():
    from vtwcli.errors import VTWError

    assert issubclass(RankFailedError, VTWError)
