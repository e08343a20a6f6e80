"""Business days of the Japanese market: when an elderly customer's approved order may first be executed.

The calendar is the `holidays` package's financial-market calendar named by
BUSINESS_CALENDAR (default XJPX, the Japan Exchange Group: weekends, national holidays
with their substitute days, and the year-end closure 12/31-1/3), in BUSINESS_TIMEZONE.
"""

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from flask import current_app


@lru_cache(maxsize=32)
def _calendar(code, year):
    """The holidays of market `code` in `year` (cached: the package builds them per year)."""
    return holidays.financial_holidays(code, years=year)


def is_business_day(day, code=None):
    """True when `day` is neither a weekend nor a holiday of the market `code` (default BUSINESS_CALENDAR)."""
    code = code or current_app.config["BUSINESS_CALENDAR"]
    return day.weekday() < 5 and day not in _calendar(code, day.year)


def local_date(moment, zone=None):
    """The calendar date of the aware time `moment` in BUSINESS_TIMEZONE (a date passes through)."""
    if isinstance(moment, datetime):
        return moment.astimezone(ZoneInfo(zone or current_app.config["BUSINESS_TIMEZONE"])).date()
    if isinstance(moment, date):
        return moment
    raise TypeError("a date or an aware datetime is required")


def next_business_day(moment, code=None):
    """The first business day strictly after the local date of `moment`."""
    day = local_date(moment) + timedelta(days=1)
    while not is_business_day(day, code):
        day += timedelta(days=1)
    return day
