/* Capacity board: plain JavaScript, no build step, no dependencies.
 *
 * Everything goes through capsvc's admin HTTP API with the planner's bearer token, which is
 * kept in sessionStorage (this tab only) and never written into the page:
 *   GET  /v1/admin/board                      the grid's numbers, polled every 2 s (ETag/304)
 *   PATCH /v1/admin/pools/{id}/slots/{slot}   capacity, open/close
 *   PATCH /v1/admin/pools/{id}                total capacity
 *   POST /v1/admin/pools/{id}/slots           add a slot
 *   PUT  /v1/admin/pools/{id}                 new pool
 *   GET  /v1/admin/pools/{id}?as_of=          the pool as of a moment
 *   GET  /v1/admin/pools/{id}/timeline        its history
 *   POST /v1/admin/plans[?dry_run=true]       bulk plans and "copy a day"
 *   GET  /v1/admin/plans/export               the CSV export
 * All text from the server is inserted as text (never as HTML).
 */
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "capsvc.admin-token";
const DAY_MS = 86400000;

const S = {
  token: null,
  me: null, // this token's actor fingerprint, as the audit log shows it
  region: "",
  from: "",
  to: "",
  kind: "",
  board: null,
  etag: null,
  etagQuery: null,
  fresh: new Map(), // pool id -> view from our own write, newer than the read model's
  selected: null, // {poolId, slotId}
  timer: null,
  polling: false,
  lastOk: 0,
  historyPool: null,
  timelineBefore: null,
  plan: null, // {text, name}
  flash: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/* ---------------------------------------------------------------- dates and times */
function pad(n, width = 2) { return String(n).padStart(width, "0"); }
function localDate(d = new Date()) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
function addDays(date, days) {
  const t = Date.parse(`${date}T00:00:00Z`) + days * DAY_MS;
  return new Date(t).toISOString().slice(0, 10);
}
function daysBetween(a, b) {
  return Math.round((Date.parse(`${b}T00:00:00Z`) - Date.parse(`${a}T00:00:00Z`)) / DAY_MS);
}
function dayLabel(date) {
  return new Date(`${date}T00:00:00Z`).toLocaleDateString(undefined, {
    weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC",
  });
}
function clock(stamp) { return stamp.slice(11, 16); } // local time of the region, as written
function offsetOf(stamp) {
  const m = /([+-]\d\d:\d\d|[Zz])$/.exec(stamp);
  return m ? m[1].toUpperCase() : "Z";
}
function browserOffset() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}
function whenLabel(ms) {
  return new Date(ms).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function shiftStamp(stamp, days) { return addDays(stamp.slice(0, 10), days) + stamp.slice(10); }

/* ---------------------------------------------------------------- the API */
class SignedOut extends Error {}

async function api(method, path, { json, raw, contentType, headers } = {}) {
  const h = { Authorization: `Bearer ${S.token}`, ...(headers || {}) };
  let body;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (raw !== undefined) {
    h["Content-Type"] = contentType || "text/plain";
    body = raw;
  }
  const response = await fetch(path, { method, headers: h, body, cache: "no-store" });
  if (response.status === 401) {
    signOut("The service refused the token (it may have changed). Sign in again.");
    throw new SignedOut();
  }
  const text = await response.text();
  let data = text;
  if ((response.headers.get("Content-Type") || "").includes("json") && text) {
    try { data = JSON.parse(text); } catch (e) { data = text; }
  }
  return { status: response.status, ok: response.ok, data, headers: response.headers };
}

function problemText(res) {
  const p = res.data || {};
  if (typeof p !== "object") return `HTTP ${res.status}`;
  return `${p.title || "Refused"}: ${p.detail || ""}`;
}

/* Show the server's answer in a box: ✓ with a summary, or ✗ with the code and detail. */
function showAnswer(box, res, okText) {
  box.hidden = false;
  box.replaceChildren();
  if (res.ok) {
    box.className = "answer ok";
    box.append(okText, el("span", { class: "muted small" }, ` (HTTP ${res.status})`));
  } else {
    box.className = "answer refused";
    const p = typeof res.data === "object" && res.data ? res.data : {};
    box.append(
      `Refused: ${p.detail || p.title || "the service said no"} `,
      el("span", { class: "code" }, `[${p.code || "error"} · HTTP ${res.status}]`),
    );
  }
}

/* ---------------------------------------------------------------- sign in and out */
async function fingerprint(token) {
  if (!window.crypto || !crypto.subtle) return null;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  const hex = [...new Uint8Array(digest)].map((b) => pad(b.toString(16))).join("");
  return `admin:${hex.slice(0, 10)}`;
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  const error = $("signin-error");
  error.textContent = "";
  if (!token) return;
  let response;
  try {
    response = await fetch(`/v1/admin/board?from=${localDate()}`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
    });
  } catch (e) {
    error.textContent = "The service cannot be reached. Is it running?";
    return;
  }
  if (response.status === 401) {
    error.textContent = "That token was refused. Check it and try again.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  await enter(token);
}

async function enter(token) {
  S.token = token;
  S.me = await fingerprint(token);
  $("signin").hidden = true;
  $("app").hidden = false;
  readHash();
  await loadBoard({ initial: true });
  schedulePoll();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = null;
  S.board = null;
  S.etag = null;
  S.selected = null;
  clearTimeout(S.timer);
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token-input").focus();
}

/* ---------------------------------------------------------------- filters */
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const today = localDate();
  S.region = params.get("region") || "";
  S.from = params.get("from") || today;
  S.to = params.get("to") || addDays(S.from, 2);
  S.kind = params.get("kind") || "";
  if (daysBetween(S.from, S.to) < 0 || daysBetween(S.from, S.to) > 13) S.to = S.from;
  S.autoJump = !params.get("from");
  syncFilterInputs();
}

function writeHash() {
  const params = new URLSearchParams();
  if (S.region) params.set("region", S.region);
  params.set("from", S.from);
  params.set("to", S.to);
  if (S.kind) params.set("kind", S.kind);
  history.replaceState(null, "", `#${params}`);
}

function syncFilterInputs() {
  $("from-input").value = S.from;
  $("to-input").value = S.to;
}

function onFilterChange() {
  const from = $("from-input").value;
  let to = $("to-input").value || from;
  if (!from) return;
  if (daysBetween(from, to) < 0) to = from;
  if (daysBetween(from, to) > 13) to = addDays(from, 13);
  const region = $("region-select").value;
  S.autoJump = region !== S.region; // another region: go to its nearest day with pools
  S.from = from;
  S.to = to;
  S.region = region;
  S.kind = $("kind-select").value;
  syncFilterInputs();
  loadBoard();
}

function shiftRange(direction) {
  const span = daysBetween(S.from, S.to) + 1;
  S.from = addDays(S.from, direction * span);
  S.to = addDays(S.to, direction * span);
  S.autoJump = false;
  syncFilterInputs();
  loadBoard();
}

function goToDay(date) {
  const span = daysBetween(S.from, S.to);
  S.from = date;
  S.to = addDays(date, span);
  S.autoJump = false;
  syncFilterInputs();
  loadBoard();
}

/* ---------------------------------------------------------------- the board's data */
function boardQuery() {
  const q = new URLSearchParams({ from: S.from, to: S.to });
  if (S.region) q.set("region", S.region);
  if (S.kind) q.set("kind", S.kind);
  return q.toString();
}

async function loadBoard({ initial = false } = {}) {
  if (!S.token) return;
  writeHash();
  const query = boardQuery();
  const headers = {};
  if (S.etag && S.etagQuery === query) headers["If-None-Match"] = S.etag;
  let res;
  try {
    res = await api("GET", `/v1/admin/board?${query}`, { headers });
  } catch (e) {
    if (!(e instanceof SignedOut)) setLive(false);
    return;
  }
  if (res.status === 304) {
    setLive(true);
    return;
  }
  if (!res.ok) {
    setLive(false, problemText(res));
    return;
  }
  const data = res.data;
  S.etag = res.headers.get("ETag");
  S.etagQuery = query;
  if (!S.region && data.regions.length) {
    S.region = data.regions[0];
    return loadBoard({ initial });
  }
  if ((initial || S.autoJump) && !data.pools.length && data.days.length) {
    S.autoJump = false;
    const today = localDate();
    const next = data.days.find((d) => d >= today) || data.days[data.days.length - 1];
    goToDay(next);
    return;
  }
  S.board = data;
  for (const [poolId, view] of S.fresh) {
    const seen = data.pools.find((p) => p.pool_id === poolId);
    if (!seen || seen.version >= view.version) S.fresh.delete(poolId);
  }
  setLive(true, data.as_of);
  fillRegionSelect(data.regions);
  fillKindSelect();
  render();
}

function setLive(ok, detail) {
  const live = $("live");
  if (ok) {
    S.lastOk = Date.now();
    live.className = "live ok";
    live.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    if (detail) live.title = `The numbers include every change up to ${detail}`;
  } else {
    live.className = "live stale";
    live.textContent = `Not updating: ${detail || "connection lost"}; retrying…`;
  }
}

function schedulePoll() {
  clearTimeout(S.timer);
  S.timer = setTimeout(async () => {
    if (S.token && !document.hidden && !S.polling) {
      S.polling = true;
      try { await loadBoard(); } finally { S.polling = false; }
    }
    if (S.token) schedulePoll();
  }, POLL_MS);
}

function pools() {
  if (!S.board) return [];
  return S.board.pools.map((p) => S.fresh.get(p.pool_id) || p);
}

function findPool(poolId) { return pools().find((p) => p.pool_id === poolId) || S.fresh.get(poolId); }

/* A write answered with the pool's new state: show it at once (the read model may lag). */
function takePool(view) {
  S.fresh.set(view.pool_id, view);
  if (S.board && !S.board.pools.some((p) => p.pool_id === view.pool_id)
      && view.region === S.region && view.date >= S.from && view.date <= S.to) {
    S.board.pools.push(view);
  }
}

function fillRegionSelect(regions) {
  const select = $("region-select");
  let wanted = [...new Set([...regions, S.region].filter(Boolean))].sort();
  if (!wanted.length) wanted = [""];
  const current = [...select.options].map((o) => o.value);
  if (JSON.stringify(current) !== JSON.stringify(wanted)) {
    select.replaceChildren(...wanted.map((r) => el("option", { value: r }, r || "no regions yet")));
  }
  select.value = S.region;
}

function fillKindSelect() {
  const kinds = new Set(pools().map((p) => p.kind));
  if (S.kind) kinds.add(S.kind);
  const select = $("kind-select");
  const wanted = ["", ...[...kinds].sort()];
  const current = [...select.options].map((o) => o.value);
  if (JSON.stringify(current) !== JSON.stringify(wanted)) {
    select.replaceChildren(...wanted.map((k) => el("option", { value: k }, k || "all types")));
  }
  select.value = S.kind;
  $("kind-list").replaceChildren(
    ...[...new Set(["logistics", "warehouse", ...kinds])].map((k) => el("option", { value: k })),
  );
}

/* ---------------------------------------------------------------- rendering the grid */
function bucket(slot) {
  if (slot.capacity === 0) return 0;
  if (slot.reserved === 0) return 0;
  const ratio = slot.reserved / slot.capacity;
  if (ratio <= 0.25) return 1;
  if (ratio <= 0.5) return 2;
  if (ratio <= 0.75) return 3;
  if (slot.reserved < slot.capacity) return 4;
  return 5;
}

function tagOf(slot) {
  if (!slot.open) return "closed";
  if (slot.capacity > 0 && slot.reserved >= slot.capacity) return "full";
  if (slot.capacity === 0) return "no capacity";
  if (slot.available === 0) return "pool full";
  return "";
}

function columnsOf(list) {
  const columns = new Map();
  for (const pool of list) {
    for (const slot of pool.slots) {
      if (!columns.has(slot.slot_id)) {
        columns.set(slot.slot_id, { id: slot.slot_id, from: clock(slot.starts_at), to: clock(slot.ends_at) });
      }
    }
  }
  return [...columns.values()].sort((a, b) => (a.from + a.id).localeCompare(b.from + b.id));
}

function render() {
  const host = $("board");
  const list = pools();
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.key : null;
  if (!S.region) {
    host.replaceChildren(el("div", { class: "empty" },
      el("h2", {}, "No pools yet"),
      el("p", {}, "There is no capacity defined in any region. Start with "),
      el("button", { type: "button", class: "primary", onclick: openPoolDialog }, "+ New pool")));
    return;
  }
  if (!list.length) {
    host.replaceChildren(emptyState());
    renderPanel();
    return;
  }
  const columns = columnsOf(list);
  const kinds = [...new Set(list.map((p) => p.kind))].sort();
  const table = el("table", {},
    el("caption", {}, `${S.region}: ${dayLabel(S.from)}${S.to !== S.from ? ` to ${dayLabel(S.to)}` : ""}`),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Pool"),
      columns.map((c) => el("th", { scope: "col" }, c.id, el("span", { class: "time" }, `${c.from}–${c.to}`))))));
  for (const kind of kinds) {
    const body = el("tbody", {}, el("tr", { class: "group" },
      el("th", { colspan: columns.length + 1, scope: "rowgroup" }, kind)));
    const rows = list.filter((p) => p.kind === kind).sort((a, b) => (a.date + a.pool_id).localeCompare(b.date + b.pool_id));
    for (const pool of rows) body.append(poolRow(pool, columns));
    table.append(body);
  }
  host.replaceChildren(table);
  if (focused) {
    const again = host.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  S.flash.clear();
  renderPanel();
}

function poolRow(pool, columns) {
  const conventional = pool.pool_id === `${pool.region}:${pool.date}:${pool.kind}`;
  const capacity = pool.slots.reduce((n, s) => n + s.capacity, 0);
  const sum = pool.total_capacity === null
    ? `${pool.total_reserved} / ${capacity} booked`
    : `${pool.total_reserved} / ${pool.total_capacity} booked (pool limit)`;
  const head = el("th", { scope: "row", title: pool.pool_id },
    el("span", { class: "day" }, dayLabel(pool.date)),
    conventional ? null : el("span", { class: "sum" }, pool.pool_id),
    el("span", { class: "sum" }, sum),
    el("button", {
      type: "button", class: "history-link", "aria-label": `History of ${pool.pool_id}`,
      dataset: { key: `h|${pool.pool_id}` }, onclick: () => openHistory(pool.pool_id),
    }, "history"));
  const row = el("tr", {}, head);
  const bySlot = new Map(pool.slots.map((s) => [s.slot_id, s]));
  for (const column of columns) {
    const slot = bySlot.get(column.id);
    row.append(slot ? el("td", {}, cell(pool, slot)) : el("td", { class: "none" }, "—"));
  }
  return row;
}

function cell(pool, slot) {
  const b = bucket(slot);
  const tag = tagOf(slot);
  const key = `${pool.pool_id}|${slot.slot_id}`;
  const selected = S.selected && S.selected.poolId === pool.pool_id && S.selected.slotId === slot.slot_id;
  const classes = ["cell", `b${b}`];
  if (!slot.open) classes.push("closed");
  if (tag === "full") classes.push("full");
  if (selected) classes.push("selected");
  if (S.flash.has(key)) classes.push("changed");
  const pct = slot.capacity ? Math.min(100, Math.round((100 * slot.reserved) / slot.capacity)) : 0;
  const fill = el("span");
  fill.style.width = `${pct}%`;
  const label = `${slot.slot_id} ${clock(slot.starts_at)} to ${clock(slot.ends_at)}, ${pool.kind}, `
    + `${dayLabel(pool.date)}: ${slot.reserved} of ${slot.capacity} reserved, `
    + `${slot.available} available, ${slot.open ? "open" : "closed"}`;
  return el("button", {
    type: "button", class: classes.join(" "), title: label, "aria-label": label,
    "aria-pressed": selected ? "true" : "false",
    dataset: { key, pool: pool.pool_id, slot: slot.slot_id },
    onclick: () => select(pool.pool_id, slot.slot_id),
  },
  el("span", { class: "nums" }, `${slot.reserved}/${slot.capacity}`),
  tag ? el("span", { class: "tag" }, tag) : null,
  el("span", { class: "bar", "aria-hidden": "true" }, fill));
}

function emptyState() {
  const days = (S.board && S.board.days) || [];
  const near = days.filter((d) => d >= addDays(S.from, -30)).slice(0, 14);
  return el("div", { class: "empty" },
    el("h2", {}, `No pools in ${S.region} from ${dayLabel(S.from)} to ${dayLabel(S.to)}`),
    days.length
      ? el("div", {}, el("p", {}, "Days with pools in this region:"),
        el("div", { class: "days" }, (near.length ? near : days.slice(-14)).map((d) =>
          el("button", { type: "button", onclick: () => goToDay(d) }, dayLabel(d)))))
      : el("p", {}, "This region has no pools yet."),
    el("p", {}, "Or define capacity for these days: ",
      el("button", { type: "button", class: "primary", onclick: openPoolDialog }, "+ New pool"), " ",
      el("button", { type: "button", onclick: openCopyDialog }, "Copy a day…")));
}

/* ---------------------------------------------------------------- the side panel */
function select(poolId, slotId) {
  S.selected = { poolId, slotId };
  $("answer").hidden = true;
  $("add-slot-form").hidden = true;
  render();
  const pool = findPool(poolId);
  const slot = pool && pool.slots.find((s) => s.slot_id === slotId);
  if (slot) {
    $("capacity-input").value = slot.capacity;
    $("total-input").value = pool.total_capacity === null ? "" : pool.total_capacity;
  }
  $("capacity-input").focus();
  $("capacity-input").select();
}

function selectedPair() {
  if (!S.selected) return [null, null];
  const pool = findPool(S.selected.poolId);
  const slot = pool && pool.slots.find((s) => s.slot_id === S.selected.slotId);
  return [pool, slot];
}

function renderPanel() {
  const [pool, slot] = selectedPair();
  $("panel-empty").hidden = Boolean(slot);
  $("panel-slot").hidden = !slot;
  if (!slot) return;
  $("slot-title").textContent = `${slot.slot_id} · ${pool.kind} · ${dayLabel(pool.date)}`;
  $("slot-sub").textContent = `${clock(slot.starts_at)}–${clock(slot.ends_at)} local (UTC${offsetOf(slot.starts_at)}) · pool ${pool.pool_id}`;
  $("n-reserved").textContent = slot.reserved;
  $("n-capacity").textContent = slot.capacity;
  $("n-available").textContent = slot.available;
  $("n-status").textContent = slot.open ? "open" : "closed";
  $("toggle-open").textContent = slot.open ? "Close this slot (no new bookings)" : "Reopen this slot";
  $("pool-sub").textContent = `${pool.total_reserved} reserved in ${pool.slots.length} slots`
    + (pool.total_capacity === null ? ", no pool-wide limit" : `, pool limit ${pool.total_capacity}`)
    + (pool.booking_cutoff_minutes ? ` · booking closes ${pool.booking_cutoff_minutes} min before each slot` : "")
    + ` · version ${pool.version}`;
  if (document.activeElement !== $("total-input")) {
    $("total-input").value = pool.total_capacity === null ? "" : pool.total_capacity;
  }
}

async function afterWrite(box, res, okText, key) {
  if (res.ok && res.data && res.data.pool_id) {
    takePool(res.data);
    if (key) S.flash.add(key);
  }
  showAnswer(box, res, okText);
  render();
}

async function saveCapacity(event) {
  event.preventDefault();
  const [pool, slot] = selectedPair();
  if (!slot) return;
  const capacity = Number($("capacity-input").value);
  if (!Number.isInteger(capacity) || capacity < 0) return;
  const path = `/v1/admin/pools/${encodeURIComponent(pool.pool_id)}/slots/${encodeURIComponent(slot.slot_id)}`;
  try {
    const res = await api("PATCH", path, { json: { capacity } });
    await afterWrite($("answer"), res, `Saved: capacity of ${slot.slot_id} ${slot.capacity} → ${capacity}.`,
      `${pool.pool_id}|${slot.slot_id}`);
  } catch (e) { if (!(e instanceof SignedOut)) networkError($("answer")); }
}

async function toggleOpen() {
  const [pool, slot] = selectedPair();
  if (!slot) return;
  const path = `/v1/admin/pools/${encodeURIComponent(pool.pool_id)}/slots/${encodeURIComponent(slot.slot_id)}`;
  try {
    const res = await api("PATCH", path, { json: { open: !slot.open } });
    await afterWrite($("answer"), res, `Saved: ${slot.slot_id} is now ${slot.open ? "closed" : "open"}.`,
      `${pool.pool_id}|${slot.slot_id}`);
  } catch (e) { if (!(e instanceof SignedOut)) networkError($("answer")); }
}

async function saveTotal(event) {
  event.preventDefault();
  const [pool] = selectedPair();
  if (!pool) return;
  const text = $("total-input").value.trim();
  const total = text === "" ? null : Number(text);
  if (total !== null && (!Number.isInteger(total) || total < 0)) return;
  try {
    const res = await api("PATCH", `/v1/admin/pools/${encodeURIComponent(pool.pool_id)}`,
      { json: { total_capacity: total } });
    await afterWrite($("answer"), res,
      `Saved: pool limit ${total === null ? "removed" : `set to ${total}`}.`, null);
  } catch (e) { if (!(e instanceof SignedOut)) networkError($("answer")); }
}

function slotIdFor(start, end) { return `${start.replace(":", "")}-${end.replace(":", "")}`; }

function stampsFor(date, start, end, offset) {
  const endDate = end <= start ? addDays(date, 1) : date; // a slot past midnight ends tomorrow
  return [`${date}T${start}:00${offset}`, `${endDate}T${end}:00${offset}`];
}

async function addSlot(event) {
  event.preventDefault();
  const [pool, slot] = selectedPair();
  if (!pool) return;
  const start = $("add-start").value;
  const end = $("add-end").value;
  const [startsAt, endsAt] = stampsFor(pool.date, start, end, offsetOf(slot.starts_at));
  const body = {
    slot_id: $("add-id").value.trim() || slotIdFor(start, end),
    starts_at: startsAt,
    ends_at: endsAt,
    capacity: Number($("add-capacity").value),
  };
  try {
    const res = await api("POST", `/v1/admin/pools/${encodeURIComponent(pool.pool_id)}/slots`, { json: body });
    await afterWrite($("answer"), res, `Added slot ${body.slot_id} with capacity ${body.capacity}.`,
      `${pool.pool_id}|${body.slot_id}`);
    if (res.ok) $("add-slot-form").hidden = true;
  } catch (e) { if (!(e instanceof SignedOut)) networkError($("answer")); }
}

function networkError(box) {
  box.hidden = false;
  box.className = "answer refused";
  box.textContent = "The service could not be reached; nothing was changed. Try again.";
}

function toast(text, ok = true) {
  const t = $("toast");
  t.className = ok ? "toast" : "toast refused";
  t.textContent = text;
  clearTimeout(S.toastTimer);
  S.toastTimer = setTimeout(() => { t.textContent = ""; }, 8000);
}

/* ---------------------------------------------------------------- new pool */
function slotRow(start = "", end = "", capacity = "", id = "") {
  const remove = el("button", { type: "button", class: "quiet", "aria-label": "Remove this slot" }, "✕");
  const row = el("tr", {},
    el("td", {}, el("input", { type: "time", required: true, value: start, "aria-label": "Starts" })),
    el("td", {}, el("input", { type: "time", required: true, value: end, "aria-label": "Ends" })),
    el("td", {}, el("input", { type: "number", min: 0, step: 1, required: true, value: capacity, "aria-label": "Capacity" })),
    el("td", {}, el("input", { type: "text", value: id, placeholder: "auto", "aria-label": "Slot id" })),
    el("td", {}, remove));
  remove.addEventListener("click", () => row.remove());
  return row;
}

function openPoolDialog() {
  const list = pools();
  const model = list.find((p) => !S.kind || p.kind === S.kind) || list[0];
  $("pool-region").value = S.region;
  $("pool-kind").value = S.kind || (model ? model.kind : "");
  $("pool-date").value = S.from;
  $("pool-total").value = "";
  $("pool-offset").value = model && model.slots.length ? offsetOf(model.slots[0].starts_at) : browserOffset();
  const rows = model && model.slots.length
    ? model.slots.map((s) => slotRow(clock(s.starts_at), clock(s.ends_at), s.capacity, s.slot_id))
    : [slotRow("08:00", "10:00", 10), slotRow("10:00", "12:00", 10)];
  $("pool-slots").replaceChildren(...rows);
  $("pool-answer").hidden = true;
  $("pool-dialog").showModal();
  $("pool-kind").focus();
}

async function createPool(event) {
  event.preventDefault();
  const region = $("pool-region").value.trim();
  const kind = $("pool-kind").value.trim();
  const date = $("pool-date").value;
  const offset = $("pool-offset").value.trim();
  const totalText = $("pool-total").value.trim();
  const slots = [...$("pool-slots").rows].map((row) => {
    const [start, end, capacity, id] = [...row.querySelectorAll("input")].map((i) => i.value.trim());
    const [startsAt, endsAt] = stampsFor(date, start, end, offset);
    return { slot_id: id || slotIdFor(start, end), starts_at: startsAt, ends_at: endsAt, capacity: Number(capacity) };
  });
  const poolId = `${region}:${date}:${kind}`;
  const body = { kind, region, date, total_capacity: totalText === "" ? null : Number(totalText), slots };
  try {
    const res = await api("PUT", `/v1/admin/pools/${encodeURIComponent(poolId)}`, { json: body });
    showAnswer($("pool-answer"), res, res.status === 201 ? `Created pool ${poolId}.`
      : `Pool ${poolId} already exists exactly like this; nothing changed.`);
    if (res.ok) {
      takePool(res.data);
      $("pool-dialog").close();
      toast(`✓ Pool ${poolId} created with ${slots.length} slots.`);
      if (region !== S.region || date < S.from || date > S.to) {
        S.region = region;
        goToDay(date);
      } else {
        render();
      }
    }
  } catch (e) { if (!(e instanceof SignedOut)) networkError($("pool-answer")); }
}

/* ---------------------------------------------------------------- CSV, plans, copy a day */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.some((c) => c.trim()));
}

function toCsv(rows) {
  const quote = (v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return rows.map((r) => r.map((v) => quote(String(v))).join(",")).join("\r\n") + "\r\n";
}

async function exportCsv() {
  const q = new URLSearchParams({ region: S.region, from: S.from, to: S.to });
  if (S.kind) q.set("kind", S.kind);
  try {
    const res = await api("GET", `/v1/admin/plans/export?${q}`);
    if (!res.ok) { toast(`✗ ${problemText(res)}`, false); return; }
    const blob = new Blob([res.data], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `plan-${S.region}-${S.from}-${S.to}.csv`.replace(/:/g, "_") });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    toast(`✓ Exported ${S.region} ${S.from} to ${S.to}.`);
  } catch (e) { if (!(e instanceof SignedOut)) toast("✗ The service could not be reached.", false); }
}

function openPlanDialog(text = null, name = "") {
  S.plan = text === null ? null : { text, name };
  $("plan-file").value = "";
  $("plan-text").value = text || "";
  $("plan-text-box").open = Boolean(text);
  $("plan-report").replaceChildren();
  $("plan-apply").disabled = true;
  $("plan-dialog").showModal();
  if (text) previewPlan();
}

async function currentPlanText() {
  const file = $("plan-file").files[0];
  if (file) return file.text();
  return $("plan-text").value;
}

async function sendPlan(dryRun) {
  const text = dryRun ? await currentPlanText() : S.plan && S.plan.text;
  if (!text || !text.trim()) {
    $("plan-report").replaceChildren(el("p", { class: "error" }, "Choose a CSV file or paste one first."));
    return;
  }
  $("plan-apply").disabled = true;
  try {
    const res = await api("POST", `/v1/admin/plans${dryRun ? "?dry_run=true" : ""}`, { raw: text, contentType: "text/csv" });
    if (dryRun) S.plan = { text };
    renderPlanReport(res);
    $("plan-apply").disabled = !(dryRun && res.ok && res.data.would_apply && hasChanges(res.data));
    if (!dryRun) { S.etag = null; loadBoard(); }
  } catch (e) {
    if (!(e instanceof SignedOut)) $("plan-report").replaceChildren(el("p", { class: "error" }, "The service could not be reached."));
  }
}

const previewPlan = () => sendPlan(true);
const applyPlan = () => sendPlan(false);

function hasChanges(report) {
  const s = report.summary;
  return s.created + s.raised + s.lowered > 0;
}

function describeChange(c) {
  const what = c.slot_id ? `slot ${c.slot_id}` : "pool";
  if (c.change === "refused") return el("span", { class: "change-refused" }, `${what}: refused (${c.code}): ${c.detail}`);
  if (c.field === "pool") return c.detail || "new pool";
  if (c.field === "slot") return `${what}: new slot, capacity ${c.after}`;
  const show = (v) => (v === null ? "none" : v);
  return `${what}: ${c.field.replace("_", " ")} ${show(c.before)} → ${show(c.after)} (${c.change})`;
}

function renderPlanReport(res) {
  const box = $("plan-report");
  const data = res.data || {};
  if (!data.pools) {
    const errors = data.errors || [];
    box.replaceChildren(
      el("p", { class: "verdict refused" }, `Not applied: ${data.detail || problemText(res)}`),
      errors.length ? el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Line"), el("th", {}, "Column"), el("th", {}, "Problem"))),
        el("tbody", {}, errors.map((e) => el("tr", {}, el("td", {}, e.line), el("td", {}, e.field || ""), el("td", {}, e.detail))))) : null);
    return;
  }
  const s = data.summary;
  let verdict;
  let ok;
  if (data.dry_run) {
    ok = data.would_apply;
    verdict = !ok ? "This plan would be refused: nothing will be written. Fix the lines marked ✗."
      : hasChanges(data) ? "Dry run: nothing written yet. Check the changes, then press Apply plan."
        : "Nothing to change: the pools already look like this plan.";
  } else {
    ok = res.ok && data.applied;
    verdict = ok ? "Applied." : `Not fully applied: ${data.detail || ""}`;
  }
  box.replaceChildren(
    el("p", { class: `verdict ${ok ? "ok" : "refused"}` }, verdict),
    el("p", { class: "small" }, `${data.row_count} rows, ${data.pools.length} pools: ${s.created} created, `
      + `${s.raised} raised, ${s.lowered} lowered, ${s.refused} refused, ${s.unchanged_pools} pools unchanged.`),
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Pool"), el("th", {}, "Outcome"), el("th", {}, "Changes"), el("th", {}, "Result"))),
      el("tbody", {}, data.pools.map((p) => el("tr", {},
        el("td", {}, p.pool_id, el("div", { class: "muted small" }, `line ${p.line}`)),
        el("td", {}, p.outcome),
        el("td", {}, p.changes.length ? el("ul", {}, p.changes.map((c) => el("li", {}, `line ${c.line}: `, describeChange(c)))) : "—",
          p.untouched_slots.length ? el("div", { class: "muted small" }, `not in the plan, left as they are: ${p.untouched_slots.join(", ")}`) : null),
        el("td", {}, p.result ? `${p.result.status}${p.result.detail ? `: ${p.result.detail}` : ""}` : (data.dry_run ? "not written" : "")))))));
}

function openCopyDialog() {
  const days = (S.board && S.board.days) || [];
  const shown = pools().map((p) => p.date);
  const source = $("copy-source");
  source.replaceChildren(...days.map((d) => el("option", { value: d }, dayLabel(d))));
  if (!days.length) source.append(el("option", { value: "" }, "no day has pools yet"));
  source.value = shown.length ? shown[0] : days[days.length - 1] || "";
  const kinds = [...new Set(pools().map((p) => p.kind))].sort();
  $("copy-kind").replaceChildren(el("option", { value: "" }, "all types"), ...kinds.map((k) => el("option", { value: k }, k)));
  $("copy-kind").value = S.kind;
  // onto the days shown when they are empty, else onto the day after the source
  const start = shown.length || !source.value ? addDays(source.value || S.from, 1) : S.from;
  $("copy-from").value = start;
  $("copy-to").value = shown.length || !source.value ? start : S.to;
  $("copy-dialog").showModal();
}

async function previewCopy(event) {
  event.preventDefault();
  const sourceDay = $("copy-source").value;
  const from = $("copy-from").value;
  const to = $("copy-to").value || from;
  if (!sourceDay || !from) return;
  const span = daysBetween(from, to);
  if (span < 0 || span > 61) { toast("✗ Choose at most 62 target days, the last after the first.", false); return; }
  const q = new URLSearchParams({ region: S.region, from: sourceDay });
  if ($("copy-kind").value) q.set("kind", $("copy-kind").value);
  let res;
  try { res = await api("GET", `/v1/admin/plans/export?${q}`); } catch (e) { return; }
  if (!res.ok) { toast(`✗ ${problemText(res)}`, false); return; }
  const [header, ...rows] = parseCsv(res.data);
  const col = Object.fromEntries(header.map((name, i) => [name, i]));
  const out = [header];
  for (let i = 0; i <= span; i++) {
    const target = addDays(from, i);
    if (target === sourceDay) continue;
    const shift = daysBetween(sourceDay, target);
    for (const row of rows) {
      const copy = [...row];
      const poolId = row[col.pool_id];
      copy[col.pool_id] = poolId.includes(sourceDay) ? poolId.replace(sourceDay, target)
        : `${row[col.region]}:${target}:${row[col.kind]}`;
      copy[col.date] = target;
      copy[col.starts_at] = shiftStamp(row[col.starts_at], shift);
      copy[col.ends_at] = shiftStamp(row[col.ends_at], shift);
      out.push(copy);
    }
  }
  $("copy-dialog").close();
  openPlanDialog(toCsv(out), `copy of ${sourceDay}`);
}

/* ---------------------------------------------------------------- history and as of */
function openHistory(poolId) {
  S.historyPool = poolId || (S.selected && S.selected.poolId);
  if (!S.historyPool) return;
  $("history-title").textContent = `History of ${S.historyPool}`;
  $("asof-input").value = toLocalInput(Date.now());
  $("asof-result").replaceChildren();
  $("timeline").replaceChildren();
  S.timelineBefore = null;
  $("history-dialog").showModal();
  loadTimeline(false);
  showAsOf(Date.now());
  $("asof-input").focus();
}

function actorLabel(actor) {
  if (!actor) return "customers";
  return actor === S.me ? `${actor} (you)` : actor;
}

async function loadTimeline(older) {
  const q = new URLSearchParams({ limit: "2000" });
  if (older && S.timelineBefore) q.set("before", S.timelineBefore);
  let res;
  try { res = await api("GET", `/v1/admin/pools/${encodeURIComponent(S.historyPool)}/timeline?${q}`); } catch (e) { return; }
  if (!res.ok) {
    $("timeline").append(el("li", {}, problemText(res)));
    return;
  }
  S.timelineBefore = res.data.next_before;
  $("timeline-more").hidden = !res.data.next_before;
  for (const entry of res.data.entries) $("timeline").append(timelineItem(entry));
}

function timelineItem(entry) {
  const after = entry.kind === "bookings" ? entry.until_ms : entry.at_ms;
  const when = entry.at_ms;
  const who = entry.kind === "bookings" ? "customers" : actorLabel(entry.actor);
  return el("li", { class: entry.kind },
    el("button", { type: "button", title: "Show the pool right after this", onclick: () => showAsOf(after) },
      el("span", { class: "when" }, whenLabel(when)),
      el("span", {}, entry.summary, el("span", { class: "who" }, `by ${who}${entry.kind === "change" ? ` · version ${entry.version}` : ` · versions ${entry.first_version}–${entry.last_version}`}`))));
}

async function showAsOf(ms) {
  $("asof-input").value = toLocalInput(ms);
  const iso = new Date(ms).toISOString();
  const box = $("asof-result");
  let res;
  try {
    res = await api("GET", `/v1/admin/pools/${encodeURIComponent(S.historyPool)}?as_of=${encodeURIComponent(iso)}`);
  } catch (e) { return; }
  if (res.status === 404) {
    box.replaceChildren(el("p", { class: "answer refused" }, `The pool did not exist yet at ${whenLabel(ms)}.`));
    return;
  }
  if (!res.ok) { box.replaceChildren(el("p", { class: "answer refused" }, problemText(res))); return; }
  const pool = res.data;
  box.replaceChildren(
    el("p", {}, el("b", {}, `As of ${whenLabel(ms)}`), ` · version ${pool.version} · ${pool.total_reserved} reserved`
      + (pool.total_capacity === null ? "" : ` · pool limit ${pool.total_capacity}`)),
    el("table", { class: "asof-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Slot"), el("th", {}, "Time"), el("th", {}, "Reserved"), el("th", {}, "Capacity"), el("th", {}, "Status"))),
      el("tbody", {}, pool.slots.map((s) => el("tr", {},
        el("td", {}, s.slot_id), el("td", {}, `${clock(s.starts_at)}–${clock(s.ends_at)}`),
        el("td", { class: "num" }, s.reserved), el("td", { class: "num" }, s.capacity),
        el("td", {}, s.open ? "open" : "closed"))))));
}

function submitAsOf(event) {
  event.preventDefault();
  const value = $("asof-input").value;
  if (!value) return;
  const ms = new Date(value).getTime(); // a datetime-local value is local time
  if (Number.isNaN(ms)) return;
  showAsOf(ms + 999); // the whole second shown in the field
}

/* ---------------------------------------------------------------- wiring */
function init() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  for (const id of ["region-select", "kind-select", "from-input", "to-input"]) {
    $(id).addEventListener("change", onFilterChange);
  }
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("prev-days").addEventListener("click", () => shiftRange(-1));
  $("next-days").addEventListener("click", () => shiftRange(1));
  $("today").addEventListener("click", () => goToDay(localDate()));
  $("capacity-form").addEventListener("submit", saveCapacity);
  $("toggle-open").addEventListener("click", toggleOpen);
  $("total-form").addEventListener("submit", saveTotal);
  $("open-history").addEventListener("click", () => openHistory());
  $("open-add-slot").addEventListener("click", () => {
    $("add-slot-form").hidden = !$("add-slot-form").hidden;
    if (!$("add-slot-form").hidden) $("add-start").focus();
  });
  $("add-slot-form").addEventListener("submit", addSlot);
  $("new-pool").addEventListener("click", openPoolDialog);
  $("pool-add-row").addEventListener("click", () => $("pool-slots").append(slotRow()));
  $("pool-form").addEventListener("submit", createPool);
  $("copy-day").addEventListener("click", openCopyDialog);
  $("copy-form").addEventListener("submit", previewCopy);
  $("open-plan").addEventListener("click", () => openPlanDialog());
  $("export-plan").addEventListener("click", exportCsv);
  $("plan-preview").addEventListener("click", previewPlan);
  $("plan-apply").addEventListener("click", applyPlan);
  $("plan-file").addEventListener("change", () => { $("plan-apply").disabled = true; });
  $("plan-text").addEventListener("input", () => { $("plan-apply").disabled = true; });
  $("asof-form").addEventListener("submit", submitAsOf);
  $("asof-now").addEventListener("click", () => showAsOf(Date.now()));
  $("timeline-more").addEventListener("click", () => loadTimeline(true));
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && S.token) loadBoard(); });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) enter(token);
  else $("token-input").focus();
}

document.addEventListener("DOMContentLoaded", init);
