"""OpenAPI generation: every operation documents the shared error shape for its error codes."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from core.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    IN_PROGRESS_RETRY_AFTER,
    KEY_PATTERN,
    MAX_KEY_LENGTH,
    REPLAYED_HEADER,
    is_idempotent,
)

# What any endpoint may answer besides its success: bad input, no or wrong credentials, not
# allowed, unknown id or path, wrong method, unacceptable Accept, body stalled or too large, wrong content
# type, throttled.
ERROR_CODES = {
    400: "Invalid input; `fields` names each bad field.",
    401: "No or invalid credentials.",
    403: "Signed in but not allowed (or a session request without its CSRF token).",
    404: "Unknown id, or not yours.",
    405: "Method not allowed.",
    406: "Only application/json responses are offered.",
    408: "The request body stopped arriving (the server's read timeout).",
    413: "Request body larger than the stated limit.",
    415: "Only application/json bodies are accepted.",
    429: "Throttled, or sign-in locked out (`locked_out`); retry after `retry_after` seconds.",
}
# What an operation that takes an Idempotency-Key may answer besides (core.idempotency).
IDEMPOTENCY_ERROR_CODES = {
    409: f"A request with this {IDEMPOTENCY_KEY_HEADER} is still being processed; retry after "
    f"`retry_after` ({IN_PROGRESS_RETRY_AFTER}) seconds to get its answer.",
    422: f"This {IDEMPOTENCY_KEY_HEADER} was sent before with another request body or query string.",
}
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY_HEADER,
    type={"type": "string", "pattern": KEY_PATTERN, "maxLength": MAX_KEY_LENGTH + 2},
    location=OpenApiParameter.HEADER,
    required=False,
    description="Optional; makes a retry safe. A retry with the same key (same person, method and path) "
    "within the retention (24 h by default) gets the first 2xx answer again, marked "
    f"`{REPLAYED_HEADER}: true`, and writes nothing. The same key with another body is 422; while the "
    "first request still runs, 409. A UUID is a good key.",
)
REPLAYED_PARAMETER = OpenApiParameter(
    REPLAYED_HEADER,
    type={"type": "string", "enum": ["true"]},
    location=OpenApiParameter.HEADER,
    response=[200, 201],
    description=f"Present on a replay: this is the first answer to the same {IDEMPOTENCY_KEY_HEADER}.",
)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: validation_error, not_found, throttled, ...")
    message = serializers.CharField(help_text="For people: what is wrong, with the limit where one applies.")
    # The error body's documented key is "fields"; it shadows Serializer.fields in the schema class only.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field, by dotted path (activities.2.kind).",
    )
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429 and 409 only).")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ApiAutoSchema(AutoSchema):
    def _takes_idempotency_key(self) -> bool:
        return is_idempotent(getattr(self.view, self.method.lower(), None))

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if self._takes_idempotency_key():
            parameters = [*parameters, IDEMPOTENCY_KEY_PARAMETER, REPLAYED_PARAMETER]
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = {**ERROR_CODES, **IDEMPOTENCY_ERROR_CODES} if self._takes_idempotency_key() else ERROR_CODES
        for code, description in codes.items():
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
