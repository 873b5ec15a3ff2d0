// Reads prisma/whatrack-jobs.prisma and prisma/whatrack-tables.prisma with Prisma's own schema
// parser (@prisma/prisma-schema-wasm: validation and the DMMF, no engine binaries), beside the
// datasource and generator WhaTrack's schema has, and prints their data model as JSON for
// tests/prisma.rs: each model's table, its fields (column, type, native type, required) and its
// indexes (name, columns in order with their sort, unique, the predicate of a partial one). A schema Prisma refuses ends the
// process with Prisma's message.
//   node datamodel.mjs <project root>
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const wasm = createRequire(import.meta.url)('@prisma/prisma-schema-wasm');
const root = process.argv[2];
const header = `datasource db {
  provider = "postgresql"
}

generator client {
  provider        = "prisma-client-js"
  previewFeatures = ["partialIndexes"]
}
`;
const files = [['schema.prisma', header]].concat(
  ['whatrack-jobs.prisma', 'whatrack-tables.prisma'].map((f) => [f, readFileSync(join(root, 'prisma', f), 'utf8')]),
);
let dmmf;
try {
  dmmf = JSON.parse(wasm.get_dmmf(JSON.stringify({ prismaSchema: files })));
} catch (e) {
  const message = String(e.message || e);
  let detail = message;
  try {
    detail = JSON.parse(message).message;
  } catch (_) {
    // not Prisma's JSON error: print it as it came
  }
  console.error(detail.replace(/\u001b\[[0-9;]*m/g, ''));
  process.exit(1);
}
const { models, indexes } = dmmf.datamodel;
// The DMMF leaves out a partial index's predicate: it is read from the schema's text, where each
// is written `map: "<name>", where: raw("<SQL>")`.
const text = files.map(([, content]) => content).join('\n');
const predicate = (name) => {
  const found = text.match(new RegExp(`map: "${name}", where: raw\\(("(?:[^"\\\\]|\\\\.)*")\\)`));
  return found ? JSON.parse(found[1]) : null;
};
const out = models.map((m) => {
  const column = (name) => m.fields.find((f) => f.name === name).dbName || name;
  return {
    model: m.name,
    table: m.dbName || m.name,
    fields: m.fields
      .filter((f) => f.kind === 'scalar')
      .map((f) => ({ column: f.dbName || f.name, type: f.type, nativeType: f.nativeType, required: f.isRequired })),
    indexes: indexes
      .filter((i) => i.model === m.name && i.type !== 'id')
      .map((i) => ({
        name: i.dbName,
        unique: i.type === 'unique',
        where: predicate(i.dbName),
        columns: i.fields.map((f) => ({ column: column(f.name), descending: f.sortOrder === 'desc' })),
      })),
  };
});
console.log(JSON.stringify(out));
