/** Base of every error raised while loading a model artifact; decide with `instanceof`. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** manifest.json is absent, not JSON, or breaks the contract; `issues` lists what zod found. */
export class ManifestInvalidError extends ModelError {
  override name = 'ManifestInvalidError';
  constructor(
    readonly path: string,
    readonly issues: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid model manifest ${path}: ${issues.join('; ')}`, options);
  }
}

/** The ONNX file the manifest names is not there (or cannot be read). */
export class ModelFileMissingError extends ModelError {
  override name = 'ModelFileMissingError';
  constructor(
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(`model file missing: ${path}`, options);
  }
}

/** The ONNX file is not the one the manifest (and so every stored cache segment) was made with. */
export class OnnxHashMismatchError extends ModelError {
  override name = 'OnnxHashMismatchError';
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`model file ${path} has SHA-256 ${actual}, manifest says ${expected}`);
  }
}
