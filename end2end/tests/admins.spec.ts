import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { portalURL } from "../playwright.config";
import { openConfiguration } from "./portal";

const RULE_SETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/** Signs in to the simulated portal as `user` and returns to `path`. */
async function portalAs(page: Page, user: string, path: string) {
  await page.goto(`${portalURL}/login?next=${path}`);
  await page.getByLabel(new RegExp(user)).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.goto(`${portalURL}${path}`);
}

async function expectAccessible(page: Page, state: string) {
  const results = await new AxeBuilder({ page }).include("#app-frame").withTags(RULE_SETS).analyze();
  expect(
    results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    state,
  ).toEqual([]);
}

// Globex has two users: eve.owner, who sets the app up, and finn.agent, who answers its conversations.
test("an account's first admin restricts its settings; an agent, from the card's frame or from Exchange, only reads them", async ({
  page,
  browser,
}) => {
  // No admin yet: eve is told that anyone may change the settings, and makes herself the admin.
  const eve = await openConfiguration(page, "eve.owner");
  const admins = eve.locator("section.admins");
  await expect(admins).toHaveAttribute("data-interactive", "true");
  await expect(admins.getByTestId("admins-open")).toContainText("Anyone in your Infobip account");
  await admins.getByRole("button", { name: "Make me this account's admin" }).click();
  await expect(admins.getByTestId("admins-status")).toHaveText("Saved: this account has 1 admin.");
  await expect(admins.getByTestId("admin-list")).toContainText("eve.owner (U-EVE-5D80) (you)");
  await admins.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/admins-claimed.png", fullPage: true });

  const context = await browser.newContext();
  try {
    // finn opens a Globex conversation: the card is his, and signs him in to the card.
    const agent = await context.newPage();
    await portalAs(agent, "finn.agent", "/conversations");
    const card = agent.frameLocator("#card-frame");
    await expect(card.getByText("finn.agent")).toBeVisible();
    const cardSrc = (await agent.locator("#card-frame").getAttribute("src"))!;
    const launch = new URL(cardSrc).searchParams.get("state")!;

    // Inside the card's frame, every way to the configuration page ends read-only (or nowhere).
    for (const path of ["/oauth/start?next=/settings", "/settings"]) {
      const frame = agent.frames().find((f) => f.url().startsWith(new URL(cardSrc).origin))!;
      await frame.evaluate((p) => window.location.assign(p), path);
      await expect(card.getByTestId("read-only"), path).toContainText("eve.owner");
      await expect(card.getByRole("button", { name: "Save" }), path).toHaveCount(0);
      await expect(card.locator("input"), path).toHaveCount(0);
    }
    // The card's own launch sent to the configuration page signs in to nothing: the card's sign-in spent it.
    const frame = agent.frames().find((f) => f.url().startsWith(new URL(cardSrc).origin))!;
    await frame.evaluate((p) => window.location.assign(p), `/settings?state=${encodeURIComponent(launch)}`);
    await expect(card.getByRole("heading", { level: 1 })).toHaveText(/Sign-in was refused|already under way/);
    await expect(card.getByTestId("signed-in")).toHaveCount(0);

    // From Exchange, as Infobip opens the configuration page: read-only, no secret, no sync or token panel,
    // who to ask and his own user key.
    await portalAs(agent, "finn.agent", "/exchange/my-apps");
    await agent.getByRole("link", { name: "Open" }).click();
    const settings = agent.frameLocator("#app-frame");
    const notice = settings.getByTestId("read-only");
    await expect(notice).toContainText("Only this account's admins can change them: eve.owner (U-EVE-5D80)");
    await expect(notice).toContainText("U-FINN-8A36");
    await expect(settings.getByText("API key")).toHaveCount(0);
    await expect(settings.getByRole("region", { name: "People sync" })).toHaveCount(0);
    await expect(settings.locator("section.custom-card, section.admins, form")).toHaveCount(0);
    await expectAccessible(agent, "read-only configuration page");
    await agent.screenshot({ path: "test-results/admins-read-only.png", fullPage: true });
    // The frame's own address at the widths Infobip's layout may give it.
    const src = agent.frames().find((f) => f.url().includes("/settings?"))!.url();
    for (const width of [320, 1200]) {
      await agent.setViewportSize({ width, height: 900 });
      await agent.goto(src);
      await expect(agent.getByTestId("read-only")).toBeVisible();
      const results = await new AxeBuilder({ page: agent }).withTags(RULE_SETS).analyze();
      expect(results.violations.map((v) => v.id), `read-only at ${width}px`).toEqual([]);
      const overflow = await agent.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `horizontal overflow at ${width}px`).toBeLessThanOrEqual(0);
      await agent.screenshot({ path: `test-results/admins-read-only-${width}.png`, fullPage: true });
    }
  } finally {
    await context.close();
  }

  // The admin still saves.
  await eve.getByLabel("API key", { exact: true }).fill("eve-admin-key");
  await eve.getByLabel("Author name on order notes").fill("Eve");
  await eve.getByRole("button", { name: "Save" }).click();
  await expect(eve.getByTestId("save-status")).toContainText("Saved (version");
});
