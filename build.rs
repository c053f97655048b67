//! Places the functions that start-up and the request path execute next to each other in the
//! release binary (a linker symbol-ordering file, `src/function-order.txt`, written by
//! `scripts/order-functions.sh`).
//!
//! Why: the kernel maps a binary's code in 64 KiB windows around each page it faults in, so
//! with the compiler's own layout the few megabytes of code that run are spread over nearly all
//! of the 14 MB of text, and nearly all of it becomes resident. Grouped, only the code that runs
//! (and its windows) is. Names missing from the file, or in it but no longer in the binary, only
//! cost that grouping, never correctness; so the file may lag behind the code.

fn main() {
    println!("cargo:rerun-if-changed=src/function-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    // rust-lld is the default linker on this target since Rust 1.90, and it (like mold) takes
    // `--symbol-ordering-file`; other targets link with the system's linker, which may not.
    if release && target == "x86_64-unknown-linux-gnu" && default_linker() {
        let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("src/function-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            order.display()
        );
        // The loader applies 52,000 relative relocations at start, reading 1.3 MB of RELA
        // entries that then stay resident; packed (RELR) they take a few KiB. glibc reads RELR
        // from 2.36 (Debian 12, the image's base), so only when the build's own glibc has it:
        // the binary then names the GLIBC_ABI_DT_RELR version, and an older glibc refuses to
        // start it with that name rather than misbehaving.
        if std::env::var("HOST").as_deref() == Ok(target.as_str()) && host_glibc_has_relr() {
            println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        }
    }
}

/// Whether the build links with the toolchain's own choice: a linker set in Cargo's config
/// (`RUSTC_LINKER`) or in the flags may be GNU ld, which refuses the options above, so the
/// layout is then left to it.
fn default_linker() -> bool {
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    !flags
        .split('\x1f')
        .any(|flag| flag.contains("linker") || flag.contains("fuse-ld"))
}

/// Whether `getconf GNU_LIBC_VERSION` names glibc 2.36 or later.
fn host_glibc_has_relr() -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
