import { log } from './log.js';

/**
 * ECS task scale-in protection while a chunk runs, through the ECS agent's endpoint
 * ($ECS_AGENT_URI/task-protection/v1/state), so scaling in never kills a chunk half-way.
 * Outside ECS (no ECS_AGENT_URI) it does nothing.
 */
export class TaskProtection {
  constructor(private readonly agentUri = process.env.ECS_AGENT_URI, private readonly minutes = 30) {}

  async set(enabled: boolean): Promise<void> {
    if (!this.agentUri) return;
    try {
      const res = await fetch(`${this.agentUri}/task-protection/v1/state`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(enabled ? { ProtectionEnabled: true, ExpiresInMinutes: this.minutes } : { ProtectionEnabled: false }),
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) log.warn('task protection refused', { enabled, status: res.status });
    } catch (error) {
      // Protection is an optimisation: the queue's visibility timeout still keeps the chunk safe.
      log.warn('task protection unavailable', { enabled, error: String(error) });
    }
  }
}
