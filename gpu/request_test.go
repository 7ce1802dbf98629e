package gpu

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func specWith(ann map[string]string, env ...string) *specs.Spec {
	return &specs.Spec{Annotations: ann, Process: &specs.Process{Env: env}}
}

func TestParseRequest(t *testing.T) {
	uuid := "GPU-db9de900-04b3-41c1-1ece-f110c6b9f453"
	tests := []struct {
		name    string
		spec    *specs.Spec
		want    *Request
		wantErr string // substring; "" means no error
	}{
		{"nil spec", nil, nil, ""},
		{"nothing", specWith(nil, "PATH=/bin"), nil, ""},
		{"count", specWith(map[string]string{AnnotationCount: "2"}),
			&Request{Count: 2, Source: "annotation gpu.cci.io/count"}, ""},
		{"count with model and driver", specWith(map[string]string{AnnotationCount: "1", AnnotationModel: "V100 32GB", AnnotationDriverVersion: "418.126"}),
			&Request{Count: 1, Model: "V100 32GB", DriverVersion: "418.126", Source: "annotation gpu.cci.io/count"}, ""},
		{"count zero wins over env", specWith(map[string]string{AnnotationCount: "0"}, "NVIDIA_VISIBLE_DEVICES=all"), nil, ""},
		{"count wins over cdi", specWith(map[string]string{AnnotationCount: "1", "cdi.k8s.io/gpu": "nvidia.com/gpu=all"}),
			&Request{Count: 1, Source: "annotation gpu.cci.io/count"}, ""},
		{"count not a number", specWith(map[string]string{AnnotationCount: "two"}), nil, `gpu.cci.io/count "two" is not a valid GPU count; allowed: a whole number from 0 to 16`},
		{"count negative", specWith(map[string]string{AnnotationCount: "-1"}), nil, "allowed: a whole number from 0 to 16"},
		{"count too big", specWith(map[string]string{AnnotationCount: "17"}), nil, "allowed: a whole number from 0 to 16"},
		{"bad driver", specWith(map[string]string{AnnotationCount: "1", AnnotationDriverVersion: "latest"}), nil, `gpu.cci.io/driver-version "latest" is not a driver version`},
		{"bad model", specWith(map[string]string{AnnotationCount: "1", AnnotationModel: "T4;rm"}), nil, `gpu.cci.io/model "T4;rm" is not a model name`},
		{"model without gpus", specWith(map[string]string{AnnotationModel: "T4"}), nil, "is set but the pod asks for no GPU"},
		{"env all", specWith(nil, "NVIDIA_VISIBLE_DEVICES=all"), &Request{All: true, Source: "env NVIDIA_VISIBLE_DEVICES"}, ""},
		{"env none", specWith(nil, "NVIDIA_VISIBLE_DEVICES=none"), nil, ""},
		{"env void", specWith(nil, "NVIDIA_VISIBLE_DEVICES=void"), nil, ""},
		{"env empty", specWith(nil, "NVIDIA_VISIBLE_DEVICES="), nil, ""},
		{"env first occurrence wins", specWith(nil, "NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_VISIBLE_DEVICES=all"), nil, ""},
		{"env indexes and uuid", specWith(nil, "NVIDIA_VISIBLE_DEVICES=0, 2,"+uuid+",2"),
			&Request{IDs: []string{"0", "2", uuid}, Source: "env NVIDIA_VISIBLE_DEVICES"}, ""},
		{"env with model", specWith(map[string]string{AnnotationModel: "T4"}, "NVIDIA_VISIBLE_DEVICES=1"),
			&Request{IDs: []string{"1"}, Model: "T4", Source: "env NVIDIA_VISIBLE_DEVICES"}, ""},
		{"env mig refused", specWith(nil, "NVIDIA_VISIBLE_DEVICES=MIG-1234"), nil, `env NVIDIA_VISIBLE_DEVICES "MIG-1234" does not name whole GPUs`},
		{"env all mixed", specWith(nil, "NVIDIA_VISIBLE_DEVICES=all,0"), nil, `mixes "all" with single GPUs`},
		{"cdi wins over env", specWith(map[string]string{"cdi.k8s.io/gpu": "nvidia.com/gpu=1"}, "NVIDIA_VISIBLE_DEVICES=all"),
			&Request{IDs: []string{"1"}, Source: "annotation cdi.k8s.io/gpu"}, ""},
		{"cdi several keys and vendors", specWith(map[string]string{
			"cdi.k8s.io/a": "vendor.com/net=eth0,nvidia.com/gpu=0", "cdi.k8s.io/b": "nvidia.com/gpu=" + uuid}),
			&Request{IDs: []string{"0", uuid}, Source: "annotation cdi.k8s.io/a, cdi.k8s.io/b"}, ""},
		{"cdi all", specWith(map[string]string{"cdi.k8s.io/gpu": "nvidia.com/gpu=all"}), &Request{All: true, Source: "annotation cdi.k8s.io/gpu"}, ""},
		{"cdi vfio keys are ours, not requests", specWith(map[string]string{"cdi.k8s.io/vfio12": "nvidia.com/gpu=0"}), nil, ""},
		{"cdi other vendor only", specWith(map[string]string{"cdi.k8s.io/x": "vendor.com/dev=a"}), nil, ""},
		{"cdi mig refused", specWith(map[string]string{"cdi.k8s.io/gpu": "nvidia.com/gpu=0:1"}), nil, `"0:1" does not name whole GPUs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidRequest) {
					t.Errorf("err %v is not ErrInvalidRequest", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestModelMatches(t *testing.T) {
	tests := []struct {
		want, have string
		ok         bool
	}{
		{"T4", "Tesla T4", true},
		{"t4", "Tesla T4", true},
		{"P4", "Tesla P40", false},
		{"P4", "Tesla P4", true},
		{"V100", "Tesla V100-SXM2-16GB", true},
		{"V100 16GB", "Tesla V100-SXM2-16GB", true},
		{"V100-32GB", "Tesla V100-SXM2-16GB", false},
		{"V100 32GB", "Tesla V100-PCIE-32GB", true},
		{"", "Tesla T4", false},
	}
	for _, tt := range tests {
		if got := ModelMatches(tt.want, tt.have); got != tt.ok {
			t.Errorf("ModelMatches(%q, %q) = %v, want %v", tt.want, tt.have, got, tt.ok)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add("1", "T4", "418.126", "all", "nvidia.com/gpu=0")
	f.Add("", "", "", "0,GPU-12345678-aaaa", "")
	f.Fuzz(func(t *testing.T, count, model, driver, env, cdi string) {
		ann := map[string]string{}
		for k, v := range map[string]string{AnnotationCount: count, AnnotationModel: model, AnnotationDriverVersion: driver, "cdi.k8s.io/gpu": cdi} {
			if v != "" {
				ann[k] = v
			}
		}
		req, err := ParseRequest(specWith(ann, EnvVisibleDevices+"="+env))
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v is not ErrInvalidRequest", err)
			}
			return
		}
		if req == nil {
			return
		}
		n := 0
		if req.Count > 0 {
			n++
		}
		if req.All {
			n++
		}
		if len(req.IDs) > 0 {
			n++
		}
		if n != 1 || req.Count > MaxGPUsPerPod || len(req.IDs) > MaxGPUsPerPod {
			t.Fatalf("inconsistent request %+v", req)
		}
	})
}
