"""Every metric a Grafana panel or an alert rule names has series in a real Prometheus.

The services run as real processes (real NATS JetStream and PostgreSQL from the test
harness); a real Prometheus (the Debian binary) scrapes them every second and loads the
shipped alert rules. Nobody calls ``/readyz``: ``hindsight_ready`` must still turn 1. The
test then drives the paths that create labelled series: a failed training run and a DLQ'd
message (each the first of its kind: the alert's own ``increase()`` expression must see it
and the alert fire), training runs, manual promotion, a shadow experiment that runs until
its per-arm gauges are scraped and is then cancelled, gateway Score calls, losing outcomes
that make the degradation monitor roll production back (the first rollback: its alert must
fire too), and a killed scorer that opens the gateway's breaker. Finally every metric a
dashboard or rule names must have had series during the test, and every dashboard panel's
query (template variables set to All) must return series over the test's time range.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
import httpx
import pytest
import yaml

from hindsight.devstack.ports import free_port
from hindsight.devstack.synthetic import generate, publish
from hindsight.devstack.testing import (
    ServiceProcesses,
    get_json,
    wait_until,
)
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import (  # noqa: E402
    DASHBOARD_NEEDS,
    DEPLOY,
    OPTIONAL_SERVICES,
    dashboard_exprs,
    histogram_bases,
    installed_services,
    referenced_metrics,
    require_tool,
)

SERVICES = installed_services()

pytestmark = pytest.mark.integration

TOKEN = "deploy-test-admin-token"
MODEL = "trade_success"
N_TRAIN = 3000
N_SCORED = 25


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, database_url: str, hindsight_test_dir: Path
) -> AsyncIterator[ServiceProcesses]:
    stack = await ServiceProcesses.fresh_platform(
        hindsight_test_dir / f"deploy-{os.getpid()}",
        nats_url=nats_url,
        database_url=database_url,
        database="deploy_metrics",
        admin_token=TOKEN,
        extra_env={
            "HINDSIGHT_MAX_DELIVERIES": "2",
            "HINDSIGHT_TRAINER_NUM_BOOST_ROUND": "60",
            "HINDSIGHT_TRAINER_CV_FOLDS": "0",
            "HINDSIGHT_TRAINER_BOOTSTRAP_RESAMPLES": "0",
            "HINDSIGHT_REGISTRY_MANUAL_APPROVAL": "true",
            "HINDSIGHT_REGISTRY_OUTBOX_POLL_S": "0.2",
            "HINDSIGHT_REGISTRY_EVALUATE_EVERY_S": "1",
            "HINDSIGHT_REGISTRY_DEGRADATION_WINDOW": "20",
            "HINDSIGHT_REGISTRY_DEGRADATION_DEBOUNCE_S": "0.2",
            "HINDSIGHT_GATEWAY_BREAKER_WINDOW": "4",
            "HINDSIGHT_GATEWAY_BREAKER_MIN_CALLS": "2",
            "HINDSIGHT_GATEWAY_BREAKER_OPEN_S": "60",
            # The scenario scores 25 rows and lasts seconds: report PSI from 10 rows, often.
            "HINDSIGHT_SCORER_DRIFT_MIN_ROWS": "10",
            "HINDSIGHT_SCORER_DRIFT_FLUSH_S": "0.2",
            "HINDSIGHT_SCORER_DRIFT_EXPORT_S": "0.5",
            # The trainer's live drift: re-read production often, report from 10 signals.
            "HINDSIGHT_TRAINER_DRIFT_MIN_ROWS": "10",
            "HINDSIGHT_TRAINER_DRIFT_REFRESH_S": "0.5",
            "HINDSIGHT_TRAINER_DRIFT_EXPORT_S": "0.5",
        },
    )
    try:
        for service in SERVICES:
            stack.start(service)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def prometheus(stack: ServiceProcesses, hindsight_test_dir: Path) -> Iterator[str]:
    """A real Prometheus scraping the four services every second, with the shipped rules."""
    binary = require_tool("prometheus", "apt-get install -y prometheus")
    root = hindsight_test_dir / f"prometheus-{os.getpid()}"
    (root / "data").mkdir(parents=True)
    (root / "alerts.yml").write_text((DEPLOY / "prometheus/alerts.yml").read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(root / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": name,
                "static_configs": [{"targets": [f"127.0.0.1:{stack.ports[name + '_http']}"]}],
            }
            for name in SERVICES
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while get_json(f"{url}/api/v1/targets") is None:
            assert proc.poll() is None, (root / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


EXPERIMENT_SERIES = (
    "hindsight_registry_experiment_traffic_share",
    "hindsight_registry_experiment_arm_outcomes",
    "hindsight_registry_experiment_arm_win_rate",
    "hindsight_registry_experiment_arm_brier",
    "hindsight_registry_experiment_p_value",
)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector ``expr`` evaluates to now (empty when it selects nothing)."""
    body = get_json(f"{prometheus}/api/v1/query?{urlencode({'query': expr})}")
    assert body is not None and body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


def _rule_expr(alert: str) -> str:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return next(
        str(r["expr"]) for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert
    )


def _firing(prometheus: str) -> set[str]:
    body = get_json(f"{prometheus}/api/v1/alerts") or {"data": {"alerts": []}}
    return {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}


async def _first_event_moves_increase(
    prometheus: str, stack: ServiceProcesses, *, alert: str, series: str, cause: Any
) -> None:
    """``series`` is scraped at 0; ``cause()`` makes its first event; the alert's own
    ``increase()`` expression then returns a value above 0 and the alert fires."""
    await wait_until(
        f"Prometheus to scrape {series} at 0 before its first event",
        lambda: [r for r in _query(prometheus, series) if float(r["value"][1]) == 0],
        timeout=60,
        services=stack,
    )
    assert not _query(prometheus, _rule_expr(alert)), f"{alert} fires before its event"
    await cause()
    expr = _rule_expr(alert)
    await wait_until(
        f"{alert}'s increase() to see the first event",
        lambda: [r for r in _query(prometheus, expr) if float(r["value"][1]) > 0],
        timeout=120,
        services=stack,
    )
    await wait_until(f"{alert} to fire", lambda: alert in _firing(prometheus), timeout=30)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _metrics_text(stack: ServiceProcesses, service: str) -> str:
    try:
        return httpx.get(f"{stack.url(service)}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return ""


def _has_series(stack: ServiceProcesses, service: str, name: str) -> bool:
    return any(line.startswith(name) for line in _metrics_text(stack, service).splitlines())


async def _train(stack: ServiceProcesses, reason: str) -> str:
    trainer = stack.url("trainer")
    response = httpx.post(
        f"{trainer}/v1/runs",
        json={"model_name": MODEL, "mode": "full", "reason": reason},
        headers=_auth(),
        timeout=10.0,
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["training_run_id"]
    run: dict[str, Any] = await wait_until(
        f"training run {reason}",
        lambda: (r := get_json(f"{trainer}/v1/runs/{run_id}")) and r["status"] != "running" and r,
        timeout=300,
        services=stack,
    )
    assert run["status"] == "completed", run
    version = str(run["version"])
    registry = stack.url("registry")
    await wait_until(
        f"the registry to register {version}",
        lambda: get_json(f"{registry}/v1/models/{MODEL}/versions/{version}"),
        timeout=60,
        services=stack,
    )
    return version


def _post(stack: ServiceProcesses, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{stack.url('registry')}{path}", json=body, headers=_auth(), timeout=10)
    assert response.status_code in (200, 201, 202), (
        f"{path}: {response.status_code} {response.text}"
    )
    return response.json()


def _production(stack: ServiceProcesses) -> str | None:
    for d in get_json(f"{stack.url('registry')}/v1/deployments") or []:
        if d["model_name"] == MODEL:
            return str(d["version"])
    return None


def _request(s: Any) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(
        signal_id=s.signal_id,
        symbol=s.symbol,
        timeframe=s.timeframe,
        side=s.side,
        features={k: (float("nan") if v is None else float(v)) for k, v in s.features.items()},
    )


def _score(port: int, requests: list[scoring_pb2.ScoreRequest]) -> list[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        return [stub.Score(r, timeout=5.0) for r in requests]


async def _exercise(
    stack: ServiceProcesses, nats_url: str, nats_client: Any, prometheus: str
) -> None:
    """Drive every path that creates a labelled series the dashboards and rules use."""
    pairs = generate(N_TRAIN + N_SCORED, seed=11)
    pairs.sort(key=lambda pair: pair[0].ts)
    train, scored = pairs[:N_TRAIN], pairs[N_TRAIN:]
    trainer = stack.url("trainer")

    async def failed_run() -> None:  # no data yet: the run fails
        response = httpx.post(
            f"{trainer}/v1/runs",
            json={"model_name": MODEL, "mode": "full", "reason": "deploy-test: no data"},
            headers=_auth(),
            timeout=10.0,
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["training_run_id"]
        run = await wait_until(
            "the data-less run to end",
            lambda: (
                (r := get_json(f"{trainer}/v1/runs/{run_id}")) and r["status"] != "running" and r
            ),
            timeout=120,
            services=stack,
        )
        assert run["status"] == "failed", run

    await _first_event_moves_increase(
        prometheus,
        stack,
        alert="HindsightTrainingRunFailed",
        series='hindsight_trainer_runs_total{status="failed"}',
        cause=failed_run,
    )

    async def dead_letter() -> None:  # one malformed signal.features: dead-lettered
        await nats_client.jetstream().publish("signal.features", b'{"not": "a signal"}')

    await _first_event_moves_increase(
        prometheus,
        stack,
        alert="HindsightDlqGrowing",
        series='hindsight_events_consumed_total{job="trainer",subject="signal.features",'
        'outcome="dead_lettered"}',
        cause=dead_letter,
    )
    # The DLQ depth gauge existed at 0 and now counts the message.
    await wait_until(
        "hindsight_dlq_messages to count the dead letter",
        lambda: _query(
            prometheus, 'max(hindsight_dlq_messages{subject="dlq.signal.features"}) >= 1'
        ),
        timeout=60,
        services=stack,
    )
    await publish(nats_url, train)
    await wait_until(
        "the trainer to ingest the signals",
        lambda: (s := get_json(f"{trainer}/v1/stats")) and s["signals_with_outcome"] >= N_TRAIN,
        timeout=180,
        services=stack,
    )

    # v1: trained, approved by hand (manual approval is on, as in prod).
    v1 = await _train(stack, "deploy-test v1")
    _post(stack, f"/v1/models/{MODEL}/versions/{v1}/promote", {"reason": "approve v1"})
    # v2: a shadow experiment is started and cancelled, then v2 is approved.
    v2 = await _train(stack, "deploy-test v2")
    experiment = _post(
        stack,
        "/v1/experiments",
        {"model_name": MODEL, "kind": "shadow", "candidate_version": v2, "reason": "drill"},
    )
    # The evaluator exports the running experiment's arms: the dashboard's table shows them.
    # The series leave with the experiment, so it runs until each was scraped at least 4 times
    # (4 s at a 1 s scrape): a panel's range query, stepped every 2 s, then sees them at a step.
    selector = f'{{experiment_id="{experiment["experiment_id"]}"}}'
    await wait_until(
        "Prometheus to scrape the running experiment's traffic split",
        lambda: _query(
            prometheus,
            "hindsight_registry_experiment_traffic_share"
            f'{{experiment_id="{experiment["experiment_id"]}",arm="control"}} == 1',
        ),
        timeout=60,
        services=stack,
    )
    await wait_until(
        "4 scrapes of every series of the running experiment",
        lambda: all(
            _query(prometheus, f"count_over_time({name}{selector}[60s]) >= 4")
            for name in EXPERIMENT_SERIES
        ),
        timeout=60,
        services=stack,
    )
    _post(stack, f"/v1/experiments/{experiment['experiment_id']}/cancel", {"reason": "drill"})
    _post(stack, f"/v1/models/{MODEL}/versions/{v2}/promote", {"reason": "approve v2"})
    await wait_until("v2 in production", lambda: _production(stack) == v2, timeout=60)

    # The trading engine scores through the gateway until v2 answers.
    port = stack.ports["gateway_grpc"]
    requests = [_request(s) for s, _ in scored]
    await wait_until(
        "the gateway to answer with v2",
        lambda: (a := _score(port, requests[:1])[0]) and a.model_version == v2 and not a.fallback,
        timeout=60,
        services=stack,
    )
    answers = _score(port, requests)
    assert all(a.model_version == v2 for a in answers)
    # v2's latency series leave the scorer when v2 is retired below: have them scraped first.
    await wait_until(
        "Prometheus to scrape the scorer's latency histogram",
        lambda: "hindsight_scorer_score_seconds_count" in _scraped_names(prometheus),
        timeout=30,
        services=stack,
    )

    # Every scored trade loses: the degradation monitor rolls v2 back to v1 (the first
    # degradation rollback of this registry process: its alert must see it).
    losses = [(s, o.model_copy(update={"result": "loss"})) for s, o in scored]

    async def degrade() -> None:
        await publish(nats_url, losses)
        await wait_until(
            "the degradation monitor to roll v2 back",
            lambda: _production(stack) == v1,
            timeout=120,
            services=stack,
        )

    await _first_event_moves_increase(
        prometheus,
        stack,
        alert="HindsightModelRolledBackForDegradation",
        series=f'hindsight_registry_degradation_rollbacks_total{{model_name="{MODEL}"}}',
        cause=degrade,
    )

    # The trainer compared the new live signals with production's reference.
    await wait_until(
        "Prometheus to scrape the trainer's live drift gauges",
        lambda: "hindsight_trainer_feature_psi" in _scraped_names(prometheus),
        timeout=30,
        services=stack,
    )

    if set(OPTIONAL_SERVICES) <= set(SERVICES):
        await _exercise_memory(stack, nats_client, prometheus)

    # The scorer dies: the gateway answers with fallbacks and opens its breaker.
    stack.stop("scorer", sig=signal.SIGKILL)
    await wait_until(
        "the gateway breaker to open",
        lambda: (
            _score(port, requests[:2])
            and _has_series(stack, "gateway", "hindsight_gateway_breaker_transitions_total{")
        ),
        timeout=60,
        services=stack,
    )


async def _exercise_memory(stack: ServiceProcesses, nats_client: Any, prometheus: str) -> None:
    """A closed trade with a suggestion and a theory doc go through embedder → memory and
    into labeling's queue; a memory search (embed.query) and a label saved by a labeler
    logged in through the form create the remaining labelled series."""
    from hindsight.common.events import JsonCreated

    meta = {
        "trade_id": "T-deploy", "symbol": "EURUSD", "timeframe": "1h", "side": "buy",
        "entry": 1.08, "sl": 1.075, "tp": 1.09, "opened_at": "2026-11-02T10:00:00Z",
        "closed_at": "2026-11-02T15:00:00Z", "result": "win", "pnl": 120.5,
        "realised_r": 2.0, "signal_id": "S-deploy", "setup": "breakout",
    }  # fmt: skip
    suggestion = {
        "trade_id": "T-deploy", "label": "approved", "quality_grade": "B", "confidence": 0.7,
        "comment": "Clean breakout above the range.", "model": "rule-based-stand-in/1",
    }  # fmt: skip
    docs = [
        JsonCreated.create(
            source="deploy-test", doc_type="trade_meta", payload=meta, run_id="run-deploy",
            trade_id="T-deploy", doc_id="trade_meta:T-deploy:closed",
        ),
        JsonCreated.create(
            source="deploy-test", doc_type="llm_suggestion", payload=suggestion,
            run_id="run-deploy", trade_id="T-deploy", doc_id="llm_suggestion:T-deploy",
        ),
        JsonCreated.create(
            source="deploy-test", doc_type="theory", run_id="run-deploy",
            payload={"title": "Breakouts", "text": "A breakout above resistance on volume."},
        ),
    ]  # fmt: skip
    js = nats_client.jetstream()
    for doc in docs:
        await js.publish(
            doc.subject, doc.to_json_bytes(), headers={"Nats-Msg-Id": doc.message_id()}
        )
    await wait_until(
        "memory to upsert the embedded docs",
        lambda: _has_series(stack, "memory", "hindsight_memory_upserts_total{"),
        timeout=120,
        services=stack,
    )
    search = httpx.post(
        f"{stack.url('memory')}/v1/search",
        json={"text": "breakout above resistance", "collections": ["theory_docs"]},
        timeout=30,
    )
    assert search.status_code == 200, search.text

    # A labeler (created with the `hindsight labelers` command) labels the trade.
    created = subprocess.run(
        [sys.executable, "-m", "hindsight.ops", "labelers", "add", "ops-test",
         "--password-stdin", "--database-url", stack.env["HINDSIGHT_DATABASE_URL"]],
        input="deploy-test-password\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    base = stack.url("labeling")
    with httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/login").text  # sets the login CSRF cookie; the form carries it
        marker = 'name="csrf_token" value="'
        login_token = form[form.index(marker) + len(marker) :].split('"', 1)[0]
        login = client.post(
            "/login",
            data={
                "username": "ops-test",
                "password": "deploy-test-password",
                "csrf_token": login_token,
            },
        )
        assert login.status_code == 303, login.text
        page = client.get("/").text
        marker = 'name="csrf-token" content="'
        csrf = page[page.index(marker) + len(marker) :].split('"', 1)[0]
        await wait_until(
            "labeling to queue the trade",
            lambda: client.get("/api/items/T-deploy").status_code == 200,
            timeout=60,
            services=stack,
        )
        saved = client.post(
            "/api/labels",
            json={"trade_id": "T-deploy", "label": "approved", "quality_grade": "B"},
            headers={"X-CSRF-Token": csrf},
        )
        assert saved.status_code == 200, saved.text
    await wait_until(
        "Prometheus to scrape the memory/embedder/labeling series",
        lambda: (
            {
                "hindsight_labeling_labels_total",
                "hindsight_embedder_queries_total",
                "hindsight_memory_search_seconds_bucket",
            }
            <= _scraped_names(prometheus)
        ),
        timeout=30,
        services=stack,
    )


def _scraped_names(prometheus: str) -> set[str]:
    body = get_json(f"{prometheus}/api/v1/label/__name__/values")
    return set(body["data"]) if body else set()


# Three training runs, 3,000 signals and the degradation drill on a shared CI machine.
@pytest.mark.timeout(900)
async def test_every_metric_named_by_dashboards_and_rules_is_scraped(
    stack: ServiceProcesses, prometheus: str, nats_url: str, nats_client: Any
) -> None:
    started = time.time()
    # Nobody calls /readyz (as under compose): each service re-evaluates its checks and
    # hindsight_ready follows. The scorer has no model yet: it reads 0, the others 1.
    await wait_until(
        "hindsight_ready of every service, 1 where ready, without any /readyz call",
        lambda: (
            {r["metric"]["service"] for r in _query(prometheus, "hindsight_ready")} >= set(SERVICES)
            and {r["metric"]["service"] for r in _query(prometheus, "hindsight_ready == 1")}
            >= {"trainer", "registry"}
        ),
        timeout=60,
        services=stack,
    )
    assert _query(prometheus, 'hindsight_ready{service="scorer"} == 0'), "scorer has no model"
    await _exercise(stack, nats_url, nats_client, prometheus)
    # The scorer was killed last: its series were scraped while it ran. Let Prometheus take
    # a few more scrapes of the gateway and the registry after the last step.
    time.sleep(3)
    targets = get_json(f"{prometheus}/api/v1/targets")
    jobs_up = {t["labels"]["job"] for t in targets["data"]["activeTargets"] if t["health"] == "up"}
    assert {"trainer", "registry", "gateway"} <= jobs_up, json.dumps(targets)[:2000]

    names = _scraped_names(prometheus)
    wanted = referenced_metrics(SERVICES)
    for base in histogram_bases(wanted):
        wanted |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    missing = sorted(wanted - names)
    assert not missing, (
        f"dashboards/rules reference metrics Prometheus never scraped: {missing}{stack.log_tails()}"
    )
    # Each of them had series during the test (not only a name in the TSDB's index).
    window = f"{int(time.time() - started) + 5}s"
    without_series = [
        name
        for name in sorted(wanted)
        if not _query(prometheus, f"count(last_over_time({name}[{window}]))")
    ]
    assert not without_series, f"no series during the test: {without_series}"
    # Every panel shows data: its query (template variables = All) returns series.
    empty = []
    checked = 0
    for dashboard, exprs in dashboard_exprs().items():
        if not DASHBOARD_NEEDS.get(dashboard, frozenset()) <= set(SERVICES):
            continue
        for expr in exprs:
            promql = expr.replace("$instance", ".*").replace("$model", ".*")
            body = get_json(
                f"{prometheus}/api/v1/query_range?"
                + urlencode({"query": promql, "start": started, "end": time.time(), "step": "2"})
            )
            assert body is not None and body["status"] == "success", f"{dashboard}: {promql}"
            checked += 1
            if not body["data"]["result"]:
                empty.append(f"{dashboard}: {expr}")
    assert not empty, "panels without data over the test:\n" + "\n".join(empty)
    print(
        f"\n{len(wanted)} referenced metric names with series, among {len(names)} scraped; "
        f"{checked} panel queries return data"
    )

    # The shipped rules load in the real Prometheus and evaluate without error.
    rules = get_json(f"{prometheus}/api/v1/rules")
    groups = rules["data"]["groups"]
    assert groups and all(
        r.get("health") in ("ok", "unknown") for g in groups for r in g["rules"]
    ), json.dumps(groups)[:3000]
