export * from './schedule.js';
export * from './ddim.js';
export * from './noise.js';
export * from './context.js';
