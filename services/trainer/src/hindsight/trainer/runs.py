"""Training runs: one at a time per model, CPU work in a thread, every end state published."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.events import TEXT_MAX_CHARS, Event, TrainingCompleted
from hindsight.trainer.artifact_store import write_artifact
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.autotrain import (
    DataPolicy,
    DataState,
    data_run_due,
    incremental_skip,
)
from hindsight.trainer.domain.data_spec import DataSpec
from hindsight.trainer.domain.fitting import Fitter, LocalFitter
from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.quality import QualityConfig, check_quality
from hindsight.trainer.domain.rows import LABEL_WEIGHTS
from hindsight.trainer.domain.splits import SplitConfig
from hindsight.trainer.domain.trading import Gates
from hindsight.trainer.domain.training import TrainingParams, train_model
from hindsight.trainer.family_runs import FamilyRunFailed, FamilyRuns
from hindsight.trainer.metrics import LAST_RUN_DURATION, RUNS
from hindsight.trainer.production import RegistryProduction
from hindsight.trainer.storage import RunArtifact, RunMode, RunStatus, Storage, TrainingRun

__all__ = ["Publisher", "RunService", "make_version", "training_params"]

logger = logging.getLogger(__name__)
Publisher = Callable[[Event], Awaitable[None]]
SOURCE = "trainer"


def make_version(now: datetime, run_id: str) -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex of the run id>``: sortable by time.

    Run ids are uuid4 hex, except those taken from a ``training.requested`` request id;
    one that does not start with 6 hex digits contributes its sha256 instead.
    """
    head = run_id[:6].lower()
    if len(head) < 6 or any(c not in "0123456789abcdef" for c in head):
        head = hashlib.sha256(run_id.encode()).hexdigest()[:6]
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{head}"


def training_params(settings: TrainerSettings) -> TrainingParams:
    """The domain's parameters from the settings."""
    weights = dict(LABEL_WEIGHTS)
    weights["rejected"] = settings.rejected_label_weight
    return TrainingParams(
        seed=settings.seed,
        num_threads=settings.num_threads,
        num_boost_round=settings.num_boost_round,
        early_stopping_rounds=settings.early_stopping_rounds,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        split=SplitConfig(
            embargo_frac=settings.embargo_frac,
            embargo_time=timedelta(seconds=settings.embargo_s),
            cv_folds=settings.cv_folds,
        ),
        gates=Gates(
            threshold=settings.trade_threshold,
            min_sharpe=settings.min_sharpe,
            min_win_rate=settings.min_win_rate,
            max_drawdown=settings.max_drawdown,
            min_trades=settings.min_trades,
            min_improvement=settings.min_improvement,
        ),
        bootstrap_resamples=settings.bootstrap_resamples,
        label_weights=weights,
    )


class RunService:
    """Starts runs and owns their life cycle; a second request while one runs is skipped."""

    def __init__(
        self,
        settings: TrainerSettings,
        storage: Storage,
        publish: Publisher,
        production: RegistryProduction,
        *,
        families: FamilyRuns | None = None,
        specs: Mapping[str, DataSpec] | None = None,
        fitter: Fitter | None = None,
    ) -> None:
        self.settings = settings
        self.fitter: Fitter = fitter or LocalFitter()
        """Where the main booster of a single-model run is fitted (Dask or in process)."""
        self.families = families
        """Model families (``POST /v1/runs {"model_name": "<family>"}`` trains one)."""
        self.storage = storage
        self.publish = publish
        self.production = production
        self.specs: Mapping[str, DataSpec] = settings.specs() if specs is None else specs
        """Data specs by model name (the app passes the catalog: settings + registered)."""
        self._active: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def is_running(self, model_name: str) -> bool:
        """True while a run of ``model_name`` (a model or a family) is in flight."""
        return model_name in self._active

    async def recover(self) -> None:
        """Fail (and announce) runs a crash left ``running``."""
        for run in await self.storage.fail_interrupted_runs():
            RUNS.labels("failed").inc()
            await self._announce(run)

    def spec(self, model_name: str) -> DataSpec:
        """``model_name``'s data spec, or InvalidInputError naming model_name (no spec, no
        data: a model never trains on "all rows")."""
        spec = self.specs.get(model_name)
        if spec is None:
            families = "" if self.families is None else ", ".join(sorted(self.families.families))
            raise InvalidInputError(
                f"no data spec for model {model_name!r} (declared: "
                f"{', '.join(sorted(self.specs))}; see HINDSIGHT_TRAINER_DATA_SPECS or PUT "
                "/v1/data-specs/{model_name}"
                + (f"; families: {families}, see HINDSIGHT_TRAINER_FAMILIES)" if families else ")"),
                field="model_name",
            )
        return spec

    async def request(
        self,
        *,
        model_name: str | None = None,
        mode: RunMode = "full",
        trigger: str,
        reason: str | None = None,
        requested_by: str | None = None,
        run_id: str | None = None,
    ) -> TrainingRun:
        """Start a run in the background (or record why it is skipped); returns its row."""
        name = validate_name(model_name or self.settings.model_name, field="model_name")
        family = self.families.get(name) if self.families is not None else None
        spec = self.spec(name) if family is None else None
        run_id = run_id or uuid.uuid4().hex
        skip: str | None = None
        if name in self._active:
            skip = f"a run of {name} is already running ({self._active[name]})"
        elif mode == "incremental" and spec is not None:  # a family continues its newest release
            skip = incremental_skip(
                await self.data_state(spec), min_new_outcomes=self.settings.min_new_outcomes
            )
        if skip is not None:
            run = await self.storage.create_run(
                run_id=run_id,
                model_name=name,
                mode=mode,
                trigger=trigger,
                status="skipped",
                reason=reason,
                requested_by=requested_by,
                error=skip,
            )
            RUNS.labels("skipped").inc()
            logger.info("run skipped: %s", skip, extra={"run_id": run_id})
            await self._announce(run)
            return run
        self._active[name] = run_id
        try:
            run = await self.storage.create_run(
                run_id=run_id,
                model_name=name,
                mode=mode,
                trigger=trigger,
                status="running",
                reason=reason,
                requested_by=requested_by,
            )
        except BaseException:
            self._active.pop(name, None)
            raise
        task = asyncio.create_task(self._execute(run), name=f"training-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    async def data_state(self, spec: DataSpec) -> DataState:
        """The outcome counts (of ``spec``'s rows) the data trigger and the incremental skip
        decide on.

        ``pending`` counts from the newest run whose version the registry accepted; when the
        registry cannot be asked (none configured, unreachable), from the newest completed run.
        """
        name = spec.model_name
        accepted = await self.production.accepted_versions(name)
        base = await self.storage.last_accepted_at(name, accepted)
        last_try = await self.storage.last_attempt_at(name)
        pending = await self.storage.outcomes_since(base, spec)
        # One count when both points coincide (none yet, or the last run was accepted): two
        # queries could see different numbers while outcomes arrive.
        fresh = pending if last_try == base else await self.storage.outcomes_since(last_try, spec)
        return DataState(
            pending=pending,
            fresh=fresh,
            has_accepted=base is not None,
            newest_outcome_at=await self.storage.latest_outcome_at(spec),
            has_attempt=last_try is not None,
            base="the last accepted version" if accepted is not None else "the last completed run",
        )

    async def request_if_data_due(
        self, *, now: datetime | None = None, model_name: str | None = None
    ) -> TrainingRun | None:
        """Start a data-triggered run of ``model_name`` (default: the trainer's model) when
        ``domain.autotrain.data_run_due`` says one is due, at most once per
        ``auto_train_interval_s``; None when nothing is due."""
        settings = self.settings
        name = model_name or settings.model_name
        spec = self.spec(name)
        if settings.auto_train_outcomes <= 0 or name in self._active:
            return None
        latest = await self.storage.list_runs(model_name=name, limit=1)
        now = now or datetime.now(UTC)
        if latest:
            age = (now - latest[0].created_at).total_seconds()
            if age < settings.auto_train_interval_s:
                return None
        state = await self.data_state(spec)
        policy = DataPolicy(
            outcomes=settings.auto_train_outcomes,
            quiet_s=settings.auto_train_quiet_s,
            min_new_outcomes=settings.min_new_outcomes,
            min_rows=settings.min_rows,
        )
        reason = data_run_due(state, policy, now=now)
        if reason is None:
            return None
        return await self.request(
            model_name=name,
            mode="incremental" if state.has_accepted else "full",
            trigger="data",
            reason=reason,
        )

    async def get(self, run_id: str) -> TrainingRun:
        """One run row or NotFoundError."""
        run = await self.storage.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no training run {run_id}")
        return run

    async def wait_idle(self) -> None:
        """Wait for the runs in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Let a run in flight finish (its thread cannot be interrupted)."""
        await self.wait_idle()

    async def _execute(self, run: TrainingRun) -> None:
        run_id, name = run.run_id, run.model_name
        started = time.perf_counter()
        report: JsonObject = {}  # free-form: what the run found (quality, parity, counts)
        artifact: RunArtifact | None = None
        status: RunStatus
        try:
            if self.families is not None and self.families.get(name) is not None:
                artifact = await self.families.train(run, report)
            else:
                artifact = await self._train_model(run, report)
            status, error = "completed", None
        except Exception as exc:
            status = "failed"
            stated = isinstance(exc, _RunFailed | FamilyRunFailed)
            error = str(exc) if stated else f"{type(exc).__name__}: {exc}"
            if not stated:
                logger.exception("training run failed", extra={"run_id": run_id})
        finally:
            self._active.pop(name, None)
        duration = time.perf_counter() - started
        try:
            final = await self.storage.finish_run(
                run_id,
                status=status,
                duration_s=duration,
                error=error,
                artifact=artifact,
                report=report or None,
            )
        except Exception:
            logger.exception("could not record the end of run %s", run_id)
            ended: dict[str, object] = {
                "status": status,
                "error": error,
                "duration_s": duration,
                "report": report or None,
            }
            final = run.model_copy(update=ended | (asdict(artifact) if artifact else {}))
        RUNS.labels(status).inc()
        LAST_RUN_DURATION.set(duration)
        logger.info(
            "run %s %s in %.1fs",
            run_id,
            status,
            duration,
            extra={"run_id": run_id, "status": status, "error": error},
        )
        await self._announce(final)

    async def _train_model(self, run: TrainingRun, report: JsonObject) -> RunArtifact:
        """Train a single model on its data spec's rows; fills ``report`` as it goes."""
        run_id, name = run.run_id, run.model_name
        spec = self.spec(name)
        report["data_spec"] = spec.model_dump(mode="json")
        rows = await self.storage.training_rows(spec)
        quality_cfg = QualityConfig(
            max_missing_share=self.settings.max_missing_share,
            min_rows=self.settings.min_rows,
        )
        quality, used = await asyncio.to_thread(
            check_quality, rows, quality_cfg, as_of=datetime.now(UTC)
        )
        report["quality"] = quality.to_dict()
        if not quality.passed:
            raise _RunFailed("data-quality gate failed: " + "; ".join(quality.errors))
        schema_version = quality.feature_schema_version
        assert schema_version is not None
        baseline = await self.production.load(name, quality.feature_names)
        result = await asyncio.to_thread(
            train_model,
            used,
            quality.feature_names,
            training_params(self.settings),
            baseline=baseline.predict,
            baseline_note=baseline.note,
            fitter=self.fitter,
        )
        report["fitter"] = self.fitter.name
        now = datetime.now(UTC)
        version = make_version(now, run_id)
        uri, sha, card = await asyncio.to_thread(
            write_artifact,
            self.settings.artifact_root,
            model_name=name,
            version=version,
            run_id=run_id,
            created_at=now,
            feature_schema_version=schema_version,
            result=result,
            extra={
                "quality_report": quality.to_dict(),
                "mode": run.mode,
                "production_version": baseline.version,
                "data_spec": spec.model_dump(mode="json"),
            },
            rows=used,
        )
        artifact = RunArtifact(
            version=version,
            artifact_uri=uri,
            sha256=sha,
            dataset_size=len(used),
            metrics=jsonable(result.metrics),
        )
        report["parity"] = jsonable(result.parity)
        report["row_counts"] = result.row_counts
        report["data_time_range"] = result.data_time_range
        report["feature_names"] = result.feature_names
        report["feature_schema_version"] = schema_version
        report["training_snapshot"] = card.model_dump().get("training_snapshot")
        return artifact

    async def _announce(self, run: TrainingRun) -> None:
        report = run.report or {}
        metrics = run.metrics or {}
        event = TrainingCompleted.create(
            source=SOURCE,
            training_run_id=run.run_id,
            model_name=run.model_name,
            status=run.status,
            version=run.version,
            artifact_uri=run.artifact_uri,
            sha256=run.sha256,
            metrics=jsonable(metrics.get("headline")) if metrics else None,
            feature_names=report.get("feature_names"),
            feature_schema_version=report.get("feature_schema_version"),
            dataset_size=run.dataset_size,
            data_time_range=report.get("data_time_range"),
            duration_s=max(0.0, float(run.duration_s or 0.0)),
            error=_bounded(run.error),
        )
        for attempt in range(3):
            try:
                await self.publish(event)
                return
            except Exception as exc:
                logger.warning(
                    "could not publish training.completed (try %d): %s", attempt + 1, exc
                )
                await asyncio.sleep(1.0 * (attempt + 1))
        logger.error("training.completed for run %s was not published", run.run_id)


def _bounded(text: str | None) -> str | None:
    """An error message the contract takes as free text (no NUL, at most TEXT_MAX_CHARS);
    otherwise the event would be refused and the run's end never announced."""
    if text is None:
        return None
    text = text.replace("\x00", "\\x00")
    if len(text) <= TEXT_MAX_CHARS:
        return text
    return text[: TEXT_MAX_CHARS - 14] + " … (truncated)"


class _RunFailed(Exception):
    """A run that ends as failed for a reason stated in the message (no traceback)."""
