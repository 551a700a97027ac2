"""Hindsight registry: model versions, stages, promotion gates, audit log, deployments."""
