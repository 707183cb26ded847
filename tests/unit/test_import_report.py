"""A large CSV import, as its route reports it: every row imported, already there,
rejected or pending — whatever each chunk's command answered."""

from __future__ import annotations

from typing import Any

from services.orders import domain
from services.orders.api import IMPORT_CHUNK, imported_in_chunks
from shared.auth import Principal, Role
from shared.http import Problem
from shared.outcome import Outcome


class Sender:
    """Answers each chunk as scripted: the first still queued, one refused, one not sent."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.sent: list[Any] = []

    async def send(self, community_id: str, command: Any, **kw: Any) -> Outcome:
        self.sent.append(command)
        how = self.script[len(self.sent) - 1]
        rows = command.households
        if how == "queued":
            link = f"/v1/commands/{command.command_id}"
            return Outcome(status=202, body={"command_id": command.command_id, "outcome": link})
        if how == "refused":
            return Outcome.rejected(422, "Not applied", "the command could not be applied")
        if how == "broker away":
            raise Problem(503, "Service unavailable", "the event broker is not reachable")
        done = [{"line": r.line, "household_id": f"hh{r.line}", "card_code": "X"} for r in rows]
        return Outcome.ok({"imported": done, "already": [], "rejected": []}, 201)


def rows(n: int) -> domain.ParsedCsv:
    text = "compound,building,unit,room,grid,phone,flags\n" + "".join(
        f"Datong Garden,{i // 100},1,{i},g1,139{i:08d},\n" for i in range(n)
    )
    return domain.parse_households_csv(text, {"g1"})


async def test_every_chunk_is_sent_and_every_row_is_accounted_for() -> None:
    parsed = rows(4 * IMPORT_CHUNK)
    sender = Sender(["queued", "imported", "refused", "broker away"])
    staff = Principal(subject="s", role=Role.staff, community_id="datong")
    report = await imported_in_chunks(sender, "datong", staff, parsed)  # type: ignore[arg-type]
    assert len(sender.sent) == 4  # the first still queued does not stop the others
    lines = [r.line for r in parsed.rows]
    chunk = [lines[i : i + IMPORT_CHUNK] for i in range(0, len(lines), IMPORT_CHUNK)]
    assert [r["line"] for r in report["imported"]] == chunk[1]
    assert [r["line"] for r in report["rejected"]] == chunk[2]
    assert [p["lines"] for p in report["pending"]] == [chunk[0], chunk[3]]
    assert [p["status"] for p in report["pending"]] == ["queued", "not sent"]
    assert report["pending"][0]["outcome"].startswith("/v1/commands/")
    counted = report["imported_count"] + report["rejected_count"] + report["pending_count"]
    assert counted == len(lines)
