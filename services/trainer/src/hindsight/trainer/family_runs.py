"""A run of a model family: its frame from the trainer's tables, one release, its figures.

``POST /v1/runs {"model_name": "<family>"}`` (and ``training.requested``) reaches
:meth:`FamilyRuns.train` through the run service, which owns the run's life cycle (one run
per name at a time, the run row, ``training.completed``). A run:

1. picks the label spec (the family's, else the newest seen among its signals);
2. joins the family's signals with that spec's labels (``family_storage``), maps the label
   fields onto the heads' targets (``domain.family_rows``) and runs the data-quality gate
   on them (``y_entry`` as the outcome, the horizon's end as ``closed_at``);
3. trains every member (``domain.family.train_family``; a row without a head's target is
   left out of that head only) and writes ``families/<family>/<version>/``, the version a
   minor over the family's newest release, or the next major when the feature schema
   changed; an incremental run continues the newest release of the same schema;
4. compares the release with the family's production release on the same test rows
   (``family_production``: its routed entry ROC-AUC) and records that and the
   recommendation in the card's headline (``domain.family.with_production``), what the
   registry's release gates read;
5. snapshots the rows as Parquet under the release (``snapshot/``, as single models do,
   plus ``snapshot/family_targets.parquet`` with every head's target and the label spec).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import HEAD_TARGETS, family_dir, load_family_card, parse_version
from hindsight.trainer.domain.family import (
    FamilyConfig,
    FamilyRelease,
    train_family,
    with_production,
    write_release,
)
from hindsight.trainer.domain.family_frame import FamilyFrame
from hindsight.trainer.domain.family_rows import LabelledSignal, training_row
from hindsight.trainer.domain.family_spec import (
    FamilySpec,
    choose_label_spec,
    next_family_version,
)
from hindsight.trainer.domain.fitting import Fitter
from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.quality import QualityConfig, check_quality
from hindsight.trainer.domain.rows import TrainingRow
from hindsight.trainer.domain.splits import split_blocks
from hindsight.trainer.domain.training import TrainingParams, ordered
from hindsight.trainer.family_production import FamilyProduction, ProductionRelease
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.snapshot import SNAPSHOT_DIR, write_snapshot
from hindsight.trainer.storage import RunArtifact, TrainingRun

__all__ = ["TARGETS_FILE", "FamilyRunFailed", "FamilyRuns", "family_columns", "releases_of"]

logger = logging.getLogger(__name__)
TARGETS_FILE = "family_targets.parquet"
"""Under ``snapshot/``: per row its label spec and revision, cluster and every target."""


class FamilyRunFailed(Exception):
    """A family run that ends as failed for the reason in its message (no traceback)."""


def releases_of(root: Path, family: str) -> list[tuple[str, int | None]]:
    """``(version, feature_schema_version)`` of every release of ``family`` under ``root``
    (None where its ``metrics.json`` cannot be read)."""
    base = root / "families" / family
    if not base.is_dir():
        return []
    found: list[tuple[str, int | None]] = []
    for path in base.iterdir():
        try:
            parse_version(path.name)
        except InvalidInputError:
            continue  # a staging directory or anything else
        try:
            schema: int | None = load_family_card(path).feature_schema_version
        except (OSError, ValueError):  # no or an invalid metrics.json (ValidationError)
            schema = None
        found.append((path.name, schema))
    return found


def family_columns(
    rows: Sequence[TrainingRow], feature_names: Sequence[str]
) -> dict[str, list[object]]:
    """The frame's columns (``domain.family_frame``) of rows made by
    :func:`~hindsight.trainer.domain.family_rows.training_row`; a missing target or feature
    is NaN (a head leaves that row out)."""
    nan = float("nan")
    columns: dict[str, list[object]] = {
        name: [nan if (v := r.features.get(name)) is None else v for r in rows]
        for name in feature_names
    }
    # After the features: a feature named like a reserved column is refused by the frame.
    columns |= {
        "ts": [r.ts for r in rows],
        "closed_at": [r.closed_at for r in rows],
        "symbol": [r.symbol for r in rows],
        "timeframe": [r.timeframe for r in rows],
        "side": [r.side for r in rows],
        "signal_id": [r.signal_id for r in rows],
        "liquidity_cluster": [r.extra.get("liquidity_cluster") for r in rows],
        "realised_r": [nan if r.realised_r is None else r.realised_r for r in rows],
    }
    for target in HEAD_TARGETS.values():
        columns[target] = [nan if (t := r.extra.get(target)) is None else t for r in rows]
    return columns


def _row_blocks(frame: FamilyFrame, params: TrainingParams) -> list[str]:
    """Per frame row what the release used it for (the domain's split, recomputed)."""
    blocks = split_blocks(frame.ts, frame.closed, params.split)
    names = np.full(len(frame), "embargoed", dtype=object)
    for name, idx in (
        ("train", blocks.train),
        ("validation", blocks.validation),
        ("test", blocks.test),
    ):
        names[idx] = name
    return [str(n) for n in names]


def _write_targets(
    directory: Path, rows: Sequence[TrainingRow], labelled: Mapping[str, LabelledSignal]
) -> None:
    columns: dict[str, list[object]] = {
        "signal_id": [r.signal_id for r in rows],
        "label_spec": [labelled[r.signal_id].label_spec for r in rows],
        "label_revision": [labelled[r.signal_id].revision for r in rows],
        "liquidity_cluster": [r.extra.get("liquidity_cluster") for r in rows],
        "horizon_end": [r.closed_at for r in rows],
    }
    for target in HEAD_TARGETS.values():
        columns[target] = [r.extra.get(target) for r in rows]
    schema = pa.schema(
        [
            ("signal_id", pa.string()),
            ("label_spec", pa.string()),
            ("label_revision", pa.int32()),
            ("liquidity_cluster", pa.string()),
            ("horizon_end", pa.timestamp("us", tz="UTC")),
            *[(t, pa.float64()) for t in HEAD_TARGETS.values()],
        ]
    )
    pq.write_table(
        pa.Table.from_pydict(columns, schema=schema), directory / TARGETS_FILE, compression="zstd"
    )


class FamilyRuns:
    """Trains the declared families; the run service calls :meth:`train` in a run."""

    def __init__(
        self,
        storage: FamilyStorage,
        *,
        families: Mapping[str, FamilySpec],
        artifact_root: Path,
        params: TrainingParams,
        quality: QualityConfig,
        fitter: Fitter | None = None,
        production: FamilyProduction | None = None,
    ) -> None:
        self.storage = storage
        self.production = production
        """Finds the production release to compare with; None: never compared."""
        self.fitter = fitter
        """Where the members' boosters are fitted (a Dask cluster); None: in process."""
        self.families = dict(families)
        self.artifact_root = artifact_root
        self.params = params
        self.quality = quality

    def get(self, name: str) -> FamilySpec | None:
        """The spec of family ``name``, None when ``name`` is no family."""
        return self.families.get(name)

    async def train(self, run: TrainingRun, report: JsonObject) -> RunArtifact:
        """Train ``run``'s family into a new release; fills ``report`` as it goes.

        Raises :class:`FamilyRunFailed` when there is nothing (good enough) to train on.
        """
        spec = self.families[run.model_name]
        report["family_spec"] = spec.model_dump(mode="json")
        seen = await self.storage.label_stats(spec)
        report["label_specs"] = {s.label_spec: s.labels for s in seen}
        label_spec = choose_label_spec(spec, seen[0].label_spec if seen else None)
        if label_spec is None:
            raise FamilyRunFailed(
                f"family {spec.family}: none of its signals (feature_schema_version "
                f"{spec.feature_schema_version}) has a signal.labeled label yet"
            )
        report["label_spec"] = label_spec
        rows = await self.storage.family_rows(spec, label_spec)
        production = await self.production.find(spec.family) if self.production else None
        return await asyncio.to_thread(self._train, run, spec, label_spec, rows, report, production)

    def _train(
        self,
        run: TrainingRun,
        spec: FamilySpec,
        label_spec: str,
        rows: Sequence[LabelledSignal],
        report: JsonObject,
        production: ProductionRelease | None = None,
    ) -> RunArtifact:
        converted: list[TrainingRow] = []
        unknown_timeframe = 0
        for row in rows:
            try:
                converted.append(training_row(row))
            except ValueError:
                unknown_timeframe += 1  # no horizon end: the row cannot be placed in time
        quality, used = check_quality(converted, self.quality, as_of=datetime.now(UTC))
        report["quality"] = quality.to_dict()
        report["rows_without_horizon"] = unknown_timeframe
        if not quality.passed:
            raise FamilyRunFailed(
                f"data-quality gate failed ({len(rows)} signals labelled under {label_spec}): "
                + "; ".join(quality.errors)
            )
        used = ordered(used)  # the frame's order: ts, then signal_id
        names = quality.feature_names
        report["targets_missing"] = {
            t: sum(r.extra.get(t) is None for r in used) for t in HEAD_TARGETS.values()
        }
        frame = FamilyFrame.from_columns(family_columns(used, names), features=names)
        version = next_family_version(
            releases_of(self.artifact_root, spec.family), spec.feature_schema_version
        )
        init_from = self._previous(spec) if run.mode == "incremental" else None
        report["init_from"] = None if init_from is None else init_from.name
        report["fitter"] = "local" if self.fitter is None else self.fitter.name
        now = datetime.now(UTC)
        config = FamilyConfig(
            family=spec.family,
            version=version,
            training_run_id=run.run_id,
            feature_schema_version=spec.feature_schema_version,
            label_spec=label_spec,
            features=tuple(names),
            params=self.params,
            init_from=init_from,
            created_at=now,
            fitter=self.fitter,
        )
        release = train_family(frame, config)
        if production is not None and self.production is not None:
            test = split_blocks(frame.ts, frame.closed, self.params.split).test
            release = with_production(release, self.production.compare(production, frame, test))
        report["production"] = release.card.metrics["headline"].get("production_note")
        release, staged = self._with_snapshot(
            release, used, _row_blocks(frame, self.params), names, {r.signal_id: r for r in rows}
        )
        try:
            uri, sha, card = write_release(self.artifact_root, release)
            staged.rename(family_dir(self.artifact_root, spec.family, version) / SNAPSHOT_DIR)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        headline = card.metrics.get("headline", {})
        report["feature_names"] = list(card.features)
        report["feature_schema_version"] = card.feature_schema_version
        report["entry_routing"] = dict(card.entry_routing)
        report["row_counts"] = card.metrics.get("rows")
        report["data_time_range"] = {
            "start": used[0].ts.isoformat(),
            "end": used[-1].ts.isoformat(),
        }
        report["training_snapshot"] = (card.model_extra or {}).get("training_snapshot")
        return RunArtifact(
            version=version,
            artifact_uri=uri,
            sha256=sha,
            dataset_size=len(used),
            metrics=jsonable(
                {
                    "headline": headline,
                    "members": {m.name: m.metrics.get("headline") for m in card.members},
                    "entry_routing": dict(card.entry_routing),
                    "rows": card.metrics.get("rows"),
                }
            ),
        )

    def _previous(self, spec: FamilySpec) -> Path | None:
        """The newest release of ``spec``'s family on its feature schema (incremental runs
        continue its boosters), None when there is none."""
        same = [
            (parse_version(v), v)
            for v, schema in releases_of(self.artifact_root, spec.family)
            if schema == spec.feature_schema_version
        ]
        if not same:
            return None
        return family_dir(self.artifact_root, spec.family, max(same)[1])

    def _with_snapshot(
        self,
        release: FamilyRelease,
        rows: Sequence[TrainingRow],
        blocks: Sequence[str],
        feature_names: Sequence[str],
        labelled: Mapping[str, LabelledSignal],
    ) -> tuple[FamilyRelease, Path]:
        """Write the snapshot beside the release-to-be (same file system, renamed into it
        once written) and record its hash in the card; returns the card's release and the
        staged ``snapshot`` folder."""
        family = release.card.family
        staging = self.artifact_root / "families" / family / f".snapshot-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            (staging / SNAPSHOT_DIR).mkdir()
            _write_targets(staging / SNAPSHOT_DIR, rows, labelled)
            snapshot = write_snapshot(staging, rows, blocks, feature_names)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        card = release.card.model_copy(update={"training_snapshot": snapshot.to_dict()})
        return replace(release, card=card), staging / SNAPSHOT_DIR
