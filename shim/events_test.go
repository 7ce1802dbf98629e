package shim

import (
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
)

// containerOf names the container of every task event that has one.
func TestContainerOf(t *testing.T) {
	for _, tc := range []struct {
		evt  any
		want string
	}{
		{&eventstypes.TaskCreate{ContainerID: "a"}, "a"},
		{&eventstypes.TaskExit{ContainerID: "b", ID: "exec1"}, "b"},
		{&eventstypes.TaskExecStarted{ContainerID: "c", ExecID: "e"}, "c"},
		{&eventstypes.TaskCheckpointed{ContainerID: "d"}, "d"},
		{&eventstypes.TaskIO{Stdout: "/x"}, ""},
		{&eventstypes.ContainerCreate{ID: "e"}, ""},
		{nil, ""},
	} {
		if got := containerOf(tc.evt); got != tc.want {
			t.Errorf("containerOf(%T) = %q, want %q", tc.evt, got, tc.want)
		}
	}
}
