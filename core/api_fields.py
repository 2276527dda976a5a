"""Serializer fields shared by the API modules."""

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
