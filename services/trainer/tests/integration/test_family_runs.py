"""A model family trained through the trainer's API, against real NATS JetStream and
PostgreSQL: signal.features and signal.labeled in, a release directory and
training.completed out.

The rows come from the domain's synthetic family frame (known structure), published as the
upstream tools and the Back-Labeler would publish them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from hindsight.common.artifacts import METRICS_FILE, resolve_artifact, sha256_file
from hindsight.common.broker import STREAM
from hindsight.common.events import Event, SignalFeatures, SignalLabeled
from hindsight.common.family import HEAD_TARGETS, load_family_card
from hindsight.trainer.app import Trainer, build_settings, build_trainer
from hindsight.trainer.domain.synthetic import make_family_frame
from hindsight.trainer.family_runs import TARGETS_FILE
from hindsight.trainer.snapshot import SNAPSHOT_DIR, read_snapshot, snapshot_hash

pytestmark = pytest.mark.integration

TOKEN = "trainer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OLD_SPEC = "1111111111111111"
NEW_SPEC = "2222222222222222"
N = 1000


@pytest_asyncio.fixture
async def trainer(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[tuple[Trainer, str]]:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        drift_enabled=False,
        num_boost_round=20,
        early_stopping_rounds=5,
        cv_folds=0,
        bootstrap_resamples=20,
        min_rows=200,
        # A family with no labelled signal (schema 9): its run fails and says why.
        families=[{"family": "empty", "feature_schema_version": 9}],
    )
    app = build_trainer(settings)
    await app.start()
    try:
        yield app, f"http://127.0.0.1:{app.http.port}"
    finally:
        await app.stop()


def _events(n: int) -> tuple[list[SignalFeatures], list[SignalLabeled]]:
    """Signals and their labels under NEW_SPEC; every 10th label lacks ``dd_katr``."""
    frame = make_family_frame(n, clusters_differ=True, seed=7)
    features = [c for c in frame if c.startswith("f")]
    signals: list[SignalFeatures] = []
    labels: list[SignalLabeled] = []
    for i in range(n):
        ts = datetime.fromtimestamp(frame["ts"][i].astype("int64") / 1e6, tz=UTC)
        signal_id = str(frame["signal_id"][i])
        signals.append(
            SignalFeatures.create(
                source="test",
                occurred_at=ts,
                signal_id=signal_id,
                symbol=str(frame["symbol"][i]),
                timeframe="5m",
                side=str(frame["side"][i]),
                ts=ts,
                features={f: round(float(frame[f][i]), 6) for f in features},
                feature_schema_version=1,
                entry_price=100.0,
            )
        )
        labels.append(
            SignalLabeled.create(
                source="market",
                signal_id=signal_id,
                label_spec=NEW_SPEC,
                horizon_bars=12,
                runup_r=float(frame["rr_target"][i]),
                drawdown_r=-0.5,
                realised_r=float(frame["realised_r"][i]),
                y_entry=int(frame["y_entry"][i]),
                dd_katr=None if i % 10 == 0 else float(frame["sl_katr"][i]),
                best_offset_katr=float(frame["offset_katr"][i]),
                liquidity_cluster=str(frame["liquidity_cluster"][i]),
            )
        )
    return signals, labels


async def _publish(nats_url: str, events: Sequence[Event], *, with_id: bool = True) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for lo in range(0, len(events), 500):
            await asyncio.gather(
                *(
                    js.publish(
                        e.subject,
                        e.to_json_bytes(),
                        stream=STREAM,
                        headers={"Nats-Msg-Id": e.message_id()} if with_id else None,
                    )
                    for e in events[lo : lo + 500]
                )
            )
    finally:
        await client.close()


async def _until(probe: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _run(client: httpx.AsyncClient, base: str, body: dict[str, Any]) -> dict[str, Any]:
    started = await client.post(f"{base}/v1/runs", json=body, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["training_run_id"]

    async def ended() -> Any:
        run = (await client.get(f"{base}/v1/runs/{run_id}")).json()
        return run if run["status"] != "running" else None

    run: dict[str, Any] = await _until(ended, timeout=240, what=f"run {body}")
    return run


async def _completed(nats_client: NatsClient, run_id: str) -> dict[str, Any]:
    async def probe() -> Any:
        try:
            msg = await nats_client.jetstream().get_last_msg(STREAM, "training.completed")
        except Exception:
            return None
        event = json.loads(msg.data)
        return event if event["training_run_id"] == run_id else None

    found: dict[str, Any] = await _until(probe, timeout=10, what="training.completed")
    return found


async def test_a_family_trains_from_features_and_labels_into_one_release(
    trainer: tuple[Trainer, str], nats_url: str, nats_client: NatsClient
) -> None:
    app, base = trainer
    pool = app.family_storage.pool
    signals, labels = _events(N)
    t0 = time.monotonic()

    async def labelled(expected: int) -> Callable[[], Any]:
        async def probe() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM signal_labels")
            return bool(n == expected)

        return probe

    # An older label spec first (for a third of the signals), then the newest one.
    old = [e.model_copy(update={"label_spec": OLD_SPEC, "y_entry": 0}) for e in labels[:500]]
    await _publish(nats_url, old)
    await _until(await labelled(500), what="the old spec's labels")
    await _publish(nats_url, [*signals, *labels])
    await _until(await labelled(500 + N), what="the labels")

    # Redelivered copies (a producer retry past the duplicate window: no Nats-Msg-Id) and a
    # relabel after a bar correction (revision 1) change one row and add none.
    relabel = labels[3].model_copy(update={"label_revision": 1, "runup_r": 4.5})
    await _publish(nats_url, labels[:50], with_id=False)
    await _publish(nats_url, [relabel])

    async def relabelled() -> bool:
        row = await pool.fetchrow(
            "SELECT revision, runup_r FROM signal_labels WHERE signal_id = $1 AND label_spec = $2",
            relabel.signal_id,
            NEW_SPEC,
        )
        return row is not None and (row["revision"], row["runup_r"]) == (1, 4.5)

    await _until(relabelled, what="the relabel")
    await _publish(nats_url, [labels[3]], with_id=False)  # a late revision-0 copy: ignored
    await asyncio.sleep(1.5)
    assert await pool.fetchval("SELECT count(*) FROM signal_labels") == 500 + N
    assert (
        await pool.fetchval(
            "SELECT revision FROM signal_labels WHERE signal_id = $1 AND label_spec = $2",
            relabel.signal_id,
            NEW_SPEC,
        )
        == 1
    )

    async def ingested() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM signals") == N)

    await _until(ingested, what="the signals")

    t_ingest = time.monotonic() - t0
    async with httpx.AsyncClient(timeout=10.0) as client:
        # A family none of whose signals is labelled fails, saying so (announced too).
        empty = await _run(client, base, {"model_name": "empty"})
        assert empty["status"] == "failed" and "empty" in empty["error"]
        assert "signal.labeled" in empty["error"]
        assert (await _completed(nats_client, empty["run_id"]))["status"] == "failed"

        run = await _run(client, base, {"model_name": "playbook", "mode": "full"})
        assert run["status"] == "completed", run["error"]
        assert run["version"] == "v1_0_0"
        assert run["artifact_uri"] == "families/playbook/v1_0_0"
        assert run["report"]["label_spec"] == NEW_SPEC  # the newest spec, not the old one
        assert run["report"]["label_specs"] == {NEW_SPEC: N, OLD_SPEC: 500}
        assert run["report"]["targets_missing"]["sl_katr"] == N // 10

        directory = resolve_artifact(app.settings.artifact_root, run["artifact_uri"])
        card = load_family_card(directory)
        assert hashlib.sha256((directory / METRICS_FILE).read_bytes()).hexdigest() == run["sha256"]
        assert (card.family, card.version, card.label_spec) == ("playbook", "v1_0_0", NEW_SPEC)
        assert card.training_run_id == run["run_id"] and card.feature_schema_version == 1
        for member in card.members:
            assert sha256_file(directory / member.file) == member.sha256
        risk = card.head_member("risk")
        assert sum(risk.metrics["rows"].values()) < sum(
            card.head_member("entry").metrics["rows"].values()
        )  # rows without dd_katr left out of the risk head only

        event = await _completed(nats_client, run["run_id"])
        assert event["status"] == "completed" and event["model_name"] == "playbook"
        assert event["version"] == "v1_0_0" and event["artifact_uri"] == run["artifact_uri"]
        assert event["sha256"] == run["sha256"]
        assert event["metrics"] == json.loads(card.model_dump_json())["metrics"]["headline"]
        assert event["feature_names"] == card.features
        assert event["feature_schema_version"] == 1 and event["dataset_size"] == N

        # The rows as Parquet: ids and blocks, every head's target, and the hash in the card.
        rows, blocks, names = read_snapshot(directory)
        assert len(rows) == N == run["dataset_size"] and names == card.features
        snapshot = (card.model_extra or {})["training_snapshot"]
        assert (
            snapshot["sha256"]
            == snapshot_hash(directory)
            == run["report"]["training_snapshot"]["sha256"]
        )
        assert blocks.count("test") == card.metrics["rows"]["test"]
        targets = pq.read_table(directory / SNAPSHOT_DIR / TARGETS_FILE).to_pylist()
        by_id = {t["signal_id"]: t for t in targets}
        assert set(by_id) == {r.signal_id for r in rows}
        assert by_id[relabel.signal_id]["rr_target"] == 4.5
        assert by_id[relabel.signal_id]["label_revision"] == 1
        assert all(t["label_spec"] == NEW_SPEC for t in targets)
        assert set(HEAD_TARGETS.values()) <= set(targets[0])

        # A retrain is the next minor; incremental continues the newest release.
        again = await _run(client, base, {"model_name": "playbook", "mode": "incremental"})
        assert again["status"] == "completed", again["error"]
        assert again["version"] == "v1_1_0" and again["report"]["init_from"] == "v1_0_0"
        assert (await _completed(nats_client, again["run_id"]))["version"] == "v1_1_0"
        print(
            f"\nfamily runs: v1_0_0 in {run['duration_s']:.1f}s (entry ROC-AUC "
            f"{event['metrics']['roc_auc']:.3f}), v1_1_0 incremental in "
            f"{again['duration_s']:.1f}s; routing {card.entry_routing}; ingest {t_ingest:.1f}s"
        )
