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

/**
 * Makes `page` a browser that does not send the portal's cookie to the authorize endpoint the app's frame redirects
 * to, as one that treats that request as third-party does. Chromium sends it there even with third-party cookies
 * blocked (measured with Chromium 156, by the flag and by the profile preference alike: its check looks at the top
 * frame, the portal itself, in this portal → app → portal chain), and Playwright does not route redirect hops, so
 * the portal's cookie is taken out of the browser as the app's frame starts to load: the portal's page has been
 * served with it, nothing the frame does afterwards carries it. Returns what the frame sent to the authorize
 * endpoint (its URL and its Cookie header, as Chromium reports it).
 */
export async function withholdPortalCookieFromFrames(page: Page): Promise<{ url: string; cookie: string | null }[]> {
  const portal = new URL(portalURL).origin;
  await page.route(
    (url) => url.origin !== portal,
    async (route) => {
      const request = route.request();
      if (request.isNavigationRequest() && request.frame() !== page.mainFrame()) {
        await page.context().clearCookies({ domain: new URL(portalURL).hostname });
      }
      await route.continue();
    },
  );
  const sent: { url: string; cookie: string | null }[] = [];
  page.on("request", async (request) => {
    const url = new URL(request.url());
    if (url.origin === portal && url.pathname === "/exchange/1/oauth/authorize" && request.frame() !== page.mainFrame()) {
      const entry = { url: request.url(), cookie: null as string | null };
      sent.push(entry);
      entry.cookie = (await request.allHeaders())["cookie"] ?? null;
    }
  });
  return sent;
}

/** Infobip's launch `state` of the app framed at `selector` (the frame's first address, as the portal set it). */
export async function launchState(page: Page, selector: string): Promise<{ src: string; state: string }> {
  const src = (await page.locator(selector).getAttribute("src"))!;
  return { src, state: new URL(src).searchParams.get("state")! };
}

/** Points the frame at `selector` to `src` again, as a reload of the frame's first address would. */
export async function reframe(page: Page, selector: string, src: string) {
  await page.evaluate(
    ({ selector, src }) => ((document.querySelector(selector) as HTMLIFrameElement).src = src),
    { selector, src },
  );
}
