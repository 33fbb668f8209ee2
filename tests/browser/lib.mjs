// What the browser scripts share: Debian's chromium, a watch on every page (console errors,
// answers of 400 or more, requests to other hosts), screenshots, and the first sign-in of the
// initial admin, which must change the password.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

// `problems`: console errors, page errors and requests to a host other than `origin` (or one of
// `elsewhere`, such as an identity provider the sign-in goes through).
// `refused`: every answer of 400 or more, as `<label> <status> <method> <path>`, for the script
// to compare with the ones it provoked on purpose.
export function watcher(origin, elsewhere = []) {
  const problems = [];
  const refused = [];
  function watch(page, label) {
    page.on('console', (m) => {
      // The browser's own line for an answer >= 400; those are checked through `refused`.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`${label} console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) refused.push(`${label} ${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on('pageerror', (e) => problems.push(`${label} page error: ${e.message}`));
    page.on('request', (r) => {
      const to = new URL(r.url()).origin;
      if (to !== origin && !elsewhere.includes(to)) problems.push(`${label} request to another host: ${r.url()}`);
    });
  }
  return { problems, refused, watch };
}

export async function shot(page, name) {
  if (process.env.SHOTS) await page.screenshot({ path: `${process.env.SHOTS}/${name}.png`, fullPage: true });
}

// Signs the initial admin in with `password` and changes it to `next`; ends on the domains.
export async function firstSignIn(page, admin, password, next, { onPasswordPage } = {}) {
  await page.goto(`${admin}/`);
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();
  await page.getByLabel('E-mail').fill('admin@hermes.local');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Change your password' }).waitFor();
  if (onPasswordPage) await onPasswordPage();
  await page.getByLabel('Current password').fill(password);
  await page.getByLabel('New password', { exact: true }).fill(next);
  await page.getByLabel('New password again').fill(next);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('heading', { name: 'Domains' }).waitFor();
}
