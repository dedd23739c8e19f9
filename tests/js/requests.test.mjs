// An image request's numbers (web/lib/requests.js): a seed's draws or the request's own.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('an image request takes a seed or its own draws, and refuses bad draws in one sentence', async () => {
  const { imageNumbers } = await import('../../web/lib/requests.js');
  const seeded = imageNumbers({ count: 2, seed: 7 }, 4);
  assert.equal(seeded.seed, 7);
  assert.equal(seeded.draws, null);
  const own = imageNumbers({ count: 2, draws: [0, 0.25, 0.5, 0.75, 0.1, 0.2, 0.3, 0.999] }, 4);
  assert.equal(own.seed, null);
  assert.ok(own.draws instanceof Float32Array);
  assert.deepEqual(Array.from(own.draws.subarray(0, 4)), [0, 0.25, 0.5, 0.75]);
  const refused = (/** @type {object} */ r) => assert.throws(() => imageNumbers(r, 4),
    (/** @type {any} */ e) => e.name === 'InputError' && /draws|seed/.test(e.message));
  refused({ count: 2, draws: [0.5, 0.5, 0.5] }); // not count x tokens
  refused({ count: 1, draws: [0.5, 0.5, 1, 0.5] }); // 1 is outside [0, 1)
  refused({ count: 1, draws: [0.5, NaN, 0.5, 0.5] });
  refused({ count: 1, draws: [0.5, 0.5, 0.5, 0.5], seed: 3 }); // both
});
