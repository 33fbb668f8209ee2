// The console in a real browser (Debian's chromium, headless, driven by playwright-core), against
// a node started by tests/it/ui.rs, which passes:
//   HERMES_ADMIN      the node's admin URL (serves the console and the API)
//   HERMES_PASSWORD   the initial admin's password (from the data directory)
//   UPSTREAM_PORT     a test upstream the created cluster points at
//   SHOTS             where to write screenshots (optional)
// Every step waits on what the page shows, never on time. Any console error, failed request or
// request to another host fails the run.
import assert from 'node:assert/strict';
import http from 'node:http';
import { firstSignIn, launch, shot, watcher } from './lib.mjs';

const admin = process.env.HERMES_ADMIN;
const password = process.env.HERMES_PASSWORD;
const upstreamPort = Number(process.env.UPSTREAM_PORT);
const proxy = new URL(process.env.HERMES_PROXY);
const origin = new URL(admin).origin;
const NEW_PASSWORD = 'a-console-passphrase';

// The test upstream stands in for Grafana in the monitoring view's frame.
const upstreamOrigin = `http://127.0.0.1:${upstreamPort}`;
const { problems, refused, watch } = watcher(origin, [upstreamOrigin]);
const browser = await launch();

// Bytes the first load moves: every response's encoded body and headers.
async function firstLoadBytes(context) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  await page.goto(`${admin}/`);
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();
  await page.waitForLoadState('networkidle');
  await page.close();
  return bytes;
}

try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  const loaded = await firstLoadBytes(context);
  console.log(`first load: ${loaded} bytes`);
  assert.ok(loaded < 300 * 1024, `the first load moved ${loaded} bytes`);

  const page = await context.newPage();
  watch(page, 'main');

  // `/` leads to the sign-in page.
  await page.goto(`${admin}/`);
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();
  await shot(page, 'login');

  // A wrong password is refused, in words.
  // With the keyboard alone: Tab to each field, Enter to send.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-email');
  await page.keyboard.type('admin@hermes.local');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-password');
  await page.keyboard.type('not-the-password');
  await page.keyboard.press('Enter');
  await page.getByRole('alert').filter({ hasText: /invalid|incorrect|credentials/i }).waitFor();

  // The initial admin signs in and must choose a password first.
  await firstSignIn(page, admin, password, NEW_PASSWORD, {
    onPasswordPage: async () => {
      assert.match(page.url(), /\/ui\/password$/);
      await shot(page, 'change-password');
    },
  });
  await page.getByText('No domains in namespace "default" yet.').waitFor();

  // The navigation and the page's actions are reached with Tab, and Enter follows a link.
  let reached = false;
  for (let i = 0; i < 30 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'New domain');
  }
  assert.ok(reached, 'Tab never reached "New domain"');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'New domain' }).waitFor();

  // A cluster pointing at the test upstream, in the form; a bad port first, whose error shows
  // under the port field.
  await page.getByRole('link', { name: 'Clusters', exact: true }).click();
  await page.getByRole('link', { name: 'New cluster' }).click();
  await page.getByRole('tab', { name: 'Form', selected: true }).waitFor();
  await page.locator('#f-name').fill('web');
  await page.locator('#f-nodes-0-host').fill('127.0.0.1');
  await page.locator('#f-nodes-0-port').fill('0');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#f-nodes-0-port-error').waitFor();
  assert.equal(await page.locator('#f-nodes-0-port').getAttribute('aria-invalid'), 'true');
  await shot(page, 'cluster-form');
  await page.locator('#f-nodes-0-port').fill(String(upstreamPort));
  // A section switched on: a circuit breaker with its defaults.
  await page.getByLabel('Circuit breaker: on').check();
  await page.locator('#f-circuit-breaker-failure-threshold').fill('7');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Saved: version 1/).waitFor();
  assert.match(page.url(), /\/ui\/clusters\/web$/);
  // What the form wrote is what the JSON view shows.
  await page.getByRole('tab', { name: 'JSON' }).click();
  const saved = JSON.parse(await page.getByLabel('The cluster as JSON').inputValue());
  assert.equal(saved.nodes[0].port, upstreamPort);
  assert.equal(saved.circuit_breaker.failure_threshold, 7);

  // A domain routing to it.
  await page.getByRole('link', { name: 'Domains', exact: true }).click();
  await page.getByRole('link', { name: 'New domain' }).click();
  await page.getByRole('tab', { name: 'JSON' }).click();
  await page.getByLabel('The domain as JSON').fill(JSON.stringify({
    name: 'shop', hosts: ['shop.test'],
    routes: [{ name: 'all', uri: '/*', clusters: [{ name: 'web', weight: 100 }] }],
  }, null, 2));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Saved: version 1/).waitFor();
  await shot(page, 'domain-editor');
  await page.getByRole('link', { name: 'All domains' }).click();
  await page.getByRole('cell', { name: 'shop', exact: true }).waitFor();
  await page.getByText('shop.test · 1 route(s)').waitFor();
  await shot(page, 'domains');

  // An edit from a second browser context in between: the first one's save is refused with
  // an explanation, and reapplying its edits on the latest version saves them.
  await page.getByRole('link', { name: 'shop', exact: true }).click();
  await page.getByRole('tab', { name: 'JSON' }).click();
  const editor = page.getByLabel('The domain as JSON');
  await editor.waitFor();
  const other = await browser.newContext({ viewport: { width: 800, height: 800 } });
  const second = await other.newPage();
  watch(second, 'second');
  await second.goto(`${admin}/ui/login`);
  await second.getByLabel('E-mail').fill('admin@hermes.local');
  await second.getByLabel('Password').fill(NEW_PASSWORD);
  await second.getByRole('button', { name: 'Sign in' }).click();
  await second.getByRole('link', { name: 'shop', exact: true }).click();
  await second.getByRole('tab', { name: 'JSON' }).click();
  const theirs = second.getByLabel('The domain as JSON');
  await theirs.waitFor();
  const changed = JSON.parse(await theirs.inputValue());
  changed.hosts = ['shop.test', 'their.test'];
  await theirs.fill(JSON.stringify(changed, null, 2));
  await second.getByRole('button', { name: 'Save' }).click();
  await second.getByText(/Saved: version 2/).waitFor();
  await other.close();

  const mine = JSON.parse(await editor.inputValue());
  mine.hosts = ['shop.test', 'mine.test'];
  await editor.fill(JSON.stringify(mine, null, 2));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Someone else saved this domain/).waitFor();
  await shot(page, 'conflict');
  await page.getByRole('button', { name: 'Reapply my edits on the latest version' }).click();
  await page.getByText(/Your edits now apply to version 2/).waitFor();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Saved: version 3/).waitFor();
  assert.deepEqual(JSON.parse(await editor.inputValue()).hosts, ['shop.test', 'mine.test']);

  // History: three versions, the diff of the last change, and a rollback to the second
  // context's version (which the proxy then serves: tests/it/ui.rs checks).
  await page.getByRole('link', { name: 'History', exact: true }).click();
  await page.getByRole('heading', { name: 'History of domain shop' }).waitFor();
  await page.getByRole('cell', { name: '3', exact: true }).waitFor();
  const diff = page.getByLabel('differences');
  await diff.getByText('- "their.test"').waitFor();
  await diff.getByText('+ "mine.test"').waitFor();
  // Any two versions: the first against the last.
  await page.getByLabel('Compare from version 1').check();
  await page.getByRole('heading', { name: 'Changes from version 1 to version 3' }).waitFor();
  await diff.getByText('+ "mine.test"').waitFor();
  assert.equal(await diff.getByText('"their.test"').count(), 0);
  await shot(page, 'history');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Roll back to version 2' }).click();
  await page.getByText('Rolled back to version 2: now version 4.').waitFor();
  await page.getByRole('cell', { name: 'rollback', exact: true }).waitFor();

  // A new namespace, switched to: its lists are empty; back to default.
  await page.getByRole('button', { name: 'New namespace' }).click();
  await page.getByLabel('New namespace name').fill('team-a');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('link', { name: 'Domains', exact: true }).click();
  await page.getByText('No domains in namespace "team-a" yet.').waitFor();
  await page.getByLabel('Namespace', { exact: true }).selectOption('default');
  await page.getByRole('cell', { name: 'shop', exact: true }).waitFor();

  // At 800 px the list is still usable.
  await page.setViewportSize({ width: 800, height: 800 });
  await page.getByRole('button', { name: 'Delete shop' }).waitFor();
  await page.setViewportSize({ width: 1280, height: 800 });

  // A session that ends mid-edit: the sign-in dialog comes over the editor and keeps the edit.
  await page.getByRole('link', { name: 'Clusters', exact: true }).click();
  await page.getByRole('link', { name: 'web', exact: true }).click();
  const balancing = page.locator('#f-type');
  await balancing.selectOption('random');
  // Every token of the node's keys revoked at once, as an admin's key rotation does.
  const token = await page.evaluate(() => localStorage.getItem('hermes_token'));
  const rotated = await fetch(`${admin}/api/auth/rotate-key?grace=0`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(rotated.status, 200, await rotated.text());
  await page.getByRole('button', { name: 'Save' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('heading', { name: /session has ended/ }).waitFor();
  await dialog.getByLabel('Password').fill(NEW_PASSWORD);
  await dialog.getByRole('button', { name: 'Sign in' }).click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await balancing.inputValue(), 'random');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Saved: version 2/).waitFor();

  // A credential: scopes by group, the secret shown once with copy buttons and the
  // controller's configuration, never again after that.
  await page.getByRole('link', { name: 'Credentials', exact: true }).click();
  await page.getByText('No credentials in namespace "default"').waitFor();
  await page.getByRole('button', { name: 'New credential' }).click();
  await page.getByLabel('Description').fill('ci controller');
  await page.getByRole('group', { name: 'config' }).getByLabel('config:read').check();
  await page.getByRole('group', { name: 'config' }).getByLabel('config:watch').check();
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  const secret = await page.getByTestId('secret-key').innerText();
  const accessKey = await page.getByTestId('access-key').innerText();
  assert.match(secret, /^[0-9a-f]{64}$/);
  const snippet = await page.getByLabel('controller configuration').innerText();
  assert.ok(snippet.includes(`secret_key: ${secret}`) && snippet.includes(`url: ${origin}`), snippet);
  await page.getByRole('button', { name: 'Copy secret key' }).click();
  await page.getByText('Secret key copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  await shot(page, 'credential-created');
  await page.getByRole('button', { name: 'I have stored the secret' }).click();
  await page.getByRole('cell', { name: accessKey, exact: true }).waitFor();
  await page.getByRole('cell', { name: 'config:read, config:watch' }).waitFor();
  assert.equal(await page.getByText(secret).count(), 0);
  await page.reload();
  await page.getByRole('cell', { name: accessKey, exact: true }).waitFor();
  assert.equal(await page.getByText(secret).count(), 0);
  await page.getByRole('button', { name: `Disable ${accessKey}` }).click();
  await page.getByRole('cell', { name: 'Disabled', exact: true }).waitFor();
  await shot(page, 'credentials');

  // Traffic: while a load runs through the proxy, the route's request count rises on the page
  // (no reload) and its rate shows.
  await page.getByRole('link', { name: 'Traffic', exact: true }).click();
  const routes = page.getByRole('table', { name: 'routes' });
  const total = () => routes.getByRole('row', { name: /shop \/ all/ }).getByTestId('route-total').innerText().then(Number);
  let loading = true;
  const load = (async () => {
    while (loading) {
      await new Promise((done) => {
        http.get({ host: proxy.hostname, port: proxy.port, path: '/', headers: { Host: 'shop.test' } }, (res) => {
          res.resume();
          res.on('end', done);
        }).on('error', done);
      });
    }
  })();
  // The route appears with its first requests, then its count keeps rising.
  await routes.getByRole('rowheader', { name: 'shop / all' }).waitFor();
  const before = await total();
  await page.waitForFunction(async (b) => {
    const cell = document.querySelector('table[aria-label="routes"] [data-testid="route-total"]');
    return cell && Number(cell.textContent) >= b + 50;
  }, before, { polling: 250 });
  const during = await total();
  await page.waitForFunction((d) => Number(document.querySelector('table[aria-label="routes"] [data-testid="route-total"]').textContent) > d, during, { polling: 250 });
  loading = false;
  await load;
  assert.ok((await total()) > during);
  await page.getByRole('table', { name: 'clusters' }).getByRole('rowheader', { name: 'web' }).waitFor();
  // Latency percentiles and the error rate of the window (no 5xx in this load).
  const shopRow = routes.getByRole('row', { name: /shop \/ all/ });
  await shopRow.getByRole('cell', { name: /^\d+(\.\d+)? ms$/ }).first().waitFor();
  await shopRow.getByRole('cell', { name: '0.0 %' }).waitFor();
  await shot(page, 'traffic');

  // Monitoring: a dashboard (the test upstream stands in for Grafana) is saved, the page
  // reloads to allow its origin, and the frame shows it.
  await page.getByRole('link', { name: 'Monitoring', exact: true }).click();
  await page.getByText(/No dashboards in namespace "default"/).waitFor();
  await page.getByRole('button', { name: 'Add dashboard' }).click();
  await page.getByLabel('Name', { exact: true }).fill('upstream');
  await page.getByLabel('URL', { exact: true }).fill(`${upstreamOrigin}/d/overview?kiosk`);
  await page.getByRole('button', { name: 'Save dashboard' }).click();
  await page.getByRole('tab', { name: 'upstream', selected: true }).waitFor();
  const frame = page.frameLocator('iframe[title="Grafana dashboard upstream"]');
  await frame.locator('body').getByText(/from-the-console/).waitFor();
  await shot(page, 'monitoring');

  // Status: this node as the one gateway instance, running, and the raft leader as the
  // controller.
  await page.getByRole('link', { name: 'Status', exact: true }).click();
  await page.getByTestId('instances').getByText('1, 1 running', { exact: true }).waitFor();
  await page.getByRole('cell', { name: 'vm-00000001', exact: true }).waitFor();
  await page.getByText(/the raft leader, node 1/).waitFor();
  await shot(page, 'status');

  // The audit log: every change, linking to where its subject is seen.
  await page.getByRole('link', { name: 'Audit', exact: true }).click();
  const audit = page.getByRole('table', { name: 'audit log' });
  await audit.getByRole('cell', { name: 'rollback', exact: true }).waitFor();
  await audit.getByRole('link', { name: accessKey }).first().waitFor();
  await shot(page, 'audit');
  await audit.getByRole('link', { name: 'shop', exact: true }).first().click();
  await page.getByRole('heading', { name: 'History of domain shop' }).waitFor();

  // Members and users: an admin creates a user, makes them an editor here, then a viewer,
  // binds a group and removes it.
  await page.getByRole('link', { name: 'Members', exact: true }).click();
  await page.getByTestId('my-role').getByText(/admin of every namespace/).waitFor();
  await page.getByLabel('E-mail', { exact: true }).fill('dev@example.test');
  await page.getByLabel('Name', { exact: true }).fill('Dev');
  await page.getByLabel('Initial password').fill('dev-first-pass');
  await page.getByRole('button', { name: 'Create user' }).click();
  await page.getByText('Created dev@example.test.').waitFor();
  await page.getByLabel('User to add').selectOption({ label: 'dev@example.test' });
  await page.getByLabel('Role of the new member').selectOption('editor');
  await page.getByRole('button', { name: 'Add member' }).click();
  await page.getByText('Member added.').waitFor();
  await page.getByLabel('Role of dev@example.test').selectOption('viewer');
  await page.getByText('Made dev@example.test viewer.').waitFor();
  await page.getByLabel('Group', { exact: true }).fill('ops');
  await page.getByRole('button', { name: 'Bind group' }).click();
  await page.getByText('Group ops bound.').waitFor();
  await shot(page, 'members');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Remove group ops' }).click();
  await page.getByText('Removed group ops.').waitFor();

  // The viewer, in a browser of their own, sees no user list and is refused a binding, in words.
  const devContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const dev = await devContext.newPage();
  watch(dev, 'viewer');
  await dev.goto(`${admin}/ui/login`);
  await dev.getByLabel('E-mail').fill('dev@example.test');
  await dev.getByLabel('Password').fill('dev-first-pass');
  await dev.getByRole('button', { name: 'Sign in' }).click();
  await dev.getByRole('heading', { name: 'Change your password' }).waitFor();
  await dev.getByLabel('Current password').fill('dev-first-pass');
  await dev.getByLabel('New password', { exact: true }).fill('dev-own-passphrase');
  await dev.getByLabel('New password again').fill('dev-own-passphrase');
  await dev.getByRole('button', { name: 'Change password' }).click();
  await dev.getByRole('link', { name: 'shop', exact: true }).waitFor();
  await dev.getByRole('link', { name: 'Members', exact: true }).click();
  await dev.getByTestId('my-role').getByText('Your role here: viewer.').waitFor();
  assert.equal(await dev.getByRole('table', { name: 'users' }).count(), 0);
  await dev.getByLabel('Group', { exact: true }).fill('sneaky');
  await dev.getByRole('button', { name: 'Bind group' }).click();
  await dev.getByRole('alert').getByText(/forbidden|not allowed|permission|scope|role/i).waitFor();
  await devContext.close();

  // In the audit log the membership changes link to the members.
  await page.getByRole('link', { name: 'Audit', exact: true }).click();
  await page.getByRole('table', { name: 'audit log' }).getByRole('link', { name: 'builtin:dev@example.test' }).first().click();
  await page.getByRole('heading', { name: 'Members and users' }).waitFor();

  // Deleting asks first.
  await page.getByRole('link', { name: 'Domains', exact: true }).click();
  page.once('dialog', (d) => d.dismiss());
  await page.getByRole('button', { name: 'Delete shop' }).click();
  await page.getByRole('cell', { name: 'shop', exact: true }).waitFor();

  // Signing out leads back to the sign-in page.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Hermes' }).waitFor();

  assert.deepEqual(problems, []);
  assert.deepEqual(refused, [
    'main 401 POST /api/auth/login', // the wrong password
    'main 400 POST /api/v1/clusters', // port 0
    'main 409 PUT /api/v1/domains/shop', // the edit of the second context came first
    'main 401 PUT /api/v1/clusters/web', // the session ended by the key rotation
    'viewer 403 POST /api/v1/group-bindings', // a viewer may not bind groups
  ], 'answers >= 400');
  console.log('console: every step passed');
} finally {
  await browser.close();
}
