"""Profiles: K per model x task, saved as YAML.

A profile names one model and holds one entry per task (K and how it was found: the KL
curve behind it, or the paper it was taken from). :func:`load_profile` validates on load and
collects every problem before reporting; :func:`save_profile` replaces the file atomically
(write a temporary file beside it, fsync, rename), so an interrupted write leaves the old
file intact; :func:`merge_task` adds or replaces one task's entry and keeps all others.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtwcli.errors import KOutOfRangeError, ProfileError
from vtwcli.fileio import write_atomic

SCHEMA_VERSION = 1
KIND = "vtw-profile"
KNOWN_METHODS = ("vtw", "fastv", "fastv-mask", "rand", "baseline")


@dataclass
class ModelRef:
    """Which model a profile belongs to."""

    alias: str | None
    id: str
    num_layers: int
    architecture: str | None = None
    revision: str | None = None

    def same_model(self, other: ModelRef) -> bool:
        if self.alias and other.alias:
            return self.alias == other.alias
        return self.id == other.id


@dataclass
class TaskEntry:
    """K for one task, and where it came from."""

    k: int
    method: str = "vtw"
    source: str = "calibrated"  # "calibrated" (by vtw calibrate) or "paper" (copied from a publication)
    note: str | None = None
    # Calibration record (present when source == "calibrated"); free-form beyond these keys.
    calibration: dict[str, Any] = field(default_factory=dict)


@dataclass
class Profile:
    model: ModelRef
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    default_task: str | None = None
    schema_version: int = SCHEMA_VERSION
    note: str | None = None
    path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ProfileError(_join(problems, self.path))

    # -- validation -----------------------------------------------------------------
    def problems(self) -> list[str]:
        out: list[str] = []
        if self.schema_version != SCHEMA_VERSION:
            out.append(
                f"schema_version {self.schema_version!r} is not supported (this vtw reads {SCHEMA_VERSION})"
            )
        n = self.model.num_layers
        if not isinstance(n, int) or n < 1:
            out.append(f"model.num_layers must be a positive integer, got {n!r}")
            n = None
        if not self.tasks:
            out.append("the profile has no tasks")
        for name, entry in self.tasks.items():
            if not isinstance(entry.k, int) or isinstance(entry.k, bool):
                out.append(f"tasks.{name}.k must be an integer, got {entry.k!r}")
            elif n is not None and not 1 <= entry.k <= n:
                out.append(f"tasks.{name}.k = {entry.k} is outside 1..{n} for a {n}-layer model")
            if entry.method not in KNOWN_METHODS:
                out.append(f"tasks.{name}.method {entry.method!r} is not one of {', '.join(KNOWN_METHODS)}")
            if entry.source not in ("calibrated", "paper", "manual"):
                out.append(f"tasks.{name}.source {entry.source!r} must be calibrated, paper or manual")
        if self.default_task is not None and self.default_task not in self.tasks:
            out.append(f"default_task {self.default_task!r} has no entry under tasks")
        return out

    def check_model_layers(self, num_layers: int) -> None:
        """Refuse a profile whose K values do not fit a model with ``num_layers`` layers."""
        for name, entry in self.tasks.items():
            if not 1 <= entry.k <= num_layers:
                raise KOutOfRangeError(
                    f"profile {self.path or ''} sets K={entry.k} for task {name!r}, but the loaded model "
                    f"has {num_layers} decoder layers (K must be in 1..{num_layers}); "
                    "is this profile for another model?"
                )

    # -- lookups --------------------------------------------------------------------
    def entry(self, task: str | None = None) -> tuple[str, TaskEntry]:
        """The entry for ``task``, else the default task's, else the only one."""
        if task is not None:
            if task not in self.tasks:
                known = ", ".join(sorted(self.tasks))
                raise ProfileError(
                    f"profile {self.path or ''} has no K for task {task!r} (it has: {known}); "
                    f"run `vtw calibrate --data {task}` to add it"
                )
            return task, self.tasks[task]
        if self.default_task is not None:
            return self.default_task, self.tasks[self.default_task]
        name = sorted(self.tasks)[0]
        return name, self.tasks[name]

    def k_for(self, task: str | None = None) -> int:
        return self.entry(task)[1].k

    # -- (de)serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        tasks = {}
        for name, e in self.tasks.items():
            d: dict[str, Any] = {"k": e.k, "method": e.method, "source": e.source}
            if e.note:
                d["note"] = e.note
            if e.calibration:
                d["calibration"] = e.calibration
            tasks[name] = d
        out: dict[str, Any] = {
            "kind": KIND,
            "schema_version": self.schema_version,
            "model": {k: v for k, v in dataclasses.asdict(self.model).items() if v is not None},
        }
        if self.note:
            out["note"] = self.note
        if self.default_task is not None:
            out["default_task"] = self.default_task
        out["tasks"] = tasks
        return out

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> Profile:
        problems: list[str] = []
        if not isinstance(data, dict):
            raise ProfileError(_join(["the file does not hold a YAML mapping"], path))
        if data.get("kind") != KIND:
            raise ProfileError(
                _join([f"it is not a vtw profile (expected `kind: {KIND}`, found {data.get('kind')!r})"], path)
            )
        model = data.get("model")
        model_ref = None
        if not isinstance(model, dict):
            problems.append("missing `model` mapping (alias, id, num_layers)")
        else:
            missing = [k for k in ("id", "num_layers") if k not in model]
            if missing:
                problems.append(f"model is missing {', '.join(missing)}")
            else:
                unknown = set(model) - {f.name for f in dataclasses.fields(ModelRef)}
                if unknown:
                    problems.append(f"model has unknown keys {sorted(unknown)}")
                else:
                    model_ref = ModelRef(**{"alias": None, **model})
        tasks: dict[str, TaskEntry] = {}
        raw_tasks = data.get("tasks")
        if not isinstance(raw_tasks, dict) or not raw_tasks:
            problems.append("missing `tasks` mapping (task name -> {k: ...})")
        else:
            for name, raw in raw_tasks.items():
                if not isinstance(raw, dict) or "k" not in raw:
                    problems.append(f"tasks.{name} must be a mapping with a `k`")
                    continue
                unknown = set(raw) - {f.name for f in dataclasses.fields(TaskEntry)}
                if unknown:
                    problems.append(f"tasks.{name} has unknown keys {sorted(unknown)}")
                    continue
                tasks[str(name)] = TaskEntry(**raw)
        if problems or model_ref is None:
            raise ProfileError(_join(problems, path))
        return cls(
            model=model_ref,
            tasks=tasks,
            default_task=data.get("default_task"),
            schema_version=data.get("schema_version", SCHEMA_VERSION),
            note=data.get("note"),
            path=path,
        )


def _join(problems: list[str], path: Path | None) -> str:
    where = f"profile {path}: " if path else "profile: "
    return where + "; ".join(problems)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile; every problem becomes a ProfileError naming the file."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ProfileError(f"profile {p} does not exist; run `vtw calibrate --out {p}` to create one")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(f"profile {p} cannot be read: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"profile {p} is not valid YAML{where}; fix or delete it") from err
    return Profile.from_dict(data, path=p)


def save_profile(profile: Profile, path: str | os.PathLike) -> Path:
    """Write ``profile`` to ``path`` atomically: the old file stays intact until the new one is whole."""
    import yaml

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = "# vtw profile: K per model x task (written by vtw; edit with care)\n" + yaml.safe_dump(
        profile.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    try:
        unchanged = p.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:  # the same content is not rewritten (the file keeps its time stamp)
        write_atomic(p, text)
    profile.path = p
    return p


def merge_task(
    path: str | os.PathLike, model: ModelRef, task: str, entry: TaskEntry, make_default: bool = False
) -> Profile:
    """Add or replace ``task`` in the profile at ``path`` (created if absent); other tasks are kept.

    Refuses (ProfileError) when the existing file belongs to another model or is not a profile.
    """
    p = Path(path)
    if p.exists():
        existing = load_profile(p)
        if not existing.model.same_model(model):
            raise ProfileError(
                f"profile {p} belongs to model {existing.model.alias or existing.model.id!r}, not "
                f"{model.alias or model.id!r}; choose another file with --out"
            )
        tasks = dict(existing.tasks)
        tasks[task] = entry
        default = task if (make_default or existing.default_task is None) else existing.default_task
        merged = Profile(model=model, tasks=tasks, default_task=default, note=existing.note, path=p)
    else:
        merged = Profile(model=model, tasks={task: entry}, default_task=task, path=p)
    save_profile(merged, p)
    return merged


def default_profile_path(model_name: str | None) -> Path | None:
    """``profiles/<name>.yaml`` under the working directory for a registered model (or the
    testbed), where `vtw calibrate` writes by default; None when there is no such file.

    `vtw bench` and `vtw run` use it when neither --k nor --profile is given, so a calibration
    is picked up by the next command without naming the file."""
    from vtwcli.errors import VTWError
    from vtwcli.models.registry import profile_stem, resolve

    try:
        alias = resolve(model_name).alias
    except VTWError:
        return None
    if alias is None:
        return None
    path = Path("profiles") / f"{profile_stem(alias)}.yaml"
    return path if path.is_file() else None
