import { expect, type Page } from "@playwright/test";
import { portalURL } from "../playwright.config";

/** Signs in to the simulated portal as `user`, opens the app, and waits until the framed form is hydrated. */
export async function openConfiguration(page: Page, user: string) {
  await page.goto(`${portalURL}/login`);
  await page.getByLabel(new RegExp(user)).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Open" }).click();
  const frame = page.frameLocator("#app-frame");
  await expect(frame.locator("form.settings-form")).toHaveAttribute("data-interactive", "true");
  return frame;
}

/**
 * Proves the browser blocks third-party cookies, as these tests promise (Safari's default, and Chrome's with the
 * setting on): the page framed at `framedPath`, on another site than the portal, cannot keep a cookie.
 */
export async function expectThirdPartyCookiesBlocked(page: Page, framedPath: string) {
  const frame = page.frames().find((f) => f.url().includes(framedPath));
  expect(frame, `a frame at ${framedPath}`).toBeTruthy();
  const kept = await frame!.evaluate(() => {
    document.cookie = "ibex_probe=1; SameSite=None; Secure; Path=/";
    return document.cookie.includes("ibex_probe");
  });
  expect(kept, "a third-party frame kept a cookie: third-party cookies are not blocked").toBe(false);
}
