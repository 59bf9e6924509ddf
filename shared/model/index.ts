export * from './errors.js';
export * from './manifest.js';
