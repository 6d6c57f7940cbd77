//! `FixAuthority` (server/src/authority.rs) on HTTP/2 byte streams written by hand: a scheme in
//! `:authority` stripped on every request of a connection, valid authorities and HTTP/1 handed
//! through byte for byte, and header blocks that do not decode or grow without bound refused.

use std::io;

use cairn_server::authority::FixAuthority;
use tokio::io::AsyncReadExt;

// HTTP/2's wire constants (RFC 9113), as the fix reads them.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Runs `input` through the fix, as hyper would read it, and returns the header blocks of
/// the frames that come out, decoded, with the other frames' types.
async fn through(input: Vec<u8>) -> (Vec<u8>, bool) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let mut fix = FixAuthority::new(server);
    tokio::io::AsyncWriteExt::write_all(&mut client, &input).await.unwrap();
    drop(client);
    let mut out = Vec::new();
    fix.read_to_end(&mut out).await.unwrap();
    (out, fix.is_pass_through())
}

fn decode_blocks(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    assert!(out.starts_with(PREFACE));
    let mut rest = &out[PREFACE.len()..];
    let mut decoder = loona_hpack::Decoder::new();
    let mut blocks = Vec::new();
    let mut pending = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (kind, flags) = (rest[3], rest[4]);
        let mut payload = &rest[9..9 + len];
        if kind == FRAME_HEADERS && flags & FLAG_PRIORITY != 0 {
            payload = &payload[5..];
        }
        if kind == FRAME_HEADERS || kind == FRAME_CONTINUATION {
            pending.extend_from_slice(payload);
            if flags & FLAG_END_HEADERS != 0 {
                blocks.push(decoder.decode(&pending).unwrap());
                pending.clear();
            }
        }
        rest = &rest[9 + len..];
    }
    blocks
}

fn request(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
    let fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/etcdserverpb.KV/Range"),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
    ];
    encoder.encode(fields)
}

fn authority_of(block: &[(Vec<u8>, Vec<u8>)]) -> Option<&[u8]> {
    block.iter().find(|(n, _)| n == b":authority").map(|(_, v)| v.as_slice())
}

#[tokio::test]
async fn a_scheme_in_the_authority_is_stripped_on_every_request_of_the_connection() {
    let mut enc = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
                                         // The second request refers to the first one's fields through the dynamic table.
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &request(&mut enc, b"http://127.0.0.1:2379")));
    input.extend(frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0"));
    let second = request(&mut enc, b"http://127.0.0.1:2379");
    // Split across a CONTINUATION, with padding and priority on the HEADERS frame.
    let mut payload = vec![2u8];
    payload.extend_from_slice(&[0, 0, 0, 0, 16]);
    payload.extend_from_slice(&second[..2]);
    payload.extend_from_slice(&[0, 0]);
    input.extend(frame(FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM, 3, &payload));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &second[2..]));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 5, &request(&mut enc, b"https://h/")));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 7, &request(&mut enc, b"http://no pe")));
    let (out, pass) = through(input).await;
    assert!(!pass);
    let blocks = decode_blocks(&out);
    assert_eq!(blocks.len(), 4);
    assert_eq!(authority_of(&blocks[0]), Some(&b"127.0.0.1:2379"[..]));
    assert_eq!(authority_of(&blocks[1]), Some(&b"127.0.0.1:2379"[..]));
    assert_eq!(authority_of(&blocks[2]), Some(&b"h"[..]));
    assert_eq!(authority_of(&blocks[3]), None, "no authority rather than a malformed one");
    assert_eq!(blocks[1][2], (b":path".to_vec(), b"/etcdserverpb.KV/Range".to_vec()));
}

#[tokio::test]
async fn a_valid_authority_or_http1_is_handed_through_byte_for_byte() {
    let mut enc = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &request(&mut enc, b"127.0.0.1:2379")));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &request(&mut enc, b"http://x:1")));
    let (out, pass) = through(input.clone()).await;
    assert!(pass);
    assert_eq!(out, input);

    let http1 = b"GET /v2/keys/a HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
    let (out, pass) = through(http1.clone()).await;
    assert!(pass);
    assert_eq!(out, http1);
}

#[tokio::test]
async fn a_header_block_that_does_not_decode_or_grows_without_bound_fails_the_connection() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let mut fix = FixAuthority::new(server);
    tokio::io::AsyncWriteExt::write_all(&mut client, &input).await.unwrap();
    let mut out = Vec::new();
    assert!(fix.read_to_end(&mut out).await.is_err());

    let mut enc = loona_hpack::Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, 0, 1, &request(&mut enc, b"http://x:1")));
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut fix = FixAuthority::new(server);
    let writer = tokio::spawn(async move {
        tokio::io::AsyncWriteExt::write_all(&mut client, &input).await?;
        for _ in 0..100 {
            tokio::io::AsyncWriteExt::write_all(
                &mut client,
                &frame(FRAME_CONTINUATION, 0, 1, &[0u8; 16_000]),
            )
            .await?;
        }
        Ok::<_, io::Error>(())
    });
    let mut out = Vec::new();
    assert!(fix.read_to_end(&mut out).await.is_err());
    drop(fix);
    let _ = writer.await;
}
