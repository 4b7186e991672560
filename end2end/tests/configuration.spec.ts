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
  await expect(frame.locator('[data-field="api_key"]')).toContainText("Not set");
  await expect(frame.locator('[data-field="currency"]')).toContainText("EUR (default)");
  await page.screenshot({ path: "test-results/configuration-in-portal.png", fullPage: true });
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
