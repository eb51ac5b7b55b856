//! Gives the shared library an ELF SONAME, so that hosts link against an ABI version rather
//! than a bare file name: `libdebias_guard.so.0.1` while the crate is 0.x (each minor release may
//! break the C ABI), `libdebias_guard.so.N` from 1.0 on.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "android" && !os.ends_with("bsd") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdebias_guard.so.{abi}");
}
