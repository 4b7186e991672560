import AxeBuilder from "@axe-core/playwright";
import { expect, test } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { dataDir, ibexRoot, portalURL } from "../playwright.config";
import { expectThirdPartyCookiesBlocked, openConfiguration } from "./portal";

const GLOBEX = "2B7E91C4A85F4D3EB0196C7D2E8F5A40";
const RULE_SETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];

test("Sync now on the configuration page shows progress, then the run's counts and its failed records", async ({
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
  // People refuses one customer for now; "Retry failed" gets it through later.
  const people = async (switches: object) => {
    const r = await fetch(`${portalURL}/_sim/people`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(switches),
    });
    expect(r.ok).toBe(true);
  };
  // People answers the first run's batch (all 40 persons in one upsert) 3 s after taking it: long enough to see the bar.
  await people({ reject_external_ids: ["g-000021"], delay_ms: 3000 });

  await page.setViewportSize({ width: 1280, height: 900 });
  const frame = await openConfiguration(page, "eve.owner");
  await expectThirdPartyCookiesBlocked(page, "/settings?");
  const panel = frame.getByRole("region", { name: "People sync" });
  await expect(frame.locator("section.sync-panel")).toHaveAttribute("data-interactive", "true");
  // The saved People URL and key, tried once before the first sync.
  await panel.getByRole("button", { name: "Test People connection" }).click();
  await expect(panel.getByTestId("people-test")).toContainText("Connected: People at 127.0.0.1:");
  await panel.getByRole("button", { name: "Sync now" }).click();

  // The run is open for a few seconds: the bar shows, without a reload.
  const progress = panel.getByTestId("sync-progress");
  await expect(progress).toContainText(/of 43 records/);
  await panel.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/sync-progress.png" });
  // The framed page only: the simulated portal around it is not ours (its <main> and the frame's are two).
  const during = await new AxeBuilder({ page }).include("#app-frame").withTags(RULE_SETS).analyze();
  expect(during.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), "sync in progress").toEqual([]);

  const history = panel.getByTestId("sync-history");
  await expect(history).toContainText("43 read: 40 created, 0 updated, 0 unchanged, 3 failed", { timeout: 20_000 });
  await expect(progress).toHaveCount(0);
  // The failed records with their reasons: a UK number from the drama range, "n/a", and People's refusal.
  await panel.getByText("Records not synced in the last run (3)").click();
  const failures = panel.getByTestId("sync-failures");
  await expect(failures).toContainText("c-102");
  await expect(failures).toContainText("g-000013: `n/a` is not a phone number");
  await expect(failures).toContainText("g-000021");
  await panel.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "test-results/sync-done.png" });

  // People takes g-000021 now: "Retry failed" sends the three again; the two the mapping refuses stay failed.
  await people({});
  await panel.getByRole("button", { name: "Retry failed" }).click();
  await expect(history.locator("li").first()).toContainText("retry of failed records", { timeout: 20_000 });
  await expect(history.locator("li").first()).toContainText("3 read: 1 created, 0 updated, 0 unchanged, 2 failed");
  await expect(panel.getByText("Records not synced in the last run (2)")).toBeVisible();
  await expect(failures).not.toContainText("g-000021");

  // Again: nothing changed, nothing is written, and the counts say so.
  await panel.getByRole("button", { name: "Sync now" }).click();
  await expect(history.locator("li").first()).toContainText("43 read: 0 created, 0 updated, 41 unchanged, 2 failed", {
    timeout: 20_000,
  });

  // The page itself at the narrow width, with the history: accessible.
  const src = page.frames().find((f) => f.url().includes("/settings?session="))!.url();
  for (const width of [320, 1200]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(src);
    await expect(page.getByTestId("sync-history")).toBeVisible();
    const results = await new AxeBuilder({ page }).withTags(RULE_SETS).analyze();
    expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), `sync history at ${width}px`).toEqual([]);
    await page.getByTestId("sync-history").scrollIntoViewIfNeeded();
    await page.screenshot({ path: `test-results/sync-history-${width}.png`, fullPage: true });
  }
});
