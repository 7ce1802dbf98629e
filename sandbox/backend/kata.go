package backend

import (
	"strconv"

	"github.com/cci-shim/cci-shim/config"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// Kata annotations the adapter writes. Kata rejects Create when an annotation
// is not allowed by enable_annotations in its configuration.toml, so the
// packaged configuration must list default_vcpus and default_memory.
const (
	KataAnnotationVCPUs  = "io.katacontainers.config.hypervisor.default_vcpus"
	KataAnnotationMemory = "io.katacontainers.config.hypervisor.default_memory" // MiB
)

// kata is containerd-shim-kata-v2: every pod in its own micro-VM.
type kata struct {
	binary     string
	configPath string
}

func (k *kata) Kind() string   { return config.BackendKata }
func (k *kata) Binary() string { return k.binary }

// Options carries the Kata configuration file, the way containerd's CRI hands
// it to Kata for a runtime with ConfigPath set.
func (k *kata) Options() (*anypb.Any, error) {
	if k.configPath == "" {
		return nil, nil
	}
	return marshalOptions(&runtimeoptions.Options{ConfigPath: k.configPath})
}

// AdjustSpec sizes the VM from the normalised pod size: vCPUs rounded up to
// whole CPUs (Kata cannot give a VM a fraction of one), memory in MiB.
func (k *kata) AdjustSpec(spec *specs.Spec, size PodSize) error {
	if size.MilliCPU <= 0 && size.MemoryBytes <= 0 {
		return nil
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	if size.MilliCPU > 0 {
		spec.Annotations[KataAnnotationVCPUs] = strconv.FormatInt((size.MilliCPU+999)/1000, 10)
	}
	if size.MemoryBytes > 0 {
		spec.Annotations[KataAnnotationMemory] = strconv.FormatInt((size.MemoryBytes+(1<<20)-1)>>20, 10)
	}
	return nil
}

// Traits: a guest kernel per pod; the VMM does every container's rootfs I/O
// from the sandbox's host cgroup; GPUs are passed through by VFIO; the guest
// owns the pod's network interface.
func (k *kata) Traits() Traits {
	return Traits{Isolation: IsolationVM, RootfsThrottle: ThrottleSandbox, GPU: GPUVFIO, PodMetrics: MetricsInSandbox}
}
