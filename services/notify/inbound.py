"""The inbound side of the SMS gateway: replies from plain phones (services.notify.keypad
says what they mean). The gateway calls ``POST /hooks/sms`` with ``{"from", "text"}``,
signed: ``X-Doorstep-Timestamp`` (unix seconds) and ``X-Doorstep-Signature`` =
``sha256=`` HMAC-SHA256 of ``"{timestamp}." + body`` with ``DOORSTEP_SMS_SECRET``. A bad
or stale signature is refused 401, a message delivered twice 409; both change nothing.
The answer's ``reply`` is the text to send back to the phone."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notify import alarms, keypad
from services.notify.handlers import NotifyOwner
from shared.api import Db
from shared.commands import CommandSender, Outcome, new_command_id
from shared.contracts import dispatch as d
from shared.http import Problem

router = APIRouter(prefix="/hooks", tags=["sms"])
INBOUND = "inbound"  # every signed message once: a replay is refused


class InboundSms(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    sender: str = Field(alias="from", min_length=3, max_length=30)
    text: str = Field(max_length=1000)


class KeypadReplies:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], dispatch: CommandSender, owner: NotifyOwner
    ) -> None:
        self.db = db
        self.dispatch = dispatch
        self.owner = owner

    async def answer(self, sms: InboundSms, message_id: str) -> str:
        phone = keypad.phone_key(sms.sender)
        if sms.text.strip() == alarms.ACK_DIGIT:
            taken = await self._acknowledge(phone)
            if taken is not None:
                return taken
        volunteer = await self.db["volunteers"].find_one({"phone": phone})
        if volunteer is not None:
            return await self._from_volunteer(volunteer, sms.text)
        household = await self.db["households"].find_one({"phone": phone})
        if household is not None:
            return await self._from_household(household, sms.text, message_id)
        return keypad.HELP_UNKNOWN

    async def _acknowledge(self, phone: str) -> str | None:
        """An on-call person answering the page: the newest alarm that woke them is theirs."""
        mine = [
            (alarm, person)
            for alarm in await self.owner.open_alarms()
            for person in alarm["on_call"]
            if keypad.phone_key(person["phone"]) == phone
        ]
        if not mine:
            return None
        alarm, person = max(mine, key=lambda found: found[0]["created_at"])
        await self.owner.acknowledge(alarm["_id"], f"sms:{person['name']}")
        return f"Doorstep: thank you, {person['name']}; it is yours: {alarm['summary']}"

    async def _latest(self, recipient: str, kind: str) -> dict[str, Any] | None:
        found = (
            await self.db["notifications"]
            .find({"recipient": recipient, "kind": kind})
            .sort("seq", -1)
            .limit(1)
            .to_list()
        )
        return found[0] if found else None

    async def _from_volunteer(self, volunteer: dict[str, Any], text: str) -> str:
        said = keypad.from_volunteer(text)
        if said is None:
            return keypad.HELP_VOLUNTEER
        offer = await self._latest(f"volunteer:{volunteer['_id']}", "offer.made")
        if offer is None:
            return "Doorstep: you have no offer or task to answer."
        order_id, vid = offer["order_id"], volunteer["_id"]
        command = {
            "accept": lambda: d.AcceptOffer(
                command_id=new_command_id(), order_id=order_id, volunteer_id=vid
            ),
            "decline": lambda: d.DeclineOffer(
                command_id=new_command_id(), order_id=order_id, volunteer_id=vid
            ),
            "deliver": lambda: d.Deliver(
                command_id=new_command_id(),
                order_id=order_id,
                volunteer_id=vid,
                handoff_code=said.code,
            ),
        }[said.intent]()
        outcome = await self.dispatch.send(volunteer["community_id"], command, wait_seconds=10)
        return reply_to(said.intent, order_id, outcome)

    async def _from_household(self, household: dict[str, Any], text: str, message_id: str) -> str:
        said = keypad.from_household(text)
        if said is None:
            return keypad.HELP_HOUSEHOLD
        now = datetime.now(UTC)
        if said.intent == "confirm":
            delivered = await self._latest(f"household:{household['_id']}", "task.delivered")
            if delivered is None:
                return f"Doorstep: there is no delivery to confirm. {keypad.HOUSEHOLD_DIGITS}"
            with contextlib.suppress(DuplicateKeyError):
                await self.db["confirmations"].insert_one(
                    {"_id": delivered["order_id"], "household_id": household["_id"], "at": now}
                )
            return "Doorstep: thank you, delivery confirmed."
        with contextlib.suppress(DuplicateKeyError):
            await self.db["call_list"].insert_one(
                {
                    "_id": f"callme-{message_id[-24:]}",
                    "community_id": household["community_id"],
                    "household_id": household["_id"],
                    "phone": household.get("phone"),
                    "grid_id": household.get("grid_id"),
                    "address": household.get("address"),
                    "card_code": household.get("card_code"),
                    "order_id": None,
                    "kind": "call_me",
                    "message": "Asked to be called back (replied 9 by SMS).",
                    "created_at": now,
                }
            )
        return "Doorstep: the community office will call you soon."


def reply_to(intent: str, order_id: str, outcome: Outcome) -> str:
    if outcome.status == 202:
        return "Doorstep: received; you will get a message when it is done."
    if outcome.status >= 400:
        return f"Doorstep: not done ({outcome.detail}). {keypad.VOLUNTEER_DIGITS}"
    return {
        "accept": f"Doorstep: order {order_id} is yours. At the door, reply D and the code.",
        "decline": f"Doorstep: declined; order {order_id} goes to someone else.",
        "deliver": f"Doorstep: order {order_id} delivered. Thank you.",
    }[intent]


def problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


@router.post(
    "/sms",
    summary="Inbound SMS from the gateway (signed; see the module docs)",
    responses={
        401: problem("Missing, wrong or stale signature"),
        404: problem("Inbound SMS is not configured"),
        409: problem("Delivered already (a replay)"),
        413: problem("Body too large"),
        422: problem("Not {from, text}"),
    },
)
async def inbound_sms(
    request: Request,
    database: Db,
    x_doorstep_timestamp: Annotated[str, Header(max_length=20)] = "",
    x_doorstep_signature: Annotated[str, Header(max_length=100)] = "",
) -> dict[str, str]:
    secret: str | None = request.app.state.sms_secret
    if secret is None:
        raise Problem(404, "Not found", "inbound SMS is not configured here")
    body = await request.body()
    if not keypad.signed(secret, x_doorstep_timestamp, body, x_doorstep_signature, time.time()):
        raise Problem(401, "Unauthorized", "missing, wrong or stale signature")
    try:
        sms = InboundSms.model_validate_json(body)
    except ValidationError as exc:
        raise Problem(422, "Invalid request", 'expected {"from": ..., "text": ...}') from exc
    try:
        await database[INBOUND].insert_one(
            {
                "_id": x_doorstep_signature,
                "from": sms.sender,
                "text": sms.text,
                "at": datetime.now(UTC),
            }
        )
    except DuplicateKeyError:
        raise Problem(409, "Replayed", "this message was delivered already") from None
    replies: KeypadReplies = request.app.state.keypad
    return {"reply": await replies.answer(sms, x_doorstep_signature)}
