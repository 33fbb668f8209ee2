// Every field of a domain and a cluster (contracts §1.1–§1.4, and hermes's additions), as the
// form editor shows them. Defaults in hints are the gateway's when a field is absent.
const str = (label, extra = {}) => ({ type: 'string', label, ...extra });
const num = (label, extra = {}) => ({ type: 'number', label, ...extra });
const bool = (label, extra = {}) => ({ type: 'bool', label, ...extra });
const obj = (label, fields, extra = {}) => ({ type: 'object', label, fields, ...extra });
const list = (label, item, newItem, extra = {}) => ({ type: 'list', label, item, newItem, ...extra });

const headerTransform = obj('Header', {
  name: str('Name'),
  value: str('Value'),
  action: str('Action', { enum: ['set', 'add', 'remove'] }),
});

export const ROUTE = obj('Route', {
  name: str('Name'),
  uri: str('URI', { hint: 'Exact (/a/b), prefix (/a/*) or everything (/*).' }),
  status: num('Enabled', { enum: [[1, 'enabled'], [0, 'disabled']] }),
  methods: { type: 'lines', label: 'Methods', hint: 'One a line; none means every method.' },
  priority: num('Priority', { hint: 'Higher wins at the same URI level. Default 0.' }),
  clusters: list('Clusters', obj('Cluster', { name: str('Cluster name'), weight: num('Weight', { hint: 'Default 100.' }) }), () => ({ name: '', weight: 100 })),
  headers: list('Header matchers', obj('Matcher', {
    name: str('Header'),
    value: str('Value'),
    match_type: str('Match', { enum: ['exact', 'prefix', 'regex', 'present'] }),
    invert: bool('Invert'),
  }), () => ({ name: '', value: '', match_type: 'exact', invert: false })),
  rate_limit: obj('Rate limit', {
    mode: str('Mode', { enum: [['req', 'token bucket (req)'], ['count', 'sliding window (count)']] }),
    rate: num('Rate', { hint: 'Requests a second (req). Default 100.', float: true }),
    burst: num('Burst', { hint: 'Extra bucket capacity (req).' }),
    count: num('Count', { hint: 'Requests a window (count). Default 1000.' }),
    time_window: num('Window (s)', { hint: 'Default 1.' }),
    key: str('Key', { enum: ['route', 'host_uri', 'remote_addr', 'uri'] }),
    rejected_code: num('Rejected code', { hint: 'Default 429.' }),
  }, { optional: true, fresh: () => ({ mode: 'req', rate: 100, key: 'route', rejected_code: 429 }) }),
  cluster_override_header: str('Cluster override header', { optional: true, hint: 'A header naming one of the route\'s clusters.' }),
  request_header_transforms: list('Request header transforms', headerTransform, () => ({ name: '', value: '', action: 'set' })),
  response_header_transforms: list('Response header transforms', headerTransform, () => ({ name: '', value: '', action: 'set' })),
  max_body_bytes: num('Max body bytes', { hint: 'Larger bodies get 413. None: unlimited.' }),
  enable_compression: bool('Compress responses (gzip, brotli)'),
  retry_non_idempotent: bool('Retry non-idempotent methods too'),
  plugins: { type: 'json', label: 'Plugins (stored, passed through)' },
});

export const DOMAIN = obj('Domain', {
  name: str('Name'),
  hosts: { type: 'lines', label: 'Hosts', hint: 'One a line: exact, *.suffix or prefix.*.' },
  routes: list('Routes', ROUTE, () => ({ name: '', uri: '/*', status: 1, clusters: [{ name: '', weight: 100 }] })),
});

export const CLUSTER = obj('Cluster', {
  name: str('Name'),
  type: str('Balancing', { enum: ['roundrobin', 'random', 'weighted_random', 'least_request', 'least_conn', 'peak_ewma', 'ewma'] }),
  scheme: str('Scheme', { enum: ['http', 'https'] }),
  tls_verify: bool('Verify upstream certificates'),
  pass_host: str('Host header', { enum: [['pass', 'the client\'s (pass)'], ['node', 'the node\'s (node)'], ['rewrite', 'upstream host (rewrite)']] }),
  upstream_host: str('Upstream host', { optional: true, hint: 'Sent as Host with rewrite.' }),
  nodes: list('Nodes', obj('Node', {
    host: str('Host'),
    port: num('Port'),
    weight: num('Weight', { hint: 'Default 100.' }),
    metadata: { type: 'map', label: 'Metadata', hint: 'key=value, one a line.' },
  }), () => ({ host: '', port: 80, weight: 100 })),
  discovery_type: str('Discovery', { optional: true, enum: [['consul', 'Consul']] }),
  service_name: str('Consul service', { optional: true }),
  discovery_args: obj('Discovery filter', {
    metadata_match: { type: 'mapList', label: 'Metadata match', hint: 'key=value1,value2, one a line: every key, any value.' },
  }, { optional: true, fresh: () => ({ metadata_match: {} }) }),
  timeout: obj('Timeouts (s)', {
    connect: num('Connect', { float: true, hint: 'Default 6.' }),
    send: num('Send', { float: true, hint: 'Default 6.' }),
    read: num('Read', { float: true, hint: 'Default 6.' }),
  }),
  keepalive_pool: obj('Keep-alive pool', {
    size: num('Idle connections a node (per proxy thread)', { hint: 'Default 320.' }),
    idle_timeout: num('Idle timeout (s)', { hint: 'Default 60.' }),
    requests: num('Requests a connection', { hint: 'Default 1000.' }),
  }),
  health_check: obj('Health checks', {
    active: obj('Active probes', {
      interval: num('Interval (s)', { hint: 'Default 10.' }),
      path: str('Path', { hint: 'Default /health.' }),
      port: num('Port', { hint: 'The node\'s own when empty.' }),
      healthy_statuses: { type: 'numbers', label: 'Healthy statuses', hint: 'Comma separated. Default 200.' },
      healthy_threshold: num('Healthy threshold', { hint: 'Default 3.' }),
      unhealthy_threshold: num('Unhealthy threshold', { hint: 'Default 3.' }),
      timeout: num('Timeout (s)', { hint: 'Default 3.' }),
      concurrency: num('Probes at once', { hint: 'Default 64.' }),
    }, { optional: true, fresh: () => ({ interval: 10, path: '/health' }) }),
    passive: obj('Passive ejection', {
      consecutive_failures: num('Failures in a row', { hint: 'Default 5.' }),
      ejection_secs: num('Ejection (s)', { hint: 'Default 10, doubled each time.' }),
      max_ejection_secs: num('Longest ejection (s)', { hint: 'Default 300.' }),
    }, { optional: true, fresh: () => ({ consecutive_failures: 5 }) }),
  }, { optional: true, fresh: () => ({}) }),
  retry: obj('Retries', {
    count: num('Count', { hint: 'Default 2.' }),
    retry_on_statuses: { type: 'numbers', label: 'On statuses', hint: 'Default 502, 503, 504.' },
    retry_on_connect_failure: bool('On connect failure'),
    retry_on_timeout: bool('On timeout'),
  }, { optional: true, fresh: () => ({ count: 2, retry_on_statuses: [502, 503, 504], retry_on_connect_failure: true, retry_on_timeout: true }) }),
  circuit_breaker: obj('Circuit breaker', {
    failure_threshold: num('Failures to open', { hint: 'Default 5.' }),
    success_threshold: num('Successes to close', { hint: 'Default 2.' }),
    open_duration_secs: num('Open for (s)', { hint: 'Default 30.' }),
  }, { optional: true, fresh: () => ({ failure_threshold: 5, success_threshold: 2, open_duration_secs: 30 }) }),
});
