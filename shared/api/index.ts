export * from './errors.js';
export * from './config.js';
export * from './keys.js';
export * from './types.js';
export * from './request.js';
export * from './render.js';
export * from './videos.js';
export * from './client.js';
