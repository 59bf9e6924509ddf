// Mutation testing of the core (npm run mutation; not in CI: slow on 2 cores). Incremental: a rerun
// tests only mutants whose code or covering tests changed since bench/results/stryker-incremental.json.
// MUTATE=path[,path] narrows a run to some files (e.g. MUTATE=shared/webhooks/signature.ts).

/** The core modules, by name; bench/results/mutation.json reports a score for each. */
export const MODULES = {
  'chunk step': ['gpu-worker/chunk-step.ts', 'gpu-worker/job-plan.ts'],
  'cache window and codec': ['gpu-worker/cache-window.ts', 'shared/cache/assemble.ts', 'shared/cache/segment.ts', 'shared/cache/f16.ts'],
  sampler: ['shared/sampler/ddim.ts', 'shared/sampler/iddpm.ts', 'shared/sampler/noise.ts', 'shared/sampler/schedule.ts', 'shared/sampler/context.ts'],
  'job store': ['shared/jobs/job-store.ts', 'shared/store/local-store.ts', 'shared/store/s3-store.ts'],
  'API create/idempotency/tenancy': ['shared/api/videos.ts'],
  'webhook signing/retry/SSRF': ['shared/webhooks/signature.ts', 'shared/webhooks/deliver.ts', 'shared/webhooks/ssrf.ts'],
  'worker loop': ['gpu-worker/worker.ts', 'gpu-worker/heartbeat.ts', 'gpu-worker/window-memo.ts'],
};

/**
 * Surviving mutants that no test can kill because the program behaves the same: matched by file,
 * mutator, the source text replaced and the replacement; scripts/mutation-summary.ts leaves them
 * out of the score and lists them with the reason.
 */
export const EQUIVALENT_MUTANTS = [
  { file: 'shared/sampler/ddim.ts', mutator: 'EqualityOperator', original: 'x0 < lo', replacement: 'x0 <= lo', reason: 'clipping x0 == lo to lo changes nothing' },
  { file: 'shared/sampler/ddim.ts', mutator: 'EqualityOperator', original: 'x0 > hi', replacement: 'x0 >= hi', reason: 'clipping x0 == hi to hi changes nothing' },
  { file: 'shared/sampler/ddim.ts', mutator: 'ConditionalExpression', original: 'rows === 1', replacement: 'false', reason: 'line 79: with one row the batch buffer is never read (the model gets x), so allocating it changes nothing' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'ConditionalExpression', original: 'steps > 1', replacement: 'true', reason: 'with one step only cur = 0 is taken: the stride is never added to anything read' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'EqualityOperator', original: 'steps > 1', replacement: 'steps >= 1', reason: 'steps >= 1 always (checked above), and with one step the stride is never used (see above)' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'MethodExpression', original: '[...taken].sort((a, b) => a - b)', replacement: '[...taken]', reason: 'cur only grows, so the set already holds the timesteps in ascending order' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'ArithmeticOperator', original: 'a - b', replacement: 'a + b', reason: 'the list is already ascending; a comparator that always says "greater" leaves an ascending run as it is' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'EqualityOperator', original: 'i < n', replacement: 'i <= n', reason: 'every array written in these loops is a fresh Float32Array(n): the extra write past its end is dropped, and nothing reads the NaN' },
  { file: 'shared/sampler/iddpm.ts', mutator: 'EqualityOperator', original: 'k < x.length', replacement: 'k <= x.length', reason: 'result has x.length values: the extra write past its end is dropped' },
  { file: 'gpu-worker/heartbeat.ts', mutator: 'StringLiteral', original: "'visibility renewal failed, retrying'", replacement: '""', reason: 'a log line' },
  { file: 'gpu-worker/heartbeat.ts', mutator: 'ObjectLiteral', original: '{ error: String(error) }', replacement: '{}', reason: 'a log line' },
  { file: 'gpu-worker/window-memo.ts', mutator: 'EqualityOperator', original: 'limit < os.totalmem()', replacement: 'limit <= os.totalmem()', reason: 'a limit equal to the machine memory is the same number either way' },
  { file: 'gpu-worker/window-memo.ts', mutator: 'EqualityOperator', original: 'limit > 0', replacement: 'limit >= 0', reason: 'a limit of 0 is falsy and stops the && before this test' },
  { file: 'shared/cache/segment.ts', mutator: 'EqualityOperator', original: 'f < meta.shape[0]', replacement: 'f <= meta.shape[0]', reason: 'encodeSegmentParts: a pass at f = F hashes nothing (the pair filter drops F and F + 1)' },
  { file: 'shared/api/videos.ts', mutator: 'EqualityOperator', original: "typeof v === 'object'", replacement: "typeof v !== 'object'", reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'MethodExpression', original: 'Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))', replacement: 'Object.entries(v)', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'ConditionalExpression', original: 'a < b', replacement: 'true', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'ConditionalExpression', original: 'a < b', replacement: 'false', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'EqualityOperator', original: 'a < b', replacement: 'a <= b', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'EqualityOperator', original: 'a < b', replacement: 'a >= b', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/api/videos.ts', mutator: 'UnaryOperator', original: '-1', replacement: '+1', reason: "fingerprint: the body is zod's output, whose keys come in the schema's order whatever order the request used, so sorting them changes nothing" },
  { file: 'shared/sampler/noise.ts', mutator: 'ArithmeticOperator', original: 'b / 0x100000000', replacement: 'b * 0x100000000', reason: 'Philox reads the counter word as a u32: b * 2^32 and floor(b / 2^32) are both 0 mod 2^32 for every block a stream may have (< 2^32)' },
  { file: 'shared/sampler/noise.ts', mutator: 'EqualityOperator', original: 'n > 4 * 0x100000000', replacement: 'n >= 4 * 0x100000000', reason: 'differs only for exactly 2^34 samples (64 GiB of floats), which no test can allocate' },
  { file: 'shared/sampler/context.ts', mutator: 'EqualityOperator', original: 'i < out.length', replacement: 'i <= out.length', reason: 'out is a fresh array of that length: the extra write past its end is dropped by the typed array' },
  { file: 'shared/cache/f16.ts', mutator: 'EqualityOperator', original: 'h < 65536', replacement: 'h <= 65536', reason: 'the table is a fresh Float32Array(65536): the extra write past its end is dropped' },
  { file: 'shared/cache/f16.ts', mutator: 'EqualityOperator', original: 'u >= F16_MAX_AS_F32', replacement: 'u > F16_MAX_AS_F32', reason: 'at exactly 65536 the normal branch carries into exponent 31 with a zero mantissa: 0x7c00, the same infinity' },
  { file: 'shared/cache/f16.ts', mutator: 'EqualityOperator', original: 'u < F16_MIN_NORMAL_AS_F32', replacement: 'u <= F16_MIN_NORMAL_AS_F32', reason: 'at exactly 2^-14 the subnormal branch computes 0x800000 >> 13 = 0x0400, the smallest normal' },
  { file: 'shared/cache/f16.ts', mutator: 'ConditionalExpression', original: 'e === 0', replacement: 'false', reason: 'for e = 0 the shift is 126 > 24, which also gives 0' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'ConditionalExpression', original: 'isIP(ip) !== 6', replacement: 'false', reason: 'every caller passes an IPv6 address (forbiddenAddressReason checks isIP first); other strings still fail the zero-prefix or ffff test' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'MethodExpression', original: 'ip.toLowerCase()', replacement: 'ip.toUpperCase()', reason: 'parseInt(hex) ignores case, and "::" and digits have none' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'Regex', original: '/(\\d+\\.\\d+\\.\\d+\\.\\d+)$/', replacement: '/(\\d+\\.\\d+\\.\\d+\\.\\d+)/', reason: 'in a valid IPv6 address (isIP checked) a dotted quad can only be the last part' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'StringLiteral', original: "'::'", replacement: '""', reason: 'includes("") is always true, and splitting a full-form address on "::" gives [s], the same as the other branch' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'ArrayDeclaration', original: '[]', replacement: '["Stryker was here"]', reason: 'line 58: only an address ending in "::" has an empty tail, and only "::" itself has five zero groups before it (null either way); line 59: a ninth group is never read' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'ConditionalExpression', original: 'tail === undefined', replacement: 'false', reason: 'without "::" a valid address has 8 groups, so 8 - 8 - 0 zeros is the same empty list' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'Regex', original: '/^\\[|\\]$/g', replacement: '/\\[|\\]$/g', reason: 'line 98: a URL hostname holds brackets only around an IPv6 literal (line 74 is tested with brackets inside)' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'Regex', original: '/^\\[|\\]$/g', replacement: '/^\\[|\\]/g', reason: 'line 98: a URL hostname holds brackets only around an IPv6 literal (line 74 is tested with brackets inside)' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'Regex', original: '/%.*$/', replacement: '/%.*/', reason: '.* runs to the end of a one-line address either way' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'Regex', original: '/%.*$/', replacement: '/%.$/', reason: "Node's isIP and BlockList read an address with a zone id as the address without it" },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'BooleanLiteral', original: 'true', replacement: 'false', reason: 'systemResolver (real DNS, unused in tests): every address is checked, so their order does not matter' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'ConditionalExpression', original: '!url.hostname', replacement: 'false', reason: 'the WHATWG URL parser refuses an http(s) URL without a host before this line' },
  { file: 'shared/webhooks/ssrf.ts', mutator: 'StringLiteral', original: "'no host'", replacement: '""', reason: 'unreachable, as above' },
  { file: 'shared/webhooks/deliver.ts', mutator: 'ObjectLiteral', original: "{ msg: 'invalid webhook message dropped', error: String(err) }", replacement: '{}', reason: 'a log line' },
  { file: 'shared/webhooks/deliver.ts', mutator: 'StringLiteral', original: "'invalid webhook message dropped'", replacement: '""', reason: 'a log line' },
  { file: 'shared/webhooks/deliver.ts', mutator: 'EqualityOperator', original: 'delay >= 1', replacement: 'delay > 1', reason: 'at exactly 1 s, Math.ceil(1) is 1' },
  { file: 'shared/webhooks/deliver.ts', mutator: 'ConditionalExpression', original: 'msg.chunk !== undefined', replacement: 'true', reason: 'chunk: undefined is dropped by JSON.stringify' },
  { file: 'shared/webhooks/deliver.ts', mutator: 'ConditionalExpression', original: 'lastStatus !== undefined', replacement: 'true', reason: 'last_status: undefined is dropped by JSON.stringify' },
];

const all = Object.values(MODULES).flat();
const mutate = process.env.MUTATE ? process.env.MUTATE.split(',') : all;

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts' },
  checkers: process.env.MUTATION_NO_TYPECHECK ? [] : ['typescript'],
  tsconfigFile: 'tsconfig.mutation.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  mutate,
  ignoreStatic: true,
  incremental: true,
  incrementalFile: 'bench/results/stryker-incremental.json',
  concurrency: Number(process.env.MUTATION_CONCURRENCY ?? 2),
  timeoutMS: 30_000,
  // With every model-loading test, the first (coverage) run of the whole suite takes over 5 minutes on 2 busy cores.
  dryRunTimeoutMinutes: 40,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  cleanTempDir: 'always',
  // The shipped model's artifacts go into the sandbox: without them every test that loads the model
  // fails in its beforeAll, and vitest reports its tests as skipped, not failed (no coverage, no kills).
  ignorePatterns: ['model/**', '!model/artifacts/**', 'cdk.out/**', 'out/**', '.data/**', 'reports/**', 'infra/**', 'bench/results/**'],
};
