"""What the patient reads: the visit-link SMS and the join page's words, per language.

Languages: English, Spanish, German and French; anything else falls back to English (or to
the endpoint's default, where the caller has one). Times are shown in the clinic's zone in
the language's usual form (12-hour in English, 24-hour elsewhere).
"""

from __future__ import annotations

from datetime import date, datetime

from connector.domain.sms_text import MAX_SEGMENTS, segments, to_gsm7

LANGUAGES = ("en", "es", "de", "fr")
DEFAULT_LANGUAGE = "en"

_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "es": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
    "de": ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez."),
    "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
}

LINK_SMS = {
    "en": "{clinic}: your video visit is {when}. Join from your phone, no app needed: {link}",
    "es": "{clinic}: su videoconsulta es {when}. Únase desde su teléfono, sin aplicación: {link}",
    "de": "{clinic}: Ihre Videosprechstunde ist {when}. Ohne App vom Handy teilnehmen: {link}",
    "fr": "{clinic} : votre téléconsultation est {when}. Rejoignez-la depuis votre téléphone, sans appli : {link}",
}

PAGE = {
    "en": {
        "title": "Your video visit", "with": "Video visit with {clinic}", "when": "Today at {time}",
        "on": "{date} at {time}", "join": "Join the video visit",
        "hint": "No app or account needed: the visit opens in your browser. You will wait in a lobby "
                "until your clinician lets you in.",
        "expired_title": "This link has expired",
        "expired": "This visit link is no longer valid. Please call {clinic} for a new link.",
        "unknown_title": "We could not find this visit",
        "unknown": "Please check the link in your text message, or call your clinic for a new link.",
    },
    "es": {
        "title": "Su videoconsulta", "with": "Videoconsulta con {clinic}", "when": "Hoy a las {time}",
        "on": "{date} a las {time}", "join": "Unirse a la videoconsulta",
        "hint": "No necesita aplicación ni cuenta: la consulta se abre en su navegador. Esperará en una "
                "sala de espera hasta que su médico le deje entrar.",
        "expired_title": "Este enlace ha caducado",
        "expired": "Este enlace ya no es válido. Llame a {clinic} para recibir uno nuevo.",
        "unknown_title": "No encontramos esta consulta",
        "unknown": "Revise el enlace de su mensaje de texto o llame a su clínica para recibir uno nuevo.",
    },
    "de": {
        "title": "Ihre Videosprechstunde", "with": "Videosprechstunde bei {clinic}", "when": "Heute um {time}",
        "on": "{date} um {time}", "join": "An der Videosprechstunde teilnehmen",
        "hint": "Keine App und kein Konto nötig: Die Sprechstunde öffnet sich im Browser. Sie warten im "
                "Wartebereich, bis Ihre Ärztin oder Ihr Arzt Sie hereinlässt.",
        "expired_title": "Dieser Link ist abgelaufen",
        "expired": "Dieser Link ist nicht mehr gültig. Bitte rufen Sie {clinic} für einen neuen Link an.",
        "unknown_title": "Wir konnten diese Sprechstunde nicht finden",
        "unknown": "Bitte prüfen Sie den Link in Ihrer SMS oder rufen Sie Ihre Praxis für einen neuen Link an.",
    },
    "fr": {
        "title": "Votre téléconsultation", "with": "Téléconsultation avec {clinic}", "when": "Aujourd'hui à {time}",
        "on": "{date} à {time}", "join": "Rejoindre la téléconsultation",
        "hint": "Aucune appli ni aucun compte nécessaire : la consultation s'ouvre dans votre navigateur. "
                "Vous patienterez en salle d'attente jusqu'à ce que votre soignant vous fasse entrer.",
        "expired_title": "Ce lien a expiré",
        "expired": "Ce lien n'est plus valable. Veuillez appeler {clinic} pour obtenir un nouveau lien.",
        "unknown_title": "Nous n'avons pas trouvé cette consultation",
        "unknown": "Vérifiez le lien de votre SMS ou appelez votre cabinet pour obtenir un nouveau lien.",
    },
}
_TODAY = {"en": "today at {time}", "es": "hoy a las {time}", "de": "heute um {time}", "fr": "aujourd'hui à {time}"}
_ON = {"en": "on {date} at {time}", "es": "el {date} a las {time}", "de": "am {date} um {time}",
       "fr": "le {date} à {time}"}


def language_or_default(language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    primary = (language or "").split("-")[0].lower()
    return primary if primary in LANGUAGES else (default if default in LANGUAGES else DEFAULT_LANGUAGE)


def from_accept_language(header: str | None) -> str | None:
    """The first supported language of an Accept-Language header, by quality."""
    ranked = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.split("-")[0].lower()))
    # q=0 means "not acceptable" (RFC 9110 section 12.4.2), not "least preferred".
    return next((tag for quality, _, tag in sorted(ranked) if tag in LANGUAGES and quality < 0), None)


def clock_time(moment: datetime, language: str) -> str:
    if language == "en":
        return moment.strftime("%I:%M %p").lstrip("0")
    return moment.strftime("%H:%M")


def day_text(day: date, language: str) -> str:
    month = _MONTHS[language][day.month - 1]
    if language == "en":
        return f"{month} {day.day}"
    return f"{day.day}. {month}" if language == "de" else f"{day.day} {month}"  # German: "5. Dez."


def when_text(start: datetime, today: date, language: str) -> str:
    """``today at 3:30 PM`` / ``el 4 dic a las 15:30`` (``start`` already in the clinic's zone)."""
    time = clock_time(start, language)
    if start.date() == today:
        return _TODAY[language].format(time=time)
    return _ON[language].format(date=day_text(start.date(), language), time=time)


def link_sms(language: str, *, clinic: str, start: datetime, today: date, link: str) -> str:
    return to_gsm7(LINK_SMS[language].format(clinic=clinic, when=when_text(start, today, language), link=link))


# Confirmations, updates, cancellations and reminders. Written as the language is written; sent
# in GSM-7 (accents outside it dropped, see sms_text) so two segments hold them with the link.
NOTIFICATION_SMS = {
    "confirmation": {
        "en": "{clinic}: your video visit is {when}. Join from your phone, no app needed: {link} Reply STOP to opt out.",
        "es": "{clinic}: su videoconsulta es {when}. Entre desde su móvil, sin aplicación: {link} "
              "Responda STOP para no recibir más mensajes.",
        "de": "{clinic}: Ihre Videosprechstunde ist {when}. Ohne App vom Handy teilnehmen: {link} "
              "Antworten Sie STOP, um keine SMS mehr zu erhalten.",
        "fr": "{clinic} : votre téléconsultation est {when}. Rejoignez-la depuis votre téléphone, sans appli : "
              "{link} Répondez STOP pour ne plus recevoir de SMS.",
    },
    "update": {
        "en": "{clinic}: your video visit has moved. It is now {when}. Join here: {link} Reply STOP to opt out.",
        "es": "{clinic}: su videoconsulta ha cambiado. Ahora es {when}. Entre aquí: {link} "
              "Responda STOP para no recibir más mensajes.",
        "de": "{clinic}: Ihre Videosprechstunde wurde verschoben. Sie ist jetzt {when}. Hier teilnehmen: {link} "
              "Antworten Sie STOP, um keine SMS mehr zu erhalten.",
        "fr": "{clinic} : votre téléconsultation a changé. Elle est maintenant {when}. Rejoignez-la ici : {link} "
              "Répondez STOP pour ne plus recevoir de SMS.",
    },
    "cancellation": {
        "en": "{clinic}: your video visit {when} is cancelled. Please call us to book again. Reply STOP to opt out.",
        "es": "{clinic}: su videoconsulta {when} se ha cancelado. Llámenos para pedir otra cita. "
              "Responda STOP para no recibir más mensajes.",
        "de": "{clinic}: Ihre Videosprechstunde {when} wurde abgesagt. Bitte rufen Sie uns für einen neuen Termin "
              "an. Antworten Sie STOP, um keine SMS mehr zu erhalten.",
        "fr": "{clinic} : votre téléconsultation {when} est annulée. Appelez-nous pour reprendre rendez-vous. "
              "Répondez STOP pour ne plus recevoir de SMS.",
    },
    "reminder": {
        "en": "{clinic}: reminder, your video visit is {when}. Join from your phone, no app needed: {link} "
              "Reply STOP to opt out.",
        "es": "{clinic}: recordatorio, su videoconsulta es {when}. Entre desde su móvil, sin aplicación: {link} "
              "Responda STOP para no recibir más mensajes.",
        "de": "{clinic}: Erinnerung, Ihre Videosprechstunde ist {when}. Ohne App vom Handy teilnehmen: {link} "
              "Antworten Sie STOP, um keine SMS mehr zu erhalten.",
        "fr": "{clinic} : rappel, votre téléconsultation est {when}. Rejoignez-la depuis votre téléphone : {link} "
              "Répondez STOP pour ne plus recevoir de SMS.",
    },
}


def notification_sms(kind: str, language: str, *, clinic: str, start: datetime, today: date,
                     link: str | None) -> str:
    """The SMS of one confirmation / update / cancellation / reminder (``start`` in the clinic's
    zone; ``link`` None only for a cancellation), in at most two segments: a long clinic name is
    shortened to fit, never the link."""
    when = when_text(start, today, language)
    template = NOTIFICATION_SMS[kind][language]
    text = to_gsm7(template.format(clinic=clinic, when=when, link=link or ""))
    for keep in range(len(clinic) - 8, 8, -8):  # shorter and shorter, down to a few letters
        if segments(text) <= MAX_SEGMENTS:
            break
        text = to_gsm7(template.format(clinic=clinic[:keep].rstrip() + "...", when=when, link=link or ""))
    return text
