// The cluster page in a real browser, against three nodes started by tests/it/ui.rs, which passes:
//   HERMES_ADMIN      the admin URL of a follower (the page the browser keeps open)
//   HERMES_PASSWORD   the initial admin's password
//   LEADER_ID, LEADER_PID   the leader's node id and process, which this script kills
// The page must show three members and the leader, and after the kill the new leader, without
// a reload; then the quorum guard refuses removing the other live member, and removing the dead
// one goes through.
import assert from 'node:assert/strict';
import { firstSignIn, launch, shot, watcher } from './lib.mjs';

const admin = process.env.HERMES_ADMIN;
const leader = process.env.LEADER_ID;
const { problems, refused, watch } = watcher(new URL(admin).origin);
const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page, 'cluster');
  await firstSignIn(page, admin, process.env.HERMES_PASSWORD, 'a-cluster-passphrase');
  // The traffic page sums the three nodes' metrics.
  await page.getByRole('link', { name: 'Traffic', exact: true }).click();
  await page.getByText(/^Summed over 3 of 3 nodes/).waitFor();

  await page.getByRole('link', { name: 'Cluster', exact: true }).click();
  const members = page.getByRole('table', { name: 'members' });
  await members.getByRole('row').nth(3).waitFor();
  assert.equal(await members.getByRole('row').count(), 4); // a header and three members
  await page.getByTestId('leader').getByText(`node ${leader}`, { exact: true }).waitFor();
  await members.getByRole('cell', { name: 'leader', exact: true }).waitFor();
  await page.getByText('healthy', { exact: true }).waitFor();
  await shot(page, 'cluster');

  // Navigations from here on would reload: count them.
  let loads = 0;
  page.on('load', () => { loads += 1; });
  process.kill(Number(process.env.LEADER_PID), 'SIGKILL');
  await page.getByTestId('leader').getByText(/^node \d+$/).filter({ hasNotText: `node ${leader}` })
    .waitFor({ timeout: 30_000 });
  await members.getByRole('cell', { name: 'unreachable', exact: true }).waitFor({ timeout: 30_000 });
  await page.getByText(/degraded/).waitFor({ timeout: 30_000 });
  assert.equal(loads, 0, 'the page reloaded');
  console.log(`new leader: ${await page.getByTestId('leader').innerText()}`);

  // Membership from the console: removing the other live member would leave one healthy voter
  // of two, and the quorum guard's refusal shows; removing the dead one goes through.
  const talking = await page.getByText(/^node \d+ \(/).first().innerText();
  const me = Number(/^node (\d+)/.exec(talking)[1]);
  const other = [1, 2, 3].find((id) => id !== me && id !== Number(leader));
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: `Remove node ${other}` }).click();
  await page.getByRole('alert').getByText(/quorum needs/).waitFor();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: `Remove node ${leader}` }).click();
  await page.getByText(`Node ${leader} was removed.`).waitFor();
  await members.getByRole('row').nth(2).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('table[aria-label="members"] tbody tr').length === 2);
  await page.getByText('healthy', { exact: true }).waitFor({ timeout: 30_000 });

  assert.deepEqual(problems, []);
  // The quorum guard's refusal, asked for on purpose.
  assert.equal(refused.length, 1, refused.join('\n'));
  assert.match(refused[0], / DELETE \/api\/v1\/cluster\/members\/\d+$/);
  console.log('cluster: every step passed');
} finally {
  await browser.close();
}
