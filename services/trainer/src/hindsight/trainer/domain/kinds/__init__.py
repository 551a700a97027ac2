"""Model kinds: what a kind owns (objective, fit, calibration, metrics, ONNX, gates).

:class:`ModelKind` is the protocol; :class:`BinaryKind` (calibrated classifier, output
``probabilities``) and :class:`QuantileKind` (one booster per alpha, output ``quantiles``)
implement it. A new kind is one module here plus its tests.
"""

from hindsight.trainer.domain.kinds.base import Block, FittedModel, ModelKind
from hindsight.trainer.domain.kinds.binary import BinaryKind
from hindsight.trainer.domain.kinds.quantile import QuantileKind

__all__ = ["BinaryKind", "Block", "FittedModel", "ModelKind", "QuantileKind"]
