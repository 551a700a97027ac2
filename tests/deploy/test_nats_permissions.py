"""The NATS permissions of the secured deployment follow the event catalog.

``hindsight.common.catalog`` says who publishes and who consumes each subject. From it,
each NATS user of deploy/nats/nats-secure.conf must be allowed exactly: the JetStream API a
client of ours calls, the subjects it publishes, ``dlq.<subject>`` for each event it
consumes (dead letters), and ``_INBOX.>`` for replies; the one that answers a request-reply
subject subscribes to it. The catalog's consumers are in turn compared with what each
service's NATS side really subscribes, so the chain code → catalog → config is closed.
(test_nats_security.py runs the file in a real nats-server; test_nats_k8s.py checks that
Kubernetes runs it verbatim.)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faststream.nats import NatsBroker

from hindsight.common.broker import DLQ_STREAM, STREAM
from hindsight.common.catalog import CONSUMERS, PUBLISHERS, UPSTREAM
from hindsight.common.events import (
    BARS_WINDOW,
    EMBED_QUERY,
    EVENT_TYPES,
    dlq_subject,
)
from hindsight.common.settings import BaseServiceSettings

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import DEPLOY, OPTIONAL_SERVICES, ROOT, SERVICES  # noqa: E402
from nats_conf import parse  # noqa: E402

pytestmark = pytest.mark.unit

SECURE_CONF = DEPLOY / "nats/nats-secure.conf"
ALL_SERVICES = SERVICES + OPTIONAL_SERVICES
# NATS user of each party of the catalog: the services by their names, the upstream tools
# as `producer`. `operator` (humans; no limits) and `sys` (the system account) are not
# parties of the catalog.
NATS_USER = {UPSTREAM: "producer", **{s: s for s in ALL_SERVICES}}
INBOX = "_INBOX.>"
# What every JetStream client of ours calls: account and stream info, creating/updating
# the two Hindsight streams (ensure_streams at start), the last message per subject
# (replay feeds), the consumer API (durable pull consumers, ordered replay consumers),
# acks and flow control. Never STREAM.DELETE / PURGE / a wildcard over the stream API.
JETSTREAM_CLIENT = {
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    *(
        f"$JS.API.STREAM.{op}.{stream}"
        for op in ("INFO", "CREATE", "UPDATE")
        for stream in (STREAM, DLQ_STREAM)
    ),
    f"$JS.API.STREAM.MSG.GET.{STREAM}",
    f"$JS.API.DIRECT.GET.{STREAM}",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.>",
    "$JS.FC.>",
}
REQUEST_REPLY = set(PUBLISHERS) - set(EVENT_TYPES)  # core NATS: embed.query, market.bars.window
# Published, but no service consumes them yet (the catalog says so with an empty set).
NOT_YET_CONSUMED: set[str] = set()


def _users() -> dict[str, dict[str, Any]]:
    account = parse(SECURE_CONF.read_text())["accounts"]["HINDSIGHT"]
    users = account["users"]
    names = [u["user"] for u in users]
    assert len(names) == len(set(names)), names
    return {u["user"]: u for u in users}


def _expected(party: str) -> tuple[set[str], set[str]]:
    """(publish, subscribe) allow lists the catalog gives ``party``."""
    published = {s for s, who in PUBLISHERS.items() if party in who}
    consumed = {s for s, who in CONSUMERS.items() if party in who}
    answers = consumed & REQUEST_REPLY
    dead_letters = {dlq_subject(s) for s in consumed & set(EVENT_TYPES)}
    publish = JETSTREAM_CLIENT | published | dead_letters | ({INBOX} if answers else set())
    return publish, {INBOX} | answers


# --- the catalog itself ------------------------------------------------------------------


def test_catalog_names_a_publisher_and_a_consumer_for_every_subject() -> None:
    assert set(PUBLISHERS) == set(CONSUMERS) == set(EVENT_TYPES) | {EMBED_QUERY, BARS_WINDOW}
    assert REQUEST_REPLY == {EMBED_QUERY, BARS_WINDOW}
    for subject in PUBLISHERS:
        assert PUBLISHERS[subject], subject
        assert bool(CONSUMERS[subject]) != (subject in NOT_YET_CONSUMED), subject
    parties = set().union(*PUBLISHERS.values(), *CONSUMERS.values())
    assert parties == set(NATS_USER), parties ^ set(NATS_USER)
    assert not any(UPSTREAM in who for who in CONSUMERS.values()), "no consumer outside"


# --- the config against the catalog ------------------------------------------------------


def test_every_party_has_its_own_user_and_there_are_no_others() -> None:
    users = _users()
    limited = {name for name, user in users.items() if "permissions" in user}
    assert limited == set(NATS_USER.values())
    assert set(users) - limited == {"operator"}, "only the operator is unrestricted"
    config = parse(SECURE_CONF.read_text())
    assert set(config["accounts"]) == {"HINDSIGHT", "SYS"}
    assert [u["user"] for u in config["accounts"]["SYS"]["users"]] == ["sys"]
    assert config["system_account"] == "SYS"
    assert config["accounts"]["HINDSIGHT"]["jetstream"] == "enabled"
    for name, user in users.items():
        assert user["password"] == f"$NATS_{name.upper()}_PASSWORD", name


@pytest.mark.parametrize("party", sorted(NATS_USER))
def test_user_is_allowed_exactly_what_the_catalog_gives_its_party(party: str) -> None:
    permissions = _users()[NATS_USER[party]]["permissions"]
    assert set(permissions) == {"publish", "subscribe"}
    for direction in ("publish", "subscribe"):
        assert set(permissions[direction]) == {"allow"}, "no deny lists: allow lists only"
        allow = permissions[direction]["allow"]
        assert len(allow) == len(set(allow)), allow
    publish, subscribe = _expected(party)
    granted = set(permissions["publish"]["allow"])
    assert granted == publish, f"extra: {granted - publish}, missing: {publish - granted}"
    granted = set(permissions["subscribe"]["allow"])
    assert granted == subscribe, f"extra: {granted - subscribe}, missing: {subscribe - granted}"


def test_no_one_but_the_operator_may_delete_or_purge_a_stream() -> None:
    pattern = re.compile(r"\$JS\.API\.(STREAM|>|\*)")
    for name, user in _users().items():
        for subject in user.get("permissions", {}).get("publish", {}).get("allow", []):
            if pattern.match(subject):
                assert not re.search(r"DELETE|PURGE|>|\*", subject), (name, subject)


# --- the catalog's consumers against what the services subscribe ------------------------


async def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _stub(*names: str) -> SimpleNamespace:
    return SimpleNamespace(**dict.fromkeys(names, _nothing))


def _subscriptions_trainer(broker: NatsBroker) -> set[str]:
    from hindsight.trainer.messaging import register_consumers

    ingestor = _stub("on_signal", "on_outcome", "on_label")
    labels = _stub("on_labels")
    register_consumers(broker, ingestor, _stub("request"), max_deliveries=3, labels=labels)
    return set()


def _subscriptions_registry(broker: NatsBroker) -> set[str]:
    from hindsight.registry.messaging import subscribe, subscribe_evaluation

    subscribe(broker, _stub("handle_training_completed"), max_deliveries=3)
    subscribe_evaluation(broker, _stub("handle_predictions", "handle_outcome"), max_deliveries=3)
    return set()


def _subscriptions_embedder(broker: NatsBroker) -> set[str]:
    from hindsight.embedder.config import EmbedderSettings
    from hindsight.embedder.messaging import register_consumers

    register_consumers(broker, _stub("on_png", "on_json", "query"), EmbedderSettings())
    return set()


def _subscriptions_memory(broker: NatsBroker) -> set[str]:
    from hindsight.memory.messaging import register_consumers

    register_consumers(broker, _stub("on_embedding", "on_label"), max_deliveries=3, batch_size=8)
    return set()


def _subscriptions_labeling(broker: NatsBroker) -> set[str]:
    from hindsight.labeling.messaging import register_consumers

    register_consumers(broker, _stub("on_png", "on_json"), max_deliveries=3)
    return set()


def _subscriptions_scorer(broker: NatsBroker) -> set[str]:
    from hindsight.scorer.messaging import DeploymentFeed

    feed = DeploymentFeed(broker, BaseServiceSettings(), on_replayed=_nothing, on_deployed=_nothing)
    return set(feed.subjects)


def _subscriptions_gateway(broker: NatsBroker) -> set[str]:
    from hindsight.gateway.messaging import RoutingFeed

    feed = RoutingFeed(broker, BaseServiceSettings(), get_table=_nothing, set_table=_nothing)
    return set(feed.subjects)


def _subscriptions_market(broker: NatsBroker) -> set[str]:
    from hindsight.market.messaging import register_consumers, register_window_responder

    register_consumers(
        broker,
        on_bars=_nothing,
        on_signals=_nothing,
        max_deliveries=3,
        bar_batch_size=8,
        signal_batch_size=8,
    )
    register_window_responder(broker, _nothing, subject=BARS_WINDOW, max_n=10)  # type: ignore[arg-type]
    return set()


SUBSCRIBES: dict[str, Callable[[NatsBroker], set[str]]] = {
    "trainer": _subscriptions_trainer,
    "registry": _subscriptions_registry,
    "scorer": _subscriptions_scorer,
    "gateway": _subscriptions_gateway,
    "embedder": _subscriptions_embedder,
    "memory": _subscriptions_memory,
    "labeling": _subscriptions_labeling,
    "market": _subscriptions_market,
}


def _subject(subscriber: Any) -> str:
    subject = subscriber.subject  # faststream: an Address, the subject as the broker sees it
    return str(getattr(subject, "broker_address", subject))


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_catalog_consumers_are_what_the_service_subscribes(service: str) -> None:
    broker = NatsBroker()
    feeds = SUBSCRIBES[service](broker)  # replay feeds (ordered consumers) by their subjects
    subscribed = {_subject(s) for s in broker.subscribers} | feeds
    streamed = {_subject(s) for s in broker.subscribers if getattr(s, "stream", None)}
    assert subscribed == {s for s, who in CONSUMERS.items() if service in who}
    # JetStream consumers read events; core subscriptions answer request-reply subjects.
    assert streamed | feeds <= set(EVENT_TYPES)
    assert subscribed - streamed - feeds <= REQUEST_REPLY


def test_services_subscribe_only_in_their_messaging_modules() -> None:
    """So that the test above, which calls those modules, sees every subscription."""
    calls = re.compile(
        r"\bsubscribe_event(_batch)?\(|\.subscriber\(|\bReplayFeed\b|\.(pull_)?subscribe\("
    )
    for path in sorted((ROOT / "services").glob("*/src/hindsight/*/**/*.py")):
        if path.name in ("messaging.py", "cli.py"):  # cli.py: operators' commands
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not calls.search(code), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
    assert set(SUBSCRIBES) == set(ALL_SERVICES)
