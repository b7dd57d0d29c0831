// The Alerts page in real headless Chromium (Debian's), driven by playwright-core, against a
// real `tocsin serve`. Every step is checked on the page and against the API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import http from "node:http";
import { chromium } from "playwright-core";
import { LAUNCH, stopServer } from "./launch.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TOCSIN_BIN || join(here, "../../target/debug/tocsin");
const SHOTS = join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });


function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

let server, base, api, browser, dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "tocsin-page-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  api = `${base}/api/v1`;
  server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "store")], { stdio: "ignore" });
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${api}/healthz`)).ok) break; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await chromium.launch(LAUNCH);
});

after(async () => {
  await browser?.close();
  await stopServer(server);
  rmSync(dir, { recursive: true, force: true });
});

async function put(project, name, body) {
  const r = await fetch(`${api}/projects/${project}/alerts/${name}`, { method: "PUT", body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.text());
}

async function getAlert(project, name) {
  const r = await fetch(`${api}/projects/${project}/alerts/${name}`);
  return { status: r.status, body: await r.json() };
}

async function fail(project, entity) {
  const r = await fetch(`${api}/projects/${project}/events/failed`, {
    method: "POST", body: JSON.stringify({ entity: { kind: "job", project, ids: [entity] }, value_dict: { error: "OOM" } }),
  });
  assert.equal(r.status, 200, await r.text());
}

const jobAlert = (reset, extra = {}) => ({
  summary: "Job {{entity}} failed", severity: "high", reset_policy: reset,
  criteria: { count: 2, period: "1h" }, trigger: { events: ["failed"] },
  entities: { kind: "job", project: "fraud", ids: ["*"] },
  notifications: [{ notification: { kind: "webhook", name: "hook", secret_params: { url: "http://127.0.0.1:9/hook" } } }],
  ...extra,
});

test("an on-call person follows an alert from firing to deletion without reloading", async () => {
  await put("fraud", "training-failed", jobAlert("manual"));
  await put("fraud", "drift", {
    severity: "low", trigger: { events: ["data-drift-detected"] },
    entities: { kind: "model-endpoint-result", project: "fraud", ids: ["ep-*"] },
  });
  await put("churn", "churn-failed", { ...jobAlert("auto"), entities: { kind: "job", project: "churn", ids: ["*"] }, severity: "medium" });

  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/alerts`);
  const row = (name) => page.locator(`tr[data-key$="/${name}"]`);
  await row("training-failed").waitFor();
  assert.equal(await page.locator("#alerts tbody tr").count(), 3);
  assert.equal(await row("training-failed").getAttribute("data-state"), "inactive");
  await page.screenshot({ path: join(SHOTS, "alerts-inactive.png"), fullPage: true });

  // Filters.
  await page.selectOption("#f-project", "churn");
  await page.waitForFunction(() => document.querySelectorAll("#alerts tbody tr").length === 1);
  await page.selectOption("#f-project", "");
  await page.selectOption("#f-severity", "low");
  await page.waitForFunction(() => document.querySelectorAll("#alerts tbody tr").length === 1);
  await page.selectOption("#f-severity", "");

  // While nothing changes, the page's polls are answered 304 (its ETag still holds): the
  // server reads one version, not every alert.
  const listingPoll = (r) => /\/projects\/(\*|%2A)\/alerts$/.test(r.url());
  const unchanged = await page.waitForResponse((r) => listingPoll(r) && r.status() === 304, { timeout: 10_000 });
  assert.ok(unchanged.request().headers()["if-none-match"]?.startsWith('W/"'), "the page sends its tag");

  // Events arrive: the alert turns active on the page by itself, and sorts first.
  const marker = await page.evaluate(() => { window.__sameDocument = true; return true; });
  await fail("fraud", "train-1");
  await fail("fraud", "train-2");
  await page.waitForFunction(() => document.querySelector('tr[data-key="fraud/training-failed"]')?.dataset.state === "active");
  assert.ok(marker && await page.evaluate(() => window.__sameDocument), "no reload happened");
  assert.equal(await page.locator("#alerts tbody tr").first().getAttribute("data-key"), "fraud/training-failed");
  assert.match(await page.locator("#summary").textContent(), /1 active of 3 alerts/);
  assert.equal((await getAlert("fraud", "training-failed")).body.state, "active");
  await page.screenshot({ path: join(SHOTS, "alerts-active.png"), fullPage: true });

  // Acknowledge: without a name the page asks for one; then who and when show.
  await row("training-failed").getByRole("button", { name: "Acknowledge training-failed in fraud" }).click();
  // A notice of an earlier action may still be up: wait for this one.
  await page.locator("#notice.shown", { hasText: /Type your name/ }).waitFor();
  assert.match(await page.locator("#notice").textContent(), /Type your name/);
  await page.fill("#me", "dana");
  await row("training-failed").getByRole("button", { name: "Acknowledge training-failed in fraud" }).click();
  await row("training-failed").locator(".ack").waitFor();
  assert.match(await row("training-failed").locator(".ack").textContent(), /acknowledged by dana/);
  const acked = (await getAlert("fraud", "training-failed")).body;
  assert.equal(acked.acknowledged.by, "dana");

  // History: the activation and its delivery result.
  await row("training-failed").getByRole("button", { name: "History of training-failed in fraud" }).click();
  await page.locator("#history-rows tr").first().waitFor();
  assert.match(await page.locator("#history-rows").textContent(), /train-2/);
  assert.equal(await page.locator("svg.timeline circle").count(), 1);

  // Reset: the history says who closed the activation.
  await row("training-failed").getByRole("button", { name: "Reset training-failed in fraud" }).click();
  await page.waitForFunction(() => document.querySelector('tr[data-key="fraud/training-failed"]')?.dataset.state === "inactive");
  await page.locator("#history-rows", { hasText: /reset by dana/ }).waitFor();
  const afterReset = (await getAlert("fraud", "training-failed")).body;
  assert.equal(afterReset.state, "inactive");
  assert.equal(afterReset.acknowledged, undefined, "a reset clears the acknowledgement");

  // Edit as rule text: a typo shows the checker's diagnostic, the fix saves.
  await row("training-failed").getByRole("button", { name: "Edit training-failed in fraud" }).click();
  await page.locator("#editor[open]").waitFor();
  const source = await page.inputValue("#source");
  assert.match(source, /when count >= 2 within 1h/);
  await page.fill("#source", source.replace("when count >= 2 within 1h", "when count >= 3 withn 30m"));
  await page.locator("#diagnostics li.error").waitFor();
  assert.match(await page.locator("#diagnostics").textContent(), /E001/);
  await page.screenshot({ path: join(SHOTS, "editor-diagnostic.png"), fullPage: true });
  await page.click("#editor-save");
  // A notice of an earlier action may still be up: wait for this one.
  await page.locator("#notice.shown", { hasText: /Not saved/ }).waitFor();
  assert.match(await page.locator("#notice").textContent(), /Not saved/);
  assert.equal((await getAlert("fraud", "training-failed")).body.criteria.count, 2, "nothing stored");
  await page.fill("#source", source.replace("when count >= 2 within 1h", "when count >= 3 within 30m"));
  await page.waitForFunction(() => document.querySelectorAll("#diagnostics li.error").length === 0);
  await page.click("#editor-save");
  await page.locator("#editor:not([open])").waitFor({ state: "attached" });
  const edited = (await getAlert("fraud", "training-failed")).body;
  assert.deepEqual([edited.criteria.count, edited.criteria.period], [3, "30m"]);
  await page.waitForFunction(() => /3 within 30m/.test(document.querySelector('tr[data-key="fraud/training-failed"]')?.textContent));

  // Edit as a form: a refusal shows the server's reason; a valid change saves through PUT.
  await row("training-failed").getByRole("button", { name: "Edit training-failed in fraud" }).click();
  await page.locator("#editor[open]").waitFor();
  await page.click("#mode-form");
  assert.equal(await page.inputValue("#x-count"), "3");
  await page.fill("#x-period", "soon");
  await page.click("#editor-save");
  // A notice of an earlier action may still be up: wait for this one.
  await page.locator("#notice.shown", { hasText: /Not saved: criteria.period/ }).waitFor();
  assert.match(await page.locator("#notice").textContent(), /Not saved: criteria.period/);
  await page.fill("#x-period", "45m");
  await page.selectOption("#x-severity", "medium");
  await page.click("#editor-save");
  await page.locator("#editor:not([open])").waitFor({ state: "attached" });
  const viaForm = (await getAlert("fraud", "training-failed")).body;
  assert.deepEqual([viaForm.severity, viaForm.criteria.period, viaForm.notifications.length], ["medium", "45m", 1]);

  // Delete, with a confirmation.
  await row("drift").getByRole("button", { name: "Delete drift in fraud" }).click();
  await page.locator("#confirm[open]").waitFor();
  await page.click("#confirm button[value=cancel]");
  assert.equal((await getAlert("fraud", "drift")).status, 200, "cancel keeps it");
  await row("drift").getByRole("button", { name: "Delete drift in fraud" }).click();
  await page.click("#confirm-delete");
  await row("drift").waitFor({ state: "detached" });
  assert.equal((await getAlert("fraud", "drift")).status, 404);
  assert.deepEqual(errors, [], "no script errors");
  await page.close();
});

test("an on-call person silences an active alert for 4 hours from its row, sees it held back, and expires the silence", async () => {
  const ops = { ...jobAlert("manual"), entities: { kind: "job", project: "ops", ids: ["*"] } };
  await put("ops", "nightly-etl", ops);
  await fail("ops", "etl-1");
  await fail("ops", "etl-2");
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/alerts`);
  const row = page.locator('tr[data-key="ops/nightly-etl"]');
  await page.waitForFunction(() => document.querySelector('tr[data-key="ops/nightly-etl"]')?.dataset.state === "active");
  await page.fill("#me", "dana");

  await row.getByRole("button", { name: "Silence nightly-etl in ops" }).click();
  await page.locator("#silencer[open]").waitFor();
  await page.click("#silencer-save");
  assert.match(await page.locator("#silencer-error").textContent(), /Say why/, "a silence needs a reason");
  await page.check('input[name="silence-for"][value="4h"]');
  await page.fill("#silence-comment", "re-running the backfill");
  await page.click("#silencer-save");
  await page.locator("#silencer:not([open])").waitFor({ state: "attached" });

  // The row is marked, and the Silences table lists it with who and why.
  await row.locator(".silenced", { hasText: /silenced by dana until/ }).waitFor();
  const silenceRow = page.locator('#silence-rows tr[data-state="active"]');
  await silenceRow.waitFor();
  assert.match(await silenceRow.textContent(), /alert nightly-etl.*dana.*re-running the backfill/);
  const listed = await (await fetch(`${api}/projects/ops/silences`)).json();
  assert.equal(listed.silences.length, 1);
  const made = listed.silences[0];
  const hours = (Date.parse(made.ends_at) - Date.parse(made.starts_at)) / 3600e3;
  assert.ok(Math.abs(hours - 4) < 0.01, `4 hours, got ${hours}`);
  assert.equal(made.created_by, "dana");
  await page.screenshot({ path: join(SHOTS, "alerts-silenced.png"), fullPage: true });

  // Reset, and it fires again: recorded, its notification held back by the silence.
  await row.getByRole("button", { name: "Reset nightly-etl in ops" }).click();
  await page.waitForFunction(() => document.querySelector('tr[data-key="ops/nightly-etl"]')?.dataset.state === "inactive");
  await fail("ops", "etl-3");
  await fail("ops", "etl-4");
  const acts = await (await fetch(`${api}/projects/ops/alerts/nightly-etl/activations`)).json();
  assert.equal(acts.activations.length, 2);
  const held = acts.activations[0].deliveries[0];
  assert.equal(held.status, "suppressed");
  assert.match(held.error, /^silenced by dana: re-running the backfill, until /);
  assert.equal(held.silence, made.id);
  assert.equal(acts.activations[1].deliveries[0].status === "suppressed", false, "the first firing was before the silence");

  // Expire it from the table: it is listed as expired, and the row is no longer marked.
  await page.getByRole("button", { name: `Expire silence ${made.id}` }).click();
  await page.locator('#silence-rows tr[data-state="expired"]').waitFor();
  await row.locator(".silenced").waitFor({ state: "detached" });
  const after = await (await fetch(`${api}/projects/ops/silences/${made.id}`)).json();
  assert.deepEqual([after.state, after.expired_by], ["expired", "anonymous"]);
  assert.deepEqual(errors, [], "no script errors");
  await page.close();
});

test("an absence alert turns active on the page when a job goes silent, and its activation closes when it reports", async () => {
  await put("ops", "etl-silent", {
    summary: "{{entity}} went silent", severity: "medium", reset_policy: "auto",
    criteria: { absent: "2s", must_report: ["etl-nightly"] }, trigger: { events: ["failed"] },
    entities: { kind: "job", project: "ops", ids: ["etl-*"] },
    notifications: [{ notification: { kind: "webhook", name: "hook", secret_params: { url: "http://127.0.0.1:9/hook" } }, send_resolved: true }],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/alerts`);
  const row = page.locator('tr[data-key="ops/etl-silent"]');
  await row.waitFor();
  assert.match(await row.textContent(), /silent for 2s \(awaits etl-nightly\)/);
  // Nothing arrives: the server's clock fires the absence by itself, and the page shows it.
  await page.waitForFunction(() => document.querySelector('tr[data-key="ops/etl-silent"]')?.dataset.state === "active", null, { timeout: 15_000 });
  const acts = await (await fetch(`${api}/projects/ops/alerts/etl-silent/activations`)).json();
  assert.equal(acts.activations[0].entity_id, "etl-nightly");
  assert.equal(acts.activations[0].number_of_events, 0);
  // It reports: the absence closes by itself (and, silent again, fires again two seconds
  // later, so the page's 2 s poll may not see it inactive), and the history says why.
  await fail("ops", "etl-nightly");
  const closed = await (await fetch(`${api}/projects/ops/alert-activations/${acts.activations[0].id}`)).json();
  assert.equal(closed.resolution, "events came back");
  await row.getByRole("button", { name: "History of etl-silent in ops" }).click();
  await page.locator("#history-rows", { hasText: /events came back/ }).waitFor();
  assert.match(await page.locator("#history-rows").textContent(), /hook \(resolved\)/);
  assert.deepEqual(errors, [], "no script errors");
  await page.close();
});

test("Why? explains an event clause by clause, and the editor's backtest charts what its text would have done beside the stored alert", async () => {
  await put("lab", "why-drift", {
    summary: "{{entity}} drifts", severity: "high", reset_policy: "auto",
    criteria: { count: 2, period: "1h", per_entity: true }, trigger: { events: ["data-drift-detected"] },
    entities: { kind: "model-endpoint-result", project: "lab", ids: ["ep-*"] },
    filter: { field: "result_value", op: ">", value: 0.7 },
  });
  for (const v of [0.9, 0.5, 0.8]) {
    const r = await fetch(`${api}/projects/lab/events/data-drift-detected`, {
      method: "POST", body: JSON.stringify({ entity: { kind: "model-endpoint-result", project: "lab", ids: ["ep-1"] }, value_dict: { result_value: v } }),
    });
    assert.equal(r.status, 200, await r.text());
  }
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/alerts`);
  const row = page.locator('tr[data-key="lab/why-drift"]');
  await row.waitFor();

  // An event of my own: the filter's comparison fails, and the page says with what value.
  await row.getByRole("button", { name: "Why why-drift in lab" }).click();
  await page.locator("#why[open]").waitFor();
  await page.fill("#why-entity", "ep-1");
  await page.fill("#why-values", '{"result_value": 0.4}');
  await page.getByRole("button", { name: "Explain this event" }).click();
  const verdict = page.locator("#why-out .verdict").first();
  await verdict.waitFor();
  assert.equal(await verdict.getAttribute("data-outcome"), "ignored");
  assert.equal(await page.locator('#why-out li[data-clause="where"]').getAttribute("class"), "no");
  assert.match(await page.locator("#why-out .check").first().textContent(), /value\.result_value > 0\.7 — the event has 0\.4/);

  // The entity's recorded events, each on the state rebuilt from the record: the third fired.
  await page.getByRole("button", { name: "Explain its last 5 recorded events" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#why-out .explained").length === 3);
  const outcomes = await page.locator("#why-out .verdict").evaluateAll((ps) => ps.map((p) => p.dataset.outcome));
  assert.deepEqual(outcomes, ["counted", "ignored", "fires"]);
  await page.screenshot({ path: join(SHOTS, "why.png"), fullPage: true });
  await page.getByRole("button", { name: "Close" }).click();

  // The editor: the same alert needing one event would have fired twice; the stored one once.
  await row.getByRole("button", { name: "Edit why-drift in lab" }).click();
  await page.locator("#editor[open]").waitFor();
  const source = await page.inputValue("#source");
  assert.match(source, /when count >= 2 within 1h per entity/);
  await page.fill("#source", source.replace("count >= 2", "count >= 1"));
  await page.getByRole("button", { name: "Backtest on the last 7 days" }).click();
  await page.locator("#backtest-says", { hasText: /would have fired/ }).waitFor();
  assert.match(await page.locator("#backtest-says").textContent(), /why-drift would have fired 2 times in the last 7 days \(3 events\); the stored one fired 1\./);
  const bars = await page.locator("#backtest-chart rect.would[data-day]").evaluateAll((rs) => rs.reduce((n, r) => n + Number(r.dataset.count), 0));
  const stored = await page.locator("#backtest-chart rect.did[data-day]").evaluateAll((rs) => rs.reduce((n, r) => n + Number(r.dataset.count), 0));
  assert.deepEqual([bars, stored], [2, 1], "the chart's bars say the same");
  assert.ok(await page.locator("#backtest-chart").isVisible(), "the chart shows");
  await page.screenshot({ path: join(SHOTS, "backtest.png"), fullPage: true });
  await page.locator("#editor-cancel").click();
  assert.equal((await getAlert("lab", "why-drift")).body.criteria.count, 2, "a backtest stores nothing");
  assert.deepEqual(errors, [], "no script errors");
  await page.close();
});

test("a new alert from a template, keyboard only, in the dark theme", async () => {
  const page = await browser.newPage({ colorScheme: "dark" });
  await page.goto(`${base}/`);
  await page.locator("#templates tr").first().waitFor();
  const use = page.getByRole("button", { name: "New alert from JobFailed" });
  await use.focus();
  await page.keyboard.press("Enter");
  await page.locator("#editor[open]").waitFor();
  const source = await page.inputValue("#source");
  assert.match(source, /alert my-alert extends JobFailed/);
  await page.fill("#source", source.replace("my-project", "ops").replace("my-alert", "jobs-down"));
  await page.waitForFunction(() => document.querySelectorAll("#diagnostics li.error").length === 0);
  await page.locator("#editor-save").focus();
  await page.keyboard.press("Enter");
  await page.locator('tr[data-key="ops/jobs-down"]').waitFor();
  const stored = await getAlert("ops", "jobs-down");
  assert.equal(stored.status, 200);
  assert.deepEqual(stored.body.trigger.events, ["failed"]);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, "rgb(17, 20, 24)", "dark theme");
  await page.screenshot({ path: join(SHOTS, "alerts-dark.png"), fullPage: true });
  await page.close();
});

test("an empty server says so, and a refused action shows the server's reason", async () => {
  const port = await freePort();
  const empty = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "empty")], { stdio: "ignore" });
  try {
    for (let i = 0; i < 200; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/api/v1/healthz`)).ok) break; } catch { /* not up */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/alerts`);
    await page.locator("#empty:not([hidden])").waitFor();
    assert.match(await page.locator("#empty").textContent(), /No alerts yet/);
    // Save a rule for another project than its path: the server refuses, the page says why.
    await page.getByRole("button", { name: "New alert from failed" }).click();
    await page.fill("#source", "project p\n\nalert a {\n  on failed\n  severity huge\n}\n");
    await page.click("#editor-save");
    // A notice of an earlier action may still be up: wait for this one.
    await page.locator("#notice.shown", { hasText: /Not saved: The rule has 1 error/ }).waitFor();
    assert.match(await page.locator("#notice").textContent(), /Not saved: The rule has 1 error/);
    assert.match(await page.locator("#diagnostics").textContent(), /unknown severity `huge`/);
    await page.close();
  } finally {
    empty.kill("SIGTERM");
  }
});

test("Test sends a marked message through each notification and shows what each receiver answered", async () => {
  // A real HTTP listener: the webhook takes the message, the "Slack" one refuses it with a body.
  const arrived = [];
  const receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      arrived.push({ path: req.url, body: JSON.parse(body || "null") });
      if (req.url === "/slack") { res.writeHead(404); res.end("no_service"); } else { res.writeHead(200); res.end("ok"); }
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const at = `http://127.0.0.1:${receiver.address().port}`;
  try {
    await put("tests", "tested", {
      ...jobAlert("auto"), entities: { kind: "job", project: "tests", ids: ["*"] },
      notifications: [
        { notification: { kind: "webhook", name: "hook", secret_params: { url: `${at}/hook` } } },
        { notification: { kind: "slack", name: "chat", secret_params: { webhook: `${at}/slack` } } },
      ],
    });
    const page = await browser.newPage();
    await page.goto(`${base}/alerts`);
    await page.getByRole("button", { name: "Send a test message for tested in tests" }).click();
    await page.locator('#tested-out li[data-notification="chat"]').waitFor();
    assert.equal(await page.locator('#tested-out li[data-notification="hook"]').getAttribute("data-outcome"), "sent");
    assert.match(await page.locator('#tested-out li[data-notification="hook"]').textContent(), /hook \(webhook\): sent · HTTP 200/);
    assert.equal(await page.locator('#tested-out li[data-notification="chat"]').getAttribute("data-outcome"), "refused");
    assert.match(await page.locator('#tested-out li[data-notification="chat"]').textContent(), /HTTP 404 · it said: no_service/);
    await page.screenshot({ path: join(SHOTS, "alerts-test-message.png"), fullPage: true });
    // What arrived is marked as a test; nothing was recorded on the alert.
    const hook = arrived.find((r) => r.path === "/hook");
    assert.equal(hook.body.test, true);
    assert.equal((await getAlert("tests", "tested")).body.state, "inactive");
    const acts = await (await fetch(`${api}/projects/tests/alert-activations`)).json();
    assert.equal(acts.activations.length, 0);
    await page.click("#tested-close");
    await page.close();
  } finally {
    receiver.close();
  }
});
