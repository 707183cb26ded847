// The field app: one page for cadres and residents, Chinese first. Everything is fetched
// from this origin (/session, /api/<service>/v1/...); the tokens are httpOnly cookies.
// What must go on offline — a taken walk list and the door records made on it — lives in
// IndexedDB: records queue in an outbox with ids made here and go up when the network is
// back (on "online", on opening the app, every 30 s, and "Sync now"); the server keeps
// each record id once, so sending one again never makes a second record or order.

const T = {
  zh: {
    title: "社区服务", lang: "EN", big: "大字", small: "标准字", out: "退出",
    phone: "手机号", send_code: "获取验证码", code: "短信验证码", sign_in: "登录",
    code_sent: "验证码已发送，请查看短信。", choose: "您要以哪个身份使用？",
    update: "有新版本。", reload: "更新", offline: "没有网络：记录会保存在手机上，联网后自动上传。",
    order_new: "下单", items: "需要什么（如：大米 5 斤）", place: "提交订单", my_orders: "我的订单",
    code_for_door: "取件码（给志愿者看）", cancel: "取消订单", none: "暂无",
    duty: "值班", on_duty: "值班中 · 网格", off_duty: "未在值班", check_in: "开始值班",
    check_out: "结束值班", grid: "网格", tasks: "我的任务", accept: "接受", decline: "拒绝",
    pick_up: "已取货", deliver: "送达", handoff: "住户取件码", fail: "无法送达",
    from_gate: "大门取件", take_all: "全部领取并取件", parcels_for: "件包裹 · 送往",
    parcel_from: "亲友寄来的包裹", from_name: "寄件人（如：女儿 王丽）", parcel_items: "寄的是什么",
    announce: "登记包裹", parcel_code: "请寄件人把这个编号写在包裹上：", label: "下载标签（PDF）",
    rounds: "敲门排查", take: "领取", doors: "门户", answered: "已应答", no_answer: "无人应答",
    refused: "拒绝开门", needs: "需求", waiting_up: "待上传", sync: "立即同步", synced: "已全部上传",
    sync_refused: "被退回", discard: "删除", inbox: "消息", left: "剩余",
    medicine: "药品", food: "食物", medical_attention: "就医", other: "其他",
    groceries: "生活物资", garbage: "垃圾清运", home_test: "上门检测", visit: "上门探视",
    received: "已收到", held: "待审核", accepted: "已接单", assigned: "已安排志愿者",
    picked_up: "配送中", delivered: "已送达", failed: "未能送达", cancelled: "已取消",
    offered: "待接受", not_yet: "未敲门", reached: "已联系", handed_over: "已交网格员",
    back: "返回", saved: "已保存在手机上", sent: "已上传", problem: "出错了", needs_network: "联网后显示任务。",
    arrived: "收到了", thanks: "谢谢，已确认收到。", call_me: "请社区给我打电话", asked: "社区工作人员会尽快给您打电话。",
    card_code: "联系卡卡号", find: "查找", scan: "扫码", close: "关闭", scan_hint: "把联系卡上的二维码放进画面。",
    scan_photo: "或拍一张二维码的照片", no_camera: "无法打开摄像头：请拍一张二维码的照片，或输入卡号。",
    no_qr: "照片里没有找到二维码，请再拍一次。", not_on_list: "这张卡不在您领取的名单上。", found_door: "找到了：",
    no_decoder: "扫码工具还没下载：联网后再试，或输入卡号。",
    photo_deliver: "拍照送达（垃圾、无智能手机的住户）", uploading: "正在上传照片…", fail_reason: "原因",
    fail_not_home: "家中无人", fail_wrong_address: "地址有误", fail_refused: "住户拒收", fail_other: "其他原因",
    note: "备注（可不填）", fail_report: "报告无法送达",
    // what went wrong: why sign-in said no, else what the answer's status means
    why_code_wrong: "验证码不对，请核对短信后再输入。", why_code_gone: "验证码已失效，请重新获取。",
    why_too_many_codes: "获取验证码太频繁", why_not_registered: "这个号码没有在社区登记，请联系社区工作人员。",
    why_staff: "社区工作人员请使用工作台（电脑）。", why_signed_out: "登录已结束，请重新登录。",
    tries_left: "还可以试", times: "次", minutes_later: "分钟后可再试", sep: "，",
    status_0: "连不上网络，请稍后再试。", status_401: "请重新登录。", status_403: "您不能做这件事。",
    status_404: "没有找到：可能已取消或已转给别人。", status_409: "情况已有变化（可能已有人处理），请看最新状态。",
    status_413: "照片太大，请重拍。", status_415: "文件格式不对。", status_422: "填写的内容不对，请检查。",
    status_423: "取件码输错次数太多，已锁定，请联系网格员。", status_429: "操作太频繁，请稍后再试。",
    status_5xx: "服务暂时忙，请稍后再试。",
  },
  en: {
    title: "Community service", lang: "中文", big: "Large text", small: "Normal text", out: "Sign out",
    phone: "Phone number", send_code: "Text me a code", code: "Code from the SMS", sign_in: "Sign in",
    code_sent: "The code is on its way by SMS.", choose: "Who are you signing in as?",
    update: "A new version is ready.", reload: "Update", offline: "No network: records stay on this phone and go up when it is back.",
    order_new: "Order", items: "What you need (e.g. rice, 2.5 kg)", place: "Place order", my_orders: "My orders",
    code_for_door: "Handoff code (show the volunteer)", cancel: "Cancel order", none: "Nothing yet",
    duty: "Duty", on_duty: "On duty · grid", off_duty: "Off duty", check_in: "Start shift",
    check_out: "End shift", grid: "Grid", tasks: "My tasks", accept: "Accept", decline: "Decline",
    pick_up: "Picked up", deliver: "Delivered", handoff: "Household's code", fail: "Could not deliver",
    from_gate: "From the gate", take_all: "Take all and pick up", parcels_for: "parcels for",
    parcel_from: "A parcel from a relative", from_name: "Who sends it (e.g. daughter Wang Li)", parcel_items: "What it is",
    announce: "Announce it", parcel_code: "Ask them to write this code on the parcel:", label: "Label (PDF)",
    rounds: "Door-knock rounds", take: "Take", doors: "Doors", answered: "Answered", no_answer: "No answer",
    refused: "Refused", needs: "Needs", waiting_up: "Waiting to go up", sync: "Sync now", synced: "All sent",
    sync_refused: "refused", discard: "Discard", inbox: "Messages", left: "left",
    medicine: "Medicine", food: "Food", medical_attention: "Medical care", other: "Other",
    groceries: "Groceries", garbage: "Garbage pickup", home_test: "Home test", visit: "Visit",
    received: "Received", held: "Being checked", accepted: "Taken", assigned: "Volunteer assigned",
    picked_up: "On the way", delivered: "Delivered", failed: "Not delivered", cancelled: "Cancelled",
    offered: "Offered", not_yet: "Not yet", reached: "Reached", handed_over: "With grid worker",
    back: "Back", saved: "Saved on this phone", sent: "sent", problem: "Something went wrong", needs_network: "Tasks show when the network is back.",
    arrived: "It arrived", thanks: "Thank you: confirmed.", call_me: "Please call me", asked: "Community staff will call you soon.",
    card_code: "Contact card code", find: "Find", scan: "Scan card", close: "Close", scan_hint: "Hold the card's QR code in view.",
    scan_photo: "Or take a photo of the QR code", no_camera: "The camera cannot be opened: take a photo of the QR code, or type the card code.",
    no_qr: "No QR code found in the photo: take it again.", not_on_list: "This card is not on a list you took.", found_door: "Found: ",
    no_decoder: "The scanner is not downloaded yet: try again online, or type the card code.",
    photo_deliver: "Deliver with a photo (garbage; a household without a smartphone)", uploading: "Uploading the photo…", fail_reason: "Reason",
    fail_not_home: "Nobody home", fail_wrong_address: "Wrong address", fail_refused: "Refused", fail_other: "Another reason",
    note: "Note (optional)", fail_report: "Report: not delivered",
    why_code_wrong: "Wrong code: check the SMS and type it again.", why_code_gone: "The code no longer works: ask for a new one.",
    why_too_many_codes: "Too many codes asked", why_not_registered: "This number is not registered with the community: ask the community staff.",
    why_staff: "Community staff: please use the console.", why_signed_out: "The session has ended: sign in again.",
    tries_left: "tries left:", times: "", minutes_later: "min until you may ask again", sep: ", ",
    status_0: "No network: try again in a moment.", status_401: "Sign in again.", status_403: "You may not do that.",
    status_404: "Not found: it may have been cancelled or given to someone else.", status_409: "Things have changed (someone may have acted): see how it is now.",
    status_413: "The photo is too large: take it again.", status_415: "Not a file type we take.", status_422: "Something filled in is not right: check it.",
    status_423: "Too many wrong codes: locked. Call the grid worker.", status_429: "Too often: try again in a moment.",
    status_5xx: "The service is busy: try again in a moment.",
  },
};
// Chinese unless the browser asks for English (or the person chose).
let lang = localStorage.getItem("lang") || ((navigator.language || "zh").toLowerCase().startsWith("en") ? "en" : "zh");
const t = (key) => T[lang][key] ?? key;
const $ = (sel) => document.querySelector(sel);
const main = $("#main");
let who = null;
let timer = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return el;
}

// The server's time, not the phone's: a phone that lost its date (a flat battery) asked for
// a shift that had ended and counted an offer's seconds wrong. The last answer's Date header
// says how far off the phone is; kept for doors recorded offline.
let skew = Number(localStorage.getItem("skew")) || 0;
const now = () => Date.now() + skew;

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { "X-Doorstep-App": "1", "Accept-Language": lang, ...headers } };
  if (body instanceof Blob) { init.body = body; init.headers["Content-Type"] = body.type; }
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(path, init);
  // The header counts whole seconds: a phone within two seconds of it is taken as right
  // (else every correction would set it up to a second back, before what it follows).
  const served = Date.parse(res.headers.get("date") || "") + 500;
  if (!Number.isNaN(served)) {
    skew = Math.abs(served - Date.now()) < 2000 ? 0 : served - Date.now();
    localStorage.setItem("skew", String(skew));
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : {};
  if (res.status === 401 && !path.startsWith("/session")) { who = null; render(); }
  if (!res.ok) throw Object.assign(new Error(data.detail || data.title || res.status), { status: res.status, data });
  return data;
}

// An id made on the phone: crypto.randomUUID where there is one; a secure context and a
// recent browser have it, WeChat's older webview and a LAN page over plain HTTP do not.
function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80; // version 4, RFC 4122 variant
  const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// What went wrong, in the person's words: why sign-in said no, else what the refusal means
// (words_zh, added by this app's server), else what its status means (none: the network).
// The service's own detail is English, for staff: shown in English.
function problem(err) {
  const d = err.data || {};
  const status = err.status ?? 0;
  let said = T[lang][`why_${d.reason}`] || (lang === "zh" && d.words_zh)
    || T[lang][`status_${status >= 500 ? "5xx" : status}`] || t("problem");
  if (d.tries_left) said += ` ${t("tries_left")} ${d.tries_left} ${t("times")}`;
  if (d.retry_after) said += `${t("sep")}${Math.ceil(d.retry_after / 60)} ${t("minutes_later")}`;
  if (lang === "en" && err.message && status) said += ` (${err.message})`;
  return h("p", { class: "problem", role: "alert" }, said);
}

// --- IndexedDB: walk lists and the outbox ---------------------------------------------------

const DB = new Promise((resolve, reject) => {
  const req = indexedDB.open("doorstep-field", 1);
  req.onupgradeneeded = () => {
    req.result.createObjectStore("lists", { keyPath: "list_id" });
    req.result.createObjectStore("outbox", { keyPath: "record_id" });
  };
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});
async function store(name, mode, fn) {
  const db = await DB;
  return new Promise((resolve, reject) => {
    const tx = db.transaction(name, mode);
    const result = fn(tx.objectStore(name));
    tx.oncomplete = () => resolve(result?.result ?? result);
    tx.onerror = () => reject(tx.error);
  });
}
const all = (name) => store(name, "readonly", (s) => s.getAll());
const put = (name, value) => store(name, "readwrite", (s) => s.put(value));
const remove = (name, key) => store(name, "readwrite", (s) => s.delete(key));

// --- sync: the outbox goes up, each record once -------------------------------------------

// One batch up: "sent", "later" (no network, the server away, signed out) or the refusal.
async function send(campaign, chunk) {
  try {
    await api(`/api/orders/v1/campaigns/${campaign}/visits`, { method: "POST", body: { doors: chunk.map((r) => r.door) } });
  } catch (err) {
    return !err.status || err.status >= 500 || err.status === 401 || err.status === 429 ? "later" : err;
  }
  for (const r of chunk) {
    await remove("outbox", r.record_id);
    const shown = document.querySelector(`.door[data-household="${r.door.household_id}"] .state`);
    if (shown) shown.textContent = `${t(r.door.outcome)} · ${t("sent")}`;
  }
  return "sent";
}

let syncing = null;
function sync() {
  syncing ??= (async () => {
    try {
      const waiting = (await all("outbox")).filter((r) => r.state === "waiting");
      const byRound = Map.groupBy ? Map.groupBy(waiting, (r) => r.campaign_id)
        : waiting.reduce((m, r) => m.set(r.campaign_id, [...(m.get(r.campaign_id) || []), r]), new Map());
      for (const [campaign, records] of byRound) {
        for (let i = 0; i < records.length; i += 100) {
          const chunk = records.slice(i, i + 100);
          const said = await send(campaign, chunk);
          if (said === "later") return;
          if (said === "sent") continue;
          // The server takes a batch whole or not at all: one refused door (knocked after
          // the round closed) took the others down with it. Each alone, then: only the
          // refused are marked so.
          for (const r of chunk) {
            const alone = chunk.length > 1 ? await send(campaign, [r]) : said;
            if (alone === "later") return;
            if (alone !== "sent") await put("outbox", { ...r, state: "refused", detail: alone.message });
          }
        }
      }
    } catch (offline) { /* no network: the records wait */ }
    finally { syncing = null; showOutbox(); }
  })();
  return syncing;
}
addEventListener("online", () => { $("#offline").hidden = true; sync(); });
addEventListener("offline", () => { $("#offline").hidden = false; });
setInterval(() => navigator.onLine && sync(), 30000);

async function showOutbox() {
  const box = $("#outbox");
  if (!box) return;
  const records = await all("outbox");
  const waiting = records.filter((r) => r.state === "waiting").length;
  const refused = records.filter((r) => r.state === "refused");
  box.replaceChildren(
    h("div", { class: "row" },
      h("span", { id: "waiting", "data-count": waiting }, waiting ? `${t("waiting_up")}: ${waiting}` : t("synced")),
      h("button", { type: "button", class: "secondary", onclick: () => sync() }, t("sync"))),
    ...refused.map((r) => h("div", { class: "problem" }, `${r.address || r.door.household_id} — ${t("sync_refused")}: ${r.detail} `,
      h("button", { type: "button", class: "link", onclick: async () => { await remove("outbox", r.record_id); showOutbox(); } }, t("discard")))),
  );
}

// --- sign-in --------------------------------------------------------------------------------

function signIn() {
  const phone = h("input", { id: "phone", type: "tel", inputmode: "tel", autocomplete: "tel", required: true });
  const code = h("input", { id: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: 6 });
  const said = h("div");
  const step2 = h("form", { hidden: true, onsubmit: async (e) => {
    e.preventDefault();
    try { done(await api("/session/verify", { method: "POST", body: { phone: phone.value, code: code.value } })); }
    catch (err) { said.replaceChildren(problem(err)); }
  } }, h("label", { for: "code" }, t("code")), code, h("p"), h("button", { id: "verify" }, t("sign_in")));
  const done = (answer) => {
    if (answer.who) { who = answer.who; localStorage.setItem("who", JSON.stringify(who)); return render(); }
    said.replaceChildren(h("p", {}, t("choose")), ...answer.choose.map((x) => h("button", {
      type: "button", class: "secondary", onclick: async () => done(await api("/session/choose", { method: "POST", body: { identity_id: x.identity_id } })),
    }, x.name || x.role)));
  };
  main.replaceChildren(h("div", { class: "card" },
    h("form", { onsubmit: async (e) => {
      e.preventDefault();
      try { await api("/session/code", { method: "POST", body: { phone: phone.value } }); said.replaceChildren(h("p", {}, t("code_sent"))); step2.hidden = false; code.focus(); }
      catch (err) { said.replaceChildren(problem(err)); }
    } }, h("label", { for: "phone" }, t("phone")), phone, h("p"), h("button", { id: "send" }, t("send_code"))),
    step2, said));
}

// --- the resident ---------------------------------------------------------------------------

const CATEGORIES = ["groceries", "medicine", "garbage", "home_test", "visit", "other"];
const OPEN = ["received", "held", "accepted", "assigned"];

async function resident() {
  let chosen = "groceries";
  const items = h("textarea", { id: "items", rows: 2, maxlength: 500 });
  const said = h("div");
  const tiles = h("div", { class: "tiles" }, CATEGORIES.map((c) => h("button", {
    type: "button", "data-category": c, "aria-pressed": String(c === chosen),
    onclick: (e) => { chosen = c; tiles.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === e.currentTarget))); },
  }, t(c))));
  const orders = h("div", { id: "orders" });
  const inbox = h("div", { id: "inbox" });
  const asked = h("p", { class: "muted", role: "status" });
  // One key per order: a second tap, or a retry after an answer the network lost, is the
  // same order (the server answers it again); a new key once it is placed.
  let key = newId();
  main.replaceChildren(
    h("div", { class: "row" }, h("button", { type: "button", class: "secondary", id: "call-me", onclick: async () => {
      try { await api("/api/notify/v1/call-me", { method: "POST", body: {} }); asked.textContent = t("asked"); }
      catch (err) { asked.replaceChildren(problem(err)); }
    } }, t("call_me"))), asked,
    h("h2", {}, t("order_new")),
    h("form", { class: "card", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const placed = await api("/api/orders/v1/orders", { method: "POST", headers: { "Idempotency-Key": key },
          body: { category: chosen, items: items.value || t(chosen) } });
        key = newId(); items.value = ""; said.replaceChildren();
        await showOrders(orders, placed); // what they just did is what they see
      } catch (err) { said.replaceChildren(problem(err)); }
    } }, tiles, h("label", { for: "items" }, t("items")), items, h("p"), h("button", { id: "place" }, t("place")), said),
    h("h2", {}, t("my_orders")), orders, h("h2", {}, t("parcel_from")), parcelForm(orders),
    h("h2", {}, t("inbox")), inbox);
  await Promise.allSettled([showOrders(orders), showInbox(inbox)]);
  listen(() => { showOrders(orders); showInbox(inbox); });
  // The stream carries the news; a slow look now and then covers a stream that broke.
  timer = setInterval(() => document.visibilityState === "visible" && (showOrders(orders), showInbox(inbox)), 30000);
}

// A relative outside sends something: announced here, its code to write on the parcel (or
// the label to print) — expected at the gate. One key per parcel: a retry is the same one.
function parcelForm(orders) {
  const from = h("input", { id: "from-name", maxlength: 100 });
  const what = h("input", { id: "parcel-items", maxlength: 300 });
  const said = h("div", { id: "parcel" });
  let key = newId();
  return h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const parcel = await api("/api/orders/v1/parcels", { method: "POST", headers: { "Idempotency-Key": key },
        body: { from_name: from.value, items: what.value || t("parcel_from") } });
      key = newId(); from.value = ""; what.value = "";
      said.replaceChildren(h("p", {}, t("parcel_code")), h("div", { class: "code long", id: "parcel-code" }, parcel.code),
        h("a", { href: `/api/orders/v1/parcels/${parcel.code}/label.pdf`, target: "_blank", rel: "noopener" }, t("label")));
      await showOrders(orders);
    } catch (err) { said.replaceChildren(problem(err)); }
  } }, h("label", { for: "from-name" }, t("from_name")), from, h("label", { for: "parcel-items" }, t("parcel_items")), what,
    h("p"), h("button", { id: "announce" }, t("announce")), said);
}

async function showInbox(box) {
  const items = (await api("/api/notify/v1/inbox?limit=5")).items;
  box.replaceChildren(...(items.length ? items : [null]).map((n) => n === null ? h("p", { class: "muted" }, t("none")) :
    h("div", { class: "card message", "data-kind": n.kind }, h("strong", {}, n.title), h("div", {}, n.body))));
}

async function showOrders(box, fresh) {
  let list = (await api("/api/orders/v1/orders")).orders;
  if (fresh && !list.some((o) => o.order_id === fresh.order_id)) list = [fresh, ...list];
  box.replaceChildren(...(list.length ? list : [null]).map((o) => o === null ? h("p", { class: "muted" }, t("none")) :
    h("div", { class: "card order", "data-order": o.order_id, "data-status": o.status },
      h("div", { class: "row" }, h("strong", {}, t(o.category)), h("span", { class: "status" }, t(o.status))),
      h("div", {}, o.items),
      OPEN.includes(o.status) || o.status === "picked_up" ? [h("div", { class: "muted" }, t("code_for_door")), h("div", { class: "code" }, o.handoff_code)] : [],
      OPEN.includes(o.status) ? h("button", { type: "button", class: "secondary", onclick: async () => {
        try { await api(`/api/orders/v1/orders/${o.order_id}/cancel`, { method: "POST", body: {} }); await showOrders(box); }
        catch (err) { box.prepend(problem(err)); }
      } }, t("cancel")) : [],
      o.status === "delivered" ? h("button", { type: "button", class: "arrived", onclick: async (e) => {
        try { await api(`/api/notify/v1/orders/${o.order_id}/arrived`, { method: "POST", body: {} }); e.target.replaceWith(h("p", { class: "thanks" }, t("thanks"))); }
        catch (err) { box.prepend(problem(err)); }
      } }, t("arrived")) : [])));
}

// --- the cadre ------------------------------------------------------------------------------

async function cadre() {
  const duty = h("div", { class: "card", id: "duty" });
  const tasks = h("div", { id: "tasks" });
  const rounds = h("div", { id: "rounds" });
  main.replaceChildren(h("h2", {}, t("duty")), duty, h("h2", {}, t("tasks")), tasks,
    h("h2", {}, t("rounds")), rounds, h("div", { class: "outbox", id: "outbox" }));
  showOutbox();
  sync();
  await Promise.allSettled([showDuty(duty), showTasks(tasks), showRounds(rounds)]);
  listen(() => showTasks(tasks));
  timer = setInterval(() => document.visibilityState === "visible" && navigator.onLine && showTasks(tasks), 15000);
}

async function showDuty(box) {
  let me;
  try { me = await api(`/api/volunteers/v1/volunteers/${who.volunteer_id}`); }
  catch (err) { box.replaceChildren(err.status ? problem(err) : t("offline")); return; }
  const grid = h("input", { id: "grid", value: me.shift?.grid_id || me.home_grid_id || "", maxlength: 64 });
  const act = async (path, body) => {
    try { await api(`/api/volunteers/v1/volunteers/${who.volunteer_id}/${path}`, { method: "POST", body }); await showDuty(box); }
    catch (err) { box.append(problem(err)); }
  };
  box.replaceChildren(me.on_duty
    ? h("div", { class: "row" }, h("span", { id: "on-duty" }, `${t("on_duty")} ${me.shift?.grid_id ?? ""}`),
        h("button", { type: "button", class: "secondary", id: "check-out", onclick: () => act("check-out") }, t("check_out")))
    : h("div", {}, h("span", {}, t("off_duty")), h("label", { for: "grid" }, t("grid")), grid, h("p"),
        h("button", { type: "button", id: "check-in", onclick: () => act("check-in", {
          grid_id: grid.value, until: new Date(now() + 8 * 3600e3).toISOString() }) }, t("check_in"))));
}

async function showTasks(box) {
  let list;
  try { list = (await api("/api/dispatch/v1/tasks")).tasks; }
  catch (err) { box.replaceChildren(h("p", { class: "muted" }, err.status ? problem(err) : t("needs_network"))); return; }
  const act = async (order, path, body) => {
    try { await api(`/api/dispatch/v1/tasks/${order}/${path}`, { method: "POST", body }); await showTasks(box); }
    catch (err) { box.prepend(problem(err)); }
  };
  // A building's parcels at the gate are one batch: taken (accepted and picked up) at once.
  const batches = {};
  for (const task of list) {
    if (task.from_gate && task.building && ["offered", "assigned"].includes(task.state)) {
      (batches[task.building] ??= []).push(task.order_id);
    }
  }
  const take = async (orderIds) => {
    try {
      await api("/api/dispatch/v1/tasks/take", { method: "POST", body: { order_ids: orderIds, pick_up: true } });
      await showTasks(box);
    } catch (err) { box.prepend(problem(err)); }
  };
  const batchCards = Object.entries(batches).filter(([, ids]) => ids.length > 1).map(([building, ids]) =>
    h("div", { class: "card batch", "data-building": building },
      h("div", {}, h("strong", {}, `${ids.length} ${t("parcels_for")} ${building}`)),
      h("button", { type: "button", class: "take-all", onclick: () => take(ids) }, t("take_all"))));
  box.replaceChildren(...batchCards, ...(list.length ? list : [null]).map((task) => {
    if (task === null) return h("p", { class: "muted" }, t("none"));
    const code = h("input", { inputmode: "numeric", pattern: "[0-9]{4}", maxlength: 4, "aria-label": t("handoff"), placeholder: t("handoff") });
    const left = task.offer_expires_at ? Math.max(0, Math.round((new Date(task.offer_expires_at) - now()) / 1000)) : null;
    return h("div", { class: "card task", "data-order": task.order_id, "data-state": task.state },
      h("div", { class: "row" }, h("strong", {}, t(task.category)), h("span", { class: "status" }, t(task.state)),
        left !== null && task.state === "offered" ? h("span", { class: "muted" }, `${left}s ${t("left")}`) : []),
      h("div", {}, task.address), h("div", { class: "muted" }, task.items),
      task.from_gate ? h("div", { class: "muted" }, `${t("from_gate")} · ${task.building ?? ""}`) : [],
      task.state === "offered" ? h("div", { class: "row" },
        h("button", { type: "button", class: "accept", onclick: () => act(task.order_id, "accept") }, t("accept")),
        h("button", { type: "button", class: "secondary", onclick: () => act(task.order_id, "decline") }, t("decline"))) : [],
      task.state === "assigned" ? h("button", { type: "button", class: "pick-up", onclick: () => act(task.order_id, "pick-up") }, t("pick_up")) : [],
      ["assigned", "picked_up"].includes(task.state) ? [
        h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); act(task.order_id, "deliver", { handoff_code: code.value }); } },
          code, h("button", { class: "deliver" }, t("deliver"))),
        task.photo_proof ? photoProof(task, act) : [],
        failure(task, act)] : []);
  }));
}

// Where the rules take a photo as proof (garbage set out, a household without a
// smartphone): the phone shrinks it (≤ 1280 px, JPEG), uploads it under an id made here,
// then delivers citing it.
function photoProof(task, act) {
  const said = h("span", { class: "muted", role: "status" });
  const input = h("input", { type: "file", accept: "image/*", capture: "environment", class: "photo", "aria-label": t("photo_deliver") });
  input.onchange = async () => {
    if (!input.files[0]) return;
    said.textContent = t("uploading");
    try {
      const photo = await shrink(input.files[0]);
      const id = newId();
      await api(`/api/dispatch/v1/photos/${id}?order_id=${encodeURIComponent(task.order_id)}`, { method: "PUT", body: photo });
      await act(task.order_id, "deliver", { photo_id: id });
    } catch (err) { said.replaceChildren(problem(err)); }
  };
  return h("label", { class: "card photo-proof" }, t("photo_deliver"), input, said);
}

async function shrink(file) {
  const bitmap = await createImageBitmap(file); // turned upright as the camera held it
  const scale = Math.min(1, 1280 / Math.max(bitmap.width, bitmap.height));
  const canvas = h("canvas", { width: Math.round(bitmap.width * scale), height: Math.round(bitmap.height * scale) });
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.7));
}

const FAILURES = ["not_home", "wrong_address", "refused", "other"];
function failure(task, act) {
  const reason = h("select", { class: "reason", "aria-label": t("fail_reason") }, FAILURES.map((r) => h("option", { value: r }, t(`fail_${r}`))));
  const note = h("input", { class: "note", maxlength: 300, placeholder: t("note"), "aria-label": t("note") });
  return h("details", { class: "fail" }, h("summary", {}, t("fail")),
    h("form", { onsubmit: (e) => { e.preventDefault(); act(task.order_id, "fail", { reason: reason.value, note: note.value || null }); } },
      reason, note, h("button", { class: "secondary report" }, t("fail_report"))));
}

async function showRounds(box) {
  const kept = await all("lists");
  let open = [];
  try { open = (await api("/api/orders/v1/campaigns")).campaigns; } catch (offline) { /* the kept lists */ }
  const lists = [];
  for (const round of open) {
    try {
      const found = (await api(`/api/orders/v1/campaigns/${round.campaign_id}/walk-lists`)).walk_lists;
      for (const walk of found) lists.push({ ...walk, campaign_id: round.campaign_id, title: round.title });
    } catch (err) { /* offline: kept lists below */ }
  }
  for (const walk of lists.filter((w) => w.volunteer_id === who.volunteer_id)) await put("lists", walk);
  const mine = lists.length ? lists : kept;
  box.replaceChildren(...(mine.length ? mine : [null]).map((walk) => walk === null ? h("p", { class: "muted" }, t("none")) :
    h("div", { class: "card walk", "data-list": walk.list_id },
      h("div", { class: "row" }, h("strong", {}, `${walk.title || ""} · ${walk.compound} ${walk.building}`),
        h("span", { class: "muted" }, `${walk.doors.length} ${t("doors")}`)),
      walk.volunteer_id === who.volunteer_id
        ? h("button", { type: "button", class: "open", onclick: () => doors(walk.list_id) }, t("doors"))
        : h("button", { type: "button", class: "take", onclick: async () => {
          try { await api(`/api/orders/v1/campaigns/${walk.campaign_id}/walk-lists/${walk.list_id}/take`, { method: "POST", body: {} }); await showRounds(box); }
          catch (err) { box.prepend(problem(err)); }
        } }, t("take")))));
}

const NEEDS = ["medicine", "food", "medical_attention", "other"];

async function doors(listId, cardCode) {
  clearInterval(timer);
  live?.close();
  loadDecoder().catch(() => {}); // fetched now, while online, so scanning works in the stairwell
  const walk = (await all("lists")).find((w) => w.list_id === listId);
  const queued = await all("outbox");
  const recorded = new Map(queued.map((r) => [r.door.household_id, r]));
  const codeInput = h("input", { id: "card-code", autocomplete: "off", autocapitalize: "characters", maxlength: "40" });
  const said = h("p", { class: "muted", id: "found", role: "status" });
  const goTo = async (text) => {
    const code = cardCodeOf(text);
    const door = walk.doors.find((d) => d.card_code && d.card_code === code);
    if (door) return showDoor(door, said);
    const other = (await all("lists")).find((w) => w.doors.some((d) => d.card_code === code));
    if (other) return doors(other.list_id, code);
    said.textContent = `${t("not_on_list")} (${code})`;
  };
  main.replaceChildren(
    h("button", { type: "button", class: "link", onclick: () => render() }, t("back")),
    h("h2", {}, `${walk.compound} ${walk.building}`),
    h("form", { class: "card find", onsubmit: (e) => { e.preventDefault(); goTo(codeInput.value); } },
      h("label", {}, t("card_code"), codeInput),
      h("div", { class: "row" },
        h("button", { type: "submit", class: "secondary", id: "find-card" }, t("find")),
        h("button", { type: "button", id: "scan", onclick: () => scan(goTo, said) }, t("scan"))),
      said),
    ...walk.doors.map((door) => {
      const needs = NEEDS.map((n) => h("label", { class: "row" }, h("input", { type: "checkbox", value: n, style: "width:auto" }), t(n)));
      const state = h("span", { class: "state muted" }, recorded.has(door.household_id) ? t("saved") : t(door.state));
      const record = async (outcome) => {
        const chosen = needs.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
        const record_id = newId();
        await put("outbox", {
          record_id, campaign_id: walk.campaign_id, address: door.address, state: "waiting",
          door: { record_id, household_id: door.household_id, outcome, needs: outcome === "answered" ? chosen : [], visited_at: new Date(now()).toISOString() },
        });
        state.textContent = `${t(outcome)} · ${t("saved")}`;
        showOutbox();
        if (navigator.onLine) sync();
      };
      return h("div", { class: "card door", "data-household": door.household_id, "data-card": door.card_code || "" },
        h("strong", {}, door.address || door.household_id), state,
        h("div", { class: "row" },
          h("button", { type: "button", class: "answered", onclick: () => record("answered") }, t("answered")),
          h("button", { type: "button", class: "secondary no-answer", onclick: () => record("no_answer") }, t("no_answer")),
          h("button", { type: "button", class: "secondary refused", onclick: () => record("refused") }, t("refused"))),
        h("details", {}, h("summary", {}, t("needs")), needs));
    }),
    h("div", { class: "outbox", id: "outbox" }));
  showOutbox();
  if (cardCode) goTo(cardCode);
}

function showDoor(door, said) {
  for (const el of document.querySelectorAll(".door.found")) el.classList.remove("found");
  const el = document.querySelector(`.door[data-household="${door.household_id}"]`);
  el.classList.add("found");
  el.querySelector("details").open = true;
  el.scrollIntoView({ block: "center" });
  said.textContent = t("found_door") + (door.address || door.household_id);
}

// A scanned card gives its URL (…/card/CODE), a typed one the code, perhaps in full-width
// letters or with spaces: both come down to the code as printed.
function cardCodeOf(text) {
  const last = text.normalize("NFKC").trim().split("/").filter(Boolean).pop() || "";
  return last.toUpperCase().replace(/[^A-Z0-9]/g, "");
}

// --- scanning a contact card's QR code ------------------------------------------------------
// zxing-wasm (ZXing-C++ compiled to WebAssembly, served from here): it needs no Google
// services, unlike the browser's BarcodeDetector on Android. The live camera where the
// browser gives one (HTTPS or localhost); a photo of the code where it does not.

const ZXING = "/static/vendor/zxing-wasm-3.1.8/";
const QR_ONLY = { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 };
let decoder = null;
function loadDecoder() {
  decoder ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = `${ZXING}reader.js`;
    script.onload = async () => {
      try {
        // Never the library's default CDN: the wasm comes from this origin (and the cache).
        await globalThis.ZXingWASM.prepareZXingModule({ overrides: { locateFile: (file) => ZXING + file }, fireImmediately: true });
        resolve(globalThis.ZXingWASM);
      } catch (err) { decoder = null; script.remove(); reject(err); }
    };
    script.onerror = () => { decoder = null; script.remove(); reject(new Error(t("no_decoder"))); };
    document.head.append(script);
  });
  return decoder;
}

async function scan(onText, said) {
  let zx;
  try { zx = await loadDecoder(); } catch (err) { said.textContent = t("no_decoder"); return; }
  const video = h("video", { playsinline: true, muted: true, autoplay: true });
  const note = h("p", {}, t("scan_hint"));
  const photo = h("input", { type: "file", accept: "image/*", capture: "environment", id: "scan-photo" });
  const sheet = h("div", { class: "scanner", id: "scanner", role: "dialog", "aria-label": t("scan") },
    video, note, h("label", {}, t("scan_photo"), photo),
    h("button", { type: "button", class: "secondary", onclick: () => stop() }, t("close")));
  document.body.append(sheet);
  let stream = null;
  let stopped = false;
  const stop = () => { stopped = true; stream?.getTracks().forEach((track) => track.stop()); sheet.remove(); };
  const read = (results) => {
    const hit = results.find((r) => r.isValid && r.text);
    if (hit) { stop(); onText(hit.text); }
    return Boolean(hit);
  };
  photo.onchange = async () => {
    if (photo.files[0] && !read(await zx.readBarcodes(photo.files[0], QR_ONLY))) note.textContent = t("no_qr");
  };
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  } catch (noCamera) { video.hidden = true; note.textContent = t("no_camera"); return; }
  if (stopped) return stream.getTracks().forEach((track) => track.stop());
  video.srcObject = stream;
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  while (!stopped) {
    if (video.videoWidth) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      ctx.drawImage(video, 0, 0);
      if (read(await zx.readBarcodes(ctx.getImageData(0, 0, canvas.width, canvas.height), QR_ONLY))) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// --- live: the inbox's stream while the app is open ---------------------------------------

let live = null;
function listen(onNews) {
  // EventSource reconnects by itself (with Last-Event-ID); SMS reaches the phone when the
  // app is closed. Each notification about an order refreshes what is shown.
  live?.close();
  live = new EventSource("/api/notify/v1/inbox/stream");
  live.onmessage = live.onerror = null;
  for (const kind of ["order.accepted", "order.held", "order.cancelled", "order.reopened",
    "task.assigned", "task.picked_up", "task.delivered", "task.failed", "task.released",
    "offer.made", "offer.withdrawn", "offer.expired", "campaign.list_moved"]) {
    live.addEventListener(kind, () => onNews());
  }
}

// --- the page -------------------------------------------------------------------------------

async function render() {
  clearInterval(timer);
  live?.close();
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("#title").textContent = `Doorstep · ${t("title")}`;
  $("#lang").textContent = t("lang");
  $("#big").textContent = document.documentElement.classList.contains("big") ? t("small") : t("big");
  $("#out").textContent = t("out");
  $("#out").hidden = !who;
  $("#offline").textContent = t("offline");
  $("#offline").hidden = navigator.onLine;
  if (!who) return signIn();
  try { await (who.role === "volunteer" ? cadre() : resident()); }
  catch (err) { main.append(problem(err)); }
}

$("#lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); render(); };
$("#big").onclick = () => { document.documentElement.classList.toggle("big"); localStorage.setItem("big", document.documentElement.classList.contains("big") ? "1" : ""); render(); };
$("#out").onclick = async () => {
  await api("/session/sign-out", { method: "POST", body: {} }).catch(() => {});
  who = null; localStorage.removeItem("who"); render();
};
if (localStorage.getItem("big")) document.documentElement.classList.add("big");

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").then((reg) => {
    const offer = (worker) => {
      $("#update").hidden = false;
      $("#update [data-t]").textContent = t("update");
      $("#reload").textContent = t("reload");
      $("#reload").onclick = () => worker.postMessage("take-over");
    };
    if (reg.waiting && navigator.serviceWorker.controller) offer(reg.waiting);
    reg.addEventListener("updatefound", () => {
      const worker = reg.installing;
      worker?.addEventListener("statechange", () => worker.state === "installed" && navigator.serviceWorker.controller && offer(worker));
    });
  });
  // A new version took over (the person said "update"): reload into it. Not on the first
  // install, when the worker only starts controlling the page it was installed from.
  const updating = Boolean(navigator.serviceWorker.controller);
  let reloaded = false;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (updating && !reloaded) { reloaded = true; location.reload(); }
  });
}
navigator.storage?.persist?.(); // ask the browser to keep the door records

(async () => {
  try { who = (await api("/session")).who; localStorage.setItem("who", JSON.stringify(who)); }
  catch (err) {
    // Offline, the person last signed in on this phone goes on with what is kept here.
    who = !err.status && localStorage.getItem("who") ? JSON.parse(localStorage.getItem("who")) : null;
  }
  render();
})();
