import { expect, test } from "@playwright/test";

test("landing page renders on the server and hydrates in the browser", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  await page.goto("/");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Order desk");
  const card = page.locator('[data-function="order-status"]');
  await expect(card.locator("code")).toHaveText("GET /fn/order-status/{order_id}");

  // The toggle only works once the wasm bundle has hydrated the page.
  const toggle = card.getByRole("button", { name: "Show fields" });
  await expect(async () => {
    await toggle.click();
    await expect(card.getByText("order_id", { exact: true })).toBeVisible({ timeout: 500 });
  }).toPass({ timeout: 15_000 });
  await expect(card.getByRole("button", { name: "Hide fields" })).toHaveAttribute("aria-expanded", "true");

  await page.screenshot({ path: "test-results/home.png", fullPage: true });
  expect(errors).toEqual([]);
});

test("operational endpoints answer", async ({ request }) => {
  expect((await request.get("/healthz")).status()).toBe(200);
  expect((await request.get("/readyz")).status()).toBe(200);
  const metrics = await request.get("/metrics");
  expect(metrics.status()).toBe(200);
});
