// Package gpu discovers a node's NVIDIA GPUs, hands each whole GPU to one pod at a
// time, and describes how a pod's GPUs and driver libraries appear in its container
// spec (rules R11–R13).
//
// It is for:
//   - inventory: the [Inventory] interface, backed by NVML through go-nvml (loaded with
//     dlopen at run time, so binaries build and start on hosts without a driver), by a
//     fake read from a JSON fixture, or by none at all; [Open] chooses by
//     configuration and never falls back silently;
//   - requests: [ParseRequest] reads what a pod asks for (our gpu.cci.io/* annotations,
//     CDI annotations, NVIDIA_VISIBLE_DEVICES);
//   - allocation: [Ledger], a node-wide file in the state directory, flock-serialised
//     across the one-shim-per-pod processes and written crash-safely;
//   - spec rewriting: [ApplyKata] (VFIO cold-plug), [ApplyRunc] (device nodes, for
//     development), and [InjectEnv] for the main process and every exec.
//
// It is not for: talking to containerd or Kata (no ttrpc, no client; the shim calls
// these functions), binding GPUs to vfio-pci, installing drivers, MIG or vGPU.
//
// Host paths (/sys, /proc) are read under a configurable root so tests use fixture
// trees. The ledger is hand-written (a JSON file under flock) because no well-kept
// library offers a cross-process device ledger; it is small on purpose.
package gpu
