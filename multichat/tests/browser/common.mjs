// What every browser script here shares: Debian's headless Chromium (playwright-core, no browser
// download), the page's set-up, joining General.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ], // playwright gives every launch a fresh, empty user data dir of its own
  });
}

// Logs the page's errors and gives every wait the same patience.
export function watch(page) {
  page.on("pageerror", (error) => console.error("page error:", error.message));
  page.setDefaultTimeout(20000);
  return page;
}

// On a signed-in page: joins General and sends `text`, then waits until the page shows it.
export async function joinGeneralAndSay(page, text) {
  await page.click('#rooms button.join[data-room="1"]');
  const pane = page.locator('.pane[data-room="1"]');
  await pane.waitFor();
  await pane.locator(".message-input").fill(text);
  await pane.locator(".message-input").press("Enter");
  await pane.locator(".messages .text", { hasText: text }).waitFor();
  return pane;
}
