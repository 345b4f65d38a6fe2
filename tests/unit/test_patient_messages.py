"""What the patient reads: languages, Accept-Language, the link SMS and the visit's time in words."""

from __future__ import annotations

import string
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from connector.domain import patient_messages as pm

CHICAGO = ZoneInfo("America/Chicago")
TODAY = date(2025, 12, 4)
LINK = "https://visits.example.org/api/j/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def local(hour: int, minute: int = 0, day: date = TODAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHICAGO)


# -- languages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("es", "es"), ("es-MX", "es"), ("ES-mx", "es"), ("de-AT", "de"), ("fr-CA", "fr"), ("en-GB", "en"),
    ("pt-BR", "en"), ("zh", "en"), ("", "en"), (None, "en"),
])
def test_language_or_default_keeps_supported_primary_tags(given, expected):
    assert pm.language_or_default(given) == expected


def test_language_or_default_falls_back_to_a_supported_default_only():
    assert pm.language_or_default("pt", default="fr") == "fr"
    assert pm.language_or_default("pt", default="xx") == "en"
    assert pm.language_or_default("de", default="fr") == "de"


@pytest.mark.parametrize(("header", "expected"), [
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("fr;q=0.5, de;q=0.9", "de"),
    ("ja,zh;q=0.9,en;q=0.1", "en"),  # the first *supported* language by quality
    ("en-US,en;q=0.9,fr;q=0.8", "en"),
    ("de, fr", "de"),  # equal quality: the header's order
    ("fr; q=0.7, es ;q=0.7", "fr"),
    ("de;q=banana, fr;q=0.1", "fr"),  # an unreadable quality ranks last
    ("ja, zh", None),
    ("*", None),
    ("", None),
    (None, None),
])
def test_from_accept_language_picks_the_best_supported_language(header, expected):
    assert pm.from_accept_language(header) == expected


def test_a_language_with_quality_zero_is_not_acceptable():
    # RFC 9110 section 12.4.2 (found while writing these tests: "de;q=0" used to pick German)
    assert pm.from_accept_language("de;q=0") is None
    assert pm.from_accept_language("ja, de;q=0") is None
    assert pm.from_accept_language("de;q=0, fr;q=0.001") == "fr"
    assert pm.from_accept_language("de;q=0.0, es") == "es"


# -- times and days ------------------------------------------------------------------------------


@pytest.mark.parametrize(("hour", "minute", "en", "other"), [
    (15, 30, "3:30 PM", "15:30"),
    (9, 5, "9:05 AM", "09:05"),
    (12, 0, "12:00 PM", "12:00"),
    (0, 30, "12:30 AM", "00:30"),
])
def test_clock_times_are_12_hour_in_english_and_24_hour_elsewhere(hour, minute, en, other):
    assert pm.clock_time(local(hour, minute), "en") == en
    for language in ("es", "de", "fr"):
        assert pm.clock_time(local(hour, minute), language) == other


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "today at 3:30 PM"), ("es", "hoy a las 15:30"), ("de", "heute um 15:30"), ("fr", "aujourd'hui à 15:30"),
])
def test_when_text_says_today_for_a_visit_today(language, expected):
    assert pm.when_text(local(15, 30), TODAY, language) == expected


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "on Dec 5 at 3:30 PM"), ("es", "el 5 dic a las 15:30"), ("fr", "le 5 déc. à 15:30"),
])
def test_when_text_names_the_day_of_a_later_visit(language, expected):
    assert pm.when_text(local(15, 30, date(2025, 12, 5)), TODAY, language) == expected


def test_when_text_writes_german_dates_with_the_ordinal_period():
    # (found while writing these tests: it used to say "am 5 Dez.")
    assert pm.when_text(local(15, 30, date(2025, 12, 5)), TODAY, "de") == "am 5. Dez. um 15:30"


def test_every_month_has_a_name_in_every_language():
    for language in pm.LANGUAGES:
        assert len(pm._MONTHS[language]) == 12
        shape = {"en": "{name} 1", "de": "1. {name}"}.get(language, "1 {name}")
        assert [pm.day_text(date(2025, m, 1), language) for m in range(1, 13)] == [
            shape.format(name=name) for name in pm._MONTHS[language]]


# -- the link SMS and the page words ---------------------------------------------------------------


def test_link_sms_in_english():
    text = pm.link_sms("en", clinic="Family Medicine Clinic", start=local(15, 30), today=TODAY, link=LINK)
    assert text == ("Family Medicine Clinic: your video visit is today at 3:30 PM. "
                    f"Join from your phone, no app needed: {LINK}")


def test_link_sms_in_spanish_for_another_day():
    text = pm.link_sms("es", clinic="Clínica", start=local(9, 0, date(2025, 12, 6)), today=TODAY, link=LINK)
    # Sent in GSM-7: í, Ú, ó are outside it and lose their accent; é is in it and stays.
    assert text == f"Clinica: su videoconsulta es el 6 dic a las 09:00. Unase desde su teléfono, sin aplicacion: {LINK}"


def test_every_language_has_the_sms_and_every_page_text():
    assert set(pm.LINK_SMS) == set(pm.PAGE) == set(pm.LANGUAGES) == {"en", "es", "de", "fr"}
    english_keys = set(pm.PAGE["en"])
    for language in pm.LANGUAGES:
        assert set(pm.PAGE[language]) == english_keys
        fields = {name for _, name, _, _ in string.Formatter().parse(pm.LINK_SMS[language]) if name}
        assert fields == {"clinic", "when", "link"}
        for key, text in pm.PAGE[language].items():
            placeholders = {name for _, name, _, _ in string.Formatter().parse(text) if name}
            english = {name for _, name, _, _ in string.Formatter().parse(pm.PAGE["en"][key]) if name}
            assert placeholders == english, (language, key)


def test_the_sms_text_keeps_the_link_whole_at_the_end():
    for language in pm.LANGUAGES:
        text = pm.link_sms(language, clinic="C", start=local(10), today=TODAY, link=LINK)
        assert text.endswith(LINK) and text.count(LINK) == 1
