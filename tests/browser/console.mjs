// Drives the dashboard in Debian's headless Chromium as an operator would, for tests/console.rs:
// a wrong secret first, then the right one; reads what each section shows, redrives the dead
// webhooks through the confirm dialog, and prints what it saw as JSON. The Rust test compares
// that with the database.
//
//   node console.mjs <app URL> <secret> <screenshot.png>
import { chromium } from 'playwright-core';

const [base, secret, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Closed network: without these, Chromium's own background connections fail noisily.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const seen = { consoleErrors: [], failedLoads: [], dialogs: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // An answer other than 2xx is logged too; the test checks which ones came.
    if (m.text().startsWith('Failed to load resource')) seen.failedLoads.push(m.location().url.replace(base, '') + ' ' + m.text().match(/status of (\d+)/)[1]);
    else seen.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));
  await page.goto(base + '/api/v1/jobs/ui');
  seen.title = await page.title();

  await page.fill('#secret', secret + '-wrong');
  await page.click('#login button');
  await page.waitForFunction(() => /401/.test(document.getElementById('error').textContent));
  seen.wrongSecret = {
    error: await page.textContent('#error'),
    loginShown: await page.isVisible('#login'),
    consoleShown: await page.isVisible('#console'),
  };

  await page.fill('#secret', secret);
  await page.click('#login button');
  await page.waitForSelector('#job-cards .card');
  await page.waitForSelector('#health div');
  seen.banner = await page.textContent('#error');
  seen.loginShownAfter = await page.isVisible('#login');
  seen.secretStored = await page.evaluate(() => sessionStorage.getItem('whatrack-jobs-secret') !== null);
  Object.assign(seen, await page.evaluate(() => {
    const text = (node) => (node ? node.textContent.trim() : null);
    const cells = (tbody) => [...document.querySelectorAll(tbody + ' tr')].map((tr) => [...tr.cells].map(text));
    return {
      jobs: [...document.querySelectorAll('#job-cards .card')].map((card) => ({
        job: card.dataset.job,
        badges: [...card.querySelectorAll('h3 .badge')].map(text),
        fields: Object.fromEntries([...card.querySelectorAll('dd')].map((dd) => [dd.dataset.field, text(dd)])),
      })),
      runs: [...document.querySelectorAll('#run-lists > div')].map((part) => ({
        job: part.dataset.job,
        bars: part.querySelectorAll('.bars .bar').length,
        barHeights: [...part.querySelectorAll('.bars .bar')].map((b) => b.style.height),
        rows: [...part.querySelectorAll('table tr')].slice(1).map((tr) => [...tr.cells].map(text)),
      })),
      webhooks: {
        pending: text(document.getElementById('webhooks-pending')),
        due: text(document.getElementById('webhooks-due')),
        dead: text(document.getElementById('webhooks-dead')),
        oldest: text(document.getElementById('webhooks-oldest')),
      },
      organizations: cells('#organizations'),
      health: Object.fromEntries([...document.querySelectorAll('#health div')].map((d) => [d.dataset.health, text(d.querySelector('dd'))])),
      unhealthy: cells('#unhealthy'),
      expiringCount: text(document.getElementById('expiring-count')),
      warningDays: text(document.getElementById('warning-days')),
      expiring: cells('#expiring'),
      metaUsage: text(document.getElementById('meta-usage')),
      // Markup that came in as text must stay text: no element made from it, no script run.
      images: document.querySelectorAll('img').length,
      scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
      titleAfter: document.title,
      overflowsWidth: document.documentElement.scrollWidth > window.innerWidth,
    };
  }));
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  seen.phoneOverflows = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await page.setViewportSize({ width: 1280, height: 900 });

  page.on('dialog', async (dialog) => {
    seen.dialogs.push(dialog.message());
    await dialog.accept();
  });
  await page.click('#redrive');
  await page.waitForFunction(() => /Redriven/.test(document.getElementById('redrive-result').textContent));
  await page.waitForFunction(() => document.getElementById('webhooks-dead').textContent === '0');
  seen.redriven = await page.textContent('#redrive-result');
  seen.deadAfter = await page.textContent('#webhooks-dead');
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
