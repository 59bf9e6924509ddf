// Types of what stryker.config.mjs exports besides Stryker's options (read by scripts/mutation.ts).
export declare const MODULES: Record<string, string[]>;
export declare const EQUIVALENT_MUTANTS: { file: string; mutator: string; original: string; replacement: string; reason: string }[];
declare const config: Record<string, unknown>;
export default config;
