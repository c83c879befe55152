//! Unit tests of how the loader checks a command: the first failed check
//! gives the error, and a patch is made whole or not at all.

use super::*;

/// A command's checks are tested at once: when several fail, the error is
/// still that of the first in the order the loader always checked them.
#[test]
fn the_first_failed_check_gives_the_error() {
    let files = || Fake::new(&[("a", vec![0u8; 16]), ("b", vec![0u8; 16])]);
    let unnamed = |mut c: [u8; 128], at: usize| {
        c[at..at + 56].fill(b'x');
        c
    };
    let cases: Vec<(Vec<[u8; 128]>, LoaderError)> = vec![
        // ALLOCATE: name, then alignment and zone, then twice, then too many
        (vec![unnamed(allocate("a", 3, 9), 4)], LoaderError::BadName),
        (
            vec![allocate("a", 16, 1), allocate("a", 3, 1)],
            LoaderError::BadAllocation,
        ),
        (vec![allocate("nope", 3, 1)], LoaderError::BadAllocation),
        (vec![allocate("nope", 16, 0)], LoaderError::BadAllocation),
        // ADD_POINTER: either name, then either file, then size, then range
        (
            vec![unnamed(add_pointer("x", "y", 99, 3), 60)],
            LoaderError::BadName,
        ),
        (
            vec![allocate("a", 16, 1), add_pointer("a", "b", 99, 3)],
            LoaderError::NotAllocated,
        ),
        (
            vec![allocate("b", 16, 1), add_pointer("a", "b", 99, 3)],
            LoaderError::NotAllocated,
        ),
        (
            vec![allocate("a", 16, 1), add_pointer("a", "a", 99, 3)],
            LoaderError::BadPointerSize,
        ),
        (
            vec![allocate("a", 16, 1), add_pointer("a", "a", u32::MAX, 8)],
            LoaderError::OutOfBounds,
        ),
        // ADD_CHECKSUM: name, then file, then ranges
        (
            vec![add_checksum("a", 99, 0, 99)],
            LoaderError::NotAllocated,
        ),
        (
            vec![allocate("a", 16, 1), add_checksum("a", 0, 8, 9)],
            LoaderError::OutOfBounds,
        ),
        (
            vec![allocate("a", 16, 1), add_checksum("a", u32::MAX, 0, 1)],
            LoaderError::OutOfBounds,
        ),
        // WRITE_POINTER: names, then the source, then size, then the destination
        (
            vec![unnamed(write_pointer("a", "b", 0, 0, 3), 4)],
            LoaderError::BadName,
        ),
        (
            vec![write_pointer("nope", "b", 0, 0, 3)],
            LoaderError::NotAllocated,
        ),
        (
            vec![allocate("b", 16, 1), write_pointer("nope", "b", 99, 0, 3)],
            LoaderError::BadPointerSize,
        ),
        (
            vec![allocate("b", 16, 1), write_pointer("nope", "b", 99, 0, 8)],
            LoaderError::NoSuchFile,
        ),
        (
            vec![allocate("b", 16, 1), write_pointer("a", "b", 0, 16, 8)],
            LoaderError::OutOfBounds,
        ),
        (
            vec![allocate("b", 16, 1), write_pointer("a", "b", 0, 0, 1)],
            LoaderError::OutOfBounds, // the address does not fit one byte
        ),
    ];
    for (cmds, want) in cases {
        assert_eq!(run(&script(&cmds), &mut files()), Err(want), "{want:?}");
    }
    // 32 files, then a 33rd that repeats one of them: twice comes first
    let many: Vec<(String, Vec<u8>)> = (0..32).map(|i| (format!("f{i}"), vec![1u8; 4])).collect();
    let refs: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let mut cmds: Vec<[u8; 128]> = many.iter().map(|(n, _)| allocate(n, 4, 1)).collect();
    cmds.push(allocate("f3", 4, 1));
    assert_eq!(
        run(&script(&cmds), &mut Fake::new(&refs)),
        Err(LoaderError::AllocatedTwice)
    );
}

/// ADD_CHECKSUM's second name field holds its other fields and whatever
/// follows: no NUL there is no error.
#[test]
fn a_checksum_has_one_name() {
    let mut env = Fake::new(&[("a", vec![7u8; 16])]);
    let mut sum = add_checksum("a", 3, 0, 16);
    sum[72..116].fill(0x01);
    run(&script(&[allocate("a", 16, 1), sum]), &mut env).unwrap();
    assert_eq!(byte_sum(env.at(BASE, 16)), 0);
}

/// A pointer that does not fit its field is an error that leaves the field
/// as it was; 8-byte pointers wrap.
#[test]
fn pointer_fields_are_patched_whole_or_not_at_all() {
    let mut env = Fake::new(&[("a", vec![0xFFu8; 16])]);
    let s = script(&[allocate("a", 16, 1), add_pointer("a", "a", 4, 4)]);
    assert_eq!(run(&s, &mut env), Err(LoaderError::OutOfBounds));
    assert_eq!(env.at(BASE, 16), &[0xFF; 16]);

    let mut env = Fake::new(&[("a", vec![0xFFu8; 16])]);
    let s = script(&[allocate("a", 16, 1), add_pointer("a", "a", 8, 8)]);
    run(&s, &mut env).unwrap();
    let field = u64::from_le_bytes(env.at(BASE + 8, 8).try_into().unwrap());
    assert_eq!(field, BASE - 1);

    // carries run through every byte of the field
    let mut data = vec![0u8; 16];
    data[..4].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
    let mut env = Fake::new(&[("a", data)]);
    run(
        &script(&[allocate("a", 16, 1), add_pointer("a", "a", 0, 4)]),
        &mut env,
    )
    .unwrap();
    let field = u32::from_le_bytes(env.at(BASE, 4).try_into().unwrap());
    assert_eq!(field as u64, 0x00FF_FFFF + BASE);
}
