import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { portalURL } from "../playwright.config";

/** Signs in to the portal as `user` and opens Conversations, where the card is framed beside the chat. */
async function openWorkspace(page: Page, user: string) {
  await page.goto(`${portalURL}/login?next=/conversations`);
  await page.getByLabel(new RegExp(user)).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.goto(`${portalURL}/conversations`);
  return page.frameLocator("#card-frame");
}

test("the context card shows the conversation's customer and follows the agent's choice", async ({ page }) => {
  await page.setViewportSize({ width: 1280, height: 900 });
  const card = await openWorkspace(page, "ana.admin");
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
  await expect(card.getByTestId("end-user")).toContainText("+385911234567");
  await page.screenshot({ path: "test-results/card-in-workspace.png" });

  await page.getByRole("link", { name: /Marko/ }).click();
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Marko Kovač");
  await expect(card.getByTestId("end-user")).toContainText("marko@example.com");

  // The card's own URL carries a session id, never the Infobip token; axe at the card's widths.
  const src = page.frames().find((f) => f.url().includes("/card?"))!.url();
  expect(src).toContain("card=");
  for (const width of [320, 420]) {
    await page.setViewportSize({ width, height: 700 });
    await page.goto(src);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("Marko Kovač");
    const results = await new AxeBuilder({ page })
      .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"])
      .analyze();
    expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(", ")}`)).toEqual([]);
    await page.screenshot({ path: `test-results/card-${width}.png`, fullPage: true });
  }
});

test("the context card says so when Infobip refuses it", async ({ page, request }) => {
  await request.post(`${portalURL}/_sim/oauth`, { data: { messages_status: 403 } });
  try {
    const card = await openWorkspace(page, "eve.owner");
    await expect(card.getByRole("heading", { level: 1 })).toHaveText("Infobip refused the card");
    await expect(card.getByRole("link", { name: "Try again" })).toBeVisible();
    const src = page.frames().find((f) => f.url().includes("/card?"))!.url();
    await page.setViewportSize({ width: 320, height: 600 });
    await page.goto(src);
    const results = await new AxeBuilder({ page })
      .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"])
      .analyze();
    expect(results.violations.map((v) => v.id)).toEqual([]);
    await page.screenshot({ path: "test-results/card-refused-320.png", fullPage: true });
  } finally {
    await request.post(`${portalURL}/_sim/oauth`, { data: {} });
  }
});
