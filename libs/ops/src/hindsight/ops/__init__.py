"""The operator's ``hindsight`` command and the monthly report: product features, no dev tools.

Modules: :mod:`.cli` (the ``hindsight`` command; other packages plug subcommands in),
:mod:`.commands` (``train``, ``models``, ``promote``, ``rollback``, ``score``: the
services' public HTTP and gRPC APIs, never the database), :mod:`.report` (``hindsight
report``), :mod:`.services` (the installed services and their default ports),
:mod:`.output` (tables for people).
"""
