import AxeBuilder from "@axe-core/playwright";
import { expect, test } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { dataDir, ibexRoot, portalURL } from "../playwright.config";
import { expectThirdPartyCookiesBlocked, openConfiguration } from "./portal";

const GLOBEX = "2B7E91C4A85F4D3EB0196C7D2E8F5A40";
const RULE_SETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];

test("an admin pauses and resumes People sync on the configuration page, and the history says who did", async ({
  page,
}) => {
  // Globex's admin has saved the shop and People credentials (the simulator's People API on the portal).
  const run = spawnSync(
    `${ibexRoot}/target/release/ibex`,
    [
      "--dev", "settings", "set", GLOBEX, "api_key=e2e-shop-key", "api_base_url=http://127.0.0.1:4101",
      `people_base_url=${portalURL}`, "people_api_key=sim-people-key",
    ],
    {
      env: { ...process.env, IBEX_DATA_DIR: dataDir, DATABASE_URL: `sqlite://${dataDir}/ibex.db?mode=rwc` },
      encoding: "utf8",
    },
  );
  expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);

  await page.setViewportSize({ width: 1280, height: 900 });
  const frame = await openConfiguration(page, "eve.owner");
  await expectThirdPartyCookiesBlocked(page, "/settings?");
  const panel = frame.getByRole("region", { name: "People sync" });
  await expect(frame.locator("section.sync-panel")).toHaveAttribute("data-interactive", "true");

  // Paused: the panel says so and by whom, "Sync now" waits, and the history names the admin.
  await panel.getByRole("button", { name: "Pause sync" }).click();
  const paused = panel.getByTestId("sync-paused");
  await expect(paused).toContainText("Sync is paused.");
  await expect(paused).toContainText("paused by eve.owner (U-EVE-5D80)");
  await expect(panel.getByRole("button", { name: "Sync now" })).toBeDisabled();
  const controls = panel.getByTestId("sync-controls");
  await expect(controls.locator("li").first()).toContainText("eve.owner (U-EVE-5D80) paused sync");
  await panel.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/sync-paused.png" });
  // The framed page only: the simulated portal around it is not ours (its <main> and the frame's are two).
  const whilePaused = await new AxeBuilder({ page }).include("#app-frame").withTags(RULE_SETS).analyze();
  expect(whilePaused.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), "sync paused").toEqual([]);

  // Resumed: the notice goes, "Sync now" is back, and the history has both, newest first.
  await panel.getByRole("button", { name: "Resume sync" }).click();
  await expect(paused).toHaveCount(0);
  await expect(panel.getByRole("button", { name: "Pause sync" })).toBeVisible();
  await expect(panel.getByRole("button", { name: "Sync now" })).toBeEnabled();
  await expect(controls.locator("li").first()).toContainText("eve.owner (U-EVE-5D80) resumed sync");
  await expect(controls.locator("li").nth(1)).toContainText("eve.owner (U-EVE-5D80) paused sync");

  // The page itself at the narrow width and the wide one, with the history: accessible.
  const src = page.frames().find((f) => f.url().includes("/settings?session="))!.url();
  for (const width of [320, 1200]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(src);
    await expect(page.getByTestId("sync-controls")).toBeVisible();
    const results = await new AxeBuilder({ page }).withTags(RULE_SETS).analyze();
    expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), `sync controls at ${width}px`).toEqual([]);
    await page.getByTestId("sync-controls").scrollIntoViewIfNeeded();
    await page.screenshot({ path: `test-results/sync-controls-${width}.png`, fullPage: true });
  }
});
