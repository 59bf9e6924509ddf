export * from './errors.js';
export * from './f16.js';
export * from './segment.js';
export * from './assemble.js';
