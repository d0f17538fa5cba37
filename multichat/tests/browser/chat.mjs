// Drives the multichat page in Debian's headless Chromium (tests/browser.rs runs it).
// Usage: node chat.mjs BASE_URL USERNAME PASSWORD   (SCREENSHOT=path.png to save one)
// Prints READY once it has joined General and sent a message, then DONE when
// bob's messages showed up as text and logging out returned to the login form.
import { joinGeneralAndSay, launch, watch } from "./common.mjs";

const [base, username, password] = process.argv.slice(2);
const XSS = "<img src=x onerror=alert(1)>";
const browser = await launch();
let dialogs = 0;
try {
  const page = watch(await browser.newPage({ viewport: { width: 1100, height: 640 } }));
  page.on("dialog", (dialog) => { dialogs += 1; dialog.dismiss(); });

  await page.goto(base);
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("#login-button");
  const pane = await joinGeneralAndSay(page, "hello from the browser");
  console.log("READY");

  await pane.locator(".messages .text", { hasText: "hello from bob" }).waitFor();
  const shown = await pane.locator(".messages .text").allTextContents();
  const images = await page.locator(".messages img").count();
  // What Chromium agreed with the server (the page's socket is a global of app.js).
  const extensions = await page.evaluate(() => (typeof socket !== "undefined" && socket ? socket.extensions : null));
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });

  await page.click("#logout");
  await page.locator("#login-form").waitFor({ state: "visible" });
  const status = await page.textContent("#status");
  console.log("DONE " + JSON.stringify({ shown, images, dialogs, status, extensions, xss_shown_as_text: shown.includes(XSS) }));
} finally {
  await browser.close();
}
