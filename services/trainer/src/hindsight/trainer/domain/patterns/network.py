"""The playbook's Pattern-CNN: three conv blocks, GAP, FC(128), FC(64) = the embedding.

Input ``[N, 64, 64, 3]`` (the images' HWC layout; the graph transposes to NCHW itself).
Each block is conv 3×3 (padding 1) - BatchNorm - ReLU - max-pool 2 (64 → 32 → 16 → 8);
then global average pooling, FC(128) + ReLU, FC(64). The L2-normalised FC(64) output is
``embed``; the classification head reads ``embed`` (so same-pattern windows must lie close on
the sphere for the classifier to work). The pole head (softplus, >= 0) reads the FC(128)
output and estimates the pole height *given* a pole pattern (it is trained on flag and
blow-off windows only); the output ``pole_katr`` is that height times the model's probability
of a pole pattern (softmax of the logits over ``pole_classes``), so it tends to 0 where the
model sees none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

from hindsight.trainer.domain.patterns.detectors import CLASSES

__all__ = ["EMBED_DIM", "POLE_CLASSES", "POLE_SCALE", "CalibratedPatternCNN", "PatternCNN"]

EMBED_DIM = 64
POLE_SCALE = 10.0
"""The pole head predicts ``pole_katr / POLE_SCALE`` (poles run to ~20 ATR)."""
POLE_CLASSES = (CLASSES.index("flag"), CLASSES.index("blow_off"))
"""The classes with a pole (the others have ``pole_katr`` = 0 by definition)."""


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class PatternCNN(nn.Module):
    """Returns ``(logits [N, C], pole_katr [N], embed [N, 64])``."""

    def __init__(
        self,
        n_classes: int,
        widths: tuple[int, int, int] = (16, 32, 64),
        *,
        pole_classes: tuple[int, ...] = POLE_CLASSES,
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes: needs at least 2, got {n_classes}")
        if not pole_classes or not all(0 <= c < n_classes for c in pole_classes):
            raise ValueError(f"pole_classes: {pole_classes} must be class ids < {n_classes}")
        self.pole_classes = pole_classes
        w1, w2, w3 = widths
        self.n_classes = n_classes
        self.widths = widths
        self.features = nn.Sequential(_block(3, w1), _block(w1, w2), _block(w2, w3))
        self.fc1 = nn.Linear(w3, 128)
        self.fc2 = nn.Linear(128, EMBED_DIM)
        self.classify = nn.Linear(EMBED_DIM, n_classes)
        # The embedding is a unit vector: a learnt scale lets the logits grow past ±|w|.
        self.logit_scale = nn.Parameter(torch.tensor(8.0))
        self.pole = nn.Linear(128, 1)

    def heads(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, pole height given a pole pattern, embed)``: what training fits."""
        x = self.features(images.permute(0, 3, 1, 2))
        x = x.mean(dim=(2, 3))
        wide = F.relu(self.fc1(x))
        hidden = self.fc2(wide)
        embed = F.normalize(hidden, dim=1, eps=1e-8)
        logits = self.classify(embed) * self.logit_scale
        pole = F.softplus(self.pole(wide)).squeeze(1) * POLE_SCALE
        return logits, pole, embed

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, pole, embed = self.heads(images)
        gate = torch.softmax(logits, dim=1)[:, list(self.pole_classes)].sum(dim=1)
        return logits, pole * gate, embed


class CalibratedPatternCNN(nn.Module):
    """The exported graph: ``(probabilities = softmax(logits / T), pole_katr, embed)``."""

    def __init__(self, model: PatternCNN, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        self.model = model
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, pole, embed = self.model(images)
        inv_t: torch.Tensor = self.inv_temperature  # type: ignore[assignment]
        return torch.softmax(logits * inv_t, dim=1), pole, embed
