"""CLI commands for humans, all through the public APIs (HTTP and gRPC, never the DB).

``hindsight train | models | promote | rollback | score``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from hindsight.common.cli import admin_token, resolve_data_dir
from hindsight.common.registry_api import ModelSummary, VersionDetail, VersionPublic
from hindsight.common.trainer_api import RunAccepted, RunPublic

from .output import format_table
from .services import SERVICE_PORTS, discover_services

__all__ = [
    "service_url",
    "add_models_arguments",
    "add_promote_arguments",
    "add_rollback_arguments",
    "add_score_arguments",
    "add_train_arguments",
    "run_models",
    "run_promote",
    "run_rollback",
    "run_score",
    "run_train",
]

DEFAULT_MODEL = "trade_success"
_T = TypeVar("_T")
_MODELS = TypeAdapter(list[ModelSummary])
_VERSIONS = TypeAdapter(list[VersionPublic])
_VERSION = TypeAdapter(VersionDetail)
_ACCEPTED = TypeAdapter(RunAccepted)
_RUN = TypeAdapter(RunPublic)
_END_STATES = {"completed", "failed", "skipped"}


def _url(env_name: str, default: str) -> str:
    return os.environ.get(env_name, default).rstrip("/")


def service_url(service: str) -> str:
    """``HINDSIGHT_<SERVICE>_URL``, else the service's default HTTP port on localhost."""
    default = f"http://127.0.0.1:{SERVICE_PORTS[service]['http']}"
    return _url(f"HINDSIGHT_{service.upper()}_URL", default)


def _registry() -> str:
    return service_url("registry")


def _trainer() -> str:
    return service_url("trainer")


def _auth(args: argparse.Namespace) -> dict[str, str]:
    token = admin_token(resolve_data_dir(getattr(args, "data_dir", None)))
    return {"Authorization": f"Bearer {token}"}


def _read(adapter: TypeAdapter[_T], method: str, url: str, **kwargs: Any) -> _T:
    """One HTTP call's answer read into its type; a readable error when it is not one."""
    response = _request(method, url, **kwargs)
    try:
        return adapter.validate_json(response.content)
    except ValidationError as exc:
        raise SystemExit(f"hindsight: {method} {url}: unexpected answer: {exc}") from exc


def _print_json(answer: RunAccepted | RunPublic | VersionDetail) -> None:
    """``answer`` as its service wrote it (the same keys, in the same order), indented."""
    print(json.dumps(answer.model_dump(mode="json"), indent=2))


def _request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call; a readable error and exit code 1 instead of a traceback."""
    try:
        response = httpx.request(method, url, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        raise SystemExit(f"hindsight: cannot reach {url}: {exc}") from exc
    if response.status_code >= 400:
        try:
            detail = response.json()
        except ValueError:
            detail = response.text
        raise SystemExit(f"hindsight: {method} {url} → {response.status_code}: {detail}")
    return response


# --- train ------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name")
    parser.add_argument("--mode", choices=["full", "incremental"], default="full")
    parser.add_argument("--reason", default="requested from the CLI")
    parser.add_argument("--wait", action="store_true", help="wait until the run ends")


def run_train(args: argparse.Namespace) -> int:
    body = {"model_name": args.model, "mode": args.mode, "reason": args.reason}
    run: RunAccepted | RunPublic = _read(
        _ACCEPTED, "POST", f"{_trainer()}/v1/runs", json=body, headers=_auth(args)
    )
    run_id = run.training_run_id
    print(f"training run {run_id}: {run.status}")
    while args.wait and run.status not in _END_STATES:
        time.sleep(1.0)
        run = _read(_RUN, "GET", f"{_trainer()}/v1/runs/{run_id}")
    if args.wait:
        _print_json(run)
        return 0 if run.status in {"completed", "skipped"} else 1
    return 0


# --- models -----------------------------------------------------------------------------


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a model name: list its versions")


def run_models(args: argparse.Namespace) -> int:
    if args.model is None:
        models = _read(_MODELS, "GET", f"{_registry()}/v1/models")
        rows = [[m.model_name, m.production_version, m.versions] for m in models]
        print(format_table(["MODEL", "PRODUCTION", "VERSIONS"], rows))
        return 0
    versions = _read(_VERSIONS, "GET", f"{_registry()}/v1/models/{args.model}/versions")
    table = [
        [
            v.version,
            v.stage,
            v.created_at.isoformat().replace("+00:00", "Z"),  # as the registry writes it
            v.metrics.get("test_roc_auc"),
            v.recommendation,
        ]
        for v in versions
    ]
    print(format_table(["VERSION", "STAGE", "CREATED", "TEST ROC-AUC", "RECOMMENDATION"], table))
    return 0


# --- promote / rollback -----------------------------------------------------------------


def add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    parser.add_argument("version")
    parser.add_argument("--reason", required=True, help="why (kept in the audit log)")
    parser.add_argument("--force", action="store_true", help="promote although gates fail")


def run_promote(args: argparse.Namespace) -> int:
    url = f"{_registry()}/v1/models/{args.model}/versions/{args.version}/promote"
    version = _read(
        _VERSION,
        "POST",
        url,
        json={"reason": args.reason, "force": args.force},
        headers=_auth(args),
    )
    _print_json(version)
    return 0


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    parser.add_argument("--reason", required=True, help="why (kept in the audit log)")


def run_rollback(args: argparse.Namespace) -> int:
    url = f"{_registry()}/v1/models/{args.model}/rollback"
    version = _read(_VERSION, "POST", url, json={"reason": args.reason}, headers=_auth(args))
    _print_json(version)
    return 0


# --- score ------------------------------------------------------------------------------


def _default_target() -> str:
    if "HINDSIGHT_SCORE_TARGET" in os.environ:
        return os.environ["HINDSIGHT_SCORE_TARGET"]
    names = {service.name for service in discover_services()}
    # The trading engine's entry point is the gateway; without one, the scorer itself.
    return "127.0.0.1:50051" if "gateway" in names else "127.0.0.1:50052"


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help="JSON object, e.g. '{\"rsi_14\": 41.2}'")
    source.add_argument("--features-file", type=Path, help="a JSON file with the features")
    parser.add_argument("--signal-id", default="cli")
    parser.add_argument("--symbol", default="")
    parser.add_argument("--timeframe", default="")
    parser.add_argument("--side", default="buy", choices=["buy", "sell", "hold"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--version", default=None, help="pin one loaded version")
    parser.add_argument("--explain", action="store_true", help="include contributions")
    parser.add_argument("--target", default=None, help="host:port (default gateway or scorer)")
    tls = parser.add_argument_group("TLS (a gateway or scorer serving gRPC over TLS)")
    tls.add_argument("--tls-ca", type=Path, default=None, help="PEM CA of the server: use TLS")
    tls.add_argument("--tls-cert", type=Path, default=None, help="PEM client certificate (mTLS)")
    tls.add_argument("--tls-key", type=Path, default=None, help="PEM key of --tls-cert")
    tls.add_argument(
        "--tls-server-name", default=None, help="name to check in the server's certificate"
    )


def _channel(grpc: Any, target: str, args: argparse.Namespace) -> Any:
    """Plaintext, or TLS (mutual with --tls-cert/--tls-key) when --tls-ca is given."""
    from hindsight.common.errors import ConfigurationError
    from hindsight.common.tls import ClientTls, check_client_tls_settings

    try:
        check_client_tls_settings(
            "",
            ca_file=args.tls_ca,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            server_name=args.tls_server_name,
            names=("--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name"),
        )
    except ValueError as exc:
        raise SystemExit(f"hindsight: {exc}") from None
    if args.tls_ca is None:
        return grpc.insecure_channel(target)
    try:
        tls = ClientTls.from_files(
            args.tls_ca,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            server_name=args.tls_server_name,
        )
    except ConfigurationError as exc:
        raise SystemExit(f"hindsight: {exc}") from None
    return grpc.secure_channel(target, tls.credentials(), options=tls.channel_options())


def run_score(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

    text = args.features if args.features is not None else args.features_file.read_text()
    features = json.loads(text)
    if not isinstance(features, dict):
        raise SystemExit("hindsight: --features must be a JSON object of name → number")
    request = scoring_pb2.ScoreRequest(
        signal_id=args.signal_id,
        symbol=args.symbol,
        timeframe=args.timeframe,
        side=args.side,
        features={k: float("nan") if v is None else float(v) for k, v in features.items()},
        explain=args.explain,
    )
    if args.model:
        request.model_name = args.model
    if args.version:
        request.model_version = args.version
    target = args.target or _default_target()
    with _channel(grpc, target, args) as channel:
        try:
            response = scoring_pb2_grpc.ScoringStub(channel).Score(request, timeout=5.0)
        except grpc.RpcError as exc:
            print(f"hindsight: Score failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
    return 0
