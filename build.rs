//! Build script. The IPVS bindings (`linux/ip_vs.h` through bindgen) arrive with the netlink
//! client; until then the dry-run side needs nothing generated.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
