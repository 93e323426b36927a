"""Bad sweep files: each gets exactly one line, FILE:LINE: key.path: message, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from kmnist.cli import main
from kmnist.sweep import SweepFileError, load
from kmnist.sweep.source import parse
from kmnist.sweep.validate import check_source

ROOT = Path(__file__).resolve().parents[2]
OK = "method: random\nmetric: {name: val/accuracy, goal: maximize}\n"
OTHER = "program: other.py\nmethod: random\n"  # someone else's program: format checks only
LR = "parameters:\n  lr: {min: 0.0001, max: 0.1}\n"

# (id, file text, expected "LINE: key.path: part of the message")
CASES = [
    ("empty", "", "1: the file is empty"),
    ("comment-only", "# nothing here\n", "1: the file is empty"),
    ("list-document", "- method\n- grid\n", "1: expected a mapping of sweep keys"),
    ("text-document", "just some text\n", "1: expected a mapping of sweep keys (method, metric"),
    ("syntax-flow", "method: grid\nparameters: {lr: [1,\n", "3: YAML syntax error"),
    ("syntax-indent", "method: grid\n  parameters: 1\n", "2: YAML syntax error"),
    ("syntax-tab", "method: grid\nparameters:\n\tlr: 1\n", "3: YAML syntax error"),
    ("python-tag", "method: !!python/object/apply:os.system [ls]\n", "1: YAML tag '!!python/"),
    ("custom-tag", OK + "run_cap: !cap 3\n", "3: YAML tag '!cap' is not allowed"),
    ("two-documents", OK + LR + "---\nmethod: grid\n", "5: more than one YAML document"),
    ("duplicate-key", OK + LR + "metric: {name: val/accuracy}\n", "5: metric: duplicate key"),
    ("missing-method", "metric: {name: val/accuracy}\n" + LR, "1: missing 'method'"),
    (
        "method-typo",
        "method: bayesian\n" + LR,
        "1: method: expected grid, random or bayes, got 'bayesian' (did you mean 'bayes'?)",
    ),
    (
        "unknown-key",
        OK + LR + "run_caps: 3\n",
        "5: run_caps: unknown sweep key (did you mean 'run_cap'?)",
    ),
    ("missing-parameters", OK, "1: missing 'parameters'"),
    (
        "empty-parameters",
        OK + "parameters: {}\n",
        "3: parameters: expected a mapping of one or more",
    ),
    (
        "scalar-parameter",
        OK + "parameters:\n  lr: 0.01\n",
        "4: parameters.lr: expected a mapping"
        " such as {values: [...]} or {min: ..., max: ...}: write {value: 0.01}",
    ),
    (
        "list-parameter",
        OK + "parameters:\n  lr: [0.1, 0.01]\n",
        "4: parameters.lr: expected a mapping: write {values: [0.1, 0.01]}",
    ),
    (
        "1e-5-pitfall",
        OK + "parameters:\n  lr:\n    min: 1e-5\n    max: 0.1\n",
        "5: parameters.lr.min: expected a finite number, got '1e-5': YAML reads 1e-5 as a string; "
        "write 1.0e-5",
    ),
    (
        "min-not-number",
        OK + "parameters:\n  lr:\n    min: abc\n    max: 0.1\n",
        "5: parameters.lr.min: expected a finite number, got 'abc'",
    ),
    (
        "min-nan",
        OK + "parameters:\n  lr: {min: .nan, max: 0.1}\n",
        "4: parameters.lr.min: expected a finite number, got nan",
    ),
    (
        "min-above-max",
        OK + "parameters:\n  lr: {min: 0.1, max: 0.001}\n",
        "4: parameters.lr.min: min 0.1 is not less than max 0.001",
    ),
    ("min-alone", OK + "parameters:\n  lr: {min: 0.1}\n", "4: parameters.lr: missing 'max'"),
    (
        "unknown-distribution",
        OK + "parameters:\n  lr: {distribution: loguniform, min: 1, max: 2}\n",
        "4: parameters.lr.distribution: unknown distribution 'loguniform' (did you mean",
    ),
    (
        "deprecated-log-uniform",
        OK + "parameters:\n  lr:\n    distribution: log_uniform\n    min: -9.2\n    max: -2.3\n",
        "5: parameters.lr.distribution: log_uniform reads min/max as"
        " base-e exponents and W&B refuses it: use log_uniform_values with min: 0.000101, max: 0.1",
    ),
    (
        "log-values-nonpositive",
        OK + "parameters:\n  lr:\n    distribution: log_uniform_values\n"
        "    min: 0.0\n    max: 0.1\n",
        "6: parameters.lr.min: log_uniform_values takes the logarithm",
    ),
    (
        "int-uniform-float",
        OK + "parameters:\n  epochs:\n    distribution: int_uniform\n    min: 1.5\n    max: 4\n",
        "6: parameters.epochs.min: expected an integer (int_uniform)",
    ),
    (
        "q-zero",
        OK + "parameters:\n  label_smoothing:\n    distribution: q_uniform\n    min: 0.0\n"
        "    max: 0.2\n    q: 0\n",
        "8: parameters.label_smoothing.q: q is a step",
    ),
    (
        "sigma-negative",
        OTHER + "parameters:\n  x: {distribution: normal, sigma: -1}\n",
        "4: parameters.x.sigma: expected a number >= 0",
    ),
    (
        "beta-zero",
        OTHER + "parameters:\n  x: {distribution: beta, a: 0}\n",
        "4: parameters.x.a: a beta law needs a > 0",
    ),
    (
        "probabilities-length",
        OK + "parameters:\n  optimizer:\n    values: [adam, sgd]\n    probabilities: [1.0]\n",
        "6: parameters.optimizer.probabilities: 1 probabilities for 2",
    ),
    (
        "probabilities-sum",
        OK + "parameters:\n  optimizer:\n    values: [adam, sgd]\n    probabilities: [0.5, 0.6]\n",
        "6: parameters.optimizer.probabilities: sum to 1.1, not 1",
    ),
    (
        "probabilities-negative",
        OK + "parameters:\n  optimizer:\n    values: [adam, sgd]\n    probabilities: [1.5, -0.5]\n",
        "6: parameters.optimizer.probabilities: expected a list",
    ),
    (
        "values-empty",
        OK + "parameters:\n  optimizer: {values: []}\n",
        "4: parameters.optimizer.values: expected a non-empty list",
    ),
    (
        "stray-key",
        OK + "parameters:\n  epochs: {min: 1, max: 5, step: 1}\n",
        "4: parameters.epochs.step: not a key of a int_uniform parameter",
    ),
    (
        "categorical-probabilities",
        OK + "parameters:\n  optimizer:\n    distribution: categorical\n"
        "    values: [adam]\n    probabilities: [1]\n",
        "7: parameters.optimizer.probabilities: not a key of a categorical parameter",
    ),
    (
        "value-and-values",
        OK + "parameters:\n  epochs: {value: 1, values: [1, 2]}\n",
        "4: parameters.epochs.values: not a key of a constant parameter",
    ),
    (
        "no-form",
        OK + "parameters:\n  epochs: {vals: [1, 2]}\n",
        "4: parameters.epochs.vals: cannot tell the distribution: expected value, values, "
        "min and max, distribution or parameters (did you mean 'values'?)",
    ),
    (
        "bad-name",
        OTHER + "parameters:\n  my lr: {value: 1}\n",
        "4: parameters.my lr: parameter names start with a letter",
    ),
    (
        "group-stray-key",
        OTHER + "parameters:\n  g:\n    parameters: {x: {value: 1}}\n    value: 2\n",
        "6: parameters.g.value: a group holds only 'parameters'",
    ),
    ("grid-continuous", "method: grid\n" + LR, "3: parameters.lr: grid search needs discrete"),
    (
        "grid-probabilities",
        "method: grid\nparameters:\n  optimizer:\n    values: [adam, sgd]\n"
        "    probabilities: [0.5, 0.5]\n",
        "5: parameters.optimizer.probabilities: grid search takes",
    ),
    ("bayes-no-metric", "method: bayes\n" + LR, "1: bayes search needs a metric"),
    (
        "hyperband-no-metric",
        "method: random\nearly_terminate: {type: hyperband, min_iter: 1}\n" + LR,
        "1: early_terminate needs a metric",
    ),
    (
        "goal-typo",
        "method: random\nmetric: {name: val/accuracy, goal: maximise}\n" + LR,
        "2: metric.goal: expected minimize or maximize, got 'maximise' (did you mean 'maximize'?)",
    ),
    (
        "metric-no-name",
        "method: random\nmetric:\n  goal: maximize\n" + LR,
        "2: metric: missing 'name'",
    ),
    (
        "metric-stray-key",
        "method: random\nmetric:\n  name: val/accuracy\n  goals: maximize\n" + LR,
        "4: metric.goals: unknown metric key (did you mean 'goal'?)",
    ),
    (
        "metric-scalar",
        "method: random\nmetric: val/accuracy\n" + LR,
        "2: metric: expected a mapping",
    ),
    (
        "hyperband-type",
        OK + LR + "early_terminate: {type: hyperbnd, min_iter: 1}\n",
        "5: early_terminate.type: expected type: hyperband, got 'hyperbnd'",
    ),
    (
        "hyperband-no-brackets",
        OK + LR + "early_terminate:\n  type: hyperband\n  eta: 3\n",
        "5: early_terminate: hyperband needs min_iter, or max_iter and s",
    ),
    (
        "hyperband-eta",
        OK + LR + "early_terminate:\n  type: hyperband\n  min_iter: 1\n  eta: 1\n",
        "8: early_terminate.eta: expected a number > 1, got 1",
    ),
    (
        "hyperband-max-iter-no-s",
        OK + LR + "early_terminate: {type: hyperband, max_iter: 27}\n",
        "5: early_terminate: max_iter needs s",
    ),
    (
        "hyperband-empty",
        OK + LR + "early_terminate:\n  type: hyperband\n  max_iter: 2\n  s: 1\n",
        "7: early_terminate.max_iter: no brackets: max_iter/eta = 0.666667 < 1",
    ),
    (
        "hyperband-float-s",
        OK + LR + "early_terminate: {type: hyperband, max_iter: 27, s: 2.0}\n",
        "5: early_terminate.s: expected an integer >= 1, got 2.0: W&B's engine raises on a float s",
    ),
    (
        "target-nan",
        "method: random\nmetric: {name: val/accuracy, goal: maximize, target: .nan}\n" + LR,
        "2: metric.target: expected a finite number, got nan: a sweep cannot stop on it",
    ),
    (
        "envvar-lowercase",
        OTHER + "parameters: {x: {value: 1}}\ncommand: [python, train.py, '${envvar:home}']\n",
        "4: command[2]: W&B's agent substitutes ${envvar:NAME} only for names of capitals",
    ),
    (
        "hyperband-scalar",
        OK + LR + "early_terminate: hyperband\n",
        "5: early_terminate: expected a mapping such as {type: hyperband, min_iter: 1}",
    ),
    ("run-cap-zero", OK + LR + "run_cap: 0\n", "5: run_cap: expected a whole number > 0, got 0"),
    (
        "run-cap-text",
        OK + LR + "run_cap: ten\n",
        "5: run_cap: expected a whole number > 0, got 'ten'",
    ),
    (
        "command-string",
        OK + LR + "command: python train.py\n",
        "5: command: expected a list of words",
    ),
    (
        "command-macro",
        OTHER + "parameters: {x: {value: 1}}\ncommand:\n  - ${interpreter}\n  - ${program}\n"
        "  - ${arg}\n",
        "7: command[2]: unknown macro '${arg}' (did you mean '${args}'?)",
    ),
    (
        "program-number",
        "program: 3\nmethod: random\nparameters: {x: {value: 1}}\n",
        "1: program: expected a string, got 3",
    ),
    (
        "trainer-unknown",
        OK + "parameters:\n  batchsize: {values: [64, 128]}\n",
        "4: parameters.batchsize: unknown parameter 'batchsize' (did you mean 'batch_size'?)",
    ),
    (
        "trainer-value",
        OK + "parameters:\n  optimizer: {values: [adam, sgdd]}\n",
        "4: parameters.optimizer.values[1]: expected one of adam, adamw, sgd, adadelta, got 'sgdd'",
    ),
    (
        "trainer-int",
        OK + "parameters:\n  epochs: {min: 1.0, max: 5.0}\n",
        "4: parameters.epochs: 'epochs' takes integers and uniform draws floats",
    ),
    (
        "trainer-range",
        OK + "parameters:\n  dropout_1: {min: 0.0, max: 1.5}\n",
        "4: parameters.dropout_1: uniform reaches [0, 1.5] but 'dropout_1' takes [0, 0.95]",
    ),
    (
        "trainer-choice-law",
        OK + "parameters:\n  nesterov: {distribution: beta}\n",
        "4: parameters.nesterov: 'nesterov' takes true|false: list them under values",
    ),
    (
        "trainer-group",
        OK + "parameters:\n  optimizer:\n    parameters:\n      lr: {value: 0.1}\n",
        "4: parameters.optimizer: the trainer takes 'optimizer' as a value, and here it is a group",
    ),
    (
        "trainer-group-underscore",
        OK + "parameters:\n  _optim:\n    parameters:\n      lr: {value: 0.1}\n",
        "4: parameters._optim: the trainer leaves out names that start with '_', so group",
    ),
    (
        "trainer-leaf-underscore",
        OK + "parameters:\n  _lr: {value: 0.1}\n",
        "4: parameters._lr: unknown parameter '_lr'",
    ),
    (
        "trainer-knob-of-another-model",
        OK + "parameters:\n  model: {value: knn}\n  width: {values: [16, 32]}\n",
        "5: parameters.width: 'width' is read by deep_cnn, resnet only, and this sweep's model is",
    ),
    (
        "trainer-knob-of-the-default-model",  # no model given: the trainer's default, cnn
        OK + "parameters:\n  k: {min: 1, max: 9}\n",
        "4: parameters.k: 'k' is read by knn only, and this sweep's model is cnn",
    ),
    (
        "trainer-mixup-and-cutmix-at-1",
        OK + "parameters:\n  mixup_alpha: {value: 0.2}\n  mixup_prob: {value: 1.0}\n"
        "  cutmix_alpha: {value: 1.0}\n  cutmix_prob: {value: 1.0}\n",
        "7: parameters.cutmix_prob: the trainer refuses trials this sweep can draw: "
        "mixup_prob + cutmix_prob is 2 with both",
    ),
    (
        "trainer-mixup-and-cutmix-shares-searched",
        OK + "parameters:\n  mixup_alpha: {values: [0, 0.4]}\n  cutmix_alpha: {min: 0.0, "
        "max: 1.0}\n  mixup_prob: {min: 0.2, max: 0.6}\n  cutmix_prob: {values: [0.3, 0.5]}\n",
        "7: parameters.cutmix_prob: the trainer refuses trials this sweep can draw: "
        "mixup_prob + cutmix_prob is 1.1 with both",
    ),
    (
        "trainer-mixup-and-cutmix-shares-unset",
        OK + "parameters:\n  mixup_alpha: {value: 0.2}\n  cutmix_alpha: {value: 1.0}\n",
        "3: parameters: the trainer refuses trials this sweep can draw (mixup_prob unset: 1, "
        "cutmix_prob unset: 1): mixup_prob + cutmix_prob is 2",
    ),
    (
        "trainer-group-twice",
        OK + "parameters:\n  lr: {value: 0.1}\n  optim:\n    parameters:\n      lr: {value: 0.2}\n",
        "7: parameters.optim.parameters.lr: 'lr' is given twice, once inside a group",
    ),
    (
        "trainer-group-leaf",
        OK + "parameters:\n  optim:\n    parameters:\n      momentum: {min: 0.0, max: 2.0}\n",
        "6: parameters.optim.parameters.momentum: uniform reaches [0, 2] but 'momentum' takes",
    ),
    (
        "trainer-args-json",
        OK + LR + "command: [python, -m, kmnist.wandb_entry, '${args_json}']\n",
        "5: command[3]: ${args_json} hands the trainer one JSON word",
    ),
    (
        "trainer-positional-word",
        OK + LR + "command: [python, -m, kmnist.wandb_entry, '${envvar:MODE}', '${args}']\n",
        "5: command[3]: '${envvar:MODE}' reaches the trainer as a word it cannot read",
    ),
    (
        "trainer-literal-value",
        OK + LR + "command: [python, -m, kmnist.wandb_entry, --epochs=0, '${args}']\n",
        "5: command[3]: parameter 'epochs': expected an integer in [1, inf], got '0'",
    ),
    (
        "trainer-test-metric",
        "method: random\nmetric: {name: test/accuracy, goal: maximize}\n" + LR,
        "2: metric.name: test/accuracy scores the test set",
    ),
    (
        "trainer-no-args",
        OK + LR + "program: kmnist/wandb_entry.py\ncommand:\n  - python\n  - ${program}\n",
        "6: command: the trainer reads its parameters as --name=value: add ${args}",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_gets_one_line(text: str, expected: str) -> None:
    spec, problems = check_source(parse(text))
    assert spec is None
    assert [p.render("f.yaml") for p in problems][:1] == [p.render("f.yaml") for p in problems]
    line = problems[0].render("f.yaml")
    assert line.startswith(f"f.yaml:{expected}"), line
    assert "\n" not in line


def test_a_knob_one_of_the_sweeps_models_reads_is_fine() -> None:
    models = "parameters:\n  model: {values: [knn, resnet]}\n"
    text = OK + models + "  width: {value: 16}\n  k: {value: 3}\n"
    spec, problems = check_source(parse(text))
    assert spec is not None and problems == []


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", ["1e-5-pitfall", "python-tag", "trainer-unknown", "empty"])
def test_cli_prints_the_line_and_exits_2(case: str, tmp_path: Path) -> None:
    """The installed command, in a process of its own: the line, exit 2, no traceback."""
    text, expected = next(c[1:] for c in CASES if c[0] == case)
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "kmnist.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{path}:{expected}"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""


def test_cli_reports_every_problem_of_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(OK + "parameters:\n  lr: {min: 1e-5, max: 0.1}\n  epochs: {min: 1.0, max: 3}\n")
    good = ROOT / "sweeps" / "knn_grid.yaml"
    result = CliRunner().invoke(main, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert [line.split(":")[1] for line in lines[:2]] == ["4", "5"]
    assert lines[2].startswith(f"{good}: ok: method grid")


def test_shipped_sweeps_validate() -> None:
    files = sorted(str(p) for p in (ROOT / "sweeps").glob("*.yaml"))
    assert {Path(f).name for f in files} >= {
        "knn_grid.yaml",
        "knn_random.yaml",
        "cnn_bayes.yaml",
        "cnn_hyperband.yaml",
        "cnn_random.yaml",
    }
    result = CliRunner().invoke(main, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert "40 points" in result.output
    assert "hyperband brackets at reports 1, 3, 9" in result.output


def test_missing_file_and_binary_file(tmp_path: Path) -> None:
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00method")
    for path, message in [(tmp_path / "nope.yaml", "cannot read"), (binary, "not UTF-8")]:
        result = CliRunner().invoke(main, ["validate", str(path)])
        assert result.exit_code == 2
        assert f"{path}:1: {message}" in result.output


def test_load_raises_a_user_error_naming_the_first_problem(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\n" + LR + "run_cap: 0\n")
    with pytest.raises(SweepFileError, match=r"s.yaml:3: parameters.lr: grid .* \(and 1 more"):
        load(path)


def test_real_cli_subprocess_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("method: grid\nparameters: [\n")
    done = subprocess.run(
        [sys.executable, "-c", "from kmnist.cli import main; main()", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"{path}:3: YAML syntax error")
    assert "Traceback" not in done.stderr


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5)
)
yaml_keys = st.sampled_from(
    [
        "method",
        "metric",
        "parameters",
        "name",
        "goal",
        "values",
        "value",
        "min",
        "max",
        "q",
        "distribution",
        "early_terminate",
        "type",
        "min_iter",
        "max_iter",
        "s",
        "eta",
        "run_cap",
        "probabilities",
        "lr",
        "epochs",
        "command",
        "program",
        "uniform",
        "grid",
        "hyperband",
        "x",
    ]
)
yaml_data = st.recursive(
    yaml_scalars | yaml_keys,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(yaml_keys, inner, max_size=4),
    max_leaves=20,
)


@given(yaml_data)
def test_no_input_raises(data: object) -> None:
    from kmnist.sweep.source import Source

    check_source(Source(data=data))  # problems or a spec, never an exception


@given(st.text(alphabet="method:grid parameters{}[]-,\n lrminax01.e!&*|>'\"#%@`\t", max_size=80))
def test_no_text_raises(text: str) -> None:
    check_source(parse(text))


# Files W&B runs: each validates, and its summary line says what differs offline.
ACCEPTED = [
    (
        "trainer-groups",
        OK + "parameters:\n  optim:\n    parameters:\n      lr: {min: 0.001, max: 0.1}\n"
        "      nesterov: {values: [true, false]}\n",
        "2 parameters (2 searched), continuous",
    ),
    (
        "boolean-flags",
        OK + LR + "command: [python, -m, kmnist.wandb_entry, '${args_no_boolean_flags}']\n",
        "1 parameters (1 searched)",
    ),
    ("null-is-default", OK + "parameters:\n  lr: {value: null}\n", "1 points"),
    (
        "big-grid",
        OTHER.replace("random", "grid") + "parameters:\n  a: {min: 1, max: 100}\n"
        "  b: {min: 1, max: 100}\n  c: {min: 1, max: 100}\n",
        "warning: 1,000,000 grid points and no run_cap below 100,000: W&B runs every one",
    ),
    (
        "custom-scheduler",
        "method: custom\nscheduler: {engine: optuna, source: s.py}\n"
        "metric: {name: val/loss}\nparameters:\n  lr: {value: 0.1}\n",
        "method custom, metric val/loss (minimize)",
    ),
    (
        "local-controller",
        OK + LR + "controller: {type: local}\n",
        "controller local: on W&B, run `wandb controller SWEEP_ID` beside the agents",
    ),
    (
        "literal-args",
        OK + LR + "command: [python, -m, kmnist.wandb_entry, --epochs=3, --seed, '${envvar:S}', "
        "'${args}']\n",
        "1 parameters (1 searched)",
    ),
]


@pytest.mark.parametrize(("text", "said"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_files_wandb_runs_validate(text: str, said: str, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: ok: ") and said in result.output


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (OTHER + "parameters: {x: {value: 1}}\n", "runs only this project's trainer"),
        (
            OK + LR + "command: [python, -m, kmnist.wandb_entry, --device=cpu, '${args}']\n",
            "'--device=cpu'",
        ),
        (  # each agent reads an envvar in a value; a name is read once, at create
            OK + LR + "command: [python, -m, kmnist.wandb_entry, '--${envvar:K}=3', '${args}']\n",
            "reads ${envvar:NAME} in a parameter's value only",
        ),
    ],
    ids=["other-program", "train-option", "envvar-in-a-name"],
)
def test_offline_create_refuses_what_only_wandb_runs(
    text: str, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    storage = str(tmp_path / "s.journal")
    result = CliRunner().invoke(
        main, ["create", str(path), "--backend", "optuna", "--storage", storage]
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "the offline engine cannot run this sweep as W&B would" in line and reason in line
    assert "--backend wandb" in line
