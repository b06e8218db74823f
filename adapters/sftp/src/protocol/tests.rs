//! Tests of the parent module.
use super::*;

/// Bytes whose every position differs from its neighbours'.
fn pattern(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// The stream one reply after the other makes: what the client must read.
fn stream_of(replies: &[(u32, Bytes)]) -> Vec<u8> {
    let mut stream = Vec::new();
    for (id, data) in replies {
        if data.is_empty() {
            let encoded = Bytes::try_from(ok(*id)).unwrap();
            stream.extend_from_slice(&encoded);
            continue;
        }
        stream.extend_from_slice(&(data.len() as u32 + 9).to_be_bytes());
        stream.push(FXP_DATA);
        stream.extend_from_slice(&id.to_be_bytes());
        stream.extend_from_slice(&(data.len() as u32).to_be_bytes());
        stream.extend_from_slice(data);
    }
    stream
}

#[test]
fn packed_replies_make_the_same_stream_in_full_packets_and_large_data_is_not_copied() {
    const PACKET: usize = 32 * 1024;
    // Empty data stands for a status reply.
    let replies: Vec<(u32, Bytes)> = vec![
        (1, pattern(1, 255 * 1024)),
        (2, pattern(2, 32 * 1024)),
        (3, Bytes::new()),
        (4, pattern(4, 100)),
        (5, pattern(5, 255 * 1024)),
        (6, pattern(6, 2 * PACKET)),
        (7, pattern(7, 32 * 1024)),
    ];
    let mut packer = Packer::new(PACKET);
    let mut sent: Vec<Bytes> = Vec::new();
    let mut ready = Vec::new();
    for (id, data) in &replies {
        let reply = if data.is_empty() {
            Reply::Packet(ok(*id))
        } else {
            Reply::Data {
                id: *id,
                data: data.clone(),
            }
        };
        packer.add(reply, &mut ready).unwrap();
        sent.append(&mut ready);
    }
    sent.extend(packer.take());
    assert!(packer.take().is_none(), "nothing is left once taken");

    assert_eq!(sent.concat(), stream_of(&replies));
    // Each chunk but the last fills whole packets, so the channel cuts
    // none of them into a packet that is not full.
    for chunk in &sent[..sent.len() - 1] {
        assert_eq!(chunk.len() % PACKET, 0, "a chunk of {} bytes", chunk.len());
    }
    // The whole packets of the large replies are slices of their data.
    let uncopied: usize = sent
        .iter()
        .filter(|chunk| {
            replies.iter().any(|(_, data)| {
                let range = data.as_ptr_range();
                !chunk.is_empty() && range.contains(&chunk.as_ptr())
            })
        })
        .map(|chunk| chunk.len())
        .sum();
    assert!(
        uncopied >= 2 * 7 * PACKET,
        "only {uncopied} bytes went uncopied"
    );
    let copied = sent.iter().map(|c| c.len()).sum::<usize>() - uncopied;
    assert!(copied < 6 * PACKET, "{copied} bytes were copied");
}
