# From the reset vector to Rust: real mode -> protected mode -> long mode, using
# the identity map that sits in the ROM, then copy the RAM image out of the ROM,
# clear .bss, set the stack and call rust_main. Constants come from Rust (boot.rs).
#
# A wake-up from S3 also starts here. It leaves at protected mode for s3_resume
# (below), which touches nothing of RAM but the EBDA: the RAM image's place
# belongs to the sleeping OS.

.section .reset, "ax"
.code16
.globl reset_vector
reset_vector:
    jmp rom16_start             # a near jump inside the ROM's top 64 KiB segment
    .balign 16, 0xf4

.section .rom.text, "ax"
.code16
rom16_start:
    cli
    cld
    # Boot marker: tQEMU ends here (isa-debug-exit on this port ends QEMU).
    mov ${marker_value}, %al
    out %al, ${marker_port}
    rdtsc                       # the timeline's first stamp, kept in ebp:ebx
    mov %eax, %ebx
    mov %edx, %ebp
    # The CMOS shutdown status, kept in cl: QEMU's RTC sets "S3 resume" before
    # the wake-up's reset. One port write and one read on every boot.
    mov ${cmos_shutdown_status}, %al
    out %al, ${cmos_index}
    in ${cmos_data}, %al
    mov %al, %cl
    lgdtl %cs:(gdt_ptr - 0xffff0000)
    mov %cr0, %eax
    and ${cr0_clear}, %eax      # caches on (CD, NW clear)
    or ${cr0_pe}, %eax
    mov %eax, %cr0
    ljmpl ${code32}, $rom32_start

.code32
rom32_start:
    # No data segment loads on the way to long mode: this code touches no
    # memory, and long mode ignores the data segments' bases and limits. Under
    # TCG each load of DS, ES or SS ends a translation block. The S3 path, which
    # reads memory in this mode, loads them itself.
    xor %esi, %esi              # no failed wake-up (s3_fail sets one)
    cmp ${s3_status}, %cl
    je s3_resume
cold_boot:
    mov ${page_tables}, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or ${cr4_pae}, %eax
    mov %eax, %cr4
    mov ${efer_msr}, %ecx
    rdmsr
    or ${efer_lme}, %eax
    wrmsr
    mov %cr0, %eax
    or ${cr0_pg}, %eax
    mov %eax, %cr0
    ljmpl ${code64}, $rom64_start

.code64
rom64_start:
    lidt idt_ptr(%rip)          # exceptions now report instead of triple-faulting
    mov %esi, %r12d             # the failed wake-up's reason, if any
    mov $ram_image_lma, %esi
    mov $ram_image_start, %edi
    mov $ram_image_qwords, %ecx
    rep movsq
    # Clear .bss: one fw_cfg DMA read of the item QEMU does not have
    # (fwcfg::ABSENT), which it answers by filling the destination with
    # zeros, where under TCG a rep stosq runs a translated block per 8 bytes.
    # The descriptor (big-endian) sits at the top of the stack, not in use
    # yet, below 4 GiB; QEMU clears its control word before the port write
    # returns. Left as it was (no fw_cfg, or no DMA) or with the error bit
    # set, rep stosq clears .bss.
    mov $stack_top - 16, %edi
    movl ${zero_fill_control}, (%rdi)
    mov $bss_end, %eax
    sub $bss_start, %eax
    bswap %eax
    mov %eax, 4(%rdi)           # length
    movl $0, 8(%rdi)            # address, high half
    mov $bss_start, %eax
    bswap %eax
    mov %eax, 12(%rdi)          # address, low half
    mov %edi, %eax
    bswap %eax
    mov ${fw_cfg_dma_low}, %dx
    out %eax, %dx
    cmpl $0, (%rdi)
    je 2f
    mov $bss_start, %edi
    mov $bss_qwords, %ecx
    xor %eax, %eax
    rep stosq
2:
    mov $stack_top, %esp
    shl $32, %rbp
    or %rbx, %rbp
    mov %rbp, %rdi              # rust_main(reset_tsc, wake_failure)
    mov %r12d, %esi
    xor %ebp, %ebp
    mov ${main}, %eax           # absolute: RAM is ~4 GiB away from here
    call *%rax
    ud2

# S3 resume, in 32-bit flat protected mode without paging or a stack. Reads
# the resume block a cold boot left in the EBDA (resume.rs), replays the
# machine's port-write script from the ROM (ferrite::s3), then reads the
# FACS's waking vector and jumps to it in real mode. The script goes first:
# it maps 0xC0000-0xEFFFF back to RAM, where pc's and q35's FACS lies (the
# wake-up's reset left that range to the ROMs). Whatever is missing, s3_fail
# boots afresh with the reason in esi. ebp:ebx (the reset's TSC) stay
# untouched.
.code32
s3_resume:
    mov ${data}, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov ${resume_block}, %edx
    mov ${wake_not_armed}, %esi
    cmpl ${resume_magic}, {block_magic}(%edx)
    jne s3_fail
    mov {block_script}(%edx), %eax
    mov ${pc_script}, %edi
    cmp ${script_pc}, %eax
    je 2f
    mov ${q35_script}, %edi
    cmp ${script_q35}, %eax
    jne s3_fail
2:  movzbl {pw_width}(%edi), %ecx
    jecxz 5f
    movzwl {pw_port}(%edi), %edx
    mov {pw_value}(%edi), %eax
    cmp $1, %ecx
    jne 3f
    out %al, %dx
    jmp 4f
3:  cmp $2, %ecx
    jne 6f
    out %ax, %dx
    jmp 4f
6:  out %eax, %dx
4:  add ${pw_size}, %edi
    jmp 2b
5:  mov ${resume_block}, %edx
    mov {block_facs}(%edx), %ecx
    mov ${wake_no_facs}, %esi
    cmpl ${facs_signature}, (%ecx)
    jne s3_fail
    mov {facs_waking_vector}(%ecx), %eax
    mov ${wake_no_vector}, %esi
    test %eax, %eax
    jz s3_fail
    cmp ${waking_vector_limit}, %eax
    jae s3_fail
    # CS = vector >> 4, IP = vector & 0xF, as offset:segment for ljmpw below
    mov %eax, %ecx
    shl $12, %ecx
    and $0xFFFF0000, %ecx
    and $0xF, %eax
    or %ecx, %eax
    mov %eax, {block_jump}(%edx)
    ljmpl ${code16}, $(s3_real_mode - 0xffff0000)

.code16
s3_real_mode:
    mov ${data16}, %ax          # real mode's 64 KiB limits in every cache
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov %cr0, %eax
    and ${cr0_no_pe}, %eax
    mov %eax, %cr0
    xor %ax, %ax                # real mode now; CS keeps the ROM's base
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov ${ebda_segment}, %ax
    mov %ax, %ds
    ljmpw *{ebda_jump}          # to the OS's waking vector

.code32
s3_fail:
    mov ${cmos_shutdown_status}, %al
    out %al, ${cmos_index}
    xor %eax, %eax              # a plain reset status: the next reset reboots
    out %al, ${cmos_data}
    jmp cold_boot

.code64
# Every CPU exception lands here (one handler: ferrite has no recoverable ones).
# The Rust side gets the stack pointer, to report the faulting RIP.
.globl exception_entry
exception_entry:
    mov %rsp, %rdi
    and $-16, %rsp
    mov ${exception}, %eax
    call *%rax
    ud2

# The firmware's GDT: in ROM, so every descriptor has its Accessed bit preset
# (the CPU would otherwise try to write it). Selectors match the Linux boot
# protocol's 64-bit entry (__BOOT_CS = 0x10, __BOOT_DS = 0x18).
.section .rom.gdt, "a"
.balign 8
gdt:
    .quad 0
    .quad {code32_desc}
    .quad {code64_desc}
    .quad {data_desc}
    .quad {code16_desc}
    .quad {data16_desc}
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

# 32 interrupt gates to exception_entry; the handler's address halves come from
# linker.ld (exception_entry_lo/hi), since the assembler cannot split a symbol.
.balign 8
idt:
.rept 32
    .word exception_entry_lo
    .word {code64}
    .byte 0, 0x8E               # present, DPL 0, 64-bit interrupt gate
    .word exception_entry_hi
    .long 0
    .long 0
.endr
idt_end:
idt_ptr:
    .word idt_end - idt - 1
    .quad idt

# For the 32-bit kernel entry, where __BOOT_CS (0x10) must be 32-bit code.
.balign 8
.globl gdt_linux32_ptr
gdt_linux32:
    .quad 0
    .quad {code64_desc}
    .quad {code32_desc}
    .quad {data_desc}
gdt_linux32_end:
gdt_linux32_ptr:
    .word gdt_linux32_end - gdt_linux32 - 1
    .quad gdt_linux32
