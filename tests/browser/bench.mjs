// Time to first render of the Alerts page with 1,000 alerts, in headless Chromium: the time
// from navigation start until the page has fetched the alerts and built its table
// (`document.body.dataset.ready`, set then). Prints the median of 11 loads, and the size of the
// page's assets (one document; nothing else is loaded). Run: `node tests/browser/bench.mjs`.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { stopServer } from "./launch.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TOCSIN_BIN || join(here, "../../target/release/tocsin");
const N = Number(process.env.ALERTS || 1000);
const dir = mkdtempSync(join(tmpdir(), "tocsin-bench-"));
const port = 18000 + Math.floor(Math.random() * 2000);
const api = `http://127.0.0.1:${port}/api/v1`;
const server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "store")], { stdio: "ignore" });
try {
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${api}/healthz`)).ok) break; } catch { /* not up */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  for (let start = 0; start < N; start += 50) {
    await Promise.all(Array.from({ length: Math.min(50, N - start) }, (_, k) => {
      const i = start + k;
      const project = `project-${i % 10}`;
      return fetch(`${api}/projects/${project}/alerts/alert-${i}`, { method: "PUT", body: JSON.stringify({
        summary: "Model {{entity}} drifts", severity: ["low", "medium", "high"][i % 3],
        criteria: { count: 3, period: "10m", per_entity: true }, trigger: { events: ["data-drift-detected"] },
        entities: { kind: "model-endpoint-result", project, ids: ["*"] },
        notifications: [{ notification: { kind: "webhook", name: "hook", secret_params: { url: "http://127.0.0.1:9/h" } } }],
      }) });
    }));
  }
  // Some are active, as on a bad day.
  for (let i = 0; i < 30; i++) {
    await fetch(`${api}/projects/project-${i % 10}/events/data-drift-detected`, { method: "POST",
      body: JSON.stringify({ entity: { kind: "model-endpoint-result", project: `project-${i % 10}`, ids: ["ep"] } }) });
  }
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  const times = [];
  for (let run = 0; run < 11; run++) {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/alerts`);
    await page.waitForFunction(() => document.body.dataset.ready);
    const rows = await page.locator("#alerts tbody tr").count();
    if (rows !== N) throw new Error(`rendered ${rows} rows, not ${N}`);
    times.push(Number(await page.evaluate(() => document.body.dataset.ready)));
    await page.close();
  }
  await browser.close();
  times.sort((a, b) => a - b);
  const html = readFileSync(join(here, "../../functions/adapters/assets/alerts.html"));
  console.log(`alerts: ${N}; first render (navigation start to table built), 11 loads: median ${times[5].toFixed(0)} ms, min ${times[0].toFixed(0)} ms, max ${times[10].toFixed(0)} ms`);
  console.log(`assets: 1 file, ${html.length} bytes (${gzipSync(html).length} gzipped)`);
} finally {
  await stopServer(server);
  rmSync(dir, { recursive: true, force: true });
}
