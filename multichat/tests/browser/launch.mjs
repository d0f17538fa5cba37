// Debian's headless Chromium as every browser script here starts it (playwright-core, no browser download).
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
