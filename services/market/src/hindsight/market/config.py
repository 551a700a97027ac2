"""Market settings: ``HINDSIGHT_MARKET_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from hindsight.common.events import BARS_WINDOW
from hindsight.common.ports import PORTS
from hindsight.common.settings import BaseServiceSettings
from hindsight.market.domain.integrity import CALENDARS

__all__ = ["MarketSettings"]


class MarketSettings(BaseServiceSettings):
    """What the market service reads from the environment (README: Settings)."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_MARKET_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=PORTS["market"].http, ge=0, le=65535)
    bar_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="bar.closed events fetched (and written) at once."
    )
    signal_batch_size: int = Field(
        default=200, ge=1, le=10_000, description="signal.features events fetched at once."
    )
    window_subject: str = Field(
        default=BARS_WINDOW, min_length=1, description="NATS request-reply subject of windows."
    )
    max_window_bars: int = Field(
        default=5000, ge=1, description="Largest n a window request may ask for."
    )
    outbox_poll_s: float = Field(
        default=2.0, gt=0, description="How often the outbox relay looks for unsent labels."
    )
    sweep_every_s: float = Field(
        default=30.0,
        gt=0,
        description="How often every pending signal is checked, besides each bar arrival.",
    )
    cluster_refresh_s: float = Field(
        default=60.0, gt=0, description="How often liquidity clusters are re-ranked at most."
    )
    calendars: dict[str, str] = Field(
        default_factory=dict,
        description='JSON symbol -> calendar ("24x7", "fx", "equity_us") where the '
        "heuristic of domain.integrity.calendar_for is wrong.",
    )
    label_horizon_bars: int = Field(
        default=6, ge=1, le=500, description="The label spec's horizon (bars after the signal)."
    )
    label_risk_horizon_bars: int = Field(
        default=4, ge=1, le=500, description="Bars over which dd_katr (Risk target) is measured."
    )

    @field_validator("calendars")
    @classmethod
    def _known_calendars(cls, value: dict[str, str]) -> dict[str, str]:
        for symbol, calendar in value.items():
            if calendar not in CALENDARS:
                raise ValueError(f"{symbol}: {calendar!r} is not one of {', '.join(CALENDARS)}")
        return value
