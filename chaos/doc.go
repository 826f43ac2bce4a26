// Package chaos holds tmwarden's chaos tests: a real coordinator binary killed with SIGKILL in
// the middle of decisions, taken away from a thousand agents, and cut off from its fleet. They
// build with the chaos tag and run with `make chaos`, not `make test`, because they take minutes.
//
// The fourth case, the S3 upstream killed under the state cache gateway, is
// localstate.TestUpstreamOutage: it runs in `make test` and `make chaos` runs it again.
package chaos
