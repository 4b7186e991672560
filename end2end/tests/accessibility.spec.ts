import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { openConfiguration } from "./portal";

// WCAG 2.1 A and AA plus axe's best practices, on every page and state these tests reach, at the narrowest
// and a wide iframe. Any violation fails the test, listed with its rule, impact and elements.
const RULE_SETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];
const WIDTHS = [320, 1200];

async function expectAccessible(page: Page, state: string) {
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    const results = await new AxeBuilder({ page }).withTags(RULE_SETS).analyze();
    const found = results.violations.map(
      (v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(" ")).join("\n    ")}`,
    );
    expect(found, `${state} at ${width}px`).toEqual([]);
    await page.screenshot({ path: `test-results/a11y-${state}-${width}.png`, fullPage: true });
  }
}

/** Signs in through the portal as `user` and returns the configuration page's own URL (session included). */
async function settingsURL(page: Page, user: string): Promise<string> {
  await openConfiguration(page, user);
  const src = page.frames().find((f) => f.url().includes("/settings?"))?.url();
  expect(src).toBeTruthy();
  return src!;
}

/** The configuration page opened on its own (as the iframe shows it), hydrated. */
async function openForm(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator("form.settings-form")).toHaveAttribute("data-interactive", "true");
}

test("the landing page passes axe, with its function cards closed and open", async ({ page }) => {
  await page.goto("/");
  await expect(page).toHaveTitle("Order desk · ibex");
  await expectAccessible(page, "home");
  const toggle = page.locator('[data-function="order-status"] button');
  await expect(toggle).toHaveAccessibleName("Show fields of order-status");
  await expect(async () => {
    await toggle.click();
    await expect(toggle).toHaveAttribute("aria-expanded", "true", { timeout: 500 });
  }).toPass({ timeout: 15_000 });
  await expect(toggle).toHaveAccessibleName("Hide fields of order-status");
  await expectAccessible(page, "home-open");
});

test("the configuration page passes axe in every state", async ({ page, browser }) => {
  const url = await settingsURL(page, "ida.designer");
  await openForm(page, url);
  await expect(page).toHaveTitle("Order desk settings · ibex");
  await expectAccessible(page, "settings-form");

  // Field errors after a save that cannot pass.
  await page.getByLabel("Order desk API URL", { exact: true }).fill("ftp://example.com");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("save-status")).toContainText("Nothing was saved");
  await expectAccessible(page, "settings-errors");

  // Test connection: refused credentials, then a working connection.
  await page.getByLabel("Order desk API URL", { exact: true }).fill("http://127.0.0.1:4101");
  await page.getByLabel("API key", { exact: true }).fill("not-the-key");
  await page.getByRole("button", { name: "Test connection" }).click();
  await expect(page.getByTestId("test-status")).toContainText("refused these credentials");
  await expectAccessible(page, "settings-test-failed");
  await page.getByLabel("API key", { exact: true }).fill("e2e-shop-key");
  await page.getByRole("button", { name: "Test connection" }).click();
  await expect(page.getByTestId("test-status")).toContainText("Connected");
  await expectAccessible(page, "settings-test-passed");

  // Saved; then reloaded with a stored secret (its "Clear" box appears).
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("save-status")).toContainText("Saved (version");
  await expectAccessible(page, "settings-saved");
  await openForm(page, url);
  await expect(page.getByLabel("Clear the stored API key")).toBeVisible();
  await expectAccessible(page, "settings-stored");

  // A conflict: another tab saved since this one loaded.
  const other = await browser.newPage();
  await openForm(other, url);
  await other.getByLabel("Author name on order notes").fill("Ida's bot");
  await other.getByRole("button", { name: "Save" }).click();
  await expect(other.getByTestId("save-status")).toContainText("Saved (version");
  await other.close();
  await page.getByLabel("Author name on order notes").fill("Someone else");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("save-status")).toContainText("Someone else saved");
  await expectAccessible(page, "settings-conflict");
});

test("the sign-in error page and the not-found page pass axe", async ({ page }) => {
  const refused = await page.goto("/oauth/start?next=//evil.example");
  expect(refused?.status()).toBe(400);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("This sign-in link is not valid");
  await expectAccessible(page, "sign-in-error");
  const missing = await page.goto("/no-such-page");
  expect(missing?.status()).toBe(404);
  await expectAccessible(page, "not-found");
});

test("keyboard: a failed save focuses the first invalid field, errors are read with their field", async ({
  page,
}) => {
  const url = await settingsURL(page, "ida.designer");
  await openForm(page, url);
  const urlField = page.getByLabel("Order desk API URL", { exact: true });
  await urlField.fill("not a url");
  // Save from the keyboard: tab to it and press Enter.
  const save = page.getByRole("button", { name: "Save" });
  await save.focus();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("save-status")).toContainText("Nothing was saved");
  await expect(urlField).toBeFocused();
  await expect(urlField).toHaveAttribute("aria-invalid", "true");
  await expect(urlField).toHaveAccessibleName("Order desk API URL");
  await expect(urlField).toHaveAttribute("aria-required", "true");
  // The error is the field's description, a sentence naming the field.
  await expect(urlField).toHaveAccessibleDescription(
    "Order desk API URL is not a complete URL: write it in full, like https://api.example.com. " +
      "Base URL of your Order desk workspace's API.",
  );
  const errors = page.locator(".field-error");
  for (const error of await errors.all()) {
    const id = await error.getAttribute("id");
    const described = page.locator(`[aria-describedby~="${id}"]`);
    await expect(described, `an element described by #${id}`).toHaveCount(1);
    await expect(error).toHaveText(/\.$/);
  }
  // Fixed and saved: focus stays on Save through "Saving…" and after.
  await urlField.fill("http://127.0.0.1:4101");
  await save.focus();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("save-status")).toContainText("Saved (version");
  await expect(save).toBeFocused();
  await expect(urlField).not.toHaveAttribute("aria-invalid", "true");
});

test("the configuration page fits a 1280x900 portal with Save in view, and reads at 200 % zoom", async ({
  page,
}) => {
  await page.setViewportSize({ width: 1280, height: 900 });
  await settingsURL(page, "ida.designer");
  const frame = page.frameLocator("#app-frame");
  await expect(frame.getByRole("button", { name: "Save" })).toBeInViewport();
  await expect(frame.getByRole("button", { name: "Test connection" })).toBeInViewport();
  await page.screenshot({ path: "test-results/a11y-portal-1280.png" });
  // Zoomed to 200 %, a 640x900 frame lays the page out in 320x450 CSS pixels: nothing may overflow sideways,
  // and Save stays in view.
  const src = page.frames().find((f) => f.url().includes("/settings?"))!.url();
  await page.setViewportSize({ width: 320, height: 450 });
  await openForm(page, src);
  await expect(page.getByRole("button", { name: "Save" })).toBeInViewport();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.screenshot({ path: "test-results/a11y-zoom-200.png" });
});
