//! Links the firmware with linker.ld and gives the ROM size one definition.

/// Size of the ROM image. A multiple of 64 KiB (QEMU's requirement).
const ROM_SIZE: u64 = 128 * 1024;

/// The addresses from the start of ferrite's RAM (0x10000) that its code and
/// read-only data take: mapped onto their copy in the ROM by the page tables,
/// run and read in place there, never copied to RAM. A multiple of 4 KiB.
const CODE_WINDOW: u64 = 96 * 1024;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../linker.ld");
    println!("cargo:rerun-if-changed=src/asm/boot.s");
    println!("cargo:rerun-if-changed=src/asm/handoff.s");
    println!("cargo:rustc-env=FERRITE_ROM_SIZE={ROM_SIZE}");
    println!("cargo:rustc-env=FERRITE_CODE_WINDOW={CODE_WINDOW}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=--defsym=ROM_SIZE={ROM_SIZE}");
        println!("cargo:rustc-link-arg-bins=--defsym=CODE_WINDOW={CODE_WINDOW}");
        println!("cargo:rustc-link-arg-bins=-T{dir}/../linker.ld");
        println!("cargo:rustc-link-arg-bins=--orphan-handling=error");
    }
}
