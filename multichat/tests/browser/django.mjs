// The multichat page beside Django, in Debian's headless Chromium (tests/browser.rs runs it): a browser that logged
// in to Django carries Django's session cookie, and the page opens the chat with it, no login of its own.
// Usage: node django.mjs BASE_URL SESSION_COOKIE_NAME SESSION_KEY
// Prints READY once the page signed itself in by the session, joined General and sent a message; then DONE with the
// status line once the socket was closed by Django's logout (the page shows the login form again, whose answer
// points to Django).
import { joinGeneralAndSay, launch, watch } from "./common.mjs";

const [base, cookieName, sessionKey] = process.argv.slice(2);
const browser = await launch();
try {
  const context = await browser.newContext();
  // What Django's login left in this browser: its session cookie for the host (cookies are not per port).
  await context.addCookies([{ name: cookieName, value: sessionKey, url: base, httpOnly: true, sameSite: "Lax" }]);
  const page = watch(await context.newPage());

  await page.goto(base);
  await page.locator("#rooms-view").waitFor({ state: "visible" });
  await joinGeneralAndSay(page, "hello from a Django login");
  const signedIn = await page.textContent("#status");
  console.log("READY " + JSON.stringify({ status: signedIn }));

  // Django logs the user out (the test does it, with Django's own logout): the socket closes, the page says so.
  await page.locator("#login-view").waitFor({ state: "visible", timeout: 30000 });
  const status = await page.textContent("#status");
  // Its own login form does not log in here: it points to Django.
  await page.fill("#username", "alice");
  await page.fill("#password", "anything");
  await page.click("#login-button");
  await page.locator("#login-error", { hasText: "Django" }).waitFor();
  console.log("DONE " + JSON.stringify({ status, login_error: await page.textContent("#login-error") }));
} finally {
  await browser.close();
}
