"""``hindsight bars import`` as operators run it (the console script), against PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.integration

HINDSIGHT = str(Path(sys.executable).parent / "hindsight")


def run(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HINDSIGHT_DATABASE_URL": dsn}
    return subprocess.run(
        [HINDSIGHT, "bars", "import", *args], env=env, capture_output=True, text=True, timeout=300
    )


async def rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_a_dataset_imports_once_and_a_second_import_stores_nothing(
    fresh_database: str,
) -> None:
    first = run(fresh_database, "--dataset", "GOOG")
    assert first.returncode == 0, first.stderr
    assert "read 2148 bars: 2148 stored, 0 already there" in first.stdout, first.stdout
    second = run(fresh_database, "--dataset", "GOOG")
    assert second.returncode == 0, second.stderr
    assert "2148 already there" in second.stdout and " 0 stored" in second.stdout, second.stdout
    (n, dated, derived, version) = (
        await rows(
            fresh_database,
            """SELECT count(*), min(ts)::date::text, count(ema21), min(indicator_version)
               FROM market.bars WHERE symbol='GOOG' AND timeframe='1d'""",
        )
    )[0]
    assert (n, dated, version) == (2148, "2004-08-19", "1")
    assert derived == 2148 - 20  # EMA21: its first 20 bars are warm-up
    cluster = await rows(fresh_database, "SELECT cluster FROM market.clusters")
    assert [r["cluster"] for r in cluster] == ["M"]


async def test_bad_rows_are_rejected_by_field_and_the_good_ones_stored(
    fresh_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "ts,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,1.0,1.2,0.9,1.1,10\n"
        "2024-01-01T01:00:00Z,1.1,1.0,1.2,1.1,10\n"  # high < low
        "2024-01-01T02:00:00Z,1.1,1.3,1.0,1.2,-5\n"  # negative volume
        "2024-01-01T03:00:00Z,1.2,1.4,1.1,NaN,7\n"  # NaN
        "2024-01-01T00:30:00Z,1.2,1.4,1.1,1.3,7\n"  # time going back (and misaligned)
        "2024-01-01T04:00:00Z,1.2,1.4,1.1,1.3,7\n"
    )
    result = run(fresh_database, str(path), "--symbol", "EURUSD", "--timeframe", "1h")
    assert result.returncode == 1, result.stderr
    assert "2 stored" in result.stdout and "4 rejected" in result.stdout, result.stdout
    for field in ("high: ", "volume: ", "close: ", "ts: "):
        assert field in result.stderr, result.stderr
    stored = await rows(fresh_database, "SELECT ts FROM market.bars ORDER BY ts")
    assert [r["ts"].hour for r in stored] == [0, 4]


async def test_btcusd_imports_as_monthly_bars_opening_on_the_first(
    fresh_database: str,
) -> None:
    result = run(fresh_database, "--dataset", "BTCUSD")
    assert result.returncode == 0, result.stderr
    assert "read 156 bars: 156 stored" in result.stdout, result.stdout
    assert "0 missing bar(s) in 0 gap(s)" in result.stdout, result.stdout
    (n, first, last, not_first, atr) = (
        await rows(
            fresh_database,
            """SELECT count(*), min(ts), max(ts),
                      count(*) FILTER (WHERE ts <> date_trunc('month', ts AT TIME ZONE 'UTC')
                                                    AT TIME ZONE 'UTC'),
                      count(atr14)
               FROM market.bars WHERE symbol='BTCUSD' AND timeframe='1mo'""",
        )
    )[0]
    assert (n, first.isoformat(), last.isoformat(), not_first) == (
        156,
        "2012-01-01T00:00:00+00:00",
        "2024-12-01T00:00:00+00:00",
        0,
    )
    assert atr == 156 - 13  # ATR14: its first 13 bars are warm-up
    cluster = await rows(fresh_database, "SELECT dollar_volume FROM market.clusters")
    assert len(cluster) == 1 and cluster[0]["dollar_volume"] > 0


async def test_a_missing_month_is_reported_as_a_gap_and_not_filled(
    fresh_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "monthly.csv"
    path.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-31,1,2,0.5,1.5,10\n"
        "2024-02-29,1.5,2,1,1.2,10\n"
        "2024-05-31,1.2,2,1,1.8,10\n"  # March and April missing
    )
    result = run(
        fresh_database,
        str(path),
        "--symbol",
        "BTCUSD",
        "--timeframe",
        "1mo",
        "--dated",
        "period_end",
    )
    assert result.returncode == 0, result.stderr
    assert "3 stored" in result.stdout and "2 missing bar(s) in 1 gap(s)" in result.stdout
    gaps = await rows(fresh_database, "SELECT gap_start, gap_end, missing_bars FROM market.gaps")
    assert [(g["gap_start"].month, g["gap_end"].month, g["missing_bars"]) for g in gaps] == [
        (2, 5, 2)
    ]
    stored = await rows(fresh_database, "SELECT ts FROM market.bars ORDER BY ts")
    assert [r["ts"].month for r in stored] == [1, 2, 5]


async def test_the_dev_stack_imports_eurusd_goog_and_btcusd(
    fresh_database: str, tmp_path: Path
) -> None:
    from hindsight.devstack.stack import BAR_DATASETS, bars_import_spec

    assert BAR_DATASETS == ("EURUSD", "GOOG", "BTCUSD")
    env = {**os.environ, "HINDSIGHT_DATABASE_URL": fresh_database}
    specs = {d: bars_import_spec(d, env=env, log_dir=tmp_path) for d in BAR_DATASETS}
    # One command, the dataset's name apart (GOOG is imported for real above; EURUSD's
    # 5,000 bars would only slow the suite down); BTCUSD, the new one, runs here for real.
    assert {tuple(s.argv[:-1]) for s in specs.values()} == {
        (sys.executable, "-m", "hindsight.devstack", "bars", "import", "--dataset")
    }
    done = subprocess.run(
        specs["BTCUSD"].argv, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    stored = await rows(
        fresh_database, "SELECT symbol, timeframe, count(*) AS n FROM market.bars GROUP BY 1, 2"
    )
    assert [(r["symbol"], r["timeframe"], r["n"]) for r in stored] == [("BTCUSD", "1mo", 156)]
