"""Backup retention: the newest of each of the last N days, weeks and months is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.ops.backup import label_of, select_kept, time_of

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # a Thursday


def at(day: int, hour: int = 3, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_the_newest_of_each_recent_day_is_kept_and_the_rest_deleted() -> None:
    backups = [at(d, h) for d in range(20, 27) for h in (3, 9)]
    kept = select_kept(backups, NOW, daily=3, weekly=0, monthly=0)
    assert kept == {at(26, 9), at(25, 9), at(24, 9)}


def test_weeks_keep_the_newest_of_each_iso_week() -> None:
    # One backup a day for five weeks back; 3 weeks: this week (Mon 23rd..), the two before.
    backups = [NOW - timedelta(days=i, hours=12) for i in range(35)]
    kept = select_kept(backups, NOW, daily=0, weekly=3, monthly=0)
    assert kept == {NOW - timedelta(hours=12), at(22, 3), at(15, 3)}  # Sundays end weeks


def test_months_keep_the_newest_of_each_month_across_a_year_boundary() -> None:
    backups = [at(1, month=m, year=y) for y in (2025, 2026) for m in range(1, 13)]
    backups = [b for b in backups if b <= NOW]
    now = datetime(2026, 2, 10, tzinfo=UTC)
    kept = select_kept([b for b in backups if b <= now], now, daily=0, weekly=0, monthly=4)
    assert kept == {at(1, month=2), at(1, month=1), at(1, month=12, year=2025),
                    at(1, month=11, year=2025)}  # fmt: skip


def test_the_newest_backup_survives_even_with_zero_counts() -> None:
    backups = [at(1, month=1), at(1, month=3)]
    assert select_kept(backups, NOW, 0, 0, 0) == {at(1, month=3)}
    assert select_kept([], NOW, 7, 4, 6) == set()


def test_backups_from_the_future_are_never_deleted() -> None:
    future = NOW + timedelta(days=2)
    assert future in select_kept([at(1), future], NOW, 1, 0, 0)


def test_the_defaults_keep_at_most_seventeen() -> None:
    backups = [NOW - timedelta(hours=6 * i) for i in range(4 * 400)]
    kept = select_kept(backups, NOW, 7, 4, 6)
    assert len(kept) <= 7 + 4 + 6
    assert max(backups) in kept


def test_labels_are_utc_seconds_and_round_trip() -> None:
    assert label_of(NOW) == "20261126T150000Z"
    assert time_of(label_of(NOW)) == NOW


moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 11, 26, 14)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


@given(
    st.lists(moments, max_size=60),
    st.integers(0, 10),
    st.integers(0, 6),
    st.integers(0, 14),
)
def test_retention_properties(
    backups: list[datetime], daily: int, weekly: int, monthly: int
) -> None:
    kept = select_kept(backups, NOW, daily, weekly, monthly)
    assert kept <= set(backups)
    assert len(kept) <= max(1, daily + weekly + monthly) or (not backups)
    if backups:
        assert max(backups) in kept
    # Every kept backup is the newest of its day, or the overall newest.
    for k in kept:
        same_day = [b for b in backups if b.date() == k.date()]
        assert k == max(same_day)
    # More generous counts never delete what smaller ones kept (monotone).
    assert kept <= select_kept(backups, NOW, daily + 1, weekly + 1, monthly + 1)
    # Kept by day: each of the last `daily` days that has a backup has one kept.
    for i in range(daily):
        day = NOW.date() - timedelta(days=i)
        of_day = [b for b in backups if b.date() == day]
        if of_day:
            assert max(of_day) in kept
