"""Family releases: loading as a unit, routing, validation and output assembly.

Real ONNX members (tests/family_testkit.py); every answer is compared with the member
files run directly with ONNX Runtime, by feature name.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from family_testkit import (
    FEATURES,
    FamilyRelease,
    build_family,
    quantile_onnx,
    rewrite_card,
    rows_of,
)
from faststream.nats import NatsBroker
from scorer_testkit import make_model

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.family import CLUSTER_FEATURE
from hindsight.scorer.dataplane import DataPlane
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.families import FamilyStore, LoadedFamily, predict_rows
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.family_loader import FamilyLoader, is_family_uri
from hindsight.scorer.loader import ArtifactRefusedError
from hindsight.scorer.messaging import PredictionLog
from hindsight.scorer.metrics import FAMILIES_LOADED, LOAD_FAILURES, REQUESTS
from hindsight.scorer.reconciler import Reconciler
from hindsight.scorer.sources import DeploymentCache
from hindsight.scoring.v1.scoring_pb2 import PredictBatchRequest, PredictRequest

pytestmark = pytest.mark.unit

TOL = 1e-6


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def release(root: Path) -> FamilyRelease:
    return build_family(root, version="v1_0_0", carried={"rr": "v0_9_0"})


@pytest.fixture(scope="module")
def loaded(root: Path, release: FamilyRelease) -> LoadedFamily:
    return FamilyLoader(root).load(Deployment(**release.deployment()))


def plane_with(loaded: LoadedFamily, log: PredictionLog | None = None) -> DataPlane:
    families = FamilyStore(default_family="playbook")
    families.install(loaded, serve=True)
    return DataPlane(ModelStore(default_model="m"), log, families=families)


def predict_request(features: dict[str, float], **fields: object) -> PredictRequest:
    fields.setdefault("signal_id", "sig-1")
    fields.setdefault("side", "buy")
    return PredictRequest(features=features, **fields)  # type: ignore[arg-type]


def assert_heads(answer: object, expected: dict[str, dict[str, object]]) -> None:
    heads = answer.heads  # type: ignore[attr-defined]
    assert set(heads) == {"entry", "risk", "rr", "offset"}
    for head, want in expected.items():
        got = heads[head]
        assert abs(got.value - want["value"]) <= TOL, head  # type: ignore[operator]
        assert got.member == want["member"]
        assert got.model_version == want["version"]
        assert list(got.alphas) == want["alphas"]
        assert len(got.quantiles) == len(want["quantiles"])  # type: ignore[arg-type]
        for a, b in zip(got.quantiles, want["quantiles"], strict=True):  # type: ignore[call-overload]
            assert abs(a - b) <= TOL
        assert not got.fallback and got.fallback_reason == ""


def test_family_uri_is_recognised() -> None:
    assert is_family_uri("families/playbook/v1_0_0")
    assert is_family_uri("file://families/playbook/v1_0_0")
    assert not is_family_uri("models/trade_success/20260101T000000Z-aaaaaa")


def test_loaded_release_maps_member_columns_and_nan(loaded: LoadedFamily) -> None:
    assert loaded.features.names == tuple(FEATURES)
    assert loaded.features.nan_allowed == frozenset({"f4"})  # only entry members read f4
    assert {c: m.spec.name for c, m in loaded.entry.items()} == {
        "H": "entry_H",
        "M": "entry_pooled",
        "L": "entry_L",
        "": "entry_pooled",
    }
    assert loaded.members["entry_H"].columns is None  # the family's columns as they are
    pooled = loaded.members["entry_pooled"].columns
    assert pooled is not None and pooled.tolist() == [0, 1, 2, 3, 4, 5]  # 5 = cluster code
    risk = loaded.members["risk"].columns
    assert risk is not None and risk.tolist() == [2, 0, 1]


@pytest.mark.parametrize("cluster", ["H", "M", "L", ""])
def test_every_head_equals_the_member_files(loaded, release, cluster) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    for i, features in enumerate(rows_of(8, seed=3, nan_every=3)):
        answer = plane.predict(
            predict_request(features, liquidity_cluster=cluster, signal_id=f"s{i}"),
            logged_upstream=True,
        )
        expected = release.expected(features, cluster)
        assert_heads(answer, expected)
        assert answer.signal_id == f"s{i}" and answer.side == "buy"
        assert answer.conf_pat == answer.heads["entry"].value
        assert answer.sl_katr == answer.heads["risk"].value
        assert answer.rr_target == answer.heads["rr"].value
        assert answer.offset_katr == answer.heads["offset"].value
        assert answer.entry_style == ("LIMIT" if answer.offset_katr < 0 else "STOP")
        assert answer.family == "playbook" and answer.family_version == "v1_0_0"
        assert answer.liquidity_cluster == cluster
        assert not answer.fallback and answer.arm == ""
        assert answer.prediction_time_ms > 0
    assert answer.heads["rr"].model_version == "v0_9_0"  # a member carried over


def test_pooled_member_reads_the_cluster_code(loaded, release) -> None:  # type: ignore[no-untyped-def]
    seen: list[list[float]] = []

    class Recording:
        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner = inner

        def run(self, matrix):  # type: ignore[no-untyped-def]
            seen.append(matrix[:, -1].tolist())
            return self.inner.run(matrix)

    runners = {n: m.runner for n, m in loaded.members.items()}
    runners["entry_pooled"] = Recording(runners["entry_pooled"])
    recorded = LoadedFamily.build(
        loaded.deployment, loaded.card, runners, loaded_at=loaded.loaded_at
    )
    rows = rows_of(2, seed=5)
    answers = predict_rows(recorded, recorded.features.matrix(rows, [0, 1]), ["M", ""])
    assert CLUSTER_FEATURE == recorded.card.member("entry_pooled").features[-1]  # type: ignore[union-attr]
    assert len(seen) == 1 and seen[0][0] == 1.0 and math.isnan(seen[0][1])  # M = 1, unknown NaN
    for features, cluster, got in zip(rows, ["M", ""], answers.conf_pat, strict=True):
        want = float(release.member_output("entry_pooled", features, cluster)[1])
        assert abs(got - want) <= TOL


def test_entry_style_follows_the_offset_sign(loaded, release) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    styles = set()
    for features in rows_of(60, seed=9):
        answer = plane.predict(predict_request(features), logged_upstream=True)
        styles.add((answer.offset_katr < 0, answer.entry_style))
    assert styles == {(True, "LIMIT"), (False, "STOP")}


def test_batch_equals_single_calls_in_request_order(loaded, release) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    rows = rows_of(30, seed=4, nan_every=4)
    clusters = ["H", "M", "L", "", "L", "H"] * 5
    batch = PredictBatchRequest(
        requests=[
            predict_request(f, signal_id=f"b{i}", liquidity_cluster=c, side="sell")
            for i, (f, c) in enumerate(zip(rows, clusters, strict=True))
        ]
    )
    answer = plane.predict_batch(batch, logged_upstream=True)
    assert len(answer.responses) == 30
    for i, one in enumerate(answer.responses):
        assert one.signal_id == f"b{i}" and one.side == "sell"
        assert_heads(one, release.expected(rows[i], clusters[i]))
        single = plane.predict(batch.requests[i], logged_upstream=True)
        assert one.conf_pat == single.conf_pat and one.sl_katr == single.sl_katr
        assert one.rr_target == single.rr_target and one.offset_katr == single.offset_katr


def test_batch_runs_each_member_once(loaded) -> None:  # type: ignore[no-untyped-def]
    runs: dict[str, int] = {}

    class Counting:
        def __init__(self, name: str, inner) -> None:  # type: ignore[no-untyped-def]
            self.name, self.inner = name, inner

        def run(self, matrix):  # type: ignore[no-untyped-def]
            runs[self.name] = runs.get(self.name, 0) + 1
            return self.inner.run(matrix)

    runners = {n: Counting(n, m.runner) for n, m in loaded.members.items()}
    counted = LoadedFamily.build(
        loaded.deployment, loaded.card, runners, loaded_at=loaded.loaded_at
    )
    rows = rows_of(40, seed=6)
    clusters = ["H", "M", "L", ""] * 10
    matrix = counted.features.matrix(rows, list(range(40)))
    predict_rows(counted, matrix, clusters)
    # H → entry_H, L → entry_L, M and unknown → entry_pooled: one run each.
    assert runs == {"entry_H": 1, "entry_L": 1, "entry_pooled": 1, "risk": 1, "rr": 1, "offset": 1}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"side": "hold"}, "side"),
        ({"side": "BUY"}, "side"),
        ({"signal_id": ""}, "signal_id"),
        ({"liquidity_cluster": "X"}, "liquidity_cluster"),
        ({"liquidity_cluster": "h"}, "liquidity_cluster"),
        ({"family": "nope"}, "family"),
        ({"family_version": "v9_9_9"}, "family_version"),
        ({"family_version": "latest"}, "family_version"),
        ({"symbol": "x" * 300}, "symbol"),
        ({"family": "y" * 300}, "family"),
    ],
)
def test_bad_fields_name_the_field(loaded, fields, field) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    before = REQUESTS.labels("Predict", "INVALID_ARGUMENT")._value.get()
    with pytest.raises(InvalidInputError) as info:
        plane.predict(predict_request(rows_of(1)[0], **fields), logged_upstream=True)
    assert info.value.field == field
    assert len(str(info.value)) < 200  # a long value is never quoted whole
    assert REQUESTS.labels("Predict", "INVALID_ARGUMENT")._value.get() == before + 1


def test_bad_features_name_the_feature(loaded) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    features = rows_of(1)[0]
    cases = [
        ({**features, "rsi_14": 1.0}, "features.rsi_14"),
        ({k: v for k, v in features.items() if k != "f2"}, "features.f2"),
        ({**features, "f0": math.nan}, "features.f0"),  # NaN only where every reader allows it
        ({**features, "f3": math.inf}, "features.f3"),
        (
            {**features, CLUSTER_FEATURE: 1.0},
            f"features.{CLUSTER_FEATURE}",
        ),  # not a request feature
        ({**features, "z" * 300: 1.0}, f"features.{'z' * 64}…(300 chars)"),
    ]
    for bad, field in cases:
        with pytest.raises(InvalidInputError) as info:
            plane.predict(predict_request(bad), logged_upstream=True)
        assert info.value.field == field
    ok = plane.predict(predict_request({**features, "f4": math.nan}), logged_upstream=True)
    assert 0 < ok.conf_pat < 1


def test_batch_errors_name_the_request(loaded) -> None:  # type: ignore[no-untyped-def]
    plane = plane_with(loaded)
    rows = rows_of(4)
    cases = [
        (2, {"side": "hold"}, None, "requests[2].side"),
        (1, {"family_version": "v7_0_0"}, None, "requests[1].family_version"),
        (3, {"family": "other"}, None, "requests[3].family"),
        (2, {}, {"f1": math.nan}, "requests[2].features.f1"),
        (1, {}, {"bogus": 1.0}, "requests[1].features.bogus"),
        (1, {}, {"z" * 300: 1.0}, f"requests[1].features.{'z' * 64}…(300 chars)"),
    ]
    for index, fields, feature_change, field in cases:
        requests = [predict_request(f, signal_id=f"s{i}") for i, f in enumerate(rows)]
        requests[index] = predict_request(
            {**rows[index], **(feature_change or {})}, signal_id=f"s{index}", **fields
        )
        with pytest.raises(InvalidInputError) as info:
            plane.predict_batch(PredictBatchRequest(requests=requests), logged_upstream=True)
        assert info.value.field == field
    too_many = PredictBatchRequest(requests=[predict_request(rows[0])] * 10_001)
    with pytest.raises(InvalidInputError) as info:
        plane.predict_batch(too_many, logged_upstream=True)
    assert info.value.field == "requests"


def test_no_family_loaded_is_unavailable_no_model() -> None:
    plane = DataPlane(ModelStore(default_model="m"), None)
    with pytest.raises(UnavailableError) as info:
        plane.predict(predict_request(rows_of(1)[0]), logged_upstream=True)
    assert str(info.value).startswith("no model")
    with pytest.raises(UnavailableError) as info:
        plane.predict_batch(
            PredictBatchRequest(requests=[predict_request(rows_of(1)[0])]), logged_upstream=True
        )
    assert str(info.value).startswith("no model")


def test_store_resolves_default_pinned_and_missing(loaded, root) -> None:  # type: ignore[no-untyped-def]
    store = FamilyStore(default_family="playbook")
    other = loaded.with_stage("canary")
    store.install(other, serve=False)
    with pytest.raises(UnavailableError) as info:  # loaded, but no production release
        store.resolve(None, None)
    assert str(info.value).startswith("no model")
    assert store.resolve("playbook", "v1_0_0") is not None  # a canary is callable pinned
    store.install(loaded, serve=True)
    assert store.resolve(None, None).version == "v1_0_0"
    assert store.remove("playbook", "v1_0_0") is False  # never what serves
    other_store = FamilyStore(default_family="absent")
    other_store.install(loaded, serve=True)
    with pytest.raises(UnavailableError):  # the default family is not loaded
        other_store.resolve(None, None)
    assert other_store.resolve("playbook", None).version == "v1_0_0"


def test_scorer_logs_only_unmarked_calls_with_family_and_release(loaded) -> None:  # type: ignore[no-untyped-def]
    log = PredictionLog(NatsBroker("nats://127.0.0.1:1"), capacity=100, max_in_flight=10)
    plane = plane_with(loaded, log)
    request = predict_request(rows_of(1)[0])
    plane.predict(request, logged_upstream=True)
    assert log.backlog == 0
    plane.predict(request, logged_upstream=False)
    assert log.backlog == 1
    batch = PredictBatchRequest(requests=[request] * 5)
    plane.predict_batch(batch, logged_upstream=True)
    assert log.backlog == 1
    plane.predict_batch(batch, logged_upstream=False)
    assert log.backlog == 6


def refused(root: Path, deployment: dict[str, str]) -> ArtifactRefusedError:
    with pytest.raises(ArtifactRefusedError) as info:
        FamilyLoader(root).load(Deployment(**deployment))  # type: ignore[arg-type]
    return info.value


def test_refusals_name_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good = build_family(root, version="v2_0_0", seed=2)
    dep = good.deployment()

    assert refused(root, {**dep, "sha256": "0" * 64}).reason == "sha256_mismatch"
    assert refused(root, {**dep, "artifact_uri": "families/../../etc"}).reason == "outside_root"
    assert refused(root, {**dep, "artifact_uri": "families/../models/m/v1"}).reason == (
        "outside_root"
    )
    assert refused(root, {**dep, "model_name": "other"}).reason == "card_mismatch"
    assert refused(root, {**dep, "artifact_uri": "families/playbook/v9_9_9"}).reason == (
        "unreadable"
    )

    # A member file changed after the card was written: refused, naming the member.
    copy = build_family(tmp_path / "c1", version="v2_0_0", seed=2)
    with (copy.directory / "risk.onnx").open("ab") as handle:
        handle.write(b"x")
    error = refused(tmp_path / "c1", copy.deployment())
    assert error.reason == "sha256_mismatch" and "risk" in error.message

    # A member whose file lies outside its release directory.
    copy = build_family(tmp_path / "c2", version="v2_0_0", seed=2)
    card = json.loads((copy.directory / "metrics.json").read_text())
    card["members"][-1]["file"] = "../../../outside.onnx"
    shutil.copy(copy.directory / "offset.onnx", tmp_path / "c2" / "outside.onnx")
    sha = rewrite_card(copy, members=card["members"])
    assert refused(tmp_path / "c2", {**copy.deployment(), "sha256": sha}).reason == "outside_root"

    # A member whose output does not have the card's shape.
    copy = build_family(tmp_path / "c3", version="v2_0_0", seed=2)
    body = quantile_onnx([0.5, 0.5], [1.0, 1.2], (0.2, 4.0)).SerializeToString()
    (copy.directory / "offset.onnx").write_bytes(body)
    card = json.loads((copy.directory / "metrics.json").read_text())
    card["members"][-1]["sha256"] = hashlib.sha256(body).hexdigest()
    sha = rewrite_card(copy, members=card["members"])
    assert refused(tmp_path / "c3", {**copy.deployment(), "sha256": sha}).reason == "signature"

    # A member reading a feature the family does not have.
    copy = build_family(tmp_path / "c4", version="v2_0_0", seed=2)
    card = json.loads((copy.directory / "metrics.json").read_text())
    card["members"][-2]["features"] = ["f0", "f1", "f2", "unknown"]
    sha = rewrite_card(copy, members=card["members"])
    assert refused(tmp_path / "c4", {**copy.deployment(), "sha256": sha}).reason == "signature"

    # A card that is not a valid family card.
    copy = build_family(tmp_path / "c5", version="v2_0_0", seed=2)
    sha = rewrite_card(copy, entry_routing={"H": "risk", "M": "entry_M", "L": "entry_L"})
    assert refused(tmp_path / "c5", {**copy.deployment(), "sha256": sha}).reason == "card"


async def test_reconciler_falls_back_to_the_last_good_release(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good = build_family(root, version="v1_0_0", seed=1)
    bad = build_family(root, version="v1_1_0", seed=2)
    (bad.directory / "rr.onnx").write_bytes(b"not onnx")
    families = FamilyStore(default_family="playbook")
    store = ModelStore(default_model="m")
    cache = DeploymentCache(tmp_path / "deployments.json")
    reconciler = Reconciler(
        store, FakeModelLoader(), cache, families=families, family_loader=FamilyLoader(root)
    )
    before = LOAD_FAILURES.labels("playbook", "sha256_mismatch")._value.get()
    history = [
        Deployment(**good.deployment()),  # type: ignore[arg-type]
        Deployment(**bad.deployment()),  # type: ignore[arg-type]
        Deployment("m", "v1", "production", "models/m/v1", "a" * 64),
    ]
    await reconciler.replace_state(history, source="jetstream")
    assert LOAD_FAILURES.labels("playbook", "sha256_mismatch")._value.get() == before + 1
    assert families.resolve(None, None).version == "v1_0_0"  # the replaced production serves
    assert store.resolve(None, None).version == "v1"  # models and families side by side
    assert FAMILIES_LOADED.labels("playbook", "v1_0_0", "production")._value.get() == 1
    cached = {(d.model_name, d.version, d.stage) for d in cache.load() or []}
    assert cached == {("playbook", "v1_0_0", "production"), ("m", "v1", "production")}


class FakeModelLoader:
    def load(self, deployment: Deployment) -> LoadedModel:
        return make_model(deployment.version, name=deployment.model_name)


def test_batch_mixes_releases_and_answers_each_from_its_own(root, loaded, release) -> None:  # type: ignore[no-untyped-def]
    newer = build_family(
        root,
        version="v1_1_0",
        seed=4,
        routing={"H": "entry_pooled", "M": "entry_M", "L": "entry_L"},
    )
    families = FamilyStore(default_family="playbook")
    families.install(loaded.with_stage("canary"), serve=False)
    families.install(FamilyLoader(root).load(Deployment(**newer.deployment())), serve=True)
    log = PredictionLog(NatsBroker("nats://127.0.0.1:1"), capacity=100, max_in_flight=10)
    plane = DataPlane(ModelStore(default_model="m"), log, families=families)
    rows = rows_of(9, seed=8)
    pins = ["", "v1_0_0", "v1_1_0"] * 3
    clusters = ["H", "M", "L", "", "H", "M", "L", "", "H"]
    batch = PredictBatchRequest(
        requests=[
            predict_request(f, signal_id=f"m{i}", family_version=v, liquidity_cluster=c)
            for i, (f, v, c) in enumerate(zip(rows, pins, clusters, strict=True))
        ]
    )
    answer = plane.predict_batch(batch, logged_upstream=False)
    for i, one in enumerate(answer.responses):
        want = release if pins[i] == "v1_0_0" else newer
        assert one.signal_id == f"m{i}" and one.family_version == want.version
        assert_heads(one, want.expected(rows[i], clusters[i]))
    assert log.backlog == 9  # one record per row, each with its own release
