//! Finds libnetfilter_queue and libmnl with pkg-config and generates their bindings with bindgen,
//! allow-listing only the message API geofence-nfq uses.
//!
//! On docs.rs (`DOCS_RS` set), where neither library is installed and nothing is linked, the
//! bindings come from `docs-rs-bindings.rs`, a copy of what this script generates; a unit test
//! (`sys::tests`) fails when the copy falls behind.

use std::env;
use std::path::PathBuf;

const PACKAGES: &str = "libnetfilter-queue-dev, libmnl-dev, libclang-dev and pkg-config";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    if env::var_os("DOCS_RS").is_some() {
        std::fs::copy("docs-rs-bindings.rs", out.join("bindings.rs")).expect("docs-rs-bindings.rs is in the package");
        return;
    }
    let mut include_paths = Vec::new();
    for library in ["libnetfilter_queue", "libmnl"] {
        match pkg_config::Config::new().probe(library) {
            Ok(found) => include_paths.extend(found.include_paths),
            Err(error) => fail(&format!("pkg-config cannot find {library} ({error})")),
        }
    }
    // bindgen panics, rather than erring, when it cannot load libclang.
    if std::panic::catch_unwind(bindgen::clang_version).is_err() {
        fail("bindgen cannot load libclang");
    }
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(include_paths.iter().map(|path| format!("-I{}", path.display())))
        .allowlist_function("nfq_nlmsg_.*")
        .allowlist_function("mnl_socket_(open2|bind|close|get_fd|sendto)")
        .allowlist_function("mnl_attr_put_u32")
        .allowlist_var(
            "NFQA_CFG_F_.*|NLM_F_(REQUEST|ACK)|NLMSG_ERROR|NF_ACCEPT|NF_DROP|NETLINK_NETFILTER|MNL_SOCKET_AUTOPID",
        )
        .allowlist_type(
            "nlmsghdr|nfqnl_attr_type|nfqnl_attr_config|nfqnl_msg_types|nfqnl_config_mode|nfqnl_msg_config_cmds",
        )
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|error| fail(&format!("bindgen failed on wrapper.h ({error})")));
    bindings.write_to_file(out.join("bindings.rs")).expect("OUT_DIR is writable");
}

fn fail(what: &str) -> ! {
    eprintln!("error: {what}: install the Debian packages {PACKAGES} (scripts/install-deps does)");
    std::process::exit(1);
}
