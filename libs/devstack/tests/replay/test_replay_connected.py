"""The replay against a real nats-server and NO gateway: counts in the stream, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import STREAM
from hindsight.common.events import JsonCreated, PngCreated, SignalFeatures, SignalOutcome
from hindsight.devstack.ports import free_port
from hindsight.devstack.replay import ReplayCounters, ReplaySettings, replay
from hindsight.devstack.replay.features import FEATURE_NAMES

pytestmark = pytest.mark.connected


def _settings(nats_url: str, data_dir: Path, limit: int) -> ReplaySettings:
    return ReplaySettings(
        nats_url=nats_url,
        data_dir=data_dir,
        data=["goog"],
        fast=True,
        limit_signals=limit,
        max_in_flight=8,
        gateway=f"127.0.0.1:{free_port()}",  # nothing listens there: every Score fails
    )


async def _subject_counts(client: NatsClient) -> dict[str, int]:
    info = await client.jetstream().stream_info(STREAM, subjects_filter=">")
    return dict(info.state.subjects or {})


async def _messages(client: NatsClient, subject: str) -> list[bytes]:
    js = client.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True)
    out: list[bytes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                return out
            out.append(msg.data)
    finally:
        await sub.unsubscribe()


def _expected(n: int) -> dict[str, int]:
    return {
        SignalFeatures.subject: n,
        SignalOutcome.subject: n,
        PngCreated.subject: 2 * n,
        JsonCreated.subject: 3 * n,  # trade_meta open + closed, llm_suggestion
    }


async def test_fast_replay_publishes_every_event_once_without_a_gateway(
    nats_url: str, jetstream_reset: None, nats_client: NatsClient, tmp_path: Path
) -> None:
    settings = _settings(nats_url, tmp_path, limit=5)
    first = await replay(settings)
    assert first.finished
    assert (first.signals, first.outcomes, first.pngs, first.jsons) == (5, 5, 10, 15)
    assert first.score_failures == 5 and first.scored == 0  # counted, not blocking
    assert await _subject_counts(nats_client) == _expected(5)

    signals = [
        SignalFeatures.model_validate_json(m)
        for m in await _messages(nats_client, "signal.features")
    ]
    outcomes = [
        SignalOutcome.model_validate_json(m) for m in await _messages(nats_client, "signal.outcome")
    ]
    assert {s.signal_id for s in signals} == {o.signal_id for o in outcomes}
    for signal in signals:
        assert tuple(signal.features) == FEATURE_NAMES and signal.feature_schema_version == 1
        assert signal.run_id == settings.effective_run_id and signal.trade_id and signal.setup_id
        assert signal.signal_id.startswith(f"{signal.run_id}:GOOG:")
    assert [s.ts for s in signals] == sorted(s.ts for s in signals)  # replay time order
    pngs = [PngCreated.model_validate_json(m) for m in await _messages(nats_client, "png.created")]
    for png in pngs:
        path = Path(png.file_path)
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.is_relative_to(tmp_path / "images" / "replay" / settings.effective_run_id)
    assert sorted(p.image_type or "" for p in pngs) == ["annotated"] * 5 + ["original"] * 5
    docs = [
        JsonCreated.model_validate_json(m) for m in await _messages(nats_client, "json.created")
    ]
    by_id = {d.doc_id: d for d in docs}
    trade = signals[0].trade_id
    assert by_id[f"trade_meta:{trade}:open"].payload["result"] is None
    closed = by_id[f"trade_meta:{trade}:closed"].payload
    assert closed["result"] in {"win", "loss", "breakeven"} and closed["closed_at"]
    assert by_id[f"llm_suggestion:{trade}"].payload["model"] == "rule-based-stand-in/1"

    # The same run again: nothing new in the stream, no Score call.
    again = await replay(settings)
    assert (again.signals, again.outcomes, again.score_failures, again.stored) == (0, 0, 0, 0)
    assert await _subject_counts(nats_client) == _expected(5)


async def test_a_restart_resumes_without_duplicates_or_second_scores(
    nats_url: str, jetstream_reset: None, nats_client: NatsClient, tmp_path: Path
) -> None:
    # On GOOG the first trade closes after the second one fired: a run limited to one
    # signal ends past the second signal's bar, which a later run must still play.
    part = await replay(_settings(nats_url, tmp_path, limit=1))
    assert (part.signals, part.outcomes, part.score_failures) == (1, 1, 1)
    state = json.loads((tmp_path / "replay" / "replay-goog-r1.json").read_text())
    assert state["run_id"] == "replay-goog-r1" and state["cursor"]["goog"] > 0
    assert any(key.startswith("close:") for key in state["done"])

    rest = ReplayCounters()
    await replay(_settings(nats_url, tmp_path, limit=7), counters=rest)
    assert (rest.signals, rest.outcomes, rest.score_failures) == (6, 6, 6)
    assert rest.skipped >= 1 and rest.duplicates == 0
    assert await _subject_counts(nats_client) == _expected(7)
