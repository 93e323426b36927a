"""`kmnist-sweep`: the command line. Thin: parse, call one library function, render."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from kmnist import masking
from kmnist.cli.console import console, err_console, fail, labelled
from kmnist.cli.options import FiniteFloat
from kmnist.errors import StorageFault, UserError
from kmnist.masking import mask
from kmnist.trainer import data as kdata
from kmnist.trainer.params import PARAMS, ConfigError, relevant, resolve, unknown_key_message


class Cli(click.Group):
    """Bad input, from the command line or the library, as one line on stderr and exit code 2;
    a storage that cannot take a write (disk full) as one line and exit code 1.

    Secrets given on the command line are known to the mask from the start, and the process's
    own argv is masked once click has read it: W&B records `sys.argv` in every run's metadata.
    """

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        hide_secrets(words)
        return super().main(words, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "kmnist-sweep"
            fail(f"{exc.format_message()} (see `{command} --help`)")
        except UserError as exc:
            fail(str(exc))
        except StorageFault as exc:
            fail(str(exc), code=1)


def hide_secrets(words: Sequence[str]) -> None:
    """Remember the passwords in `words`, mask this process's argv, and mask any traceback."""
    for word in words:
        masking.remember(word)
    sys.argv[:] = masking.mask_argv(sys.argv)
    sys.excepthook = _masked_excepthook
    threading.excepthook = _masked_thread_excepthook


def _masked_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A traceback is a bug to report; one that quotes a secret must not show it."""
    sys.stderr.write(mask("".join(traceback.format_exception(kind, exc, tb))))


def _masked_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    lines = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
    where = args.thread.name if args.thread else "a thread"
    sys.stderr.write(mask(f"Exception in {where}:\n" + "".join(lines)))


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmnist-sweep")
def main() -> None:
    """Hyperparameter search on Kuzushiji-MNIST, driven by W&B sweep YAML."""


DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help=f"Folder holding the KMNIST files [default: ${kdata.DATA_DIR_ENV}, "
    "then the user cache dir].",
)


# -- train -----------------------------------------------------------------------------------
def _params_help() -> str:
    lines = ["\b", "Parameters (--name=value; defaults shown):"]
    lines += [f"  {p.describe()}" for p in PARAMS.values()]
    return "\n".join(lines)


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog=_params_help(),
)
@DATA_DIR
@click.option("--device", help="cuda, cuda:1, mps or cpu [default: the best available].")
@click.option(
    "--wandb",
    "use_wandb",
    is_flag=True,
    help="Log the run to W&B (online, or offline with WANDB_MODE=offline).",
)
@click.option("--project", default="kmnist-sweep", show_default=True, help="W&B project.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def train(
    ctx: click.Context,
    data_dir: Path | None,
    device: str | None,
    use_wandb: bool,
    project: str,
    as_json: bool,
) -> None:
    """Train and score one configuration, W&B-agent style: --lr=0.01 --model=cnn ..."""
    config = resolve(parse_overrides(ctx.args))
    if use_wandb:  # a full or unwritable run folder is one line before seconds of loading
        from kmnist.backends.wandb.run_files import default_dir, require_room

        require_room(default_dir())
    from kmnist.agent.device import check as check_device  # torch: seconds, after cheap checks
    from kmnist.trainer import train as trainer

    device = check_device(device)
    dataset = kdata.load(data_dir)
    wandb_run = _wandb_run(config, project) if use_wandb else None
    epochs = 1 if config["model"] == "knn" else config["epochs"]
    with _progress(quiet=as_json) as bar:
        task = bar.add_task(config["model"], total=epochs, status="")
        reporter = ProgressReporter(bar, task, wandb_run)
        result = trainer.run(config, reporter, device, dataset)
    _print_result(config, result, as_json)  # first: a run W&B could not save loses no result
    if wandb_run:
        wandb_run.finish(result)
    if result.status == "failed":
        err_console.print(labelled("Trial failed:", "red", mask(result.reason)))
        sys.exit(1)


def _wandb_run(config: dict[str, Any], project: str) -> Any:
    from kmnist.backends.wandb.run import WandbRun

    model = config["model"]  # group and tag name the model family in W&B's tables
    # W&B's agent stops a run with SIGTERM: it ends at its next epoch, as stopped
    return WandbRun(
        relevant(config), project=project, group=model, tags=(model,), stop_signals=True
    )


def _print_result(config: dict[str, Any], result: Any, as_json: bool) -> None:
    if not as_json:
        console.print(_result_table(config, result))
        return
    fields = {"config": config, "status": result.status, "reason": result.reason}
    fields |= {"summary": result.summary, "history": result.history}
    click.echo(json.dumps(fields, indent=2))


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """`--key=value` / `--key value` tokens (as `wandb agent` passes them) to a dict."""
    overrides: dict[str, str] = {}
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            raise ConfigError(
                f"unexpected argument {token!r}: parameters are given as "
                "--name=value (see `kmnist-sweep train --help`)"
            )
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if key not in PARAMS:
            raise ConfigError(unknown_key_message(key))
        if not eq:
            if not tokens or tokens[0].startswith("--"):
                raise ConfigError(f"parameter '{key}' has no value: write --{key}=VALUE")
            value = tokens.pop(0)
        overrides[key] = value
    return overrides


class ProgressReporter:
    """Advances a progress bar each epoch and forwards the metrics to an optional W&B run."""

    def __init__(self, bar: Progress, task: Any, forward: Any = None) -> None:
        self.bar, self.task, self.forward = bar, task, forward

    def report(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        self.bar.update(
            self.task, completed=epoch, status=f"val/accuracy {metrics['val/accuracy']:.4f}"
        )
        return bool(self.forward and self.forward.report(epoch, metrics))


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),  # the model's name: printed as given
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        console=err_console,
        # On a terminal only: in a log a bar is one frozen line, and the line a script reads
        # on stderr is the error, if any.
        disable=quiet or not err_console.is_terminal,
    )


def _result_table(config: dict[str, Any], result: Any) -> Table:
    changed = {k: v for k, v in relevant(config).items() if v != PARAMS[k].default}
    title = f"{config['model']} ({result.status})"
    table = Table(title=title, caption=" ".join(f"{k}={v}" for k, v in changed.items()) or None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return table


# -- validate --------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check W&B sweep files: every problem as FILE:LINE: key: message, then exit 2."""
    from kmnist.sweep import check_file, summary

    failed = False
    for file in files:
        spec, problems = check_file(file)
        for problem in problems:
            err_console.print(problem.render(str(file)), soft_wrap=True)
        if spec is not None:
            console.print(f"{file}: ok: {summary(spec)}", highlight=False, soft_wrap=True)
        failed = failed or bool(problems)
    if failed:
        sys.exit(2)


# -- data ------------------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Download, verify and describe the official KMNIST files."""


@data.command()
@DATA_DIR
def download(data_dir: Path | None) -> None:
    """Download the official files (md5-checked) unless a verified copy is already there."""
    target = kdata.fetch(kdata.data_folder(data_dir))
    console.print(f"KMNIST files verified in {target}")


@data.command()
@DATA_DIR
def verify(data_dir: Path | None) -> None:
    """Check every file's md5; exit 2 if none of the folders holds a complete, verified set."""
    folder, fmt = kdata.locate(data_dir)
    table = Table(title=f"KMNIST ({fmt}) in {folder}")
    for column in ("file", "md5", "status"):
        table.add_column(column)
    for name, expected in kdata.FILES[fmt].values():
        table.add_row(name, expected, Text("ok", style="green"))
    console.print(table)


@data.command()
@DATA_DIR
@click.option(
    "--val-fraction",
    default=0.1,
    show_default=True,
    type=FiniteFloat(0, 1, min_open=True, max_open=True),
)
@click.option(
    "--split-seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 4_000_000_000),
    help="the trainer's split_seed",
)
def info(data_dir: Path | None, val_fraction: float, split_seed: int) -> None:
    """Where the files are, their sums, and images per class in train/validation/test."""
    dataset = kdata.load(data_dir, download=False)
    train_idx, val_idx = kdata.stratified_split(dataset.train_labels, val_fraction, split_seed)
    splits = {
        "train": dataset.train_labels[train_idx],
        "validation": dataset.train_labels[val_idx],
        "test": dataset.test_labels,
    }
    table = Table(
        title=f"KMNIST in {dataset.folder} ({dataset.format})",
        caption=f"validation: {val_fraction:.0%} of the training images, split seed {split_seed}",
    )
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    counts = {split: np.bincount(labels, minlength=10) for split, labels in splits.items()}
    for cls, name in enumerate(kdata.CLASSES):
        table.add_row(f"{cls} {name}", *(str(counts[s][cls]) for s in splits))
    table.add_row("total", *(str(len(labels)) for labels in splits.values()))
    console.print(table)
    for name, md5 in kdata.FILES[dataset.format].values():
        console.print(f"  {name}  md5 {md5}  ok")


# -- sweeps ----------------------------------------------------------------------------------
def _register_sweep_commands() -> None:
    from kmnist.cli.launch import launch
    from kmnist.cli.results import COMMANDS as RESULT_COMMANDS
    from kmnist.cli.sweeps import COMMANDS
    from kmnist.cli.wandb_commands import COMMANDS as WANDB_COMMANDS

    for command in [*COMMANDS, *RESULT_COMMANDS, *WANDB_COMMANDS, launch]:
        main.add_command(command)


_register_sweep_commands()

if __name__ == "__main__":
    main()
