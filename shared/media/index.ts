export * from './errors.js';
export * from './raster.js';
export * from './png.js';
export * from './gif.js';
export * from './mp4.js';
