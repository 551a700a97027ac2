"""Settings: the renamed prediction-log knob still reads its old variable."""

from __future__ import annotations

import pytest

from hindsight.gateway.config import GatewaySettings
from hindsight.scorer.config import ScorerSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("settings", "prefix"), [(GatewaySettings, "GATEWAY"), (ScorerSettings, "SCORER")]
)
def test_log_max_in_flight_reads_the_new_name_then_the_old_one(
    settings: type[GatewaySettings | ScorerSettings],
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings().log_max_in_flight == 32
    monkeypatch.setenv(f"HINDSIGHT_{prefix}_LOG_BATCH_SIZE", "7")
    assert settings().log_max_in_flight == 7
    monkeypatch.setenv(f"HINDSIGHT_{prefix}_LOG_MAX_IN_FLIGHT", "9")
    assert settings().log_max_in_flight == 9
    assert settings(log_max_in_flight=3).log_max_in_flight == 3


@pytest.mark.parametrize(
    ("settings", "prefix"), [(GatewaySettings, "GATEWAY"), (ScorerSettings, "SCORER")]
)
def test_log_linger_defaults_to_50_ms_and_refuses_a_negative_value(
    settings: type[GatewaySettings | ScorerSettings],
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings().log_linger_ms == 50.0
    monkeypatch.setenv(f"HINDSIGHT_{prefix}_LOG_LINGER_MS", "0")
    assert settings().log_linger_ms == 0.0
    monkeypatch.setenv(f"HINDSIGHT_{prefix}_LOG_LINGER_MS", "-1")
    with pytest.raises(ValueError, match="log_linger_ms"):
        settings()
