"""One trial: a config, a reporter and a device in, a result out. The only training loop.

Data stays resident as tensors on the device; batches are index slices of it, augmented there.
Each epoch is reported; the reporter may answer "stop" (pruning), which ends the loop cleanly.
The test set is scored once, at the end; the sweep objective is the validation split. Then what
the trained model costs to use (multiply-adds, measured latency: `costs.py`) joins the summary.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kmnist.contract import Reporter, TrialResult
from kmnist.trainer import costs
from kmnist.trainer import data as kdata
from kmnist.trainer import metrics as M
from kmnist.trainer.allocator import keep_freed_memory
from kmnist.trainer.artifacts import TrialOutputs
from kmnist.trainer.augment import augment, is_enabled, mix, shift
from kmnist.trainer.ema import WeightEMA
from kmnist.trainer.faults import device_fault, faulted
from kmnist.trainer.models import N_CLASSES, KNNClassifier, build_network
from kmnist.trainer.params import resolve

EVAL_BATCH = 200  # per image, 500 runs 1.3-2.4x slower on the CPU (Xeon, 2026-12-02): caches
# Test-time views, in the order `tta` takes them: the image, then 1-pixel shifts (dy, dx).
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


class Diverged(Exception):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Splits:
    """Train/validation/test tensors on one device; images (n, 1, 28, 28), uint8."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_index: np.ndarray  # the validation images' indices in the 60k training set

    @property
    def has_val(self) -> bool:
        return len(self.val_x) > 0


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def run(
    config: Mapping[str, Any],
    reporter: Reporter | None = None,
    device: str | torch.device | None = None,
    data: kdata.Kmnist | None = None,
    refit: bool = False,
) -> TrialResult:
    """Train and score one config. Unknown keys or bad values raise ConfigError.

    `refit` trains on all 60k training images (no validation split, nothing reported per
    epoch but the training loss) and scores the test set once, as papers report it."""
    cfg = resolve(config)
    dev = pick_device(device)
    keep_freed_memory()
    dataset = data or kdata.load()
    trainer = _run_knn if cfg["model"] == "knn" else _run_network
    try:
        splits = make_splits(dataset, cfg, dev, refit)  # the first copy to the device: may OOM
        torch.manual_seed(cfg["seed"])
        start = time.perf_counter()
        result, predict = trainer(cfg, splits, reporter, dev)
        wall_time = time.perf_counter() - start
        result.summary |= costs.latencies(predict, splits.test_x, dev)
    except Diverged as exc:
        return TrialResult("failed", reason=str(exc))
    except Exception as exc:  # out of memory, a failed device: marked here, where the type is known
        kind = device_fault(exc)
        if kind is None:
            raise
        return faulted(kind, dev, exc)
    result.summary[M.WALL_TIME] = wall_time
    return result


def make_splits(
    data: kdata.Kmnist, cfg: dict[str, Any], device: torch.device, refit: bool = False
) -> Splits:
    if refit:
        train_idx, val_idx = np.arange(len(data.train_labels)), np.arange(0)
    else:
        labels = data.train_labels
        train_idx, val_idx = kdata.stratified_split(labels, cfg["val_fraction"], cfg["split_seed"])
    subset = kdata.stratified_subset(
        data.train_labels[train_idx], cfg["train_size"], cfg["split_seed"]
    )
    train_idx = train_idx[subset]
    images, labels, test_x, test_y = _on_device(data, str(device))
    pick = lambda idx: torch.from_numpy(idx).to(device)  # noqa: E731
    return Splits(
        images[pick(train_idx)],
        labels[pick(train_idx)],
        images[pick(val_idx)],
        labels[pick(val_idx)],
        test_x,
        test_y,
        val_idx,
    )


@lru_cache(maxsize=2)
def _on_device(data: kdata.Kmnist, device: str) -> tuple[torch.Tensor, ...]:
    """The release as tensors on `device`, moved once per agent and reused by every trial."""
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]
    return tensors[0][:, None], tensors[1].long(), tensors[2][:, None], tensors[3].long()


# -- kNN: one "epoch", fit and score -------------------------------------------------------
def _run_knn(
    cfg: dict[str, Any], s: Splits, reporter: Reporter | None, device: torch.device
) -> tuple[TrialResult, costs.Predict]:
    tick = time.perf_counter()
    knn = KNNClassifier(cfg).fit(s.train_x, s.train_y)
    metrics: dict[str, float] = {M.EPOCH: 1}
    val_proba = None
    if s.has_val:
        val_proba = knn.predict_proba(s.val_x)
        metrics[M.VAL_LOSS], metrics[M.VAL_ACCURACY] = _knn_score(val_proba, s.val_y)
    metrics[M.EPOCH_TIME] = time.perf_counter() - tick
    stopped = bool(reporter and reporter.report(1, metrics))
    test_proba = knn.predict_proba(s.test_x)
    test_loss, test_acc = _knn_score(test_proba, s.test_y)
    result = _result(stopped, [metrics], test_loss, test_acc, 0, costs.knn_macs(knn))
    result.outputs = _outputs(s, val_proba, test_proba, state_dict=None)
    return result, knn.predict_proba


def _knn_score(proba: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Log loss (probabilities clipped at 1e-7, as scikit-learn) and accuracy."""
    loss = -proba.gather(1, y[:, None]).clamp_min(1e-7).log().mean()
    return float(loss), float((proba.argmax(1) == y).double().mean())


def _outputs(
    s: Splits,
    val_proba: torch.Tensor | None,
    test_proba: torch.Tensor,
    state_dict: dict[str, torch.Tensor] | None,
) -> TrialOutputs:
    """What the agent may keep of a trial: probabilities on both splits, and the weights."""
    as_numpy = lambda t: t.float().cpu().numpy()  # noqa: E731
    probabilities = {"test": as_numpy(test_proba)}
    if val_proba is not None:
        probabilities["val"] = as_numpy(val_proba)
    labels = {"val": s.val_y.cpu().numpy(), "test": s.test_y.cpu().numpy()}
    return TrialOutputs(probabilities, labels, s.val_index, state_dict)


# -- networks ------------------------------------------------------------------------------
def _run_network(
    cfg: dict[str, Any], s: Splits, reporter: Reporter | None, device: torch.device
) -> tuple[TrialResult, costs.Predict]:
    _set_fp32_precision(cfg["precision"])
    # channels_last: oneDNN's bf16 convolutions on the CPU run about 4x faster in it
    model = build_network(cfg).to(device, memory_format=torch.channels_last)
    ema = WeightEMA(model, cfg["ema"]) if cfg["ema"] > 0 else None
    scored = ema.model if ema else model  # what validation and test see
    steps_per_epoch = math.ceil(len(s.train_x) / cfg["batch_size"])
    optimizer = _optimizer(cfg, model)
    schedule = _schedule(cfg, optimizer, steps_per_epoch * cfg["epochs"])
    gen = torch.Generator(device).manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])  # per-batch choices, drawn on the host
    history: list[dict[str, float]] = []
    stopped = False
    for epoch in range(1, cfg["epochs"] + 1):
        tick = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss = _train_epoch(model, ema, cfg, s, optimizer, schedule, (gen, rng), device)
        metrics = {M.EPOCH: epoch, M.TRAIN_LOSS: train_loss}
        if s.has_val:
            val_loss, val_acc, val_lp = _evaluate(scored, cfg, s.val_x, s.val_y, device)
            if not math.isfinite(val_loss):
                raise Diverged(f"validation loss is {val_loss} after epoch {epoch}")
            metrics |= {M.VAL_LOSS: val_loss, M.VAL_ACCURACY: val_acc}
        metrics |= {M.LR: lr, M.EPOCH_TIME: time.perf_counter() - tick}
        history.append(metrics)
        if reporter and reporter.report(epoch, metrics):
            stopped = True
            break
    test_loss, test_acc, test_lp = _evaluate(scored, cfg, s.test_x, s.test_y, device)
    n_params = sum(p.numel() for p in model.parameters())
    result = _result(stopped, history, test_loss, test_acc, n_params, costs.network_macs(scored))
    weights = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
    result.outputs = _outputs(s, val_lp.exp() if s.has_val else None, test_lp.exp(), weights)
    return result, lambda x: predict_log_proba(scored, cfg, x, device)


def _train_epoch(
    model: torch.nn.Module,
    ema: WeightEMA | None,
    cfg: dict[str, Any],
    s: Splits,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    generators: tuple[torch.Generator, np.random.Generator],
    device: torch.device,
) -> float:
    model.train()
    gen, rng = generators
    total = torch.zeros((), device=device)
    seen = 0
    for step, idx in enumerate(_batches(len(s.train_x), cfg["batch_size"], gen, device)):
        x = _as_input(s.train_x[idx])
        if is_enabled(cfg):
            x = augment(x, cfg, gen)
        x, target = mix(x, s.train_y[idx], cfg, gen, rng, N_CLASSES)  # target: labels or soft
        with _autocast(cfg, device):
            loss = F.cross_entropy(model(x).float(), target, label_smoothing=cfg["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if ema is not None:
            ema.update()
        total += loss.detach() * len(idx)
        seen += len(idx)
        if step % 100 == 99 and not torch.isfinite(total):  # a sync every 100 steps only
            raise Diverged(f"training loss is {float(total)} at step {step + 1}")
    mean = float(total) / seen
    if not math.isfinite(mean):
        raise Diverged(f"training loss is {mean}")
    return mean


def _batches(
    n: int, size: int, gen: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen, device=device)
    for start in range(0, n, size):
        if n - start >= 2 or start == 0:  # a batch of one breaks batch norm
            yield order[start : start + size]


def _as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 1, 28, 28) -> float in [0, 1]."""
    return images.float() / 255.0


def _evaluate(
    model: torch.nn.Module,
    cfg: dict[str, Any],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
) -> tuple[float, float, torch.Tensor]:
    """Mean log loss, accuracy and the log probabilities of `model`'s (test-time augmented)
    predictions."""
    log_proba = predict_log_proba(model, cfg, x, device)
    loss = F.nll_loss(log_proba, y)
    return float(loss), float((log_proba.argmax(1) == y).float().mean()), log_proba


@torch.no_grad()
def predict_log_proba(
    model: torch.nn.Module, cfg: dict[str, Any], x: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Log class probabilities (n, classes) for uint8 images `x`, averaged over `tta` shifted
    views besides the image itself (the mean of probabilities, not of logits)."""
    model.eval()
    views = TTA_SHIFTS[: cfg["tta"] + 1]
    chunks = []
    for start in range(0, len(x), EVAL_BATCH):
        images = _as_input(x[start : start + EVAL_BATCH])
        with _autocast(cfg, device):
            logits = [model(shift(images, dy, dx)).float() for dy, dx in views]
        log_probas = torch.stack([F.log_softmax(z, 1) for z in logits])
        chunks.append(torch.logsumexp(log_probas, 0) - math.log(len(views)))
    return torch.cat(chunks)


def _autocast(cfg: dict[str, Any], device: torch.device) -> contextlib.AbstractContextManager:
    if use_bf16(cfg["precision"], device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_TORCH_FP32 = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)


def _set_fp32_precision(precision: str) -> None:
    """precision=fp32 is IEEE fp32: no TF32 in CUDA convolutions (torch's default allows it)
    nor matmuls. Otherwise torch's defaults, restored after an fp32 trial in the same agent."""
    matmul, conv = ("ieee", "ieee") if precision == "fp32" else _TORCH_FP32
    torch.backends.cuda.matmul.fp32_precision = matmul
    torch.backends.cudnn.conv.fp32_precision = conv


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast when asked, or (auto) where the hardware runs bf16 natively."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


def _optimizer(cfg: dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    params, lr, wd = list(model.parameters()), cfg["lr"], cfg["weight_decay"]
    # One fused kernel for all parameters instead of a loop of small ops per tensor: the
    # starter CNN's Adam step takes 1.0 ms instead of 2.5 on the CPU (Xeon, 2026-12-02).
    speed = {"fused": True} if params[0].device.type in ("cpu", "cuda") else {}
    name = cfg["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            weight_decay=wd,
            momentum=cfg["momentum"],
            nesterov=cfg["nesterov"] and cfg["momentum"] > 0,
            **speed,
        )
    if name == "adadelta":  # no fused kernel: the multi-tensor one
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd, foreach=bool(speed))
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return optimizers[name](params, lr=lr, weight_decay=wd, **speed)


def _schedule(cfg: dict[str, Any], optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    if cfg["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg["lr"], total_steps=total_steps
        )
    return None


def _result(
    stopped: bool,
    history: list[dict[str, float]],
    test_loss: float,
    test_acc: float,
    n_params: int,
    macs: int,
) -> TrialResult:
    summary: dict[str, float] = {}
    if M.VAL_ACCURACY in history[-1]:  # not in a refit: it has no validation split
        best = max(history, key=lambda m: m[M.VAL_ACCURACY])
        summary = {
            M.VAL_ACCURACY: history[-1][M.VAL_ACCURACY],
            M.VAL_LOSS: history[-1][M.VAL_LOSS],
            M.VAL_BEST_ACCURACY: best[M.VAL_ACCURACY],
            M.VAL_BEST_EPOCH: best[M.EPOCH],
        }
    summary |= {
        M.TEST_ACCURACY: test_acc,
        M.TEST_LOSS: test_loss,
        M.KMNIST_VAL_ACC: test_acc,  # the original W&B benchmark's key: test accuracy
        M.EPOCHS: len(history),
        M.PARAMETERS: n_params,
        M.MACS: macs,
    }
    return TrialResult("stopped" if stopped else "completed", summary, history)
