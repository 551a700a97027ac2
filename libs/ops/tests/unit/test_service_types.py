"""The CLI reads the trainer's and the registry's answers into classes of hindsight-common,
without the services: importing the commands loads neither service nor what they train with,
and the services answer with those very classes (re-exported where they were defined)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hindsight.common import registry_api, trainer_api

pytestmark = pytest.mark.unit

SERVICES = ("hindsight.trainer", "hindsight.registry", "lightgbm", "onnx", "sklearn", "scipy")


def test_the_commands_import_no_service() -> None:
    script = (
        "import sys\n"
        "import hindsight.ops.commands\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SERVICES!r}"
        f" or any(m.startswith(s + '.') or m == s for s in {SERVICES!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_services_answer_with_the_shared_classes() -> None:
    from hindsight.registry import schemas
    from hindsight.trainer import http_api, storage

    for name in ("RunAccepted", "RunCreate", "RunPublic", "RunSummaryPublic"):
        assert getattr(http_api, name) is getattr(trainer_api, name)
    for name in ("RunMode", "RunStatus", "RunSummary", "TrainingRun"):
        assert getattr(storage, name) is getattr(trainer_api, name)
    assert issubclass(schemas.VersionDetail, registry_api.VersionDetail)
    assert issubclass(schemas.VersionPublic, registry_api.VersionPublic)
    assert list(schemas.VersionDetail.model_fields) == list(registry_api.VersionDetail.model_fields)
