// A headless Debian chromium driven by playwright-core, one command per stdin line, one JSON answer
// per stdout line: the Python tests (test_browser.py) decide what to do, this file only does it.
//
//   {"op": "open", "url": U, "javascript": false?, "wait_until": "load"|"commit"}
//                                                     a new page (the previous one is closed); answers its url
//   {"op": "fill", "selector": S, "value": V}         types into a field found by CSS selector
//   {"op": "fill_label", "label": L, "value": V}      ... found by its <label> text (accessibility check)
//   {"op": "click", "role": "button", "name": N}      clicks an element found by role and exact accessible name
//   {"op": "click", "selector": S}                    ... or by CSS selector
//   {"op": "wait_url", "prefix": P, "timeout_ms": T}  waits until the page's URL starts with P; answers it
//   {"op": "wait_text", "text": X, "timeout_ms": T}   waits until the page shows X
//   {"op": "screenshot", "path": F}                   a full-page PNG
//   {"op": "open_tab", "url": U}                      a second page (the customer's phone); the first stays open
//   {"op": "close_tab"}                               closes the second page: commands go to the first again
//   {"op": "info"}                                    {url, title, text}
//   {"op": "quit"}
// Every answer is {"ok": true, ...} or {"ok": false, "error": "..."}; console errors and CSP
// violations of the page are collected and returned by "info" and "open" (field "problems").
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.PAYMUX_CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const viewport = { width: 800, height: 900 };
const context = await browser.newContext({ viewport });
let noScript = null; // a context with scripts off, for pages that must work without them
let page = null;
let behind = null; // the page under an open_tab
let problems = [];

function track(p) {
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
}

async function run(cmd) {
  const timeout = cmd.timeout_ms ?? 15000;
  switch (cmd.op) {
    case 'open': {
      if (page) await page.close();
      problems = [];
      if (cmd.javascript === false && !noScript)
        noScript = await browser.newContext({ viewport, javaScriptEnabled: false });
      page = await (cmd.javascript === false ? noScript : context).newPage();
      track(page);
      await page.goto(cmd.url, { waitUntil: cmd.wait_until ?? 'load', timeout });
      return { url: page.url() };
    }
    case 'open_tab': {
      if (behind) throw new Error('a second page is open already');
      behind = page;
      page = await context.newPage();
      track(page);
      await page.goto(cmd.url, { waitUntil: cmd.wait_until ?? 'load', timeout });
      return { url: page.url() };
    }
    case 'close_tab': {
      if (!behind) throw new Error('no second page is open');
      await page.close();
      page = behind;
      behind = null;
      await page.bringToFront();
      return { url: page.url() };
    }
    case 'fill':
      await page.locator(cmd.selector).fill(cmd.value, { timeout });
      return {};
    case 'fill_label':
      await page.getByLabel(cmd.label, { exact: true }).fill(cmd.value, { timeout });
      return {};
    case 'click': {
      const target = cmd.selector ? page.locator(cmd.selector) : page.getByRole(cmd.role, { name: cmd.name, exact: true });
      await target.click({ timeout });
      return {};
    }
    case 'wait_url':
      await page.waitForURL((u) => u.href.startsWith(cmd.prefix), { timeout, waitUntil: 'load' });
      return { url: page.url() };
    case 'wait_text':
      await page.getByText(cmd.text).first().waitFor({ timeout });
      return {};
    case 'screenshot':
      await page.screenshot({ path: cmd.path, fullPage: true });
      return {};
    case 'info':
      return { url: page.url(), title: await page.title(), text: await page.locator('body').innerText(), problems };
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: `bad command: ${e.message}` }) + '\n');
    continue;
  }
  if (cmd.op === 'quit') break;
  try {
    const out = await run(cmd);
    process.stdout.write(JSON.stringify({ ok: true, ...out }) + '\n');
  } catch (e) {
    const url = page ? page.url() : '';
    process.stdout.write(JSON.stringify({ ok: false, error: String(e.message || e).split('\n')[0], url }) + '\n');
  }
}
await browser.close();
