import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { dataDir, ibexRoot, portalURL } from "../playwright.config";
import { expectThirdPartyCookiesBlocked, launchState, reframe, withholdPortalCookieFromFrames } from "./portal";

const INITECH = "6D1E0F2A3B4C5D6E7F8091A2B3C4D5E6";
// The demo shop of this run (playwright.config.ts starts it on IBEX_E2E_SHOP_PORT).
const SHOP = `http://127.0.0.1:${process.env.IBEX_E2E_SHOP_PORT ?? "4101"}`;
const RULE_SETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];

/** Initech's settings, as its admin would save them, pointing at the demo shop (idempotent). */
function configureInitech() {
  const run = spawnSync(
    `${ibexRoot}/target/release/ibex`,
    ["--dev", "settings", "set", INITECH, "api_key=e2e-shop-key", `api_base_url=${SHOP}`],
    {
      env: { ...process.env, IBEX_DATA_DIR: dataDir, DATABASE_URL: `sqlite://${dataDir}/ibex.db?mode=rwc` },
      encoding: "utf8",
    },
  );
  expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
}

/** Signs in to the portal as `user` and opens Conversations, where the card is framed beside the chat. */
async function openWorkspace(page: Page, user: string) {
  await page.goto(`${portalURL}/login?next=/conversations`);
  await page.getByLabel(new RegExp(user)).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.goto(`${portalURL}/conversations`);
  return page.frameLocator("#card-frame");
}

async function expectAccessible(page: Page, state: string) {
  const results = await new AxeBuilder({ page }).withTags(RULE_SETS).analyze();
  expect(
    results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    state,
  ).toEqual([]);
}

test("the context card shows the customer and their recent orders, and follows the agent's choice", async ({
  page,
}) => {
  configureInitech();
  await page.setViewportSize({ width: 1280, height: 900 });
  const card = await openWorkspace(page, "ida.designer");
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
  await expect(card.getByTestId("partner-fields")).toContainText("gold");
  await expect(card.getByRole("region", { name: "Recent orders" })).toContainText("Headlamp");
  await expectThirdPartyCookiesBlocked(page, "/card?");
  await page.screenshot({ path: "test-results/card-in-workspace.png" });

  await page.getByRole("link", { name: /Marko/ }).click();
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Marko Kovač");
  await expect(card.getByTestId("partner-fields")).toContainText("silver");
  await expect(card.getByRole("region", { name: "Recent orders" })).toContainText("Rain jacket");

  // The card's own URL carries a session id, never the Infobip token; axe at the card's widths.
  const src = page.frames().find((f) => f.url().includes("/card?"))!.url();
  expect(src).toContain("card=");
  for (const width of [320, 420]) {
    await page.setViewportSize({ width, height: 700 });
    await page.goto(src);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("Marko Kovač");
    await expectAccessible(page, `found at ${width}px`);
    await page.screenshot({ path: `test-results/card-${width}.png`, fullPage: true });
  }
});

test("the card signs in with Infobip's launch state when the portal's cookie is withheld from the frame, once", async ({
  page,
}) => {
  const withheld = await withholdPortalCookieFromFrames(page);
  // Globex's agent: the card's heading (the end user) comes from Conversations, so Globex need not be set up. One
  // visit to the workspace: once the card's frame loads, this browser has no portal cookie left for another.
  await page.goto(`${portalURL}/login`);
  await page.getByLabel(/eve\.owner/).check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/exchange\/my-apps$/);
  await page.goto(`${portalURL}/conversations`);
  const card = page.frameLocator("#card-frame");
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Jane Doe");
  await expectThirdPartyCookiesBlocked(page, "/card?");
  // Infobip's launch `state` went to authorize unchanged, without the portal's cookie.
  const launch = await launchState(page, "#card-frame");
  expect(withheld.map((r) => new URL(r.url).searchParams.get("state"))).toEqual([launch.state]);
  expect(withheld.map((r) => r.cookie)).toEqual([null]);

  // The same launch again (the frame reloaded at its first address): Infobip refuses it, and the card says so.
  await reframe(page, "#card-frame", launch.src);
  await expect(card.getByRole("heading", { level: 1 })).toHaveText("Sign-in was refused");
  await expect(card.getByRole("alert")).toContainText("launch state already used");
  await page.screenshot({ path: "test-results/card-launch-replayed.png" });

  // And this browser does withhold the cookie: a sign-in without a launch (a renewal) is not known to Infobip.
  const renewal = new URL(launch.src);
  renewal.search = `conversationId=${renewal.searchParams.get("conversationId")}&card=AAAAAAAAAAAAAAAAAAAAAA`;
  await reframe(page, "#card-frame", renewal.toString());
  await expect(card.getByRole("alert")).toContainText("not signed in to Infobip");
  expect(withheld).toHaveLength(3);
});

/** The framed card's own URL (it carries the card session), to open it at a card's width. */
function cardURL(page: Page) {
  return page.frames().find((f) => f.url().includes("/card?"))!.url();
}

test("the context card says so when the app is not set up, the customer is unknown or Infobip refuses", async ({
  page,
  request,
}) => {
  // Acme has not set the app up (the configuration tests, later, save its first version): the card names the
  // end user and says where an admin sets the app up.
  const acme = await openWorkspace(page, "ana.admin");
  await page.getByRole("link", { name: /\+15550100999/ }).click();
  await expect(acme.getByRole("heading", { level: 1 })).toHaveText("+15550100999");
  const src = cardURL(page);
  // It says where an admin sets the app up, with no link: the configuration page is not the agent's.
  await expect(acme.getByTestId("not-configured").getByRole("link")).toHaveCount(0);
  await page.setViewportSize({ width: 320, height: 600 });
  await page.goto(src);
  const notConfigured = page.getByTestId("not-configured");
  await expect(notConfigured).toContainText("Order desk is not set up for this account yet");
  await expectAccessible(page, "not configured");
  await page.screenshot({ path: "test-results/card-not-configured-320.png", fullPage: true });

  // Initech is set up; its third conversation is from a number the shop does not know.
  configureInitech();
  await page.setViewportSize({ width: 1280, height: 900 });
  const initech = await openWorkspace(page, "ida.designer");
  await page.getByRole("link", { name: /\+385915550123/ }).click();
  await expect(initech.getByTestId("not-found")).toHaveText("No customer for +385915550123 in Order desk.");
  await page.setViewportSize({ width: 320, height: 600 });
  await page.goto(cardURL(page));
  await expectAccessible(page, "unknown end user");
  await page.screenshot({ path: "test-results/card-unknown-320.png", fullPage: true });

  await request.post(`${portalURL}/_sim/oauth`, { data: { messages_status: 403 } });
  try {
    await page.setViewportSize({ width: 1280, height: 900 });
    const card = await openWorkspace(page, "eve.owner");
    await expect(card.getByRole("heading", { level: 1 })).toHaveText("Infobip refused the card");
    await expect(card.getByRole("link", { name: "Try again" })).toBeVisible();
    const refused = page.frames().find((f) => f.url().includes("/card?"))!.url();
    await page.setViewportSize({ width: 320, height: 600 });
    await page.goto(refused);
    await expectAccessible(page, "Infobip refused");
    await page.screenshot({ path: "test-results/card-refused-320.png", fullPage: true });
  } finally {
    await request.post(`${portalURL}/_sim/oauth`, { data: {} });
  }
});

test("the partner failing shows a Retry that brings the card back once the partner answers", async ({ page, request }) => {
  configureInitech();
  const framed = await openWorkspace(page, "ida.designer");
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
  const src = cardURL(page);
  const faults = (body: object) => request.post(`${SHOP}/_sim/faults`, { data: body });
  expect((await faults({ status: 500, fail_next: 20 })).ok()).toBe(true);
  try {
    await page.setViewportSize({ width: 320, height: 600 });
    await page.goto(src);
    const failed = page.getByTestId("partner-failed");
    await expect(failed).toContainText("Order desk");
    await expectAccessible(page, "partner failing");
    await page.screenshot({ path: "test-results/card-partner-failed-320.png", fullPage: true });
    expect((await faults({})).ok()).toBe(true);
    await failed.getByRole("link", { name: "Retry" }).click();
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
    await expect(page.getByRole("region", { name: "Recent orders" })).toContainText("Headlamp");
  } finally {
    await faults({});
  }
});

test("an expired Infobip token is renewed without the agent noticing", async ({ page, request }) => {
  configureInitech();
  // Tokens that live one second: the card's sign-in expires while the agent reads it.
  expect((await request.post(`${portalURL}/_sim/oauth`, { data: { expires_in: 1 } })).ok()).toBe(true);
  try {
    const framed = await openWorkspace(page, "ida.designer");
    await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
    const before = new URL(cardURL(page)).searchParams.get("card");
    expect((await request.post(`${portalURL}/_sim/oauth`, { data: {} })).ok()).toBe(true);
    await page.waitForTimeout(1500);
    await framed.getByRole("link", { name: "Refresh the card" }).click();
    // The same card again, on a new card session made by a sign-in the agent never saw.
    await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
    await expect(framed.getByRole("region", { name: "Recent orders" })).toContainText("Headlamp");
    await expect.poll(() => new URL(cardURL(page)).searchParams.get("card")).not.toBe(before);
  } finally {
    await request.post(`${portalURL}/_sim/oauth`, { data: {} });
  }
});

test("one account's card session shows nothing of another account's conversations", async ({ page, request }) => {
  configureInitech();
  const framed = await openWorkspace(page, "ida.designer");
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
  const card = new URL(cardURL(page)).searchParams.get("card")!;
  // Globex's conversation with Jane Doe, asked for with Initech's card session: by URL, and by the card's own
  // server function.
  // In the frame, as the card would be (a new sign-in, as Initech's agent, follows: not Globex's).
  const globexConversation = "9d2e6f10-globex-0001";
  await page.evaluate(
    (src) => ((document.getElementById("card-frame") as HTMLIFrameElement).src = src),
    `${new URL(cardURL(page)).origin}/card?conversationId=${globexConversation}&card=${card}`,
  );
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Conversation not found");
  await expect(framed.locator("body")).not.toContainText("Jane");
  // Bound to Initech's conversation, the session is sent to sign in again: a redirect, and nothing of Jane.
  const direct = await request.post("/api/load_card", {
    form: { card, conversation_id: globexConversation, attempt: "0" },
    maxRedirects: 0,
  });
  expect(direct.status()).toBe(303);
  expect(direct.headers()["location"]).toMatch(/^\/oauth\/start\?/);
  const body = await direct.text();
  expect(body).not.toContain("Jane");
  expect(body).not.toContain("441632960961");
});

test("an agent adds a note to an order from the card, after confirming it", async ({ page }) => {
  configureInitech();
  await page.setViewportSize({ width: 1280, height: 900 });
  const framed = await openWorkspace(page, "ida.designer");
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");
  const src = page.frames().find((f) => f.url().includes("/card?"))!.url();
  await page.setViewportSize({ width: 420, height: 800 });
  const wasm: string[] = [];
  page.on("request", (r) => {
    if (r.url().endsWith(".wasm")) wasm.push(new URL(r.url()).pathname);
  });
  await page.goto(src);
  // ida's token says de-DE: money and dates as a German agent reads them.
  const orders = page.getByRole("region", { name: "Recent orders" });
  await expect(orders).toContainText("35,00\u00a0€ · 30.08.2026");
  await expect(page.locator(".row-action").first()).toHaveAttribute("data-interactive", "true");
  // The row action hydrated from its own lazy chunk; the configuration page's code never came.
  expect(wasm.some((p) => p.includes("split_row_action_control"))).toBe(true);
  expect(wasm.filter((p) => p.includes("split_settings_island"))).toEqual([]);

  await page.getByRole("button", { name: "Add note: 1 × Headlamp" }).click();
  const note = page.getByRole("textbox", { name: "Note", exact: true });
  await expect(note).toBeFocused();
  await page.getByRole("button", { name: "Review" }).click();
  await expect(page.getByRole("alert")).toHaveText("Note is required.");
  await note.fill("Customer asked for a second headlamp");
  await expectAccessible(page, "action: typing");
  await page.getByRole("button", { name: "Review" }).click();
  await expect(page.getByRole("group", { name: "Confirm" })).toContainText("Add this note to order 1006?");
  await expectAccessible(page, "action: confirming");
  await page.screenshot({ path: "test-results/card-action-confirm-420.png", fullPage: true });
  await expect(page.getByRole("button", { name: "Confirm" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("action-done")).toBeFocused();
  await expect(page.getByTestId("action-done")).toHaveText(/^Note \S+ added to order 1006\.$/);
  await expectAccessible(page, "action: done");
  await page.screenshot({ path: "test-results/card-action-done-420.png", fullPage: true });
});

test("a campaign's customer is found past its 12 messages; a live chat says it shares no address", async ({ page }) => {
  configureInitech();
  await page.setViewportSize({ width: 1280, height: 900 });
  const framed = await openWorkspace(page, "ida.designer");
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Ana Horvat");

  // Twelve outbound messages (a campaign) before the customer wrote: more than Infobip's default page of 10.
  await page.getByRole("link", { name: /Jane Doe/ }).click();
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Jane Doe");
  await expect(framed.getByTestId("end-user")).toContainText("+441632960961");
  await expect(framed.getByTestId("partner-fields")).toContainText("bronze");

  // A live chat: `from` is the widget's visitor id, which is not sent to the shop as a phone number.
  await page.getByRole("link", { name: /Website visitor/ }).click();
  await expect(framed.getByRole("heading", { level: 1 })).toHaveText("Website visitor");
  await expect(framed.getByTestId("no-address")).toContainText(
    "This channel does not share the customer's phone number or email",
  );
  await expect(framed.getByTestId("end-user")).toContainText("Chat ID");
  await page.setViewportSize({ width: 320, height: 600 });
  await page.goto(cardURL(page));
  await expectAccessible(page, "channel without an address");
  await page.screenshot({ path: "test-results/card-no-address-320.png", fullPage: true });
});
