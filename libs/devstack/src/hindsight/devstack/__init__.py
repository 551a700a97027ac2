"""The local dev stack (``hindsight up``/``status``/``down``, ``replay``) and the pytest harness.

Modules: :mod:`.servers` (NATS, PostgreSQL as child processes), :mod:`.supervisor`
(restarts with backoff, ordered stop), :mod:`.cli` (the subcommands this package plugs
into the ``hindsight`` command of ``hindsight-ops``), :mod:`.pytest_plugin` (``nats_url``,
``database_url``, ``fresh_database``, ``nats_client`` fixtures).
"""
