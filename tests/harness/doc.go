// Package harness starts the real parts Passerelle's end-to-end tests run against: a
// Dendrite homeserver built from the pinned tests/tools module, the passerelle binary
// itself, throwaway PostgreSQL databases, and Matrix test users whose /sync streams are
// recorded so tests can wait for what they expect to see.
//
// It is an ordinary package so several test packages can share it, but only tests
// import it. Everything here is slow and real: a first run builds Dendrite (a few
// minutes) into a cache directory that later runs reuse.
//
// A typical test:
//
//	binDir, err := harness.BuildDendrite(ctx)
//	hs, err := harness.StartDendrite(ctx, t.TempDir(), []string{regPath})
//	defer hs.Stop()
//	alice, err := hs.RegisterUser(ctx, "alice", false)
//	defer alice.Close()
//	roomID, err := alice.WaitInvite(ctx, nil)
//
// The package keeps no mutable package-level state; build results are cached on disk,
// guarded by a file lock so parallel test binaries do not build twice.
package harness
