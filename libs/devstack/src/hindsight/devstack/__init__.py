"""The local dev stack (``hindsight up``/``status``/``down``) and the pytest harness.

Modules: :mod:`.servers` (NATS, PostgreSQL as child processes), :mod:`.supervisor`
(restarts with backoff, ordered stop, service discovery), :mod:`.cli` (the ``hindsight``
command), :mod:`.pytest_plugin` (``nats_url``, ``database_url``, ``fresh_database``,
``nats_client`` fixtures).
"""
