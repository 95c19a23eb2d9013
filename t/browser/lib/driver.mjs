// Headless Chromium for t/browser/*.t, driven over stdin/stdout (Browser.pm).
//
//   node driver.mjs '{"args":["--ignore-certificate-errors"]}'
//
// Starts Debian's /usr/bin/chromium through playwright-core with a fresh
// user data dir (removed at exit), opens one page, prints {"event":"ready"}.
// Then each line on stdin is one command, {"id":N,"cmd":"...",...}, answered
// by one line {"id":N,"ok":true,"value":...} or {"id":N,"ok":false,"error":"..."}:
//
//   goto {url}            load a page (waits for "load")
//   eval {js}             the value of a JS expression in the page (promises
//                         are awaited); must be JSON-serialisable
//   wait {js, timeout}    poll the expression until it is truthy; its value
//   fill {selector, value}, click {selector}, press {selector, key}
//   screenshot {path}     PNG of the page
//   responses             [{url, status, headers}] of every response the page got
//   clear_cookies         forget the context's cookies
//   quit                  close the browser and exit
//
// Lines {"event":"console"|"pageerror"|"requestfailed",...} report what the
// page logged; Browser.pm shows them when a test fails.  stdin closing ends
// the browser too, so a test that dies leaves no Chromium behind.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const opts = JSON.parse(process.argv[2] || '{}');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-chromium-'));
let context;
let quitting = false;

async function quit(code) {
    if (quitting) return;
    quitting = true;
    try { if (context) await context.close(); } catch (e) { /* already gone */ }
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.exit(code);
}

const timeout = opts.timeout || 60000;
try {
    context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: opts.executablePath || '/usr/bin/chromium',
        headless: true,
        timeout: 120000,
        handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
        viewport: opts.viewport || { width: 1000, height: 800 },
        args: [
            '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
            '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync',
            ...(opts.args || []),
        ],
    });
} catch (e) {
    out({ event: 'launch-failed', error: String(e && e.message || e) });
    await quit(2);
}

const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(timeout);
const responses = [];
page.on('console', (m) => out({ event: 'console', type: m.type(), text: m.text() }));
page.on('pageerror', (e) => out({ event: 'pageerror', text: String(e && e.message || e) }));
page.on('requestfailed', (r) => out({ event: 'requestfailed', url: r.url(),
                                      error: (r.failure() || {}).errorText }));
page.on('response', (r) => responses.push({ url: r.url(), status: r.status(), headers: r.headers() }));

const commands = {
    goto: async (c) => { const r = await page.goto(c.url, { waitUntil: 'load' });
                         return r ? r.status() : null; },
    eval: async (c) => page.evaluate(c.js),
    wait: async (c) => {
        const h = await page.waitForFunction(c.js, null,
            { timeout: c.timeout || timeout, polling: 100 });
        return h.jsonValue();
    },
    fill: async (c) => { await page.fill(c.selector, c.value); return true; },
    click: async (c) => { await page.click(c.selector); return true; },
    press: async (c) => { await page.press(c.selector, c.key); return true; },
    screenshot: async (c) => {
        fs.mkdirSync(path.dirname(c.path), { recursive: true });
        await page.screenshot({ path: c.path, fullPage: !!c.fullPage });
        return c.path;
    },
    responses: async () => responses,
    clear_cookies: async () => { await context.clearCookies(); return true; },
    quit: async () => true,
};

out({ event: 'ready', version: context.browser() ? context.browser().version() : null });

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
    queue = queue.then(async () => {
        let c;
        try { c = JSON.parse(line); } catch (e) { out({ ok: false, error: 'bad json: ' + line }); return; }
        const f = commands[c.cmd];
        if (!f) { out({ id: c.id, ok: false, error: 'unknown command ' + c.cmd }); return; }
        try {
            const value = await f(c);
            out({ id: c.id, ok: true, value: value === undefined ? null : value });
        } catch (e) {
            out({ id: c.id, ok: false, error: String(e && e.message || e) });
        }
        if (c.cmd === 'quit') await quit(0);
    });
});
rl.on('close', () => { queue.then(() => quit(0)); });
process.on('SIGTERM', () => quit(1));
