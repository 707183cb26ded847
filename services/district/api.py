"""HTTP API of the sub-district view (under /v1): read only, from its own read models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.district import views
from services.district.handlers import CADRES, COMMUNITIES
from shared.api import Db
from shared.auth import CurrentPrincipal, Principal, Role, require
from shared.contracts.orders import sub_district_name
from shared.owner import LIVE
from shared.problem import Problem

router = APIRouter(prefix="/v1", tags=["sub-district"])

SubDistrict = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="Ops: one sub-district's communities (else all); an officer sees their own",
    ),
]
Day = Annotated[
    str | None,
    Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="A local day, YYYY-MM-DD; none: in total"),
]


def _day(day: str | None) -> str | None:
    try:
        return date.fromisoformat(day).isoformat() if day else None
    except ValueError:
        raise Problem(422, "Invalid request", f"no such day: {day}", kind="validation") from None


def _scope(principal: Principal, sub_district: str | None) -> dict[str, Any]:
    """Which communities the caller sees: an officer their 街道's, ops any (or all; ops
    acting as staff of a community they opened are ops still)."""
    if principal.role is Role.sub_district:
        return {"sub_district": principal.sub_district}
    if not principal.ops:
        require(principal, Role.ops)
    named = sub_district_name(sub_district)
    return {"sub_district": named} if named else {}


async def _communities(database: Db, scope: dict[str, Any]) -> list[dict[str, Any]]:
    return await database[COMMUNITIES].find({**scope, **LIVE}).to_list()


@router.get("/overview", summary="Every community of the sub-district at a glance")
async def overview(
    database: Db, principal: CurrentPrincipal, sub_district: SubDistrict = None
) -> dict[str, Any]:
    scope = _scope(principal, sub_district)
    found = await _communities(database, scope)
    known = sorted({c["sub_district"] for c in found if c.get("sub_district")})
    return {
        "sub_district": scope.get("sub_district"),
        "sub_districts": known,
        **views.overview(found, datetime.now(UTC)),
    }


async def _mobilisation(
    database: Db, principal: Principal, sub_district: str | None, day: str | None
) -> list[dict[str, Any]]:
    communities = {
        c["_id"]: c for c in await _communities(database, _scope(principal, sub_district))
    }
    cadres = await database[CADRES].find({"community_id": {"$in": list(communities)}}).to_list()
    return views.mobilisation(cadres, communities, datetime.now(UTC), _day(day))


@router.get("/mobilisation", summary="Cadres mobilised by work unit (on a day, or in total)")
async def mobilisation(
    database: Db, principal: CurrentPrincipal, sub_district: SubDistrict = None, day: Day = None
) -> dict[str, Any]:
    rows = await _mobilisation(database, principal, sub_district, day)
    return {"day": _day(day), "work_units": rows}


@router.get(
    "/mobilisation.csv",
    summary="The same as CSV, for the report upward",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def mobilisation_csv(
    database: Db, principal: CurrentPrincipal, sub_district: SubDistrict = None, day: Day = None
) -> Response:
    rows = await _mobilisation(database, principal, sub_district, day)
    name = f"mobilisation-{_day(day) or 'total'}.csv"
    return Response(
        views.mobilisation_csv(rows, unnamed="(未填单位)"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
