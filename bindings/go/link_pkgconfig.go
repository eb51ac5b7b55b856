//go:build !dg_checkout

package debiasguard

// The default build links the installed library (`make install PREFIX=...`) and finds its
// header through pkg-config (debias-guard.pc); set PKG_CONFIG_PATH when the prefix is not a
// standard one. Nothing of the build machine's paths ends up in the binary.

// #cgo pkg-config: debias-guard
import "C"
