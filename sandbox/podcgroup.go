package sandbox

import "strings"

// R5 and kubelet's pod cgroup. kubelet creates a pod's cgroup
// (.../kubepods[/<qos>]/pod<uid>) before it asks for the sandbox and caps it
// at what the pod's containers declare plus the RuntimeClass's overhead.
// The pod's containers run below it, so a normalised size above the
// declared one (a 300m/700Mi pod runs at 0.5 core/1 GiB) only holds if that
// cap is raised by the same increment. The shim raises it at sandbox
// creation and gives kubelet's values back when the sandbox goes (if they
// are still the ones it wrote); kubelet never reads them back, and it
// removes the cgroup with the pod.

// CgroupLimits are a cgroup's CPU and memory caps. Quota is in µs per
// Period; Quota and Memory are -1 when unlimited.
type CgroupLimits struct {
	Quota  int64  `json:"quota"`
	Period uint64 `json:"period"`
	Memory int64  `json:"memory"`
}

// KubeletPodCgroup reports whether a pod parent recorded in the pod state
// is kubelet's cgroup for the pod (cgroupfs driver; the systemd driver's
// slices are not handled), which the shim sizes but never creates or removes.
func KubeletPodCgroup(st *PodState) bool {
	if st == nil || !strings.HasPrefix(st.CgroupParent, "/") || OwnedCgroupParent(st.CgroupParent) {
		return false
	}
	for _, e := range strings.Split(st.CgroupParent, "/") {
		if strings.HasPrefix(e, "kubepods") {
			return true
		}
	}
	return false
}

// RaisedPodCgroup returns the caps kubelet's pod cgroup needs for the
// normalised pod in st, given its current caps cur (kubelet's: the CRI
// aggregate st.CRI plus the overhead). Each cap grows by the normalisation
// increment (normalised size minus what CRI declared); a cap kubelet did
// not set, or that CRI did not declare, stays. changed is false when
// nothing grows.
func RaisedPodCgroup(st *PodState, cur CgroupLimits) (raised CgroupLimits, changed bool) {
	raised = cur
	size := st.Size.Pod
	if cur.Memory > 0 && st.CRI.Memory > 0 && size.Memory > st.CRI.Memory {
		raised.Memory = cur.Memory + size.Memory - st.CRI.Memory
	}
	if cur.Quota > 0 && cur.Period > 0 && st.CRI.Quota > 0 && st.CRI.Period > 0 {
		want := size.MilliCPU * int64(cur.Period) / 1000
		declared := st.CRI.Quota * int64(cur.Period) / int64(st.CRI.Period)
		if want > declared {
			raised.Quota = cur.Quota + want - declared
		}
	}
	return raised, raised != cur
}
