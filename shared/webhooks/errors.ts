/** Base of every webhook error; decide with `instanceof`. */
export class WebhookError extends Error {
  override name = 'WebhookError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The webhook URL is malformed, not https where https is required, or resolves to a forbidden address. */
export class UnsafeWebhookUrlError extends WebhookError {
  override name = 'UnsafeWebhookUrlError';
  constructor(
    readonly url: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`webhook URL refused: ${reason}`, options);
  }
}

/** The webhook host does not resolve (may be transient: retried at delivery, refused at submit). */
export class WebhookHostUnresolvedError extends WebhookError {
  override name = 'WebhookHostUnresolvedError';
  constructor(
    readonly host: string,
    options?: { cause?: unknown },
  ) {
    super(`webhook host ${host} does not resolve`, options);
  }
}
