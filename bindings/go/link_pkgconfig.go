//go:build dg_pkgconfig

package debiasguard

// Links the installed library (`make install`), found through debias-guard.pc.

// #cgo pkg-config: debias-guard
import "C"
