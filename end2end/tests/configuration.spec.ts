import { expect, test, chromium, type Page } from "@playwright/test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromiumArgs, portalURL } from "../playwright.config";

async function openConfiguration(page: Page, user: string) {
  await page.goto(`${portalURL}/login`);
  await page.getByLabel(new RegExp(user)).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Open" }).click();
  return page.frameLocator("#app-frame");
}

test("the portal frames the configuration page, which signs in with Exchange OAuth", async ({ page }) => {
  const frame = await openConfiguration(page, "ana.admin");
  await expect(frame.getByTestId("signed-in")).toHaveText(
    "Signed in as ana.admin · account 8F3A2C51D0B94E17A6C2F0D9E4B7A113",
  );
  await expect(frame.getByLabel("API key *")).toHaveAttribute("placeholder", "Not set");
  await expect(frame.getByLabel("Currency for order totals")).toHaveValue("EUR");
  await page.screenshot({ path: "test-results/configuration-in-portal.png", fullPage: true });

  // Wrong input: field-level messages, and nothing saved.
  const save = frame.getByRole("button", { name: "Save" });
  await expect(async () => {
    await frame.getByLabel("Order desk API URL *").fill("ftp://example.com");
    await save.click();
    await expect(frame.locator('[data-field="api_base_url"] .field-error')).toContainText("https://", {
      timeout: 1000,
    });
  }).toPass({ timeout: 15_000 });
  await expect(frame.locator('[data-field="api_key"] .field-error')).toContainText("is required");
  await expect(frame.getByTestId("save-status")).toContainText("Nothing was saved");
  await page.screenshot({ path: "test-results/configuration-errors.png", fullPage: true });

  // A valid save; after a reload the secret is only "set" and the preference is kept.
  await frame.getByLabel("Order desk API URL *").fill("http://127.0.0.1:4101");
  await frame.getByLabel("API key *").fill("e2e-shop-key");
  await frame.getByLabel("Currency for order totals").selectOption("USD");
  await save.click();
  await expect(frame.getByTestId("save-status")).toHaveText("Saved (version 1).");
  await page.reload();
  const again = page.frameLocator("#app-frame");
  await expect(again.getByLabel("API key *")).toHaveAttribute("placeholder", "Set — type to replace");
  await expect(again.getByLabel("API key *")).toHaveValue("");
  await expect(again.getByLabel("Currency for order totals")).toHaveValue("USD");
  await expect(again.getByTestId("last-change")).toContainText("Version 1, last changed by ana.admin");
});

test("sign-in works with third-party cookies blocked", async () => {
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
    await expect(frame.getByTestId("signed-in")).toHaveText(
      "Signed in as eve.owner · account 2B7E91C4A85F4D3EB0196C7D2E8F5A40",
    );
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
