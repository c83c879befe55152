//! ferrite's boot logic, kept free of hardware access so that it is tested on the
//! host: spec structures, fw_cfg, the memory map, kernel placement and the ACPI
//! table loader. The firmware binary (`main.rs`) adds the CPU and port I/O.
#![cfg_attr(not(test), no_std)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod board;
pub mod boot;
pub mod bootparams;
pub mod chipset;
pub mod config;
pub mod e820;
pub mod error;
#[cfg(test)]
mod faults;
#[cfg(test)]
mod fuzz;
pub mod fwcfg;
pub mod heap;
pub mod io;
pub mod linux;
pub mod mem;
pub mod mptable;
pub mod mtrr;
pub mod multiboot;
pub mod on_error;
pub mod pci;
pub mod pvh;
pub mod s3;
pub mod setup_data;
pub mod smbios;
#[cfg(test)]
mod test_support;
