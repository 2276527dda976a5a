"""Serializer fields shared by the API modules."""

from django.conf import settings
from rest_framework import serializers

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
            return text_clean(
                value, field=self.field_name or "text", max_length=settings.RECOMMENDER["MAX_TEXT_LENGTH"]
            )
        except InvalidTextError as error:
            raise serializers.ValidationError(error.message) from None
