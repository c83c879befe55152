//! QEMU's `setup_data` list (e.g. the `-dtb` blob): found inside the kernel image
//! QEMU hands over, and moved out of it before the kernel decompresses over it.
//!
//! QEMU appends each node to KERNEL_DATA (the protected-mode part) and points
//! `hdr.setup_data` at `KERNEL_ADDR + offset` (hw/i386/x86.c, `x86_load_linux`,
//! QEMU 7.2). Other versions have been reported to count the offset from the start
//! of the whole file (setup sectors included), so that reading is tried second. A
//! node is accepted only with a known type and wholly inside the blob.

use crate::bootparams::SetupData;
use crate::error::Error;

/// Nodes ferrite follows before calling the list a loop.
pub const MAX_NODES: usize = 8;
const HEAD: usize = core::mem::size_of::<SetupData>();
/// Flag on an indirect node's type (protocol 2.15).
const SETUP_INDIRECT: u32 = 1 << 31;

/// One node, as a byte range of the kernel blob (header and payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Node {
    pub offset: usize,
    pub len: usize,
    pub typ: u32,
}

/// Finds the nodes of the list starting at `first` inside `kernel` (KERNEL_DATA as
/// loaded), given QEMU's `KERNEL_ADDR` and `SETUP_SIZE`. Returns how many were found.
pub fn locate(
    first: u64,
    kernel_addr: u64,
    setup_size: u64,
    kernel: &[u8],
    out: &mut [Node; MAX_NODES],
) -> Result<usize, Error> {
    let mut ptr = first;
    let mut n = 0;
    while ptr != 0 {
        if n == MAX_NODES {
            return Err(Error::SetupData("more than 8 nodes, or a loop"));
        }
        let base = ptr
            .checked_sub(kernel_addr)
            .ok_or(Error::SetupData("a node lies outside the kernel image"))?;
        let node = [Some(base), base.checked_sub(setup_size)]
            .into_iter()
            .flatten()
            .find_map(|off| node_at(kernel, off))
            .ok_or(Error::SetupData("a node lies outside the kernel image"))?;
        out[n] = node;
        n += 1;
        ptr = u64::from_le_bytes(kernel[node.offset..node.offset + 8].try_into().unwrap());
    }
    Ok(n)
}

fn node_at(kernel: &[u8], offset: u64) -> Option<Node> {
    let offset = usize::try_from(offset).ok()?;
    let head = kernel.get(offset..offset.checked_add(HEAD)?)?;
    let typ = u32::from_le_bytes(head[8..12].try_into().unwrap());
    let len = u32::from_le_bytes(head[12..16].try_into().unwrap()) as usize;
    // SETUP_NONE (0) or a type beyond any Linux defines: not a node.
    if typ & !SETUP_INDIRECT == 0 || typ & !SETUP_INDIRECT > 0xFF {
        return None;
    }
    let total = HEAD.checked_add(len)?;
    kernel.get(offset..offset.checked_add(total)?)?;
    Some(Node {
        offset,
        len: total,
        typ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const KADDR: u64 = 0x10_0000;
    const SETUP: u64 = 0x4000;

    fn blob_with_node(at: usize, next: u64, payload: &[u8]) -> Vec<u8> {
        let mut k = vec![0xEEu8; at];
        k.extend_from_slice(&next.to_le_bytes());
        k.extend_from_slice(&2u32.to_le_bytes());
        k.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        k.extend_from_slice(payload);
        k
    }

    /// The node `blob_with_node(0x1000, 0, b"dtb!")` holds: its 16-byte
    /// header and the 4-byte payload.
    const DTB_NODE: Node = Node {
        offset: 0x1000,
        len: 20,
        typ: 2,
    };

    #[test]
    fn finds_qemus_dtb_node() {
        // QEMU 7.2: pointer = KERNEL_ADDR + offset within KERNEL_DATA
        let k = blob_with_node(0x1000, 0, b"dtb!");
        let mut out = [Node::default(); MAX_NODES];
        assert_eq!(locate(KADDR + 0x1000, KADDR, SETUP, &k, &mut out), Ok(1));
        assert_eq!(out[0], DTB_NODE);
    }

    #[test]
    fn zeros_at_the_first_reading_are_not_a_node() {
        // the node sits at the whole-file reading; zeros at the pointer itself
        let mut k = blob_with_node(0x1000, 0, b"dtb!");
        k.resize(0x1000 + SETUP as usize + 64, 0);
        let ptr = KADDR + SETUP + 0x1000;
        let mut out = [Node::default(); MAX_NODES];
        assert_eq!(locate(ptr, KADDR, SETUP, &k, &mut out), Ok(1));
        assert_eq!(out[0], DTB_NODE);
    }

    #[test]
    fn also_accepts_pointers_relative_to_the_blob() {
        let k = blob_with_node(0x100, 0, b"x");
        let mut out = [Node::default(); MAX_NODES];
        assert_eq!(locate(KADDR + 0x100, KADDR, 0x8000, &k, &mut out), Ok(1));
        assert_eq!(out[0].offset, 0x100);
    }

    #[test]
    fn empty_list() {
        let mut out = [Node::default(); MAX_NODES];
        assert_eq!(locate(0, KADDR, SETUP, &[], &mut out), Ok(0));
    }

    #[test]
    fn hostile_lists_are_rejected() {
        let mut out = [Node::default(); MAX_NODES];
        // pointer below the kernel
        assert!(locate(0x1000, KADDR, SETUP, &[0; 64], &mut out).is_err());
        // length running past the blob
        let mut k = blob_with_node(0x10, 0, b"abc");
        k.truncate(k.len() - 1);
        assert!(locate(KADDR + 0x10, KADDR, 0x4000, &k, &mut out).is_err());
        // a loop
        let k = blob_with_node(0x10, KADDR + 0x10, b"abc");
        assert!(locate(KADDR + 0x10, KADDR, 0x4000, &k, &mut out).is_err());
        // huge length
        let mut k = blob_with_node(0x10, 0, b"");
        k[0x10 + 12..0x10 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(locate(KADDR + 0x10, KADDR, 0x4000, &k, &mut out).is_err());
    }
}
