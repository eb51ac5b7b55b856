//go:build dg_checkout

package debiasguard

// Inside a checkout of the repository (`-tags dg_checkout`): link the library that
// `make ffi-lib` builds in target/release, found at run time through an rpath. Used by the
// repository's own tests; programs that ship should use the default (pkg-config) build.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -ldebias_guard -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
