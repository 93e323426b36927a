"""`kmnist-sweep best | ensemble`: the models a sweep found, out of its stored artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kmnist.backends import SweepInfo, artifact_dir, open_control
from kmnist.cli.console import err_console, stdout_console
from kmnist.cli.options import ARTIFACTS, STORAGE
from kmnist.errors import UserError
from kmnist.results import leaderboard
from kmnist.trainer import artifacts

console = stdout_console(piped_width=160)
HYGIENE = "selected on validation; the test set was scored once per trial"


def stored(sweep_id: str, storage: str | None, root: Path | None) -> tuple[SweepInfo, list]:
    """The sweep's info and its stored artifacts, best first; one line if there are none."""
    sweep = open_control(sweep_id, storage)
    info, records = sweep.info(), sweep.trials()
    best = next((r for r in leaderboard.rank(records, info.goal) if r.state == "completed"), None)
    if best is None:
        raise UserError(f"sweep {sweep_id} has no completed trial yet: run its agents first")
    folder = artifact_dir(sweep_id, storage, root)
    kept, damaged = kept_artifacts(folder, info.goal)
    if not kept:
        why = f"; {len(damaged)} damaged, e.g. {damaged[0]}" if damaged else ""
        raise UserError(
            f"sweep {sweep_id}: no stored trial artifacts in {folder} (agents keep them unless "
            f"--keep-artifacts 0; pass --artifacts DIR if they were kept elsewhere){why}"
        )
    warn(damaged)
    return info, kept


def kept_artifacts(folder: Path, goal: str) -> tuple[list[artifacts.Artifact], list[str]]:
    """The readable trial folders, best first, and a line for each damaged one."""
    damaged: list[str] = []
    return artifacts.ranked(artifacts.load_all(folder, damaged), goal), damaged


def warn(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"warning: {line}", soft_wrap=True)


@click.command()
@click.argument("sweep_id")
@STORAGE
@ARTIFACTS
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Export the best trial here (a new folder: weights, config, probabilities, README).",
)
@click.option("--refit", is_flag=True, help="Retrain its config on all 60k training images.")
@click.option("--device", help="Device for --refit [default: the best available].")
@click.option("--json", "as_json", is_flag=True, help="Print the winner as JSON.")
@click.option(
    "--prefer",
    metavar="METRIC",
    help="The objective to pick the best trial by (a multi-objective sweep needs it or --where).",
)
@click.option(
    "--where",
    "constraints",
    metavar="CONSTRAINT",
    multiple=True,
    help="Only trials whose summary meets it, e.g. 'parameters<100000' (<, <=, >, >=); repeatable.",
)
def best(
    sweep_id: str,
    storage: str | None,
    artifacts_root: Path | None,
    out: Path | None,
    refit: bool,
    device: str | None,
    as_json: bool,
    prefer: str | None,
    constraints: tuple[str, ...],
) -> None:
    """The best trial of SWEEP_ID (by the sweep metric on validation): show, export, refit."""
    from kmnist.results.best import export, summary_json

    if device and not refit:
        raise UserError(f"--device {device}: it is the device for --refit; add --refit or drop it")
    chosen = _choice(sweep_id, storage, prefer, constraints)  # before any file is read
    info, kept = stored(sweep_id, storage, artifacts_root)
    winner = kept[0] if chosen is None else _kept(kept, chosen)
    if out and out.exists():  # before any slow work: nothing is touched
        raise UserError(f"{out}: already exists; name a new folder (nothing was written)")
    if refit:
        from kmnist.agent.device import check as check_device

        device = check_device(device)  # a missing GPU is one line before any export
    if as_json:
        click.echo(summary_json(winner, info.metric))
    else:
        console.print(_winner_table(winner, info))
    if out:
        export(winner, out, sweep_id, info.metric)
        err_console.print(f"exported trial {winner.number} to {out} (see {out}/README.md)")
    if refit:
        _refit(winner.config, device)


def _choice(
    sweep_id: str, storage: str | None, prefer: str | None, constraints: tuple[str, ...]
) -> int | None:
    """The trial the user's --prefer/--where name, or None for the best kept one. A multi-
    objective sweep has no single best: refused without a choice."""
    from kmnist.results.choice import choose, constraint

    control = open_control(sweep_id, storage)
    info = control.info()
    if not (prefer or constraints):
        if info.multi_objective:
            names = ", ".join(name for name, _ in info.objectives)
            raise UserError(
                f"sweep {sweep_id} has {len(info.objectives)} objectives ({names}): no single "
                "best; choose with --prefer METRIC and/or --where 'parameters<100000'"
            )
        return None
    wanted = [constraint(text) for text in constraints]
    objectives = info.objectives or [(info.metric, info.goal)]
    return choose(control.trials(), objectives, prefer, wanted).number


def _kept(kept: list[artifacts.Artifact], number: int) -> artifacts.Artifact:
    found = [a for a in kept if a.number == number]
    if not found:
        raise UserError(
            f"trial {number} is the one chosen, but its files were not kept "
            "(agents keep the best --keep-artifacts trials by the first objective)"
        )
    return found[0]


def _winner_table(winner: artifacts.Artifact, info: SweepInfo) -> Table:
    table = Table(title=f"{info.sweep_id}: best trial {winner.number}", caption=HYGIENE)
    table.add_column("key")
    table.add_column("value", justify="right")
    table.add_row(info.metric, _fmt(winner.value))
    table.add_row("test/accuracy", _fmt(winner.summary.get("test/accuracy")))
    for key, value in winner.config.items():
        table.add_row(key, str(value))
    return table


def _refit(config: dict, device: str | None) -> None:
    from kmnist.trainer import train

    err_console.print(f"refit: {config['model']} on all 60k training images ...")
    result = train.run(config, device=device, refit=True)
    if result.status != "completed":
        raise UserError(f"refit failed: {result.reason}")
    test = result.summary["test/accuracy"]
    console.print(
        f"refit on 60k: test/accuracy {test:.4f} after {result.summary['epochs']} epochs "
        f"({result.summary['wall_time']:.0f} s)"
    )


@click.command()
@click.argument("sweep_id")
@STORAGE
@ARTIFACTS
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="Average the best N trials [default: the N with the best validation accuracy].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ensembles as JSON.")
def ensemble(
    sweep_id: str, storage: str | None, artifacts_root: Path | None, top: int | None, as_json: bool
) -> None:
    """Average the stored class probabilities of SWEEP_ID's best trials (chosen on validation)."""
    from kmnist.results.ensemble import ensembles

    info, kept = stored(sweep_id, storage, artifacts_root)
    if info.multi_objective:  # members rank by the first objective, the score agents keep by
        err_console.print(f"members ranked by {info.metric}, the first of the sweep's objectives")
    scored = ensembles(kept, info.goal, top)
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in scored], indent=1))
        return
    table = Table(title=f"{sweep_id}: ensembles (members and N chosen on validation only)")
    for column in ("ensemble", "trials (weight)", "val/accuracy", "test/accuracy"):
        table.add_column(column, justify="left" if column == "ensemble" else "right")
    for s in scored:
        members = " ".join(f"{n}" + (f"×{w}" if w > 1 else "") for n, w in s.members.items())
        table.add_row(s.name, members, f"{s.val_accuracy:.4f}", f"{s.test_accuracy:.4f}")
    console.print(table)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


COMMANDS = [best, ensemble]
