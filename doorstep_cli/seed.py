"""A demo community like the article's: Datong, 7 grids, 1,500 households with realistic
flags, 40 cadres reporting from their work units — created through the public HTTP API."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from rich.progress import Progress

from shared.auth import Role, mint
from shared.keys import SigningKey

COMPOUNDS = ["Datong Garden", "Minzhu Road Estate", "Railway Housing", "Bayi Courtyard"]
WORK_UNITS = [
    "city ecology bureau",
    "municipal finance bureau",
    "housing authority",
    "tax office",
    "transport bureau",
    "education bureau",
    "civil affairs bureau",
    "market regulation",
]
SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Zhao",
    "Huang",
    "Zhou",
    "Wu",
    "Xu",
    "Sun",
    "Hu",
    "Zhu",
    "Gao",
    "Lin",
    "He",
    "Guo",
    "Ma",
    "Luo",
]
# Grids 1-7: a ring of neighbours, as blocks along the community's streets.
NEIGHBOURS = {i: [(i - 2) % 7 + 1, i % 7 + 1] for i in range(1, 8)}


@dataclass
class Seeded:
    community_id: str
    households: int
    already: int  # there from an earlier seed: nothing added
    rejected: int
    volunteers: int
    on_duty: int


def _flags(rng: random.Random) -> list[str]:
    flags = []
    elderly = rng.random() < 0.18
    if elderly:
        flags.append("elderly_alone")
    if rng.random() < (0.55 if elderly else 0.03):
        flags.append("no_smartphone")
    if rng.random() < 0.03:
        flags.append("disabled")
    if rng.random() < 0.05:
        flags.append("home_isolation")
    elif rng.random() < 0.02:
        flags.append("close_contact")
    return flags


def households_csv(count: int, rng: random.Random) -> str:
    lines = ["compound,building,unit,room,grid,phone,flags"]
    for i in range(count):
        grid = i * 7 // count + 1
        compound = COMPOUNDS[i % len(COMPOUNDS)]
        building, unit, room = i // 60 + 1, i // 20 % 3 + 1, 101 + i % 20 // 4 * 100 + i % 4
        phone = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
        lines.append(f"{compound},{building},{unit},{room},g{grid},{phone},{';'.join(_flags(rng))}")
    return "\n".join(lines) + "\n"


def seed(
    orders_url: str,
    volunteers_url: str,
    key: SigningKey,
    *,
    community_id: str = "datong",
    households: int = 1500,
    cadres: int = 40,
    on_duty: int = 24,
    random_seed: int = 7,
) -> Seeded:
    rng = random.Random(random_seed)
    ops = mint(key, role=Role.ops, subject="seed")
    staff = mint(key, role=Role.staff, subject="seed-staff", community_id=community_id)
    with httpx.Client(timeout=120) as http, Progress() as progress:
        step = progress.add_task("community and grids", total=1)
        grids = [
            {
                "grid_id": f"g{i}",
                "name": f"Grid {i}",
                "grid_worker": f"{SURNAMES[i]} (grid {i})",
                "grid_worker_phone": f"1380371000{i}",
                "neighbours": [f"g{n}" for n in NEIGHBOURS[i]],
            }
            for i in range(1, 8)
        ]
        body = {
            "community_id": community_id,
            "name": "Datong community",
            "hotline": "037163981234",  # what its contact cards tell people to call
            "sub_district": "南关街道",  # Weidu district, Xuchang: the article's
            "grids": grids,
            "policy": {
                "auto_accept_orders": True,
                "auto_approve_volunteers": False,
                "time_zone": "Asia/Shanghai",
            },
        }
        _ok(http.post(f"{orders_url}/v1/communities", json=body, headers=_auth(ops)))
        progress.advance(step)

        step = progress.add_task(f"{households} households (one CSV import)", total=1)
        result = _ok(
            http.post(
                f"{orders_url}/v1/communities/{community_id}/households/import",
                content=households_csv(households, rng),
                headers={**_auth(staff), "Content-Type": "text/csv"},
            )
        )
        progress.advance(step)

        step = progress.add_task(f"{cadres} cadres report, are approved, check in", total=cadres)
        until = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
        for n in range(cadres):
            vid = f"vol_{community_id}_{n:02d}"
            token = mint(
                key,
                role=Role.volunteer,
                subject=vid,
                community_id=community_id,
                volunteer_id=vid,
            )
            grid = f"g{n % 7 + 1}"
            extra = ["medical", "driving", "app_help", "phone_duty", "disinfection"]
            skills = ["delivery", *rng.sample(extra, k=rng.choice([0, 1, 1, 2]))]
            registration = {
                "name": f"{rng.choice(SURNAMES)} {rng.choice(SURNAMES)}",
                "phone": f"137{rng.randrange(10**8):08d}",
                "compound": COMPOUNDS[n % len(COMPOUNDS)],
                "home_grid_id": grid,
                "work_unit": rng.choice(WORK_UNITS),
                "skills": skills,
                "capacity": rng.choice([1, 2, 2, 3]),
            }
            response = http.post(
                f"{volunteers_url}/v1/volunteers", json=registration, headers=_auth(token)
            )
            if response.status_code != 409:  # already there from an earlier seed
                _ok(response)
            _ok(http.post(f"{volunteers_url}/v1/volunteers/{vid}/approve", headers=_auth(staff)))
            if n < on_duty:
                r = http.post(
                    f"{volunteers_url}/v1/volunteers/{vid}/check-in",
                    json={"grid_id": grid, "until": until},
                    headers=_auth(token),
                )
                if r.status_code != 409:  # already on duty
                    _ok(r)
            progress.advance(step)
    return Seeded(
        community_id,
        result["imported_count"],
        result.get("already_count", 0),
        result["rejected_count"],
        cadres,
        min(on_duty, cadres),
    )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    if response.status_code >= 400:
        raise SystemExit(
            f"seed: {response.request.method} {response.request.url} -> "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response.json()  # type: ignore[no-any-return]
