"""The inbound side of the SMS gateway: replies from plain phones (services.notify.keypad
says what they mean). The gateway calls ``POST /hooks/sms`` with ``{"from", "text"}``,
signed: ``X-Doorstep-Timestamp`` (unix seconds) and ``X-Doorstep-Signature`` =
``sha256=`` HMAC-SHA256 of ``"{timestamp}." + body`` with ``DOORSTEP_SMS_SECRET``. A bad
or stale signature is refused 401, a message delivered twice 409; both change nothing.
The answer's ``reply`` is the text to send back to the phone."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
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
# What asks a phone for a digit: an offer (1/2, D and the code), a delivery (1/9).
ASKS_A_REPLY = ("offer.made", "task.assigned", "task.delivered")


class InboundSms(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    sender: str = Field(alias="from", min_length=3, max_length=30)
    text: str = Field(max_length=1000)
    # The gateway's own id of the message, the same on its retries (whose timestamp and
    # signature are new): a message is handled once by it. Without one, by signature.
    message_id: str | None = Field(default=None, alias="id", min_length=1, max_length=100)


class KeypadReplies:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], dispatch: CommandSender, owner: NotifyOwner
    ) -> None:
        self.db = db
        self.dispatch = dispatch
        self.owner = owner

    async def answer(self, sms: InboundSms, message_id: str) -> str:
        phone = keypad.phone_key(sms.sender)
        if keypad.plain(sms.text) == alarms.ACK_DIGIT:
            taken = await self._acknowledge(phone)
            if taken is not None:
                return taken
        volunteers = await self.db["volunteers"].find({"phone": phone}).to_list()
        households = await self.db["households"].find({"phone": phone}).to_list()
        # One phone may be a cadre and a household's contact (their own family), or the
        # contact of two households: the text answers whatever last asked that phone for
        # a reply; a text only one side understands is that side's.
        context = await self._asked_last(
            [f"volunteer:{cadre_id(v)}" for v in volunteers if keypad.from_volunteer(sms.text)]
            + [f"household:{h['_id']}" for h in households if keypad.from_household(sms.text)]
        )
        if context is not None:
            kind, _, who = context.partition(":")
            if kind == "volunteer":
                volunteer = next(v for v in volunteers if cadre_id(v) == who)
                return await self._from_volunteer(volunteer, sms.text)
            household = next(h for h in households if h["_id"] == who)
            return await self._from_household(household, sms.text, message_id)
        if volunteers:
            return await self._from_volunteer(volunteers[0], sms.text)
        if households:
            return await self._from_household(households[0], sms.text, message_id)
        return keypad.HELP_UNKNOWN

    async def _asked_last(self, recipients: list[str]) -> str | None:
        """Of these recipients, the one most lately sent a message that asks for a reply."""
        if len(recipients) < 2:
            return recipients[0] if recipients else None
        found = (
            await self.db["notifications"]
            .find({"recipient": {"$in": recipients}, "kind": {"$in": list(ASKS_A_REPLY)}})
            .sort("seq", -1)
            .limit(1)
            .to_list()
        )
        return str(found[0]["recipient"]) if found else recipients[0]

    async def _acknowledge(self, phone: str) -> str | None:
        """An on-call person answering a page: the newest alarm that paged them is theirs,
        unless someone took it first (then they hear who)."""
        mine = [
            (alarm, page["to"])
            for alarm in await self.owner.open_alarms(taken_too=True)
            for page in alarm["pages"]
            if keypad.phone_key(page["to"]["phone"]) == phone
        ]
        if not mine:
            return None
        alarm, person = max(mine, key=lambda found: found[0]["created_at"])
        taken_by = await self.owner.acknowledge(alarm["_id"], f"sms:{person['name']}")
        if taken_by is not None:
            who = taken_by.removeprefix("sms:")
            return f"Doorstep: 已由 {who} 处理，谢谢。 {who} has taken it already, thank you."
        return (
            f"Doorstep: 谢谢 {person['name']}，由您处理：{alarm['summary']}"
            f" Thank you, {person['name']}; it is yours: {alarm['summary']}"
        )

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
        vid = cadre_id(volunteer)
        # A cadre serving two communities answers the one whose offer came last.
        offer = await self._latest(f"volunteer:{vid}", "offer.made")
        community = offer["community_id"] if offer else volunteer["community_id"]
        command: d.AcceptOffer | d.DeclineOffer | d.DeliverByCode
        if said.intent == "deliver":
            # The code names the household at the door: dispatch finds the task it is of
            # (the cadre may hold several; the latest offer is not the one at the door).
            assert said.code is not None
            command = d.DeliverByCode(
                command_id=new_command_id(), volunteer_id=vid, handoff_code=said.code
            )
            order_id = ""
        else:
            if offer is None:
                return "Doorstep: you have no offer or task to answer."
            order_id = offer["order_id"]
            if said.intent == "accept" and offer.get("batch"):
                return await self._take_batch(community, vid, offer)
            kind = d.AcceptOffer if said.intent == "accept" else d.DeclineOffer
            command = kind(command_id=new_command_id(), order_id=order_id, volunteer_id=vid)
        outcome = await self.dispatch.send(community, command, wait_seconds=10)
        if outcome.status < 400 and outcome.body:
            order_id = outcome.body.get("order_id", order_id)
        return reply_to(said.intent, order_id, outcome)

    async def _take_batch(self, community: str, vid: str, offer: dict[str, Any]) -> str:
        """ "1" to an offer of a parcel from the gate takes the building's batch: every
        offer of that building made to this cadre lately; dispatch takes those still
        theirs and names the rest."""
        offers = self.db["notifications"].find(
            {
                "recipient": f"volunteer:{vid}",
                "kind": "offer.made",
                "batch": offer["batch"],
                "created_at": {"$gte": offer["created_at"] - BATCH_WINDOW},
            },
            {"order_id": 1},
        )
        order_ids = sorted({n["order_id"] async for n in offers} | {offer["order_id"]})
        command = d.TakeBatch(command_id=new_command_id(), volunteer_id=vid, order_ids=order_ids)
        outcome = await self.dispatch.send(community, command, wait_seconds=10)
        if outcome.status == 202 or outcome.status >= 400 or not outcome.body:
            return reply_to("accept", offer["order_id"], outcome)
        taken = len(outcome.body.get("taken", []))
        return (
            f"Doorstep: {offer['batch']} 的 {taken} 件包裹归您，到门口回复 D 加取件码。"
            f" {taken} parcels for {offer['batch']} are yours. At each door, reply D and the code."
        )

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
                    "seq": self.owner.sequence.next(),  # after what a call may cover already
                }
            )
        return "Doorstep: the community office will call you soon."


BATCH_WINDOW = timedelta(hours=1)  # offers of one batch: made within this of the latest


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
    seen = f"id:{sms.message_id}" if sms.message_id else x_doorstep_signature
    try:
        await database[INBOUND].insert_one(
            {"_id": seen, "from": sms.sender, "text": sms.text, "at": datetime.now(UTC)}
        )
    except DuplicateKeyError:
        raise Problem(409, "Replayed", "this message was delivered already") from None
    replies: KeypadReplies = request.app.state.keypad
    try:
        return {"reply": await replies.answer(sms, seen)}
    except BaseException:
        # Not handled (dispatch away: 503): the gateway's retry must be, not refused as a
        # replay. Handled once: the mark goes only when the answer failed.
        with contextlib.suppress(Exception):
            await database[INBOUND].delete_one({"_id": seen})
        raise


def cadre_id(volunteer: dict[str, Any]) -> str:
    """The cadre's id in a directory entry ("{community}:{id}"; a bare id stored before)."""
    return str(volunteer.get("volunteer_id") or volunteer["_id"])
