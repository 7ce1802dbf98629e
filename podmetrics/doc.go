// Package podmetrics is one pod's base metrics endpoint (SPEC R27): every
// pod serves its own CPU, memory, network, rootfs and throttle figures over
// HTTP at <pod IP>:19100/metrics, inside the pod network only, under the
// names and labels cAdvisor and kubelet use (container_cpu_usage_seconds_total,
// container_memory_working_set_bytes, ... with namespace, pod, container).
//
// What it does:
//   - parses the pod annotations monitoring.cci.io/enable-pod-metrics and
//     monitoring.cci.io/metrics-port (ParseAnnotations, shared with the
//     admission webhook) and checks the port against the ports the pod's
//     containers declare (Config.CheckPorts);
//   - reads a pod's figures at scrape time (HostSource: host cgroups or the
//     backend's Stats, the interface counters of the pod's network namespace,
//     statfs of each rootfs, plus the throttle and log-collection counters the
//     shim holds in memory) and turns them into
//     Prometheus metric families (Collector, one per pod: nothing is
//     computed unless somebody scrapes; written with prometheus/common's
//     encoder, without the client library's registry, whose initialisation
//     every shim process would pay);
//   - serves them (NewHandler: /metrics only, a bounded number of
//     connections and scrapes per second, because the callers are tenants),
//     from a listening socket created inside the pod's network namespace
//     (NetNS.Listen), never on a host address;
//   - for sandboxes that own the pod's network interface (gVisor's netstack,
//     Kata's guest), serves the same handler through a relay that runs in the
//     sandbox and talks to the shim over its stdin/stdout (ServeRelay; the
//     protocol in podmetrics/relay; the relay itself, a small static C
//     program, in cmd/cci-podmetrics).
//
// What it is not for: it does not decide which backend serves the endpoint
// (the backend adapter's Traits().PodMetrics does), start processes or talk
// to containerd, and it holds no node-wide metrics (cci-agent exports those on
// the host). Root paths (/sys/fs/cgroup, /proc) are fields, so tests point
// them at fixture trees.
package podmetrics
