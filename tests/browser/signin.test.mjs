// Signing in to the Alerts page of a server with auth on, in real headless Chromium: a viewer
// sees the alerts with the buttons its role cannot use disabled (and why); a responder
// acknowledges under its token's name; a revoked token returns to the sign-in form.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";
import { LAUNCH, stopServer } from "./launch.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TOCSIN_BIN || join(here, "../../target/debug/tocsin");
const SHOTS = join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });

let server, base, api, browser, dir, admin;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function as(token, method, path, body) {
  const r = await fetch(`${api}${path}`, {
    method, headers: { Authorization: `Bearer ${token}` }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function token(role, name) {
  const r = await as(admin, "POST", "/tokens", { role, projects: "fraud", name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "tocsin-signin-"));
  const store = join(dir, "store");
  // The first admin token, made on the data directory before the server starts.
  admin = execFileSync(BIN, ["token", "create", "--data-dir", store, "--role", "admin", "--project", "*", "--name", "root"], { encoding: "utf8" }).trim();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  api = `${base}/api/v1`;
  server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", store], {
    stdio: "ignore", env: { ...process.env, TOCSIN_AUTH__ENABLED: "true" },
  });
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${api}/healthz`)).ok) break; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await chromium.launch(LAUNCH);
  const alert = {
    summary: "Job {{entity}} failed", severity: "high", reset_policy: "manual",
    criteria: { count: 1 }, trigger: { events: ["failed"] },
    entities: { kind: "job", project: "fraud", ids: ["*"] },
    notifications: [{ notification: { kind: "webhook", name: "hook", secret_params: { url: "http://127.0.0.1:9/hook" } } }],
  };
  assert.equal((await as(admin, "PUT", "/projects/fraud/alerts/training-failed", alert)).status, 200);
  const ev = { entity: { kind: "job", project: "fraud", ids: ["train-1"] } };
  assert.equal((await as(admin, "POST", "/projects/fraud/events/failed", ev)).status, 200);
});

after(async () => {
  await browser?.close();
  await stopServer(server);
  rmSync(dir, { recursive: true, force: true });
});

async function signIn(page, text) {
  await page.locator("#signin[open]").waitFor();
  await page.locator("#token").fill(text);
  await page.locator("#signin-submit").click();
}

test("a viewer sees the alerts, and every button its role cannot use is disabled with the reason", async () => {
  const viewer = await token("viewer", "dashboard");
  const page = await browser.newPage();
  await page.goto(`${base}/alerts`);
  // No token yet: the sign-in form, and no alerts behind it.
  await page.locator("#signin[open]").waitFor();
  assert.equal(await page.locator("#alerts tbody tr").count(), 0);
  await page.screenshot({ path: join(SHOTS, "signin.png") });
  await signIn(page, "tcn_000000000000_" + "0".repeat(64));
  await page.locator("#signin-error", { hasText: /not valid|refused/ }).waitFor();
  assert.ok(await page.locator("#signin[open]").isVisible(), "a wrong token does not sign in");

  await signIn(page, viewer.token);
  const row = page.locator('tr[data-key="fraud/training-failed"]');
  await row.waitFor();
  assert.equal(await page.locator("#signin[open]").count(), 0);
  assert.match(await page.locator("#who").textContent(), /Signed in as dashboard \(viewer on fraud\)/);
  assert.ok(await page.locator("#me-label").isHidden(), "the token's name is used, not a typed one");
  for (const [label, role] of [["Acknowledge", "responder"], ["Reset", "responder"], ["Edit", "editor"], ["Delete", "editor"]]) {
    const b = row.getByRole("button", { name: `${label} training-failed in fraud` });
    assert.ok(await b.isDisabled(), `${label} is disabled for a viewer`);
    assert.match(await b.getAttribute("title"), new RegExp(`Needs the ${role} role on fraud; dashboard has viewer on fraud`));
  }
  assert.ok(await row.getByRole("button", { name: "History of training-failed in fraud" }).isEnabled());
  assert.ok(await page.getByRole("button", { name: "New alert from JobFailed" }).isDisabled());
  await page.screenshot({ path: join(SHOTS, "viewer.png"), fullPage: true });
  // The token is kept for the tab only: not in cookies, not in localStorage.
  const ctx = page.context();
  assert.deepEqual(await ctx.cookies(), []);
  assert.equal(await page.evaluate(() => Object.keys(localStorage).some((k) => k.includes("token"))), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tocsin.token")), viewer.token);
  await page.close();
});

test("a responder acknowledges under its token's name, and a revoked token returns to sign-in", async () => {
  const responder = await token("responder", "dana-oncall");
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  await signIn(page, responder.token);
  const row = page.locator('tr[data-key="fraud/training-failed"]');
  await row.waitFor();
  const ack = row.getByRole("button", { name: "Acknowledge training-failed in fraud" });
  assert.ok(await ack.isEnabled());
  assert.ok(await row.getByRole("button", { name: "Edit training-failed in fraud" }).isDisabled());
  await ack.click();
  await row.locator(".ack", { hasText: /acknowledged by dana-oncall/ }).waitFor();
  const stored = await as(admin, "GET", "/projects/fraud/alerts/training-failed");
  assert.equal(stored.body.acknowledged.by, "dana-oncall");
  const audit = await as(admin, "GET", "/projects/fraud/audit");
  assert.deepEqual(audit.body.entries[0], { ...audit.body.entries[0], action: "alert.acknowledge", by: "dana-oncall" });

  // The audit list on the page says who did it.
  await page.locator("#audit summary").click();
  const first = page.locator("#audit-rows tr").first();
  await first.waitFor();
  assert.match(await first.textContent(), /fraudalert\.acknowledgetraining-faileddana-oncall/);

  // Revoked while the page is open: the next refresh asks for a token again.
  assert.equal((await as(admin, "DELETE", `/tokens/${responder.id}`)).status, 204);
  await page.locator("#signin[open]").waitFor({ timeout: 10000 });
  assert.match(await page.locator("#signin-error").textContent(), /refused/);
  await page.close();
});
