"""Root conftest: the Hindsight test harness (real NATS JetStream and PostgreSQL fixtures)."""

pytest_plugins = ["hindsight.devstack.pytest_plugin"]
