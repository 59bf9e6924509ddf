// IDDPM respacing and step arguments at their edges: rounding on both sides of a half and at a half
// (Python's round(), half to even: the lists below are Python's), the step count's limits, a
// one-step chain, and the step's argument checks.
import { describe, expect, it } from 'vitest';
import { iddpmSchedule, iddpmStep, respacedTimesteps } from '../../../shared/sampler/iddpm.js';

describe('respacedTimesteps', () => {
  it('rounds the running stride as Python does: up above a half, down below, to even at a half', () => {
    expect(respacedTimesteps(5, 12)).toEqual([0, 3, 6, 8, 11]); // 2.75 -> 3, 5.5 -> 6, 8.25 -> 8
    expect(respacedTimesteps(9, 20)).toEqual([0, 2, 5, 7, 10, 12, 14, 17, 19]); // 9.5 -> 10
    expect(respacedTimesteps(6, 8)).toEqual([0, 1, 3, 4, 6, 7]);
    expect(respacedTimesteps(7, 1000)).toEqual([0, 166, 333, 500, 666, 832, 999]); // 166.5 -> 166, 832.5 -> 832
  });

  it('takes 1 to T steps, and names the range otherwise', () => {
    expect(respacedTimesteps(1, 1000)).toEqual([0]);
    expect(respacedTimesteps(8, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const steps of [0, 9, 2.5]) {
      expect(() => respacedTimesteps(steps, 8)).toThrow(new RangeError(`steps must be an integer in 1..8, got ${steps}`));
    }
  });
});

describe('iddpmSchedule', () => {
  const ac = Array.from({ length: 50 }, (_, i) => Math.cos(((i + 1) / 51) * (Math.PI / 2)) ** 2);

  it('a one-step chain has no second step to clip its posterior log variance to: log 0', () => {
    const s = iddpmSchedule(ac, 1);
    expect(s.timesteps).toEqual([0]);
    expect(s.postLogVar[0]).toBe(-Infinity);
  });

  it('clips the first step\'s posterior log variance to the second\'s', () => {
    const s = iddpmSchedule(ac, 5);
    expect(s.postLogVar[0]).toBe(s.postLogVar[1]);
    expect(Number.isFinite(s.postLogVar[1])).toBe(true);
  });
});

describe('iddpmStep arguments', () => {
  const s = iddpmSchedule(Array.from({ length: 10 }, (_, i) => 1 - (i + 1) / 11), 3);
  const x = new Float32Array(8);

  it('refuses an output that is not twice x', () => {
    expect(() => iddpmStep(x, new Float32Array(15), s, 1, new Float32Array(8), 4)).toThrow(new RangeError('output has 15 values, expected 2 x 8'));
  });

  it('refuses noise that is not the size of x', () => {
    expect(() => iddpmStep(x, new Float32Array(16), s, 1, new Float32Array(7), 4)).toThrow(new RangeError('noise has 7 values, expected 8'));
  });

  it('refuses x that is not whole frames', () => {
    expect(() => iddpmStep(x, new Float32Array(16), s, 1, new Float32Array(8), 3)).toThrow(new RangeError('x (8 values) is not whole frames of 3'));
  });
});
