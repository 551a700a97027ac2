"""`hindsight report` end to end: the registry and the trainer in-process against real NATS
JetStream and PostgreSQL, fed with events; the report rendered by the CLI from their HTTP
APIs and looked at in headless Chromium (screenshot under test-artifacts/report/)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import STREAM
from hindsight.ops.cli import main as cli_main
from hindsight.ops.report.source import month_window
from hindsight.registry.app import RegistryApp
from hindsight.registry.app import build_settings as registry_settings
from hindsight.trainer.app import build_settings as trainer_settings
from hindsight.trainer.app import build_trainer
from hindsight.trainer.domain.training import reference_distributions

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MODEL = "trade_success"
TOKEN = "report-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = ["atr_pct", "rsi_14", "spread_bps", "volume_z", "trend_slope", "news_score"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def write_artifact(root: Path, version: str, reference: dict[str, Any]) -> str:
    """models/{MODEL}/{version}/ with model.onnx bytes and a metrics.json card; its sha256."""
    directory = root / "models" / MODEL / version
    directory.mkdir(parents=True)
    onnx = os.urandom(256)
    (directory / "model.onnx").write_bytes(onnx)
    sha = hashlib.sha256(onnx).hexdigest()
    card = {
        "model_name": MODEL,
        "version": version,
        "training_run_id": f"run-{version}",
        "created_at": datetime.now(UTC).isoformat(),
        "feature_names": FEATURES,
        "feature_schema_version": 1,
        "onnx_sha256": sha,
        "metrics": {
            "test": {"roc_auc": 0.7, "ece": 0.03, "rows": 3000},
            "production": None,
            "trading": {"recommendation": "PROMOTE"},
        },
        "interval_bins": [],
        "reference_distributions": reference,
    }
    (directory / "metrics.json").write_text(json.dumps(card))
    return sha


async def eventually(probe: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def publish_all(nc: NatsClient, items: list[tuple[str, dict[str, Any], str]]) -> None:
    js = nc.jetstream()
    for start in range(0, len(items), 200):
        await asyncio.gather(
            *(
                js.publish(
                    subject,
                    json.dumps(body).encode(),
                    stream=STREAM,
                    headers={"Nats-Msg-Id": f"{subject}:{key}"},
                )
                for subject, body, key in items[start : start + 200]
            )
        )


def event(**fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "source": "report-test", **fields}


def predictions(
    rng: np.random.Generator,
    n: int,
    *,
    version: str,
    start: datetime,
    end: datetime,
    informative: bool,
    experiment: tuple[str, str] | None = None,
) -> tuple[list[tuple[str, dict[str, Any], str]], list[tuple[float, int]]]:
    """prediction.logged + signal.outcome bodies spread over [start, end); the (p, win) pairs."""
    q = rng.uniform(0.2, 0.8, n)
    wins = (rng.uniform(size=n) < q).astype(int)
    if informative:
        p = np.clip(q + rng.normal(0, 0.05, n), 0.01, 0.99)
    else:  # over-confident: pushed away from 0.5
        p = np.clip(0.5 + 1.8 * (q - 0.5) + rng.normal(0, 0.3, n), 0.01, 0.99)
    span = (end - start).total_seconds()
    items: list[tuple[str, dict[str, Any], str]] = []
    for i in range(n):
        at = start + timedelta(seconds=float(rng.uniform(0, span)))
        signal = f"sig-{uuid.uuid4().hex[:12]}"
        prediction_id = str(uuid.uuid4())
        body = event(
            occurred_at=at.isoformat(),
            prediction_id=prediction_id,
            signal_id=signal,
            model_version=version,
            p_success=float(p[i]),
            fallback=False,
            latency_ms=1.0,
        )
        if experiment is not None:
            body["experiment_id"], body["arm"] = experiment
        items.append(("prediction.logged", body, prediction_id))
        result = "win" if wins[i] else "loss"
        closed = (at + timedelta(hours=4)).isoformat()
        items.append(
            (
                "signal.outcome",
                event(occurred_at=closed, signal_id=signal, result=result, closed_at=closed),
                signal,
            )
        )
    return items, list(zip(p.tolist(), wins.tolist(), strict=True))


def live_signals(rng: np.random.Generator, n: int) -> list[tuple[str, dict[str, Any], str]]:
    """signal.features: atr_pct shifted, news_score mostly null, spread_bps partly off-range."""
    items = []
    for _ in range(n):
        values: dict[str, float | None] = {
            name: float(v)
            for name, v in zip(FEATURES, rng.normal(0, 1, len(FEATURES)), strict=True)
        }
        values["atr_pct"] = float(rng.normal(1.5, 1))  # the market got more volatile
        values["news_score"] = None if rng.uniform() < 0.6 else values["news_score"]
        if rng.uniform() < 0.25:
            values["spread_bps"] = float(rng.uniform(8, 12))  # never seen in training
        signal = f"live-{uuid.uuid4().hex[:12]}"
        body = event(
            occurred_at=datetime.now(UTC).isoformat(),
            signal_id=signal,
            symbol="EURUSD",
            timeframe="1h",
            side="buy",
            ts=datetime.now(UTC).isoformat(),
            features=values,
            feature_schema_version=1,
        )
        items.append(("signal.features", body, signal))
    return items


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


async def test_monthly_report_from_real_services(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    rng = np.random.default_rng(20261122)
    train = rng.normal(0, 1, (5000, len(FEATURES)))
    train[rng.uniform(size=5000) < 0.05, FEATURES.index("news_score")] = np.nan
    reference = reference_distributions(train, FEATURES)

    registry = RegistryApp(
        registry_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=artifacts,
            admin_token=TOKEN,
            http_port=0,
            outbox_poll_s=0.2,
            evaluate_every_s=3600.0,
            auto_rollback=False,
        )
    )
    await registry.start()
    trainer = None
    registry_url = f"http://127.0.0.1:{registry.http.port}"
    client = httpx.AsyncClient(base_url=registry_url, timeout=10)
    try:
        # v1 becomes production (first version, gates pass); v2 a candidate.
        for version in ("20261101T010000Z-aaaaaa", "20261108T010000Z-bbbbbb"):
            sha = write_artifact(artifacts, version, reference)
            body = event(
                occurred_at=datetime.now(UTC).isoformat(),
                training_run_id=f"run-{version}",
                model_name=MODEL,
                status="completed",
                version=version,
                artifact_uri=f"models/{MODEL}/{version}",
                sha256=sha,
                dataset_size=20000,
            )
            await publish_all(nats_client, [("training.completed", body, f"run-{version}")])

            async def registered(version: str = version) -> bool:
                response = await client.get(f"/v1/models/{MODEL}/versions")
                return response.status_code == 200 and any(
                    r["version"] == version for r in response.json()
                )

            await eventually(registered, what=f"{version} registered")
        v1, v2 = "20261101T010000Z-aaaaaa", "20261108T010000Z-bbbbbb"

        # An A/B experiment v1 vs v2 decided on outcomes, then a rollback to v1.
        response = await client.post(
            "/v1/experiments",
            json={"model_name": MODEL, "kind": "ab", "candidate_version": v2, "auto_promote": True},
            headers=AUTH,
        )
        assert response.status_code == 201, response.text
        experiment_id = response.json()["experiment_id"]
        start, end = month_window(datetime.now(UTC).strftime("%Y-%m"))
        now = datetime.now(UTC)
        control, control_pairs = predictions(
            rng,
            400,
            version=v1,
            start=start,
            end=now,
            informative=False,
            experiment=(experiment_id, "control"),
        )
        candidate, candidate_pairs = predictions(
            rng,
            400,
            version=v2,
            start=start,
            end=now,
            informative=True,
            experiment=(experiment_id, "candidate"),
        )
        plain, plain_pairs = predictions(
            rng, 600, version=v1, start=start, end=now, informative=False
        )
        await publish_all(nats_client, control + candidate + plain)

        async def evaluated() -> Any:
            response = await client.get(
                f"/v1/models/{MODEL}/evaluation",
                params={"from": start.isoformat(), "to": end.isoformat()},
            )
            body = response.json()
            counts = {t["version"]: t["n"] for t in body["totals"]}
            return body if counts == {v1: 1000, v2: 400} else None

        evaluation = await eventually(evaluated, what="1400 evaluated predictions")
        bad = await client.get(
            f"/v1/models/{MODEL}/evaluation",
            params={"from": end.isoformat(), "to": start.isoformat()},
        )
        assert bad.status_code == 422 and "from" in bad.text  # InvalidInputError naming `from`
        assert (await client.get("/v1/models/no_such_model/evaluation")).status_code == 404
        response = await client.post(f"/v1/experiments/{experiment_id}/complete", headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["decision"] == "promote", response.json()
        response = await client.post(
            f"/v1/models/{MODEL}/rollback",
            json={"reason": "desk reported stale fills on the new version"},
            headers=AUTH,
        )
        assert response.status_code == 200, response.text

        # The SQL aggregates agree with the data that was sent.
        totals = {t["version"]: t for t in evaluation["totals"]}
        v1_pairs = control_pairs + plain_pairs
        assert totals[v1]["win_rate"] == pytest.approx(np.mean([w for _, w in v1_pairs]))
        assert totals[v2]["brier"] == pytest.approx(
            np.mean([(p - w) ** 2 for p, w in candidate_pairs])
        )
        assert totals[v2]["brier"] < totals[v1]["brier"]
        assert sum(b["n"] for b in evaluation["calibration"] if b["version"] == v1) == 1000
        assert sum(d["n"] for d in evaluation["daily"] if d["version"] == v2) == 400

        # Live drift on signal.features in the trainer, against production v1's reference.
        trainer = build_trainer(
            trainer_settings(
                nats_url=nats_url,
                database_url=fresh_database,
                artifact_root=artifacts,
                admin_token=TOKEN,
                http_port=0,
                schedule_enabled=False,
                registry_url=registry_url,
                drift_min_rows=100,
                drift_refresh_s=0.2,
                drift_export_s=0.2,
            )
        )
        await trainer.start()
        trainer_metrics = f"http://127.0.0.1:{trainer.http.port}/metrics"
        await eventually(lambda: asyncio.sleep(0, trainer.drift.version == v1), what="reference")
        await publish_all(nats_client, live_signals(rng, 500))

        async def drift_page() -> str | None:
            text = (await client.get(trainer_metrics)).text
            rows = metric(text, "hindsight_trainer_drift_window_rows", model=MODEL)
            return text if rows == 500 else None

        text = await eventually(drift_page, what="500 live signals in the drift window")
        psi = {
            f: metric(text, "hindsight_trainer_feature_psi", model=MODEL, feature=f)
            for f in FEATURES
        }
        assert psi["atr_pct"] > 0.2, psi
        assert psi["rsi_14"] < 0.1, psi
        missing = metric(
            text, "hindsight_trainer_feature_missing_share", model=MODEL, feature="news_score"
        )
        assert 0.5 < missing < 0.7
        outside = metric(
            text, "hindsight_trainer_feature_out_of_range_share", model=MODEL, feature="spread_bps"
        )
        assert 0.15 < outside < 0.35
        assert metric(text, "hindsight_trainer_drift_features_over_threshold", model=MODEL) >= 1

        # The report, through the CLI, from the HTTP APIs only.
        out = tmp_path / "report.html"
        code = await asyncio.to_thread(
            cli_main,
            [
                "report",
                "--month",
                start.strftime("%Y-%m"),
                "--out",
                str(out),
                "--registry-url",
                registry_url,
                "--metrics-url",
                trainer_metrics,
            ],
        )
        assert code == 0
        html = out.read_text()
        assert html.count("data:image/png;base64,") == 4  # calibration, daily, timeline, drift
        assert not re.search(r"""(src|href)=["']?https?:""", html)  # self-contained
        for text_part in (v1, v2, "rollback", "promote", "atr_pct", "stale fills"):
            assert text_part in html
        assert "feature(s) drifting" in html

        artifacts_dir = pytestconfig.rootpath / "test-artifacts" / "report"
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        (artifacts_dir / "report.html").write_text(html)
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(out.as_uri())
            loaded = await page.evaluate(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 300)"
            )
            await page.screenshot(path=str(artifacts_dir / "report.png"), full_page=True)
            await browser.close()
        assert loaded
    finally:
        await client.aclose()
        if trainer is not None:
            await trainer.stop()
        await registry.stop()
