"""Health checks for load balancers, the API's JSON 404, and the pagination every list uses."""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_fields import StrictIntegerField
from core.readiness import DEGRADING_CHECKS, READINESS_CHECKS

logger = logging.getLogger(__name__)


MAX_LIMIT = 100


class PaginationParametersSerializer(serializers.Serializer):
    limit = StrictIntegerField(required=False, min_value=1, max_value=MAX_LIMIT)
    offset = StrictIntegerField(required=False, min_value=0)


class ApiPagination(LimitOffsetPagination):
    """?limit=&offset=, at most 100 per page; answers count, next, previous, results.

    DRF's own reading is lenient (limit=-1 is the default, limit=101 is cut to 100, offset=abc is
    0); here a malformed or out-of-range value is a 400 naming it, so a client learns its mistake.
    """

    default_limit = 20
    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset, request: Request, view: APIView | None = None) -> list | None:
        parameters = PaginationParametersSerializer(data=request.query_params)
        if not parameters.is_valid():
            raise ValidationError(parameters.errors)
        return super().paginate_queryset(queryset, request, view)


def paginated(child: serializers.Serializer, *, name: str) -> serializers.Serializer:
    """The schema of one ApiPagination page of `child` rows."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": child,
        },
    )


class HealthLiveApi(APIView):
    """Liveness: the process answers HTTP. Anyone may call it; no authentication, no throttling.

    A load balancer restarts the process when this fails; it checks nothing else on purpose
    (a database outage is no reason to restart web processes).
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()

    @extend_schema(tags=["health"], responses={200: OutputSerializer}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class HealthReadyApi(APIView):
    """Readiness: every registered check passes (core.readiness: database, broker, encoder).

    Anyone may call it; no auth, no throttling.

    200 "ok" when every check passes; 200 "degraded" when only the broker fails (the service
    still answers and keeps every write); 503 "warming" while a process that just started is
    still loading (the encoder: seconds); 503 "unavailable" with the failing check named when the
    database or the encoder fails (no secrets, no connection strings in the answer).
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=["ok", "degraded", "warming", "unavailable"],
            help_text="degraded: a check failed that leaves the service answering (the broker: writes are "
            "kept and queued by the sweep once it is back); warming: the process is still loading what it "
            "needs (the encoder), ask again in a few seconds",
        )
        checks = serializers.DictField(
            child=inline_serializer(
                "ReadinessCheck",
                {
                    "ok": serializers.BooleanField(),
                    "ms": serializers.IntegerField(),
                    "detail": serializers.CharField(required=False),
                    "unqueued": serializers.IntegerField(
                        required=False, help_text="Tasks this process could not queue since it started."
                    ),
                    "warming": serializers.BooleanField(required=False),
                    "model": serializers.CharField(required=False),
                    "runtime": serializers.CharField(required=False),
                    "replicas": serializers.DictField(
                        required=False,
                        child=serializers.DictField(),
                        help_text="Each read replica (DATABASE_REPLICA_URLS): ok, standby, replayed (WAL position).",
                    ),
                },
            )
        )

    @extend_schema(
        tags=["health"],
        auth=[],
        responses={200: OutputSerializer, 503: OpenApiResponse(OutputSerializer, description="A check failed.")},
    )
    def get(self, request: Request) -> Response:
        checks = {}
        for name, check in READINESS_CHECKS.items():
            started = time.monotonic()
            try:
                result = check()
            except Exception as error:  # noqa: BLE001 - a boundary: report the failing dependency, never raise
                logger.warning("readiness check %s failed: %s", name, type(error).__name__)
                result = {"ok": False, "detail": f"{type(error).__name__}"}
            result["ms"] = round((time.monotonic() - started) * 1000)
            checks[name] = result
        failed = {name for name, check in checks.items() if not check["ok"]}
        if failed - DEGRADING_CHECKS:
            warming = all(checks[name].get("warming") for name in failed - DEGRADING_CHECKS)
            return Response(
                {"status": "warming" if warming else "unavailable", "checks": checks},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "degraded" if failed else "ok", "checks": checks}, status=status.HTTP_200_OK)


@csrf_exempt  # answers every method with a 404; CSRF would turn an unknown DELETE into an HTML 403
def api_not_found(request: HttpRequest, unknown_path: str = "") -> JsonResponse:
    """Any path under /api/ that names no endpoint: a JSON 404 in the error shape, whoever asks."""
    return JsonResponse({"error": {"code": "not_found", "message": f"No API endpoint at {request.path}."}}, status=404)
