"""How the sub-district's view reads (the rules put the documents): each community's
summary with what makes it stand out, and cadre mobilisation by work unit."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from services.district.handlers import clock, day_of
from shared.days import add_days, seconds_by_day

LATE_AFTER = timedelta(minutes=60)  # open this long and not escalated yet: late all the same


def summary(community: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a sub-district officer asks of a community at a glance, and why it stands out."""
    opened = list(community.get("open", {}).values())
    late = [
        x
        for x in opened
        if x.get("late")
        or (not x["taken"] and x["placed_at"] and now - x["placed_at"] > LATE_AFTER)
    ]
    urgent_waiting = [x for x in opened if x["urgent"] and not x["taken"]]
    escalated = [x for x in opened if x["escalated"]]
    on_duty = len(community.get("on_duty", {}))
    rounds = [
        {
            "campaign_id": campaign_id,
            "title": r["title"],
            "households": r["households"],
            "not_reached": max(0, r["households"] - len(r["reached"])),
        }
        for campaign_id, r in community.get("rounds", {}).items()
    ]
    today = day_of(community, now)
    trouble = []
    if urgent_waiting:
        trouble.append("urgent_waiting")
    if escalated:
        trouble.append("escalated")
    if late:
        trouble.append("late")
    if opened and on_duty == 0:
        trouble.append("nobody_on_duty")
    return {
        "community_id": community["_id"],
        "name": community.get("name") or community["_id"],
        "sub_district": community.get("sub_district"),
        "households": community.get("households", 0),
        "open_orders": len(opened),
        "late_orders": len(late),
        "escalated_orders": len(escalated),
        "urgent_waiting": len(urgent_waiting),
        "placed_today": community.get("placed_by_day", {}).get(today, 0),
        "delivered_today": community.get("delivered_by_day", {}).get(today, 0),
        "cadres_on_duty": on_duty,
        "rounds": rounds,
        "not_reached": sum(r["not_reached"] for r in rounds),
        "trouble": trouble,
        "today": today,
    }


def overview(communities: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Every community's summary, those in trouble first (the most urgent first), then
    by name; and the totals."""
    rows = [summary(c, now) for c in communities]
    rows.sort(
        key=lambda r: (
            not r["trouble"],
            -r["urgent_waiting"],
            -r["escalated_orders"],
            -r["late_orders"],
            r["name"],
        )
    )
    keys = (
        "households",
        "open_orders",
        "late_orders",
        "escalated_orders",
        "urgent_waiting",
        "placed_today",
        "delivered_today",
        "cadres_on_duty",
        "not_reached",
    )
    totals = {k: sum(r[k] for r in rows) for k in keys}
    totals["in_trouble"] = sum(1 for r in rows if r["trouble"])
    return {"communities": rows, "totals": totals}


def _served(cadre: dict[str, Any], community: dict[str, Any], now: datetime) -> dict[str, float]:
    """Seconds served by local day, the shift still running counted up to now."""
    shift = cadre.get("shift")
    if not shift:
        return dict(cadre.get("seconds_by_day", {}))
    running = seconds_by_day(shift["started_at"], min(now, shift["until"]), clock(community))
    return add_days(cadre.get("seconds_by_day", {}), running)


def mobilisation(
    cadres: Iterable[dict[str, Any]],
    communities: dict[str, dict[str, Any]],
    now: datetime,
    day: str | None = None,
) -> list[dict[str, Any]]:
    """Per work unit, as the article reports it ("33 cadres of the bureau reported to 16
    communities"): cadres reported, to which communities, hours served, tasks done — on
    ``day`` (local, ISO), else in total. A cadre who reported to two communities is one
    cadre of their unit, counted in both communities."""
    units: dict[str, dict[str, Any]] = {}
    for cadre in cadres:
        community = communities.get(cadre["community_id"])
        if community is None:
            continue
        served = _served(cadre, community, now)
        tasks = cadre.get("tasks_by_day", {})
        seconds = served.get(day, 0.0) if day else sum(served.values())
        done = tasks.get(day, 0) if day else sum(tasks.values())
        if day and not seconds and not done:
            continue  # reported, but did not serve that day
        unit = units.setdefault(
            cadre.get("work_unit") or "",
            {"cadres": set(), "communities": {}, "seconds": 0.0, "tasks": 0},
        )
        unit["cadres"].add(cadre.get("volunteer_id") or cadre["_id"])
        name = community.get("name") or community["_id"]
        unit["communities"][name] = unit["communities"].get(name, 0) + 1
        unit["seconds"] += seconds
        unit["tasks"] += done
    rows = [
        {
            "work_unit": work_unit or None,
            "cadres": len(u["cadres"]),
            "communities": len(u["communities"]),
            "cadres_by_community": dict(sorted(u["communities"].items())),
            "hours": round(u["seconds"] / 3600, 1),
            "tasks_done": u["tasks"],
        }
        for work_unit, u in units.items()
    ]
    rows.sort(key=lambda r: (-r["cadres"], r["work_unit"] or "\uffff"))
    return rows


CSV_HEADER = (
    "单位 work unit",
    "干部 cadres",
    "社区数 communities",
    "报到社区 reported to",
    "服务小时 hours",
    "完成任务 tasks done",
)


def mobilisation_csv(rows: list[dict[str, Any]], unnamed: str) -> str:
    """The same rows as CSV for the report upward; UTF-8 with a BOM so that Excel on a
    Chinese Windows reads the 汉字."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for r in rows:
        reported = "；".join(f"{name} {n}" for name, n in r["cadres_by_community"].items())
        writer.writerow(
            (
                r["work_unit"] or unnamed,
                r["cadres"],
                r["communities"],
                reported,
                r["hours"],
                r["tasks_done"],
            )
        )
    return "\ufeff" + out.getvalue()
