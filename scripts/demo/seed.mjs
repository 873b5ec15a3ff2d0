// DEMO ONLY (scripts/dev.sh --demo): prints the SQL that fills the demo database with a dozen
// organizations' WhatsApp connections and a few failed webhooks, for the demo stand-ins
// (standins.mjs) to answer. As in WhaTrack, each organization has one WhatsApp Business Account
// (WABA); the rate-limited one has two numbers, so that the hold Meta puts on its business shows
// on both. Each token's name says what the Graph stand-in answers for it. Tokens are encrypted
// the way WhaTrack's Node code does it (AES-256-GCM, 16-byte IV, `v1:iv:tag:ciphertext`).
//
//   node scripts/demo/seed.mjs <64-hex-char key> | psql <demo database URL>
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';

const key = Buffer.from(process.argv[2] || '', 'hex');
if (key.length !== 32) {
  console.error('usage: node seed.mjs <token_encryption_key: 64 hex characters>');
  process.exit(1);
}

function encrypt(token) {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ciphertext = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('hex'), cipher.getAuthTag().toString('hex'), ciphertext.toString('hex')].join(':');
}

const quote = (s) => "'" + String(s).replace(/'/g, "''") + "'";

// [scenario, organizations, numbers each]: the Graph stand-in reads the scenario from the token.
const estate = [
  ['healthy', 6, 1], ['expiring', 1, 1], ['banned', 1, 1], ['ratelimited', 1, 2], ['flagged', 1, 1], ['limited', 1, 1],
  ['expired', 1, 1],
];
const sql = ['BEGIN;'];
let phone = 15550100001;
let organizations = 0;
// A new organization and its WABA (`demo-waba-<n>`).
function organization() {
  organizations += 1;
  return { org: randomUUID(), waba: `demo-waba-${organizations}` };
}
function connection({ org, waba }, storedToken) {
  const id = randomUUID();
  sql.push(`INSERT INTO whatsapp_connections (id, "organizationId", "wabaId", "phoneNumberId", status, "updatedAt")
  VALUES (${quote(id)}, ${quote(org)}, ${quote(waba)}, ${quote(phone)}, 'active', timezone('UTC', now()));`);
  sql.push(`INSERT INTO whatsapp_configs ("organizationId", "connectionId", "wabaId", "accessToken", status, "updatedAt")
  VALUES (${quote(org)}, ${quote(id)}, ${quote(waba)}, ${quote(storedToken)}, 'connected', timezone('UTC', now()));`);
  phone += 1;
}
let n = 0;
for (const [scenario, count, numbers] of estate) {
  for (let i = 0; i < count; i += 1) {
    const owner = organization();
    for (let j = 0; j < numbers; j += 1) connection(owner, encrypt(`demo-${scenario}-${n++}`));
  }
}
// One token that no key opens: a config written with another key, as after a botched rotation.
connection(organization(), 'v1:' + randomBytes(16).toString('hex') + ':' + randomBytes(16).toString('hex') + ':00ff');
// Webhooks whose processing failed a minute ago; the processor stand-in reads `demo`:
// `ok` is accepted, `flaky` refused twice then accepted, `poison` always refused (dead-lettered
// after webhook_retry_max_attempts). One more was dead-lettered already, for the redrive button.
for (const [demo, dead] of [['ok', false], ['ok', false], ['flaky', false], ['poison', false], ['ok', true]]) {
  const payload = JSON.stringify({ object: 'whatsapp_business_account', demo, entry: [{ id: 'demo-waba-1', changes: [] }] });
  sql.push(`INSERT INTO whatsapp_webhook_logs ("organizationId", payload, "eventType", processed, "signatureValid",
    "processingError", "retryCount", "createdAt", "deadAt")
  VALUES (${quote(randomUUID())}, ${quote(payload)}::jsonb, 'messages', false, true, 'processor unavailable',
    ${dead ? 3 : 0}, timezone('UTC', now()) - interval '1 minute', ${dead ? "timezone('UTC', now())" : 'NULL'});`);
}
sql.push('COMMIT;');
console.log(sql.join('\n'));
