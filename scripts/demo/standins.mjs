// DEMO ONLY (scripts/dev.sh --demo): stand-ins for Meta's Graph API (127.0.0.1:3901) and
// WhaTrack's webhook processor (127.0.0.1:3902), so that a newcomer's first minute shows both
// jobs at work. Nothing else uses them; the app talks to them only with the demo's variables.
// Every request is logged with the stand-in's name.
import { createServer } from 'node:http';

const DAY = 86400;
const log = (who, line) => console.error(`[demo stand-in: ${who}] ${line}`);

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function graphError(status, code, message, subcode) {
  const error = { message, type: 'OAuthException', code, fbtrace_id: 'DemoTrace' };
  if (subcode) error.error_subcode = subcode;
  return [status, { error }];
}

const healthyPhone = (status = 'CONNECTED', canSend = 'AVAILABLE') => [200, {
  id: 'demo', status, quality_rating: 'GREEN',
  health_status: { can_send_message: canSend, entities: [{ entity_type: 'PHONE_NUMBER', id: 'demo', can_send_message: canSend }] },
}];

// The scenario is the token's name: demo-<scenario>-<n> (seed.mjs).
function graph(url, token) {
  const scenario = (token.match(/^demo-([a-z]+)-/) || [])[1] || 'healthy';
  if (url.pathname.endsWith('/debug_token')) {
    const input = url.searchParams.get('input_token') || '';
    const inputScenario = (input.match(/^demo-([a-z]+)-/) || [])[1];
    if (inputScenario === 'expired') return graphError(400, 190, 'Error validating access token: Session has expired.', 463);
    const now = Math.floor(Date.now() / 1000);
    return [200, { data: {
      app_id: 'demo-app', type: 'SYSTEM_USER', application: 'WhaTrack demo', is_valid: true,
      expires_at: inputScenario === 'expiring' ? now + 3 * DAY : 0,
      scopes: ['whatsapp_business_messaging', 'whatsapp_business_management'],
    } }];
  }
  switch (scenario) {
    case 'banned': return healthyPhone('BANNED', 'BLOCKED');
    case 'flagged': return healthyPhone('FLAGGED');
    case 'limited': return healthyPhone('CONNECTED', 'LIMITED');
    case 'ratelimited': return graphError(400, 80007, '(#80007) Rate limit hit for WhatsApp Business account (demo)');
    case 'expired': return graphError(401, 190, 'Error validating access token: Session has expired.', 463);
    default: return healthyPhone();
  }
}

// A batch request (POST /v25.0/, a form with `batch`, `access_token`): each operation answered
// as its single call would be, as Meta does, in an array of {code, body as a JSON string}.
function batch(url, form) {
  const operations = JSON.parse(form.get('batch') || '[]');
  if (operations.length > 50) return graphError(400, 100, 'Too many requests in batch message. Maximum batch size is 50');
  return [200, operations.map((op) => {
    const call = new URL(url.pathname + op.relative_url, 'http://127.0.0.1');
    const token = call.searchParams.get('access_token') || form.get('access_token') || '';
    const [code, body] = graph(call, token);
    return { code, body: JSON.stringify(body) };
  })];
}

createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const [status, body] = req.method === 'POST'
      ? batch(url, new URLSearchParams(Buffer.concat(chunks).toString('utf8')))
      : graph(url, (req.headers.authorization || '').replace(/^Bearer /, ''));
    // Meta answers quickly, but not instantly.
    setTimeout(() => {
      const calls = Array.isArray(body) ? ` (${body.length} calls)` : '';
      log('Graph API', `${req.method} ${url.pathname}${calls} -> ${status}`);
      send(res, status, body);
    }, 80);
  });
}).listen(3901, '127.0.0.1', () => log('Graph API', 'listening on http://127.0.0.1:3901'));

const attempts = new Map();
createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let demo = 'ok';
    try {
      demo = JSON.parse(Buffer.concat(chunks).toString('utf8')).demo || 'ok';
    } catch (e) {
      demo = 'unreadable';
    }
    const id = req.headers['x-webhook-log-id'] || '?';
    const n = (attempts.get(id) || 0) + 1;
    attempts.set(id, n);
    let status = 200;
    if (demo === 'poison' || demo === 'unreadable') status = 500;
    if (demo === 'flaky' && n <= 2) status = 503;
    log('processor', `webhook ${id} (${demo}), attempt ${n} -> ${status}`);
    send(res, status, status === 200 ? { received: true } : { error: demo === 'flaky' ? 'busy, try again' : 'cannot process this payload' });
  });
}).listen(3902, '127.0.0.1', () => log('processor', 'listening on http://127.0.0.1:3902'));
