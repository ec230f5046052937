"""Dates written by people, and the ISO date each one means: a translation task.

The data of ``experiments/translation.py``: a date in one of :data:`FORMATS`
(``"3rd of March 1998"``, ``"March 3, 1998"``, ``"03/03/98"``, ``"Tuesday 3
March 1998"``, ...) is the source, character by character; its ISO 8601 form
``"1998-03-03"`` is the target. Generated with :mod:`datetime`, so every date
exists and every weekday name is the right one; nothing is downloaded.

Conventions (one reading per format, so every source has one answer):

- slashes are American, month first: ``"03/04/98"`` is 4 March; dots are
  European, day first: ``"4.3.1998"`` is 4 March;
- two-digit years ``yy`` are ``19yy`` for ``yy >= 50`` and ``20yy`` below, so
  the default range of years, 1950-2049, has no ambiguous year;
- month and weekday names are English, whatever the machine's locale.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Callable, Sequence

import numpy as np

from rnnjax import checks

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
"""Indexed by ``date.weekday()`` (Monday is 0)."""

FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

SOURCE_CHARS = " ',./" + string.digits + string.ascii_uppercase + string.ascii_lowercase
"""Every character a formatted date can hold (sorted: usable as ``CharVocab(SOURCE_CHARS)``)."""
TARGET_CHARS = "-" + string.digits
"""The characters of an ISO date (sorted)."""


def ordinal(n: int) -> str:
    """``1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st``."""
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def two_digit_year(year: int) -> str:
    """The last two digits of ``year``, which must lie in 1950-2049 to be read back."""
    if not 1950 <= year <= 2049:
        raise ValueError(f"`year` must lie in 1950-2049 to be written with two digits, got {year}")
    return f"{year % 100:02d}"


def _month(d: datetime.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "ordinal_of": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",          # 3rd of March 1998
    "month_day_year": lambda d: f"{_month(d)} {d.day}, {d.year}",                  # March 3, 1998
    "us_slashes_short": lambda d: f"{d.month:02d}/{d.day:02d}/{two_digit_year(d.year)}",  # 03/03/98
    "weekday_day_month": lambda d: f"{_weekday(d)} {d.day} {_month(d)} {d.year}",  # Tuesday 3 March 1998
    "rfc_2822": lambda d: f"{_weekday(d)[:3]}, {d.day:02d} {_month(d)[:3]} {d.year}",  # Tue, 03 Mar 1998
    "day_mon_year": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",                 # 3 Mar 1998
    "european_dots": lambda d: f"{d.day}.{d.month}.{d.year}",                      # 3.3.1998
    "month_ordinal": lambda d: f"{_month(d)} {ordinal(d.day)}, {d.year}",           # March 3rd, 1998
    "the_ordinal_lower": lambda d: f"the {ordinal(d.day)} of {_month(d).lower()}, {d.year}",  # the 3rd of march, 1998
    "upper_case": lambda d: f"{d.day} {_month(d).upper()} {d.year}",                # 3 MARCH 1998
    "weekday_us": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",        # Tuesday, March 3, 1998
    "us_slashes_long": lambda d: f"{d.month}/{d.day}/{d.year}",                     # 3/3/1998
    "mon_day_apostrophe": lambda d: f"{_month(d)[:3]} {d.day} '{two_digit_year(d.year)}",  # Mar 3 '98
}  # fmt: skip
"""Format name -> function from a ``datetime.date`` to its text."""

FORMAT_NAMES = tuple(FORMATS)


def format_date(date: datetime.date, fmt: str) -> str:
    """``date`` written in format ``fmt`` (a name of :data:`FORMATS`)."""
    checks.one_of("fmt", fmt, FORMAT_NAMES)
    if not isinstance(date, datetime.date):
        raise TypeError(f"`date` must be a datetime.date, got {type(date).__name__}")
    return FORMATS[fmt](date)


def iso(date: datetime.date) -> str:
    """``"YYYY-MM-DD"``, the target."""
    return date.isoformat()


def all_dates(
    first: datetime.date = FIRST_DATE, last: datetime.date = LAST_DATE
) -> list[datetime.date]:
    """Every day from ``first`` to ``last``, both included."""
    if last < first:
        raise ValueError(f"`last`={last} must not come before `first`={first}")
    return [first + datetime.timedelta(days=i) for i in range((last - first).days + 1)]


def random_examples(
    rng: np.random.Generator,
    dates: Sequence[datetime.date],
    n: int,
    formats: Sequence[str] = FORMAT_NAMES,
) -> tuple[list[str], list[str], np.ndarray]:
    """``n`` examples: a date drawn uniformly from ``dates``, written in a format
    drawn uniformly from ``formats``.

    Returns:
      ``(sources, targets, format_ids)``: the texts, their ISO dates, and
      ``int32 (n,)`` indices into ``formats``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
    n = checks.positive_int("n", n)
    if len(dates) == 0:
        raise ValueError("`dates` must hold at least one date")
    for fmt in formats:
        checks.one_of("formats", fmt, FORMAT_NAMES)
    picks = rng.integers(len(dates), size=n)
    format_ids = rng.integers(len(formats), size=n).astype(np.int32)
    sources = [FORMATS[formats[f]](dates[i]) for i, f in zip(picks, format_ids, strict=True)]
    targets = [iso(dates[i]) for i in picks]
    return sources, targets, format_ids
