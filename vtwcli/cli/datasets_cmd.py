"""`vtw datasets`: the benchmark tasks, where their data comes from, and what this machine has."""

from __future__ import annotations

import json

import typer


def collect(check_path: str | None = None, task: str | None = None) -> list[dict]:
    """One entry per task: sources, expected size, and what the local caches hold (no network)."""
    from vtwcli.data import list_tasks
    from vtwcli.data.loading import cache_status
    from vtwcli.data.registry import get_task

    rows = []
    for spec in list_tasks():
        if task is not None and spec.name != task:
            continue
        entry = {
            "task": spec.name,
            "lmms_eval_task": spec.lmms_eval,
            "description": spec.description,
            "hub_ids": list(spec.location.hub_ids) if spec.location else [],
            "config": spec.location.config if spec.location else None,
            "split": spec.location.split if spec.location else None,
            "rows": spec.rows,
            "metrics": [m for m, _ in spec.metrics],
            "local": [],
        }
        if spec.location is None:
            entry["status"] = "bundled (generated)"
        else:
            found = [cache_status(h, spec.location.config, spec.location.split) for h in spec.location.hub_ids]
            entry["local"] = found
            cached = [f for f in found if f["cached"]]
            files = [f for f in found if f.get("hub_files")]
            if cached:
                entry["status"] = f"cached: {cached[0]['hub_id']} ({cached[0]['rows']} rows)"
            elif files:
                entry["status"] = f"hub files only: --data-path {files[0]['where']}"
            else:
                entry["status"] = "not cached"
        if check_path is not None:
            try:
                loaded = get_task(spec.name, path=check_path)
                entry["status"] = f"found at {check_path}: {len(loaded)} rows"
                entry["source"] = loaded.source.to_dict()
            except Exception as err:  # report, do not stop: this is a survey
                entry["status"] = f"not usable at {check_path}: {err}"
        rows.append(entry)
    return rows


def register(app: typer.Typer) -> None:
    @app.command("datasets")
    def datasets_command(
        as_json: str = typer.Option(
            None, "--json", help="Write the list as JSON to this file ('-' for stdout) instead of a table."
        ),
        task: str = typer.Option(None, "--task", "-t", help="Show only this task."),
        data_path: str = typer.Option(
            None, "--data-path", help="Check that this local copy (directory or file) loads for --task."
        ),
    ) -> None:
        """List the benchmark tasks, their hub sources, sizes and whether this machine has the data.

        Nothing is downloaded: the local datasets cache is inspected as it is. Also usable:
        `--data jsonl:PATH` (your own questions) in calibrate and bench; see docs/datasets.md.

        Example:

          vtw datasets

          vtw datasets --task mme --data-path ./mme_copy --json -
        """
        from vtwcli.data.registry import TASKS, _unknown
        from vtwcli.errors import UsageError

        if task is not None and task not in TASKS:
            raise _unknown(task)
        if data_path is not None and task is None:
            raise UsageError("--data-path needs --task to say which schema to check it against")
        from vtwcli.fileio import check_writable, write_atomic

        check_writable(as_json, "json", example="datasets.json")
        rows = collect(data_path, task)
        if as_json == "-":
            typer.echo(json.dumps(rows, indent=2))
            return
        if as_json is not None:
            write_atomic(as_json, json.dumps(rows, indent=2) + "\n")
            typer.echo(f"wrote json to {as_json}", err=True)
            return
        from rich.table import Table

        from vtwcli.cli import console as make_console

        table = Table(title="vtw benchmark tasks", show_lines=False)
        # metric names are in --json and docs/datasets.md: they would make the table too wide
        for col in ("task", "lmms-eval task", "hub ids (old, new)", "config/split", "rows", "local data"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                r["task"],
                r["lmms_eval_task"],
                "\n".join(r["hub_ids"]) or "-",
                f"{r['config'] or 'default'}/{r['split']}" if r["split"] else "-",
                str(r["rows"]) if r["rows"] else "-",
                r["status"],
            )
        make_console().print(table)
        typer.echo("Own data: --data jsonl:PATH (one JSON object per line: image, question, answer). "
                   "Hub datasets are gated; see docs/datasets.md for offline use.")
