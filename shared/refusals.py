"""A service's refusal in the words of the person who met it, for the front ends (the
console, the phone app). The services explain a refusal in English (``detail``, for staff,
developers and logs) under a short stable ``title``; the people are Chinese first, so a
front end says the title's meaning in Chinese; where the title is a general one ("Not
found"), what the status means, with the detail beside it."""

from __future__ import annotations

# title → what it means, in Chinese (in English the detail says it)
WORDS: dict[str, str] = {
    "At capacity": "这名干部手上的任务已满。",
    "Cannot cancel": "订单已取货或已结束，不能取消。",
    "Cannot check in": "现在不能开始值班。",
    "Cannot re-open": "只有未送达或已取消的订单能重新打开。",
    "Closed": "这次排查已经结束。",
    "Does not match": "手机尾号和地址对不上，请核对包裹标签。",
    "Grid in use": "还在使用的网格不能删除。",
    "Handed over already": "已经交给网格员了。",
    "Households not reached": "还有住户没联系上：要结束请写明原因。",
    "Idempotency key reused": "这次提交和上次的内容不同。",
    "Intake stopped": "这家供应商已暂停接单。",
    "Invalid CSV": "表格格式不对。",
    "Locked": "取件码输错次数太多，已锁定。",
    "Mistyped card code": "卡号不对（校验位不符），请再核对。",
    "Mistyped code": "包裹编号不对，请再读一次。",
    "Not delivered": "这个订单还没有送达。",
    "Not handed over": "住户已应答，不需要转交。",
    "Not held": "订单不在待审核状态。",
    "Not locked": "这次送达没有被锁定。",
    "Not on duty": "这名干部没在值班：请先开始值班。",
    "Nothing to order": "没有需要向这家供应商订购的订单。",
    "Nothing to visit": "这些网格里没有要敲门的住户。",
    "Order closed": "订单已经结束。",
    "Other grid": "这份名单属于别的网格。",
    "Removed": "这名干部已被移除。",
    "Taken": "这份名单已被别的干部领取。",
    "Doors refused": "有门户记录不对，这一批都没有保存。",
    "Unsupported media type": "文件格式不对。",
}

# Where the title says nothing particular: what the status means.
BY_STATUS: dict[int, str] = {
    403: "您没有权限做这件事。",
    404: "没有找到。",
    409: "情况已有变化（可能已有人处理）。",
    422: "填写的内容不对，请检查。",
    429: "操作太频繁，请稍后再试。",
}


def said(title: str | None, status: int | None, detail: str, lang: str) -> str:
    """What to show. In English, the service's detail. In Chinese, what the title means;
    where it is a general one, what the status means with the detail beside it."""
    if lang != "zh":
        return detail
    if (words := WORDS.get(title or "")) is not None:
        return words
    if (words := BY_STATUS.get(status or 0)) is not None:
        return f"{words}（{detail}）" if detail else words
    return detail
