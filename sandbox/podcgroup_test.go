package sandbox

import "testing"

func TestKubeletPodCgroup(t *testing.T) {
	for parent, want := range map[string]bool{
		"/kubepods/burstable/pod0b5b0d4e-6e0f-4f5e-9d3c-1f4a2b3c4d5e": true,
		"/kubepods/pod0b5b0d4e-6e0f-4f5e-9d3c-1f4a2b3c4d5e":           true,
		"/k8s/kubepods/besteffort/pod0b5b0d4e":                        true,
		"/cci-shim/k8s.io/pod-abc":                                    false, // the shim's own
		"/system.slice/pod0b5b0d4e":                                   false,
		"kubepods-burstable-pod0b5b.slice":                            false, // systemd driver
		"":                                                            false,
	} {
		if got := KubeletPodCgroup(&PodState{CgroupParent: parent}); got != want {
			t.Errorf("KubeletPodCgroup(%q) = %v, want %v", parent, got, want)
		}
	}
}

func TestRaisedPodCgroup(t *testing.T) {
	const mi = 1 << 20
	// A 300m/700Mi pod normalised to 0.5 core/1 GiB; kubelet's pod cgroup
	// holds the declared size plus a 250m/140Mi overhead.
	st := &PodState{
		CRI:  CRIResources{Known: true, Quota: 30000, Period: 100000, Memory: 700 * mi},
		Size: PodSize{Pod: Resources{MilliCPU: 500, Memory: 1024 * mi}},
	}
	kubelet := CgroupLimits{Quota: 55000, Period: 100000, Memory: 840 * mi}
	got, changed := RaisedPodCgroup(st, kubelet)
	if want := (CgroupLimits{Quota: 75000, Period: 100000, Memory: 1164 * mi}); !changed || got != want {
		t.Errorf("raised = %+v (changed %v), want %+v: the overhead stays on top of the normalised size", got, changed, want)
	}

	// The cgroup's period differs from CRI's: the increment is converted.
	got, _ = RaisedPodCgroup(st, CgroupLimits{Quota: 11000, Period: 20000, Memory: -1})
	if want := (CgroupLimits{Quota: 15000, Period: 20000, Memory: -1}); got != want {
		t.Errorf("raised = %+v, want %+v (no memory cap stays none)", got, want)
	}

	// Already at its normalised size, or no limits declared: nothing changes.
	for _, s := range []*PodState{
		{CRI: CRIResources{Known: true, Quota: 50000, Period: 100000, Memory: 1024 * mi}, Size: st.Size},
		{CRI: CRIResources{Known: true}, Size: st.Size},
	} {
		if got, changed := RaisedPodCgroup(s, kubelet); changed || got != kubelet {
			t.Errorf("CRI %+v: raised to %+v", s.CRI, got)
		}
	}
}
