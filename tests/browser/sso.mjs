// OpenID Connect sign-in through the console, against a node with `--auth-mode oidc` and npm's
// oidc-provider, both started by tests/it/oidc.rs, which passes HERMES_ADMIN and IDP (the
// provider's URL). The provider's test hook signs the next authorization in as alice.
import assert from 'node:assert/strict';
import { launch, shot, watcher } from './lib.mjs';

const admin = process.env.HERMES_ADMIN;
const idp = process.env.IDP;
const { problems, refused, watch } = watcher(new URL(admin).origin, [new URL(idp).origin]);
const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page, 'sso');
  const next = await fetch(`${idp}/_test/next-user?sub=alice`);
  assert.equal(next.status, 200, await next.text());

  await page.goto(`${admin}/`);
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();
  await shot(page, 'login-sso');
  await page.getByRole('button', { name: 'Sign in with SSO' }).click();
  // Through the provider and back to /auth/callback, then the domains.
  await page.getByRole('heading', { name: 'Domains' }).waitFor();
  assert.match(page.url(), /\/ui\/domains$/);
  await page.locator('.who').getByText('alice', { exact: true }).waitFor();
  const first = await page.evaluate(() => localStorage.getItem('hermes_token'));
  assert.ok(await page.evaluate(() => localStorage.getItem('hermes_refresh_token')), 'no refresh token kept');

  // An access token the node no longer takes: the console renews it with the refresh token
  // and carries on, with no sign-in dialog.
  await page.evaluate(() => localStorage.setItem('hermes_token', 'e30.e30.not-a-token'));
  await page.reload();
  await page.getByRole('heading', { name: 'Domains' }).waitFor();
  await page.getByText(/No domains in namespace/).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0);
  const renewed = await page.evaluate(() => localStorage.getItem('hermes_token'));
  assert.ok(renewed && renewed !== first && renewed.split('.').length === 3, renewed);

  // A callback without a valid exchange says why and leads back to the sign-in.
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${admin}/auth/callback?code=forged&state=forged`);
  await page.getByRole('heading', { name: 'Sign-in failed' }).waitFor();
  await page.getByRole('link', { name: 'Back to sign-in' }).click();
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();

  assert.deepEqual(problems, []);
  // The 401s of the stale token (before the renewal) and the forged exchange's refusal only.
  assert.ok(refused.some((r) => r.includes(' 401 ')), refused.join('\n'));
  for (const r of refused) {
    assert.ok(/ 401 | 400 GET \/api\/auth\/token$| 401 GET \/api\/auth\/token$/.test(r), r);
  }
  console.log('sso: every step passed');
} finally {
  await browser.close();
}
