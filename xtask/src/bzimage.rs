//! Writing a bzImage: setup sectors with a Linux setup header, then the
//! protected-mode part. Shared by the test kernel and the bench's probe kernel.

/// The setup-header fields the generated kernels set (Documentation/arch/x86/boot.rst).
#[derive(Clone, Debug)]
pub struct Header {
    pub setup_sects: u8,
    pub magic: [u8; 4],
    pub version: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub relocatable: bool,
    pub kernel_alignment: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub cmdline_size: u32,
    pub initrd_addr_max: u32,
    pub handover_offset: u32,
    /// Where the jump at 0x200 goes, which also ends the header (0x202 + byte 0x201).
    pub header_end: usize,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            setup_sects: 4,
            magic: *b"HdrS",
            version: 0x020F,
            loadflags: 0x01,         // LOADED_HIGH
            xloadflags: 0x01 | 0x02, // KERNEL_64, CAN_BE_LOADED_ABOVE_4G
            relocatable: false,
            kernel_alignment: 0x20_0000,
            pref_address: 0x100_0000,
            init_size: 0,
            cmdline_size: 2047,
            initrd_addr_max: 0x7FFF_FFFF,
            handover_offset: 0,
            header_end: 0x26C,
        }
    }
}

impl Header {
    /// Bytes of the setup sectors.
    pub fn setup_len(&self) -> usize {
        (self.setup_sects as usize + 1) * 512
    }

    /// The whole image: setup sectors (with `setup_code` placed at its offsets)
    /// followed by `pm`.
    pub fn image(&self, setup_code: &[(usize, &[u8])], pm: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; self.setup_len()];
        for (at, code) in setup_code {
            img[*at..*at + code.len()].copy_from_slice(code);
        }
        img.extend_from_slice(pm);
        let put16 =
            |img: &mut Vec<u8>, o: usize, v: u16| img[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |img: &mut Vec<u8>, o: usize, v: u32| img[o..o + 4].copy_from_slice(&v.to_le_bytes());
        img[0x1F1] = self.setup_sects;
        put32(&mut img, 0x1F4, pm.len().div_ceil(16) as u32); // syssize
        put16(&mut img, 0x1FE, 0xAA55);
        img[0x200] = 0xEB; // jmp short
        img[0x201] = (self.header_end - 0x202) as u8;
        img[0x202..0x206].copy_from_slice(&self.magic);
        put16(&mut img, 0x206, self.version);
        img[0x211] = self.loadflags;
        put32(&mut img, 0x214, 0x10_0000); // code32_start
        put32(&mut img, 0x22C, self.initrd_addr_max);
        put32(&mut img, 0x230, self.kernel_alignment);
        img[0x234] = self.relocatable as u8;
        img[0x235] = 21; // min_alignment: 2 MiB
        put16(&mut img, 0x236, self.xloadflags);
        put32(&mut img, 0x238, self.cmdline_size);
        img[0x258..0x260].copy_from_slice(&self.pref_address.to_le_bytes());
        put32(&mut img, 0x260, self.init_size);
        put32(&mut img, 0x264, self.handover_offset);
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_land_at_their_offsets() {
        let h = Header {
            version: 0x0204,
            cmdline_size: 255,
            init_size: 0x2000_0000,
            handover_offset: 0x190,
            ..Header::default()
        };
        let img = h.image(&[(0x280, &[0xB0, 0x11])], &[0x90; 0x300]);
        assert_eq!(&img[0x202..0x206], b"HdrS");
        assert_eq!(u16::from_le_bytes([img[0x206], img[0x207]]), 0x0204);
        assert_eq!(u16::from_le_bytes([img[0x1FE], img[0x1FF]]), 0xAA55);
        assert_eq!(0x202 + img[0x201] as usize, 0x26C);
        assert_eq!(&img[0x238..0x23C], &255u32.to_le_bytes());
        assert_eq!(&img[0x260..0x264], &0x2000_0000u32.to_le_bytes());
        assert_eq!(&img[0x264..0x268], &0x190u32.to_le_bytes());
        assert_eq!(&img[0x258..0x260], &0x100_0000u64.to_le_bytes());
        assert_eq!(&img[0x1F4..0x1F8], &0x30u32.to_le_bytes());
        assert_eq!(img[0x281], 0x11);
        assert_eq!(img.len(), 5 * 512 + 0x300);
        assert_eq!(img[5 * 512], 0x90);
    }
}
