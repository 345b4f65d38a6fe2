"""SMS text as carriers bill it (GSM-7 vs UCS-2 segments), the GSM-7 rewrite of accented letters,
and the notification texts: every kind in every language within two segments."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from connector.domain import patient_messages as pm
from connector.domain.notification import NotificationKind
from connector.domain.reminders import LANGUAGES as POLICY_LANGUAGES
from connector.domain.sms_text import GSM7_EXTENDED, MAX_SEGMENTS, is_gsm7, segments, to_gsm7

CHICAGO = ZoneInfo("America/Chicago")
TODAY = date(2025, 12, 3)
TOMORROW_AFTERNOON = datetime(2025, 12, 4, 15, 30, tzinfo=CHICAGO)
# A realistic patient link: a stamp's default host name, /api/j/ and a 32-character token.
LINK = "https://vv-connector-us.azurewebsites.net/api/j/" + "Q7x_2mKp9LzR4vNc8TfW1hYs6DbJ3gAe"
SEEDED_CLINICS = ("Demo clinic (Cerner sandbox)", "Family Medicine Clinic", "Cardiology Clinic")
LONG_CLINIC = ("Northwestern Regional Medical Group - Pediatric and Adolescent Telehealth Services, "
               "Evanston North 2")
KINDS = tuple(k.value for k in NotificationKind)


def link_for(kind: str, language: str) -> str | None:
    if kind == "cancellation":
        return None
    return LINK if language == "en" else f"{LINK}?hl={language}"


def test_the_fixtures_are_what_they_claim():
    assert len(LINK) == 80 and len(LONG_CLINIC) == 100


# == segments ===============================================================================================


@pytest.mark.parametrize("length, expected", [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3),
                                              (460, 4)])
def test_gsm7_is_160_alone_and_153_per_part(length, expected):
    assert segments("a" * length) == expected


@pytest.mark.parametrize("text, expected", [
    ("€" * 80, 1), ("€" * 81, 2), ("a" * 159 + "{", 2), ("a" * 158 + "[", 1), ("[]{}^~|\\€" * 17, 2),
    ("€" * 153, 2), ("€" * 154, 3),
])
def test_extended_gsm7_characters_count_twice(text, expected):
    assert is_gsm7(text)
    assert segments(text) == expected


@pytest.mark.parametrize("character", sorted(GSM7_EXTENDED))
def test_every_extended_character_takes_two_septets(character):
    assert segments("a" * 158 + character) == 1
    assert segments("a" * 159 + character) == 2


@pytest.mark.parametrize("length, expected", [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_ucs2_is_70_alone_and_67_per_part(length, expected):
    assert segments("ó" * length) == expected


def test_one_character_outside_gsm7_makes_the_whole_message_ucs2():
    assert segments("a" * 100) == 1
    assert segments("a" * 99 + "ó") == 2  # 100 UCS-2 units
    assert segments("a" * 99 + "ç") == 2
    assert segments("a" * 99 + "Ç") == 1  # Ç is GSM-7, ç is not


def test_characters_beyond_the_bmp_take_two_ucs2_units():
    assert segments("😀" * 35) == 1
    assert segments("😀" * 36) == 2
    assert segments("😀" * 67) == 2  # 134 units


def test_the_gsm7_letters_of_our_languages_stay_gsm7():
    text = "éèùìòÇØøÅåÆæßÉÄÖÑÜäöñüà¿¡£¥§"
    assert is_gsm7(text)
    assert segments(text * 5) == 1  # 145 septets


# == to_gsm7 ================================================================================================


@pytest.mark.parametrize("text, expected", [
    ("Únase desde su teléfono, sin aplicación", "Unase desde su teléfono, sin aplicacion"),
    ("Répondez STOP pour ne plus recevoir de SMS", "Répondez STOP pour ne plus recevoir de SMS"),
    ("ça, garçon, où, île, forêt, âge, noël, cœur", "ca, garcon, où, ile, foret, age, noel, coeur"),
    ("März, Grüße, Straße, Öffnung", "März, Grüße, Straße, Öffnung"),
    ("l’enfant – «vite» … “oui”", "l'enfant - \"vite\" ... \"oui\""),
    ("10\u00a0h\u202f30", "10 h 30"),
    ("Œuvre", "OEuvre"),
    ("más, médico, cita, mañana, jueves", "mas, médico, cita, mañana, jueves"),
    ("price €5 [x] {y} ~z", "price €5 [x] {y} ~z"),
    ("call 😀 中文 \t", "call ? ?? ?"),
])
def test_to_gsm7_drops_accents_outside_gsm7_and_keeps_what_gsm7_has(text, expected):
    assert to_gsm7(text) == expected
    assert is_gsm7(to_gsm7(text))


def test_to_gsm7_is_idempotent_and_keeps_the_length_of_letters():
    text = "Aujourd’hui à 15:30 – téléconsultation, reçue à l’hôpital Saint-Étienne"
    once = to_gsm7(text)
    assert to_gsm7(once) == once
    assert len(once) == len(text)
    assert once == "Aujourd'hui à 15:30 - téléconsultation, recue à l'hopital Saint-Étienne"  # É is GSM-7


# == notification texts =====================================================================================


def test_notification_templates_cover_every_kind_and_language():
    assert set(pm.NOTIFICATION_SMS) == set(KINDS)
    assert pm.LANGUAGES == POLICY_LANGUAGES == ("en", "es", "de", "fr")
    for kind, templates in pm.NOTIFICATION_SMS.items():
        assert set(templates) == set(pm.LANGUAGES), kind
        for language, template in templates.items():
            assert "{clinic}" in template and "{when}" in template, (kind, language)
            assert ("{link}" in template) is (kind != "cancellation"), (kind, language)
            assert "STOP" in template, (kind, language)


@pytest.mark.parametrize("clinic", SEEDED_CLINICS)
@pytest.mark.parametrize("start", [datetime(2025, 12, 3, 9, 5, tzinfo=CHICAGO), TOMORROW_AFTERNOON,
                                   datetime(2025, 9, 30, 23, 45, tzinfo=CHICAGO)])
def test_every_kind_in_every_language_fits_two_gsm7_segments_for_the_seeded_clinics(clinic, start):
    for kind in KINDS:
        for language in pm.LANGUAGES:
            link = link_for(kind, language)
            text = pm.notification_sms(kind, language, clinic=clinic, start=start, today=TODAY, link=link)
            assert segments(text) <= MAX_SEGMENTS, (kind, language, len(text))
            assert is_gsm7(text), (kind, language)
            assert text.startswith(clinic), (kind, language)  # short names are never shortened
            if link is not None:
                assert link in text, (kind, language)
            assert pm.when_text(start, TODAY, language) in pm.NOTIFICATION_SMS[kind][language].format(
                clinic=clinic, when=pm.when_text(start, TODAY, language), link=link or "")


def test_the_english_confirmation_reads_as_written():
    text = pm.notification_sms("confirmation", "en", clinic="Family Medicine Clinic", start=TOMORROW_AFTERNOON,
                               today=TODAY, link=LINK)
    assert text == (f"Family Medicine Clinic: your video visit is on Dec 4 at 3:30 PM. Join from your phone, "
                    f"no app needed: {LINK} Reply STOP to opt out.")


def test_the_spanish_reminder_is_written_in_gsm7():
    text = pm.notification_sms("reminder", "es", clinic="Cardiology Clinic",
                               start=datetime(2025, 12, 3, 10, 30, tzinfo=CHICAGO), today=TODAY,
                               link=f"{LINK}?hl=es")
    assert text == (f"Cardiology Clinic: recordatorio, su videoconsulta es hoy a las 10:30. Entre desde su movil, "
                    f"sin aplicacion: {LINK}?hl=es Responda STOP para no recibir mas mensajes.")


def test_a_cancellation_has_no_link():
    for language in pm.LANGUAGES:
        text = pm.notification_sms("cancellation", language, clinic="Family Medicine Clinic",
                                   start=TOMORROW_AFTERNOON, today=TODAY, link=None)
        assert "http" not in text and "/api/j/" not in text and "None" not in text
        assert segments(text) <= MAX_SEGMENTS
    assert pm.notification_sms("cancellation", "en", clinic="Family Medicine Clinic", start=TOMORROW_AFTERNOON,
                               today=TODAY, link=None) == (
        "Family Medicine Clinic: your video visit on Dec 4 at 3:30 PM is cancelled. Please call us to book again. "
        "Reply STOP to opt out.")


def test_a_100_character_clinic_name_is_shortened_never_the_link():
    shortened = []
    for kind in KINDS:
        for language in pm.LANGUAGES:
            link = link_for(kind, language)
            text = pm.notification_sms(kind, language, clinic=LONG_CLINIC, start=TOMORROW_AFTERNOON, today=TODAY,
                                       link=link)
            assert segments(text) <= MAX_SEGMENTS, (kind, language, len(text))
            if link is not None:
                assert link in text, (kind, language)
            if not text.startswith(LONG_CLINIC):
                name = text[: text.index("...")]
                assert len(name) >= 12 and LONG_CLINIC.startswith(name), (kind, language)
                shortened.append((kind, language))
    # French and German confirmations do not fit with the whole name; English ones do
    assert ("confirmation", "fr") in shortened and ("confirmation", "de") in shortened
    assert ("confirmation", "en") not in shortened and ("cancellation", "en") not in shortened


def test_a_clinic_name_outside_gsm7_is_written_in_gsm7():
    text = pm.notification_sms("reminder", "fr", clinic="Clinique Sainte-Bénédicte – Hôpital",
                               start=TOMORROW_AFTERNOON, today=TODAY, link=f"{LINK}?hl=fr")
    assert text.startswith(
        "Clinique Sainte-Bénédicte - Hopital : rappel, votre téléconsultation est le 4 déc. à 15:30.")
    assert is_gsm7(text) and segments(text) <= MAX_SEGMENTS


@contextmanager
def deadline(seconds: float):
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_text_that_cannot_fit_still_comes_back_with_its_link():
    long_link = "https://virtual-visits.northwestern-regional-medical-group.example.org/api/j/" + "A" * 32 + \
        "?hl=de&utm=" + "x" * 150
    with deadline(2.0):
        text = pm.notification_sms("confirmation", "de", clinic=LONG_CLINIC, start=TOMORROW_AFTERNOON, today=TODAY,
                                   link=long_link)
    assert long_link in text
