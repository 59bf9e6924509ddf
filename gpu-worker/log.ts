import { LogFormatter, LogItem, Logger } from '@aws-lambda-powertools/logger';
import type { LogAttributes, UnformattedAttributes } from '@aws-lambda-powertools/logger/types';

/**
 * The worker's lines keep their own keys ({time, level, service, message, ...fields}, the level in
 * lower case): `jq` filters and the tests read them as they are.
 */
class WorkerLineFormatter extends LogFormatter {
  formatAttributes(attributes: UnformattedAttributes, fields: LogAttributes): LogItem {
    return new LogItem({
      attributes: { time: attributes.timestamp.toISOString(), level: attributes.logLevel.toLowerCase(), service: 'gpu-worker', message: attributes.message },
    }).addAttributes(fields);
  }
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof LEVELS;

// Read at every line, not once: scripts set LOG_LEVEL in their body, after this module is imported.
function threshold(): number {
  const env = (process.env.LOG_LEVEL ?? process.env.POWERTOOLS_LOG_LEVEL ?? 'info').toLowerCase() as Level;
  return LEVELS[env] ?? LEVELS.info;
}

/** The Powertools logger writes every line it is given; `threshold` decides which. */
const logger = new Logger({ logLevel: 'DEBUG', logFormatter: new WorkerLineFormatter() });

function write(level: Level, message: string, fields: Record<string, unknown> = {}): void {
  if (LEVELS[level] < threshold()) return;
  logger[level](message, fields);
}

/** One JSON line per event (CloudWatch and `jq` read it as is); warn and error go to stderr. LOG_LEVEL=debug|info|warn|error. */
export const log = {
  debug: (m: string, f?: Record<string, unknown>) => write('debug', m, f),
  info: (m: string, f?: Record<string, unknown>) => write('info', m, f),
  warn: (m: string, f?: Record<string, unknown>) => write('warn', m, f),
  error: (m: string, f?: Record<string, unknown>) => write('error', m, f),
};
