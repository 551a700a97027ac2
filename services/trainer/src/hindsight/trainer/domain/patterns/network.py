"""The playbook's Pattern-CNN: three conv blocks, GAP, FC(128), FC(64) = the embedding.

Input ``[N, 64, 64, 3]`` (the images' HWC layout; the graph transposes to NCHW itself).
Each block is conv 3×3 (padding 1) - BatchNorm - ReLU - max-pool 2 (64 → 32 → 16 → 8);
then global average pooling, FC(128) + ReLU, FC(64). The L2-normalised FC(64) output is
``embed``; the classification head reads ``embed`` (so same-pattern windows must lie close on
the sphere for the classifier to work) and the ``pole_katr`` head (softplus, >= 0) reads the
un-normalised FC(64) output after a ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

__all__ = ["EMBED_DIM", "POLE_SCALE", "CalibratedPatternCNN", "PatternCNN"]

EMBED_DIM = 64
POLE_SCALE = 10.0
"""The pole head predicts ``pole_katr / POLE_SCALE`` (poles run to ~20 ATR)."""


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class PatternCNN(nn.Module):
    """Returns ``(logits [N, C], pole_katr [N], embed [N, 64])``."""

    def __init__(self, n_classes: int, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes: needs at least 2, got {n_classes}")
        w1, w2, w3 = widths
        self.n_classes = n_classes
        self.widths = widths
        self.features = nn.Sequential(_block(3, w1), _block(w1, w2), _block(w2, w3))
        self.fc1 = nn.Linear(w3, 128)
        self.fc2 = nn.Linear(128, EMBED_DIM)
        self.classify = nn.Linear(EMBED_DIM, n_classes)
        # The embedding is a unit vector: a learnt scale lets the logits grow past ±|w|.
        self.logit_scale = nn.Parameter(torch.tensor(8.0))
        self.pole = nn.Linear(EMBED_DIM, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.features(images.permute(0, 3, 1, 2))
        x = x.mean(dim=(2, 3))
        hidden = self.fc2(F.relu(self.fc1(x)))
        embed = F.normalize(hidden, dim=1, eps=1e-8)
        logits = self.classify(embed) * self.logit_scale
        pole = F.softplus(self.pole(F.relu(hidden))).squeeze(1) * POLE_SCALE
        return logits, pole, embed


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
