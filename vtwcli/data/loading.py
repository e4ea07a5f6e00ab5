"""Finding a benchmark's table: hub id (old or new), local datasets cache, or a local path.

Every benchmark task goes through :func:`load_table`, whether the rows come from the hub,
the offline cache, a ``save_to_disk`` directory or parquet/json files in the hub layout, so
tests that build a local copy exercise the same code as a user with the real dataset.
``datasets`` is imported inside functions: listing tasks must not pay for it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtwcli.data.base import Source
from vtwcli.errors import DatasetError, UsageError
from vtwcli.hub import hub_reachable

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_LOCAL_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".arrow": "arrow", ".csv": "csv"}


@dataclass(frozen=True)
class HubLocation:
    """Where lmms-eval's copy of a benchmark lives: old id first (most published numbers)."""

    hub_ids: tuple[str, ...]
    config: str | None
    split: str


def datasets_cache_dir() -> Path:
    import datasets

    return Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)))


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.path.expanduser(str(constants.HF_HUB_CACHE)))


def _arrow_cache_dirs(hub_id: str, config: str | None) -> list[Path]:
    """The prepared copies ``datasets`` left in its cache for ``hub_id`` (newest first)."""
    from datasets.naming import camelcase_to_snakecase

    namespace, name = hub_id.split("/", 1)
    root = datasets_cache_dir() / f"{namespace}___{camelcase_to_snakecase(name)}"
    # datasets names the folder <config>/<version>/<commit sha>; "default" when no config
    found = [Path(p) for p in glob.glob(str(root / (config or "default") / "*" / "*")) if Path(p).is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def cache_status(hub_id: str, config: str | None, split: str) -> dict[str, Any]:
    """What this machine holds of ``hub_id`` without touching the network."""
    status: dict[str, Any] = {"hub_id": hub_id, "cached": False, "rows": None, "revision": None, "where": None}
    for folder in _arrow_cache_dirs(hub_id, config):
        info_file = folder / "dataset_info.json"
        if not info_file.exists():
            continue
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        splits = info.get("splits") or {}
        if split in splits:
            status.update(cached=True, rows=splits[split].get("num_examples"), revision=folder.name, where=str(folder))
            return status
    namespace, name = hub_id.split("/", 1)
    snapshots = hub_cache_dir() / f"datasets--{namespace}--{name}" / "snapshots"
    if snapshots.is_dir():
        snaps = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        if snaps:
            # Raw hub files, not a prepared table: datasets will not find them offline by
            # name, but they load as a local directory.
            status.update(where=str(snaps[0]), revision=snaps[0].name, hub_files=True)
    return status


def _split_revision(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        ref, rev = ref.split("@", 1)
        return ref, rev or None
    return ref, None


def _revision_from_cache_files(ds) -> str | None:
    # A hub load lands in <cache>/<ns>___<name>/<config>/<version>/<commit sha>/...
    for entry in getattr(ds, "cache_files", None) or []:
        parent = Path(entry.get("filename", "")).parent.name
        if re.fullmatch(r"[0-9a-f]{40}", parent):
            return parent
    return None


def _download_help(task: str, loc: HubLocation) -> str:
    first = loc.hub_ids[0]
    cfg = f", {loc.config!r}" if loc.config else ""
    return (
        f"The hub datasets are gated: on a machine with internet, accept the terms at "
        f"https://huggingface.co/datasets/{first}, log in with `hf auth login`, then either run "
        f"`python -c \"import datasets; datasets.load_dataset('{first}'{cfg}, split='{loc.split}')\"` "
        f"(fills the local cache; copy {datasets_cache_dir()} to this machine and use HF_HUB_OFFLINE=1) "
        f"or save a copy with `.save_to_disk('{task}_data')` and pass --data-path {task}_data."
    )


@contextlib.contextmanager
def _offline():
    """Offline mode for one load: datasets and huggingface_hub read these flags at call time."""
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _load_hub(task: str, loc: HubLocation, ids: list[str], split: str, revision: str | None,
              prefer_cache: bool = True):
    import datasets

    cached = {i for i in ids if _arrow_cache_dirs(i, loc.config)}
    # A copy this machine already has is used as is (its revision is recorded), so offline use
    # needs no flag and a rerun reads the same data; an explicit hub id asks the hub first.
    ids = sorted(ids, key=lambda i: i not in cached)
    online = hub_reachable()
    problems = [] if online else ["the hub is not reachable from this machine (or HF_HUB_OFFLINE is set)"]
    for hub_id in ids:
        use_cache = hub_id in cached and (prefer_cache or not online) and revision is None
        if not use_cache and not online:
            continue
        try:
            with _offline() if use_cache else contextlib.nullcontext():
                ds = datasets.load_dataset(hub_id, loc.config, split=split, revision=revision)
        except ValueError as err:
            text = str(err)
            if "split" in text.lower() and "unknown" in text.lower():
                raise DatasetError(f"{hub_id} has no split {split!r} ({text}); pass --split with one of those") from err
            problems.append(f"{hub_id}: {text.splitlines()[0] if text else type(err).__name__}")
            continue
        except Exception as err:  # network, gated, not cached: all mean "not available here"
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            problems.append(f"{hub_id}: {text}")
            continue
        return ds, hub_id
    raise DatasetError(
        f"no data for task {task!r}: {' and '.join(ids)} (config {loc.config or 'default'}, split {split}) "
        f"are neither in the local datasets cache ({datasets_cache_dir()}) nor downloadable from here "
        f"({'; '.join(problems)}). {_download_help(task, loc)}"
    )


def _readme_configs(folder: Path) -> list[str]:
    readme = folder / "README.md"
    if not readme.exists():
        return []
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return []
    header = text.split("---", 2)[1]
    return re.findall(r"^\s*-?\s*config_name:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", header, flags=re.M)


def _load_local(task: str, path: Path, loc: HubLocation, split: str):
    import datasets

    if path.is_file():
        builder = _LOCAL_SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise DatasetError(
                f"{path} is not a dataset file vtw can read (use .parquet, .json, .jsonl, .arrow or .csv, "
                f"or a directory made by save_to_disk)"
            )
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as err:
            raise DatasetError(f"cannot read {path} as a {builder} table: {err}") from err
    if (path / "dataset_dict.json").exists():
        saved = datasets.load_from_disk(str(path))
        if split not in saved:
            raise DatasetError(
                f"{path} has no split {split!r} (it has: {', '.join(saved.keys())}); pass --split with one of those"
            )
        return saved[split]
    if (path / "state.json").exists():
        return datasets.load_from_disk(str(path))  # a single saved split: whatever it is, it is what was asked
    kwargs: dict[str, Any] = {}
    configs = _readme_configs(path)
    if loc.config and loc.config in configs:
        kwargs["name"] = loc.config
    elif loc.config and (path / loc.config).is_dir():
        kwargs["data_dir"] = loc.config
    try:
        return datasets.load_dataset(str(path), split=split, **kwargs)
    except ValueError as err:
        text = str(err)
        if "split" in text.lower():
            raise DatasetError(f"{path} has no split {split!r}: {text}. Pass --split with one of those") from err
        raise DatasetError(f"cannot read {path} as the {task} dataset: {text}") from err
    except FileNotFoundError as err:
        raise DatasetError(
            f"{path} holds no data files datasets can read (expected a save_to_disk folder or "
            f"parquet/json files in the hub layout): {err}"
        ) from err


def load_table(task: str, loc: HubLocation, path: str | os.PathLike | None, split: str | None,
               required: tuple[str, ...]):
    """Load the split, check its fields, and say what was loaded."""
    split = split or loc.split
    if path is None:
        ds, hub_id = _load_hub(task, loc, list(loc.hub_ids), split, None)
        source = Source(dataset_id=hub_id, config=loc.config, split=split, revision=_revision_from_cache_files(ds))
        where = hub_id
    else:
        local = Path(os.fspath(path)).expanduser()
        if local.exists():
            ds = _load_local(task, local, loc, split)
            source = Source(dataset_id=loc.hub_ids[0], config=loc.config, split=split, path=str(local.resolve()),
                            fingerprint=getattr(ds, "_fingerprint", None))
            where = str(local)
        elif _HUB_ID.match(os.fspath(path)):
            hub_id, revision = _split_revision(os.fspath(path))
            ds, hub_id = _load_hub(task, loc, [hub_id], split, revision, prefer_cache=False)
            source = Source(dataset_id=hub_id, config=loc.config, split=split,
                            revision=_revision_from_cache_files(ds) or revision)
            where = hub_id
        else:
            raise DatasetError(
                f"--data-path {path}: no such file or directory, and not a hub id (owner/name[@revision])"
            )
    missing = [f for f in required if f not in ds.column_names]
    if missing:
        raise DatasetError(
            f"{where} does not have the {task} schema: missing field(s) {', '.join(missing)} "
            f"(it has: {', '.join(ds.column_names) or 'no fields'}). Expected the fields of "
            f"{loc.hub_ids[0]}{' config ' + loc.config if loc.config else ''}, split {loc.split}."
        )
    source.rows_available = len(ds)
    return ds, source


def check_count(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"--{name} must be a whole number of at least 1 (got {value!r})")
    return value


ORDERS = ("random", "first")


def check_order(order: str | None) -> str:
    if order not in ORDERS:
        raise UsageError(
            f"--subset must be 'random' (a seeded sample, stratified by category) or 'first' "
            f"(the first N rows, lmms-eval's --limit), got {order!r}"
        )
    return order


def select_rows(
    n: int,
    limit: int | None,
    subset: int | None,
    seed: int,
    *,
    order: str = "first",
    groups: list[Any] | None = None,
    strata: list[Any] | None = None,
    group_what: str = "",
    strata_what: str = "",
) -> tuple[list[int], str]:
    """Row indices to use, in table order, and a line saying how they were chosen.

    ``order="first"``: ``limit`` keeps the first N rows (lmms-eval's ``--limit``), then
    ``subset`` (library only) draws a seeded sample of N of them. ``order="random"``: ``limit``
    rows drawn with ``seed``, stratified by ``strata`` (one label per row, e.g. MME's subtask
    or POPE's sampling) in proportion to each stratum's size, and never splitting a group
    (one key per row: an MME image's two questions, an MMBench question's circular copies);
    the selection then holds at most ``limit`` rows.
    """
    limit, subset = check_count("limit", limit), check_count("subset", subset)
    check_order(order)
    if order == "random" and limit is not None and limit < n:
        indices = stratified_sample(n, limit, seed, groups=groups, strata=strata)
        how = f"random {len(indices)} of {n} (seed {seed})"
        if strata is not None:
            how += f", stratified by {strata_what or 'category'} ({len(set(strata))} strata)"
        if groups is not None:
            how += f", {group_what or 'groups'} kept together"
    else:
        indices = list(range(n if limit is None else min(limit, n)))
        how = "all" if limit is None or limit >= n else f"first {len(indices)}"
    if subset is not None:
        pool = len(indices)
        indices = sorted(random.Random(seed).sample(indices, min(subset, pool)))
        how = f"random {len(indices)} of {how if limit is not None else pool} (seed {seed})"
    return indices, how


def stratified_sample(
    n: int, limit: int, seed: int, *, groups: list[Any] | None = None, strata: list[Any] | None = None
) -> list[int]:
    """At most ``limit`` of ``n`` rows: whole groups, each stratum in proportion to its size.

    Each stratum's quota is its share of ``limit`` (largest remainders get the leftover rows);
    its groups are taken in a seeded random order while they fit the quota; rows still left
    (a group too big for its stratum's remainder) go, in a seeded order over all strata, to
    the next groups that fit. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    group_of = groups if groups is not None else list(range(n))
    stratum_of = strata if strata is not None else [None] * n
    members: dict[Any, list[int]] = {}
    group_stratum: dict[Any, Any] = {}
    for i in range(n):
        key = group_of[i]
        members.setdefault(key, []).append(i)
        group_stratum.setdefault(key, stratum_of[i])
    by_stratum: dict[Any, list[Any]] = {}
    for key in members:  # first-seen order: the table's order, so the draw does not depend on hashing
        by_stratum.setdefault(group_stratum[key], []).append(key)
    rows_in = {s: sum(len(members[g]) for g in keys) for s, keys in by_stratum.items()}
    exact = {s: limit * rows_in[s] / n for s in by_stratum}
    quota = {s: int(exact[s]) for s in by_stratum}
    leftover = limit - sum(quota.values())
    for s in sorted(by_stratum, key=lambda s: (-(exact[s] - quota[s]), str(s)))[:leftover]:
        quota[s] += 1
    queues = {}
    for s, keys in by_stratum.items():
        shuffled = list(keys)
        rng.shuffle(shuffled)
        queues[s] = shuffled
    chosen: list[int] = []
    taken = dict.fromkeys(by_stratum, 0)
    for s, queue in queues.items():
        rest = []
        for key in queue:
            size = len(members[key])
            if taken[s] + size <= quota[s]:
                chosen += members[key]
                taken[s] += size
            else:
                rest.append(key)
        queues[s] = rest
    budget = limit - len(chosen)
    pool = [key for queue in queues.values() for key in queue]
    rng.shuffle(pool)
    for key in pool:
        size = len(members[key])
        if size <= budget:
            chosen += members[key]
            budget -= size
    return sorted(chosen)


def is_missing(value: Any) -> bool:
    """Null, NaN, the string "nan" (pandas' export of a null) or blank."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and (value.strip() == "" or value.strip().lower() == "nan")
