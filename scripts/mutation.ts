// npm run mutation: runs StrykerJS (stryker.config.mjs), then writes the mutation score per core
// module (its MODULES) from reports/mutation/mutation.json, with every survivor, to
// bench/results/mutation.json. Survivors the config lists as equivalent (EQUIVALENT_MUTANTS, each
// with its reason) leave the score. `--summary-only` skips the run and summarizes the last report.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EQUIVALENT_MUTANTS, MODULES } from '../stryker.config.mjs';

const ROOT = path.resolve(import.meta.dirname, '..');

interface Mutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: string;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}
interface Report { files: Record<string, { source: string; mutants: Mutant[] }> }

interface Equivalent { file: string; mutator: string; original: string; replacement: string; reason: string }

let seconds: number | undefined;
if (!process.argv.includes('--summary-only')) {
  const started = performance.now();
  const run = spawnSync('npx', ['stryker', 'run'], { cwd: ROOT, stdio: 'inherit' });
  seconds = Math.round((performance.now() - started) / 1000);
  if (run.status !== 0) process.exit(run.status ?? 1);
}
const report = JSON.parse(readFileSync(path.join(ROOT, 'reports/mutation/mutation.json'), 'utf8')) as Report;

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
  mutate: process.env.MUTATE ?? 'all core modules',
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
