// Drives the agent's page in Debian's Chromium: ask for the weather, see the answer and the trace,
// and check that markup in a message is shown as text and that the CSP reports no violation.
// Usage: AGENT_URL=http://127.0.0.1:3000 SCREENSHOT=/tmp/page.png node page.mjs
import { chromium } from "playwright-core";

const url = process.env.AGENT_URL;
if (!url) throw new Error("AGENT_URL is not set");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { violations: [] };
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) result.violations.push(m.text()); });
  page.on("pageerror", (e) => result.violations.push(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("Sidecar"));
  result.status = await page.textContent("#status");

  // The scripted question, in Bedrock mode.
  await page.check('input[name="mode"][value="bedrock"]');
  await page.fill("#message", "Weather in Dallas?");
  await page.click("#send");
  await page.waitForSelector(".msg.agent, .msg.error", { timeout: 60000 });
  result.answer = await page.textContent(".msg.agent, .msg.error");
  result.trace = await page.$$eval("#trace li .step", (els) => els.map((e) => e.textContent));

  // Markup typed by the user is shown as text: no element is created from it.
  await page.fill("#message", '<img src=x id=injected onerror="window.pwned=1"> in Paris');
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg").length >= 4, null, { timeout: 60000 });
  result.injected_elements = await page.$$eval("#injected", (els) => els.length);
  result.pwned = await page.evaluate(() => window.pwned === 1);
  result.user_bubble = await page.textContent(".msg.user:nth-of-type(3)");
  // On behalf of the signed-in developer: the token is pasted, the OBO flow chosen.
  if (process.env.USER_TOKEN) {
    await page.check('input[name="flow"][value="obo"]');
    await page.check('input[name="mode"][value="direct"]');
    await page.fill("#user-token", process.env.USER_TOKEN);
    await page.fill("#message", "Weather in London?");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".msg").length >= 6, null, { timeout: 60000 });
    result.obo_answer = await page.textContent(".msg:nth-of-type(6)");
    result.obo_trace = await page.$$eval("#trace li .step", (els) => els.map((e) => e.textContent));
  }
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
