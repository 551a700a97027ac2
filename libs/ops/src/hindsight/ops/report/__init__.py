"""``hindsight report``: a monthly evaluation report of a model as one HTML file.

``source`` reads (registry evaluation API, /metrics drift gauges), ``charts`` draws
(matplotlib Agg → inline PNG), ``render`` writes the page, ``command`` is the CLI side.
"""

from .command import add_report_arguments, run_report

__all__ = ["add_report_arguments", "run_report"]
