// The dashboard in a real browser: Debian's chromium, driven by playwright-core,
// against a `reserve serve --demo` started by scripts/browser-tests.sh, which
// passes RESERVE_URL, BACKEND, ARTIFACTS and the demo's *_TOKEN variables.
// Every request any page makes is recorded; the last test checks that none of
// them left loopback.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = required("RESERVE_URL");
const BACKEND = required("BACKEND");
const ARTIFACTS = required("ARTIFACTS");
const TOKENS = {
  viewer: required("VIEWER_TOKEN"),
  operator: required("OPERATOR_TOKEN"),
  approver: required("APPROVER_TOKEN"),
  admin: required("ADMIN_TOKEN"),
};

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/browser-tests.sh`);
  return v;
}

let browser;
const requests = [];

async function api(path, token, init = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(init.headers || {}) };
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["Idempotency-Key"] = crypto.randomUUID();
  }
  const res = await fetch(BASE + "/api/v1" + path, {
    method: init.method || "GET",
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

// Whether this server has the event stream (the live-update test is pending without it).
const streamMissing = (await api("/events/tickets", TOKENS.viewer, { method: "POST", body: {} })).status === 404;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    // playwright passes a fresh --user-data-dir of its own (a new temporary
    // profile, removed on close) and refuses one in args.
  });
});

after(async () => {
  if (browser) await browser.close();
});

/** A fresh tab (own sessionStorage) whose every request is recorded. */
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  context.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  return { context, page, problems };
}

async function signIn(page, token) {
  await page.goto(BASE + "/");
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#elements-table tbody tr").first().waitFor();
}

async function shot(page, name, fullPage = false) {
  await page.screenshot({ path: join(ARTIFACTS, name + ".png"), fullPage });
}

/** The problems a page logged, less the ticket's 404 while the stream is not built. */
function realProblems(problems) {
  return streamMissing ? problems.filter((p) => !/status of 404 \(Not Found\)/.test(p)) : problems;
}

test("signing in shows all 17 elements, and the token stays in this tab's session", async () => {
  const { context, page, problems } = await openPage();
  await page.goto(BASE + "/");
  assert.equal(await page.locator("#app").isHidden(), true, "nothing but the sign-in form before a token");
  await shot(page, "signin");

  // A wrong token is refused with a message, and nothing is kept.
  await page.getByLabel("Bearer token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#signin-error", { hasText: "not a JWT" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("reserve.token")), null);

  await signIn(page, TOKENS.viewer);
  const symbols = await page.locator("#elements-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.element));
  assert.deepEqual(symbols, ["Sc", "Y", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu"]);
  const summary = (await api("/summary", TOKENS.viewer)).body;
  const nd = summary.elements.find((e) => e.element === "Nd");
  const shown = await page.locator('#elements-table tr[data-element="Nd"] td.holding').textContent();
  assert.equal(shown.replace(/,/g, ""), nd.on_hand_kg, "the holding is the server's exact figure");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("reserve.token")), TOKENS.viewer);
  assert.match(await page.locator("#whoami").textContent(), /demo-viewer \(viewer\)/);

  // A reload keeps the session; the element view, its chart and the depots render.
  await page.reload();
  await page.locator('#elements-table button[data-element="Dy"]').click();
  await page.locator("#imports-chart svg rect").first().waitFor();
  const bars = await page.locator("#imports-chart svg rect").count();
  assert.ok(bars >= 24, `a bar per month and origin (${bars})`);
  assert.ok((await page.locator("#element-orders tbody tr").count()) >= 1);
  await shot(page, "elements", true);
  if (BACKEND === "sqlite" && process.env.UPDATE_DOCS_SCREENSHOT === "1") {
    copyFileSync(join(ARTIFACTS, "elements.png"), new URL("../../docs/dashboard.png", import.meta.url));
  }
  await page.getByRole("button", { name: "Depots" }).click();
  assert.equal(await page.locator("#depots-list article").count(), 5);
  await shot(page, "depots");
  assert.deepEqual(realProblems(problems), []);
  await context.close();
});

test("an approver approves the proposed order by clicking", async () => {
  const proposed = (await api("/release-orders?status=proposed", TOKENS.viewer)).body.items;
  assert.ok(proposed.length >= 1, "the demo seeds a proposed order");
  const order = proposed[0];
  const { context, page, problems } = await openPage();
  await signIn(page, TOKENS.approver);
  await page.getByRole("button", { name: "Orders" }).click();
  const card = page.locator(`article[data-order="${order.id}"]`);
  await card.getByLabel(`Note for order #${order.id}`).fill("approved in the browser test");
  await shot(page, "orders-before");
  await card.getByRole("button", { name: `Approve #${order.id}` }).click();
  await card.locator('[data-status="approved"]').waitFor();
  await shot(page, "orders-after");
  const now = (await api(`/release-orders/${order.id}`, TOKENS.viewer)).body;
  assert.equal(now.status, "approved");
  assert.equal(now.approved_by, "demo-approver");
  assert.equal(now.history.at(-1).note, "approved in the browser test");
  assert.deepEqual(realProblems(problems), []);
  await context.close();

  // A viewer sees no buttons at all.
  const viewer = await openPage();
  await signIn(viewer.page, TOKENS.viewer);
  await viewer.page.getByRole("button", { name: "Orders" }).click();
  await viewer.page.locator("#orders-list article").first().waitFor();
  assert.equal(await viewer.page.locator("#orders-list button").count(), 0);
  await viewer.context.close();
});

test("the ledger downloads as CSV with the filters applied", async () => {
  const { context, page, problems } = await openPage();
  await signIn(page, TOKENS.viewer);
  await page.getByRole("button", { name: "Ledger" }).click();
  await page.locator("#ledger-table tbody tr").first().waitFor();
  await page.getByLabel("Element", { exact: true }).selectOption("Dy");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.waitForFunction(() => [...document.querySelectorAll("#ledger-table tbody tr td:nth-child(5)")].every((td) => td.textContent === "Dy"));
  await shot(page, "ledger");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  assert.match(download.suggestedFilename(), /^ledger-\d{4}-\d{2}-\d{2}\.csv$/);
  const path = join(ARTIFACTS, "ledger-dy.csv");
  await download.saveAs(path);
  const lines = readFileSync(path, "utf8").trim().split("\n");
  const header = lines[0].split(",");
  assert.deepEqual(header.slice(0, 5), ["sequence", "kind", "stockpile_id", "depot", "element"]);
  const element = header.indexOf("element");
  const rows = lines.slice(1);
  assert.ok(rows.length > 0);
  assert.ok(rows.every((r) => r.split(",")[element] === "Dy"), "every row is dysprosium");

  // The same entries as the JSON API, every page of them.
  const sequences = [];
  let cursor = null;
  do {
    const page = (await api(`/ledger?element=Dy&limit=1000${cursor ? "&cursor=" + cursor : ""}`, TOKENS.viewer)).body;
    sequences.push(...page.items.map((i) => String(i.sequence)));
    cursor = page.next_cursor;
  } while (cursor);
  assert.deepEqual(rows.map((r) => r.split(",")[0]), sequences);
  assert.deepEqual(realProblems(problems), []);
  await context.close();
});


test(
  "an acquisition posted through the API shows on the page without a reload (event stream)",
  { todo: streamMissing ? "PENDING: POST /api/v1/events/tickets answers 404: the event stream is not on this branch yet" : false },
  async () => {
    assert.equal(streamMissing, false, "POST /api/v1/events/tickets answers 404");
    const { context, page, problems } = await openPage();
    await signIn(page, TOKENS.viewer);
    await page.locator('#live-state[data-state="up"]').waitFor({ timeout: 10000 });
    await page.evaluate(() => {
      window.__notReloaded = true;
    });
    const stock = (await api("/stockpiles?element=Sm&limit=1", TOKENS.viewer)).body.items[0];
    const posted = await api("/acquisitions", TOKENS.operator, {
      method: "POST",
      body: { depot: stock.depot, element: "Sm", form: stock.form, grade: stock.grade, quantity_kg: "1234.567", reference: "browser-test" },
    });
    assert.equal(posted.status, 201, JSON.stringify(posted.body));
    const expected = (await api("/summary", TOKENS.viewer)).body.elements.find((e) => e.element === "Sm").on_hand_kg;
    const [int, frac] = expected.split(".");
    const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + frac;
    await page.locator('#elements-table tr[data-element="Sm"] td.holding', { hasText: grouped }).waitFor({ timeout: 10000 });
    await page.locator('#alerts-list li[data-kind="ledger.entry"]', { hasText: "Sm" }).waitFor();
    assert.equal(await page.evaluate(() => window.__notReloaded), true, "the page was not reloaded");
    await shot(page, "live-update");
    assert.deepEqual(realProblems(problems), []);
    await context.close();
  }
);

test("no request the pages made left loopback", () => {
  assert.ok(requests.length > 20, `requests were recorded (${requests.length})`);
  const outside = requests.filter((u) => {
    if (u.startsWith("blob:") || u.startsWith("data:")) return false;
    const host = new URL(u).hostname;
    return !(host === "127.0.0.1" || host === "localhost" || host === "[::1]");
  });
  assert.deepEqual(outside, []);
});
