// Injection simulation: what Istio, Linkerd and Kuma add to a pod when they mesh it, in
// their classic layout (the proxy is a regular container) or native one (an init container
// with restartPolicy: Always). The shapes follow the injectors' own golden outputs
// (istio/istio pkg/kube/inject/testdata, linkerd/linkerd2 cli/cmd/testdata, kumahq/kuma
// injector testdata), trimmed to what a pod spec shows: names, images, args, ports, user,
// lifecycle hooks, and the annotations and labels that mark the pod as injected.
//
// This only builds input. What happens to the injected pod is the policy's answer.

const ISTIO = '1.24.0';
const LINKERD = 'edge-24.11.8';
const KUMA = '2.9.2';

export const MESHES = [
  { id: 'istio', name: 'Istio' },
  { id: 'linkerd', name: 'Linkerd' },
  { id: 'kuma', name: 'Kuma' },
];
export const MODES = [
  { id: 'classic', name: 'classic (regular container)' },
  { id: 'native', name: 'native (init container, restartPolicy: Always)' },
];

const istioInit = () => ({
  name: 'istio-init',
  image: `docker.io/istio/proxyv2:${ISTIO}`,
  args: ['istio-iptables', '-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020', '--log_output_level=default:info'],
  securityContext: {
    allowPrivilegeEscalation: false,
    capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    privileged: false, readOnlyRootFilesystem: false, runAsGroup: 0, runAsNonRoot: false, runAsUser: 0,
  },
});

const istioProxy = (native, app) => ({
  name: 'istio-proxy',
  image: `docker.io/istio/proxyv2:${ISTIO}`,
  args: ['proxy', 'sidecar', '--domain', '$(POD_NAMESPACE).svc.cluster.local', '--proxyLogLevel=warning', '--proxyComponentLogLevel=misc:error', '--log_output_level=default:info'],
  env: [
    { name: 'PILOT_CERT_PROVIDER', value: 'istiod' },
    { name: 'CA_ADDR', value: 'istiod.istio-system.svc:15012' },
    { name: 'ISTIO_META_APP_CONTAINERS', value: app.join(',') },
    { name: 'ISTIO_META_INTERCEPTION_MODE', value: 'REDIRECT' },
  ],
  ...(native ? { lifecycle: { preStop: { exec: { command: ['pilot-agent', 'request', '--debug-port=15020', 'POST', 'drain'] } } } } : {}),
  ports: [{ containerPort: 15090, name: 'http-envoy-prom', protocol: 'TCP' }],
  readinessProbe: { failureThreshold: 4, httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 15, timeoutSeconds: 3 },
  ...(native ? { restartPolicy: 'Always' } : {}),
  securityContext: {
    allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, privileged: false,
    readOnlyRootFilesystem: true, runAsGroup: 1337, runAsNonRoot: true, runAsUser: 1337,
  },
  ...(native ? { startupProbe: { failureThreshold: 600, httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 1, timeoutSeconds: 3 } } : {}),
  volumeMounts: [
    { mountPath: '/var/run/secrets/istio', name: 'istiod-ca-cert' },
    { mountPath: '/var/lib/istio/data', name: 'istio-data' },
    { mountPath: '/etc/istio/proxy', name: 'istio-envoy' },
    { mountPath: '/var/run/secrets/tokens', name: 'istio-token' },
    { mountPath: '/etc/istio/pod', name: 'istio-podinfo' },
  ],
});

const linkerdInit = () => ({
  name: 'linkerd-init',
  image: 'cr.l5d.io/linkerd/proxy-init:v2.4.1',
  args: ['--incoming-proxy-port', '4143', '--outgoing-proxy-port', '4140', '--proxy-uid', '2102', '--inbound-ports-to-ignore', '4190,4191,4567,4568', '--outbound-ports-to-ignore', '4567,4568'],
  securityContext: {
    allowPrivilegeEscalation: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'] }, privileged: false,
    readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: 'RuntimeDefault' },
  },
  volumeMounts: [{ mountPath: '/run', name: 'linkerd-proxy-init-xtables-lock' }],
});

const linkerdProxy = (native) => ({
  name: 'linkerd-proxy',
  image: `cr.l5d.io/linkerd/proxy:${LINKERD}`,
  env: [
    { name: '_pod_containerName', value: 'linkerd-proxy' },
    { name: 'LINKERD2_PROXY_LOG', value: 'warn,linkerd=info,trust_dns=error' },
    { name: 'LINKERD2_PROXY_ADMIN_LISTEN_ADDR', value: '0.0.0.0:4191' },
    { name: 'LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR', value: '127.0.0.1:4140' },
    { name: 'LINKERD2_PROXY_INBOUND_LISTEN_ADDR', value: '0.0.0.0:4143' },
  ],
  lifecycle: { postStart: { exec: { command: ['/usr/lib/linkerd/linkerd-await', '--timeout=2m', '--port=4191'] } } },
  livenessProbe: { httpGet: { path: '/live', port: 4191 }, initialDelaySeconds: 10, timeoutSeconds: 1 },
  ports: [{ containerPort: 4143, name: 'linkerd-proxy' }, { containerPort: 4191, name: 'linkerd-admin' }],
  readinessProbe: { httpGet: { path: '/ready', port: 4191 }, initialDelaySeconds: 2, timeoutSeconds: 1 },
  ...(native ? { restartPolicy: 'Always' } : {}),
  securityContext: {
    allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 2102,
    seccompProfile: { type: 'RuntimeDefault' },
  },
  volumeMounts: [
    { mountPath: '/var/run/linkerd/identity/end-entity', name: 'linkerd-identity-end-entity' },
    { mountPath: '/var/run/secrets/tokens', name: 'linkerd-identity-token' },
  ],
});

const kumaInit = () => ({
  name: 'kuma-init',
  image: `docker.io/kumahq/kuma-init:${KUMA}`,
  command: ['/usr/bin/kumactl', 'install', 'transparent-proxy'],
  args: ['--config=/tmp/transparent-proxy/base/config.yaml'],
  securityContext: {
    capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] }, readOnlyRootFilesystem: true, runAsGroup: 0, runAsUser: 0,
  },
  volumeMounts: [{ mountPath: '/tmp', name: 'kuma-init-tmp' }],
});

const kumaSidecar = (native) => ({
  name: 'kuma-sidecar',
  image: `docker.io/kumahq/kuma-dp:${KUMA}`,
  args: ['run', '--log-level=info', '--concurrency=2'],
  env: [
    { name: 'KUMA_CONTROL_PLANE_URL', value: 'http://kuma-control-plane.kuma-system:5681' },
    { name: 'KUMA_DATAPLANE_DRAIN_TIME', value: '30s' },
    { name: 'KUMA_DATAPLANE_MESH', value: 'default' },
  ],
  ...(native ? { lifecycle: { preStop: { exec: { command: ['killall', '-USR2', 'kuma-dp'] } } } } : {}),
  readinessProbe: { httpGet: { path: '/ready', port: 9901 }, initialDelaySeconds: 1, periodSeconds: 5 },
  ...(native ? { restartPolicy: 'Always' } : {}),
  securityContext: {
    allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true, runAsGroup: 5678, runAsUser: 5678,
  },
  volumeMounts: [{ mountPath: '/tmp', name: 'kuma-sidecar-tmp' }],
});

function ensure(obj, key, empty) {
  if (obj[key] === null || typeof obj[key] !== 'object') obj[key] = empty;
  return obj[key];
}

/**
 * Meshes the pod whose `metadata` and `spec` are given (both mutated) with `mesh` in `mode`.
 * Answers the names of the containers it added, in the order it added them.
 */
export function inject(metadata, spec, mesh, mode) {
  const native = mode === 'native';
  const labels = ensure(metadata, 'labels', {});
  const annotations = ensure(metadata, 'annotations', {});
  const containers = ensure(spec, 'containers', []);
  const inits = ensure(spec, 'initContainers', []);
  const volumes = ensure(spec, 'volumes', []);
  const app = containers.map((c) => c.name);
  switch (mesh) {
    case 'istio': {
      const volumeNames = ['istio-envoy', 'istio-data', 'istio-podinfo', 'istio-token', 'istiod-ca-cert'];
      Object.assign(labels, {
        'security.istio.io/tlsMode': 'istio',
        'service.istio.io/canonical-name': metadata.name || app[0] || 'workload',
        'service.istio.io/canonical-revision': 'latest',
      });
      Object.assign(annotations, {
        'istio.io/rev': 'default',
        'kubectl.kubernetes.io/default-container': app[0] || '',
        'prometheus.io/path': '/stats/prometheus',
        'prometheus.io/port': '15020',
        'prometheus.io/scrape': 'true',
        'sidecar.istio.io/status': JSON.stringify({
          initContainers: native ? ['istio-init', 'istio-proxy'] : ['istio-init'],
          containers: native ? null : ['istio-proxy'],
          volumes: volumeNames,
          imagePullSecrets: null,
          revision: 'default',
        }),
      });
      inits.push(istioInit());
      if (native) inits.push(istioProxy(true, app));
      else containers.push(istioProxy(false, app));
      volumes.push(
        { emptyDir: { medium: 'Memory' }, name: 'istio-envoy' },
        { emptyDir: {}, name: 'istio-data' },
        { downwardAPI: { items: [{ fieldRef: { fieldPath: 'metadata.labels' }, path: 'labels' }] }, name: 'istio-podinfo' },
        { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } },
        { configMap: { name: 'istio-ca-root-cert' }, name: 'istiod-ca-cert' },
      );
      return ['istio-init', 'istio-proxy'];
    }
    case 'linkerd': {
      Object.assign(labels, { 'linkerd.io/control-plane-ns': 'linkerd', 'linkerd.io/workload-ns': metadata.namespace || 'default' });
      Object.assign(annotations, {
        'linkerd.io/created-by': `linkerd/proxy-injector ${LINKERD}`,
        'linkerd.io/inject': 'enabled',
        'linkerd.io/proxy-version': LINKERD,
        'linkerd.io/trust-root-sha256': '8dc603abd4e755c25c94da05abbf29b9b283a784733651020d72f97ca8ab98e4',
        ...(native ? { 'config.alpha.linkerd.io/proxy-enable-native-sidecar': 'true' } : {}),
      });
      // The proxy goes first, so that it is up before the other containers (or init containers) run.
      if (native) inits.unshift(linkerdInit(), linkerdProxy(true));
      else {
        inits.unshift(linkerdInit());
        containers.unshift(linkerdProxy(false));
      }
      volumes.push(
        { emptyDir: {}, name: 'linkerd-proxy-init-xtables-lock' },
        { emptyDir: { medium: 'Memory' }, name: 'linkerd-identity-end-entity' },
        { name: 'linkerd-identity-token', projected: { sources: [{ serviceAccountToken: { audience: 'identity.l5d.io', expirationSeconds: 86400, path: 'linkerd-identity-token' } }] } },
      );
      return ['linkerd-init', 'linkerd-proxy'];
    }
    case 'kuma': {
      Object.assign(labels, { 'kuma.io/mesh': 'default' });
      Object.assign(annotations, {
        'kuma.io/envoy-admin-port': '9901',
        'kuma.io/sidecar-injected': 'true',
        'kuma.io/sidecar-uid': '5678',
        'kuma.io/transparent-proxying': 'enabled',
        'kuma.io/transparent-proxying-inbound-port': '15006',
        'kuma.io/transparent-proxying-outbound-port': '15001',
      });
      if (native) inits.unshift(kumaInit(), kumaSidecar(true));
      else {
        inits.unshift(kumaInit());
        containers.unshift(kumaSidecar(false));
      }
      volumes.push(
        { emptyDir: { sizeLimit: '10M' }, name: 'kuma-init-tmp' },
        { emptyDir: { sizeLimit: '10M' }, name: 'kuma-sidecar-tmp' },
      );
      return ['kuma-init', 'kuma-sidecar'];
    }
    default:
      throw new Error(`unknown mesh ${mesh}`);
  }
}

const ARGOEXEC = 'quay.io/argoproj/argoexec:v3.6.5';
const VAR_RUN_ARGO = { name: 'var-run-argo', mountPath: '/var/run/argo' };

/** A user container as Argo's emissary executor runs it: `argoexec emissary -- argv`. */
function emissary(c, name) {
  const out = structuredClone(c);
  if (name) out.name = name;
  let argv = [...(c.command || []), ...(c.args || [])];
  if (c.source !== undefined) argv = [...(c.command || ['sh']), '/argo/staging/script'];
  out.command = ['/var/run/argo/argoexec', 'emissary', '--', ...argv];
  delete out.args;
  delete out.source;
  delete out.mirrorVolumeMounts;
  out.volumeMounts = [...(c.volumeMounts || []), VAR_RUN_ARGO];
  return out;
}

/**
 * The Pod that Argo's workflow controller creates for `workflow.spec.templates[index]`
 * with the emissary executor (argo-workflows workflow/controller/workflowpod.go): `init`,
 * `wait`, `main` (or the containerSet's containers) and the declared sidecars, with the
 * workflow label, the node-name annotation and the template's metadata. Null for a
 * template that runs no pod of its own (steps, dag, suspend, resource).
 */
export function argoPod(workflow, index) {
  const spec = workflow.spec || {};
  const t = (spec.templates || [])[index];
  if (!t) return null;
  const name = workflow.metadata?.name || workflow.metadata?.generateName || 'workflow-';
  const containers = [{ name: 'wait', image: ARGOEXEC, command: ['argoexec', 'wait'], volumeMounts: [VAR_RUN_ARGO] }];
  if (t.container || t.script) containers.push(emissary(t.container || t.script, 'main'));
  else if (t.containerSet?.containers) containers.push(...t.containerSet.containers.map((c) => emissary(c)));
  else return null;
  for (const s of t.sidecars || []) containers.push(emissary(s));
  const merged = (key) => ({ ...(spec.podMetadata?.[key] || {}), ...(t.metadata?.[key] || {}) });
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${name}${t.name}`,
      ...(workflow.metadata?.namespace ? { namespace: workflow.metadata.namespace } : {}),
      labels: { ...merged('labels'), 'workflows.argoproj.io/workflow': name },
      annotations: { ...merged('annotations'), 'workflows.argoproj.io/node-name': `${name}.${t.name}` },
    },
    spec: {
      restartPolicy: 'Never',
      initContainers: [{ name: 'init', image: ARGOEXEC, command: ['argoexec', 'init'], volumeMounts: [VAR_RUN_ARGO] }, ...(t.initContainers || [])],
      containers,
      volumes: [{ name: 'var-run-argo', emptyDir: {} }, ...(spec.volumes || [])],
    },
  };
  for (const key of ['securityContext', 'terminationGracePeriodSeconds']) {
    if (spec[key] !== undefined) pod.spec[key] = structuredClone(spec[key]);
  }
  return pod;
}

/** The containers each injector adds; it does not inject a pod that already has them. */
const INJECTED_NAMES = {
  istio: ['istio-init', 'istio-proxy'],
  linkerd: ['linkerd-init', 'linkerd-proxy'],
  kuma: ['kuma-init', 'kuma-sidecar'],
};

const WORKFLOW_KINDS = new Set(['Workflow', 'WorkflowTemplate', 'ClusterWorkflowTemplate']);

/**
 * The injected variant of the pod a subject stands for: `{object, added}` where `object`
 * is the document to plan and `added` the injected containers' names; `{object: null,
 * already}` when the pod already has a container the injector adds; null when the subject
 * has no pod spec to inject into. A Workflow template becomes the Pod Argo would create for it
 * (an injector sees that pod, not the template); other kinds are injected where the
 * subject's `source.path` points.
 */
export function injectedVariant(doc, source, mesh, mode) {
  let object;
  let keys;
  if (WORKFLOW_KINDS.has(source.kind) && source.template !== undefined) {
    const m = /\.spec\.templates\[(\d+)\]$/.exec(source.path);
    const sub = m ? getAtPath(doc, source.path.slice(0, source.path.length - m[0].length)) : null;
    object = sub && argoPod(sub, Number(m[1]));
    if (!object) return null;
    keys = [];
  } else {
    object = structuredClone(doc);
    keys = pathKeys(source.path);
  }
  let pod = object;
  for (const k of keys) pod = pod?.[k];
  if (!pod || typeof pod !== 'object') return null;
  if (pod.metadata === null || typeof pod.metadata !== 'object') pod.metadata = {};
  if (pod.spec === null || typeof pod.spec !== 'object') return null;
  const present = new Set([...(pod.spec.containers || []), ...(pod.spec.initContainers || [])].map((c) => c?.name));
  const clash = INJECTED_NAMES[mesh].find((n) => present.has(n));
  if (clash) return { object: null, added: [], already: clash };
  const added = inject(pod.metadata, pod.spec, mesh, mode);
  return { object, added };
}

function pathKeys(path) {
  const keys = [];
  for (const part of path.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (m[1]) keys.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) keys.push(Number(idx[1]));
  }
  return keys.slice(1);
}

function getAtPath(doc, path) {
  let v = doc;
  for (const k of pathKeys(path)) v = v?.[k];
  return v;
}
