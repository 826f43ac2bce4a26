// Package deploytest runs the real tmwarden binaries the way the packages ship them: under the
// capability set and user of the rendered Helm chart or the systemd unit, read from those files,
// against processes that stand in for Flink TaskManagers. It has no code of its own besides the
// tests and their harness.
package deploytest
