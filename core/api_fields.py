"""Serializer fields shared by the API modules."""

import re
from typing import Any

from rest_framework import serializers

from core.conf import recommender_settings
from core.text import InvalidTextError, text_clean


class CleanTextField(serializers.CharField):
    """A person's text, checked like every text from outside (core.text.text_clean).

    The limit is RECOMMENDER["MAX_TEXT_LENGTH"], read at request time; too long is a 400 on
    this field that states the limit, never a silent cut.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("trim_whitespace", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return text_clean(value, field=self.field_name or "text", max_length=recommender_settings().max_text_length)
        except InvalidTextError as error:
            raise serializers.ValidationError(error.message) from None


# Numbers from outside are read strictly. DRF's own fields take true as 1, "１２" (full-width) as 12,
# "2.0" as 2, and Decimal/float take "1_000", "1e3" and "NaN": each is a client's mistake to name.
ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")
PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _strict_number(field: serializers.Field, data: Any, pattern: re.Pattern[str]) -> Any:
    """data unchanged when it is a JSON number (not a boolean) or text matching pattern; else the field's
    own "invalid" error. The sign is allowed so that -1 is answered with the field's range."""
    if isinstance(data, bool):
        field.fail("invalid")
    if isinstance(data, str):
        data = data.strip()
        if pattern.fullmatch(data) is None:
            field.fail("invalid")
    return data


class StrictIntegerField(serializers.IntegerField):
    """An integer as a JSON number or ASCII digits: never true/false, "²", "１２" or "2.0"."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        return super().to_internal_value(_strict_number(self, data, ASCII_INTEGER))


class StrictFloatField(serializers.FloatField):
    """A number as JSON or as a plain decimal text ("4.5"): never true/false, "NaN", "4e0" or "４"."""

    def to_internal_value(self, data: Any) -> float:
        return super().to_internal_value(_strict_number(self, data, PLAIN_DECIMAL))


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false: never "yes", 1 or "on", which DRF's BooleanField would take."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class PlainDecimalField(serializers.DecimalField):
    """A decimal as JSON or as plain text ("12.50"): never true/false, "1_000", "1e3" or full-width digits."""

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(_strict_number(self, data, PLAIN_DECIMAL))
