import { Logger } from '@aws-lambda-powertools/logger';
import { SERVICE_NAME } from '../../shared/observability/metrics.js';

/**
 * The functions' logger (Powertools): one JSON line per entry, with the Lambda context added by
 * `injectLambdaContext`; service and level from POWERTOOLS_SERVICE_NAME / POWERTOOLS_LOG_LEVEL.
 */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME || SERVICE_NAME });
