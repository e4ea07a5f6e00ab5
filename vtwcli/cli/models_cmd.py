"""`vtw models`: the registered aliases, their hub ids, shapes, and whether weights are cached."""

from __future__ import annotations

import typer

EXAMPLES = """
Examples:

  vtw models

  vtw models --json models.json

  vtw models --families                 every architecture: verified or refused, and why

Weights marked "no" can still be benchmarked by shape: vtw bench --model llava-1.5-7b --random-init
"""


def register(app: typer.Typer) -> None:
    @app.command(
        "models",
        help="List model aliases, hub ids, layer counts, local cache state and each family's status "
        "(verified by the conformance suite, or refused and why).\n\n" + EXAMPLES,
    )
    def models_command(
        as_json: str = typer.Option(
            None, "--json", help="Write the list as JSON to this file ('-' for stdout) instead of a table."
        ),
        families: bool = typer.Option(
            False, "--families", help="List every architecture family (model_type) instead of the aliases."
        ),
    ) -> None:
        _list(as_json, families)


def _list(as_json: str | None, families: bool = False) -> None:
    import json

    from vtwcli.fileio import check_writable, write_atomic
    from vtwcli.models.catalog import family_rows, model_rows

    check_writable(as_json, "json", example="models.json")
    rows = family_rows() if families else model_rows()
    if as_json == "-":
        typer.echo(json.dumps(rows, indent=2))
        return
    if as_json is not None:
        write_atomic(as_json, json.dumps(rows, indent=2) + "\n")
        typer.echo(f"wrote json to {as_json}", err=True)
        return
    if families:
        _print_families(rows)
        return
    from rich.table import Table

    from vtwcli.cli import console as make_console

    table = Table(title="vtw models (alias -> checkpoint)")
    for col, kw in (
        ("alias", {"style": "bold"}),
        ("hub id", {"no_wrap": True}),
        ("architecture", {}),
        ("status", {}),
        ("layers", {"justify": "right"}),
        ("hidden", {"justify": "right"}),
        ("vision tokens", {"justify": "right"}),
        ("cached", {}),
    ):
        table.add_column(col, **kw)
    for r in rows:
        names = r["alias"] + (f" ({', '.join(r['other_names'])})" if r["other_names"] else "")
        table.add_row(
            names,
            r["hub_id"],
            r["model_type"],
            r["status"],
            str(r["num_layers"]),
            str(r["hidden_size"]),
            str(r["vision_tokens_per_image"]),
            r["cached"],
        )
    console = make_console()
    console.print(table)
    for r in rows:
        if r.get("note"):
            console.print(f"[dim]{r['alias']}: {r['note']}[/dim]")
        if r.get("status_reason"):
            console.print(f"[dim]{r['alias']}: {r['status']}: {r['status_reason']}[/dim]")
    console.print("[dim]status: verified = withdrawal checked against the unmodified model by the conformance suite; "
                  "`vtw models --families` lists every architecture.[/dim]")
    console.print("[dim]Any hub id (owner/name) or local directory works too; --random-init needs no weights.[/dim]")


def _print_families(rows) -> None:
    from rich.table import Table

    from vtwcli.cli import console as make_console

    table = Table(title="vtw models --families (architectures vtw knows)")
    for col in ("family", "model_type", "status", "aliases", "why refused / notes"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["family"], r["model_type"], r["status"], ", ".join(r["aliases"]) or "-", r["reason"] or r["notes"] or ""
        )
    console = make_console()
    console.print(table)
    verified = sum(r["status"] == "verified" for r in rows)
    console.print(f"[dim]{verified} of {len(rows)} families verified; a refused family is refused with its reason "
                  "(exit 2), never run unchecked.[/dim]")
