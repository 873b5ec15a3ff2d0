// Signs in to the dashboard in Debian's headless Chromium and saves a full-page screenshot once
// every section has loaded; prints what the job cards, the health figures and the businesses
// Meta holds show, as JSON. For tests/dev_script.rs (the Spin-served demo, whose screenshot the
// test writes to docs/console.png).
//
//   node screenshot.mjs <app URL> <secret> <screenshot.png>
import { chromium } from 'playwright-core';

const [base, secret, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base + '/api/v1/jobs/ui');
  await page.fill('#secret', secret);
  await page.click('#login button');
  await page.waitForSelector('#job-cards .card');
  await page.waitForSelector('#health div');
  await page.waitForSelector('#run-lists table tr');
  const seen = await page.evaluate(() => ({
    jobs: [...document.querySelectorAll('#job-cards .card')].map((card) => card.dataset.job),
    runRows: [...document.querySelectorAll('#run-lists > div')].map((part) => part.querySelectorAll('table tr').length - 1),
    health: Object.fromEntries([...document.querySelectorAll('#health div')].map((d) => [d.dataset.health, d.querySelector('dd').textContent.trim()])),
    heldShown: !document.getElementById('held-box').hidden,
    held: [...document.querySelectorAll('#held tr')].map((tr) => [...tr.cells].map((td) => td.textContent.trim())),
    jobHeld: Object.fromEntries([...document.querySelectorAll('#job-cards .card')].map((card) => {
      const held = card.querySelector('[data-field="held"]');
      return [card.dataset.job, held ? held.textContent.trim() : null];
    })),
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
