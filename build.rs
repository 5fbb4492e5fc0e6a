//! Stops a build for an unsupported OS with one clear sentence, before a
//! dependency fails to compile there.

include!("build/platform.rs");

fn main() {
    println!("cargo:rerun-if-changed=build/platform.rs");
    // Lets the release check prove the message without another OS's
    // toolchain: `FERROLOOP_FAKE_TARGET_OS=macos pip wheel ferroloop-*.tar.gz`.
    println!("cargo:rerun-if-env-changed=FERROLOOP_FAKE_TARGET_OS");
    let target_os = std::env::var("FERROLOOP_FAKE_TARGET_OS")
        .or_else(|_| std::env::var("CARGO_CFG_TARGET_OS"))
        .unwrap_or_default();
    if let Err(sentence) = check_target_os(&target_os) {
        eprintln!("error: {sentence}");
        std::process::exit(1);
    }
}
