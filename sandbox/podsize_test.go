package sandbox

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func c(name string, init bool, reqCPU, reqMem, limCPU, limMem int64) ContainerResources {
	return ContainerResources{Name: name, Init: init, Requests: Resources{reqCPU, reqMem}, Limits: Resources{limCPU, limMem}}
}

func TestNormalisePodSize(t *testing.T) {
	def := Resources{1000, 2 * GiB}
	for _, tc := range []struct {
		name    string
		in      []ContainerResources
		pod     Resources
		limits  map[string]Resources
		wantErr string
	}{
		{name: "round cpu and memory", in: []ContainerResources{c("a", false, 0, 0, 300, GiB/2)},
			pod: Resources{500, GiB}, limits: map[string]Resources{"a": {500, GiB}}},
		{name: "requests when no limits", in: []ContainerResources{c("a", false, 300, GiB/2, 0, 0)},
			pod: Resources{500, GiB}, limits: map[string]Resources{"a": {500, GiB}}},
		{name: "limits win over requests", in: []ContainerResources{c("a", false, 4000, 8*GiB, 1000, 4*GiB)},
			pod: Resources{1000, 4 * GiB}},
		{name: "ratio below 2 raises memory", in: []ContainerResources{c("a", false, 0, 0, 1000, GiB)},
			pod: Resources{1000, 2 * GiB}},
		{name: "ratio above 8 raises cpu", in: []ContainerResources{c("a", false, 0, 0, 250, 4*GiB)},
			pod: Resources{500, 4 * GiB}},
		{name: "ratio above 8 odd GiB", in: []ContainerResources{c("a", false, 0, 0, 250, 5*GiB)},
			pod: Resources{750, 5 * GiB}},
		{name: "memory only", in: []ContainerResources{c("a", false, 0, 0, 0, GiB)},
			pod: Resources{250, GiB}},
		{name: "cpu only gets 0.2GiB then 2 per core", in: []ContainerResources{c("a", false, 0, 0, 2000, 0)},
			pod: Resources{2000, 4 * GiB}},
		{name: "min memory 0.2GiB per container", in: []ContainerResources{c("a", false, 0, 0, 250, 1), c("b", false, 0, 0, 250, 1)},
			pod: Resources{500, GiB}, limits: map[string]Resources{"a": {250, GiB - minMemory}, "b": {250, minMemory}}},
		{name: "init dominates", in: []ContainerResources{c("i", true, 0, 0, 4000, 8*GiB), c("a", false, 0, 0, 1000, 2*GiB)},
			pod: Resources{4000, 8 * GiB}, limits: map[string]Resources{"i": {4000, 8 * GiB}, "a": {4000, 8 * GiB}}},
		{name: "sum of apps", in: []ContainerResources{c("a", false, 0, 0, 1100, GiB), c("b", false, 0, 0, 900, GiB+1)},
			pod: Resources{2250, 5 * GiB}, limits: map[string]Resources{"a": {1250, 4*GiB - 1}, "b": {1000, GiB + 1}}},
		{name: "increments skip BestEffort", in: []ContainerResources{c("be", false, 0, 0, 0, 0), c("b", false, 0, 0, 1000, GiB+GiB/2)},
			pod: Resources{1000, 2 * GiB}, limits: map[string]Resources{"be": {0, 0}, "b": {1000, 2 * GiB}}},
		{name: "all BestEffort gets default", in: []ContainerResources{c("a", false, 0, 0, 0, 0)}, pod: def},
		{name: "only init containers", in: []ContainerResources{c("i", true, 0, 0, 1000, GiB)}, wantErr: "at least one app container"},
		{name: "boundary 32 cores 256GiB", in: []ContainerResources{c("a", false, 0, 0, 32000, 256*GiB)}, pod: Resources{32000, 256 * GiB}},
		{name: "boundary 0.25 core", in: []ContainerResources{c("a", false, 0, 0, 1, 1)}, pod: Resources{250, GiB}},
		{name: "rounding to exactly 32 cores", in: []ContainerResources{c("a", false, 0, 0, 15900, GiB), c("b", false, 0, 0, 16000, GiB)},
			pod: Resources{32000, 64 * GiB}},
		{name: "48 cores not normalised, valid", in: []ContainerResources{c("a", false, 0, 0, 48000, 96*GiB)}, pod: Resources{48000, 96 * GiB}},
		{name: "64 cores 512GiB", in: []ContainerResources{c("a", false, 0, 0, 64000, 512*GiB)}, pod: Resources{64000, 512 * GiB}},
		{name: "40 cores refused", in: []ContainerResources{c("a", false, 0, 0, 40000, 100*GiB)}, wantErr: `pod CPU "40 cores" is not allowed (pod is over 32 cores`},
		{name: "just over 32 cores", in: []ContainerResources{c("a", false, 0, 0, 32001, 100*GiB)}, wantErr: "pod CPU"},
		{name: "over 32 after rounding", in: []ContainerResources{c("a", false, 0, 0, 16100, 64*GiB), c("b", false, 0, 0, 15900, 64*GiB)},
			wantErr: "after rounding"},
		{name: "over 256GiB after rounding", in: []ContainerResources{c("a", false, 0, 0, 32000, 256*GiB-1), c("b", false, 0, 0, 0, 1)},
			wantErr: "pod memory"},
		{name: "48 cores with odd memory", in: []ContainerResources{c("a", false, 0, 0, 48000, 100*GiB+1)}, wantErr: "whole GiB"},
		{name: "over 512GiB", in: []ContainerResources{c("a", false, 0, 0, 64000, 600*GiB)}, wantErr: "1 to 512 GiB"},
		{name: "48 cores ratio too high", in: []ContainerResources{c("a", false, 0, 0, 48000, 512*GiB)}, wantErr: "memory:CPU ratio"},
		{name: "64 cores ratio too low", in: []ContainerResources{c("a", false, 0, 0, 64000, 64*GiB)}, wantErr: "2 to 8 GiB of memory per core"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalisePodSize(tc.in, def)
			if tc.wantErr != "" {
				var pe *PolicyError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a PolicyError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Pod != tc.pod {
				t.Errorf("pod = %+v, want %+v", got.Pod, tc.pod)
			}
			for n, want := range tc.limits {
				if l, ok := got.Limits(n); !ok || l.Limits != want {
					t.Errorf("container %s limits = %+v, want %+v", n, l.Limits, want)
				}
			}
		})
	}
}

func TestValidatePodSize(t *testing.T) {
	for _, tc := range []struct {
		r  Resources
		ok bool
	}{
		{Resources{250, GiB}, true}, {Resources{0, GiB}, false}, {Resources{249, GiB}, false},
		{Resources{32000, 256 * GiB}, true}, {Resources{32250, 256 * GiB}, false},
		{Resources{48000, 96 * GiB}, true}, {Resources{64000, 512 * GiB}, true}, {Resources{64000, 513 * GiB}, false},
		{Resources{1000, 2*GiB + 1}, false}, {Resources{1000, GiB}, false}, {Resources{1000, 9 * GiB}, false},
		{Resources{1000, 8 * GiB}, true}, {Resources{1000, 2 * GiB}, true}, {Resources{250, 0}, false},
	} {
		if err := ValidatePodSize(tc.r, ""); (err == nil) != tc.ok {
			t.Errorf("ValidatePodSize(%+v) = %v, want ok=%v", tc.r, err, tc.ok)
		}
	}
}

func TestParseQuantities(t *testing.T) {
	for _, tc := range []struct {
		s          string
		cpu, bytes int64
		bad        bool
	}{
		{s: "250m", cpu: 250, bytes: 1}, {s: "0.5", cpu: 500, bytes: 1}, {s: "2", cpu: 2000, bytes: 2},
		{s: "0.0001", cpu: 1, bytes: 1}, {s: "128Mi", cpu: 128 << 20 * 1000, bytes: 128 << 20},
		{s: "1G", cpu: 1e12, bytes: 1e9}, {s: "1.5Gi", cpu: 3 << 29 * 1000, bytes: 3 << 29},
		{s: "", bad: true}, {s: "-1", bad: true}, {s: "1e3", bad: true}, {s: "1.2.3", bad: true},
		{s: "Mi", bad: true}, {s: "1Xi", bad: true}, {s: "99999999Pi", bad: true}, {s: ".", bad: true},
	} {
		cpu, err1 := ParseMilliCPU(tc.s)
		b, err2 := ParseBytes(tc.s)
		if tc.bad {
			if err2 == nil {
				t.Errorf("ParseBytes(%q) accepted", tc.s)
			}
			continue
		}
		if err2 != nil || b != tc.bytes {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.s, b, err2, tc.bytes)
		}
		if tc.cpu < maxQuantity && (err1 != nil || cpu != tc.cpu) {
			t.Errorf("ParseMilliCPU(%q) = %d, %v; want %d", tc.s, cpu, err1, tc.cpu)
		}
	}
}

func FuzzNormalisePodSize(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var in []ContainerResources
		for len(data) >= 17 && len(in) < 300 {
			v := func(i int) int64 { return int64(binary.LittleEndian.Uint32(data[i:])) * int64(1+data[0]%8) }
			in = append(in, ContainerResources{Name: string(rune('a' + len(in)%26)), Init: data[0]&1 == 1,
				Requests: Resources{v(1) % 70000, v(5) << 8}, Limits: Resources{v(9) % 70000, v(13) << 8}})
			data = data[17:]
		}
		got, err := NormalisePodSize(in, Resources{1000, 2 * GiB})
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error is not a PolicyError: %v", err)
			}
			return
		}
		if err := ValidatePodSize(got.Pod, ""); err != nil {
			t.Fatalf("normalised pod size %+v is invalid: %v", got.Pod, err)
		}
		for i, c := range got.Containers {
			orig := in[i].Limits
			if orig.MilliCPU == 0 {
				orig.MilliCPU = in[i].Requests.MilliCPU
			}
			if orig.Memory == 0 {
				orig.Memory = in[i].Requests.Memory
			}
			if c.Limits.MilliCPU < orig.MilliCPU || c.Limits.Memory < orig.Memory {
				t.Fatalf("container %d shrank: %+v -> %+v", i, orig, c.Limits)
			}
		}
		if pod, _ := podOf(got.Containers); pod.MilliCPU > got.Pod.MilliCPU || pod.Memory > got.Pod.Memory {
			t.Fatalf("containers %+v exceed pod %+v", pod, got.Pod)
		}
	})
}
