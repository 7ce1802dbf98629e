// Package admission is what cci-webhook decides about a pod, as pure
// functions of the pod: the platform's pod-spec rewrites and the refusals
// that are better given at `kubectl apply` than at RunPodSandbox.
//
// For a pod of the cci RuntimeClass, Mutate
//   - applies R26 image replacement (annotation
//     coordinator.cci.io/image-replacement, see ParseImageReplacement and
//     ReplaceImage) to every container, init container and ephemeral
//     container;
//   - writes coordinator.cci.io/hostpath-volumes (volume name → hostPath
//     path, read by sandbox.ParseHostPathVolumes), which CRI cannot deliver
//     because CRI mounts carry no volume names (R4 under kubelet);
//   - writes resources.cci.io/containers (each container's name, init flag,
//     requests and limits, read by sandbox.ParseContainers), which describes
//     the pod to the shim (init vs app, the first non-BestEffort app
//     container of R5).
//
// Both annotations are always overwritten: a tenant's value never survives.
// Validate checks the pod as it will be stored: every *.cci.io/* annotation
// through ValidatePodAnnotations (the shim's own parsers, so the messages are
// the shim's), the two written annotations, hostPath volumes that no
// replacement entry covers, the R5 pod size, and /dev/shm against the pod
// memory.
//
// Ephemeral containers (kubectl debug) get R26 too: a debug image that names
// a registry the platform mirrors must be pulled from the mirror like any
// other. They have no resources and mount no new volumes, so neither written
// annotation describes them.
//
// On UPDATE (including the pods/ephemeralcontainers subresource) only images
// that differ from the old object are replaced, so an image is replaced at
// most once however often the pod is updated.
//
// The package does no I/O, speaks no HTTP and knows nothing about webhook
// registration; cmd/cci-webhook serves it through controller-runtime's
// webhook server.
package admission
