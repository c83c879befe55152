//! The port-write scripts the S3 resume path replays (`ferrite::s3`), in the
//! ROM: the resume path must not read the RAM image (the OS's memory by then).
//! asm/boot.s refers to them by symbol.

use ferrite::chipset::Machine;
use ferrite::s3::{self, Script};

#[used]
#[unsafe(link_section = ".rom.resume")]
pub static PC_SCRIPT: Script = s3::script(Machine::I440fx);
#[used]
#[unsafe(link_section = ".rom.resume")]
pub static Q35_SCRIPT: Script = s3::script(Machine::Q35);
