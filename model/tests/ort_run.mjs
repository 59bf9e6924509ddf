// Runs an ONNX graph with onnxruntime-node (the runtime the worker uses) for the pytest suite.
// usage: node ort_run.mjs model.onnx spec.json   (spec: {inputs: {name: {file, dtype, dims}}, out_dir})
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

const [model, specFile] = process.argv.slice(2);
const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const feeds = {};
for (const [name, { file, dtype, dims }] of Object.entries(spec.inputs)) {
  const buf = readFileSync(file);
  const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const data = dtype === 'int64' ? new BigInt64Array(bytes) : new Float32Array(bytes);
  feeds[name] = new ort.Tensor(dtype, data, dims);
}
const session = await ort.InferenceSession.create(model);
const out = await session.run(feeds);
const shapes = {};
for (const [name, tensor] of Object.entries(out)) {
  writeFileSync(path.join(spec.out_dir, `${name}.bin`), Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
  shapes[name] = { dims: tensor.dims, dtype: tensor.type };
}
writeFileSync(path.join(spec.out_dir, 'shapes.json'), JSON.stringify(shapes));
