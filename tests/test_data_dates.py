"""``rnnjax.data.dates``: every format reads back (with ``datetime.strptime``) to
the date it was written from, and weekday names agree with Zeller's congruence."""

import datetime
import re

import numpy as np
import pytest

from rnnjax.data.dates import (
    FORMAT_NAMES,
    SOURCE_CHARS,
    TARGET_CHARS,
    WEEKDAYS,
    all_dates,
    format_date,
    iso,
    ordinal,
    random_examples,
    two_digit_year,
)

ENGLISH_WEEKDAYS_FROM_SATURDAY = (
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
)


def zeller_weekday(year: int, month: int, day: int) -> str:
    """Zeller's congruence (Gregorian calendar): 0 = Saturday."""
    if month < 3:
        month, year = month + 12, year - 1
    k, j = year % 100, year // 100
    h = (day + 13 * (month + 1) // 5 + k + k // 4 + j // 4 + 5 * j) % 7
    return ENGLISH_WEEKDAYS_FROM_SATURDAY[h]


def year_of_two_digits(yy: str) -> int:
    return 1900 + int(yy) if int(yy) >= 50 else 2000 + int(yy)


# format -> a strptime pattern for the text after ordinal suffixes are removed; formats
# with two-digit years are read by a regular expression instead (strptime's %y pivot is 1969).
STRPTIME = {
    "ordinal_of": "%d of %B %Y",
    "month_day_year": "%B %d, %Y",
    "weekday_day_month": "%A %d %B %Y",
    "rfc_2822": "%a, %d %b %Y",
    "day_mon_year": "%d %b %Y",
    "european_dots": "%d.%m.%Y",
    "month_ordinal": "%B %d, %Y",
    "the_ordinal_lower": "the %d of %B, %Y",
    "upper_case": "%d %B %Y",
    "weekday_us": "%A, %B %d, %Y",
    "us_slashes_long": "%m/%d/%Y",
}
MONTH_ABBREVIATIONS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def read_back(text: str, fmt: str) -> datetime.date:
    if fmt == "us_slashes_short":
        month, day, yy = re.fullmatch(r"(\d\d)/(\d\d)/(\d\d)", text).groups()
        return datetime.date(year_of_two_digits(yy), int(month), int(day))
    if fmt == "mon_day_apostrophe":
        mon, day, yy = re.fullmatch(r"([A-Z][a-z]{2}) (\d{1,2}) '(\d\d)", text).groups()
        return datetime.date(year_of_two_digits(yy), MONTH_ABBREVIATIONS.index(mon) + 1, int(day))
    plain = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    return datetime.datetime.strptime(plain, STRPTIME[fmt]).date()


SAMPLE = [
    *all_dates(datetime.date(1998, 1, 1), datetime.date(1998, 12, 31)),
    datetime.date(1950, 1, 1),
    datetime.date(2000, 2, 29),
    datetime.date(2049, 12, 31),
]


def test_strptime_reads_english_names_here():
    # The independent reader needs the C/English locale's month and day names.
    assert datetime.date(1998, 3, 3).strftime("%A %B") == "Tuesday March"


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_reads_back_to_its_date(fmt):
    for d in SAMPLE:
        assert read_back(format_date(d, fmt), fmt) == d, (fmt, d)


def test_the_examples_of_the_docstring():
    d = datetime.date(1998, 3, 3)
    assert format_date(d, "ordinal_of") == "3rd of March 1998"
    assert format_date(d, "month_day_year") == "March 3, 1998"
    assert format_date(d, "us_slashes_short") == "03/03/98"
    assert format_date(d, "weekday_day_month") == "Tuesday 3 March 1998"
    assert format_date(datetime.date(1998, 4, 3), "us_slashes_short") == "04/03/98"
    assert format_date(datetime.date(1998, 4, 3), "european_dots") == "3.4.1998"
    assert iso(d) == "1998-03-03"


def test_weekday_names_agree_with_zellers_congruence_on_every_day_of_the_range():
    for d in all_dates():
        name = zeller_weekday(d.year, d.month, d.day)
        assert WEEKDAYS[d.weekday()] == name
    for d in SAMPLE:
        assert format_date(d, "weekday_us").startswith(zeller_weekday(d.year, d.month, d.day))
        assert format_date(d, "rfc_2822")[:3] == zeller_weekday(d.year, d.month, d.day)[:3]


def test_ordinal_suffixes():
    expected = {
        1: "1st",
        2: "2nd",
        3: "3rd",
        4: "4th",
        10: "10th",
        11: "11th",
        12: "12th",
        13: "13th",
        20: "20th",
        21: "21st",
        22: "22nd",
        23: "23rd",
        24: "24th",
        30: "30th",
        31: "31st",
        111: "111th",
        101: "101st",
    }
    assert {n: ordinal(n) for n in expected} == expected


def test_two_digit_years_cover_1950_to_2049_without_ambiguity():
    assert [two_digit_year(y) for y in (1950, 1999, 2000, 2049)] == ["50", "99", "00", "49"]
    assert len({two_digit_year(y) for y in range(1950, 2050)}) == 100
    with pytest.raises(ValueError, match="`year` must lie in 1950-2049"):
        two_digit_year(2050)


def test_the_alphabets_hold_every_character_and_are_sorted():
    used = {c for d in SAMPLE for fmt in FORMAT_NAMES for c in format_date(d, fmt)}
    assert used <= set(SOURCE_CHARS)
    assert list(SOURCE_CHARS) == sorted(set(SOURCE_CHARS))
    assert {c for d in SAMPLE for c in iso(d)} == set(TARGET_CHARS)
    assert list(TARGET_CHARS) == sorted(TARGET_CHARS)


def test_random_examples_repeat_with_the_seed_and_pair_each_text_with_its_iso_date():
    dates = all_dates(datetime.date(2001, 1, 1), datetime.date(2001, 12, 31))
    src, tgt, fmt_ids = random_examples(np.random.default_rng(0), dates, 300)
    again = random_examples(np.random.default_rng(0), dates, 300)
    assert (src, tgt) == again[:2] and np.array_equal(fmt_ids, again[2])
    assert set(fmt_ids.tolist()) == set(range(len(FORMAT_NAMES)))
    for s, t, f in zip(src, tgt, fmt_ids, strict=True):
        assert iso(read_back(s, FORMAT_NAMES[f])) == t


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="`fmt` must be one of"):
        format_date(datetime.date(2000, 1, 1), "klingon")
    with pytest.raises(TypeError, match="`date` must be a datetime.date"):
        format_date("2000-01-01", "month_day_year")
    with pytest.raises(ValueError, match="`last`"):
        all_dates(datetime.date(2000, 1, 2), datetime.date(2000, 1, 1))
    with pytest.raises(ValueError, match="`n` must be a positive integer"):
        random_examples(np.random.default_rng(0), SAMPLE, 0)
