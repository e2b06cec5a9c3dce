#!/usr/bin/env node
// Sums an ONNX Runtime profile (run_model.js --profile PREFIX writes PREFIX_<date>.json) by
// operator type: node kernel time in ms and its share, largest first.
//   node profile_summary.js PROFILE.json
'use strict';
const events = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const byOp = new Map();
let total = 0;
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const op = e.args.op_name;
  byOp.set(op, (byOp.get(op) || 0) + e.dur);
  total += e.dur;
}
console.log('| operator | ms | share |\n|---|---:|---:|');
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]))
  console.log(`| ${op} | ${(us / 1000).toFixed(1)} | ${((100 * us) / total).toFixed(1)} % |`);
