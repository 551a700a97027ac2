"""Training the Pattern-CNN: AdamW, cosine schedule, early stop, augmentation, calibration.

Loss: class-weighted cross-entropy (``focal_gamma = 0``) or class-weighted focal loss, plus
``pole_weight ×`` the L1 error of the pole head / ``POLE_SCALE`` on flag and blow-off
windows (the head estimates the height given a pole; see ``network``). Augmentation keeps the
pattern: each training image moves up or down by at most ``shift_rows`` rows (the price
level, not the shape) and gets a brightness factor in ``1 ± brightness`` and multiplicative
Gaussian noise of ``noise`` on its drawn pixels (the background stays 0; clipped to [0, 1]).
The weights with the lowest validation loss (no augmentation) are kept; training stops after
``patience`` epochs without improvement, but not before ``min_epochs`` (the BatchNorm
running statistics make the first epochs' validation loss noisy). The temperature minimises
the validation NLL over a log grid of 0.05..20. Seeded and deterministic on CPU: one
``torch.Generator`` drives shuffling and augmentation, deterministic algorithms are on, and
torch runs on ``num_threads`` threads (restored afterwards).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from hindsight.trainer.domain.patterns.dataset import PatternDataset, class_weights
from hindsight.trainer.domain.patterns.detectors import CLASSES
from hindsight.trainer.domain.patterns.network import POLE_CLASSES, POLE_SCALE, PatternCNN

__all__ = ["Outputs", "TrainConfig", "TrainedPatternCNN", "fit_temperature", "predict", "train"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters (defaults: the bench's)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 5
    min_epochs: int = 8
    focal_gamma: float = 0.0
    pole_weight: float = 1.0
    shift_rows: int = 2
    brightness: float = 0.1
    noise: float = 0.05
    widths: tuple[int, int, int] = (16, 32, 64)
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "min_epochs", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        for name in ("learning_rate", "weight_decay", "focal_gamma", "pole_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")


@dataclass(frozen=True, slots=True)
class Outputs:
    """A model's outputs on some windows, as numpy arrays."""

    logits: npt.NDArray[np.float32]
    pole_katr: npt.NDArray[np.float32]
    embed: npt.NDArray[np.float32]

    def probabilities(self, temperature: float = 1.0) -> npt.NDArray[np.float64]:
        """Softmax of ``logits / temperature``."""
        z = self.logits.astype(np.float64) / temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TrainedPatternCNN:
    """The best-on-validation network, its temperature and the training record."""

    model: PatternCNN
    temperature: float
    epochs_run: int
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    classes: tuple[str, ...] = CLASSES


_POLE_IDS = torch.tensor(POLE_CLASSES)


@contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before_det)
        torch.set_num_threads(before_threads)


def _augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    if cfg.shift_rows > 0:
        shifts = torch.randint(-cfg.shift_rows, cfg.shift_rows + 1, (n,), generator=gen)
        rows = torch.arange(x.shape[1])
        src = rows.unsqueeze(0) - shifts.unsqueeze(1)  # [n, H]: the row each row reads
        valid = ((src >= 0) & (src < x.shape[1])).to(x.dtype)
        src = src.clamp(0, x.shape[1] - 1)
        x = torch.gather(x, 1, src[:, :, None, None].expand_as(x)) * valid[:, :, None, None]
    if cfg.brightness > 0:
        x = x * (1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * cfg.brightness)
    if cfg.noise > 0:
        # Noise on the ink only: the empty background stays exactly 0, as at inference.
        x = x * (1 + torch.randn(x.shape, generator=gen) * cfg.noise)
    return x.clamp(0.0, 1.0)


def _loss(
    logits: torch.Tensor,
    pole: torch.Tensor,
    y: torch.Tensor,
    pole_y: torch.Tensor,
    weights: torch.Tensor,
    cfg: TrainConfig,
) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=1)
    logp_y = logp.gather(1, y.unsqueeze(1)).squeeze(1)
    w = weights[y]
    focal = (1 - logp_y.exp()).pow(cfg.focal_gamma) if cfg.focal_gamma > 0 else 1.0
    cls = -(w * focal * logp_y).sum() / w.sum().clamp_min(1e-12)
    has_pole = torch.isin(y, _POLE_IDS).to(pole.dtype)
    err = (pole - pole_y).abs() / POLE_SCALE
    return cls + cfg.pole_weight * (err * has_pole).sum() / has_pole.sum().clamp_min(1.0)


def predict(model: PatternCNN, images: npt.ArrayLike, batch_size: int = 256) -> Outputs:
    """The model's logits, ``pole_katr`` and embeddings in eval mode."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    model.eval()
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            parts.append(model(x[i : i + batch_size]))
    if not parts:
        c = model.n_classes
        return Outputs(
            np.zeros((0, c), np.float32), np.zeros(0, np.float32), np.zeros((0, 64), np.float32)
        )
    return Outputs(
        torch.cat([p[0] for p in parts]).numpy(),
        torch.cat([p[1] for p in parts]).numpy(),
        torch.cat([p[2] for p in parts]).numpy(),
    )


def fit_temperature(logits: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The temperature in 0.05..20 (log grid, 401 points) minimising the NLL."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    best_t, best_nll = 1.0, np.inf
    for t in np.geomspace(0.05, 20.0, 401):
        s = z / t
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        nll = float(-logp[np.arange(len(y)), y].mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def _epoch_loss(
    model: PatternCNN, data: PatternDataset, weights: torch.Tensor, cfg: TrainConfig
) -> float:
    model.eval()
    with torch.no_grad():
        logits, pole, _ = model.heads(torch.from_numpy(data.images))
    return float(
        _loss(
            logits,
            pole,
            torch.from_numpy(data.labels),
            torch.from_numpy(data.pole_katr),
            weights,
            cfg,
        )
    )


def train(
    train_set: PatternDataset,
    validation: PatternDataset,
    config: TrainConfig | None = None,
) -> TrainedPatternCNN:
    """Fit, early-stop on the validation loss and calibrate the temperature there."""
    cfg = config or TrainConfig()
    if len(train_set) == 0 or len(validation) == 0:
        raise ValueError("train_set/validation: both need samples")
    started = time.perf_counter()
    with _deterministic(cfg.num_threads):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = PatternCNN(len(CLASSES), cfg.widths)
        weights = torch.from_numpy(class_weights(train_set.labels, len(CLASSES)))
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        steps = cfg.epochs * max(1, -(-len(train_set) // cfg.batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        x_all = torch.from_numpy(train_set.images)
        y_all = torch.from_numpy(train_set.labels)
        p_all = torch.from_numpy(train_set.pole_katr)
        best_loss, best_epoch, best_state = np.inf, 0, copy.deepcopy(model.state_dict())
        history: list[dict[str, float]] = []
        epoch = 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(len(train_set), generator=gen)
            total = 0.0
            for i in range(0, len(order), cfg.batch_size):
                b = order[i : i + cfg.batch_size]
                if len(b) < 2:
                    continue  # BatchNorm needs two samples
                logits, pole, _ = model.heads(_augment(x_all[b], cfg, gen))
                loss = _loss(logits, pole, y_all[b], p_all[b], weights, cfg)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
            val = _epoch_loss(model, validation, weights, cfg)
            history.append({"epoch": epoch, "train_loss": total / len(train_set), "val_loss": val})
            if val < best_loss:
                best_loss, best_epoch = val, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch >= cfg.min_epochs and epoch - best_epoch >= cfg.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
        temperature = fit_temperature(predict(model, validation.images).logits, validation.labels)
    return TrainedPatternCNN(
        model=model,
        temperature=temperature,
        epochs_run=epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
        history=history,
    )
