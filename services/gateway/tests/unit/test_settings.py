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
