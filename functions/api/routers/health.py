"""GET /health: liveness, no key and no table access (API Gateway exposes it without a key)."""

from fastapi import APIRouter

from functions.api.models import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness check")
def health() -> Health:
    return Health()
