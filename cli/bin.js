#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx ca2vdm` works from the repo without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./run.ts');
