//! Tests of the parent module.
use std::path::PathBuf;

use super::*;
use crate::LocalStorage;
use crate::contract::{self, pattern};

const KEY: [u8; 32] = [
    0x5a, 0x17, 0xc3, 0x08, 0x91, 0x4e, 0xd2, 0x6b, 0x33, 0xa0, 0x7f, 0x1c, 0xe9, 0x42, 0xb5, 0x0d,
    0x66, 0xf8, 0x29, 0x9e, 0x04, 0x7a, 0xcd, 0x51, 0xbb, 0x13, 0x88, 0xe6, 0x3f, 0xa4, 0x70, 0x2c,
];

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).unwrap()
}

/// An encrypted storage over local disk, in a fresh root.
struct Fixture {
    dir: tempfile::TempDir,
    root: String,
    storage: Encrypted,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home").to_str().unwrap().to_string();
        let storage = Encrypted::new(Arc::new(LocalStorage::new()), DataKey::new(KEY));
        storage.ensure_root(&root).await.unwrap();
        Fixture { dir, root, storage }
    }

    /// The same files seen through another mount key.
    fn with_key(&self, key: [u8; 32]) -> Encrypted {
        Encrypted::new(Arc::new(LocalStorage::new()), DataKey::new(key))
    }

    fn disk(&self, name: &str) -> PathBuf {
        self.dir.path().join("home").join(name)
    }

    async fn put(&self, name: &str, data: &[u8]) {
        contract::put(&self.storage, &self.root, &format!("/{name}"), data).await;
    }

    async fn read_all(&self, name: &str) -> Result<Vec<u8>, (StorageError, Vec<u8>)> {
        read_all(&self.storage, &self.root, name).await
    }
}

/// Reads a whole file in 32 KiB requests; on an error, also returns what
/// was read before it.
async fn read_all(
    storage: &Encrypted,
    root: &str,
    name: &str,
) -> Result<Vec<u8>, (StorageError, Vec<u8>)> {
    let mut out = Vec::new();
    let mut handle = storage
        .open_read(root, &vp(&format!("/{name}")))
        .await
        .map_err(|err| (err, Vec::new()))?;
    loop {
        match handle.read_at(out.len() as u64, 32 * 1024).await {
            Ok(chunk) if chunk.is_empty() => return Ok(out),
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(err) => return Err((err, out)),
        }
    }
}

/// The stored length of a file of `plain` bytes, as the format document
/// states it.
fn documented_len(plain: u64) -> u64 {
    84 + plain + 28 * plain.div_ceil(65_536).max(1)
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Writes `data` at `offset` into the model, filling a hole with zeros.
fn model_write(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

#[tokio::test]
async fn encrypted_local_disk_passes_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let storage = Encrypted::new(Arc::new(LocalStorage::new()), DataKey::new(KEY));
    contract::run(&storage, root.to_str().unwrap()).await;
}

#[test]
fn the_key_id_is_the_documented_hash_and_debug_hides_the_key() {
    let key = DataKey::new(KEY);
    let digest = Sha256::new()
        .chain_update(b"tollgate-mount-key-id\0")
        .chain_update(KEY)
        .finalize();
    assert_eq!(key.id().as_slice(), &digest[..16]);
    let shown = format!("{key:?}");
    assert!(shown.contains(&hex::encode(key.id())), "{shown}");
    assert!(!shown.contains(&hex::encode(KEY)), "{shown}");
    assert!(!shown.contains(&hex::encode(&KEY[..4])), "{shown}");
    assert_ne!(DataKey::new([0; 32]).id(), key.id());
}

#[test]
fn every_plaintext_size_maps_to_one_valid_stored_length_and_back() {
    let mut valid = std::collections::HashSet::new();
    for plain in 0..=3 * CHUNK + 5 {
        let stored = stored_len(plain).unwrap();
        assert_eq!(stored, documented_len(plain));
        assert_eq!(plain_len(stored), plain);
        valid.insert(stored);
    }
    let mut previous = 0;
    for stored in 0..=stored_len(3 * CHUNK + 5).unwrap() {
        assert_eq!(is_valid_len(stored), valid.contains(&stored), "{stored}");
        assert!(plain_len(stored) >= previous, "monotone at {stored}");
        previous = plain_len(stored);
    }
    assert_eq!(stored_len(u64::MAX), None);
    assert!(plain_len(u64::MAX) < u64::MAX);
}

#[tokio::test]
async fn the_stored_length_follows_the_formula_and_sizes_are_plaintext_sizes() {
    let fx = Fixture::new().await;
    let sizes = [
        0,
        1,
        65_535,
        65_536,
        65_537,
        131_072,
        3 * 65_536 + 5,
        1 << 20,
        (1 << 20) + 7,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let name = format!("f{i}");
        fx.put(&name, &pattern(i as u8, size)).await;
        let stored = std::fs::metadata(fx.disk(&name)).unwrap().len();
        assert_eq!(
            stored,
            documented_len(size as u64),
            "stored length of {size}"
        );
        let meta = fx.storage.stat(&fx.root, &vp(&format!("/{name}"))).await;
        assert_eq!(meta.unwrap().size, size as u64, "stat of {size}");
        assert_eq!(fx.read_all(&name).await.unwrap(), pattern(i as u8, size));
    }
    let listed = fx.storage.list(&fx.root, &vp("/")).await.unwrap();
    for entry in listed {
        let i: usize = entry.name[1..].parse().unwrap();
        assert_eq!(
            entry.meta.size, sizes[i] as u64,
            "listed size of {}",
            entry.name
        );
    }
}

#[tokio::test]
async fn the_stored_file_never_contains_the_plaintext() {
    let fx = Fixture::new().await;
    let data = pattern(3, 1 << 20);
    fx.put("secret", &data).await;
    let stored = std::fs::read(fx.disk("secret")).unwrap();
    assert_eq!(stored.len() as u64, documented_len(data.len() as u64));
    assert_eq!(&stored[..8], b"TGENC1\0\0");
    assert_eq!(&stored[8..24], DataKey::new(KEY).id().as_slice());
    for offset in [0, 1000, 65_520, 65_536, 300_000, (1 << 20) - 32] {
        let window = &data[offset..offset + 32];
        assert!(
            !stored.windows(32).any(|w| w == window),
            "plaintext at {offset} is stored in the clear"
        );
    }
    // The same plaintext twice gives different stored bytes (random keys).
    fx.put("again", &data).await;
    let again = std::fs::read(fx.disk("again")).unwrap();
    assert_ne!(stored[24..200], again[24..200]);
}

/// Checks that reading `name` fails with `Corrupt`, and that nothing
/// returned before the error differs from `plain`.
async fn assert_corrupt(fx: &Fixture, name: &str, plain: &[u8], case: &str) {
    // A damaged file still has a size: listings never open files.
    fx.storage
        .stat(&fx.root, &vp(&format!("/{name}")))
        .await
        .unwrap_or_else(|err| panic!("{case}: stat failed: {err:?}"));
    match fx.read_all(name).await {
        Ok(got) => panic!(
            "{case}: read {} bytes without an error (equal: {})",
            got.len(),
            got == plain
        ),
        Err((err, before)) => {
            assert_eq!(
                err.kind,
                StorageErrorKind::Corrupt,
                "{case}: {:?}",
                err.source
            );
            assert!(
                plain.starts_with(&before),
                "{case}: wrong plaintext before the error"
            );
            let message = err.source.unwrap().to_string();
            assert!(message.contains("/victim"), "{case}: {message}");
        }
    }
}

#[tokio::test]
async fn every_alteration_of_a_stored_file_is_reported_as_corrupt() {
    let fx = Fixture::new().await;
    const H: usize = HEADER_LEN;
    const S: usize = CHUNK_LEN + CHUNK_OVERHEAD;
    let plain = pattern(9, 3 * CHUNK_LEN + 1000);
    fx.put("original", &plain).await;
    fx.put("other", &pattern(10, 3 * CHUNK_LEN + 1000)).await;
    let original = std::fs::read(fx.disk("original")).unwrap();
    let other = std::fs::read(fx.disk("other")).unwrap();
    assert_eq!(original.len(), H + 3 * S + 1000 + CHUNK_OVERHEAD);

    let flip = |at: usize| {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        bytes
    };
    let truncate = |len: usize| original[..len].to_vec();
    let swap = |a: usize, b: usize| {
        let mut bytes = original.clone();
        let (first, second) = (H + a * S, H + b * S);
        let chunk_a = bytes[first..first + S].to_vec();
        let chunk_b = bytes[second..second + S].to_vec();
        bytes[first..first + S].copy_from_slice(&chunk_b);
        bytes[second..second + S].copy_from_slice(&chunk_a);
        bytes
    };
    let append = |extra: &[u8]| [original.as_slice(), extra].concat();
    let splice = |index: usize| {
        let mut bytes = original.clone();
        let at = H + index * S;
        bytes[at..at + S].copy_from_slice(&other[at..at + S]);
        bytes
    };

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for at in 0..H {
        cases.push((format!("header byte {at} flipped"), flip(at)));
    }
    for (what, at) in [
        ("first chunk nonce", H + 5),
        ("first chunk data", H + 40_000),
        ("middle chunk nonce", H + S + 3),
        ("middle chunk data", H + S + 1000),
        ("middle chunk tag", H + 2 * S - 1),
        ("last chunk nonce", H + 3 * S),
        ("last chunk data", H + 3 * S + 500),
        ("last byte", original.len() - 1),
    ] {
        cases.push((format!("{what} flipped"), flip(at)));
    }
    for (what, len) in [
        ("at the last chunk boundary", H + 3 * S),
        ("at the first chunk boundary", H + S),
        ("to the header", H),
        ("inside the header", 40),
        ("to nothing", 0),
        ("inside the first chunk", H + 100),
        ("inside a middle chunk", H + S + 30_000),
        ("by one byte", original.len() - 1),
        ("by a tag", original.len() - 16),
        ("inside the last chunk's nonce", H + 3 * S + 5),
    ] {
        cases.push((format!("truncated {what}"), truncate(len)));
    }
    cases.push(("chunks 0 and 1 swapped".into(), swap(0, 1)));
    cases.push(("chunks 1 and 2 swapped".into(), swap(1, 2)));
    for extra in [1, 15, 28, 29, 100, S] {
        cases.push((
            format!("{extra} bytes appended"),
            append(&vec![0xa5; extra]),
        ));
    }
    cases.push((
        "a copy of the last chunk appended".into(),
        append(&original[H + 3 * S..]),
    ));
    cases.push(("a chunk of another file spliced in".into(), splice(1)));
    cases.push((
        "the header of another file".into(),
        [&other[..H], &original[H..]].concat(),
    ));

    for (case, bytes) in cases {
        std::fs::write(fx.disk("victim"), &bytes).unwrap();
        assert_corrupt(&fx, "victim", &plain, &case).await;
    }
}

#[tokio::test]
async fn an_empty_file_cut_to_its_header_or_altered_is_corrupt() {
    let fx = Fixture::new().await;
    fx.put("empty", b"").await;
    let original = std::fs::read(fx.disk("empty")).unwrap();
    assert_eq!(original.len(), HEADER_LEN + CHUNK_OVERHEAD);
    let mut cases = vec![(
        "cut to the header".to_string(),
        original[..HEADER_LEN].to_vec(),
    )];
    for at in HEADER_LEN..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0x80;
        cases.push((format!("byte {at} flipped"), bytes));
    }
    for (case, bytes) in cases {
        std::fs::write(fx.disk("victim"), &bytes).unwrap();
        assert_corrupt(&fx, "victim", b"", &case).await;
    }
}

#[tokio::test]
async fn a_file_under_another_mount_key_is_corrupt_and_the_message_names_only_key_ids() {
    let fx = Fixture::new().await;
    let data = pattern(4, 100_000);
    fx.put("mine", &data).await;
    let before = std::fs::read(fx.disk("mine")).unwrap();
    let mut other_key = KEY;
    other_key[0] ^= 1;
    let stranger = fx.with_key(other_key);

    let err = stranger
        .open_read(&fx.root, &vp("/mine"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, StorageErrorKind::Corrupt);
    let message = err.source.unwrap().to_string();
    assert!(
        message.contains(&hex::encode(DataKey::new(KEY).id())),
        "{message}"
    );
    assert!(
        message.contains(&hex::encode(DataKey::new(other_key).id())),
        "{message}"
    );
    assert!(!message.contains(&hex::encode(&KEY[..4])), "{message}");

    let err = stranger
        .open_write(&fx.root, &vp("/mine"), WriteMode::InPlace)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, StorageErrorKind::Corrupt);
    assert_eq!(std::fs::read(fx.disk("mine")).unwrap(), before);
    assert_eq!(
        stranger.stat(&fx.root, &vp("/mine")).await.unwrap().size,
        100_000,
        "a size needs no key"
    );
    assert_eq!(fx.read_all("mine").await.unwrap(), data);
}

#[tokio::test]
async fn reads_at_any_offset_match_a_file_written_in_irregular_pieces() {
    let fx = Fixture::new().await;
    let data = pattern(5, (1 << 20) + 12_345);
    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/irregular"), WriteMode::Replace)
        .await
        .unwrap();
    let pieces = [1, 7, 65_535, 65_537, 3000, 131_072, 13, 40_000, 65_536];
    let mut offset = 0;
    for piece in pieces.iter().cycle() {
        if offset == data.len() {
            break;
        }
        let end = (offset + piece).min(data.len());
        handle
            .write_at(offset as u64, Bytes::copy_from_slice(&data[offset..end]))
            .await
            .unwrap();
        offset = end;
    }
    assert_eq!(handle.commit().await.unwrap(), data.len() as u64);

    let mut reader = fx
        .storage
        .open_read(&fx.root, &vp("/irregular"))
        .await
        .unwrap();
    let size = data.len() as u64;
    let mut ranges = vec![
        (0, 1),
        (65_535, 1),
        (65_535, 2),
        (65_536, 65_536),
        (65_530, 131_090),
        (size - 12_345, 12_345),
        (size - 12_346, 2),
        (size - 1, 100),
        (size, 1),
        (size + 65_536, 10),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..400 {
        ranges.push((rng.below(size + 100), 1 + rng.below(200_000)));
    }
    for (offset, len) in ranges {
        let got = reader.read_at(offset, len as u32).await.unwrap();
        let start = (offset as usize).min(data.len());
        let end = (offset + len).min(size) as usize;
        assert_eq!(got, data[start..end], "range {offset}+{len}");
    }
    let big = reader.read_at(3, u32::MAX).await.unwrap();
    assert!(!big.is_empty() && big.len() as u64 <= MAX_READ);
    assert_eq!(
        big,
        data[3..3 + big.len()],
        "a huge request is served in part"
    );
}

#[tokio::test]
async fn random_in_place_writes_and_a_hole_match_an_in_memory_model() {
    let fx = Fixture::new().await;
    let mut model = pattern(6, (1 << 20) + 999);
    fx.put("random", &model).await;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/random"), WriteMode::InPlace)
        .await
        .unwrap();
    assert_eq!(handle.size().await.unwrap(), model.len() as u64);
    for step in 0..300 {
        let len = 1 + rng.below(150_000) as usize;
        let offset = match step % 10 {
            // Within one chunk, across a boundary, into the tail, past the end.
            0 => rng.below(model.len() as u64) as usize,
            1 => (rng.below(model.len() as u64 / CHUNK) * CHUNK) as usize,
            2 => model.len().saturating_sub(1 + rng.below(70_000) as usize),
            3 => model.len() + rng.below(3 * CHUNK) as usize,
            _ => rng.below(model.len() as u64 + 1) as usize,
        };
        let data = rng.bytes(len);
        handle
            .write_at(offset as u64, Bytes::from(data.clone()))
            .await
            .unwrap();
        model_write(&mut model, offset, &data);
        if step % 25 == 0 {
            assert_eq!(handle.size().await.unwrap(), model.len() as u64);
            for _ in 0..10 {
                let at = rng.below(model.len() as u64 + 10) as usize;
                let len = 1 + rng.below(140_000) as usize;
                let got = handle.read_at(at as u64, len as u32).await.unwrap();
                let end = (at + len).min(model.len());
                assert_eq!(got, model[at.min(end)..end], "step {step}: read {at}+{len}");
            }
        }
    }
    // A write well past the end leaves a hole that reads as zeros.
    let hole_at = model.len() + 3 * CHUNK_LEN + 17;
    handle
        .write_at(hole_at as u64, Bytes::from_static(b"after the hole"))
        .await
        .unwrap();
    model_write(&mut model, hole_at, b"after the hole");
    assert_eq!(handle.commit().await.unwrap(), model.len() as u64);
    assert_eq!(
        std::fs::metadata(fx.disk("random")).unwrap().len(),
        documented_len(model.len() as u64)
    );
    assert!(fx.read_all("random").await.unwrap() == model);
}

#[tokio::test]
async fn a_replacing_write_may_arrive_out_of_order() {
    let fx = Fixture::new().await;
    let data = pattern(8, 5 * CHUNK_LEN + 4321);
    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/backwards"), WriteMode::Replace)
        .await
        .unwrap();
    let pieces: Vec<_> = (0..data.len()).step_by(32 * 1024).collect();
    for &start in pieces.iter().rev() {
        let end = (start + 32 * 1024).min(data.len());
        handle
            .write_at(start as u64, Bytes::copy_from_slice(&data[start..end]))
            .await
            .unwrap();
    }
    assert_eq!(handle.commit().await.unwrap(), data.len() as u64);
    assert!(fx.read_all("backwards").await.unwrap() == data);
}

#[tokio::test]
async fn an_in_place_write_resumes_a_committed_file() {
    let fx = Fixture::new().await;
    for (i, (first, total)) in [
        (70_000, 200_000),
        (0, 100),
        (65_536, 65_537),
        (131_072, 300_000),
        (100, 100),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("resume{i}");
        let data = pattern(i as u8, total);
        fx.put(&name, &data[..first]).await;
        let mut handle = fx
            .storage
            .open_write(&fx.root, &vp(&format!("/{name}")), WriteMode::InPlace)
            .await
            .unwrap();
        assert_eq!(handle.size().await.unwrap(), first as u64);
        for start in (first..total).step_by(32 * 1024) {
            let end = (start + 32 * 1024).min(total);
            handle
                .write_at(start as u64, Bytes::copy_from_slice(&data[start..end]))
                .await
                .unwrap();
        }
        assert_eq!(handle.commit().await.unwrap(), total as u64, "{name}");
        assert!(fx.read_all(&name).await.unwrap() == data, "{name}");
        assert_eq!(
            std::fs::metadata(fx.disk(&name)).unwrap().len(),
            documented_len(total as u64)
        );
    }
}

#[tokio::test]
async fn an_in_place_write_creates_a_missing_file_and_an_untouched_one_is_not_rewritten() {
    let fx = Fixture::new().await;
    let handle = fx
        .storage
        .open_write(&fx.root, &vp("/new"), WriteMode::InPlace)
        .await
        .unwrap();
    assert_eq!(handle.commit().await.unwrap(), 0);
    assert_eq!(fx.read_all("new").await.unwrap(), b"");

    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/created"), WriteMode::InPlace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::from_static(b"in place"))
        .await
        .unwrap();
    assert_eq!(handle.commit().await.unwrap(), 8);
    assert_eq!(fx.read_all("created").await.unwrap(), b"in place");

    let before = std::fs::read(fx.disk("created")).unwrap();
    for commit in [true, false] {
        let handle = fx
            .storage
            .open_write(&fx.root, &vp("/created"), WriteMode::InPlace)
            .await
            .unwrap();
        if commit {
            assert_eq!(handle.commit().await.unwrap(), 8);
        } else {
            handle.abort().await.unwrap();
        }
        assert_eq!(std::fs::read(fx.disk("created")).unwrap(), before);
    }
}

#[tokio::test]
async fn an_aborted_in_place_write_keeps_what_was_written_in_a_valid_file() {
    let fx = Fixture::new().await;
    let mut model = pattern(11, 150_000);
    fx.put("kept", &model).await;
    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/kept"), WriteMode::InPlace)
        .await
        .unwrap();
    let appended = pattern(12, 100_000);
    handle
        .write_at(model.len() as u64, Bytes::from(appended.clone()))
        .await
        .unwrap();
    let len = model.len();
    model_write(&mut model, len, &appended);
    handle
        .write_at(10, Bytes::from_static(b"overwritten"))
        .await
        .unwrap();
    model_write(&mut model, 10, b"overwritten");
    handle.abort().await.unwrap();
    assert!(fx.read_all("kept").await.unwrap() == model);
    assert_eq!(
        fx.storage.stat(&fx.root, &vp("/kept")).await.unwrap().size,
        model.len() as u64
    );
}

#[tokio::test]
async fn a_write_beyond_the_largest_size_is_refused() {
    let fx = Fixture::new().await;
    let mut handle = fx
        .storage
        .open_write(&fx.root, &vp("/huge"), WriteMode::Replace)
        .await
        .unwrap();
    let err = handle
        .write_at(u64::MAX - 3, Bytes::from_static(b"far"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::QuotaExceeded);
    assert_eq!(handle.size().await.unwrap(), 0);
    handle.abort().await.unwrap();
}

#[tokio::test]
async fn the_end_of_a_file_cut_at_a_chunk_boundary_is_not_reported_as_the_end() {
    let fx = Fixture::new().await;
    fx.put("cut", &pattern(13, 3 * CHUNK_LEN)).await;
    let stored = std::fs::read(fx.disk("cut")).unwrap();
    let cut = HEADER_LEN + 2 * (CHUNK_LEN + CHUNK_OVERHEAD);
    std::fs::write(fx.disk("cut"), &stored[..cut]).unwrap();
    let mut handle = fx.storage.open_read(&fx.root, &vp("/cut")).await.unwrap();
    assert_eq!(handle.meta().await.unwrap().size, 2 * CHUNK);
    for offset in [2 * CHUNK, 2 * CHUNK + 100] {
        let err = handle.read_at(offset, 10).await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Corrupt, "{offset}");
    }
    let err = fx
        .storage
        .open_write(&fx.root, &vp("/cut"), WriteMode::InPlace)
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.kind,
        StorageErrorKind::Corrupt,
        "no resume of a cut file"
    );
}

/// Local disk that records the stored writes, to check their pattern.
struct Recording {
    inner: LocalStorage,
    writes: Arc<std::sync::Mutex<Vec<(u64, usize)>>>,
}

struct RecordingWrite {
    inner: Box<dyn WriteHandle>,
    writes: Arc<std::sync::Mutex<Vec<(u64, usize)>>>,
}

#[async_trait]
impl WriteHandle for RecordingWrite {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        self.writes.lock().unwrap().push((offset, data.len()));
        self.inner.write_at(offset, data).await
    }
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.inner.read_at(offset, len).await
    }
    async fn size(&mut self) -> Result<u64, StorageError> {
        self.inner.size().await
    }
    async fn sync(&mut self) -> Result<(), StorageError> {
        self.inner.sync().await
    }
    async fn commit(self: Box<Self>) -> Result<u64, StorageError> {
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        self.inner.abort().await
    }
}

#[async_trait]
impl FileStorage for Recording {
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError> {
        self.inner.ensure_root(root).await
    }
    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        self.inner.stat(root, path).await
    }
    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        self.inner.list(root, path).await
    }
    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.mkdir(root, path).await
    }
    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.rmdir(root, path).await
    }
    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.remove(root, path).await
    }
    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError> {
        self.inner.rename(root, from, to).await
    }
    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        atime: i64,
        mtime: i64,
    ) -> Result<(), StorageError> {
        self.inner.set_times(root, path, atime, mtime).await
    }
    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError> {
        self.inner.open_read(root, path).await
    }
    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        Ok(Box::new(RecordingWrite {
            inner: self.inner.open_write(root, path, mode).await?,
            writes: self.writes.clone(),
        }))
    }
}

#[tokio::test]
async fn a_sequential_write_stores_each_chunk_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home").to_str().unwrap().to_string();
    let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recording = Recording {
        inner: LocalStorage::new(),
        writes: writes.clone(),
    };
    let storage = Encrypted::new(Arc::new(recording), DataKey::new(KEY));
    storage.ensure_root(&root).await.unwrap();
    let data = pattern(14, 4 * CHUNK_LEN + 500);
    contract::put(&storage, &root, "/seq", &data).await;
    let writes = writes.lock().unwrap().clone();
    let mut expected = vec![(0, HEADER_LEN)];
    for index in 0..4 {
        expected.push((chunk_offset(index), CHUNK_LEN + CHUNK_OVERHEAD));
    }
    expected.push((chunk_offset(4), 500 + CHUNK_OVERHEAD));
    assert_eq!(writes, expected);
}
