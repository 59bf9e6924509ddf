// npm run mutation: runs StrykerJS (stryker.config.mjs), then writes the mutation score per core
// module (its MODULES), with every survivor, to bench/results/mutation.json. Survivors the config
// lists as equivalent (EQUIVALENT_MUTANTS, each with its reason) leave the score. The scores come
// from the incremental file, which holds the last result of every core file: a run narrowed with
// MUTATE=... works on a copy of it and merges its files back, so the other files' results stay.
// `--summary-only` skips the run and summarizes the incremental file as it is; `--merge FILE` first
// merges FILE (the incremental file of a run made with `npx stryker run --incrementalFile FILE`;
// with MUTATE=..., only those files of it).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EQUIVALENT_MUTANTS, MODULES } from '../stryker.config.mjs';

const ROOT = path.resolve(import.meta.dirname, '..');
const INCREMENTAL = path.join(ROOT, 'bench/results/stryker-incremental.json');

interface Mutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: string;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
  coveredBy?: string[];
  killedBy?: string[];
}
interface TestFile { source?: string; tests: { id: string; name: string }[] }
interface Report { files: Record<string, { source: string; mutants: Mutant[] }>; testFiles?: Record<string, TestFile> }

interface Equivalent { file: string; mutator: string; original: string; replacement: string; reason: string }

const readReport = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Report;

/**
 * `into` with the files of `part` (a narrowed run's report) in place of its own. Test ids are
 * numbers each run assigns anew, so `part`'s are mapped to `into`'s by test file and name.
 */
function mergeReports(into: Report, part: Report, only?: string[]): Report {
  const testFiles: Record<string, TestFile> = structuredClone(into.testFiles ?? {});
  const idOf = new Map<string, string>();
  let next = 0;
  for (const [file, tf] of Object.entries(testFiles)) {
    for (const t of tf.tests) {
      idOf.set(`${file}\0${t.name}`, t.id);
      next = Math.max(next, Number(t.id) + 1);
    }
  }
  const remap = new Map<string, string>();
  for (const [file, tf] of Object.entries(part.testFiles ?? {})) {
    const kept = testFiles[file]?.tests ?? [];
    const tests = tf.tests.map((t) => {
      const key = `${file}\0${t.name}`;
      const id = idOf.get(key) ?? String(next++);
      idOf.set(key, id);
      remap.set(t.id, id);
      return { ...t, id };
    });
    const names = new Set(tests.map((t) => t.name));
    testFiles[file] = { ...tf, tests: [...tests, ...kept.filter((t) => !names.has(t.name))] };
  }
  const ids = (list?: string[]) => list?.map((id) => remap.get(id) ?? id);
  const files = { ...into.files };
  for (const [file, entry] of Object.entries(part.files)) {
    // Stryker's report also carries the other files of the incremental file it started from, as
    // they were then: only the files this run mutated are news.
    if (only && !only.includes(file)) continue;
    files[file] = { ...entry, mutants: entry.mutants.map((m) => ({ ...m, coveredBy: ids(m.coveredBy), killedBy: ids(m.killedBy) })) };
  }
  return { ...into, files, testFiles };
}

let seconds: number | undefined;
const mergeArg = process.argv.indexOf('--merge');
if (mergeArg > 0) {
  const file = process.argv[mergeArg + 1];
  writeFileSync(INCREMENTAL, JSON.stringify(mergeReports(readReport(INCREMENTAL), readReport(file), process.env.MUTATE?.split(',')), null, 2));
} else if (!process.argv.includes('--summary-only')) {
  const started = performance.now();
  let status: number | null;
  if (process.env.MUTATE && existsSync(INCREMENTAL)) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mutation-'));
    const partial = path.join(dir, 'incremental.json');
    copyFileSync(INCREMENTAL, partial);
    status = spawnSync('npx', ['stryker', 'run', '--incrementalFile', partial], { cwd: ROOT, stdio: 'inherit' }).status;
    if (status === 0) writeFileSync(INCREMENTAL, JSON.stringify(mergeReports(readReport(INCREMENTAL), readReport(partial), process.env.MUTATE.split(',')), null, 2));
    rmSync(dir, { recursive: true, force: true });
  } else {
    status = spawnSync('npx', ['stryker', 'run'], { cwd: ROOT, stdio: 'inherit' }).status;
  }
  seconds = Math.round((performance.now() - started) / 1000);
  if (status !== 0) process.exit(status ?? 1);
}
const report = readReport(INCREMENTAL);

/** The source text a mutant replaces. */
function original(source: string, m: Mutant): string {
  const lines = source.split('\n');
  const { start, end } = m.location;
  if (start.line === end.line) return lines[start.line - 1].slice(start.column - 1, end.column - 1);
  return [lines[start.line - 1].slice(start.column - 1), ...lines.slice(start.line, end.line - 1), lines[end.line - 1].slice(0, end.column - 1)].join('\n');
}

const isEquivalent = (file: string, source: string, m: Mutant): Equivalent | undefined =>
  (EQUIVALENT_MUTANTS as Equivalent[]).find((e) => e.file === file && e.mutator === m.mutatorName && e.replacement === m.replacement && e.original === original(source, m));

const modules: Record<string, unknown> = {};
let total = { detected: 0, valid: 0 };
for (const [name, files] of Object.entries(MODULES as Record<string, string[]>)) {
  const counts: Record<string, number> = {};
  const survivors: unknown[] = [];
  const equivalent: unknown[] = [];
  let tested = 0;
  for (const file of files) {
    const entry = report.files[file];
    if (!entry) continue;
    tested++;
    for (const m of entry.mutants) {
      const eq = m.status === 'Survived' || m.status === 'NoCoverage' ? isEquivalent(file, entry.source, m) : undefined;
      const status = eq ? 'Equivalent' : m.status;
      counts[status] = (counts[status] ?? 0) + 1;
      const where = `${file}:${m.location.start.line}:${m.location.start.column}`;
      if (eq) equivalent.push({ where, mutator: m.mutatorName, replacement: m.replacement, reason: eq.reason });
      else if (m.status === 'Survived' || m.status === 'NoCoverage') {
        survivors.push({ where, status: m.status, mutator: m.mutatorName, original: original(entry.source, m).slice(0, 120), replacement: m.replacement?.slice(0, 120) });
      }
    }
  }
  if (tested === 0) continue;
  const detected = (counts.Killed ?? 0) + (counts.Timeout ?? 0);
  const valid = detected + (counts.Survived ?? 0) + (counts.NoCoverage ?? 0);
  total = { detected: total.detected + detected, valid: total.valid + valid };
  modules[name] = {
    files: files.filter((f) => report.files[f]),
    score: valid ? Math.round((1000 * detected) / valid) / 10 : null,
    counts,
    survivors,
    equivalent,
  };
}

const result = {
  date: new Date().toISOString(),
  tool: 'StrykerJS (vitest runner, TypeScript checker unless MUTATION_NO_TYPECHECK)',
  typecheck: !process.env.MUTATION_NO_TYPECHECK,
  run: process.env.MUTATE ?? 'all core modules',
  tests: process.env.MUTATION_TESTS ?? 'all (vitest.mutation.config.ts)',
  files: Object.keys(report.files).sort(),
  seconds,
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
  score: total.valid ? Math.round((1000 * total.detected) / total.valid) / 10 : null,
  modules,
};
writeFileSync(path.join(ROOT, 'bench/results/mutation.json'), `${JSON.stringify(result, null, 2)}\n`);
for (const [name, m] of Object.entries(modules) as [string, { score: number; survivors: unknown[] }][]) {
  console.log(`${name.padEnd(32)} ${String(m.score).padStart(5)} %  (${m.survivors.length} survivors)`);
}
console.log(`${'core (modules run)'.padEnd(32)} ${String(result.score).padStart(5)} %  -> bench/results/mutation.json`);
