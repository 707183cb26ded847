"""Who is told what about which event. Pure: an event and the directory in, messages out.

Residents hear of their order only from orders' own events (one partition per community),
so the steps reach them in the order they happened; volunteers and staff hear of offers
and failures from dispatch's events."""

from __future__ import annotations

from dataclasses import dataclass

from services.notify.keypad import HOUSEHOLD_DIGITS, VOLUNTEER_DIGITS
from shared.contracts import campaigns as c
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import supply as s
from shared.contracts import volunteers as v
from shared.contracts.base import Payload

CATEGORY_NAMES = {
    "groceries": "groceries",
    "medicine": "medicine",
    "garbage": "garbage pickup",
    "home_test": "home test",
    "app_help": "app help",
    "visit": "visit",
    "transfer": "transfer",
    "other": "request",
}
CATEGORY_ZH = {
    "groceries": "生活物资",
    "medicine": "药品",
    "garbage": "垃圾清运",
    "home_test": "上门检测",
    "app_help": "手机使用帮助",
    "visit": "上门探视",
    "transfer": "转运就医",
    "other": "需求",
}


PARCEL_CONDITIONS = {
    s.ParcelCondition.short: ("有缺少", "some of it is missing"),
    s.ParcelCondition.substituted: ("有替换", "something was substituted"),
    s.ParcelCondition.damaged: ("有损坏", "it is damaged"),
}


def zh_en(zh: str, en: str) -> str:
    """What people read: Chinese first (the people are Chinese; many read nothing else),
    then English, in one text — an SMS reaches a plain phone as it is."""
    return f"{zh} {en}"


def what(category: str) -> tuple[str, str]:
    return CATEGORY_ZH.get(category, "需求"), CATEGORY_NAMES.get(category, category)


@dataclass(frozen=True)
class Message:
    # household:<id> | volunteer:<id> | staff:<community> | grid_worker:<community>:<grid>
    # | phone:<number> (a supplier: texted as it is)
    recipient: str
    kind: str
    title: str
    body: str
    order_id: str | None = None
    batch: str | None = None  # an offer of a parcel from the gate: its building


def household(household_id: str) -> str:
    return f"household:{household_id}"


def messages_for(payload: Payload, community_id: str) -> list[Message]:
    staff = f"staff:{community_id}"
    match payload:
        case s.ParcelArrived(order_id=order_id, household_id=home, condition=condition):
            zh, en = what(payload.category)
            if condition is s.ParcelCondition.ok:
                return [
                    Message(
                        household(home),
                        "parcel.arrived",
                        zh_en("物资已到大门", "At the gate"),
                        zh_en(
                            f"您的{zh}已到社区大门，志愿者会送到您家门口。",
                            f"Your {en} is at the community's gate; a volunteer will bring it.",
                        ),
                        order_id,
                    )
                ]
            cond_zh, cond_en = PARCEL_CONDITIONS[condition]
            return [
                Message(
                    household(home),
                    "parcel.arrived",
                    zh_en("物资已到大门", "At the gate"),
                    zh_en(
                        f"您的{zh}已到社区大门，但{cond_zh}：{payload.note}。社区会联系您。",
                        f"Your {en} is at the gate, but {cond_en}: {payload.note}. "
                        "The community will call you.",
                    ),
                    order_id,
                ),
                Message(
                    staff,
                    "parcel.not_as_ordered",
                    zh_en("大门：物资有问题", "Gate: parcel not as ordered"),
                    zh_en(
                        f"{payload.address} 的{zh}{cond_zh}：{payload.note}。",
                        f"{payload.address}, {en}: {cond_en} — {payload.note}.",
                    ),
                    order_id,
                ),
            ]
        case s.SupplierOrderSent(supplier_order_id=sent, supplier_name=name, phone=phone):
            homes, lines = len(payload.order_ids), payload.lines
            return [
                Message(
                    f"phone:{phone}",
                    "supplier_order.sent",
                    zh_en("社区订货单", "Supplier order"),
                    zh_en(
                        f"{name}：社区 {community_id} 向您订货 {lines} 项（{homes} 户，单号 "
                        f"{sent}）。请备货送到社区大门，送货前请联系社区。",
                        f"{name}: community {community_id} orders {lines} lines ({homes} "
                        f"households, order {sent}). Bring them to the gate; call us first.",
                    ),
                    None,
                )
            ]
        case o.OrderAccepted(order=order):
            zh, en = what(order.category)
            return [
                Message(
                    household(order.household_id),
                    "order.accepted",
                    zh_en("社区已接单", "Order taken"),
                    zh_en(
                        f"社区已收到您的{zh}订单，正在安排志愿者。",
                        f"The community has taken your {en} order; a volunteer will be found.",
                    ),
                    order.order_id,
                )
            ]
        case o.OrderHeld(order=order, reason=reason):
            zh, en = what(order.category)
            return [
                Message(
                    staff,
                    "order.held",
                    zh_en("待审核订单", "Order held for review"),
                    zh_en(
                        f"{order.address} 的{zh}订单待审核：{reason}。",
                        f"Order {order.order_id} ({en}, {order.address}): {reason}.",
                    ),
                    order.order_id,
                ),
                Message(
                    household(order.household_id),
                    "order.held",
                    zh_en("订单待社区确认", "Order being checked"),
                    zh_en(
                        f"您的{zh}订单已收到，社区工作人员确认后安排配送。",
                        f"Your {en} order was received; community staff will check it and "
                        "then send a volunteer.",
                    ),
                    order.order_id,
                ),
            ]
        case o.OrderReopened(order=order):
            zh, en = what(order.category)
            return [
                Message(
                    household(order.household_id),
                    "order.reopened",
                    zh_en("重新安排配送", "Trying again"),
                    zh_en(
                        f"您的{zh}订单将重新安排志愿者配送。",
                        f"Your {en} order will be brought by a volunteer after all.",
                    ),
                    order.order_id,
                )
            ]
        case o.OrderCancelled(order_id=order_id, household_id=household_id, reason=reason):
            why_zh = f"原因：{reason}。" if reason else ""
            why_en = f" Reason: {reason}." if reason else ""
            return [
                Message(
                    household(household_id),
                    "order.cancelled",
                    zh_en("订单已取消", "Order cancelled"),
                    zh_en(f"您的订单已取消。{why_zh}", f"Your order was cancelled.{why_en}"),
                    order_id,
                )
            ]
        case d.OfferMade(
            order=ref,
            volunteer_id=vid,
            category=category,
            address=address,
            items=items,
            building=building,
        ):
            zh, en = what(category)
            # From the gate: said so, and 1 takes the building's whole batch.
            gate_zh = f"大门取件，{building} 的包裹一并领取。" if building else ""
            gate_en = f" From the gate: 1 takes all of {building}'s parcels." if building else ""
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.made",
                    zh_en("新任务", "New task offered"),
                    zh_en(
                        f"{zh}送至 {address}：{items}。{gate_zh}",
                        f"{en} to {address}: {items}.{gate_en}",
                    )
                    + f" {VOLUNTEER_DIGITS}",
                    ref.order_id,
                    batch=building,
                )
            ]
        case d.OfferWithdrawn(order=ref, volunteer_id=vid, reason=reason):
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.withdrawn",
                    zh_en("任务已撤回", "Offer withdrawn"),
                    zh_en(
                        f"订单 {ref.order_id} 的任务已撤回（{reason}）。",
                        f"The offer for order {ref.order_id} was withdrawn ({reason}).",
                    ),
                    ref.order_id,
                )
            ]
        case d.TaskReleased(order=ref, volunteer_id=vid, reason=reason, state=state):
            goods = (
                zh_en(
                    "物资在您手中：请交给社区派来的志愿者，或送回社区办公室。",
                    "You have the goods: hand them to the cadre the community sends, or "
                    "bring them back to the community office.",
                )
                if state == "picked_up"
                else ""
            )
            told = [
                Message(
                    f"volunteer:{vid}",
                    "task.released",
                    zh_en("任务已转交", "Task taken from you"),
                    zh_en(
                        f"订单 {ref.order_id} 已不再由您配送（{reason}）。",
                        f"Order {ref.order_id} is no longer yours ({reason}).",
                    )
                    + (f" {goods}" if goods else ""),
                    ref.order_id,
                )
            ]
            if state != "offered":  # the household was told a volunteer was coming
                told.append(
                    Message(
                        household(ref.household_id),
                        "task.released",
                        zh_en("更换志愿者", "Another volunteer"),
                        zh_en(
                            "原志愿者无法为您配送，社区将安排其他志愿者。",
                            "Your volunteer cannot bring your order after all; another "
                            "volunteer will bring it.",
                        ),
                        ref.order_id,
                    )
                )
            return told
        case d.OfferExpired(order=ref, volunteer_id=vid):
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.expired",
                    zh_en("任务已超时", "Offer lapsed"),
                    zh_en(
                        f"订单 {ref.order_id} 已转给其他志愿者。",
                        f"The offer for order {ref.order_id} went to someone else.",
                    ),
                    ref.order_id,
                )
            ]
        case o.OrderStatusChanged(
            order_id=order_id,
            household_id=household_id,
            status=status,
            volunteer_name=name,
        ):
            steps: dict[str, tuple[str, str, str]] = {
                "assigned": (
                    "task.assigned",
                    zh_en("已安排志愿者", "Volunteer assigned"),
                    zh_en(
                        f"{name or '志愿者'}将为您送达。",
                        f"{name or 'A volunteer'} will bring your order.",
                    ),
                ),
                "picked_up": (
                    "task.picked_up",
                    zh_en("配送中", "On the way"),
                    zh_en(
                        f"{name or '志愿者'}已取货，正在送往您家。",
                        f"{name or 'Your volunteer'} has picked up your order and is on the way.",
                    ),
                ),
                "delivered": (
                    "task.delivered",
                    zh_en("已送达", "Delivered"),
                    zh_en("您的订单已送到家门口。", "Your order was delivered to your door.")
                    + f" {HOUSEHOLD_DIGITS}",
                ),
                "failed": (
                    "task.failed",
                    zh_en("未能送达", "Delivery failed"),
                    zh_en(
                        "这次未能送达，社区工作人员会联系您。",
                        "We could not deliver your order; the community will call you.",
                    ),
                ),
            }
            if status not in steps:
                return []
            kind, title, body = steps[status]
            return [Message(household(household_id), kind, title, body, order_id)]
        case d.TaskFailed(order=ref, reason=reason, note=note):
            detail = f"{reason.value}{f': {note}' if note else ''}"
            return [
                Message(
                    staff,
                    "task.failed",
                    zh_en("配送失败", "Delivery failed"),
                    zh_en(
                        f"订单 {ref.order_id} 配送失败（{detail}）：请重新安排或关闭。",
                        f"Order {ref.order_id} failed ({detail}): retry or close.",
                    ),
                    ref.order_id,
                )
            ]
        case d.OrderEscalated(order=ref, grid_worker=worker, reason=reason):
            summary = zh_en(
                f"网格 {ref.grid_id} 的订单 {ref.order_id} 需要志愿者：{reason}。",
                f"Order {ref.order_id} in grid {ref.grid_id} needs a volunteer: {reason}.",
            )
            return [
                Message(
                    f"grid_worker:{community_id}:{ref.grid_id}",
                    "order.escalated",
                    zh_en("请您处理", "Escalated to you"),
                    f"{worker}: {summary}",
                    ref.order_id,
                ),
                Message(
                    staff,
                    "order.escalated",
                    zh_en("订单升级", "Order escalated"),
                    summary,
                    ref.order_id,
                ),
            ]
        case v.VolunteerApproved(volunteer_id=vid, capacity=capacity):
            return [
                Message(
                    f"volunteer:{vid}",
                    "volunteer.approved",
                    zh_en("已通过审核", "Approved"),
                    zh_en(
                        f"您已通过社区审核，可同时承担 {capacity} 个任务；开始值班后即可接单。",
                        f"You are approved for up to {capacity} tasks at a time; check in to "
                        "be offered tasks.",
                    ),
                )
            ]
        case v.ShiftEnded(volunteer_id=vid, reason="expired" | "removed" as reason):
            said = (
                zh_en("值班已结束（到达计划结束时间）。", "Your shift ended at its planned end.")
                if reason == "expired"
                else zh_en(
                    "值班已结束：社区已将您移出。", "Your shift ended: the community removed you."
                )
            )
            return [
                Message(f"volunteer:{vid}", "shift.ended", zh_en("值班已结束", "Shift ended"), said)
            ]
        case c.WalkListTaken(from_volunteer_id=str(before), building=building):
            # Staff gave the list to another cadre: the one who had it must know (what they
            # recorded offline still syncs; they knock on no more of those doors).
            return [
                Message(
                    f"volunteer:{before}",
                    "campaign.list_moved",
                    zh_en("敲门清单已转交", "Walk list given to another"),
                    zh_en(
                        f"{building} 的敲门清单已交给其他志愿者；已记录的会照常上传。",
                        f"The walk list of {building} was given to another cadre; what you "
                        "recorded still goes up.",
                    ),
                )
            ]
        case c.HandedToGridWorker(
            grid_id=grid_id, grid_worker=worker, address=address, household_id=household_id
        ):
            return [
                Message(
                    f"grid_worker:{community_id}:{grid_id}",
                    "campaign.handed_over",
                    zh_en("敲门无人应答", "A door that never answers"),
                    f"{worker}: "
                    + zh_en(
                        f"{address} 在敲门排查中一直无人应答，请设法联系。",
                        f"{address} did not answer the door-knock round; please reach them "
                        f"(household {household_id}).",
                    ),
                )
            ]
    return []
