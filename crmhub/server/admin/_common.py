"""What every admin route shares: the bearer token check, the router, ids and time checks."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from crmhub.server.services import Services, services
from sync.privacy import find_person

__all__ = [
    "ADMIN_BODY_LIMIT",
    "MAX_ID",
    "NO_NUL",
    "ContactRef",
    "Svc",
    "admin_refusal",
    "not_found",
    "resolve_contact",
    "router",
    "utc",
]

# The largest id the stores hold; a larger number in a request is refused (422), never sent to a driver.
MAX_ID = 2**63 - 1
# PostgreSQL text cannot hold NUL; refusing it here keeps such input a 422 on every backend.
NO_NUL = r"^[^\x00]*$"

# Admin bodies are a few ids and flags; nothing larger is read (FastAPI answers 413).
ADMIN_BODY_LIMIT = 64 * 1024

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The token held by the environment variable that `[server] admin_token_env` names.",
)


def admin_refusal(svc: Services, token: str) -> HTTPException | None:
    """Why a request bearing `token` may not use the admin API (503 unset, 401 wrong), or None."""
    env = svc.settings.server.admin_token_env
    expected = svc.environ.get(env, "")
    if not expected:
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"admin API disabled: environment variable {env} is unset or empty; set it to a long random "
            f"token (e.g. `export {env}=$(openssl rand -hex 32)`) and restart crmhub serve",
        )
    # compare_digest takes as long whatever the first differing byte: no guessing the token by timing.
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"admin API: send `Authorization: Bearer <token>` with the token in {env}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


def require_admin(
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with `Authorization: Bearer <the admin token>`."""
    refusal = admin_refusal(svc, credentials.credentials if credentials is not None else "")
    if refusal is not None:
        raise refusal


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    # AdminGate has checked the token before FastAPI read the body; this states it in the OpenAPI too.
    dependencies=[Depends(require_admin)],
    max_body_size=ADMIN_BODY_LIMIT,
    responses={
        401: {"description": "Missing or wrong bearer token."},
        413: {"description": "A request body over 64 KiB."},
        503: {"description": "The admin token's environment variable is unset."},
    },
)
Svc = Annotated[Services, Depends(services)]


def not_found(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def utc(moment: datetime, name: str) -> datetime:
    try:
        at = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        at = datetime.min.replace(tzinfo=UTC)
    # Rules subtract windows of years from the time; the far ends of the calendar would overflow.
    if not 1900 <= at.year <= 9000:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: expected a year from 1900 to 9000"
        )
    return at


ContactRef = Annotated[
    str,
    Path(
        max_length=320,
        pattern=NO_NUL,
        description="A contact id (a merged one names the contact it was merged into), e-mail or phone",
    ),
]


def resolve_contact(svc: Services, conn: Connection, contact: str) -> int:
    """The contact for an id, e-mail or phone (as `crmhub contact show` finds it), or 404 naming it."""
    found = find_person(conn, contact, region=svc.settings.field_mapping.identity.default_region)
    if found is None:
        raise not_found(f'contact "{contact}" not found: pass a contact id, or an e-mail or phone it has')
    return found
