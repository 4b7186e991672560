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
