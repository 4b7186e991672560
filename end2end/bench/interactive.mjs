// How long the configuration page takes to become usable inside the portal, in real Chromium on loopback:
// from the moment the portal's iframe starts loading (the Settings URL, then the OAuth round trip through the
// portal, then the page, its CSS and wasm) until the hydrated form answers clicks (`data-interactive="true"`).
// Usage: node interactive.mjs <portal-url> <user> [runs]. Prints one JSON line with p50/p90/max in ms.
import { chromium } from "@playwright/test";

const [portal, user, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 15);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext();
// In every document: note the wall-clock moment the form reports itself interactive.
await context.addInitScript(() => {
  const mark = () => {
    if (document.querySelector('form.settings-form[data-interactive="true"]') && !window.__ibexInteractiveAt) {
      window.__ibexInteractiveAt = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(mark).observe(document, { subtree: true, attributes: true, childList: true });
});
const page = await context.newPage();
await page.goto(`${portal}/login`);
await page.getByLabel(new RegExp(user)).check();
await page.getByRole("button", { name: "Sign in" }).click();

const samples = [];
for (let i = 0; i < runs + 2; i++) {
  await page.goto(`${portal}/exchange/my-apps/configure`);
  let settings;
  for (let t = 0; t < 500 && !settings; t++) {
    settings = page.frames().find((f) => f.url().includes("/settings?session="));
    if (!settings) await page.waitForTimeout(10);
  }
  if (!settings) throw new Error("the configuration page never loaded in the iframe");
  await settings.waitForFunction(() => window.__ibexInteractiveAt !== undefined, null, { timeout: 10_000 });
  const end = await settings.evaluate(() => window.__ibexInteractiveAt);
  // The parent's resource timing entry for the iframe starts when the iframe's first request does.
  const start = await (await page.waitForFunction(() => {
    const entry = performance.getEntriesByType("resource").find((e) => e.initiatorType === "iframe");
    return entry ? performance.timeOrigin + entry.startTime : null;
  }, null, { timeout: 10_000 })).jsonValue();
  if (i >= 2) samples.push(end - start); // the first two warm the HTTP cache and connections
}
await browser.close();
samples.sort((a, b) => a - b);
const pick = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
console.log(JSON.stringify({ runs, p50: +pick(0.5).toFixed(1), p90: +pick(0.9).toFixed(1), max: +samples.at(-1).toFixed(1) }));
