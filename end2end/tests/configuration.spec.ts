import AxeBuilder from "@axe-core/playwright";
import { expect, test, chromium, type Page } from "@playwright/test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromiumArgs, dataDir, ibexRoot, ibexURL } from "../playwright.config";
import {
  expectThirdPartyCookiesBlocked,
  launchState,
  openConfiguration,
  reframe,
  withholdPortalCookieFromFrames,
} from "./portal";

const ACME = "8F3A2C51D0B94E17A6C2F0D9E4B7A113";
const GLOBEX = "2B7E91C4A85F4D3EB0196C7D2E8F5A40";

/** The `ibex` command line against the running server's data directory and database. */
function ibexCli(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync(`${ibexRoot}/target/release/ibex`, ["--dev", ...args], {
    env: { ...process.env, IBEX_DATA_DIR: dataDir, DATABASE_URL: `sqlite://${dataDir}/ibex.db?mode=rwc` },
    encoding: "utf8",
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** A signed call made the way Infobip makes it, by `ibex call` against the running server. */
function ibexCall(...args: string[]) {
  return ibexCli("call", ...args, "--url", ibexURL);
}

test("the portal frames the configuration page, which signs in with Exchange OAuth", async ({ page }) => {
  const frame = await openConfiguration(page, "ana.admin");
  // One compact line: a short account key (the whole key as its tooltip) and who is signed in.
  await expect(frame.getByTestId("signed-in")).toHaveText("Account 8F3A…A113 · Signed in as ana.admin");
  await expect(frame.getByTitle(ACME)).toBeVisible();
  await expect(frame.getByLabel("API key", { exact: true })).toHaveAttribute("placeholder", "Not set");
  await expect(frame.getByLabel("Currency for order totals")).toHaveValue("EUR");
  await page.screenshot({ path: "test-results/configuration-in-portal.png", fullPage: true });

  // Wrong input: field-level messages, and nothing saved.
  const save = frame.getByRole("button", { name: "Save" });
  await frame.getByLabel("Order desk API URL", { exact: true }).fill("ftp://example.com");
  await save.click();
  await expect(frame.locator('[data-field="api_base_url"] .field-error')).toHaveText(
    "Order desk API URL must start with https:// or http://.",
  );
  await expect(frame.locator('[data-field="api_key"] .field-error')).toHaveText("API key is required.");
  await expect(frame.getByTestId("save-status")).toContainText("Nothing was saved");
  await frame.locator('[data-field="api_base_url"]').scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/configuration-errors.png", fullPage: true });

  // Test connection tries the values on screen: a wrong key is refused, the right one connects.
  const testButton = frame.getByRole("button", { name: "Test connection" });
  await frame.getByLabel("Order desk API URL", { exact: true }).fill("http://127.0.0.1:4101");
  await frame.getByLabel("API key", { exact: true }).fill("not-the-key");
  await testButton.click();
  await expect(frame.getByTestId("test-status")).toContainText("refused these credentials (HTTP 401)");
  await frame.getByLabel("API key", { exact: true }).fill("e2e-shop-key");
  await testButton.click();
  await expect(frame.getByTestId("test-status")).toContainText("Connected: the API answered HTTP 200");
  // The failed save's message went with the new action: it named field errors that are gone now.
  await expect(frame.getByTestId("save-status")).toHaveText("");
  await page.screenshot({ path: "test-results/configuration-test-connection.png", fullPage: true });

  // A valid save; after a reload the secret is only "set" and the preference is kept.
  await frame.getByLabel("Currency for order totals").selectOption("USD");
  await save.click();
  await expect(frame.getByTestId("save-status")).toHaveText("Saved (version 1).");
  await page.reload();
  const again = page.frameLocator("#app-frame");
  await expect(again.getByLabel("API key", { exact: true })).toHaveAttribute("placeholder", "Set — type to replace");
  await expect(again.getByLabel("API key", { exact: true })).toHaveValue("");
  await expect(again.getByLabel("Currency for order totals")).toHaveValue("USD");
  await expect(again.getByTestId("last-change")).toHaveText(
    /^Version 1, last changed by ana\.admin \(U-ANA-7F21\) on \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/,
  );

  // The signed path now uses what the admin saved in the browser: the shop's key and the USD preference.
  const call = ibexCall("order-status", "order_id=1001", "--account", ACME);
  expect(call.status, call.output).toBe(0);
  expect(call.output).toContain("200 OK");
  expect(call.output).toContain('"currency": "USD"');
});

test("the admin sees the activity of the calls just made, with the failures they caused", async ({ page }) => {
  // Acme was configured by the test above: two calls answered, one the shop has no order for.
  for (const order of ["1001", "1002", "999"]) {
    ibexCall("order-status", `order_id=${order}`, "--account", ACME);
  }
  // Counters reach the database in batches (IBEX_ACTIVITY_FLUSH_SECS is 1 s in these tests).
  await page.waitForTimeout(1500);
  const frame = await openConfiguration(page, "ana.admin");
  await expectThirdPartyCookiesBlocked(page, "/settings");
  const activity = frame.getByTestId("activity");
  await expect(activity).toHaveAttribute("data-interactive", "true");
  await activity.getByRole("button", { name: "Last hour" }).click();
  await expect(activity.getByRole("button", { name: "Last hour" })).toHaveAttribute("aria-pressed", "true");
  // Other specs' calls for Acme (the card's, say) may be in the same hour: the figures checked are this test's.
  await expect(activity.getByTestId("activity-summary")).toContainText(/\d+ calls, \d+ failed · p50/);
  const functions = activity.getByTestId("activity-functions");
  await expect(functions.getByRole("row", { name: /^Answers or Flow order-status 4 1 / })).toBeVisible();
  await expect(activity.getByTestId("activity-outcomes")).toContainText("partner_client_error (404)");
  await expect(activity.getByTestId("activity-outcomes")).toContainText("the partner has no such record");
  await activity.getByText(/^Last failed calls \(\d+\)$/).click();
  const failed = activity.getByTestId("activity-failed");
  await expect(failed.getByRole("row", { name: /Answers or Flow order-status partner_client_error 404/ })).toHaveCount(1);
  await expect(failed).not.toContainText("e2e-shop-key");
  await expect(activity.getByTestId("activity-health")).toContainText("Partner API: Accepted");
  await expect(activity.getByTestId("activity-chart")).toHaveAttribute("aria-label", /\d+ calls, \d+ failed/);
  await activity.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/activity.png", fullPage: true });

  // The frame's own page, at the widths Infobip's layout may give it: nothing overflows, nothing fails axe.
  const src = page.frames().find((f) => f.url().includes("/settings?"))!.url();
  for (const width of [320, 1200]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(src);
    await expect(page.getByTestId("activity")).toHaveAttribute("data-interactive", "true");
    await page.getByTestId("activity").getByRole("button", { name: "Last hour" }).click();
    await expect(page.getByTestId("activity-functions").getByRole("row", { name: /^Answers or Flow order-status 4 1 / })).toBeVisible();
    await page.getByText(/^Last failed calls \(\d+\)$/).click();
    const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
    expect(
      results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
      `activity at ${width}px`,
    ).toEqual([]);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, `horizontal overflow at ${width}px`).toBeLessThanOrEqual(0);
    await page.getByTestId("activity").screenshot({ path: `test-results/activity-${width}.png` });
  }
});

test("a second admin saving stale values gets a conflict and overwrites nothing", async ({ browser }) => {
  const first = await browser.newPage();
  const second = await browser.newPage();
  const mine = await openConfiguration(first, "eve.owner");
  const theirs = await openConfiguration(second, "eve.owner");
  await mine.getByLabel("API key", { exact: true }).fill("eve-first-key");
  await mine.getByLabel("Author name on order notes").fill("Eve's bot");
  await mine.getByRole("button", { name: "Save" }).click();
  await expect(mine.getByTestId("save-status")).toContainText("Saved (version");

  await theirs.getByLabel("API key", { exact: true }).fill("eve-second-key");
  await theirs.getByLabel("Author name on order notes").fill("Someone else");
  await theirs.getByRole("button", { name: "Save" }).click();
  await expect(theirs.getByTestId("save-status")).toContainText("Someone else saved these settings meanwhile");
  await second.screenshot({ path: "test-results/configuration-conflict.png", fullPage: true });

  await first.reload();
  const reloaded = first.frameLocator("#app-frame");
  await expect(reloaded.getByLabel("Author name on order notes")).toHaveValue("Eve's bot");
  await first.close();
  await second.close();
});

test("a server-function call with a forged session or another account's key changes nothing", async ({ page }) => {
  const frame = await openConfiguration(page, "ana.admin");
  const lastChange = (await frame.getByTestId("last-change").textContent()) ?? "";
  const version = Number(/Version (\d+)/.exec(lastChange)?.[1] ?? 0);
  const settingsFrame = page.frames().find((f) => f.url().includes("/settings?"))!;
  const session = new URL(settingsFrame.url()).searchParams.get("session")!;
  const forged = session.slice(0, -4) + (session.endsWith("AAAA") ? "BBBB" : "AAAA");
  const results = await settingsFrame.evaluate(
    async ({ forged, session, globex, version }) => {
      const post = async (body: object) => {
        const response = await fetch("/api/save_settings", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        return { status: response.status, body: await response.text() };
      };
      return {
        forged: await post({ session: forged, version, changes: { note_author: "forged" } }),
        // An extra field naming another account is not a parameter: the session's account is the only one.
        redirected: await post({ session, account_key: globex, version, changes: { note_author: "Ana via API" } }),
      };
    },
    { forged, session, globex: GLOBEX, version },
  );
  expect(results.forged.status).toBe(401);
  expect(results.forged.body).toContain("the sign-in is not valid");
  expect(results.redirected.body).toContain("Saved");

  await page.reload();
  const again = page.frameLocator("#app-frame");
  await expect(again.getByLabel("Author name on order notes")).toHaveValue("Ana via API");
  const globex = ibexCli("settings", "show", GLOBEX);
  expect(globex.output).not.toContain("Ana via API");
  expect(globex.output).not.toContain("forged");
});
test("sign-in works with third-party cookies blocked, and with the portal's cookie withheld from the frame", async () => {
  // A fresh profile whose preferences block third-party cookies, as Safari does by default.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ibex-e2e-profile-"));
  fs.mkdirSync(path.join(profile, "Default"));
  fs.writeFileSync(
    path.join(profile, "Default", "Preferences"),
    JSON.stringify({ profile: { block_third_party_cookies: true } }),
  );
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: chromiumArgs,
  });
  try {
    const page = await context.newPage();
    const frame = await openConfiguration(page, "eve.owner");
    await expect(frame.getByTestId("signed-in")).toHaveText("Account 2B7E…5A40 · Signed in as eve.owner");

    // The same with the portal's cookie withheld from the frame's authorize request as well: Infobip's launch
    // `state`, passed on unchanged, is what signs the admin in.
    const other = await context.newPage();
    const withheld = await withholdPortalCookieFromFrames(other);
    const signedIn = await openConfiguration(other, "eve.owner");
    await expect(signedIn.getByTestId("signed-in")).toHaveText("Account 2B7E…5A40 · Signed in as eve.owner");
    const launch = await launchState(other, "#app-frame");
    expect(withheld.map((r) => new URL(r.url).searchParams.get("state"))).toEqual([launch.state]);
    expect(withheld.map((r) => r.cookie)).toEqual([null]);

    // A launch is good once: the frame's first address again is refused, with a page that says why.
    await reframe(other, "#app-frame", launch.src);
    await expect(signedIn.getByRole("heading", { level: 1 })).toHaveText("Sign-in was refused");
    await expect(signedIn.getByRole("alert")).toContainText("launch state already used");
    await other.screenshot({ path: "test-results/configuration-launch-replayed.png" });

    // Without a launch `state` (the page's address with none), this browser leaves Infobip not knowing who it is.
    await reframe(other, "#app-frame", new URL("/settings", launch.src).toString());
    await expect(signedIn.getByRole("alert")).toContainText("not signed in to Infobip");
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test("the configuration page fits iframes from 320 to 1200 px wide", async ({ page }) => {
  const frame = await openConfiguration(page, "bob.agent");
  await expect(frame.getByTestId("signed-in")).toContainText("bob.agent");
  // The iframe's own URL carries the session: open it at each width, as Infobip's layout may size the iframe.
  const src = page.frames().find((f) => f.url().includes("/settings?"))?.url();
  expect(src).toBeTruthy();
  for (const width of [320, 768, 1200]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(src!);
    await expect(page.getByRole("button", { name: "Save" })).toBeVisible();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, `horizontal overflow at ${width}px`).toBeLessThanOrEqual(0);
    await page.screenshot({ path: `test-results/configuration-${width}.png`, fullPage: true });
  }
});

test("an admin issues the Custom cards token, shown once, and Conversations' call gets the card's data", async ({
  page,
  request,
}) => {
  const frame = await openConfiguration(page, "ana.admin");
  const panel = frame.getByRole("region", { name: "Custom card in Conversations" });
  await expect(panel.getByLabel("Webhook URL")).toHaveValue(
    /\/custom-card\?conversationId=\{\{conversation\.conversationId \| url_encode\}\}&customerNumber=/,
  );
  await expect(frame.locator("section.custom-card")).toHaveAttribute("data-interactive", "true");
  const issue = panel.getByRole("button", { name: /Issue token|Replace token/ });
  if ((await issue.textContent())?.startsWith("Replace")) {
    await issue.click();
    await expect(panel.getByRole("alert")).toContainText("stops working at once");
    await panel.getByRole("button", { name: "Replace the token" }).click();
  } else {
    await issue.click();
  }
  const header = panel.getByLabel(/Authorization header value/);
  await expect(header).toHaveValue(/^Bearer ibexcc_/);
  const value = await header.inputValue();
  await expect(panel.getByTestId("card-token-state")).toContainText(`ending in …${value.slice(-4)}`);
  await page.screenshot({ path: "test-results/configuration-custom-card.png", fullPage: true });

  // Conversations calls the webhook with the header the admin pasted.
  ibexCli("settings", "set", ACME, "api_key=e2e-shop-key", "api_base_url=http://127.0.0.1:4101");
  const answer = await request.get(`${ibexURL}/custom-card?customerNumber=%2B385911234567`, {
    headers: { Authorization: value },
  });
  expect(answer.status()).toBe(200);
  const card = await answer.json();
  expect(card.title).toBe("Ana Horvat");

  // After a reload the token is never shown again, only which one is in use.
  const reopened = await openConfiguration(page, "ana.admin");
  const again = reopened.getByRole("region", { name: "Custom card in Conversations" });
  await expect(again.getByTestId("card-token-state")).toContainText(`ending in …${value.slice(-4)}`);
  await expect(again.getByLabel(/Authorization header value/)).toHaveCount(0);
});
