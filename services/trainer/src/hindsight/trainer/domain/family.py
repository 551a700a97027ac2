"""Train a model family (entry experts + pooled, risk, rr, offset) as one release.

``train_family(frame, config)`` is pure (it reads a previous release only in incremental
mode); ``write_release(root, release)`` writes ``families/{family}/{version}/``: every
member's ONNX graph, the LightGBM text of its boosters and one ``metrics.json``
(a :class:`~hindsight.common.family.FamilyCard`).

The frame: see :mod:`.family_frame` (a dict of columns or a pandas DataFrame with ``ts``,
``closed_at``, ``symbol``, ``liquidity_cluster``, the targets ``y_entry``, ``sl_katr``,
``rr_target``, ``offset_katr``, optional ``realised_r``, ``signal_id``, ``timeframe``,
``side``, and the features). One time split for the whole frame (:mod:`.splits`: train /
validation / test blocks with embargo and purge), so every member faces the same untouched
time-later test block:

* entry: ``entry_pooled`` trains on every row with :data:`CLUSTER_FEATURE` as one more
  input; ``entry_{H,M,L}`` trains on its cluster's rows only. Per cluster the expert is
  routed only when it beats the pooled model on that cluster's VALIDATION rows: higher
  ROC-AUC and, in a paired bootstrap of those rows, better in at least
  ``expert_confidence`` of the resamples (a one-sided test, so noise alone keeps the pooled
  model, which sees three times the data). Both are reported on the test rows; the test
  block chooses nothing. Each member is calibrated on its own validation rows.
* risk / rr / offset: quantile members on the rows whose target is known.

Incremental mode (``init_from`` = a previous release directory): each booster continues
the previous release's booster of the same member (LightGBM ``init_model``) on the newest
``incremental_window`` share of the train block; validation and test blocks are the same as
a full run's, so both face the same time-later rows. A member without a usable previous
booster (absent, or other features) is trained from scratch and says so (``init``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from hindsight.common.artifacts import METRICS_FILE, validate_name
from hindsight.common.family import (
    CLUSTER_FEATURE,
    CLUSTERS,
    DEFAULT_FAMILY,
    HEAD_TARGETS,
    SERVED_ALPHAS,
    FamilyCard,
    FamilyMember,
    Head,
    family_dir,
    family_uri,
    load_family_card,
    parse_version,
)
from hindsight.trainer.domain.family_frame import ColumnSource, FamilyFrame
from hindsight.trainer.domain.fitting import Fitter
from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.kinds import BinaryKind, Block, FittedModel, ModelKind, QuantileKind
from hindsight.trainer.domain.metrics import classification_metrics, roc_auc
from hindsight.trainer.domain.splits import Blocks, split_blocks
from hindsight.trainer.domain.training import TrainingParams

__all__ = [
    "MAX_RECOMMENDED_COVERAGE_ERROR",
    "FamilyConfig",
    "FamilyRelease",
    "ProductionComparison",
    "expert_vs_pooled",
    "family_recommendation",
    "quantile_kinds",
    "train_family",
    "with_production",
    "write_release",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
QUANTILE_HEADS: tuple[Head, ...] = ("risk", "rr", "offset")
MAX_RECOMMENDED_COVERAGE_ERROR = 0.05
"""A served quantile head further than this from its alpha on the test block: REJECT."""


@dataclass(frozen=True, slots=True)
class FamilyConfig:
    """Everything that shapes a family release (recorded in its card)."""

    family: str = DEFAULT_FAMILY
    version: str = "v1_0_0"
    training_run_id: str = "local"
    feature_schema_version: int = 1
    feature_schema_hash: str | None = None
    label_spec: str | None = None
    features: tuple[str, ...] | None = None
    """Feature columns in order; None: every non-reserved column of the frame."""
    params: TrainingParams = field(default_factory=TrainingParams)
    """Booster parameters, split, bootstrap resamples and parity tolerance of every member."""
    entry: BinaryKind = field(default_factory=BinaryKind)
    alphas: Mapping[Head, tuple[float, ...]] = field(
        default_factory=lambda: {
            "risk": (0.6, 0.7, 0.8),
            "rr": (0.5, 0.6, 0.7),
            "offset": (0.4, 0.5, 0.6),
        }
    )
    fixed_target_r: float = 2.0
    """The RR head's utility is compared with a fixed target of this many R."""
    min_expert_rows: int = 200
    """A cluster with fewer train rows gets no expert (routed to ``entry_pooled``)."""
    expert_confidence: float = 0.95
    expert_resamples: int = 500
    init_from: Path | None = None
    fitter: Fitter | None = field(default=None, compare=False, repr=False)
    """Where boosters are fitted: in process when None, or a Dask cluster's
    (``hindsight.trainer.dask_fitting.DaskFitter``); incremental runs stay in process."""
    """Incremental mode: the previous release's directory (see the module docstring)."""
    incremental_window: float = 0.5
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.incremental_window <= 1.0:
            raise ValueError("incremental_window must lie in (0, 1]")
        if not 0.0 < self.expert_confidence < 1.0:
            raise ValueError("expert_confidence must lie in (0, 1)")
        if self.min_expert_rows < 1 or self.expert_resamples < 1:
            raise ValueError("min_expert_rows and expert_resamples must be >= 1")
        missing = [h for h in QUANTILE_HEADS if h not in self.alphas]
        if missing:
            raise ValueError(f"alphas: no alphas for {missing}")


@dataclass(frozen=True, slots=True)
class FamilyRelease:
    """A trained release in memory: its card and every file of its directory."""

    card: FamilyCard
    files: dict[str, bytes]
    """File name (relative to the release directory) → content, ``metrics.json`` excepted."""
    timings_s: dict[str, float]


def quantile_kinds(config: FamilyConfig) -> dict[Head, QuantileKind]:
    """The quantile kind of each quantile head (alphas from the config, served per contract)."""
    return {
        head: QuantileKind(
            alphas=tuple(config.alphas[head]),
            served_alpha=SERVED_ALPHAS[head],
            fixed_target_r=config.fixed_target_r if head == "rr" else None,
            entry_style=head == "offset",
        )
        for head in QUANTILE_HEADS
    }


class _RankedScores:
    """Scores sorted once; the ROC-AUC of a bootstrap resample (row counts) in O(n)."""

    def __init__(self, y: FloatArray, p: FloatArray) -> None:
        p = np.asarray(p, dtype=np.float64)
        self.order = np.argsort(p, kind="mergesort")
        self.ys = np.asarray(y, dtype=np.float64)[self.order]
        self.starts = np.r_[0, np.flatnonzero(np.diff(p[self.order])) + 1]

    def auc(self, counts: FloatArray) -> float | None:
        """AUC with row ``i`` counted ``counts[i]`` times (ties half); None for one class."""
        c = counts[self.order]
        pos = np.add.reduceat(c * self.ys, self.starts)
        neg = np.add.reduceat(c * (1.0 - self.ys), self.starts)
        total_pos, total_neg = float(pos.sum()), float(neg.sum())
        if total_pos == 0 or total_neg == 0:
            return None
        below = np.cumsum(neg) - neg
        return float((pos @ below + 0.5 * (pos @ neg)) / (total_pos * total_neg))


def expert_vs_pooled(
    y: FloatArray,
    p_expert: FloatArray,
    p_pooled: FloatArray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> JsonObject:
    """Paired bootstrap of the ROC-AUC difference on the same rows; ``expert_wins`` when
    the expert's AUC is higher and it is higher in >= ``confidence`` of the resamples."""
    auc_e, auc_p = roc_auc(y, p_expert), roc_auc(y, p_pooled)
    rng = np.random.default_rng(seed)
    n = len(y)
    expert, pooled = _RankedScores(y, p_expert), _RankedScores(y, p_pooled)
    wins = counted = 0
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        a, b = expert.auc(counts), pooled.auc(counts)
        if a is None or b is None:
            continue
        counted += 1
        wins += a > b
    share = wins / counted if counted else 0.0
    return {
        "rows": n,
        "expert_roc_auc": auc_e,
        "pooled_roc_auc": auc_p,
        "bootstrap_share_expert_better": share,
        "resamples": counted,
        "confidence": confidence,
        "expert_wins": bool(auc_e > auc_p and share >= confidence),
    }


@dataclass(slots=True)
class _Trained:
    name: str
    head: Head
    kind: ModelKind
    model: FittedModel
    features: list[str]
    cluster: str | None
    test_x: FloatArray
    metrics: JsonObject
    rows: dict[str, int]
    init: str
    nan_allowed: list[str]


def _as_frame(frame: FamilyFrame | ColumnSource, config: FamilyConfig) -> FamilyFrame:
    if isinstance(frame, FamilyFrame):
        return frame
    return FamilyFrame.from_columns(frame, features=config.features)


@dataclass(frozen=True, slots=True)
class _Previous:
    """A member of the release an incremental run continues."""

    features: list[str]
    alphas: list[float]
    boosters: list[lgb.Booster]


def _previous_boosters(config: FamilyConfig) -> dict[str, _Previous]:
    """Member name → its features, alphas and boosters (alpha order) in the release to continue."""
    if config.init_from is None:
        return {}
    card = load_family_card(config.init_from)
    out: dict[str, _Previous] = {}
    for member in card.members:
        files = (member.model_extra or {}).get("booster_files") or (
            [member.booster_file] if member.booster_file else []
        )
        if files:
            boosters = [lgb.Booster(model_file=str(config.init_from / f)) for f in files]
            out[member.name] = _Previous(list(member.features), list(member.alphas), boosters)
    return out


def _block(
    x: FloatArray,
    y: FloatArray,
    idx: IntArray,
    *,
    r: FloatArray | None = None,
    group: npt.NDArray[np.object_] | None = None,
) -> Block:
    return Block(
        x=x[idx],
        y=y[idx],
        r=None if r is None else r[idx],
        group=None if group is None else group[idx],
    )


class _Trainer:
    """One run: the frame's blocks and the members trained on them."""

    def __init__(self, frame: FamilyFrame, config: FamilyConfig) -> None:
        self.frame = frame
        self.config = config
        self.params = config.params
        self.blocks: Blocks = split_blocks(frame.ts, frame.closed, config.params.split)
        self.previous = _previous_boosters(config)
        train = self.blocks.train
        if config.init_from is not None:
            keep = max(1, int(round(len(train) * config.incremental_window)))
            train = train[len(train) - keep :]
        self.train_idx = train
        self.groups = frame.day_groups
        self.trained: list[_Trained] = []

    def _init_for(
        self, name: str, features: list[str], alphas: list[float]
    ) -> tuple[list[lgb.Booster] | None, str]:
        if self.config.init_from is None:
            return None, "full"
        found = self.previous.get(name)
        if found is None:
            return None, "no previous booster: trained from scratch"
        if found.features != features or found.alphas != alphas:
            return None, "previous member has other features or alphas: trained from scratch"
        return found.boosters, f"continued {self.config.init_from.name}"

    def fit(
        self,
        name: str,
        head: Head,
        kind: ModelKind,
        x: FloatArray,
        features: list[str],
        rows: IntArray,
        *,
        cluster: str | None = None,
    ) -> _Trained:
        """Fit one member on the rows of ``rows`` in each block, evaluate it on the test rows."""
        y = self.frame.targets[HEAD_TARGETS[head]]
        usable = np.zeros(len(y), dtype=bool)
        usable[rows] = True
        usable &= np.isfinite(y)
        tr, va, te = (
            b[usable[b]] for b in (self.train_idx, self.blocks.validation, self.blocks.test)
        )
        for block_name, block in (("train", tr), ("validation", va), ("test", te)):
            if len(block) == 0:
                raise ValueError(f"member {name}: the {block_name} block has no rows")
        r = self.frame.realised_r
        alphas = list(kind.alphas) if isinstance(kind, QuantileKind) else []
        init, note = self._init_for(name, features, alphas)
        try:
            model = kind.fit(
                _block(x, y, tr),
                _block(x, y, va),
                self.params,
                feature_names=features,
                init_models=init,
                fitter=self.config.fitter,
            )
        except ValueError as exc:
            raise ValueError(f"member {name}: {exc}") from exc
        test = _block(x, y, te, r=r, group=self.groups)
        metrics = kind.evaluate(model, test, self.params)
        trained = _Trained(
            name=name,
            head=head,
            kind=kind,
            model=model,
            features=features,
            cluster=cluster,
            test_x=test.x,
            metrics=metrics,
            rows={"train": len(tr), "validation": len(va), "test": len(te)},
            init=note,
            nan_allowed=[f for j, f in enumerate(features) if bool(np.isnan(x[tr, j]).any())],
        )
        self.trained.append(trained)
        return trained


def _entry(trainer: _Trainer, config: FamilyConfig) -> tuple[dict[str, str], JsonObject]:
    frame = trainer.frame
    codes = frame.cluster_codes
    x_pooled = np.column_stack([frame.x, codes])
    pooled_features = [*frame.feature_names, CLUSTER_FEATURE]
    every = np.arange(len(frame), dtype=np.int64)
    pooled = trainer.fit("entry_pooled", "entry", config.entry, x_pooled, pooled_features, every)
    y = frame.targets[HEAD_TARGETS["entry"]]
    routing: dict[str, str] = {}
    selection: JsonObject = {}
    for cluster in CLUSTERS:
        rows = np.flatnonzero(frame.cluster == cluster).astype(np.int64)
        in_train = np.isin(trainer.train_idx, rows)
        report: JsonObject = {"rows": len(rows)}
        selection[cluster] = report
        routing[cluster] = "entry_pooled"
        if int(np.sum(in_train)) < config.min_expert_rows:
            report["decision"] = "pooled"
            report["reason"] = f"fewer than {config.min_expert_rows} train rows: no expert"
            continue
        try:
            expert = trainer.fit(
                f"entry_{cluster}",
                "entry",
                config.entry,
                frame.x,
                list(frame.feature_names),
                rows,
                cluster=cluster,
            )
        except ValueError as exc:
            report["decision"] = "pooled"
            report["reason"] = f"no expert: {exc}"
            continue
        va = trainer.blocks.validation[np.isin(trainer.blocks.validation, rows)]
        te = trainer.blocks.test[np.isin(trainer.blocks.test, rows)]
        kind = config.entry
        compare = expert_vs_pooled(
            y[va],
            kind.predict(expert.model, frame.x[va]),
            kind.predict(pooled.model, x_pooled[va]),
            resamples=config.expert_resamples,
            confidence=config.expert_confidence,
            seed=config.params.seed,
        )
        wins = compare["expert_wins"]
        routing[cluster] = expert.name if wins else "entry_pooled"
        report["decision"] = "expert" if wins else "pooled"
        report["validation"] = compare
        p_pool_te = kind.predict(pooled.model, x_pooled[te])
        report["test"] = {
            "expert": _entry_summary(y[te], kind.predict(expert.model, frame.x[te]), config),
            "pooled": _entry_summary(y[te], p_pool_te, config),
        }
    return routing, selection


def _entry_summary(y: FloatArray, p: FloatArray, config: FamilyConfig) -> JsonObject:
    m = classification_metrics(
        y.astype(np.int64),
        p,
        threshold=config.entry.threshold,
        bootstrap_resamples=0,
        seed=config.params.seed,
    )
    return {k: m[k] for k in ("n", "roc_auc", "pr_auc", "brier", "log_loss", "ece")}


def _routed_headline(
    trainer: _Trainer, routing: dict[str, str], config: FamilyConfig
) -> JsonObject:
    """The entry head as served: each test row answered by its cluster's routed member."""
    frame = trainer.frame
    te = trainer.blocks.test
    by_name = {t.name: t for t in trainer.trained}
    x_pooled = np.column_stack([frame.x, frame.cluster_codes])
    p = np.empty(len(te))
    served_by = np.array(
        [routing.get(str(c), "entry_pooled") for c in frame.cluster[te]], dtype=object
    )
    for name in dict.fromkeys(served_by.tolist()):
        member = by_name[name]
        x = x_pooled if member.name == "entry_pooled" else frame.x
        mask = served_by == name
        p[mask] = config.entry.predict(member.model, x[te[mask]])
    y = frame.targets[HEAD_TARGETS["entry"]][te].astype(np.int64)
    m = classification_metrics(
        y,
        p,
        threshold=config.entry.threshold,
        bootstrap_resamples=config.params.bootstrap_resamples,
        seed=config.params.seed,
    )
    return {
        "roc_auc": m["roc_auc"],
        "roc_auc_ci95": m["roc_auc_ci95"],
        "pr_auc": m["pr_auc"],
        "brier": m["brier"],
        "ece": m["ece"],
        "log_loss": m["log_loss"],
        "test_rows": len(te),
    }


def _member(
    trained: _Trained, config: FamilyConfig, routed: bool
) -> tuple[FamilyMember, dict[str, bytes]]:
    kind, model = trained.kind, trained.model
    onnx_bytes = kind.export(model)
    parity = kind.check_parity(
        onnx_bytes, model, trained.test_x, tolerance=config.params.parity_tolerance
    )
    name = trained.name
    files = {f"{name}.onnx": onnx_bytes}
    if model.kind == "quantile":
        booster_files = [f"{name}_a{round(a * 100):03d}.txt" for a in model.alphas]
        served = booster_files[model.alphas.index(float(model.served_alpha or 0.0))]
    else:
        booster_files = [f"{name}.txt"]
        served = booster_files[0]
    for file, booster in zip(booster_files, model.boosters, strict=True):
        files[file] = booster.model_to_string().encode()
    member = FamilyMember(
        name=name,
        head=trained.head,
        kind=model.kind,
        target=HEAD_TARGETS[trained.head],
        version=config.version,
        file=f"{name}.onnx",
        booster_file=served,
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        features=trained.features,
        nan_allowed=trained.nan_allowed,
        output=kind.output,
        alphas=list(model.alphas),
        served_alpha=model.served_alpha,
        value_range=model.value_range,
        cluster=trained.cluster,
        calibration=model.calibrator.to_dict() if model.calibrator else None,
        metrics=jsonable(
            {
                "headline": kind.gate_figures(trained.metrics),
                "test": trained.metrics,
                "validation": model.validation,
                "parity": parity,
                "rows": trained.rows,
                "trees": [b.num_trees() for b in model.boosters],
                "init": trained.init,
                "lightgbm_params": model.params,
            }
        ),
        booster_files=booster_files,
        routed=routed,
    )
    return member, files


def train_family(frame: FamilyFrame | ColumnSource, config: FamilyConfig) -> FamilyRelease:
    """Train every member of a family on ``frame`` and build its release (not yet written).

    Raises ``InvalidInputError`` for a bad frame (naming the column), ``ValueError`` for too
    few rows or a member that cannot be trained, ``ParityError`` when ONNX disagrees.
    """
    validate_name(config.family, field="family")
    parse_version(config.version, field="version")
    started = time.perf_counter()
    data = _as_frame(frame, config)
    trainer = _Trainer(data, config)
    timings: dict[str, float] = {"prepare": time.perf_counter() - started}

    t = time.perf_counter()
    routing, selection = _entry(trainer, config)
    timings["entry"] = time.perf_counter() - t
    t = time.perf_counter()
    kinds = quantile_kinds(config)
    every = np.arange(len(data), dtype=np.int64)
    for head in QUANTILE_HEADS:
        trainer.fit(head, head, kinds[head], data.x, list(data.feature_names), every)
    timings["quantile"] = time.perf_counter() - t

    t = time.perf_counter()
    members: list[FamilyMember] = []
    files: dict[str, bytes] = {}
    routed_names = set(routing.values())
    for trained in trainer.trained:
        routed = trained.head != "entry" or trained.name in routed_names
        member, member_files = _member(trained, config, routed)
        members.append(member)
        files.update(member_files)
    timings["export"] = time.perf_counter() - t

    blocks = trainer.blocks
    te = blocks.test
    headline: JsonObject = _routed_headline(trainer, routing, config)
    by_name = {m.name: m for m in members}
    for head in QUANTILE_HEADS:
        head_figures = by_name[head].metrics["headline"]
        headline[f"{head}_coverage"] = head_figures["coverage"]
        headline[f"{head}_coverage_error"] = head_figures["coverage_error"]
    headline["entry_style_accuracy"] = (
        by_name["offset"].metrics["headline"].get("entry_style_accuracy")
    )
    headline["rr_utility_gain_r"] = by_name["rr"].metrics["headline"].get("utility_gain_r")
    for head in QUANTILE_HEADS:
        head_figures = by_name[head].metrics["headline"]
        headline[f"{head}_pinball"] = head_figures["pinball"]
        headline[f"{head}_baseline_pinball"] = head_figures["baseline_pinball"]
    headline["mode"] = "incremental" if config.init_from is not None else "full"
    timings["total"] = time.perf_counter() - started
    card = FamilyCard(
        family=config.family,
        version=config.version,
        training_run_id=config.training_run_id,
        created_at=config.created_at or datetime.now(UTC),
        feature_schema_version=config.feature_schema_version,
        feature_schema_hash=config.feature_schema_hash,
        features=list(data.feature_names),
        label_spec=config.label_spec,
        members=members,
        entry_routing=routing,
        metrics=jsonable(
            {
                "headline": headline,
                "entry_selection": selection,
                "mode": headline["mode"],
                "init_from": config.init_from.name if config.init_from else None,
                "rows": {
                    "total": len(data),
                    "train": len(blocks.train),
                    "train_used": len(trainer.train_idx),
                    "validation": len(blocks.validation),
                    "test": len(te),
                    "embargoed": len(blocks.dropped),
                },
                "test_block": {
                    "first_ts_us": int(data.ts[te[0]]),
                    "last_ts_us": int(data.ts[te[-1]]),
                    "rows": len(te),
                },
                "data_time_range_us": {"start": int(data.ts[0]), "end": int(data.ts[-1])},
                "timings_s": timings,
            }
        ),
    )
    return with_production(FamilyRelease(card=card, files=files, timings_s=timings), None)


@dataclass(frozen=True, slots=True)
class ProductionComparison:
    """The production release's routed entry ROC-AUC on the candidate's test rows."""

    version: str
    roc_auc: float | None
    """None: not comparable (another feature schema, unreadable); ``note`` says why."""
    note: str


def family_recommendation(
    headline: Mapping[str, object], production: ProductionComparison | None
) -> JsonObject:
    """PROMOTE / MONITOR / REJECT for a release, from its test-block headline.

    REJECT when the routed entry head has no edge (test ROC-AUC <= 0.5), when a served
    quantile head misses its alpha by more than :data:`MAX_RECOMMENDED_COVERAGE_ERROR`, or
    when one is worse than its constant training quantile (pinball above the baseline's).
    Otherwise PROMOTE when there is no production release, or when the entry ROC-AUC is at
    least production's on the same rows; MONITOR when it is lower or production could not
    be compared (the registry's own margin gate decides what a lower AUC may do).
    """
    reasons: list[str] = []
    auc = _number(headline.get("roc_auc"))
    if auc is None or auc <= 0.5:
        reasons.append(f"entry ROC-AUC {auc} on the test block: no edge")
    for head in QUANTILE_HEADS:
        error = _number(headline.get(f"{head}_coverage_error"))
        if error is None or error > MAX_RECOMMENDED_COVERAGE_ERROR:
            reasons.append(f"{head}: coverage error {error} > {MAX_RECOMMENDED_COVERAGE_ERROR:g}")
        loss = _number(headline.get(f"{head}_pinball"))
        base = _number(headline.get(f"{head}_baseline_pinball"))
        if loss is None or base is None or loss > base:
            reasons.append(f"{head}: pinball {loss} worse than the constant quantile's {base}")
    if reasons:
        return {"decision": "REJECT", "reasons": reasons}
    if production is None:
        return {"decision": "PROMOTE", "reasons": ["no production release"]}
    if production.roc_auc is None:
        return {"decision": "MONITOR", "reasons": [production.note]}
    assert auc is not None
    better = auc >= production.roc_auc
    return {
        "decision": "PROMOTE" if better else "MONITOR",
        "reasons": [
            f"entry ROC-AUC {auc:.4f} vs production {production.version} "
            f"{production.roc_auc:.4f} on the same test rows"
        ],
    }


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def _production_fields(production: ProductionComparison | None) -> JsonObject:
    compared = production is not None and production.roc_auc is not None
    return {
        "production_version": production.version if production is not None else None,
        "production_roc_auc": production.roc_auc if production is not None else None,
        "production_compared": compared,
        "production_note": production.note if production is not None else "none",
    }


def with_production(
    release: FamilyRelease, production: ProductionComparison | None
) -> FamilyRelease:
    """The release with its comparison against production and its recommendation in the
    card's headline (and ``metrics.production``: ``{version, roc_auc}`` when compared, else
    None, the layout the registry's margin gate reads)."""
    metrics = dict(release.card.metrics)
    headline: JsonObject = dict(metrics["headline"])
    headline.update(_production_fields(production))
    detail = family_recommendation(headline, production)
    headline["recommendation"] = detail["decision"]
    headline["recommendation_detail"] = detail
    metrics["headline"] = headline
    metrics["production"] = (
        {"version": production.version, "roc_auc": production.roc_auc}
        if production is not None and production.roc_auc is not None
        else None
    )
    card = release.card.model_copy(update={"metrics": jsonable(metrics)})
    return replace(release, card=card)


def write_release(root: Path, release: FamilyRelease) -> tuple[str, str, FamilyCard]:
    """Write the release under ``root`` → (``artifact_uri``, sha256 of ``metrics.json``, card).

    Written into a temporary sibling directory and renamed into place, so a reader never
    sees half a release; an existing release directory is never overwritten
    (``FileExistsError``).
    """
    card = release.card
    target = family_dir(root, card.family, card.version)
    if target.exists():
        raise FileExistsError(f"release {family_uri(card.family, card.version)} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{card.version}.{os.getpid()}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        for name, content in release.files.items():
            (staging / name).write_bytes(content)
        metrics = card.model_dump_json(indent=2).encode()
        (staging / METRICS_FILE).write_bytes(metrics)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return family_uri(card.family, card.version), hashlib.sha256(metrics).hexdigest(), card
