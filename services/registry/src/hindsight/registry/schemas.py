"""Bodies of the registry's HTTP API that are not storage records as they are."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hindsight.common import registry_api
from hindsight.common.feature_schema import FeatureList
from hindsight.registry.domain import Headline
from hindsight.registry.storage import VersionRecord, VersionWithCard

__all__ = [
    "ArchiveRequest",
    "ExperimentAction",
    "ExperimentCreate",
    "FeatureSchemaCreate",
    "PromoteRequest",
    "RollbackRequest",
    "VersionDetail",
    "VersionPublic",
]


class PromoteRequest(BaseModel):
    """Body of POST .../promote."""

    reason: str = Field(min_length=1, max_length=2000)
    force: bool = False
    stage: Literal["production", "staging"] = "production"


class RollbackRequest(BaseModel):
    """Body of POST .../rollback."""

    reason: str = Field(min_length=1, max_length=2000)


class ArchiveRequest(BaseModel):
    """Body of POST .../archive (optional)."""

    reason: str = Field(default="archived by admin", min_length=1, max_length=2000)


class ExperimentCreate(BaseModel):
    """Body of POST /v1/experiments."""

    model_name: str = Field(min_length=1, max_length=200)
    kind: Literal["canary", "ab", "shadow"]
    candidate_version: str = Field(min_length=1, max_length=200)
    candidate_share: float | None = Field(default=None, gt=0, lt=1)
    """Canary default 0.1, A/B default 0.5; ignored for shadow."""
    min_samples_per_arm: int = Field(default=200, ge=2)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    auto_promote: bool | None = None
    """Default: HINDSIGHT_REGISTRY_AUTO_PROMOTE_EXPERIMENTS."""
    reason: str | None = Field(default=None, max_length=2000)


class ExperimentAction(BaseModel):
    """Optional body of POST /v1/experiments/{id}/complete|cancel|approve."""

    reason: str | None = Field(default=None, min_length=1, max_length=2000)


class FeatureSchemaCreate(BaseModel):
    """Body of PUT /v1/feature-schemas/{version}: the ordered features it declares."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    """Optional; when given it must be the version of the path."""
    features: FeatureList


class VersionPublic(registry_api.VersionPublic):
    """A version as the API shows it: its headline as ``metrics``, plus the recommendation."""

    @classmethod
    def of(cls, record: VersionRecord) -> VersionPublic:
        """The public form of a stored version."""
        fields = dict(record)
        fields.pop("card", None)
        head: Headline = fields.pop("headline")
        return cls(**fields, metrics=head, recommendation=head.get("recommendation"))


class VersionDetail(registry_api.VersionDetail):
    """A version with its full ``metrics.json`` (null for a refused version)."""

    @classmethod
    def of_carded(cls, record: VersionWithCard) -> VersionDetail:
        """The public form of a stored version with its card."""
        fields = dict(record)
        head: Headline = fields.pop("headline")
        return cls(**fields, metrics=head, recommendation=head.get("recommendation"))
