"""The names of what the trainer logs: per epoch, and in the summary of a finished trial.

`train.py` builds its metric dicts from these constants, and the sweep spec reads them to check
that a sweep's metric is one the trainer logs; no other module spells them out. Pure: no torch.
"""

from __future__ import annotations

# Per epoch (one `report` call, one `wandb.log`).
EPOCH = "epoch"
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_ACCURACY = "val/accuracy"
LR = "lr"  # the rate at the start of the epoch
EPOCH_TIME = "epoch_time"

# In the summary, after the last epoch.
VAL_BEST_ACCURACY = "val/best_accuracy"
VAL_BEST_EPOCH = "val/best_epoch"
TEST_ACCURACY = "test/accuracy"
TEST_LOSS = "test/loss"
KMNIST_VAL_ACC = "kmnist_val_acc"  # the original W&B benchmark's key: test accuracy
EPOCHS = "epochs"  # epochs run (fewer than asked when the trial was stopped)
PARAMETERS = "parameters"  # trainable weights (0 for kNN)
# What a prediction costs, the axes a user trades accuracy against (`costs.py` measures them).
# Multiply-adds per image of one forward pass, counted, not timed. Networks: convolutions
# (output elements x in_channels / groups x kernel area) and linear layers (in x out); batch
# norm, pooling, activations, additions, squeeze-excite gating and biases are not counted, nor
# the `tta` extra views (a trial with tta=n runs n + 1 passes per image). kNN: the distance
# to every stored training image (n_train x dim, one multiply-add, or for manhattan one
# absolute difference, per coordinate) plus, with PCA, projecting the query (784 x dim);
# standardising and normalising the query are not counted.
MACS = "macs"
# Inference latency per image in milliseconds on the trial's device, measured on the trained
# model as it was scored (EMA weights, precision, tta views; kNN's predict path): one image at
# a time, and 1000 at once (the time of the call / 1000). The median of a few timed calls
# after a warm-up, in eval mode under torch.inference_mode, CUDA synchronised.
LATENCY_MS_B1 = "latency_ms_b1"
LATENCY_MS_B1000 = "latency_ms_b1000"
# Seconds the trial trained and scored, the data already on the device: building the model
# (kNN: fitting), every epoch, the test set scored, the outputs copied to the host; not the
# latency measurement, which runs after.
WALL_TIME = "wall_time"

NETWORK_EPOCH = (EPOCH, TRAIN_LOSS, VAL_LOSS, VAL_ACCURACY, LR, EPOCH_TIME)
KNN_EPOCH = (EPOCH, VAL_LOSS, VAL_ACCURACY, EPOCH_TIME)  # kNN has one "epoch": fit and score
SUMMARY = (
    VAL_ACCURACY,
    VAL_LOSS,
    VAL_BEST_ACCURACY,
    VAL_BEST_EPOCH,
    TEST_ACCURACY,
    TEST_LOSS,
    KMNIST_VAL_ACC,
    EPOCHS,
    PARAMETERS,
    MACS,
    LATENCY_MS_B1,
    LATENCY_MS_B1000,
    WALL_TIME,
)
# Scores of the test set: logged once per trial, never an objective (test-set hygiene).
TEST = (TEST_ACCURACY, TEST_LOSS, KMNIST_VAL_ACC)
# What a sweep may name as its metric: everything logged but the test set, the validation
# accuracy first (the objective the shipped sweeps use).
OBJECTIVES = tuple(
    dict.fromkeys(name for name in (VAL_ACCURACY, *NETWORK_EPOCH, *SUMMARY) if name not in TEST)
)
