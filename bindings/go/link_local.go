//go:build !dg_pkgconfig

package debiasguard

// In a checkout of the repository, link the library built by `cargo build --release`.
// Build with `-tags dg_pkgconfig` to link an installed copy found by pkg-config instead.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -ldebias_guard -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
