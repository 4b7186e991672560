import { defineConfig } from "@playwright/test";
import * as os from "node:os";
import * as path from "node:path";

// Servers run from the workspace root, on ports of their own so a developer's `scripts/run.sh` can stay up.
const root = path.resolve(__dirname, "..");
const ibexPort = process.env.IBEX_E2E_PORT ?? "3100";
const shopPort = process.env.IBEX_E2E_SHOP_PORT ?? "4101";
// The portal is on another site than ibex (127.0.0.1 vs localhost), as portal.infobip.com is to a partner.
const portalPort = process.env.IBEX_E2E_PORTAL_PORT ?? "4110";
export const portalURL = `http://127.0.0.1:${portalPort}`;
const ibexSite = `http://localhost:${ibexPort}`;
// Without the background-networking flags Chromium floods this machine's closed network with connections.
export const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  // Third-party cookies blocked, as Safari does by default: ibex's pages live in a cross-site iframe and must
  // work without them. Debian's Chromium 156 already blocks them in Playwright's contexts (checked: a frame on
  // another site cannot keep a cookie, with or without this flag); the flag keeps it so on a Chromium that does
  // not, and the card and sync specs check it with `expectThirdPartyCookiesBlocked`.
  "--test-third-party-cookie-phaseout",
];
// Set once in the runner and inherited by its workers, which load this file again under another pid.
process.env.IBEX_E2E_DATA_DIR ??= path.join(os.tmpdir(), `ibex-e2e-${process.pid}`);
/** ibex's data directory in these tests: its SQLite file and the development secrets `ibex --dev call` reads. */
export const dataDir = process.env.IBEX_E2E_DATA_DIR;
export const ibexRoot = root;
export const ibexURL = `http://127.0.0.1:${ibexPort}`;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  retries: 0,
  workers: 1,
  reporter: [["list"]],
  use: {
    baseURL: ibexURL,
    launchOptions: {
      // Debian's Chromium: Playwright's own browser download cannot work on these machines.
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: chromiumArgs,
    },
  },
  webServer: [
    {
      command: `${root}/target/release/ibex-sim shop --addr 127.0.0.1:${shopPort} --api-key e2e-shop-key --customers 40`,
      url: `http://127.0.0.1:${shopPort}/health`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command:
        `${root}/target/release/ibex-sim portal --addr 127.0.0.1:${portalPort} --client-id ibex-e2e ` +
        `--redirect-uri ${ibexSite}/oauth/callback --settings-url ${ibexSite}/settings ` +
        `--card-url ${ibexSite}/card`,
      url: `${portalURL}/login`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command:
        `${root}/target/release/ibex serve --dev --addr 127.0.0.1:${ibexPort} --public-url ${ibexSite} ` +
        `--oauth-authorize-url ${portalURL}/exchange/1/oauth/authorize ` +
        `--oauth-token-url ${portalURL}/exchange/1/oauth/token --oauth-client-id ibex-e2e ` +
        `--frame-ancestors ${portalURL} --infobip-api-url ${portalURL}`,
      cwd: root,
      url: `http://127.0.0.1:${ibexPort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        IBEX_DATA_DIR: dataDir,
        DATABASE_URL: `sqlite://${dataDir}/ibex.db?mode=rwc`,
        LEPTOS_SITE_ROOT: `${root}/target/site`,
        IBEX_LOG_FORMAT: "text",
        // The activity view's counters reach the database within a second, so a test sees the calls it made.
        IBEX_ACTIVITY_FLUSH_SECS: "1",
      },
    },
  ],
});
