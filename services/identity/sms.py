"""Texts each sign-in code through the SMS gateway notify uses, read from identity's own
events: the code is derived again from its id (it is in no event and no document). A phone
nobody registered is texted nothing, though its request was answered the same. A code past
its life when its event is read (a backlog after an outage) is not sent."""

from __future__ import annotations

from datetime import UTC, datetime

from services.identity import domain
from shared.contracts import identity as i
from shared.events import Event
from shared.gateway import DeliveryFailed, Gateway
from shared.log import get_logger

log = get_logger(__name__)


def code_text(code: str) -> str:
    minutes = int(domain.CODE_LIFETIME.total_seconds() // 60)
    return (
        f"【Doorstep】登录验证码 {code}，{minutes}分钟内有效，请勿告诉他人。"
        f"Doorstep sign-in code {code}, valid {minutes} minutes. Never share it."
    )


class CodeSender:
    def __init__(self, secret: str, gateway: Gateway | None) -> None:
        self.secret = secret
        self.gateway = gateway

    async def handle(self, event: Event) -> None:
        issued = event.data
        if not isinstance(issued, i.CodeIssued) or not issued.known:
            return
        if issued.expires_at <= datetime.now(UTC):
            log.info("identity.code_expired_unsent", code_id=issued.code_id)
            return
        if self.gateway is None:
            log.warning("identity.no_gateway", hint="set DOORSTEP_GATEWAY_URL: codes are not sent")
            return
        message = {
            "id": issued.code_id,
            "recipient": f"phone:+{issued.account}",
            "title": "Doorstep",
            "body": code_text(domain.code_for(self.secret, issued.code_id)),
            "kind": "sign_in_code",
            "order_id": None,
        }
        try:
            await self.gateway.send(message)
        except DeliveryFailed as exc:  # the person asks again; a code is not worth a block
            log.warning("identity.code_not_sent", code_id=issued.code_id, error=str(exc))
