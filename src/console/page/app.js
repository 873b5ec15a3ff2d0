// The dashboard: asks for the secret once (kept in sessionStorage for this tab), reads the JSON
// routes with it and draws them. Every value from the server is untrusted text (Meta's and the
// processor's words among it): it goes into the page through textContent only, never as HTML.
'use strict';

const KEY = 'whatrack-jobs-secret';
const JOBS = '/api/v1/jobs';
const RUNS_SHOWN = 20;
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = el('tr');
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el('td', cell));
  return tr;
}

function badge(text, className) {
  return el('span', text, 'badge ' + (className || text));
}

function when(iso) {
  if (!iso) return 'never';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return ms + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
  return Math.round(ms / 60000) + ' min';
}

function age(seconds) {
  if (!seconds) return 'none due';
  if (seconds < 120) return seconds + ' s';
  if (seconds < 7200) return Math.round(seconds / 60) + ' min';
  return (seconds / 3600).toFixed(1) + ' h';
}

function runMs(run) {
  if (!run.startedAt || !run.finishedAt) return null;
  return Math.max(0, new Date(run.finishedAt) - new Date(run.startedAt));
}

// The summary's figures that are not zero ("attempted: 2, delivered: 2"), nested ones by their
// path ("purged.jobRuns: 40"); a run that found nothing to do says so.
function summaryText(run) {
  if (run.error) return run.error;
  if (!run.summary || typeof run.summary !== 'object') return '';
  const parts = [];
  const walk = (object, prefix) => {
    for (const [key, value] of Object.entries(object)) {
      if (value && typeof value === 'object') walk(value, prefix + key + '.');
      else if (value) parts.push(prefix + key + ': ' + value);
    }
  };
  walk(run.summary, '');
  return parts.length ? parts.join(', ') : 'nothing to do';
}

class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A JSON route with the secret. The overview answers 503 with its body when a job is overdue:
// that body is data, so `accept` lists the statuses whose body the caller wants.
async function api(path, options = {}, accept = [200]) {
  const headers = { 'x-cron-secret': sessionStorage.getItem(KEY) || '' };
  if (options.body) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: 'no-store' });
  } catch (e) {
    throw new Refused(0, 'The app did not answer (' + e.message + ')');
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!accept.includes(response.status)) {
    const reason = body && body.error ? body.error : response.statusText;
    throw new Refused(response.status, path + ' answered ' + response.status + ': ' + reason);
  }
  return { status: response.status, body };
}

function showError(message, warning) {
  const box = $('error');
  box.textContent = message;
  box.className = warning ? 'warning' : '';
  box.hidden = !message;
}

function drawJobs(jobs) {
  const cards = $('job-cards');
  cards.replaceChildren();
  for (const job of jobs) {
    const card = el('article', null, 'card');
    card.dataset.job = job.jobType;
    const title = el('h3', job.jobType + ' ');
    title.append(badge(job.isRunning ? 'running' : 'idle'));
    if (job.overdue) title.append(badge('overdue'));
    if (job.paused) title.append(badge('paused'));
    if (job.held) title.append(badge('held by Meta', 'held'));
    card.append(title);
    const facts = el('dl');
    const last = job.lastRun;
    const success = job.lastSuccess;
    const expected = success && success.finishedAt
      ? when(new Date(new Date(success.finishedAt).getTime() + job.overdueAfterMinutes * 60000).toISOString())
      : 'now (never succeeded)';
    for (const [name, value, key] of [
      ['Last run', last ? when(last.startedAt) + ' (' + last.status + ')' : 'never', 'last-run'],
      ['Last success', success ? when(success.finishedAt) : 'never', 'last-success'],
      ['Next run expected by', expected, 'expected-by'],
      ['Paused since', job.paused ? when(job.pausedSince) : 'not paused', 'paused-since'],
      ...(job.held ? [['Held', job.held, 'held']] : []),
    ]) {
      facts.append(el('dt', name));
      const dd = el('dd', value);
      dd.dataset.field = key;
      facts.append(dd);
    }
    card.append(facts);
    cards.append(card);
  }
}

function drawRuns(lists) {
  const box = $('run-lists');
  box.replaceChildren();
  for (const { jobType, runs } of lists) {
    const part = el('div');
    part.dataset.job = jobType;
    part.append(el('h3', jobType + ': last ' + runs.length + ' runs'));
    const chart = el('div', null, 'bars');
    chart.setAttribute('aria-label', 'durations, oldest first');
    const longest = Math.max(1, ...runs.map((r) => runMs(r) || 0));
    for (const run of [...runs].reverse()) {
      const bar = el('span', null, 'bar ' + run.status);
      // CSSOM, not a style attribute: the policy allows no inline styles.
      bar.style.height = Math.round(((runMs(run) || 0) / longest) * 100) + '%';
      bar.title = when(run.startedAt) + ': ' + run.status + ', ' + duration(runMs(run));
      chart.append(bar);
    }
    part.append(chart);
    const table = el('table');
    table.append(row(['Started', 'Trigger', 'Status', 'Duration', 'Summary'].map((h) => el('th', h))));
    for (const run of runs) {
      const status = el('td');
      status.append(badge(run.status));
      table.append(row([when(run.startedAt), run.trigger, status, duration(runMs(run)), el('td', summaryText(run), 'text')]));
    }
    const scroll = el('div', null, 'scroll');
    scroll.append(table);
    part.append(scroll);
    box.append(part);
  }
}

function drawEstate(estate) {
  const q = estate.webhooks;
  $('webhooks-pending').textContent = q.pending;
  $('webhooks-due').textContent = q.due;
  $('webhooks-dead').textContent = q.dead;
  $('webhooks-oldest').textContent = age(q.oldestDueAgeSeconds);
  $('redrive').disabled = q.dead === 0;

  const organizations = $('organizations');
  organizations.replaceChildren();
  for (const t of estate.organizations) {
    const state = el('td');
    state.append(t.paused ? badge('paused') : badge('going', 'idle'));
    organizations.append(row([t.organizationId || 'no organization', t.due, t.dead, state]));
  }
  if (estate.organizations.length === 0) organizations.append(row(['None', '', '', '']));

  const health = $('health');
  health.replaceChildren();
  for (const { health: status, count } of estate.connections) {
    const item = el('div');
    item.dataset.health = status;
    item.append(el('dt', status, status), el('dd', count));
    health.append(item);
  }
  if (estate.connections.length === 0) health.append(el('div', 'No active connections'));

  const unhealthy = $('unhealthy');
  unhealthy.replaceChildren();
  for (const c of estate.unhealthy) {
    const status = el('td');
    status.append(badge(c.health || 'unknown'));
    unhealthy.append(row([c.phoneNumberId || c.connectionId, status, when(c.checkedAt), el('td', c.reason || '', 'text')]));
  }
  if (estate.unhealthy.length === 0) unhealthy.append(row(['None', '', '', '']));

  $('meta-usage').textContent = metaUsage(estate.meta);
  const held = $('held');
  held.replaceChildren();
  for (const h of estate.held) {
    const numbers = h.phoneNumbers.join(', ') + (h.connections > h.phoneNumbers.length ? ', ...' : '');
    held.append(row([h.business, when(h.until), h.connections, el('td', numbers, 'text')]));
  }
  $('held-box').hidden = estate.held.length === 0;

  const tokens = estate.expiringTokens;
  $('warning-days').textContent = tokens.withinDays;
  $('expiring-count').textContent = tokens.count;
  const expiring = $('expiring');
  expiring.replaceChildren();
  for (const t of tokens.soonest) expiring.append(row([t.phoneNumberId || t.connectionId, when(t.expiresAt)]));
  if (tokens.soonest.length === 0) expiring.append(row(['None', '']));
}

// Meta's latest X-App-Usage figures, and its cool-down while one is on.
function metaUsage(meta) {
  const parts = [];
  const app = meta.graphUsage && meta.graphUsage.app;
  if (app) {
    parts.push(`Meta's usage of the app's hourly limit: calls ${app.callCount}%, CPU ${app.totalCputime}%, ` +
      `time ${app.totalTime}% (${when(app.at)})`);
  } else {
    parts.push("Meta's usage of the app's hourly limit: low (no usage header in the last day)");
  }
  if (meta.coolDownUntil) parts.push(`Meta throttled the app: no Graph call until ${when(meta.coolDownUntil)}`);
  return parts.join('. ');
}

async function load() {
  $('refresh').disabled = true;
  try {
    const overview = await api(JOBS, {}, [200, 503]);
    if (!overview.body || !Array.isArray(overview.body.jobs)) {
      throw new Refused(overview.status, JOBS + ' answered ' + overview.status + ' without the jobs (a proxy in the way?)');
    }
    const jobs = overview.body.jobs;
    const [runs, estate] = await Promise.all([
      Promise.all(jobs.map((j) => api(JOBS + '/' + j.jobType + '/runs?limit=' + RUNS_SHOWN).then((r) => r.body))),
      api(JOBS + '/console').then((r) => r.body),
    ]);
    drawJobs(jobs);
    drawRuns(runs);
    drawEstate(estate);
    const overdue = jobs.filter((j) => j.overdue).map((j) => j.jobType);
    showError(overdue.length ? 'Overdue (the overview answers 503): ' + overdue.join(', ') : '', true);
    $('console').hidden = false;
    $('updated').textContent = 'updated ' + when(new Date().toISOString());
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin('Wrong secret (401 Unauthorized): enter the cron secret again.');
    } else {
      showError(e.message);
    }
  } finally {
    $('refresh').disabled = false;
  }
}

function showLogin(message) {
  $('console').hidden = true;
  $('refresh').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  showError(message || '');
  $('secret').focus();
}

function start() {
  $('refresh').hidden = false;
  $('forget').hidden = false;
  $('login').hidden = true;
  return load();
}

async function redriveAll() {
  const dead = $('webhooks-dead').textContent;
  if (!window.confirm('Put all ' + dead + ' dead-lettered webhooks back in the queue?')) return;
  const result = $('redrive-result');
  try {
    const { body } = await api(JOBS + '/webhook-retry/redrive', { method: 'POST', body: JSON.stringify({ dead: true }) });
    result.textContent = 'Redriven: ' + body.redriven;
  } catch (e) {
    result.textContent = e.message;
  }
  await load();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $('secret').value);
    $('secret').value = '';
    start();
  });
  $('refresh').addEventListener('click', load);
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    showLogin();
  });
  $('redrive').addEventListener('click', redriveAll);
  if (sessionStorage.getItem(KEY)) start();
  else showLogin();
});
