"""Checks and fingerprints for text that arrives from outside (imports, API, forms)."""

import hashlib

from core.conf import recommender_settings
from core.exceptions import ApplicationError


class InvalidTextError(ApplicationError):
    pass


def text_clean(value: str, *, field: str, max_length: int) -> str:
    """Return the text stripped, or raise InvalidTextError saying what is wrong with it.

    NUL characters are refused (PostgreSQL cannot store them in text columns) and so is text
    longer than max_length: silently cutting what a person wrote would lose it.
    """
    if "\x00" in value:
        raise InvalidTextError(f"{field} contains a NUL character")
    if any("\ud800" <= character <= "\udfff" for character in value):
        # Lone surrogates are what undecodable bytes become; they cannot be stored as UTF-8.
        raise InvalidTextError(f"{field} is not valid UTF-8")
    cleaned = value.strip()
    if len(cleaned) > max_length:
        raise InvalidTextError(f"{field} is {len(cleaned)} characters long; the limit is {max_length}")
    return cleaned


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_max_length() -> int:
    """The longest text a person may send (RECOMMENDER["MAX_TEXT_LENGTH"]), read when asked, never at import."""
    return recommender_settings().max_text_length
