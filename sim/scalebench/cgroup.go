package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// hierarchy is one place where a cgroup controller can be used: cgroup v2's unified hierarchy,
// or cgroup v1's own hierarchy for that controller. file is the controller's setting this bench
// writes there (its v2 or its v1 name).
type hierarchy struct {
	root, file string
	v2         bool
}

// hierarchies lists where controller can be used, cgroup v2 first (it is what current systems
// run), then v1; errs says why each one left out cannot be used. A v2 hierarchy counts only
// when it delegates the controller to its children: a mounted v2 without controllers, as on
// hosts whose controllers are all on v1, cannot limit anything.
func hierarchies(controller, v2File, v1File string) (hs []hierarchy, errs []error) {
	const root = "/sys/fs/cgroup"
	if b, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); err == nil && slices.Contains(strings.Fields(string(b)), controller) {
		hs = append(hs, hierarchy{root: root, file: v2File, v2: true})
	} else {
		errs = append(errs, fmt.Errorf("cgroup v2: the %s controller is not enabled for children of %s", controller, root))
	}
	v1 := filepath.Join(root, controller)
	if _, err := os.Stat(filepath.Join(v1, v1File)); err == nil {
		hs = append(hs, hierarchy{root: v1, file: v1File})
	} else {
		errs = append(errs, fmt.Errorf("cgroup v1: no %s controller at %s: %w", controller, v1, err))
	}
	return hs, errs
}
