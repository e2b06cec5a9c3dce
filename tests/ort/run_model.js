#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (onnxruntime-node) over the Fashion-MNIST test split,
// normalized exactly as docs/semantics.md says (float32: (p / 255 - 0.2860) / 0.3530), and writes
// the predicted class of every image, one a line (the format of `mpsearch eval --predictions`).
//
//   node run_model.js --model M.onnx --out predictions.txt [--data DIR] [--limit N]
//                     [--threads 2] [--batch 256] [--optimized FILE] [--profile PREFIX]
//                     [--time-runs K] [--optimization all|extended|basic|disabled]
// Prints one JSON line: images, accuracy (top-1 %, first index on ties), seconds, images/s
// (--time-runs K: the median of K timed passes over the images after one warm-up pass).
// Exit status: 0 done, 2 bad arguments or input, 1 a runtime failure.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function fail(code, message) {
  process.stderr.write(`run_model.js: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const args = { data: '/usr/share/datasets/fashion-mnist', limit: -1, threads: 2, batch: 256,
                 timeRuns: 0, optimization: 'all' };
  const names = { '--model': 'model', '--out': 'out', '--data': 'data', '--limit': 'limit',
                  '--threads': 'threads', '--batch': 'batch', '--optimized': 'optimized',
                  '--profile': 'profile', '--time-runs': 'timeRuns', '--optimization': 'optimization' };
  for (let i = 2; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) fail(2, `unknown or incomplete option '${argv[i]}'`);
    args[key] = ['limit', 'threads', 'batch', 'timeRuns'].includes(key) ? Number(argv[i + 1])
                                                                       : argv[i + 1];
  }
  if (!args.model) fail(2, 'missing --model FILE');
  return args;
}

// An idx file, gzip'd or raw (detected from the content, as mpsearch does).
function readIdx(dir, base) {
  for (const name of [base + '.gz', base]) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    let bytes = fs.readFileSync(file);
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = zlib.gunzipSync(bytes);
    return bytes;
  }
  fail(2, `${path.join(dir, base)}(.gz): no such file; pass --data DIR`);
}

function loadTestSplit(dir, limit) {
  const images = readIdx(dir, 't10k-images-idx3-ubyte');
  const labels = readIdx(dir, 't10k-labels-idx1-ubyte');
  if (images.readUInt32BE(0) !== 0x803 || labels.readUInt32BE(0) !== 0x801)
    fail(2, `${dir}: not unsigned-byte idx image / label files`);
  let count = images.readUInt32BE(4);
  const size = images.readUInt32BE(8) * images.readUInt32BE(12);
  if (limit > 0) count = Math.min(count, limit);
  const pixels = new Float32Array(count * size);
  const f = Math.fround;
  const mean = f(0.2860), std = f(0.3530);
  for (let i = 0; i < count * size; ++i)
    pixels[i] = f(f(f(images[16 + i] / 255) - mean) / std); // float32 at every step
  return { count, size, pixels, labels: labels.subarray(8, 8 + count) };
}

function argmax(values, offset, n) {
  let best = 0;
  for (let k = 1; k < n; ++k) if (values[offset + k] > values[offset + best]) best = k;
  return best;
}

async function runAll(ort, session, data, batch) {
  const predictions = new Int32Array(data.count);
  const side = Math.round(Math.sqrt(data.size));
  for (let first = 0; first < data.count; first += batch) {
    const n = Math.min(batch, data.count - first);
    const input = new ort.Tensor('float32',
                                 data.pixels.subarray(first * data.size, (first + n) * data.size),
                                 [n, 1, side, side]);
    const result = await session.run({ [session.inputNames[0]]: input });
    const logits = result[session.outputNames[0]];
    const classes = logits.dims[1];
    for (let i = 0; i < n; ++i) predictions[first + i] = argmax(logits.data, i * classes, classes);
  }
  return predictions;
}

async function main() {
  const args = parseArgs(process.argv);
  const ort = require('onnxruntime-node');
  const data = loadTestSplit(args.data, args.limit);
  const options = { intraOpNumThreads: args.threads, interOpNumThreads: 1,
                    executionMode: 'sequential', graphOptimizationLevel: args.optimization };
  if (args.optimized) options.optimizedModelFilePath = args.optimized;
  if (args.profile) { options.enableProfiling = true; options.profileFilePrefix = args.profile; }
  let session;
  try {
    session = await ort.InferenceSession.create(args.model, options);
  } catch (e) {
    fail(2, `${args.model}: ONNX Runtime cannot load it: ${e.message}`);
  }
  const start = process.hrtime.bigint();
  const predictions = await runAll(ort, session, data, args.batch);
  let seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (args.timeRuns > 0) {
    const times = [];
    for (let r = 0; r < args.timeRuns; ++r) {
      const t0 = process.hrtime.bigint();
      await runAll(ort, session, data, args.batch);
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((a, b) => a - b);
    seconds = times[Math.floor(times.length / 2)];
  }
  if (args.profile) session.endProfiling();
  let correct = 0;
  for (let i = 0; i < data.count; ++i) correct += predictions[i] === data.labels[i];
  if (args.out) fs.writeFileSync(args.out, Array.from(predictions).join('\n') + '\n');
  console.log(JSON.stringify({ images: data.count, accuracy: (100 * correct) / data.count, seconds,
                               images_per_second: data.count / seconds }));
}

main().catch((e) => fail(1, e.stack || String(e)));
