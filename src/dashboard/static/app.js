// The reserve's dashboard. Plain DOM code, no framework, no build step: the
// server embeds this file as it is. Everything shown comes from the
// authenticated /api/v1 API of the server that served the page, called with
// the bearer token the user pasted (kept in sessionStorage). The token's
// roles are decoded here for display only: the server decides every action.
"use strict";

(function () {
  const TOKEN_KEY = "reserve.token";
  const API = "/api/v1";
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Colour-blind-safe palette (Okabe–Ito), for the chart's origins.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7f7f7f"];
  const OPEN_STATUSES = ["proposed", "approved", "executing"];

  const state = {
    token: null,
    claims: null,
    summary: null,
    cover: null,
    depots: [],
    orders: [],
    selected: null,
    ledgerCursor: null,
    events: null,
    lastEventId: null,
    refreshTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---- small helpers -----------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // Quantities are exact decimal strings: group the integer part without
  // going through a float, so what is shown is what the server said.
  function kg(value) {
    if (value === null || value === undefined) return "—";
    const s = String(value);
    const neg = s.startsWith("-");
    const [int, frac] = (neg ? s.slice(1) : s).split(".");
    const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (neg ? "−" : "") + grouped + (frac ? "." + frac : "");
  }

  function when(iso) {
    if (!iso) return "—";
    return iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function decodeClaims(token) {
    try {
      const part = token.split(".")[1];
      const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
      const json = atob(b64 + "===".slice((b64.length + 3) % 4));
      return JSON.parse(json);
    } catch (e) {
      return null;
    }
  }

  function hasRole(role) {
    return !!(state.claims && Array.isArray(state.claims.roles) && state.claims.roles.includes(role));
  }

  function inScope(depot) {
    const scope = state.claims && state.claims.depots;
    return !Array.isArray(scope) || scope.includes(depot);
  }

  class ApiProblem extends Error {
    constructor(status, body) {
      const fields = (body && body.errors ? body.errors : []).map((e) => `${e.field}: ${e.message}`);
      super([body && (body.detail || body.title), ...fields].filter(Boolean).join("; ") || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = { Authorization: "Bearer " + state.token, Accept: opts.accept || "application/json" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = crypto.randomUUID();
    }
    const res = await fetch(API + path, {
      method: opts.method || "GET",
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: "no-store",
    });
    if (res.status === 401) {
      signOut("The server refused the token (expired or not valid here). Sign in again.");
      throw new ApiProblem(401, await res.json().catch(() => null));
    }
    if (!res.ok) throw new ApiProblem(res.status, await res.json().catch(() => null));
    if (opts.raw) return res;
    return res.json();
  }

  // Every item of a cursor-paginated list, page by page.
  async function allPages(path, params, limit) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < 100; page++) {
      const q = new URLSearchParams(Object.assign({ limit: String(limit) }, params));
      if (cursor) q.set("cursor", cursor);
      const res = await api(`${path}?${q}`);
      items.push(...res.items);
      cursor = res.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  // ---- sign-in -----------------------------------------------------------

  async function signIn(token) {
    const claims = decodeClaims(token);
    if (!claims || !claims.sub) {
      $("signin-error").textContent = "That is not a JWT: it should be three base64url parts separated by dots.";
      return;
    }
    state.token = token;
    state.claims = claims;
    try {
      await loadAll();
    } catch (e) {
      state.token = null;
      state.claims = null;
      sessionStorage.removeItem(TOKEN_KEY);
      $("signin-error").textContent = "Sign-in failed: " + e.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin-error").textContent = "";
    $("token").value = "";
    $("signin").hidden = true;
    $("app").hidden = false;
    const roles = (claims.roles || []).join(", ") || "no role";
    const scope = Array.isArray(claims.depots) ? ` · depots ${claims.depots.join(", ")}` : "";
    const exp = claims.exp ? ` · until ${when(new Date(claims.exp * 1000).toISOString())}` : "";
    $("whoami").textContent = `Signed in as ${claims.sub} (${roles})${scope}${exp}`;
    $("whoami").hidden = false;
    $("signout").hidden = false;
    showView(location.hash.replace("#", "") || "elements");
    connectEvents();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.claims = null;
    if (state.events) state.events.close();
    state.events = null;
    $("app").hidden = true;
    $("whoami").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("token").focus();
  }

  // ---- loading -----------------------------------------------------------

  async function loadAll() {
    const [summary, cover, depots] = await Promise.all([
      api("/summary"),
      api("/cover"),
      allPages("/depots", {}, 200),
    ]);
    state.summary = summary;
    state.cover = cover;
    state.depots = depots;
    renderElements();
    renderDepots();
    fillFilterOptions();
    await loadOrders();
    if (state.selected) await renderElementDetail(state.selected, false);
    setStatus(`Data as of ${when(summary.generated_at)}, ledger sequence ${summary.last_sequence}.`);
  }

  // Several events in a burst cause one reload, not one each.
  function scheduleRefresh(what) {
    state.pending = Object.assign(state.pending || {}, what);
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(async () => {
      const pending = state.pending;
      state.pending = null;
      state.refreshTimer = null;
      try {
        if (pending.stock) await loadAll();
        else if (pending.orders) await loadOrders();
        if (pending.stock && !$("view-ledger").hidden) await loadLedger(false);
      } catch (e) {
        setStatus("Refresh failed: " + e.message);
      }
    }, 300);
  }

  // ---- elements ----------------------------------------------------------

  function coverBand(item) {
    // Days of cover against the floor, both in days: the floor's share of the
    // holding scales the days of cover, whatever mass basis the server used.
    const days = item.days_of_cover === null ? null : Number(item.days_of_cover);
    const holding = Number(item.holding_kg);
    const floor = item.reserve_floor_kg === null ? null : Number(item.reserve_floor_kg);
    const floorDays = days !== null && floor !== null && holding > 0 ? (days * floor) / holding : null;
    let band = "none";
    let label = "no consumption figure";
    if (days !== null && floor === null) {
      band = "nofloor";
      label = "no floor set";
    } else if (days !== null) {
      if (holding <= floor) {
        band = "below";
        label = "at or below the floor";
      } else if (holding < floor * 1.5) {
        band = "near";
        label = "within 50% of the floor";
      } else {
        band = "ok";
        label = "well above the floor";
      }
    }
    return { days, floorDays, band, label };
  }

  function coverBar(item) {
    const c = coverBand(item);
    const scale = 365;
    const wrap = el("div", { class: "cover" });
    const bar = el("div", { class: "cover-bar" });
    const fill = el("div", { class: "cover-fill band-" + c.band });
    fill.style.width = Math.min(100, ((c.days || 0) / scale) * 100) + "%";
    bar.append(fill);
    if (c.floorDays !== null) {
      const mark = el("div", { class: "cover-floor", title: `floor: ${c.floorDays.toFixed(1)} days` });
      mark.style.left = Math.min(100, (c.floorDays / scale) * 100) + "%";
      bar.append(mark);
    }
    const text = c.days === null ? "—" : `${item.days_of_cover} days`;
    wrap.append(
      bar,
      el("span", { class: "cover-text" }, text, " ", el("span", { class: "band-label band-text-" + c.band }, `(${c.label})`))
    );
    return wrap;
  }

  function renderElements() {
    const body = $("elements-table").tBodies[0];
    const cover = new Map(state.cover.items.map((i) => [i.element, i]));
    const rows = state.summary.elements.map((e) => {
      const c = cover.get(e.element) || {};
      const button = el("button", { type: "button", class: "link", "data-element": e.element, onclick: () => selectElement(e.element) }, `${e.element} · ${e.name}`);
      if (state.selected === e.element) button.setAttribute("aria-pressed", "true");
      return el(
        "tr",
        { "data-element": e.element },
        el("th", { scope: "row" }, button),
        el("td", { class: "num holding" }, kg(e.on_hand_kg)),
        el("td", { class: "num" }, kg(e.available_kg)),
        el("td", { class: "num" }, kg(c.reserve_floor_kg)),
        el("td", {}, c.element ? coverBar(c) : "—"),
        el("td", { class: "nowrap" }, c.top_origin ? `${c.top_origin} (${c.top_origin_share_percent}%)` : "—")
      );
    });
    body.replaceChildren(...rows);
  }

  async function selectElement(symbol) {
    state.selected = symbol;
    for (const b of document.querySelectorAll("#elements-table button[data-element]")) {
      b.setAttribute("aria-pressed", b.dataset.element === symbol ? "true" : "false");
    }
    await renderElementDetail(symbol, true);
  }

  async function renderElementDetail(symbol, focus) {
    const e = state.summary.elements.find((x) => x.element === symbol);
    const c = state.cover.items.find((x) => x.element === symbol);
    if (!e) return;
    $("element-detail").hidden = false;
    $("element-detail-title").textContent = `${e.name} (${e.element})`;
    if (focus) $("element-detail-title").focus();
    const depotRows = Object.entries(e.by_depot).map(([code, d]) =>
      el("tr", {}, el("th", { scope: "row" }, code), el("td", { class: "num" }, kg(d.on_hand_kg)), el("td", { class: "num" }, kg(d.element_mass_kg)))
    );
    if (!depotRows.length) depotRows.push(el("tr", {}, el("td", { colspan: 3 }, "No stock at any depot.")));
    $("element-depots").tBodies[0].replaceChildren(...depotRows);
    $("element-cover").replaceChildren(
      c ? coverBar(c) : "—",
      c ? el("p", { class: "hint" }, `Consumption ${kg(c.consumption_kg_per_day)} kg/day; imports ${kg(c.imports_365d_kg)} kg over 365 days (${c.change_30d_percent ?? "—"}% over 30 days); data to ${c.data_horizon ?? "—"}.`) : ""
    );
    const open = state.orders.filter((o) => o.element === symbol && OPEN_STATUSES.includes(o.status));
    const orderRows = open.map((o) =>
      el("tr", {}, el("td", {}, `#${o.id}`), el("td", {}, o.kind), el("td", {}, o.status), el("td", { class: "num" }, kg(o.quantity_kg)), el("td", { class: "num" }, kg(o.released_kg)), el("td", {}, o.proposed_by))
    );
    if (!orderRows.length) orderRows.push(el("tr", {}, el("td", { colspan: 6 }, "No open release order.")));
    $("element-orders").tBodies[0].replaceChildren(...orderRows);
    await renderImports(symbol);
  }

  function monthsBack(n) {
    const now = new Date();
    const out = [];
    for (let i = n - 1; i >= 0; i--) {
      const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1));
      out.push(d.toISOString().slice(0, 7));
    }
    return out;
  }

  async function renderImports(symbol) {
    const figure = $("imports-chart");
    const months = monthsBack(24);
    const flows = await allPages("/import-flows", { element: symbol, from: months[0] + "-01" }, 1000);
    if (state.selected !== symbol) return;
    // Per month (of the period's start) and origin, in grams to stay exact
    // while summing; the chart itself only needs approximate heights.
    const byMonth = new Map(months.map((m) => [m, new Map()]));
    const totals = new Map();
    for (const f of flows) {
      const m = f.period_start.slice(0, 7);
      if (!byMonth.has(m)) continue;
      const v = Number(f.quantity_kg);
      const row = byMonth.get(m);
      row.set(f.origin_country, (row.get(f.origin_country) || 0) + v);
      totals.set(f.origin_country, (totals.get(f.origin_country) || 0) + v);
    }
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([o]) => o);
    const shown = ranked.slice(0, PALETTE.length - 1);
    const series = ranked.length > shown.length ? [...shown, "other"] : shown;
    const colour = new Map(series.map((o, i) => [o, PALETTE[i]]));
    const stacks = months.map((m) => {
      const parts = new Map();
      for (const [o, v] of byMonth.get(m)) {
        const key = shown.includes(o) ? o : "other";
        parts.set(key, (parts.get(key) || 0) + v);
      }
      return { month: m, parts, total: [...parts.values()].reduce((a, b) => a + b, 0) };
    });
    const max = Math.max(1, ...stacks.map((s) => s.total));
    const W = 560, H = 220, left = 64, bottom = 28, top = 8;
    const plotH = H - bottom - top;
    const step = (W - left - 4) / months.length;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Monthly imports of ${symbol} by origin over 24 months; the table below gives the figures`, class: "bars" });
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH * (1 - frac);
      chart.append(svg("line", { x1: left, x2: W - 4, y1: y, y2: y, class: "gridline" }));
      chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, Math.round(max * frac).toLocaleString("en") + " kg"));
    }
    stacks.forEach((s, i) => {
      let y = top + plotH;
      const x = left + i * step + 1;
      for (const o of series) {
        const v = s.parts.get(o) || 0;
        if (!v) continue;
        const h = (v / max) * plotH;
        y -= h;
        chart.append(svg("rect", { x, y, width: Math.max(1, step - 2), height: h, fill: colour.get(o) }, svg("title", {}, `${s.month} ${o}: ${Math.round(v).toLocaleString("en")} kg`)));
      }
      if (i % 3 === 0) chart.append(svg("text", { x: x + step / 2, y: H - 10, "text-anchor": "middle", class: "axis" }, s.month));
    });
    const legend = el("ul", { class: "legend" }, ...series.map((o) => {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.backgroundColor = colour.get(o);
      return el("li", {}, swatch, o);
    }));
    const table = el(
      "table",
      { class: "data compact" },
      el("caption", {}, "Imports per month (kg)"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Month"), ...series.map((o) => el("th", { scope: "col", class: "num" }, o)))),
      el("tbody", {}, ...stacks.map((s) => el("tr", {}, el("th", { scope: "row" }, s.month), ...series.map((o) => el("td", { class: "num" }, s.parts.has(o) ? Math.round(s.parts.get(o)).toLocaleString("en") : "")))))
    );
    const details = el("details", {}, el("summary", {}, "Figures"), table);
    figure.replaceChildren(
      flows.length ? chart : el("p", { class: "hint" }, "No import flows recorded for these 24 months."),
      flows.length ? legend : "",
      flows.length ? details : ""
    );
  }

  // ---- depots ------------------------------------------------------------

  function renderDepots() {
    const byDepot = new Map();
    for (const e of state.summary.elements) {
      for (const [code, d] of Object.entries(e.by_depot)) {
        if (!byDepot.has(code)) byDepot.set(code, []);
        byDepot.get(code).push([e.element, d.on_hand_kg]);
      }
    }
    const cards = state.depots
      .slice()
      .sort((a, b) => a.code.localeCompare(b.code))
      .map((d) => {
        const pct = Number(d.utilisation_pct);
        const meter = el("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": `${d.code} utilisation` });
        const fill = el("div", { class: "meter-fill" + (pct >= 90 ? " high" : "") });
        fill.style.width = Math.min(100, pct) + "%";
        meter.append(fill);
        const drawdown = Number(d.max_drawdown_kg_per_day);
        const days = drawdown > 0 ? Math.ceil(Number(d.on_hand_kg) / drawdown) : null;
        const stock = (byDepot.get(d.code) || []).map(([sym, q]) => el("tr", {}, el("th", { scope: "row" }, sym), el("td", { class: "num" }, kg(q))));
        return el(
          "article",
          { class: "card", "data-depot": d.code, "aria-labelledby": "depot-" + d.code },
          el("h3", { id: "depot-" + d.code }, `${d.code} · ${d.name}`),
          el("p", { class: "hint" }, `${d.region} · ${d.status}`),
          el("p", {}, `Utilisation ${d.utilisation_pct}% — ${kg(d.on_hand_kg)} of ${kg(d.capacity_kg)} kg`),
          meter,
          el("p", {}, `Drawdown capacity ${kg(d.max_drawdown_kg_per_day)} kg/day` + (days !== null ? ` (all stock out in ${days} days)` : "")),
          el("table", { class: "data compact" }, el("caption", {}, "Stock by element"), el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Element"), el("th", { scope: "col", class: "num" }, "On hand (kg)"))), el("tbody", {}, ...stock))
        );
      });
    $("depots-list").replaceChildren(...cards);
  }

  // ---- ledger ------------------------------------------------------------

  function fillFilterOptions() {
    const form = $("ledger-filters");
    const fill = (select, values) => {
      const current = select.value;
      select.replaceChildren(el("option", { value: "" }, "any"), ...values.map((v) => el("option", { value: v }, v)));
      select.value = current;
    };
    fill(form.elements.depot, state.depots.map((d) => d.code).sort());
    fill(form.elements.element, state.summary.elements.map((e) => e.element));
  }

  function ledgerQuery() {
    const form = $("ledger-filters");
    const q = new URLSearchParams();
    for (const name of ["depot", "element", "kind"]) {
      if (form.elements[name].value) q.set(name, form.elements[name].value);
    }
    for (const name of ["from", "to"]) {
      if (form.elements[name].value) q.set(name, form.elements[name].value + "T00:00:00Z");
    }
    return q;
  }

  async function loadLedger(more) {
    $("ledger-error").textContent = "";
    const q = ledgerQuery();
    q.set("limit", "50");
    if (more && state.ledgerCursor) q.set("cursor", state.ledgerCursor);
    let page;
    try {
      page = await api("/ledger?" + q);
    } catch (e) {
      $("ledger-error").textContent = "Could not load the ledger: " + e.message;
      return;
    }
    const rows = page.items.map((x) =>
      el(
        "tr",
        { "data-sequence": x.sequence },
        el("td", { class: "num" }, x.sequence),
        el("td", {}, when(x.occurred_at)),
        el("td", {}, x.kind),
        el("td", {}, x.depot),
        el("td", {}, x.element),
        el("td", {}, `${x.form} ${x.grade}`),
        el("td", { class: "num" }, kg(x.quantity_kg)),
        el("td", { class: "num" }, kg(x.balance_after_kg)),
        el("td", {}, x.reference || "")
      )
    );
    const body = $("ledger-table").tBodies[0];
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    state.ledgerCursor = page.next_cursor;
    $("ledger-more").hidden = !page.next_cursor;
  }

  // Every page of the filtered ledger as one CSV file (one header line).
  async function downloadCsv() {
    const button = $("ledger-csv");
    button.disabled = true;
    $("ledger-error").textContent = "";
    try {
      const q = ledgerQuery();
      q.set("format", "csv");
      q.set("limit", "1000");
      const parts = [];
      let cursor = null;
      for (let page = 0; page < 1000; page++) {
        if (cursor) q.set("cursor", cursor);
        const res = await api("/ledger?" + q, { raw: true, accept: "text/csv" });
        let text = await res.text();
        if (page > 0) text = text.slice(text.indexOf("\n") + 1);
        parts.push(text);
        cursor = res.headers.get("X-Next-Cursor");
        if (!cursor) break;
      }
      const blob = new Blob(parts, { type: "text/csv" });
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: `ledger-${new Date().toISOString().slice(0, 10)}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      $("ledger-error").textContent = "Could not download the ledger: " + e.message;
    } finally {
      button.disabled = false;
    }
  }

  // ---- orders ------------------------------------------------------------

  async function loadOrders() {
    const items = await allPages("/release-orders", {}, 200);
    state.orders = items;
    renderOrders();
  }

  function remaining(a) {
    // allocation quantities are decimal strings with three places: subtract in grams.
    const g = (s) => BigInt(String(s).replace(".", ""));
    const left = g(a.quantity_kg) - g(a.released_kg);
    const s = left.toString().padStart(4, "0");
    return s.slice(0, -3) + "." + s.slice(-3);
  }

  async function act(order, action, body, button) {
    $("orders-error").textContent = "";
    button.disabled = true;
    try {
      await api(`/release-orders/${order.id}/${action}`, { method: "POST", body });
      setStatus(`Order #${order.id}: ${action} done.`);
      await loadAll();
    } catch (e) {
      $("orders-error").textContent = `Order #${order.id}: ${action} refused: ${e.message}`;
      button.disabled = false;
    }
  }

  function orderActions(o) {
    const sub = state.claims.sub;
    const out = [];
    const noteId = `note-${o.id}`;
    const note = () => {
      const v = document.getElementById(noteId).value.trim();
      return v ? { note: v } : {};
    };
    if (o.status === "proposed" && hasRole("approver")) {
      if (o.proposed_by === sub) {
        out.push(el("p", { class: "hint" }, "You proposed this order: someone else must approve it."));
      } else {
        out.push(
          el("label", { for: noteId }, `Note for order #${o.id}`),
          el("input", { id: noteId, type: "text", maxlength: 500 }),
          el("button", { type: "button", class: "approve", onclick: (ev) => act(o, "approve", note(), ev.currentTarget) }, `Approve #${o.id}`),
          el("button", { type: "button", class: "reject", onclick: (ev) => act(o, "reject", note(), ev.currentTarget) }, `Reject #${o.id}`)
        );
      }
    }
    if ((o.status === "approved" || o.status === "executing") && hasRole("operator") && o.method !== "sale") {
      for (const a of o.allocation) {
        const left = remaining(a);
        if (Number(left) <= 0 || !inScope(a.depot)) continue;
        out.push(el("button", { type: "button", class: "execute", onclick: (ev) => act(o, "execute", { depot: a.depot, quantity_kg: left }, ev.currentTarget) }, `Execute ${kg(left)} kg at ${a.depot}`));
      }
    }
    return out;
  }

  function renderOrders() {
    const filter = $("orders-filters").elements.status.value;
    const list = state.orders.filter((o) => !filter || o.status === filter);
    const roles = [];
    if (hasRole("approver")) roles.push("approve or reject orders proposed by someone else");
    if (hasRole("operator")) roles.push("execute approved direct orders at depots in your scope");
    $("orders-note").textContent = roles.length
      ? `Your token may ${roles.join(", and ")}. The server checks every action.`
      : "Your token has neither the approver nor the operator role: orders are read-only here.";
    const cards = list.map((o) =>
      el(
        "article",
        { class: "order", "data-order": o.id, "aria-labelledby": `order-${o.id}` },
        el("h3", { id: `order-${o.id}` }, `#${o.id} ${o.kind.replace(/_/g, " ")} · ${o.element} ${o.form} ${o.grade}`, " ", el("span", { class: "badge status-" + o.status, "data-status": o.status }, o.status)),
        el("p", {}, `${kg(o.quantity_kg)} kg (reserved ${kg(o.reserved_kg)}, released ${kg(o.released_kg)}) · method ${o.method} · proposed by ${o.proposed_by}` + (o.approved_by ? ` · approved by ${o.approved_by}` : "")),
        el("p", { class: "hint" }, o.authority + (o.reason ? " — " + o.reason : "")),
        el("p", { class: "hint" }, "Allocation: " + (o.allocation.map((a) => `${a.depot} ${kg(a.quantity_kg)} kg by ${a.deliver_by}`).join("; ") || "none")),
        el("div", { class: "actions" }, ...orderActions(o))
      )
    );
    if (!cards.length) cards.push(el("p", {}, "No release order matches."));
    $("orders-list").replaceChildren(...cards);
  }

  // ---- live events -------------------------------------------------------

  function addAlert(kind, text, level) {
    const list = $("alerts-list");
    const item = el("li", { class: "alert level-" + (level || "info"), "data-kind": kind }, el("span", { class: "alert-kind" }, kind), " ", text, " ", el("time", {}, new Date().toISOString().slice(11, 19) + " UTC"));
    list.prepend(item);
    while (list.children.length > 50) list.lastChild.remove();
  }

  function describe(kind, d) {
    if (kind === "ledger.entry") return [`${d.kind} of ${kg(d.quantity_kg)} kg ${d.element} at ${d.depot} (seq. ${d.sequence})`, "info"];
    if (kind.startsWith("order.")) return [`order #${d.order_id} ${d.kind || ""} ${d.element || ""}: ${d.from || "new"} → ${d.to}${d.actor ? " by " + d.actor : ""}`, kind === "order.proposed" ? "warn" : "info"];
    if (kind === "rule.fired") return [`rule ${d.rule_id} fired for ${d.element}: imports down ${d.drop_percent}%` + (d.order_id ? `, order #${d.order_id} proposed` : ""), "alarm"];
    if (kind === "count.flagged") return [`count ${d.count_id} at ${d.depot} (${d.element}) off by ${kg(d.variance_kg)} kg`, "alarm"];
    if (kind === "exchange.overdue") return [`exchange order #${d.order_id} (${d.element}) overdue since ${d.return_due}: ${kg(d.owed_kg)} kg owed`, "alarm"];
    if (kind === "audit.report_issued") return [`audit report ${d.report_id} issued for ${d.period || ""}`, "info"];
    return [JSON.stringify(d).slice(0, 200), "info"];
  }

  // A position is "sequence" or "sequence.sub", ordered as an integer pair.
  function position(id) {
    const [seq, sub] = String(id).split(".");
    return [Number(seq), Number(sub || 0)];
  }

  function isAfter(a, b) {
    const [x, y] = [position(a), position(b)];
    return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  }

  function onEvent(ev) {
    // A resumed stream starts after the last position seen; anything at or
    // before it (a replay) has been shown already.
    if (ev.lastEventId) {
      if (state.lastEventId && !isAfter(ev.lastEventId, state.lastEventId)) return;
      state.lastEventId = ev.lastEventId;
    }
    let data = {};
    try {
      data = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    const [text, level] = describe(ev.type, data);
    addAlert(ev.type, text, level);
    if (ev.type === "ledger.entry") scheduleRefresh({ stock: true });
    else if (ev.type.startsWith("order.") || ev.type === "rule.fired") scheduleRefresh({ stock: true, orders: true });
  }

  const EVENT_TYPES = ["ledger.entry", "order.proposed", "order.approved", "order.rejected", "order.cancelled", "order.executing", "order.completed", "order.offered", "order.awarded", "order.returned", "rule.fired", "count.flagged", "exchange.overdue", "audit.report_issued"];

  // EventSource cannot send headers, so each connection uses a single-use
  // ticket bought with the bearer token; on a drop, a new ticket and the last
  // position seen resume the stream where it stopped.
  async function connectEvents() {
    if (!state.token) return;
    if (state.events) state.events.close();
    state.events = null;
    const live = $("live-state");
    let ticket;
    try {
      ticket = await api("/events/tickets", { method: "POST", body: {} });
    } catch (e) {
      live.textContent = `Live updates unavailable (${e.message}); retrying in 30 s.`;
      live.dataset.state = "down";
      setTimeout(connectEvents, 30000);
      return;
    }
    const q = new URLSearchParams({ ticket: ticket.ticket });
    if (state.lastEventId) q.set("after", state.lastEventId);
    const source = new EventSource(`${API}/events?${q}`);
    state.events = source;
    source.onopen = () => {
      live.textContent = "Live updates: connected";
      live.dataset.state = "up";
    };
    source.onerror = () => {
      if (state.events !== source) return;
      source.close();
      state.events = null;
      live.textContent = "Live updates: reconnecting…";
      live.dataset.state = "down";
      setTimeout(connectEvents, 2000);
    };
    source.onmessage = onEvent;
    for (const t of EVENT_TYPES) source.addEventListener(t, onEvent);
  }

  // ---- views and start-up ------------------------------------------------

  function showView(name) {
    const views = ["elements", "depots", "ledger", "orders"];
    if (!views.includes(name)) name = "elements";
    for (const v of views) $("view-" + v).hidden = v !== name;
    for (const t of document.querySelectorAll(".tab")) {
      if (t.dataset.view === name) t.setAttribute("aria-current", "page");
      else t.removeAttribute("aria-current");
    }
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (name === "ledger") loadLedger(false);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      if (!token) {
        $("signin-error").textContent = "Paste a token first.";
        return;
      }
      signIn(token);
    });
    $("signout").addEventListener("click", () => signOut(""));
    for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showView(t.dataset.view));
    $("ledger-filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      loadLedger(false);
    });
    $("ledger-more").addEventListener("click", () => loadLedger(true));
    $("ledger-csv").addEventListener("click", downloadCsv);
    $("orders-filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      renderOrders();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $("token").focus();
  });
})();
