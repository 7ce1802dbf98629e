package podmetrics

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      map[string]string
		want    Config
		wantErr string // substring; "" means no error
	}{
		{name: "none", in: nil, want: Config{Enabled: true, Port: 19100}},
		{name: "other annotations", in: map[string]string{"shm.cci.io/size": "1Gi"}, want: Config{Enabled: true, Port: 19100}},
		{name: "enabled", in: map[string]string{AnnotationEnable: "true"}, want: Config{Enabled: true, Port: 19100}},
		{name: "disabled", in: map[string]string{AnnotationEnable: "false"}, want: Config{Enabled: false, Port: 19100}},
		{name: "moved", in: map[string]string{AnnotationPort: "9100"}, want: Config{Enabled: true, Port: 9100}},
		{name: "lowest", in: map[string]string{AnnotationPort: "1024"}, want: Config{Enabled: true, Port: 1024}},
		{name: "highest", in: map[string]string{AnnotationPort: "65535"}, want: Config{Enabled: true, Port: 65535}},
		{name: "disabled and moved", in: map[string]string{AnnotationEnable: "false", AnnotationPort: "20000"}, want: Config{Enabled: false, Port: 20000}},
		{name: "False", in: map[string]string{AnnotationEnable: "False"}, wantErr: `annotation monitoring.cci.io/enable-pod-metrics "False" is not allowed; allowed: "true" or "false"`},
		{name: "empty enable", in: map[string]string{AnnotationEnable: ""}, wantErr: `enable-pod-metrics "" is not allowed`},
		{name: "no", in: map[string]string{AnnotationEnable: "no"}, wantErr: `"no" is not allowed`},
		{name: "privileged port", in: map[string]string{AnnotationPort: "80"}, wantErr: `annotation monitoring.cci.io/metrics-port "80" is not allowed (below 1024: privileged ports are the containers'); allowed: a decimal TCP port from 1024 to 65535`},
		{name: "1023", in: map[string]string{AnnotationPort: "1023"}, wantErr: "below 1024"},
		{name: "65536", in: map[string]string{AnnotationPort: "65536"}, wantErr: "above 65535"},
		{name: "zero", in: map[string]string{AnnotationPort: "0"}, wantErr: "leading zero"},
		{name: "leading zero", in: map[string]string{AnnotationPort: "09100"}, wantErr: "leading zero"},
		{name: "sign", in: map[string]string{AnnotationPort: "+9100"}, wantErr: "not a decimal number"},
		{name: "negative", in: map[string]string{AnnotationPort: "-1"}, wantErr: "not a decimal number"},
		{name: "space", in: map[string]string{AnnotationPort: " 9100"}, wantErr: "not a decimal number"},
		{name: "name", in: map[string]string{AnnotationPort: "http"}, wantErr: "not a decimal number"},
		{name: "empty port", in: map[string]string{AnnotationPort: ""}, wantErr: "not a decimal number"},
		{name: "huge", in: map[string]string{AnnotationPort: "99999999999999999999"}, wantErr: "not a decimal number"},
		{name: "bad port while disabled", in: map[string]string{AnnotationEnable: "false", AnnotationPort: "22"}, wantErr: "below 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnotations(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseAnnotations = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseAnnotations error = %v; want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v does not unwrap to ErrInvalidArgument", err)
			}
		})
	}
}

func TestCheckPorts(t *testing.T) {
	ports := []ContainerPort{
		{Container: "web", Port: 8080, Protocol: "TCP"},
		{Container: "dns", Port: 9153, Protocol: "UDP"},
		{Port: 9300},
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		ports   []ContainerPort
		wantErr string
	}{
		{name: "no ports", cfg: DefaultConfig()},
		{name: "other ports", cfg: DefaultConfig(), ports: ports},
		{name: "moved onto a udp port", cfg: Config{Enabled: true, Port: 9153}, ports: ports},
		{name: "moved onto a tcp port", cfg: Config{Enabled: true, Port: 8080}, ports: ports,
			wantErr: `annotation monitoring.cci.io/metrics-port "8080" is not allowed (container "web" declares TCP port 8080)`},
		{name: "moved onto an unnamed port", cfg: Config{Enabled: true, Port: 9300}, ports: ports,
			wantErr: `(a container of the pod declares TCP port 9300)`},
		{name: "default port declared", cfg: DefaultConfig(), ports: []ContainerPort{{Container: "exporter", Port: 19100, Protocol: "TCP"}},
			wantErr: `containers[].ports[].containerPort "19100" is not allowed (container "exporter" declares it; TCP port 19100 is the pod metrics endpoint's); allowed: any other port, or move the endpoint with annotation monitoring.cci.io/metrics-port, or turn it off with monitoring.cci.io/enable-pod-metrics: "false"`},
		{name: "lower-case protocol", cfg: DefaultConfig(), ports: []ContainerPort{{Port: 19100, Protocol: "tcp"}}, wantErr: "19100"},
		{name: "default port on udp", cfg: DefaultConfig(), ports: []ContainerPort{{Port: 19100, Protocol: "UDP"}}},
		{name: "default port on sctp", cfg: DefaultConfig(), ports: []ContainerPort{{Port: 19100, Protocol: "SCTP"}}},
		{name: "disabled", cfg: Config{Enabled: false, Port: 19100}, ports: []ContainerPort{{Port: 19100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.CheckPorts(tc.ports)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckPorts = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckPorts error = %v; want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v does not unwrap to ErrInvalidArgument", err)
			}
		})
	}
}

// FuzzParseAnnotations: never panics; what it accepts is in range and is
// the canonical decimal spelling of the value given.
func FuzzParseAnnotations(f *testing.F) {
	f.Add("true", "19100")
	f.Add("false", "1024")
	f.Add("False", "+80")
	f.Add("", "0x50")
	f.Fuzz(func(t *testing.T, enable, port string) {
		cfg, err := ParseAnnotations(map[string]string{AnnotationEnable: enable, AnnotationPort: port})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Allowed == "" || pe.Field == "" {
				t.Fatalf("error %v is not a complete *Error", err)
			}
			return
		}
		if enable != "true" && enable != "false" {
			t.Fatalf("accepted enable %q", enable)
		}
		if cfg.Enabled != (enable == "true") {
			t.Fatalf("enable %q gave Enabled=%v", enable, cfg.Enabled)
		}
		if cfg.Port < MinPort || cfg.Port > MaxPort || strconv.Itoa(cfg.Port) != port {
			t.Fatalf("port %q gave %d", port, cfg.Port)
		}
	})
}
