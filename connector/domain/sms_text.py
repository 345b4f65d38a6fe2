"""SMS text as carriers count it: GSM-7 (160 characters, 153 per part) unless one character is
outside the GSM 03.38 alphabet, when the whole message is UCS-2 (70, 67 per part).

Patients' texts stay in GSM-7 where they can: the few letters of our languages outside it
(á í ó ú in Spanish, â ê î ô û ç in French, ...) are written without their accent in SMS, as
phones' own "smart encoding" does, so a message costs two segments, not five.
"""

from __future__ import annotations

import unicodedata

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each (escape + character)
MAX_SEGMENTS = 2


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def segments(text: str) -> int:
    """How many segments carriers bill ``text`` as."""
    if is_gsm7(text):
        units, single, part = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text), 160, 153
    else:
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // part)


def to_gsm7(text: str) -> str:
    """``text`` with every character outside GSM-7 replaced by its unaccented letter (or a
    close punctuation mark); characters GSM-7 has are kept as they are."""
    out = []
    for ch in text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENDED:
            out.append(ch)
            continue
        plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        plain = _PUNCTUATION.get(ch, plain)
        out.append(plain if plain and all(c in GSM7_BASIC for c in plain) else "?")
    return "".join(out)


_PUNCTUATION = {"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "\u00a0": " ",
                "\u202f": " ", "«": '"', "»": '"', "œ": "oe", "Œ": "OE"}
