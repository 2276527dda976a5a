"""OpenAPI generation: every operation documents the shared error shape for its error codes."""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

# What any endpoint may answer besides its success: bad input, no or wrong credentials, not
# allowed, unknown id or path, wrong method, unacceptable Accept, body too large, wrong content
# type, throttled.
ERROR_CODES = {
    400: "Invalid input; `fields` names each bad field.",
    401: "No or invalid credentials.",
    403: "Signed in but not allowed (or a session request without its CSRF token).",
    404: "Unknown id, or not yours.",
    405: "Method not allowed.",
    406: "Only application/json responses are offered.",
    413: "Request body larger than the stated limit.",
    415: "Only application/json bodies are accepted.",
    429: "Throttled; retry after `retry_after` seconds.",
}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: validation_error, not_found, throttled, ...")
    message = serializers.CharField(help_text="For people: what is wrong, with the limit where one applies.")
    # The error body's documented key is "fields"; it shadows Serializer.fields in the schema class only.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field, by dotted path (activities.2.kind).",
    )
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429 only).")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in ERROR_CODES.items():
            if str(code) not in responses:
                response = self._get_response_for_code(ErrorSerializer, str(code), direction=direction)
                response["description"] = description
                responses[str(code)] = response
        return responses

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False) -> str:
        # Serializers nested in their view (ItemCreateApi.InputSerializer) take the view's name
        # as a prefix, so every "Input" and "Output" gets a component of its own.
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer, _, _inner = cls.__qualname__.rpartition(".")
        if outer and not name.startswith(outer):
            name = outer.removesuffix("Api") + name
        return name
