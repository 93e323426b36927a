"""The Optuna study of sweeps/custom_study.yaml: W&B's scheduler (and `kmnist-sweep create
--allow-code`) loads `study` and `space` from here.

`space` is define-by-run: kNN trials get kNN knobs, CNN trials CNN knobs, and no trial carries
a knob its model does not read. `study` is a TPE study that models parameters jointly, with a
median pruner on the per-epoch validation accuracy.
"""

import optuna


def study(sweep):
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=4)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


def space(trial):
    model = trial.suggest_categorical("model", ["knn", "cnn"])
    if model == "knn":
        return {
            "model": model,
            "k": trial.suggest_int("k", 1, 12),
            "weights": trial.suggest_categorical("weights", ["uniform", "distance"]),
            "pca_components": trial.suggest_categorical("pca_components", [0, 40]),
        }
    return {
        "model": model,
        "epochs": 3,
        "l1_size": trial.suggest_categorical("l1_size", [8, 16, 32]),
        "l2_size": trial.suggest_categorical("l2_size", [16, 32, 64]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    }
