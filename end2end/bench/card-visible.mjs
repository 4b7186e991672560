// How long the context card takes to show the customer beside the chat, in real Chromium on loopback: from the
// moment the workspace's iframe starts loading (the card URL, the OAuth round trip through the portal, the card
// session, Infobip's messages API, the partner's lookup and list, the page and its CSS) until the card's heading
// names the customer. The portal's consent is given once before the timed loads.
// Usage: node card-visible.mjs <portal-url> <user> <customer name> [runs]. Prints one JSON line (ms).
import { chromium } from "@playwright/test";

const [portal, user, customer, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 20);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext();
// In every document: the wall-clock moment the card's heading names the customer.
await context.addInitScript((name) => {
  const mark = () => {
    const h1 = document.querySelector(".card-page h1");
    if (h1 && h1.textContent === name && !window.__ibexVisibleAt) {
      window.__ibexVisibleAt = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(mark).observe(document, { subtree: true, childList: true, characterData: true });
}, customer);
const page = await context.newPage();
await page.goto(`${portal}/login?next=/conversations`);
await page.getByLabel(new RegExp(user)).check();
await page.getByRole("button", { name: "Sign in" }).click();

const samples = [];
for (let i = 0; i < runs + 2; i++) {
  await page.goto(`${portal}/conversations`);
  let card;
  for (let t = 0; t < 500 && !card; t++) {
    card = page.frames().find((f) => f.url().includes("/card?") && f.url().includes("card="));
    if (!card) await page.waitForTimeout(10);
  }
  if (!card) throw new Error("the card never loaded in the iframe");
  await card.waitForFunction(() => window.__ibexVisibleAt !== undefined, null, { timeout: 10_000 });
  const end = await card.evaluate(() => window.__ibexVisibleAt);
  const start = await (await page.waitForFunction(() => {
    const entry = performance.getEntriesByType("resource").find((e) => e.initiatorType === "iframe");
    return entry ? performance.timeOrigin + entry.startTime : null;
  }, null, { timeout: 10_000 })).jsonValue();
  if (i >= 2) samples.push(end - start); // the first two warm connections and the HTTP cache
}
await browser.close();
samples.sort((a, b) => a - b);
const pick = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
console.log(JSON.stringify({ runs, p50: +pick(0.5).toFixed(1), p90: +pick(0.9).toFixed(1), max: +samples.at(-1).toFixed(1) }));
